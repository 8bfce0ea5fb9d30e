"""Where a Ray search runs: a local Ray of nbopt's own, or a running cluster.

The local Ray is started for one search and shut down after it, and is secure by default:
token authentication is on, with a fresh token that only this process and its children see,
whatever Ray's own default (Ray 2.52 brought tokens, off by default; 2.60 turns them on for
``ray.init``); its servers listen on loopback only; and a watchdog stops all of it if the
kernel dies.

Joining a cluster (``address=``) checks first what Ray would otherwise report as a long
traceback, or after many retries: that something answers at the address, that the cluster
accepts this notebook's token and runs its versions of Ray and Python, and that every node
can load the objective (the packages it needs are installed there). Each failure is one
:class:`~nbopt.errors.ConfigError` line saying what to do.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbopt.errors import ConfigError
from nbopt.tuning._ray_watchdog import Watchdog

_ADDRESS = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})")
_REACH_TIMEOUT_S = 3.0
_LOAD_TIMEOUT_S = 120.0
_TOKEN_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")
_QUIET = {"log_to_driver": False, "logging_level": "ERROR", "configure_logging": True}


@dataclass(frozen=True)
class ClusterAddress:
    """A cluster to join: ``auto`` (the one started on this machine), or a host and port."""

    text: str
    host_port: tuple[str, int] | None = None

    @property
    def where(self) -> str:
        return "this machine (address=auto)" if self.host_port is None else self.text


def parse_address(address: str | None) -> ClusterAddress | None:
    """The cluster ``address`` names, or None for a local Ray; ConfigError if malformed."""
    if address is None:
        return None
    text = address.strip()
    if text == "auto":
        return ClusterAddress("auto")
    if text.startswith("ray://"):
        raise ConfigError(
            f"address={address}: through Ray Client (ray://) Ray Tune runs the search's driver "
            "on the cluster, away from the proposer and study in this notebook; run the notebook "
            "where it can reach the head and give address=host:port (the head's GCS port, 6379 "
            "by default), or address=auto on the head"
        )
    match = _ADDRESS.fullmatch(text)
    port = int(match["port"]) if match else 0
    if match is None or not 0 < port < 65536:
        raise ConfigError(
            "address must be 'auto' or host:port (the head's GCS port, 6379 by default), "
            f"got {address!r}"
        )
    return ClusterAddress(text, (match["host"].strip("[]"), port))


@contextlib.contextmanager
def ray_session(ray: Any, address: ClusterAddress | None, cpus: int) -> Iterator[bool]:
    """Ray for one search: yields True if it runs on a cluster nbopt did not start.

    A connection the user opened (``ray.init`` before the search) is used as it is and left
    open; otherwise nbopt connects, or starts a local Ray with ``cpus`` CPUs, and shuts it
    down afterwards.
    """
    if ray.is_initialized():
        yield True
    elif address is None:
        with _local_ray(ray, cpus):
            yield False
    else:
        with _cluster(ray, address):
            yield True


@contextlib.contextmanager
def _local_ray(ray: Any, cpus: int) -> Iterator[None]:
    token = secrets.token_hex(32)
    watchdog = Watchdog(os.path.dirname(ray.__file__))
    try:
        with _ray_auth(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token):
            try:
                with _single_machine(ray):
                    # "local": without an address Ray joins the cluster that RAY_ADDRESS or
                    # the last `ray start` on this machine names, instead of starting one.
                    ray.init(
                        address="local",
                        num_cpus=cpus,
                        include_dashboard=False,
                        _node_ip_address="127.0.0.1",
                        **_QUIET,
                    )
            except Exception as exc:
                with contextlib.suppress(Exception):
                    ray.shutdown()
                raise RuntimeError(
                    f"could not start a local Ray for backend=ray ({_last_line(exc)}); Ray's "
                    f"logs are in {_ray_temp_dir()}/session_latest/logs"
                ) from None
            try:
                yield
            finally:
                ray.shutdown()
    finally:
        watchdog.close()


@contextlib.contextmanager
def _cluster(ray: Any, address: ClusterAddress) -> Iterator[None]:
    token_mode = {}
    if address.host_port is not None:
        _check_reachable(address.text, *address.host_port)
        if "RAY_AUTH_MODE" not in os.environ and _has_token() and _own(*address.host_port):
            # Ray sends its token only to a cluster it finds itself (address=auto); one on
            # this machine that this user runs gets it too, so that host:port works as auto.
            token_mode = {"RAY_AUTH_MODE": "token"}
    with _ray_auth(**token_mode):
        try:
            ray.init(address=address.text, **_QUIET)
        except Exception as exc:
            with contextlib.suppress(Exception):
                ray.shutdown()
            raise ConfigError(_connection_error(address, exc)) from None
        try:
            yield
        finally:
            ray.shutdown()


@contextlib.contextmanager
def _ray_auth(**variables: str) -> Iterator[None]:
    """Set Ray's token variables for the session, and have Ray read them again on both ends.

    Ray reads ``RAY_AUTH_*`` once, when first imported; refreshing lets a notebook set them
    with ``%env`` too.
    """
    saved = {name: os.environ.get(name) for name in _TOKEN_VARIABLES}
    os.environ.update(variables)
    _refresh_ray_auth()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _refresh_ray_auth()


def _refresh_ray_auth() -> None:
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:  # Ray before 2.52 has no token authentication
        return
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@contextlib.contextmanager
def _single_machine(ray: Any) -> Iterator[None]:
    """Let the local Ray keep 127.0.0.1 as its address, so that its servers bind to loopback.

    Ray replaces a loopback node address by the machine's routable one unless its
    single-machine switch is on (``ray_constants.ENABLE_RAY_CLUSTER``, which it reads when
    starting a node); nothing else turns it on once Ray is imported.
    """
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is None or not hasattr(constants, "ENABLE_RAY_CLUSTER"):
        yield
        return
    saved = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = saved


def _check_reachable(text: str, host: str, port: int) -> None:
    """ConfigError at once if nothing listens at the address (Ray retries for 20 s)."""
    try:
        with socket.create_connection((host, port), timeout=_REACH_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"no Ray cluster answers at {text} ({reason.lower()}): start one there with "
            f"'ray start --head --port={port}', or check the address (address=auto joins "
            "the cluster started on this machine)"
        ) from None


def _own(host: str, port: int) -> bool:
    """True if ``host`` is this machine and only this user's processes listen on ``port``."""
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(host, port)}
    except OSError:
        return False
    if not all(ipaddress.ip_address(ip.split("%")[0]).is_loopback for ip in resolved):
        import psutil

        local = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}
        if not resolved <= local:
            return False
    return _listener_owners(port) == {os.getuid()}


