"""Whether this process is a Jupyter kernel: where progress widgets, the cluster view and
the dashboards are shown as rich output rather than printed."""

from __future__ import annotations

import sys


def in_notebook() -> bool:
    """True inside a Jupyter kernel: IPython is imported and its shell is a kernel's (a
    ZMQ shell, or one configured by an IPKernelApp). Never imports IPython itself."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:
        return False
    if shell is None:
        return False
    return type(shell).__name__ == "ZMQInteractiveShell" or "IPKernelApp" in getattr(
        shell, "config", {}
    )
