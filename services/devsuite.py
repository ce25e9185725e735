"""The ``tollgate dev`` topology: the simulator and five services as processes.

Used by the CLI and by the end-to-end tests, so the tests start the suite exactly
the way a user does.

``scale`` (``tollgate dev --scale``) starts the scaled-out shape instead: two
gateways, two ratelimit and two costs replicas, one router and one cache, with
their shared state in one Redis database and one Postgres schema claimed for the
run (:class:`ScaleState`), and mutual TLS on every hop.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core.clock import Clock, SystemClock
from services.core.tls import ClientTls, sync_channel
from services.gateway.auth import hash_key

SERVICES = ("ratelimit", "cache", "router", "costs", "gateway")
DEFAULT_PORTS = {
    "gateway": 50051,
    # The gateway's OpenAI-compatible HTTP door (base_url http://127.0.0.1:8080/v1).
    "gateway_http": 8080,
    "ratelimit": 50052,
    "cache": 50053,
    "router": 50054,
    "costs": 50055,
    "simulator": 8089,
    # Prometheus endpoints (GET /metrics): each service's gRPC port plus 1000.
    "gateway_metrics": 51051,
    "ratelimit_metrics": 51052,
    "cache_metrics": 51053,
    "router_metrics": 51054,
    "costs_metrics": 51055,
}
# `tollgate dev --scale`: the second replica of each scaled service, 100 above the
# first (HTTP door and metrics too).
REPLICATED = ("ratelimit", "costs", "gateway")
SCALE_PORTS = {
    "gateway-2": 50151,
    "gateway-2_http": 8180,
    "ratelimit-2": 50152,
    "costs-2": 50155,
    "gateway-2_metrics": 51151,
    "ratelimit-2_metrics": 51152,
    "costs-2_metrics": 51155,
}
DEV_TENANT = "dev"
# Where `tollgate dev --tls` records the client side of its TLS for `tollgate ask`.
CLIENT_TLS_FILE = "client-tls.json"
# The Redis key that marks a database as claimed by one `tollgate dev --scale` run.
REDIS_CLAIM_KEY = "tollgate:dev-scale:claim"

# A child that dies is restarted after 1 s, then 2, 4, ... up to 30 s while it keeps
# dying; one that stayed up a minute starts again from 1 s.
RESTART_INITIAL_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
RESTART_RESET_AFTER_SECONDS = 60.0


class PortBusyError(Exception):
    """A port the suite needs is taken (or given to two parts at once)."""

    def __init__(self, name: str, port: int, other: str | None = None) -> None:
        self.name = name
        self.port = port
        held_by = f"also given to {other}" if other else "already in use"
        super().__init__(f"port {port} ({name}) is {held_by}")


class ScaleBackendError(Exception):
    """Redis or Postgres of ``--scale`` cannot be reached or claimed."""


@dataclass
class SuiteProcess:
    """One child process of the suite, and how to start it again."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScaleBackends:
    """Where ``--scale`` keeps shared state: a Redis server and a Postgres database.

    Attributes:
        redis_url: ``redis://host:port``; a database in the path is used only if it
            is empty, otherwise the highest-numbered empty one is claimed.
        postgres_dsn: libpq connection string or URL ("" means libpq's defaults:
            the PG* variables, the local socket, a database named after the user).
    """

    redis_url: str = "redis://127.0.0.1:6379"
    postgres_dsn: str = ""


@dataclass(frozen=True)
class ScaleState:
    """The Redis database and Postgres schema one scaled run claimed for itself."""

    redis_url: str
    """The Redis URL with the claimed database (``redis://host:port/<db>``)."""
    redis_claim: str
    """The value of :data:`REDIS_CLAIM_KEY` proving the database is this run's."""
    postgres_dsn: str
    """The Postgres DSN as given."""
    postgres_schema: str
    """The schema made for this run."""

    @property
    def schema_dsn(self) -> str:
        """``postgres_dsn`` with ``search_path`` set to the run's schema."""
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        options = conninfo_to_dict(self.postgres_dsn).get("options") or ""
        search_path = f"-c search_path={self.postgres_schema}"
        return make_conninfo(
            self.postgres_dsn, options=f"{options} {search_path}".strip()
        )


def _with_redis_db(url: str, db: int) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{db}"))


