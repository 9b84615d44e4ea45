"""Small validators shared by the configs and the adapters: types checked from a dataclass's annotations, and
strict booleans. Each raises ``ValueError`` (or ``TypeError`` where a caller asks for it) naming the setting.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

_BOOL_TEXT = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False,
              "off": False}


def parse_bool(value: Any, name: str) -> bool:
    """A boolean from a bool, 0/1 or the strings true/false/yes/no/on/off/1/0 (any case); else ``ValueError``.

    ``bool("false")`` is ``True``: configs that arrive as strings (YAML/CLI overrides) must go through this.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_TEXT:
        return _BOOL_TEXT[value.strip().lower()]
    raise ValueError(f"{name} must be a boolean (true/false), got {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_CHECKS = {"int": (_is_int, "an integer"), "float": (_is_real, "a number"), "str": (lambda v: isinstance(v, str),
                                                                                    "a string"),
           "bool": (lambda v: isinstance(v, bool), "true or false")}


def check_field_types(obj: Any, flag_prefix: str = "--") -> None:
    """Check every field of the dataclass instance ``obj`` against its annotation (``int``, ``float``, ``str``,
    ``bool``, ``tuple[T, ...]``, ``tuple[T, T]``, each optionally ``| None``); other annotations are skipped.

    A float field holding NaN passes here: ranges are the config's own checks. Raises ``ValueError`` naming
    the setting as ``{flag_prefix}{name-with-dashes}``.
    """
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        text = str(f.type).replace(" ", "")
        optional = text.endswith("|None")
        base = text.removesuffix("|None")
        if value is None and optional:
            continue
        flag = flag_prefix + f.name.replace("_", "-") if flag_prefix == "--" else flag_prefix + f.name
        if base in _CHECKS:
            ok, what = _CHECKS[base]
            if not ok(value):
                raise ValueError(f"{flag} must be {what}, got {value!r}")
        elif base.startswith("tuple[") and base.endswith("]"):
            inner = base[len("tuple["):-1].split(",")
            element = inner[0]
            if element not in _CHECKS or not isinstance(value, (tuple, list)):
                if not isinstance(value, (tuple, list)):
                    raise ValueError(f"{flag} must be a list, got {value!r}")
                continue
            if inner[-1] != "..." and len(value) != len(inner):
                raise ValueError(f"{flag} must hold {len(inner)} values, got {value!r}")
            ok, what = _CHECKS[element]
            bad = [v for v in value if not ok(v)]
            if bad:
                raise ValueError(f"{flag} must hold {what.replace('an ', '').replace('a ', '')}s only, "
                                 f"got {bad[0]!r} in {value!r}")


def finite(x: Any) -> bool:
    """A real number (not bool) that is finite."""
    return _is_real(x) and math.isfinite(x)
