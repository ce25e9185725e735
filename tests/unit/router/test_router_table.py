from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.router.config import RouterSettings
from services.router.enums import Lane, Priority, RequestType
from services.router.table import (
    RoutingTableError,
    load_routing_table,
    parse_routing_table,
)
from tests.unit.router.router_tables import BLUE_GREEN_DEPLOYMENTS, default_table_data


def test_default_table_has_the_list_prices_in_micros_per_million() -> None:
    table = load_routing_table(None)

    premium = table.tiers["premium"]
    assert premium.model == "gpt-4.1"
    assert premium.input_micros_per_million == 2_000_000
    assert premium.cached_input_micros_per_million == 500_000
    assert premium.output_micros_per_million == 8_000_000
    standard = table.tiers["standard"]
    assert (
        standard.model,
        standard.input_micros_per_million,
        standard.cached_input_micros_per_million,
        standard.output_micros_per_million,
    ) == ("gpt-4.1-mini", 400_000, 100_000, 1_600_000)
    economy = table.tiers["economy"]
    assert (
        economy.model,
        economy.input_micros_per_million,
        economy.cached_input_micros_per_million,
        economy.output_micros_per_million,
    ) == ("gpt-4.1-nano", 100_000, 25_000, 400_000)


def test_default_table_routes_priorities_and_budgets_as_the_seed() -> None:
    table = load_routing_table(None)

    # Standard and batch take the request type's preset.
    assert {p: r.tier for p, r in table.priorities.items()} == {
        Priority.CRITICAL: "premium",
        Priority.REALTIME: "premium",
        Priority.STANDARD: None,
        Priority.BATCH: None,
        Priority.LOW: "economy",
    }
    assert table.priorities[Priority.BATCH].lane is Lane.BATCH
    assert {
        t: (b.max_input_tokens, b.max_output_tokens, b.tier)
        for t, b in table.request_types.items()
    } == {
        RequestType.CHAT: (2000, 500, "standard"),
        RequestType.SUMMARIZE: (8000, 300, "standard"),
        RequestType.ANALYZE: (4000, 2000, "premium"),
        RequestType.CLASSIFY: (500, 50, "economy"),
        RequestType.GENERATE: (1000, 4000, "premium"),
    }
    assert [t.max_complexity.value for t in table.tiers.values()] == [
        "complex",
        "moderate",
        "trivial",
    ]
    assert table.initial_split() == {"stable": 100}
    assert table.fallback_order == ["gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano"]
    assert table.busy_message


def test_a_table_file_replaces_the_default(tmp_path: Path) -> None:
    data = default_table_data()
    data["deployments"] = BLUE_GREEN_DEPLOYMENTS
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(data))

    table = load_routing_table(path)

    assert table.initial_split() == {"blue": 90, "green": 10}
    assert table.deployments["green"].temperature == 0.6


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, leaf = path.split(".")

    def edit(data: dict[str, Any]) -> None:
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value

    return edit


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    *parents, leaf = path.split(".")

    def edit(data: dict[str, Any]) -> None:
        node = data
        for key in parents:
            node = node[key]
        del node[leaf]

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("priorities.realtime.tier", "gold"), "unknown tier 'gold'"),
        (_delete("priorities.low"), "priorities missing: low"),
        (_delete("request_types.classify"), "request_types missing: classify"),
        (_set("deployments.stable.traffic_percent", 90), "adds up to 90, not 100"),
        (_set("deployments.stable.traffic_percent", 101), "less than or equal to 100"),
        (_set("deployments", {}), "at least 1 item"),
        (_set("fallback_order", ["gpt-4.1", "gpt-4.1-mini"]), "fallback_order"),
        (_set("tiers.economy.model", "gpt-4.1"), "one tier only"),
        (_set("tiers.premium.output_micros_per_million", -1), "greater than or equal"),
        (_set("priorities.low.lane", "static"), "lane must be sync or batch"),
        (_set("request_types.chat.max_output_tokens", 0), "greater than 0"),
        (_set("tiers.premium.price", 3), "Extra inputs are not permitted"),
        (_delete("busy_message"), "busy_message"),
        (_set("request_types.chat.tier", "gold"), "unknown tier 'gold'"),
        (_set("tiers.premium.max_complexity", "moderate"), "must handle complex"),
        (_set("tiers.economy.max_complexity", "complex"), "must not increase"),
        (_set("tiers.economy.max_complexity", "unspecified"), "max_complexity"),
        (_set("deployments.stable.model", "gpt-9"), "unknown model 'gpt-9'"),
        (
            _set("deployments.stable.guard", {"baseline": "stable"}),
            "must name another deployment",
        ),
        (
            _set(
                "deployments",
                {
                    "a": {
                        "version": "1",
                        "traffic_percent": 50,
                        "guard": {"baseline": "b"},
                    },
                    "b": {
                        "version": "2",
                        "traffic_percent": 50,
                        "guard": {"baseline": "a"},
                    },
                },
            ),
            "is a canary itself",
        ),
    ],
)
def test_an_invalid_table_is_refused_with_the_reason(
    edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = default_table_data()
    edit(data)

    with pytest.raises(RoutingTableError) as error:
        parse_routing_table(yaml.safe_dump(data), "test.yaml")

    assert str(error.value).startswith("invalid routing table test.yaml: ")
    assert message in str(error.value)


def test_malformed_yaml_is_refused() -> None:
    with pytest.raises(RoutingTableError, match=r"invalid routing table bad\.yaml"):
        parse_routing_table("tiers: [unclosed", "bad.yaml")


def test_a_table_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(RoutingTableError, match="valid dictionary"):
        parse_routing_table("- just\n- a list\n", "list.yaml")


def test_a_missing_table_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    with pytest.raises(RoutingTableError, match="cannot read routing table"):
        load_routing_table(missing)


def test_settings_default_to_port_50054_and_the_builtin_table() -> None:
    settings = RouterSettings()

    assert settings.port == 50054
    assert settings.routing_file is None


def test_settings_read_the_routing_file_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOLLGATE_ROUTER_ROUTING_FILE", "/etc/tollgate/routing.yaml")
    monkeypatch.setenv("TOLLGATE_ROUTER_PORT", "6000")

    settings = RouterSettings()

    assert settings.routing_file == Path("/etc/tollgate/routing.yaml")
    assert settings.port == 6000
