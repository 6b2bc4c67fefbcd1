"""Many real Dask schedulers in one process (cheap "live clusters" for the registry
benchmark): ``distributed.Scheduler`` instances on one event loop, each listening on its
own port of 127.0.0.1, without workers or dashboards. Prints their addresses as one JSON
line, then runs until its stdin closes.

    python benchmarks/_schedulers.py COUNT
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys


async def main(count: int) -> None:
    from distributed import Scheduler

    logging.getLogger("distributed").setLevel(logging.ERROR)
    schedulers = []
    for _ in range(count):
        s = Scheduler(host="127.0.0.1", port=0, dashboard=False, dashboard_address="127.0.0.1:0")
        await s
        schedulers.append(s)
    print(json.dumps([s.address for s in schedulers]), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for s in schedulers:
        await s.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
