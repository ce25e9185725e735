"""deploy/k8s: valid for the pinned Kubernetes version, and consistent with itself and
with the services' settings (what a schema cannot see: selectors, ports, env names,
mounts, secret keys, the data files' own formats, who may reach whom)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest
import yaml
from pydantic_settings import BaseSettings

from services.cache.config import CacheSettings
from services.core.settings import InternalServerSettings
from services.costs.config import CostsSettings
from services.gateway.auth import KeysFile
from services.gateway.config import GatewaySettings
from services.ratelimit.config import RateLimitSettings
from services.ratelimit.limits import load_limits
from services.router.config import RouterSettings
from services.simulator.config import SimulatorSettings

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
SETTINGS: dict[str, type[BaseSettings]] = {
    "gateway": GatewaySettings,
    "ratelimit": RateLimitSettings,
    "cache": CacheSettings,
    "router": RouterSettings,
    "costs": CostsSettings,
    "simulator": SimulatorSettings,
}
GRPC_SERVICES = ("gateway", "ratelimit", "cache", "router", "costs")
INTERNAL_SERVICES = ("ratelimit", "cache", "router", "costs")
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
# Settings that name a file local to one pod: the gateway's outbox (DESIGN.md: local
# to each gateway, drained on shutdown), on a volume that outlives container restarts.
POD_LOCAL_PATHS = {"TOLLGATE_GATEWAY_OUTBOX_PATH"}
# Where each service keeps the state its replicas share, and the setting naming it.
SHARED_STATE = {
    "gateway": "TOLLGATE_GATEWAY_POSTGRES_DSN",
    "ratelimit": "TOLLGATE_RATELIMIT_REDIS_URL",
    "cache": "TOLLGATE_CACHE_REDIS_URL",
    "router": "TOLLGATE_ROUTER_REDIS_URL",
    "costs": "TOLLGATE_COSTS_POSTGRES_DSN",
}
Doc = dict[str, Any]


def k8s_version() -> str:
    """The version `make k8s-check` pins, read from the Makefile so both agree."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^K8S_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert match is not None, "Makefile has no K8S_VERSION"
    return match[1]


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def load_docs() -> list[Doc]:
    docs: list[Doc] = []
    for path in manifest_files():
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


DOCS = load_docs()


def of_kind(*kinds: str) -> list[Doc]:
    return [doc for doc in DOCS if doc["kind"] in kinds]


def named(kind: str, name: str) -> Doc:
    matches = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{len(matches)} {kind}s named {name}"
    return matches[0]


def workload(name: str) -> Doc:
    matches = [d for d in of_kind(*WORKLOAD_KINDS) if d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{len(matches)} workloads named {name}"
    return matches[0]


def pod_spec(doc: Doc) -> Doc:
    spec: Doc = doc["spec"]["template"]["spec"]
    return spec


def containers() -> Iterator[tuple[Doc, Doc]]:
    for doc in of_kind(*WORKLOAD_KINDS):
        for container in pod_spec(doc)["containers"]:
            yield doc, container


def tollgate_service(container: Doc) -> str | None:
    """The service a container runs, from its image (tollgate/<service>:<tag>)."""
    match = re.fullmatch(r"tollgate/([a-z]+):[\w.-]+", container["image"])
    return match[1] if match else None


def secret_data(name: str) -> dict[str, str]:
    data: dict[str, str] = named("Secret", name)["stringData"]
    return data


def env_values(container: Doc) -> dict[str, str]:
    """The container's environment, secretKeyRefs resolved from the Secret template."""
    values: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            values[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            values[var["name"]] = secret_data(ref["name"])[ref["key"]]
    return values


def unknown_env_names(settings: type[BaseSettings], names: list[str]) -> list[str]:
    """Env names that no field of ``settings`` reads (nested fields use ``__``)."""
    prefix = str(settings.model_config.get("env_prefix", "")).upper()
    delimiter = settings.model_config.get("env_nested_delimiter")
    unknown = []
    for name in names:
        if not name.startswith(prefix):
            unknown.append(name)
            continue
        path = name.removeprefix(prefix).lower()
        parts = path.split(delimiter) if delimiter else [path]
        model: Any = settings
        for part in parts:
            field = getattr(model, "model_fields", {}).get(part)
            if field is None:
                unknown.append(name)
                break
            model = field.annotation
    return unknown


def persistent_volume_names(doc: Doc) -> set[str]:
    names = {
        volume["name"]
        for volume in pod_spec(doc).get("volumes", [])
        if "persistentVolumeClaim" in volume
    }
    names |= {
        t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])
    }
    return names


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) picks ``labels``."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        value, operator = labels.get(expression["key"]), expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and value is None:
            return False
        if operator == "DoesNotExist" and value is not None:
            return False
    return True


