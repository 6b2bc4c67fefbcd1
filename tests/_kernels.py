"""Real kernels of the in-process Jupyter server (pytest-jupyter's ``jp_serverapp``), and
running code in them as a notebook would."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any


@contextlib.asynccontextmanager
async def kernel_of(jp_serverapp: Any) -> AsyncIterator[tuple[str, Any]]:
    """A real kernel of the in-process Jupyter server and a client of it."""
    manager = jp_serverapp.kernel_manager
    kernel_id = await manager.start_kernel()
    client = manager.get_kernel(kernel_id).client()
    client.start_channels()
    await client.wait_for_ready(timeout=120)
    try:
        yield kernel_id, client
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(kernel_id, now=True)


async def execute(
    client: Any, code: str, timeout: float = 120, stderr: list[str] | None = None
) -> str:
    """Run ``code`` in the kernel; its stdout (fails the test on an error). ``stderr``
    collects what it wrote there."""
    msg_id = client.execute(code)
    out: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        msg = await client.get_iopub_msg(timeout=max(1.0, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content["name"] == "stdout":
            out.append(content["text"])
        elif kind == "stream" and stderr is not None:
            stderr.append(content["text"])
        elif kind == "error":
            raise AssertionError("\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(out)
