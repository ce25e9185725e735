"""The ``tollgate dev`` topology: the simulator and five services as processes.

Used by the CLI and by the end-to-end tests, so the tests start the suite exactly
the way a user does.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

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
DEV_TENANT = "dev"
# Where `tollgate dev --tls` records the client side of its TLS for `tollgate ask`.
CLIENT_TLS_FILE = "client-tls.json"


@dataclass
class SuiteProcess:
    """One child process of the suite."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path


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

    @property
    def gateway_address(self) -> str:
        """Where the gateway listens."""
        return f"127.0.0.1:{self.ports['gateway']}"

    @property
    def http_base_url(self) -> str:
        """The ``base_url`` of the gateway's OpenAI-compatible HTTP door."""
        scheme = "http" if self.client_tls is None else "https"
        return f"{scheme}://127.0.0.1:{self.ports['gateway_http']}/v1"

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

    def stop(self) -> None:
        """Stop every child: SIGTERM, then SIGKILL after 15 seconds."""
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


def _spawn(
    name: str, module: str, port: int, env: dict[str, str], state_dir: Path
) -> SuiteProcess:
    log_dir = state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module, "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return SuiteProcess(name=name, port=port, process=process, log_path=log_path)


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
) -> Suite:
    """Start the simulator (without an OpenAI key) and the five services.

    With ``all_in_one`` the five run in one process (``tollgate serve all``, child
    "all"), each still on its own port, the gateway calling the others in-process.

    With ``tls``, development certificates are made in ``state_dir/tls`` (see
    :mod:`services.devcerts`) and every gRPC hop is mutual TLS: clients of the
    gateway need ``suite.client_tls``, also recorded for ``tollgate ask``.
    """
    ports = {**DEFAULT_PORTS, **(ports or {})}
    state_dir.mkdir(parents=True, exist_ok=True)
    keys_file = write_keys_file(state_dir, api_key)
    (state_dir / "dev-api-key").write_text(api_key, encoding="utf-8")
    os.chmod(state_dir / "dev-api-key", 0o600)
    env = {**(os.environ if base_env is None else base_env), **(extra_env or {})}
    client_tls = None
    if tls:
        tls_env, client_tls = _mtls_env(state_dir)
        env.update(tls_env)
    save_client_tls(state_dir, client_tls)
    use_simulator = not openai_api_key
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
            f"TOLLGATE_{name.upper()}_METRICS_PORT": str(ports[f"{name}_metrics"])
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
            # The development key is the router's admin key too, so the gateway can
            # hold degradation levels while upstream circuits are open.
            "TOLLGATE_GATEWAY_ROUTER_ADMIN_KEY": api_key,
            "TOLLGATE_GATEWAY_OUTBOX_PATH": str(state_dir / "gateway-outbox.sqlite3"),
            "TOLLGATE_GATEWAY_HTTP_PORT": str(ports["gateway_http"]),
            "TOLLGATE_GATEWAY_HTTP_FILES_DIR": str(state_dir / "gateway-files"),
            "TOLLGATE_GATEWAY_OPENAI_BASE_URL": upstream,
            "TOLLGATE_GATEWAY_OPENAI_API_KEY": openai_api_key or "sk-simulator",
        }
    )
    try:
        if use_simulator:
            suite.processes["simulator"] = _spawn(
                "simulator", "services.simulator", ports["simulator"], env, state_dir
            )
        if all_in_one:
            env.update({f"TOLLGATE_{n.upper()}_PORT": str(ports[n]) for n in SERVICES})
            # Ready once the gateway is: it starts after the other four.
            suite.processes["all"] = _spawn(
                "all", "services.allinone", ports["gateway"], env, state_dir
            )
        else:
            for name in SERVICES:
                suite.processes[name] = _spawn(
                    name, f"services.{name}", ports[name], env, state_dir
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
