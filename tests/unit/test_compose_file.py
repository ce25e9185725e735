"""docker-compose.yml and its scale profile, against the services' own settings.

`make compose-check` validates the file's schema; this checks what a schema cannot:
every variable is a setting of its service, the internal services require the
gateway's service identity and the gateway signs with the same secret, the init job
writes a secret the services accept, and the scale env file wires each service to a
backend of the `scale` profile.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from services.core.identity import read_token_secret
from services.core.settings import InternalServerSettings
from tests.unit.test_k8s_manifests import SETTINGS, unknown_env_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]
SCALE_ENV = ROOT / "deploy" / "compose-scale.env"
TOLLGATE = ("gateway", "ratelimit", "cache", "router", "costs")
INTERNAL = ("ratelimit", "cache", "router", "costs")
BACKENDS = ("redis", "postgres", "qdrant")


def _env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def _environment(name: str) -> dict[str, str | None]:
    environment: dict[str, str | None] = SERVICES[name].get("environment", {})
    return environment


def _mounts(name: str) -> dict[str, str]:
    """Container path to source (volume name or host path) of a service's volumes."""
    mounts = {}
    for volume in SERVICES[name].get("volumes", []):
        source, target, *_ = volume.split(":")
        mounts[target] = source
    return mounts


def _fixed_values(name: str) -> dict[str, str]:
    """The environment the file sets, interpolations replaced by their defaults."""
    values = {}
    for key, value in _environment(name).items():
        if value is None:
            continue
        if value.startswith("${") and ":-" in value:
            value = value.split(":-", 1)[1].removesuffix("}")
        values[key] = value
    return values


@pytest.mark.parametrize("name", TOLLGATE)
def test_env_names_are_fields_of_the_services_settings(name: str) -> None:
    assert unknown_env_names(SETTINGS[name], list(_environment(name))) == []


@pytest.mark.parametrize("name", TOLLGATE)
def test_every_service_loads_with_the_files_own_values(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key, value in _fixed_values(name).items():
        monkeypatch.setenv(key, value)
    if name == "gateway":
        monkeypatch.setenv("TOLLGATE_GATEWAY_KEYS_FILE", str(tmp_path / "keys.yaml"))
    SETTINGS[name]()


@pytest.mark.parametrize("name", TOLLGATE)
def test_the_gateway_and_the_internal_services_share_the_token_secret(
    name: str,
) -> None:
    environment = _environment(name)
    path = environment[f"TOLLGATE_{name.upper()}_SERVICE_TOKEN_SECRET_FILE"]
    assert path is not None
    (directory,) = [d for d in _mounts(name) if Path(path).parent == Path(d)]
    assert _mounts(name)[directory] == "service-token"
    assert SERVICES[name]["volumes"].count(f"service-token:{directory}:ro") == 1
    assert SERVICES[name]["depends_on"]["init"] == {
        "condition": "service_completed_successfully"
    }
    assert _mounts("init")[directory] == "service-token"


@pytest.mark.parametrize("name", INTERNAL)
def test_internal_services_require_identity_with_the_files_settings(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "service-token"
    secret.write_text("x" * 48, encoding="utf-8")
    for key, value in _fixed_values(name).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(
        f"TOLLGATE_{name.upper()}_SERVICE_TOKEN_SECRET_FILE", str(secret)
    )

    settings = SETTINGS[name]()
    assert isinstance(settings, InternalServerSettings)
    policy = settings.identity_policy()

    assert policy.required
    assert policy.allowed_clients == {"gateway"}


def _init_script() -> str:
    command = SERVICES["init"]["command"]
    assert command[:2] == ["python", "-c"]
    script: str = command[2]
    return script


def _run_init(
    path: Path, monkeypatch: pytest.MonkeyPatch, wait_for: str = ""
) -> list[tuple[str, int, int]]:
    """Run the init job's script against ``path``; the chown calls it made."""
    chowned: list[tuple[str, int, int]] = []
    monkeypatch.setattr(os, "chown", lambda p, u, g: chowned.append((p, u, g)))
    monkeypatch.setenv("TOLLGATE_WAIT_FOR", wait_for)
    script = _init_script().replace("/run/tollgate/service-token", str(path))
    exec(compile(script, "init", "exec"), {})  # the job's own code, not a copy
    return chowned


def test_the_init_job_writes_one_lasting_secret_for_the_images_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "service-token"

    chowned = _run_init(path, monkeypatch)
    first = path.read_bytes()
    _run_init(path, monkeypatch)

    assert path.read_bytes() == first  # kept across `up`s: replicas keep agreeing
    assert read_token_secret(None, path) == first.strip()
    assert path.stat().st_mode & 0o777 == 0o400
    assert chowned == [(str(path), 999, 999)]


def test_the_init_job_returns_once_the_backends_accept_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        _run_init(tmp_path / "secret", monkeypatch, wait_for=f"127.0.0.1:{port}")


def test_backends_belong_to_the_scale_profile_and_tollgate_to_every_profile() -> None:
    for name in BACKENDS:
        assert SERVICES[name]["profiles"] == ["scale"], name
    for name in (*TOLLGATE, "simulator", "init"):
        assert "profiles" not in SERVICES[name], name


def test_the_scale_env_file_turns_the_profile_on_and_waits_for_its_backends() -> None:
    values = _env_file(SCALE_ENV)
    assert values["COMPOSE_PROFILES"] == "scale"
    waited = {target.split(":")[0] for target in values["TOLLGATE_WAIT_FOR"].split()}
    assert waited == set(BACKENDS)
    assert "TOLLGATE_WAIT_FOR" in _environment("init")


def test_every_scale_setting_reaches_its_service_and_names_a_scale_backend() -> None:
    values = _env_file(SCALE_ENV)
    settings = {
        key: value
        for key, value in values.items()
        if key.startswith("TOLLGATE_") and key != "TOLLGATE_WAIT_FOR"
    }
    for key, value in settings.items():
        (service,) = [s for s in TOLLGATE if key.startswith(f"TOLLGATE_{s.upper()}_")]
        # Passed through: listed without a value, so the env file's value arrives.
        assert key in _environment(service), key
        assert _environment(service)[key] is None, key
        if "://" in value:
            url = urlsplit(value)
            assert url.hostname in BACKENDS, key
            assert "scale" in SERVICES[url.hostname]["profiles"], key


@pytest.mark.parametrize("name", TOLLGATE)
def test_the_scale_profile_puts_each_services_state_in_a_backend(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key, value in {**_fixed_values(name), **_env_file(SCALE_ENV)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TOLLGATE_GATEWAY_KEYS_FILE", str(tmp_path / "keys.yaml"))

    settings = SETTINGS[name]().model_dump()

    field = {"gateway": "postgres_dsn", "costs": "postgres_dsn"}.get(name, "redis_url")
    assert settings[field], name
    if name == "cache":
        assert (settings["exact_backend"], settings["semantic_backend"]) == (
            "redis",
            "qdrant",
        )
    if name == "gateway":
        assert settings["postgres_schema"] == "gateway"
