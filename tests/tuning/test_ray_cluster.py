"""backend=ray on a cluster: a Ray head and a second node, each started with ``ray start`` as
its own processes on this machine, with token authentication on as ``ray start`` turns it on
when a token exists; and the one-line errors for clusters a search cannot use."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

import nbopt
from nbopt.errors import ConfigError
from nbopt.tuning.events import TrialFinished

ray = pytest.importorskip("ray")

NODE_CPUS = 2
START_TIMEOUT_S = 180
STOP_TIMEOUT_S = 60
SPACE = {"x": nbopt.uniform(-1, 1)}


@dataclass
class Cluster:
    """A running two-node cluster: its GCS port, node ids, and the environment to reach it."""

    port: int
    node_ids: list[str]
    env: dict[str, str]
    blocks: list[subprocess.Popen]

    def processes(self) -> set[tuple[int, float]]:
        """Every running process of the cluster, as (pid, start time)."""
        found = set()
        for block in self.blocks:
            for process in [psutil.Process(block.pid), *_descendants(block.pid)]:
                if _running(process):
                    found.add((process.pid, process.create_time()))
        return found


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _running_children() -> set[int]:
    """This process's running children (the cluster's nodes among them, not what they start)."""
    return {p.pid for p in psutil.Process().children() if _running(p)}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_node(arguments: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """``ray start ... --block``: the node lives as long as this process, and a SIGTERM to it
    stops just this node (``ray stop`` would stop every Ray on the machine). On a loaded
    machine a raylet can miss Ray's fixed 30 s to register; that start is tried again."""
    command = [str(Path(sys.executable).with_name("ray")), "start", "--block", *arguments]
    command += ["--num-cpus", str(NODE_CPUS), "--object-store-memory", str(100 * 2**20)]
    command += ["--disable-usage-stats", "--dashboard-agent-listen-port", str(_free_port())]
    for _ in range(3):
        with log.open("w") as out:
            node = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Ray runtime started" not in log.read_text():
            if node.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        else:
            return node
        _stop([node])
        if "timed out during startup" not in log.read_text():
            break
    pytest.fail(f"ray start {' '.join(arguments)} failed:\n{log.read_text()[-3000:]}")


def _stop(cluster_blocks: list[subprocess.Popen]) -> list[psutil.Process]:
    """SIGTERM each node's ``ray start`` (worker first); SIGKILL what is left after a while.
    Returns the processes that needed SIGKILL."""
    processes = []
    for block in cluster_blocks:
        with contextlib.suppress(psutil.Error):
            processes += [psutil.Process(block.pid), *_descendants(block.pid)]
    for block in reversed(cluster_blocks):
        block.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while (left := [p for p in processes if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    for process in left:
        process.kill()
    for block in cluster_blocks:
        block.wait(timeout=STOP_TIMEOUT_S)
    return left


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head and a worker node with token authentication on, in a temp dir of their own so
    that address=auto finds this cluster and not another on the machine. This process has the
    token where Ray looks for one (RAY_AUTH_TOKEN_PATH, as ~/.ray/auth_token would be) and no
    RAY_AUTH_MODE, as a notebook on the head node has."""
    root = Path(tempfile.mkdtemp(prefix="nbopt-ray-"))  # short: Ray's socket paths are limited
    token = root / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "TUNE_"))}
    env = {**clean, "RAY_TMPDIR": str(root), "RAY_AUTH_TOKEN_PATH": str(token)}
    env["RAY_AUTH_MODE"] = "token"  # a worker node does not turn it on from the token alone
    port = _free_port()
    # A head started on loopback, as on a laptop: Ray advertises the machine's own address
    # instead, and a notebook giving 127.0.0.1:port must still find it.
    head_args = ["--head", "--port", str(port), "--node-ip-address", "127.0.0.1"]
    head_args += ["--include-dashboard=false"]
    head_args += ["--ray-client-server-port", str(_free_port())]
    blocks: list[subprocess.Popen] = []
    try:
        blocks.append(_start_node(head_args, env, root / "head.log"))
        blocks.append(_start_node(["--address", f"127.0.0.1:{port}"], env, root / "worker.log"))
        listing = subprocess.run(
            [sys.executable, "-c", _LIST_NODES, f"127.0.0.1:{port}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        node_ids = json.loads(listing.stdout.strip().splitlines()[-1])
        assert len(node_ids) == 2, node_ids
        with pytest.MonkeyPatch.context() as patch:
            for name in [k for k in os.environ if k.startswith("RAY_")]:
                patch.delenv(name)
            patch.setenv("RAY_TMPDIR", str(root))
            patch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
            yield Cluster(port, node_ids, env, blocks)
    finally:
        killed = _stop(blocks)
        left = [p.pid for p in killed if _running(p)]
        assert not left, f"Ray processes of the test cluster survived SIGKILL: {left}"
        shutil.rmtree(root, ignore_errors=True)


_LIST_NODES = """
import json, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
print(json.dumps(sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])))
ray.shutdown()
"""

OBJECTIVE = """
import os, time
import ray

