"""Generates docs/configuration.md from the settings classes, so it cannot drift.

``python -m services.configdoc > docs/configuration.md``; a test checks it is fresh.
"""

from __future__ import annotations

import sys

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from services.cache.config import CacheSettings
from services.core.workers import WorkerSettings
from services.costs.config import CostsSettings
from services.gateway.config import GatewaySettings
from services.ratelimit.config import RateLimitSettings
from services.router.config import RouterSettings
from services.simulator.config import SimulatorSettings

SETTINGS: list[tuple[str, type[BaseSettings]]] = [
    ("gateway", GatewaySettings),
    ("ratelimit", RateLimitSettings),
    ("cache", CacheSettings),
    ("router", RouterSettings),
    ("costs", CostsSettings),
    ("simulator", SimulatorSettings),
    ("workers (`serve gateway`, `serve all`)", WorkerSettings),
]


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if hasattr(value, "get_secret_value"):
        return "(secret)"
    if hasattr(value, "model_dump"):
        return ", ".join(f"{k}={v}" for k, v in value.model_dump().items())
    return f"`{value}`"


def _env_name(prefix: str, name: str, field: FieldInfo) -> str:
    nested = getattr(field.annotation, "model_fields", None)
    if nested:
        return f"`{prefix}{name.upper()}__<FIELD>`"
    return f"`{prefix}{name.upper()}`"


def render() -> str:
    """The whole configuration reference as Markdown."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the settings classes by `python -m services.configdoc`; "
        "do not edit by hand.",
        "Every service reads environment variables with its own prefix; nested "
        "settings use `__` (for example "
        "`TOLLGATE_GATEWAY_DOWNSTREAM_BREAKER__FAILURE_THRESHOLD=3`).",
        "",
    ]
    for service, settings in SETTINGS:
        prefix = str(settings.model_config.get("env_prefix", ""))
        lines += [
            f"## {service}",
            "",
            "| variable | default | meaning |",
            "|---|---|---|",
        ]
        for name, field in settings.model_fields.items():
            description = (field.description or "").replace("|", "\\|")
            lines.append(
                f"| {_env_name(prefix, name, field)} | {_default(field)} | "
                f"{description} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render())