def pod_labels(name: str) -> dict[str, str]:
    labels: dict[str, str] = workload(name)["spec"]["template"]["metadata"]["labels"]
    return labels


def mount_for(container: Doc, path: str) -> Doc | None:
    for mount in container.get("volumeMounts", []):
        if Path(path).is_relative_to(mount["mountPath"]):
            found: Doc = mount
            return found
    return None


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_resource_is_valid_for_the_pinned_kubernetes_version(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, k8s_version(), strict=True)


def test_kustomization_lists_every_manifest_and_every_image() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]
    images = {image["name"] for image in kustomization["images"]}
    used = {c["image"].split(":")[0] for _, c in containers() if tollgate_service(c)}
    assert used == images == {f"tollgate/{name}" for name in SETTINGS}


@pytest.mark.parametrize("name", GRPC_SERVICES)
def test_each_service_has_a_workload_and_a_service_selecting_its_pods(
    name: str,
) -> None:
    pods = workload(name)
    labels = pods["spec"]["template"]["metadata"]["labels"]
    assert pods["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = named("Service", name)
    assert service["spec"]["selector"].items() <= labels.items()


def test_every_service_selects_exactly_one_workload_on_a_declared_port() -> None:
    for service in of_kind("Service"):
        if service["spec"].get("type") == "ExternalName":
            continue
        selector = service["spec"]["selector"].items()
        selected = [
            doc
            for doc in of_kind(*WORKLOAD_KINDS)
            if selector <= doc["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, service["metadata"]["name"]
        ports = {
            port[key]
            for container in pod_spec(selected[0])["containers"]
            for port in container["ports"]
            for key in ("name", "containerPort")
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, service["metadata"]["name"]


@pytest.mark.parametrize("name", GRPC_SERVICES)
def test_probes_and_scrapes_ask_the_ports_the_service_listens_on(name: str) -> None:
    (container,) = pod_spec(workload(name))["containers"]
    env = env_values(container)
    port = int(env[f"TOLLGATE_{name.upper()}_PORT"])
    metrics_port = int(env[f"TOLLGATE_{name.upper()}_METRICS_PORT"])
    expected = {"grpc": port, "metrics": metrics_port}
    if name == "gateway":  # and its OpenAI-compatible HTTP door
        expected["http"] = int(env["TOLLGATE_GATEWAY_HTTP_PORT"])
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == expected
    annotations = workload(name)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(metrics_port)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": port}, probe
    # The port it listens on without the setting, as in its image and DESIGN.md.
    assert SETTINGS[name].model_fields["port"].default == port


def test_every_container_has_requests_and_limits() -> None:
    for doc, container in containers():
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}, (
                doc["metadata"]["name"],
                kind,
            )


def test_env_names_are_fields_of_the_services_settings() -> None:
    checked = set()
    for _, container in containers():
        service = tollgate_service(container)
        if service is None:
            continue
        names = [var["name"] for var in container.get("env", [])]
        assert unknown_env_names(SETTINGS[service], names) == [], service
        checked.add(service)
    assert checked == set(SETTINGS)


def test_the_env_name_check_catches_typos_and_foreign_prefixes() -> None:
    assert unknown_env_names(
        GatewaySettings,
        [
            "TOLLGATE_GATEWAY_RATELIMIT_ADRESS",
            "TOLLGATE_CACHE_PORT",
            "TOLLGATE_GATEWAY_UPSTREAM_BREAKER__FAILURE_THRESHOLD",
            "TOLLGATE_GATEWAY_UPSTREAM_BREAKER__NO_SUCH_FIELD",
        ],
    ) == [
        "TOLLGATE_GATEWAY_RATELIMIT_ADRESS",
        "TOLLGATE_CACHE_PORT",
        "TOLLGATE_GATEWAY_UPSTREAM_BREAKER__NO_SUCH_FIELD",
    ]


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_env_values_load_into_the_settings(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Types, literals and required fields, exactly as the service loads them."""
    (container,) = pod_spec(workload(name))["containers"]
    for key, value in env_values(container).items():
        monkeypatch.setenv(key, value)
    settings = SETTINGS[name]()
    assert settings.model_dump()["host"] == "0.0.0.0"


def test_addresses_and_backend_urls_name_services_and_their_ports() -> None:
    (container,) = pod_spec(workload("gateway"))["containers"]
    env = env_values(container)
    targets = [
        env[f"TOLLGATE_GATEWAY_{downstream.upper()}_ADDRESS"]
        for downstream in INTERNAL_SERVICES
    ]
    upstream = urlsplit(env["TOLLGATE_GATEWAY_OPENAI_BASE_URL"])
    targets.append(f"{upstream.hostname}:{upstream.port}")
    for _, other in containers():
        for key, value in env_values(other).items():
            if key.endswith(("_REDIS_URL", "_QDRANT_URL", "_POSTGRES_DSN")):
                url = urlsplit(value)
                targets.append(f"{url.hostname}:{url.port}")
    hosts = {target.split(":")[0] for target in targets}
    assert hosts == {*INTERNAL_SERVICES, "simulator", "redis", "postgres", "qdrant"}
    for target in targets:
        host, port = target.split(":")
        ports = [p["port"] for p in named("Service", host)["spec"]["ports"]]
        assert int(port) in ports, target


def test_postgres_and_qdrant_are_external_services() -> None:
    for name in ("postgres", "qdrant"):
        service = named("Service", name)["spec"]
        assert service["type"] == "ExternalName"
        assert service["externalName"]
        assert not any(d["metadata"]["name"] == name for d in of_kind(*WORKLOAD_KINDS))


def test_ratelimit_replicas_setting_matches_the_deployment() -> None:
    deployment = workload("ratelimit")
    (container,) = pod_spec(deployment)["containers"]
    env = env_values(container)
    assert int(env["TOLLGATE_RATELIMIT_REPLICAS"]) == deployment["spec"]["replicas"]
    # Replicas share their buckets only through Redis.
    assert env["TOLLGATE_RATELIMIT_REDIS_URL"].startswith("redis://")


def test_paths_in_env_lie_on_mounts_and_pod_state_on_its_own_volume() -> None:
    for doc, container in containers():
        volumes = {v["name"]: v for v in pod_spec(doc).get("volumes", [])}
        for key, value in env_values(container).items():
            if not value.startswith("/"):
                continue
            mount = mount_for(container, value)
            assert mount is not None, f"{key}={value} is on no volume"
            if key in POD_LOCAL_PATHS:
                assert "emptyDir" in volumes[mount["name"]], key
                continue
            # A file from a ConfigMap or Secret: one of the items projected there.
            source = volumes[mount["name"]]
            items = (source.get("configMap") or source.get("secret"))["items"]
            relative = str(Path(value).relative_to(mount["mountPath"]))
            assert relative in [item["path"] for item in items], key


def test_volumes_claims_and_keys_all_exist() -> None:
    claims = {d["metadata"]["name"] for d in of_kind("PersistentVolumeClaim")}
    config_maps = {d["metadata"]["name"]: d["data"] for d in of_kind("ConfigMap")}
    secrets = {d["metadata"]["name"]: d["stringData"] for d in of_kind("Secret")}
    for doc, container in containers():
        volumes = {v["name"]: v for v in pod_spec(doc).get("volumes", [])}
        templates = {
            t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])
        }
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes.keys() | templates, mount["name"]
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            if "configMap" in volume:
                data = config_maps[volume["configMap"]["name"]]
                assert {i["key"] for i in volume["configMap"]["items"]} <= data.keys()
            if "secret" in volume:
                data = secrets[volume["secret"]["secretName"]]
                assert {i["key"] for i in volume["secret"]["items"]} <= data.keys()
        for var in container.get("env", []):
            if "valueFrom" in var:
                ref = var["valueFrom"]["secretKeyRef"]
                assert ref["key"] in secrets[ref["name"]], var["name"]


@pytest.mark.parametrize("name", sorted(SHARED_STATE))
def test_every_service_keeps_shared_state_in_a_backend_and_runs_replicas(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No SQLite or Qdrant Edge file, no persistent volume: replicas share backends."""
    doc = workload(name)
    (container,) = pod_spec(doc)["containers"]
    env = env_values(container)
    assert SHARED_STATE[name] in env
    assert persistent_volume_names(doc) == set()
    assert doc["kind"] == "Deployment"
    assert doc["spec"].get("strategy", {}).get("type") != "Recreate"
    if name == "gateway":  # the autoscaler owns its count
        assert "replicas" not in doc["spec"]
    else:
        assert doc["spec"]["replicas"] >= 2
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = SETTINGS[name]().model_dump()
    if name == "cache":
        assert (settings["exact_backend"], settings["semantic_backend"]) == (
            "redis",
            "qdrant",
        )


def test_the_gateway_is_a_stateless_deployment_with_an_autoscaler() -> None:
    gateway = workload("gateway")
    (container,) = pod_spec(gateway)["containers"]
    env = env_values(container)
    assert "TOLLGATE_GATEWAY_BATCH_STORE_PATH" not in env
    assert env["TOLLGATE_GATEWAY_POSTGRES_SCHEMA"] == "gateway"
    hpa = named("HorizontalPodAutoscaler", "gateway")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "gateway")
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    pdb = named("PodDisruptionBudget", "gateway")
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_config_files_parse_with_the_services_own_loaders(tmp_path: Path) -> None:
    limits = tmp_path / "limits.yaml"
    limits.write_text(named("ConfigMap", "tollgate-files")["data"]["limits.yaml"])
    rules = load_limits(limits)
    assert rules.tiers["free"].rpm == 20
    assert set(rules.models) == {"gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano"}

    secrets = secret_data("tollgate-secrets")
    keys = KeysFile.model_validate(yaml.safe_load(secrets["keys.yaml"]))
    assert [key.tenant_id for key in keys.keys] == ["example"]
    # The template refuses admin RPCs until an operator adds digests.
    assert json.loads(secrets["admin-key-sha256s"]) == []


@pytest.mark.parametrize("name", INTERNAL_SERVICES)
def test_internal_services_answer_only_the_gateways_identity(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The four require a service token; the gateway signs with the same secret."""
    refs = {}
    for service in (name, "gateway"):
        (container,) = pod_spec(workload(service))["containers"]
        (var,) = [
            v
            for v in container["env"]
            if v["name"] == f"TOLLGATE_{service.upper()}_SERVICE_TOKEN_SECRET"
        ]
        refs[service] = var["valueFrom"]["secretKeyRef"]
        for key, value in env_values(container).items():
            monkeypatch.setenv(key, value)
    assert refs[name] == refs["gateway"]

    settings = SETTINGS[name]()
    assert isinstance(settings, InternalServerSettings)
    policy = settings.identity_policy()
    signer = GatewaySettings().service_token_signer()
    assert policy.required
    assert policy.allowed_clients == {"gateway"}
    assert signer is not None and signer.name == "gateway"


@pytest.mark.parametrize("name", INTERNAL_SERVICES)
def test_network_policy_lets_only_the_gateway_reach_the_grpc_port(name: str) -> None:
    labels = pod_labels(name)
    policies = [
        p for p in of_kind("NetworkPolicy") if selects(p["spec"]["podSelector"], labels)
    ]
    assert len(policies) == 1, name
    spec = policies[0]["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    grpc_rules = [
        rule
        for rule in spec["ingress"]
        if any(port["port"] == "grpc" for port in rule["ports"])
    ]
    (rule,) = grpc_rules
    peers = rule["from"]
    assert all(set(peer) == {"podSelector"} for peer in peers)  # this namespace only
    for other in of_kind(*WORKLOAD_KINDS):
        other_name = other["metadata"]["name"]
        admitted = any(
            selects(peer["podSelector"], pod_labels(other_name)) for peer in peers
        )
        assert admitted == (other_name == "gateway"), other_name
    # What any source may reach: the metrics port, nothing else.
    for open_rule in spec["ingress"]:
        if "from" not in open_rule:
            assert [port["port"] for port in open_rule["ports"]] == ["metrics"]
    # The port names exist on the container.
    (container,) = pod_spec(workload(name))["containers"]
    assert {"grpc", "metrics"} <= {port["name"] for port in container["ports"]}


def test_no_network_policy_fences_off_the_gateway() -> None:
    labels = pod_labels("gateway")
    assert not [
        p for p in of_kind("NetworkPolicy") if selects(p["spec"]["podSelector"], labels)
    ]