def on_both_nodes(x):
    # Every trial waits until all four run at once: four one-CPU trials fill both nodes.
    started = os.path.join(BARRIER, f"{os.getpid()}-{x}")
    open(started, "w").close()
    deadline = time.time() + 120
    while len(os.listdir(BARRIER)) < 4 and time.time() < deadline:
        time.sleep(0.1)
    node = ray.get_runtime_context().get_node_id()
    return {"loss": (x - 0.2) ** 2, "node": int(node[:12], 16)}
"""


@pytest.mark.slow
@pytest.mark.parametrize("form", ["auto", "host:port"])
def test_a_search_runs_on_both_nodes_of_a_cluster_and_leaves_nothing(
    cluster, form, ip, run_cell, tmp_path
):
    assert "RAY_AUTH_MODE" not in os.environ  # nbopt, not the test, lets host:port use the token
    address = "auto" if form == "auto" else f"127.0.0.1:{cluster.port}"
    barrier = tmp_path / "started"
    barrier.mkdir()
    run_cell(ip, f"BARRIER = {str(barrier)!r}\n{OBJECTIVE}")
    before_here = _running_children()
    before_there = cluster.processes()

    result = run_cell(
        ip,
        f"%tune on_both_nodes x=uniform(-1,1) max_evals=4 seed=0 backend=ray parallel=4 "
        f"address={address} study=study.json progress=none logdir=none",
    )

    assert [t.status for t in result.trials] == ["ok"] * 4
    nodes = {format(int(t.metrics["node"]), "012x") for t in result.trials}
    assert nodes == {node_id[:12] for node_id in cluster.node_ids}, "trials ran on both nodes"
    assert result.best_value == min(t.value for t in result.trials)

    def not_again(x):
        raise AssertionError("the study holds every trial: none runs again")

    resumed = nbopt.tune(
        not_again, SPACE, max_evals=4, study=tmp_path / "study.json", progress="none", logdir=None
    )
    assert [(t.params, t.value) for t in resumed.trials] == [
        (t.params, t.value) for t in result.trials
    ]
    assert not ray.is_initialized()
    assert "RAY_AUTH_MODE" not in os.environ and "RAY_AUTH_TOKEN" not in os.environ
    assert _running_children() <= before_here
    # The trials' workers belong to the search's Ray job, which ends when nbopt disconnects.
    deadline = time.monotonic() + 60
    while (new := cluster.processes() - before_there) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not new, f"processes the search started on the cluster are still running: {new}"


@pytest.mark.slow
def test_a_search_without_an_address_starts_its_own_ray_beside_a_running_cluster(
    cluster, monkeypatch
):
    """Ray alone would join the cluster that RAY_ADDRESS (or the last ``ray start`` on this
    machine, which this one is) names: a local search must not run on someone's cluster."""
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{cluster.port}")
    before_there = cluster.processes()
    seen = {}

    def node_of_each_trial(event):
        if isinstance(event, TrialFinished) and "gcs" not in seen:
            seen["gcs"] = ray.get_runtime_context().gcs_address

    def objective(x):
        import ray as worker_ray

        return {"loss": x * x, "node": int(worker_ray.get_runtime_context().get_node_id()[:12], 16)}

    result = nbopt.tune(
        objective,
        SPACE,
        max_evals=2,
        seed=0,
        backend="ray",
        parallel=1,
        progress="none",
        logdir=None,
        callbacks=[node_of_each_trial],
    )

    assert [t.status for t in result.trials] == ["ok", "ok"]
    nodes = {format(int(t.metrics["node"]), "012x") for t in result.trials}
    assert len(nodes) == 1
    assert not nodes & {node_id[:12] for node_id in cluster.node_ids}
    assert not seen["gcs"].endswith(f":{cluster.port}"), seen["gcs"]
    assert not ray.is_initialized()
    assert cluster.processes() <= before_there, "the search started processes on the cluster"


