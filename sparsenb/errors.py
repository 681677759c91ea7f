"""The error every bad choice or value of a configuration raises, with the valid ones named."""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """An error the user can act on, whose message says how: the CLI prints it as one line."""


class ConfigError(UserError, ValueError):
    """A profile, key or value that does not exist; the message lists the valid ones."""


def check_choice(kind: str, value: Any, valid) -> Any:
    """Raise one ConfigError naming the valid choices when `value` is not among them."""
    valid = list(valid)
    if value not in valid:
        raise ConfigError(f"unknown {kind} {value!r}; valid: {', '.join(map(str, valid))}")
    return value


def read_yaml(path) -> Any:
    """A YAML file's content; a syntax error is one ConfigError naming the file, line and column."""
    import yaml

    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}:{where}: not valid YAML ({problem}); fix the file") from None
