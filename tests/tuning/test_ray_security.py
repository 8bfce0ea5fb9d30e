"""The local Ray nbopt starts for a search is secure by default: token authentication on
with a token of its own, servers on loopback only, nothing left in the environment after."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from typing import Any

import psutil
import pytest

import nbopt
from nbopt.tuning.events import TrialFinished

ray = pytest.importorskip("ray")

SPACE = {"x": nbopt.uniform(-1, 1)}
CONNECT = """
import sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
print("CONNECTED", len(ray.nodes()))
"""


def _connect(address: str, **auth: str) -> subprocess.CompletedProcess:
    """Another process on this machine joining the cluster at ``address`` with the given
    RAY_AUTH_* settings. Like nbopt, it keeps the loopback address as it is (Ray's
    single-machine switch), which Ray would otherwise replace by the machine's address."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(auth, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    env["RAY_gcs_server_port_wait_time_s"] = "2"  # Ray's connection retries, else 20
    return subprocess.run(
        [sys.executable, "-c", CONNECT, address],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _listening(processes: list[psutil.Process]) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every TCP socket the processes listen on."""
    found = []
    for process in processes:
        try:
            for connection in process.net_connections(kind="tcp"):
                if connection.status == psutil.CONN_LISTEN:
                    found.append((process.name(), connection.laddr.ip, connection.laddr.port))
        except psutil.Error:
            continue
    return found


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _routable_ipv4() -> str | None:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not _loopback(address.address):
                return address.address
    return None


@pytest.mark.slow
def test_the_local_ray_refuses_clients_without_its_token_and_listens_on_loopback_only():
    assert not ray.is_initialized()
    environment = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    seen: dict[str, Any] = {}

    def while_the_search_runs(event: Any) -> None:
        if not isinstance(event, TrialFinished) or seen:
            return
        gcs = ray.get_runtime_context().gcs_address
        token = os.environ["RAY_AUTH_TOKEN"]
        seen["gcs"] = gcs
        seen["listening"] = _listening(psutil.Process().children(recursive=True))
        seen["no token"] = _connect(gcs, RAY_AUTH_MODE="disabled")
        seen["wrong token"] = _connect(gcs, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 64)
        seen["its token"] = _connect(gcs, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)

    def objective(x):
        time.sleep(0.5)
        return x

    result = nbopt.tune(
        objective,
        SPACE,
        max_evals=2,
        seed=0,
        backend="ray",
        parallel=1,
        progress="none",
        logdir=None,
        callbacks=[while_the_search_runs],
    )
    assert [t.status for t in result.trials] == ["ok", "ok"]

    for refused in ("no token", "wrong token"):
        client = seen[refused]
        assert client.returncode != 0 and "CONNECTED" not in client.stdout, refused
        assert "InvalidAuthToken" in client.stderr, client.stderr[-2000:]
    assert "CONNECTED 1" in seen["its token"].stdout, seen["its token"].stderr[-2000:]

    host, port = seen["gcs"].rsplit(":", 1)
    assert _loopback(host), f"the local Ray advertises {host}"
    listening = seen["listening"]
    assert any(p == int(port) for _, _, p in listening), listening
    assert all(_loopback(ip) for _, ip, _ in listening), listening
    routable = _routable_ipv4()
    if routable is not None:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((routable, int(port)), timeout=5).close()

    assert not ray.is_initialized()
    assert {name: os.environ.get(name) for name in environment} == environment
