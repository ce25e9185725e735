"""Routing tables for the router tests: the built-in one and variations of it."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from services.router.table import DEFAULT_TABLE_RESOURCE, RoutingTable

BLUE_GREEN_DEPLOYMENTS: dict[str, Any] = {
    "blue": {"version": "v2.3-stable", "traffic_percent": 90},
    "green": {
        "version": "v2.4-canary",
        "traffic_percent": 10,
        "instructions": "Be concise and empathetic.",
        "temperature": 0.6,
        "guard": {
            "baseline": "blue",
            "min_requests": 50,
            "max_error_rate_increase": 0.05,
            "max_p95_latency_ratio": 1.5,
        },
    },
}


def default_table_data() -> dict[str, Any]:
    """The built-in table as plain data, to edit into a variation."""
    text = (resources.files("services.router") / DEFAULT_TABLE_RESOURCE).read_text()
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def blue_green_table() -> RoutingTable:
    """The built-in table with a blue (90%) and a green canary (10%) deployment."""
    data = default_table_data()
    data["deployments"] = BLUE_GREEN_DEPLOYMENTS
    return RoutingTable.model_validate(data)
