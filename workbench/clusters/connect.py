"""The notebook code that connects a ``distributed.Client`` to a running cluster.

A local ``tcp://`` cluster needs nothing but its address. A TLS cluster needs its
security settings: the generated code *references* them (certificate and key file
paths, or Dask's ``distributed.comm.tls`` configuration) and never contains
certificate or key material, so a notebook can be shared without leaking secrets.

A backend that runs TLS clusters records where the files are in the registry
record's ``extra["security"]``::

    {"tls_ca_file": "/path/ca.pem", "tls_client_cert": "/path/cert.pem",
     "tls_client_key": "/path/key.pem"}
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from ..errors import WorkbenchError
from .record import ClusterRecord

#: Security settings a connect cell may carry: all of them name files, none holds a secret.
SECURITY_KEYS = ("tls_ca_file", "tls_client_cert", "tls_client_key")
_SECRET_MARKERS = ("-----BEGIN", "PRIVATE KEY")


def _security(record: ClusterRecord) -> dict[str, str]:
    raw: Any = record.extra.get("security") or {}
    if not isinstance(raw, dict):
        raise WorkbenchError(
            f"cluster {record.id}: its registry record has a malformed 'security' entry; "
            "expected a mapping of tls_ca_file/tls_client_cert/tls_client_key to file paths"
        )
    out: dict[str, str] = {}
    for key in SECURITY_KEYS:
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or any(m in value for m in _SECRET_MARKERS) or "\n" in value:
            raise WorkbenchError(
                f"cluster {record.id}: security setting {key!r} is not a file path (it looks "
                "like certificate or key material). workbench never writes secrets into a "
                "notebook; record the path of the file instead"
            )
        out[key] = value
    return out


def connect_code(record: ClusterRecord) -> str:
    """Python source for a notebook cell that connects to ``record``'s scheduler."""
    address = record.scheduler_address
    scheme = urlparse(address).scheme or "tcp"
    gpus = f", {len(record.gpus)} GPU(s)" if record.gpus else ""
    lines = [
        f"# workbench cluster {record.id} (profile {record.profile!r}, "
        f"backend {record.backend!r}{gpus})",
        "from distributed import Client",
    ]
    if scheme == "tls":
        security = _security(record)
        lines.append("from distributed.security import Security")
        lines.append("")
        if security:
            lines.append("# Certificate and key files are referenced by path, never copied here.")
            lines.append("security = Security(")
            lines += [f"    {key}={value!r}," for key, value in security.items()]
            lines.append("    require_encryption=True,")
            lines.append(")")
        else:
            lines.append(
                "# TLS settings come from Dask's configuration (distributed.comm.tls.ca-file,"
            )
            lines.append("# distributed.comm.tls.client.cert and .key): set them there.")
            lines.append("security = Security(require_encryption=True)")
        lines.append(f"client = Client({address!r}, security=security)")
    else:
        if scheme == "ucx":
            lines.append("# UCX needs distributed-ucxx in this kernel's environment.")
        lines.append("")
        lines.append(f"client = Client({address!r})")
    lines.append("client")
    return "\n".join(lines)
