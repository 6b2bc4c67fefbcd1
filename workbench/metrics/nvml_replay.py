"""Record every NVML reply workbench uses on a real GPU, and replay it in tests.

A *recording* is a JSON file (format ``workbench-nvml-replies/1``)::

    {"format": "workbench-nvml-replies/1",
     "source": {"kind": "recorded" | "hand-written", "gpu": "...", "driver": "...", ...},
     "phases": [{"from": 3, "to": 6, "what": "host-to-device copy"}, ...],
     "calls": [{"fn": "nvmlDeviceGetFieldValues",
                "args": [{"handle": "0"}, [[197, 0], [198, 0]]],
                "reply": [{"fieldId": 197, "field": "NVML_FI_DEV_PCIE_COUNT_TX_BYTES",
                           "scopeId": 0, "nvmlReturn": 0, "valueType": 3, "value": 123}]},
               {"fn": "nvmlDeviceGetPowerUsage", "args": [{"handle": "0"}],
                "error": 3, "error_name": "NVML_ERROR_NOT_SUPPORTED"}, ...]}

:class:`RecordingNVML` wraps the real ``pynvml`` module and logs each call with its
arguments and its reply (ctypes structures as dicts, field values with the name of their
``NVML_FI_*`` constant, errors as NVML return codes); ``phases`` say which sample ticks
ran under which load. :class:`ReplayNVML` answers the same calls from a recording: each
``(function, arguments)`` pair gets its recorded replies in order. A call the recording
does not hold (a different field id, say) raises :class:`ReplayMismatch` naming what was
recorded instead, so code that asks NVML something else than what the driver answered
fails its tests.

Record on a GPU machine (``scripts/device-check`` does this under load)::

    python -m workbench.metrics.nvml_replay --seconds 8 --out nvml-replies.json
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import importlib
import json
import platform
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

FORMAT = "workbench-nvml-replies/1"

#: Calls whose answer does not change while a process runs (device count, handles, names,
#: link capabilities): once their recorded replies are used up, the last one is repeated.
STATIC = frozenset(
    {
        "nvmlInit",
        "nvmlShutdown",
        "nvmlDeviceGetCount",
        "nvmlDeviceGetHandleByIndex",
        "nvmlDeviceGetHandleByUUID",
        "nvmlDeviceGetUUID",
        "nvmlDeviceGetName",
        "nvmlSystemGetDriverVersion",
        "nvmlSystemGetCudaDriverVersion",
        "nvmlDeviceGetMaxPcieLinkGeneration",
        "nvmlDeviceGetMaxPcieLinkWidth",
        "nvmlDeviceGetGpuMaxPcieLinkGeneration",
        "nvmlDeviceGetEnforcedPowerLimit",
        "nvmlDeviceGetMaxMigDeviceCount",
        "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
        "nvmlDeviceGetMigDeviceHandleByIndex",
    }
)
#: Calls that return a device handle (recorded as ``{"handle": id}``).
_HANDLE_CALLS = frozenset(
    {
        "nvmlDeviceGetHandleByIndex",
        "nvmlDeviceGetHandleByUUID",
        "nvmlDeviceGetMigDeviceHandleByIndex",
        "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
    }
)


class ReplayMismatch(LookupError):
    """The code made an NVML call that the recording does not hold (or holds fewer times)."""


class Handle:
    """A device handle in a recording or a replay: an id that names the device."""

    __slots__ = ("id", "real")

    def __init__(self, id: str, real: Any = None) -> None:
        self.id = id
        self.real = real

    def __repr__(self) -> str:
        return f"<NVML handle {self.id}>"


def _constant_names(nvml: Any, prefix: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for name in sorted(dir(nvml)):
        value = getattr(nvml, name)
        if name.startswith(prefix) and isinstance(value, int) and value not in out:
            out[value] = name
    return out


def _plain(value: Any, field_names: dict[int, str], value_types: dict[int, str]) -> Any:
    """A JSON-able form of an NVML reply (ctypes structures, arrays, handles, bytes)."""
    if isinstance(value, Handle):
        return {"handle": value.id}
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, ctypes.Array | list | tuple):
        return [_plain(v, field_names, value_types) for v in value]
    fields = getattr(type(value), "_fields_", None)
    if fields is not None and hasattr(value, "fieldId") and hasattr(value, "nvmlReturn"):
        return _field_value(value, field_names, value_types)
    if fields is not None:
        return {name: _plain(getattr(value, name), field_names, value_types) for name, *_ in fields}
    raise TypeError(f"cannot record an NVML reply of type {type(value).__name__}")


_UNION_MEMBER = {  # NVML_VALUE_TYPE_* name -> the c_nvmlValue_t member that holds it
    "NVML_VALUE_TYPE_DOUBLE": "dVal",
    "NVML_VALUE_TYPE_UNSIGNED_INT": "uiVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG": "ulVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG": "ullVal",
    "NVML_VALUE_TYPE_SIGNED_LONG_LONG": "sllVal",
    "NVML_VALUE_TYPE_SIGNED_INT": "siVal",
    "NVML_VALUE_TYPE_UNSIGNED_SHORT": "usVal",
}


def _field_value(
    v: Any, field_names: dict[int, str], value_types: dict[int, str]
) -> dict[str, Any]:
    member = _UNION_MEMBER.get(value_types.get(int(v.valueType), ""), "ullVal")
    return {
        "fieldId": int(v.fieldId),
        "field": field_names.get(int(v.fieldId), "?"),
        "scopeId": int(v.scopeId),
        "nvmlReturn": int(v.nvmlReturn),
        "valueType": int(v.valueType),
        "value": getattr(v.value, member) if int(v.nvmlReturn) == 0 else None,
    }


class RecordingNVML:
    """The real ``pynvml`` module, with every call and its reply logged in :attr:`calls`."""

    def __init__(self, nvml: Any = None) -> None:
        self._nvml = nvml if nvml is not None else importlib.import_module("pynvml")
        self.NVMLError = self._nvml.NVMLError
        self.calls: list[dict[str, Any]] = []
        self.tick_starts: list[int] = []
        self._lock = threading.Lock()
        self._handles: dict[int, Handle] = {}
        bindings = importlib.import_module("pynvml")  # the constants' names
        self._field_names = _constant_names(bindings, "NVML_FI_")
        self._value_types = _constant_names(bindings, "NVML_VALUE_TYPE_")
        self._error_names = _constant_names(bindings, "NVML_ERROR_")

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._nvml, name)
        if not name.startswith("nvml") or not callable(attr):
            return attr  # constants and exception classes, as the real module has them
        return lambda *args: self._call(name, attr, args)

    def mark_tick(self) -> None:
        """Note that a new sample tick starts at the next call."""
        self.tick_starts.append(len(self.calls))

    def _handle(self, fn: str, args: tuple[Any, ...], real: Any) -> Handle:
        key = ctypes.cast(real, ctypes.c_void_p).value or 0
        known = self._handles.get(key)
        if known is None:
            if fn == "nvmlDeviceGetHandleByIndex":
                ident = str(args[0])
            elif fn == "nvmlDeviceGetMigDeviceHandleByIndex":
                ident = f"{args[0].id}/mig{args[1]}"
            else:
                ident = f"h{len(self._handles)}"
            known = self._handles[key] = Handle(ident, real)
        return known

    def _call(self, fn: str, real_fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        real_args = tuple(a.real if isinstance(a, Handle) else a for a in args)
        entry: dict[str, Any] = {
            "fn": fn,
            "args": [_plain(a, self._field_names, self._value_types) for a in args],
        }
        try:
            reply = real_fn(*real_args)
        except self._nvml.NVMLError as exc:
            code = int(getattr(exc, "value", -1))
            entry.update(error=code, error_name=self._error_names.get(code, "?"))
            with self._lock:
                self.calls.append(entry)
            raise
        if fn in _HANDLE_CALLS:
            reply = self._handle(fn, args, reply)
        entry["reply"] = _plain(reply, self._field_names, self._value_types)
        with self._lock:
            self.calls.append(entry)
        return reply


def _key(fn: str, args: list[Any]) -> str:
    return json.dumps([fn, args], sort_keys=True)


def _rebuild(value: Any) -> Any:
    """A reply object with the attributes the real ctypes reply has."""
    if isinstance(value, dict):
        if set(value) == {"handle"}:
            return Handle(str(value["handle"]))
        return SimpleNamespace(**{k: _rebuild(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_rebuild(v) for v in value]
    return value


def _rebuild_fields(values: list[dict[str, Any]]) -> list[SimpleNamespace]:
    out = []
    for v in values:
        raw = v.get("value")
        union = SimpleNamespace(dVal=0.0, uiVal=0, ulVal=0, ullVal=0, sllVal=0, siVal=0, usVal=0)
        if isinstance(raw, float):  # a double: the integer members read its bits
            union.dVal = raw
            union.ullVal = union.ulVal = struct.unpack("<Q", struct.pack("<d", raw))[0]
        elif raw is not None:
            for member in ("uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal"):
                setattr(union, member, int(raw))
        out.append(
            SimpleNamespace(
                fieldId=v["fieldId"],
                scopeId=v.get("scopeId", 0),
                nvmlReturn=v.get("nvmlReturn", 0),
                valueType=v.get("valueType", 0),
                value=union,
            )
        )
    return out


class ReplayNVML:
    """Answers NVML calls from a recording; carries pynvml's constants and error classes."""

    def __init__(self, recording: dict[str, Any] | str | Path) -> None:
        import pynvml

        if not isinstance(recording, dict):
            recording = load(recording)
        self.recording = recording
        self.NVMLError = pynvml.NVMLError
        self._pynvml = pynvml
        self.asked: dict[str, int] = {}
        self._replies: dict[str, list[dict[str, Any]]] = {}
        self._by_fn: dict[str, list[list[Any]]] = {}
        for call in recording["calls"]:
            key = _key(call["fn"], call["args"])
            self._replies.setdefault(key, []).append(call)
            known = self._by_fn.setdefault(call["fn"], [])
            if call["args"] not in known:
                known.append(call["args"])
        self._position: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("NVML_"):
            return getattr(self._pynvml, name)  # the bindings' named constants
        if not name.startswith("nvml"):
            raise AttributeError(name)
        return lambda *args: self._answer(name, args)

    def rewind(self) -> None:
        """Start every call's replies from the beginning again."""
        self._position.clear()
        self.asked.clear()

    def count(self, fn: str) -> int:
        """How many times the code asked ``fn``."""
        return sum(n for key, n in self.asked.items() if json.loads(key)[0] == fn)

    def _answer(self, fn: str, args: tuple[Any, ...]) -> Any:
        plain_args = [_plain(a, {}, {}) for a in args]
        key = _key(fn, plain_args)
        self.asked[key] = self.asked.get(key, 0) + 1
        replies = self._replies.get(key)
        if not replies:
            recorded = self._by_fn.get(fn)
            what = (
                "; recorded arguments: " + ", ".join(json.dumps(a) for a in recorded)
                if recorded
                else " at all"
            )
            raise ReplayMismatch(
                f"{fn}{tuple(plain_args)} is not in the recording "
                f"({self.recording.get('source', {}).get('gpu', '?')}){what}"
            )
        n = self._position.get(key, 0)
        if n >= len(replies):
            if fn not in STATIC:
                raise ReplayMismatch(
                    f"{fn}{tuple(plain_args)} asked {n + 1} times; the recording holds "
                    f"{len(replies)} replies"
                )
            n = len(replies) - 1
        self._position[key] = n + 1
        call = replies[n]
        if "error" in call:
            raise self._pynvml.NVMLError(call["error"])
        if fn == "nvmlDeviceGetFieldValues":
            return _rebuild_fields(call["reply"])
        return _rebuild(call["reply"])