def _claim_redis_db(url: str, run_id: str) -> str:
    """Claim an empty Redis database: the URL's own, else the highest free one."""
    import redis

    path = urllib.parse.urlsplit(url).path.strip("/")
    candidates = [int(path)] if path else list(range(15, 0, -1))
    for db in candidates:
        candidate = _with_redis_db(url, db)
        try:
            with redis.Redis.from_url(candidate, socket_timeout=3) as client:
                if client.dbsize() != 0:
                    continue
                # SET NX: of two runs looking at once, only one claims it.
                if client.set(REDIS_CLAIM_KEY, run_id, nx=True):
                    return candidate
        except redis.ResponseError:
            continue  # beyond the server's number of databases
        except redis.RedisError as error:
            raise ScaleBackendError(
                f"Redis at {url} cannot be reached ({error}); start it or pass "
                "--redis-url"
            ) from error
    which = (
        f"database {candidates[0]} is not empty"
        if path
        else "no database in 1..15 is empty"
    )
    raise ScaleBackendError(f"Redis at {url}: {which}; nothing was touched")


def _release_redis_db(url: str, claim: str) -> None:
    """Empty the claimed database, if it is still this run's."""
    import redis

    try:
        with redis.Redis.from_url(url, socket_timeout=3) as client:
            if client.get(REDIS_CLAIM_KEY) == claim.encode():
                client.flushdb()
    except redis.RedisError as error:
        print(f"could not empty Redis {url}: {error}", file=sys.stderr)


def claim_scale_state(backends: ScaleBackends) -> ScaleState:
    """Claim an empty Redis database and make a fresh Postgres schema for one run.

    Raises:
        ScaleBackendError: Redis or Postgres cannot be reached, or Redis has no
            empty database.
    """
    import psycopg
    from psycopg import sql

    run_id = f"{time.strftime('%Y%m%d%H%M%S')}_{secrets.token_hex(3)}"
    redis_url = _claim_redis_db(backends.redis_url, run_id)
    schema = f"tollgate_dev_{run_id}"
    try:
        with psycopg.connect(
            backends.postgres_dsn, autocommit=True, connect_timeout=5
        ) as connection:
            connection.execute(
                sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema))
            )
    except psycopg.Error as error:
        _release_redis_db(redis_url, run_id)
        shown = backends.postgres_dsn or "(libpq defaults)"
        raise ScaleBackendError(
            f"Postgres {shown}: cannot make a schema ({' '.join(str(error).split())}); "
            "start it or pass --postgres-dsn"
        ) from error
    return ScaleState(redis_url, run_id, backends.postgres_dsn, schema)


def release_scale_state(state: ScaleState) -> None:
    """Drop the run's schema and empty its Redis database."""
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(
            state.postgres_dsn, autocommit=True, connect_timeout=5
        ) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(state.postgres_schema)
                )
            )
    except psycopg.Error as error:
        print(
            f"could not drop schema {state.postgres_schema}: {error}", file=sys.stderr
        )
    _release_redis_db(state.redis_url, state.redis_claim)


