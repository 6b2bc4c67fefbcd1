"""Imports that leave the process's signal handlers alone, on any thread.

Some libraries install signal handlers when they are imported: dask-jobqueue's
``runner`` module runs ``signal.signal(signal.SIGINT, lambda *_: sys.exit())`` at import.
Python allows ``signal.signal`` only on the main thread, so the first import of such a
module on any other thread raises ``ValueError: signal only works in main thread of the
main interpreter``, and on the main thread it silently replaces the handler the program
had (Jupyter server's "Shutdown this Jupyter server (y/[n])?" on Ctrl-C, a kernel's
interrupt, ``workbench launch``'s clean stop on Ctrl-C).

:func:`import_module` imports such a module so that neither happens: on the main thread
every handler the import changed is put back; on another thread the import's calls of
``signal.signal`` are skipped (they would have raised). The Jupyter server extension
also imports every backend's modules on its main thread at start
(:func:`workbench.server.preload_backend_modules`), so that no REST route imports one for
the first time in its thread pool.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType, ModuleType
from typing import Any

logger = logging.getLogger(__name__)

#: One import with handlers watched at a time: the swap of ``signal.signal`` off the main
#: thread must not be undone by another thread's import in the middle of it.
_LOCK = threading.RLock()

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handlers() -> dict[signal.Signals, Handler]:
    out: dict[signal.Signals, Handler] = {}
    for sig in signal.valid_signals():
        with contextlib.suppress(ValueError, OSError):
            out[signal.Signals(sig)] = signal.getsignal(sig)
    return out


@contextlib.contextmanager
def signal_handlers_kept() -> Iterator[list[str]]:
    """Inside, code may call ``signal.signal``; afterwards every handler is what it was.

    On the main thread the changed handlers are restored; on another thread the calls
    are skipped (Python would raise ``ValueError`` for them). Yields the list of the
    signals whose change was undone or skipped (for the log)."""
    undone: list[str] = []
    with _LOCK:
        if on_main_thread():
            before = _handlers()
            try:
                yield undone
            finally:
                for sig, handler in _handlers().items():
                    old = before.get(sig)
                    if old is not None and handler != old:
                        signal.signal(sig, old)
                        undone.append(sig.name)
            return
        original = signal.signal

        def skipped_off_main_thread(signalnum: int, handler: Any) -> Any:
            if on_main_thread():  # another thread's legitimate call meanwhile
                return original(signalnum, handler)
            undone.append(signal.Signals(signalnum).name)
            return signal.getsignal(signalnum)

        signal.signal = skipped_off_main_thread
        try:
            yield undone
        finally:
            signal.signal = original


def import_module(name: str) -> ModuleType:
    """``importlib.import_module(name)``, without the import changing any signal handler
    (and without failing for it off the main thread)."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    with signal_handlers_kept() as undone:
        module = importlib.import_module(name)
    if undone:
        logger.debug(
            "importing %s tried to set handlers of %s; kept the process's own",
            name,
            ", ".join(sorted(set(undone))),
        )
    return module