def load(path: str | Path) -> dict[str, Any]:
    """A recording from a JSON file, checked for its format."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} recording")
    return data


def ticks(recording: dict[str, Any]) -> int:
    """Number of sample ticks in a recording."""
    return len(recording.get("tick_starts") or [])


def phase_of(recording: dict[str, Any], tick: int) -> str:
    """What load ran during sample ``tick`` ("idle" where no phase covers it)."""
    for phase in recording.get("phases") or ():
        if phase["from"] <= tick < phase["to"]:
            return str(phase["what"])
    return "idle"


# -- recording under load, on a GPU machine ----------------------------------------------------
def _load_phases(phase_seconds: float) -> Iterator[tuple[str, Callable[[], None] | None]]:
    """(name, one step of work) for each phase: idle, host->device, device->host, matmul."""
    import torch

    host = torch.empty(1 << 30, dtype=torch.uint8).pin_memory()
    dev = torch.empty_like(host, device="cuda")
    n = 8192
    x = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)

    def h2d() -> None:
        dev.copy_(host, non_blocking=True)
        torch.cuda.synchronize()

    def d2h() -> None:
        host.copy_(dev, non_blocking=True)
        torch.cuda.synchronize()

    def matmul() -> None:
        for _ in range(10):
            x @ y
        torch.cuda.synchronize()

    yield "idle", None
    yield "host-to-device copy", h2d
    yield "device-to-host copy", d2h
    yield "bf16 matmul", matmul
    yield "idle", None


def record(seconds_per_phase: float = 2.0, interval: float = 0.5, note: str = "") -> dict[str, Any]:
    """Run workbench's GPU sampler (and the bench PCIe limit) on the real driver under
    load phases, recording every NVML call. Needs torch with CUDA for the load."""
    import pynvml

    from ..bench import gpu_pcie_limit
    from ..gpus import detect_gpus
    from .base import SamplerContext
    from .nvml import GPUSampler

    inventory = detect_gpus()
    if not inventory.gpus:
        raise SystemExit(f"no GPU to record: {inventory.reason}")
    nvml = RecordingNVML(pynvml)
    sampler = GPUSampler(SamplerContext(role="host"), nvml=nvml)
    if sampler.reason:
        raise SystemExit(f"the GPU sampler cannot start: {sampler.reason}")
    phases: list[dict[str, Any]] = []
    times: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        nvml.mark_tick()
        times.append(time.time())
        sampler.sample(times[-1])

    try:
        sample()
        for what, step in _load_phases(seconds_per_phase):
            first = len(times)
            worker: threading.Thread | None = None
            if step is not None:
                stop.clear()

                def loop(step: Callable[[], None] = step) -> None:
                    while not stop.is_set():
                        step()

                worker = threading.Thread(target=loop, name=f"nvml-load-{what}", daemon=True)
                worker.start()
            end = time.monotonic() + seconds_per_phase
            while time.monotonic() < end:
                time.sleep(interval)
                sample()
            stop.set()
            if worker is not None:
                worker.join()
            if what != "idle":
                phases.append({"from": first, "to": len(times), "what": what})
    finally:
        stop.set()
        sampler.close()
    # After the ticks, so that a replay of the sampler alone meets its own replies first.
    for g in inventory.gpus:
        gpu_pcie_limit(g.index, nvml=nvml)
    detect_gpus(nvml=nvml)
    gpu = inventory.gpus[0]
    return {
        "format": FORMAT,
        "source": {
            "kind": "recorded",
            "gpu": gpu.name,
            "gpus": len(inventory.gpus),
            "driver": inventory.driver_version,
            "cuda_driver": inventory.cuda_driver_version,
            "nvidia_ml_py": _version("nvidia-ml-py"),
            "host": platform.node(),
            "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "interval": interval,
            "note": note,
        },
        "phases": phases,
        "tick_starts": nvml.tick_starts,
        "tick_times": times,
        "calls": nvml.calls,
    }


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    with contextlib.suppress(PackageNotFoundError):
        return version(dist)
    return None


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - runs on GPU machines
    import argparse

    parser = argparse.ArgumentParser(description="Record every NVML reply workbench uses.")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per load phase")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    data = record(args.seconds, args.interval, args.note)
    Path(args.out).write_text(json.dumps(data, indent=1) + "\n")
    print(f"{args.out}: {len(data['calls'])} NVML calls over {ticks(data)} ticks")


if __name__ == "__main__":  # pragma: no cover
    main()
