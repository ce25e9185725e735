from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import subprocess
from pathlib import Path

import grpc
import pytest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from services.core import metrics

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "tollgate.json"
DOC = Path(__file__).resolve().parents[3] / "docs" / "observability.md"
REPO = Path(__file__).resolve().parents[3]
# Labels that would make a series per tenant, user, key or request.
FORBIDDEN_LABELS = {"tenant", "tenant_id", "user", "user_id", "key", "request_id"}
_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
}
_SELECTOR = re.compile(r"\b((?:tollgate|process)_[a-z_]+)(\{[^}]*\})?")
_LABEL_MATCHER = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|on|group_left)\s*\(([^)]*)\)")
# Labels Prometheus adds to every scraped series: the scrape job and the target.
_TARGET_LABELS = {"job", "instance"}
# The standard process series every service exports (prometheus_client, Linux).
PROCESS_SERIES = {
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
}


def _catalogue() -> dict[str, tuple[str, set[str]]]:
    """Every metric of the catalogue: name to (type, label names)."""
    return {
        wrapper._name: (str(wrapper._type), set(wrapper._labelnames))
        for wrapper in vars(metrics).values()
        if isinstance(wrapper, MetricWrapperBase)
    }


def _samples() -> dict[str, set[str]]:
    """Label names of every sample name the catalogue and the process expose."""
    samples: dict[str, set[str]] = {name: set() for name in PROCESS_SERIES}
    for name, (kind, labels) in _catalogue().items():
        for suffix in _SUFFIXES[kind]:
            samples[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return samples


def _scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _dashboard_expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        target["expr"]
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def test_every_metric_is_named_tollgate_and_carries_no_tenant_or_user_label() -> None:
    catalogue = _catalogue()

    assert len(catalogue) >= 15
    registered = {family.name for family in metrics.REGISTRY.collect()}
    for name, (_, labels) in catalogue.items():
        assert name.startswith("tollgate_"), name
        assert name.removesuffix("_total") in registered, name
        assert not labels & FORBIDDEN_LABELS, (name, labels)


def test_an_rpc_is_counted_and_timed_by_service_method_and_code() -> None:
    key = (
        ("code", "RESOURCE_EXHAUSTED"),
        ("method", "/pkg.Service/Method"),
        ("service", "unit"),
    )
    before = _scrape()

    metrics.observe_rpc(
        "unit", "/pkg.Service/Method", grpc.StatusCode.RESOURCE_EXHAUSTED, 0.003
    )

    after = _scrape()
    count = ("tollgate_rpc_requests_total", key)
    assert after[count] == before.get(count, 0) + 1
    in_5ms = (
        "tollgate_rpc_duration_seconds_bucket",
        (*key[:1], ("le", "0.005"), *key[1:]),
    )
    in_1ms = (
        "tollgate_rpc_duration_seconds_bucket",
        (*key[:1], ("le", "0.001"), *key[1:]),
    )
    assert after[in_5ms] == before.get(in_5ms, 0) + 1
    assert after[in_1ms] == before.get(in_1ms, 0)


def test_scrape_callbacks_set_gauges_until_removed() -> None:
    state = {"degraded": True}

    def report() -> None:
        metrics.RATELIMIT_DEGRADED.set(state["degraded"])

    metrics.on_scrape(report)
    try:
        assert _scrape()[("tollgate_ratelimit_degraded", ())] == 1
        state["degraded"] = False
        assert _scrape()[("tollgate_ratelimit_degraded", ())] == 0
    finally:
        metrics.off_scrape(report)
    state["degraded"] = True
    assert _scrape()[("tollgate_ratelimit_degraded", ())] == 0
    metrics.off_scrape(report)  # removing twice is harmless


def test_the_dashboard_is_valid_json_with_a_query_in_every_panel() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))

    assert board["uid"] and board["title"] == "Tollgate"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"