@pytest.mark.slow
def test_a_cluster_without_a_package_the_objective_needs_is_named_before_any_trial(
    cluster, tmp_path, monkeypatch
):
    """The objective's module is importable here and nowhere on the cluster (its file is
    removed once imported), as a package installed in the notebook's environment only."""
    package = tmp_path / "only_here"
    package.mkdir()
    (package / "nbopt_test_only_here.py").write_text("def objective(x):\n    return x * x\n")
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.delitem(sys.modules, "nbopt_test_only_here", raising=False)
    import nbopt_test_only_here

    (package / "nbopt_test_only_here.py").unlink()
    study = tmp_path / "study.json"
    with pytest.raises(ConfigError) as caught:
        nbopt.tune(
            nbopt_test_only_here.objective,
            SPACE,
            max_evals=2,
            backend="ray",
            address=f"127.0.0.1:{cluster.port}",
            study=study,
            progress="none",
            logdir=None,
        )
    message = str(caught.value)
    assert "\n" not in message
    assert "has no module 'nbopt_test_only_here', which the objective needs" in message
    assert "install it (and nbopt) in the Python environment of every node" in message
    assert not study.exists() and not ray.is_initialized()


@pytest.mark.slow
def test_a_ray_version_other_than_the_clusters_is_one_line(cluster, monkeypatch):
    """Ray compares its own ``ray.__version__`` with the cluster's when it connects; a
    notebook with another Ray is faked there, where Ray reads it."""
    real = ray.__version__
    monkeypatch.setattr(ray, "__version__", "2.0.0")
    with pytest.raises(ConfigError) as caught:
        nbopt.tune(
            lambda x: x,
            SPACE,
            max_evals=1,
            backend="ray",
            address=f"127.0.0.1:{cluster.port}",
            progress="none",
            logdir=None,
        )
    message = str(caught.value)
    python = ".".join(map(str, sys.version_info[:3]))
    assert "\n" not in message
    assert f"runs Ray {real} on Python {python}, this notebook Ray 2.0.0" in message
    assert f'pip install "ray[tune]=={real}"' in message
    assert not ray.is_initialized()


@pytest.mark.slow
def test_a_cluster_that_refuses_the_notebooks_token_is_one_line(cluster, tmp_path, monkeypatch):
    wrong = tmp_path / "wrong-token"
    wrong.write_text(secrets.token_hex(32))
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(wrong))
    monkeypatch.setenv("RAY_gcs_server_port_wait_time_s", "2")  # Ray's retries, else 20 s
    with pytest.raises(ConfigError) as caught:
        nbopt.tune(
            lambda x: x,
            SPACE,
            max_evals=1,
            backend="ray",
            address=f"localhost:{cluster.port}",
            progress="none",
            logdir=None,
        )
    message = str(caught.value)
    assert "\n" not in message
    assert "uses token authentication and refused this notebook's token" in message
    assert "RAY_AUTH_TOKEN_PATH" in message
    assert not ray.is_initialized() and "RAY_AUTH_MODE" not in os.environ


def test_an_address_where_nothing_listens_is_one_line_at_once(ip, run_cell):
    from IPython.core.error import UsageError

    port = _free_port()
    run_cell(ip, "def f(x):\n    return x")
    with pytest.raises(UsageError) as caught:
        run_cell(ip, f"%tune f x=uniform(0,1) backend=ray address=127.0.0.1:{port} progress=none")
    message = str(caught.value)
    assert "\n" not in message
    assert f"no Ray cluster answers at 127.0.0.1:{port} (connection refused)" in message
    assert f"ray start --head --port={port}" in message


def test_address_auto_without_a_cluster_on_this_machine_is_one_line(tmp_path, monkeypatch):
    """No cluster: an empty Ray temp dir, and Ray's scan for running Ray processes faked empty
    (another Ray may run on a shared machine)."""
    from ray._private import services

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    def no_running_ray() -> set[str]:
        return set()

    no_running_ray.cache_clear = lambda: None  # as Ray's cached original has
    monkeypatch.setattr(services, "find_gcs_addresses", no_running_ray)
    with pytest.raises(ConfigError) as caught:
        nbopt.tune(lambda x: x, SPACE, backend="ray", address="auto", progress="none", logdir=None)
    message = str(caught.value)
    assert message == (
        "address=auto found no Ray cluster started on this machine: start one with "
        "'ray start --head', or give the head's address as address=host:port"
    )
    assert not ray.is_initialized()


@pytest.mark.parametrize("address", ["head", "head:port", "head:99999", "a b:1", "[::1]"])
def test_a_malformed_address_is_a_config_error(address):
    with pytest.raises(ConfigError, match=r"address must be 'auto' or host:port .* got"):
        nbopt.tune(lambda x: x, SPACE, backend="ray", address=address, progress="none")


def test_a_ray_client_address_is_refused_with_what_to_use_instead():
    """Through Ray Client, Tune runs its driver (and with it nbopt's searcher and callback)
    as an actor on the cluster, so the search could not record trials here."""
    with pytest.raises(ConfigError, match=r"through Ray Client .* give address=host:port"):
        nbopt.tune(lambda x: x, SPACE, backend="ray", address="ray://head:10001", progress="none")
