"""The error every bad choice or value of a configuration raises, with the valid ones named."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A profile, key or value that does not exist; the message lists the valid ones."""


def check_choice(kind: str, value: Any, valid) -> Any:
    """Raise one ConfigError naming the valid choices when `value` is not among them."""
    valid = list(valid)
    if value not in valid:
        raise ConfigError(f"unknown {kind} {value!r}; valid: {', '.join(map(str, valid))}")
    return value