@dataclass
class Suite:
    """A running suite."""

    state_dir: Path
    api_key: str
    ports: dict[str, int]
    upstream_base_url: str
    processes: dict[str, SuiteProcess] = field(default_factory=dict)
    client_tls: ClientTls | None = None
    """Mutual TLS of clients of the suite (CA and client certificate), when on."""
    scale: ScaleState | None = None
    """The shared state of ``--scale``, dropped by :meth:`stop`; None otherwise."""

    @property
    def gateway_address(self) -> str:
        """Where the (first) gateway listens."""
        return f"127.0.0.1:{self.ports['gateway']}"

    @property
    def http_base_url(self) -> str:
        """The ``base_url`` of the gateway's OpenAI-compatible HTTP door."""
        return self.http_url("gateway")

    def http_url(self, gateway: str) -> str:
        """The ``base_url`` of the HTTP door of ``gateway`` ("gateway-2", ...)."""
        scheme = "http" if self.client_tls is None else "https"
        return f"{scheme}://127.0.0.1:{self.ports[f'{gateway}_http']}/v1"

    def stop_service(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop one child (SIGTERM drains gracefully; SIGKILL does not)."""
        child = self.processes[name]
        if child.process.poll() is None:
            child.process.send_signal(sig)
            try:
                child.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()

    def restart(self, name: str) -> SuiteProcess:
        """Start a child that exited again: same command, environment, port, log."""
        old = self.processes[name]
        if old.process.poll() is None:
            raise RuntimeError(f"{name} is still running")
        child = _launch(old.name, old.port, old.args, old.env, old.log_path)
        self.processes[name] = child
        return child

    def stop(self) -> None:
        """Stop every child (SIGTERM, SIGKILL after 15 s); drop ``--scale`` state."""
        for child in self.processes.values():
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in self.processes.values():
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        if self.scale is not None:
            release_scale_state(self.scale)
            self.scale = None


def make_dev_key(configured: str | None) -> str:
    """The development API key: the configured one, or a fresh random one."""
    return configured or f"tg_dev_{secrets.token_urlsafe(24)}"


def write_keys_file(state_dir: Path, api_key: str) -> Path:
    """Store the key's hash (never the key) in a keys file for the gateway."""
    path = state_dir / "keys.yaml"
    entry = {
        "sha256": hash_key(api_key),
        "tenant_id": DEV_TENANT,
        "service": "chat",
        "user_id": "dev-user",
        "user_tier": "paid",
    }
    path.write_text(yaml.safe_dump({"keys": [entry]}), encoding="utf-8")
    return path


def save_client_tls(state_dir: Path, tls: ClientTls | None) -> None:
    """Record (or, with None, forget) the client side of the suite's TLS."""
    path = state_dir / CLIENT_TLS_FILE
    if tls is None:
        path.unlink(missing_ok=True)
        return
    files = {
        "ca_file": tls.ca_file,
        "cert_file": tls.cert_file,
        "key_file": tls.key_file,
    }
    path.write_text(
        json.dumps({k: str(v.resolve()) for k, v in files.items() if v}),
        encoding="utf-8",
    )


def load_client_tls(state_dir: Path) -> ClientTls | None:
    """The client TLS recorded by :func:`save_client_tls`, or None."""
    path = state_dir / CLIENT_TLS_FILE
    if not path.is_file():
        return None
    files = json.loads(path.read_text(encoding="utf-8"))
    return ClientTls(
        Path(files["ca_file"]),
        Path(files["cert_file"]) if "cert_file" in files else None,
        Path(files["key_file"]) if "key_file" in files else None,
    )


def _mtls_env(state_dir: Path) -> tuple[dict[str, str], ClientTls]:
    """Make (or reuse) dev certificates: every server mutual TLS, every client too."""
    from services.devcerts import ensure_dev_certs

    certs = ensure_dev_certs(state_dir / "tls", SERVICES)
    env: dict[str, str] = {}
    for name in SERVICES:
        prefix = f"TOLLGATE_{name.upper()}_TLS_"
        env[f"{prefix}CERT_FILE"] = str(certs.cert_file(name))
        env[f"{prefix}KEY_FILE"] = str(certs.key_file(name))
        env[f"{prefix}CLIENT_CA_FILE"] = str(certs.ca_file)
    # The gateway presents its own certificate to the services it calls.
    env["TOLLGATE_GATEWAY_DOWNSTREAM_TLS_CA_FILE"] = str(certs.ca_file)
    env["TOLLGATE_GATEWAY_DOWNSTREAM_TLS_CERT_FILE"] = str(certs.cert_file("gateway"))
    env["TOLLGATE_GATEWAY_DOWNSTREAM_TLS_KEY_FILE"] = str(certs.key_file("gateway"))
    return env, certs.client_tls()


def _service_identity_env() -> dict[str, str]:
    """Settings of the per-RPC service identity checks (issue #15, point 6).

    SERVICE IDENTITY: the scaled suite runs with mutual TLS (every hop presents a
    certificate of the dev CA). The allow-list / service-token settings of the
    internal services, once they exist, are returned here, so that ``--scale``
    turns them on for every replica.
    """
    return {}


def _scaled_env(scale: ScaleState, ports: dict[str, int]) -> dict[str, str]:
    """Shared state on Redis and Postgres; gateways balancing over the replicas."""

    def replicas(service: str) -> str:
        # gRPC's own multi-address target, balanced by the client's round_robin
        # policy; a replica that is down is skipped.
        both = ",".join(f"127.0.0.1:{ports[n]}" for n in (service, f"{service}-2"))
        return f"ipv4:{both}"

    return {
        "TOLLGATE_RATELIMIT_REDIS_URL": scale.redis_url,
        "TOLLGATE_RATELIMIT_REPLICAS": "2",
        "TOLLGATE_ROUTER_REDIS_URL": scale.redis_url,
        "TOLLGATE_CACHE_EXACT_BACKEND": "redis",
        "TOLLGATE_CACHE_REDIS_URL": scale.redis_url,
        "TOLLGATE_COSTS_POSTGRES_DSN": scale.schema_dsn,
        "TOLLGATE_GATEWAY_POSTGRES_DSN": scale.postgres_dsn,
        "TOLLGATE_GATEWAY_POSTGRES_SCHEMA": scale.postgres_schema,
        "TOLLGATE_GATEWAY_RATELIMIT_ADDRESS": replicas("ratelimit"),
        "TOLLGATE_GATEWAY_COSTS_ADDRESS": replicas("costs"),
        # A multi-address target names no host: check every downstream certificate
        # for "localhost", which each dev certificate carries.
        "TOLLGATE_GATEWAY_DOWNSTREAM_TLS_SERVER_NAME": "localhost",
        **_service_identity_env(),
    }


def _children(scale: bool) -> list[tuple[str, str]]:
    """(child name, service) in start order; the gateways last."""
    children = []
    for service in SERVICES:
        children.append((service, service))
        if scale and service in REPLICATED:
            children.append((f"{service}-2", service))
    return children


def _child_env(
    name: str,
    service: str,
    ports: dict[str, int],
    state_dir: Path,
    env: dict[str, str],
    scale: bool,
) -> dict[str, str]:
    """What differs between replicas of one service: ports and local files.

    The gateways' batch and key stores go in ``state_dir`` unless ``env`` already
    places them (they are unused when the gateway's Postgres is set).
    """
    prefix = f"TOLLGATE_{service.upper()}_"
    child = {f"{prefix}METRICS_PORT": str(ports[f"{name}_metrics"])}
    if service == "gateway":
        child[f"{prefix}HTTP_PORT"] = str(ports[f"{name}_http"])
        child[f"{prefix}OUTBOX_PATH"] = str(state_dir / f"{name}-outbox.sqlite3")
        child[f"{prefix}HTTP_FILES_DIR"] = str(state_dir / f"{name}-files")
        stores = {
            f"{prefix}BATCH_STORE_PATH": state_dir / f"{name}-batches.sqlite3",
            # Shared by the gateways of one machine.
            f"{prefix}KEY_STORE_PATH": state_dir / "gateway-keys.sqlite3",
        }
        child.update({k: str(v) for k, v in stores.items() if k not in env})
    if scale and service == "cache":
        child[f"{prefix}STATE_DIR"] = str(state_dir / "cache")
    return child


def _port_taken(port: int) -> bool:
    with socket.socket() as probe:
        # TIME_WAIT leftovers of a previous run do not count; a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def check_ports(ports: dict[str, int]) -> None:
    """Refuse before starting anything when a port is taken or given twice.

    Every gRPC server binds with SO_REUSEPORT, so a second suite on the same ports
    would otherwise start and silently share them with the first.

    Raises:
        PortBusyError: naming the first such port.
    """
    owners: dict[int, str] = {}
    for name, port in ports.items():
        if port in owners:
            raise PortBusyError(name, port, owners[port])
        owners[port] = name
    for name, port in ports.items():
        if _port_taken(port):
            raise PortBusyError(name, port)


def _launch(
    name: str, port: int, args: list[str], env: dict[str, str], log_path: Path
) -> SuiteProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            args,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return SuiteProcess(name, port, process, log_path, args, env)


def _spawn(
    name: str, module: str, port: int, env: dict[str, str], state_dir: Path
) -> SuiteProcess:
    args = [sys.executable, "-m", module, "--port", str(port)]
    return _launch(name, port, args, env, state_dir / "logs" / f"{name}.log")


def start_suite(
    state_dir: Path,
    api_key: str,
    *,
    ports: dict[str, int] | None = None,
    openai_api_key: str | None = None,
    openai_base_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    base_env: dict[str, str] | None = None,
    tls: bool = False,
    all_in_one: bool = False,
    scale: ScaleBackends | None = None,
) -> Suite:
    """Start the simulator (without an OpenAI key) and the five services.

    With ``all_in_one`` the five run in one process (``tollgate serve all``, child
    "all"), each still on its own port, the gateway calling the others in-process.

    With ``tls``, development certificates are made in ``state_dir/tls`` (see
    :mod:`services.devcerts`) and every gRPC hop is mutual TLS: clients of the
    gateway need ``suite.client_tls``, also recorded for ``tollgate ask``.

    With ``scale``, the scaled topology (module docstring), always with mutual TLS;
    its Redis database and Postgres schema are claimed here and dropped by
    :meth:`Suite.stop`.

    Raises:
        PortBusyError: a port is taken; nothing was started.
        ScaleBackendError: Redis or Postgres of ``scale`` cannot be used.
        RuntimeError: a child exited before it was ready (its log is quoted).
        TimeoutError: a child was not ready within a minute.
    """
    if scale is not None and all_in_one:
        raise ValueError("scale and all_in_one exclude each other")
    ports = {**DEFAULT_PORTS, **(SCALE_PORTS if scale else {}), **(ports or {})}
    use_simulator = not openai_api_key
    children = [("all", "all")] if all_in_one else _children(scale is not None)
    needed = ["simulator"] if use_simulator else []
    for name, _ in children:
        if name == "all":
            needed += [p for p in DEFAULT_PORTS if p != "simulator"]
        else:
            needed += [name, f"{name}_metrics"]
            needed += [f"{name}_http"] if name.startswith("gateway") else []
    check_ports({name: ports[name] for name in needed})
    state_dir.mkdir(parents=True, exist_ok=True)
    keys_file = write_keys_file(state_dir, api_key)
    (state_dir / "dev-api-key").write_text(api_key, encoding="utf-8")
    os.chmod(state_dir / "dev-api-key", 0o600)
    env = {**(os.environ if base_env is None else base_env), **(extra_env or {})}
    # One process per gateway in dev (its replicas are the separate processes);
    # extra_env may ask for more (bench/peers.py's worker cells).
    env["TOLLGATE_WORKERS"] = (extra_env or {}).get("TOLLGATE_WORKERS", "1")
    client_tls = None
    if tls or scale is not None:
        tls_env, client_tls = _mtls_env(state_dir)
        env.update(tls_env)
    save_client_tls(state_dir, client_tls)
    upstream = (
        f"http://127.0.0.1:{ports['simulator']}/v1"
        if use_simulator
        else (openai_base_url or "https://api.openai.com/v1")
    )
    suite = Suite(
        state_dir=state_dir,
        api_key=api_key,
        ports=ports,
        upstream_base_url=upstream,
        client_tls=client_tls,
    )
    # The development key is also the admin key of every service in dev.
    admin_digests = json.dumps([hash_key(api_key)])
    env.update(
        {
            f"TOLLGATE_{name.upper()}_ADMIN_KEY_SHA256S": admin_digests
            for name in SERVICES
        }
    )
    env.update(
        {
            "TOLLGATE_COSTS_DATABASE_PATH": str(state_dir / "costs.sqlite3"),
            "TOLLGATE_GATEWAY_RATELIMIT_ADDRESS": f"127.0.0.1:{ports['ratelimit']}",
            "TOLLGATE_GATEWAY_CACHE_ADDRESS": f"127.0.0.1:{ports['cache']}",
            "TOLLGATE_GATEWAY_ROUTER_ADDRESS": f"127.0.0.1:{ports['router']}",
            "TOLLGATE_GATEWAY_COSTS_ADDRESS": f"127.0.0.1:{ports['costs']}",
            "TOLLGATE_GATEWAY_KEYS_FILE": str(keys_file),
            # Keys made with `tollgate keys create`, shared by every gateway replica
            # (in Postgres instead under --scale); the dev key sets their budgets.
            "TOLLGATE_GATEWAY_KEY_STORE_PATH": str(state_dir / "gateway-keys.sqlite3"),
            "TOLLGATE_GATEWAY_COSTS_ADMIN_KEY": api_key,
            # The development key is the router's admin key too, so the gateway can
            # hold degradation levels while upstream circuits are open.
            "TOLLGATE_GATEWAY_ROUTER_ADMIN_KEY": api_key,
            "TOLLGATE_GATEWAY_OPENAI_BASE_URL": upstream,
            "TOLLGATE_GATEWAY_OPENAI_API_KEY": openai_api_key or "sk-simulator",
        }
    )
    try:
        if scale is not None:
            suite.scale = claim_scale_state(scale)
            env.update(_scaled_env(suite.scale, ports))
        if use_simulator:
            suite.processes["simulator"] = _spawn(
                "simulator", "services.simulator", ports["simulator"], env, state_dir
            )
        if all_in_one:
            env.update({f"TOLLGATE_{n.upper()}_PORT": str(ports[n]) for n in SERVICES})
            for n in SERVICES:
                env.update(_child_env(n, n, ports, state_dir, env, scale=False))
            # Ready once the gateway is: it starts after the other four.
            suite.processes["all"] = _spawn(
                "all", "services.allinone", ports["gateway"], env, state_dir
            )
        else:
            for name, service in children:
                child_env = {
                    **env,
                    **_child_env(
                        name, service, ports, state_dir, env, scale is not None
                    ),
                }
                suite.processes[name] = _spawn(
                    name, f"services.{service}", ports[name], child_env, state_dir
                )
        wait_until_ready(suite)
    except BaseException:
        suite.stop()
        raise
    return suite


def service_ready(
    port: int, timeout: float = 1.0, tls: ClientTls | None = None
) -> bool:
    """Whether the gRPC service on ``port`` answers SERVING to a health check."""
    with sync_channel(f"127.0.0.1:{port}", tls) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def _simulator_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/_sim/stats", timeout=1
        ) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_until_ready(suite: Suite, timeout: float = 60.0) -> None:
    """Block until every child answers; raise with the log of one that did not."""
    deadline = time.monotonic() + timeout
    for name, child in suite.processes.items():
        while True:
            if child.process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {child.process.returncode}; "
                    f"see {child.log_path}:\n{child.log_path.read_text()[-2000:]}"
                )
            ready = (
                _simulator_ready(child.port)
                if name == "simulator"
                else service_ready(child.port, tls=suite.client_tls)
            )
            if ready:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready; see {child.log_path}")
            time.sleep(0.1)


