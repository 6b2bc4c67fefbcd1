"""``workbench dashboard`` from the command line: clean errors and a real served endpoint."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from .conftest import WORKBENCH


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> Any:
    return subprocess.run(
        [*WORKBENCH, "dashboard", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def test_bad_input_gives_clean_errors(subprocess_env: dict[str, str]) -> None:
    unknown = _run(["--cluster", "nope"], subprocess_env)
    assert unknown.returncode == 1
    assert "error: no running cluster with id 'nope'" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    unreachable = _run(["--scheduler", "tcp://127.0.0.1:9"], subprocess_env)
    assert unreachable.returncode == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in unreachable.stderr
    assert "workbench clusters list" in unreachable.stderr

    both = _run(["--cluster", "a", "--scheduler", "tcp://x:1"], subprocess_env)
    assert both.returncode == 2 and "not both" in both.stderr

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = _run(["--port", str(port)], subprocess_env)
    assert taken.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in taken.stderr
    assert "Traceback" not in taken.stderr


def test_serves_this_host_with_prometheus_on_its_own_port(
    subprocess_env: dict[str, str],
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        prom_port = s.getsockname()[1]
    proc = subprocess.Popen(
        [*WORKBENCH, "dashboard", "--port", "0", "--prometheus-port", str(prom_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env,
    )
    try:
        assert proc.stdout is not None
        urls: list[str] = []
        deadline = time.monotonic() + 120
        while len(urls) < 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            urls.append(line.rsplit(": ", 1)[1].strip())
        dashboard_url, metrics_url, own_url = urls
        assert own_url == f"http://127.0.0.1:{prom_port}/metrics"
        with urllib.request.urlopen(dashboard_url, timeout=30) as r:
            assert "workbench live metrics" in r.read().decode()
        time.sleep(2.5)  # rates need two samples
        for url in (metrics_url, own_url):
            with urllib.request.urlopen(url, timeout=30) as r:
                families = {f.name for f in text_string_to_metric_families(r.read().decode())}
            assert "workbench_cpu_utilization_percent" in families
            assert not any(f.startswith("workbench_cluster_") for f in families)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