def _listener_owners(port: int) -> set[int]:
    """The users owning TCP sockets that listen on ``port`` (Linux; empty elsewhere)."""
    owners = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                listening = fields[3] == "0A"
                if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    owners.add(int(fields[7]))
    return owners


def _has_token() -> bool:
    """Whether a Ray token is at hand where Ray looks for one."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    return Path(path).is_file()


def _connection_error(address: ClusterAddress, exc: BaseException) -> str:
    """One line saying why joining the cluster failed and what to do."""
    text = _chain_text(exc)
    versions = re.search(
        r"cluster was started with:\s*Ray: (\S+)\s*Python: (\S+).*?"
        r"was started with:\s*Ray: (\S+)\s*Python: (\S+)",
        text,
        re.DOTALL,
    )
    if versions:
        ray_there, python_there, ray_here, python_here = versions.groups()
        return (
            f"the Ray cluster at {address.where} runs Ray {ray_there} on Python {python_there}, "
            f"this notebook Ray {ray_here} on Python {python_here}: both sides need the same "
            f'versions (here: pip install "ray[tune]=={ray_there}" on Python {python_there})'
        )
    if "InvalidAuthToken" in text or "AuthenticationError" in text:
        return (
            f"the Ray cluster at {address.where} uses token authentication and refused this "
            "notebook's token: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH to a file "
            "holding the cluster's token ('ray get-auth-token' on the head prints it), "
            "for example with %env, and run the search again"
        )
    if "Could not find any running Ray instance" in text:
        return (
            "address=auto found no Ray cluster started on this machine: start one with "
            "'ray start --head', or give the head's address as address=host:port"
        )
    return (
        f"could not join the Ray cluster at {address.where} ({_last_line(exc)}): check that "
        "it is running and reachable from this machine"
    )


def _last_line(exc: BaseException) -> str:
    """``Type: last line of the message``, what a long Ray error comes down to."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__


def _ray_temp_dir() -> str:
    """Where Ray keeps its sessions and logs (as Ray finds it on Linux)."""
    base = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    return os.path.join(base, "ray")


def _chain_text(exc: BaseException) -> str:
    parts = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 10:
        parts.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def check_nodes_can_load(ray: Any, payload: Callable[..., Any]) -> None:
    """ConfigError naming the node and what is missing if a node cannot load ``payload``.

    Each alive node unpickles it in a worker, as Ray will for every trial: a module the
    objective (or nbopt) needs that is not installed there fails now, in one line, instead
    of every trial failing with a traceback.
    """
    from ray import cloudpickle
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    blob = ray.put(cloudpickle.dumps(payload))
    load = ray.remote(num_cpus=0, max_retries=0)(_loader())
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    answers = [
        load.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ).remote(blob)
        for node in nodes
    ]
    for node, answer in zip(nodes, answers, strict=True):
        name = f"node {node['NodeManagerAddress']} ({node['NodeID'][:8]})"
        try:
            problem = ray.get(answer, timeout=_LOAD_TIMEOUT_S)
        except Exception as exc:
            raise ConfigError(
                f"{name} of the Ray cluster could not run a task to load the objective "
                f"({type(exc).__name__}): check its logs with 'ray status' on the head"
            ) from None
        if problem is None:
            continue
        kind, detail = problem
        if kind == "module":
            raise ConfigError(
                f"{name} of the Ray cluster has no module {detail!r}, which the objective "
                "needs: install it (and nbopt) in the Python environment of every node, "
                "then run the search again"
            )
        raise ConfigError(
            f"{name} of the Ray cluster cannot load the objective ({detail}): install the "
            "same versions of nbopt and of the packages the objective uses on every node"
        )


def _loader() -> Callable[[bytes], tuple[str, str] | None]:
    """The task that loads the objective on a node, defined in a function so that Ray sends
    it by value: it must run where nbopt itself may be missing."""

    def load(blob: bytes) -> tuple[str, str] | None:
        from ray import cloudpickle

        try:
            cloudpickle.loads(blob)
        except ModuleNotFoundError as exc:
            return "module", exc.name or str(exc)
        except Exception as exc:
            return "error", f"{type(exc).__name__}: {exc}"
        return None

    return load
