"""workbench: GPU Dask clusters, data, training and dashboards from JupyterLab."""

from ._version import __version__
from .clusters import ClusterHandle, launch
from .errors import WorkbenchError

__all__ = ["ClusterHandle", "WorkbenchError", "__version__", "launch"]