def test_every_metric_and_label_the_dashboard_queries_is_registered() -> None:
    samples = _samples()
    queried: set[str] = set()

    for expr in _dashboard_expressions():
        names = [match.group(1) for match in _SELECTOR.finditer(expr)]
        assert names, expr
        for match in _SELECTOR.finditer(expr):
            name, selector = match.group(1), match.group(2) or ""
            assert name in samples, f"{name} is not a registered metric ({expr})"
            queried.add(name)
            for label in _LABEL_MATCHER.findall(selector):
                assert label in samples[name], f"{name} has no label {label}"
        grouped = {
            label.strip()
            for group in _GROUPING.findall(expr)
            for label in group.split(",")
        }
        known = set().union(_TARGET_LABELS, *(samples[n] for n in names))
        assert grouped <= known, expr

    # And the dashboard shows every metric of the catalogue, and CPU and memory.
    for name, (kind, _) in _catalogue().items():
        assert any(name + suffix in queried for suffix in _SUFFIXES[kind]), name
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= queried


def test_every_metric_is_documented() -> None:
    doc = DOC.read_text(encoding="utf-8")

    for name, (kind, labels) in _catalogue().items():
        exposed = name + ("_total" if kind == "counter" else "")
        assert f"`{exposed}`" in doc, f"{exposed} is missing from {DOC.name}"
        for label in labels:
            assert f"`{label}`" in doc, f"label {label} is missing from {DOC.name}"


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_every_process_exports_cpu_memory_and_its_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Run from this checkout without the images' variable: the checkout's commit.
    monkeypatch.delenv(metrics.GIT_SHA_ENV, raising=False)
    metrics.git_sha.cache_clear()
    metrics.set_build_info("unit")
    metrics.set_build_info("gateway")  # the last call names the process

    scraped = _scrape()
    names = {name for name, _ in scraped}

    assert names >= PROCESS_SERIES
    assert scraped[("process_cpu_seconds_total", ())] > 0
    assert scraped[("process_resident_memory_bytes", ())] > 1_000_000
    assert "python_info" in names
    builds = {
        labels: value
        for (name, labels), value in scraped.items()
        if name == "tollgate_build_info"
    }
    assert builds == {
        (
            ("git_sha", _git(REPO, "rev-parse", "HEAD")),
            ("python_version", platform.python_version()),
            ("service", "gateway"),
            ("version", importlib.metadata.version("tollgate")),
        ): 1.0
    }


def test_the_images_variable_names_the_commit_over_the_checkout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv(metrics.GIT_SHA_ENV, f" {given}\n")
    metrics.git_sha.cache_clear()
    try:
        metrics.set_build_info("costs")
        build = {
            labels: value
            for (name, labels), value in _scrape().items()
            if name == "tollgate_build_info"
        }
    finally:
        metrics.git_sha.cache_clear()

    assert [dict(labels)["git_sha"] for labels in build] == [given]


def test_the_commit_is_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics.GIT_SHA_ENV, raising=False)
    metrics.git_sha.cache_clear()
    first = metrics.git_sha()
    monkeypatch.setenv(metrics.GIT_SHA_ENV, "changed-after-start")
    for service in ("gateway", "all"):
        metrics.set_build_info(service)

    assert metrics.git_sha() == first
    assert metrics.git_sha.cache_info().misses == 1
    metrics.git_sha.cache_clear()


def test_a_checkout_names_its_commit_and_anything_else_is_unknown(
    tmp_path: Path,
) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    _git(checkout, "init", "--quiet")
    (checkout / "README.md").write_text("x", encoding="utf-8")
    _git(checkout, "add", "README.md")
    _git(
        checkout,
        *("-c", "user.name=t", "-c", "user.email=t@example.com"),
        *("commit", "--quiet", "-m", "one"),
    )
    # A folder inside a checkout (an installed package in a repository's virtual
    # environment) is not one.
    inside = checkout / ".venv" / "site-packages"
    inside.mkdir(parents=True)

    assert metrics.commit_of(checkout) == _git(checkout, "rev-parse", "HEAD")
    assert metrics.commit_of(inside) == "unknown"
    assert metrics.commit_of(tmp_path / "empty") == "unknown"