def restart_delay(failures: int) -> float:
    """Seconds before restarting a child that died ``failures`` times in a row."""
    exponent = max(0, failures - 1)
    return min(RESTART_MAX_SECONDS, RESTART_INITIAL_SECONDS * 2.0**exponent)


def describe_exit(returncode: int) -> str:
    """How a child ended: "signal SIGKILL" or "exit code 1"."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


class Supervisor:
    """Restarts the children of a suite that die, with backoff, saying so.

    Call :meth:`tick` every half second or so: it notices children that exited,
    schedules their restart after :func:`restart_delay`, and restarts those due.
    A child that stayed up :data:`RESTART_RESET_AFTER_SECONDS` counts as healthy
    again. It never blocks: a restarted child is not waited for.
    """

    def __init__(
        self,
        suite: Suite,
        say: Callable[[str], None],
        clock: Clock | None = None,
    ) -> None:
        self._suite = suite
        self._say = say
        self._clock = clock or SystemClock()
        now = self._clock.monotonic()
        self._started = dict.fromkeys(suite.processes, now)
        self._failures = dict.fromkeys(suite.processes, 0)
        self._due: dict[str, float] = {}

    def tick(self) -> None:
        """Handle every exited child once: schedule it, or restart it if due."""
        now = self._clock.monotonic()
        for name, child in list(self._suite.processes.items()):
            if name in self._due:
                if now >= self._due[name]:
                    del self._due[name]
                    restarted = self._suite.restart(name)
                    self._started[name] = now
                    self._say(
                        f"{name} restarted (pid {restarted.process.pid}, "
                        f"restart {self._failures[name]})"
                    )
                continue
            returncode = child.process.poll()
            if returncode is None:
                continue
            if now - self._started.get(name, now) >= RESTART_RESET_AFTER_SECONDS:
                self._failures[name] = 0
            self._failures[name] = self._failures.get(name, 0) + 1
            delay = restart_delay(self._failures[name])
            self._due[name] = now + delay
            self._say(
                f"{name} exited with {describe_exit(returncode)}; restarting in "
                f"{delay:g}s (see {child.log_path})"
            )
