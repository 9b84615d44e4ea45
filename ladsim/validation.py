"""Small validators shared by the configs of every world and the adapters: types checked from a dataclass's
annotations, strict booleans, settings that do nothing in a run (``Inert`` rules, ``check_inert``) and device
strings. Each raises ``ValueError`` (or ``TypeError`` where a caller asks for it) naming the setting.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Iterable, Mapping

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
        flag = flag_name(f.name, flag_prefix)
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


# --- settings that do nothing -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Inert:
    """A setting that acts only under a condition of the resolved configuration.

    ``acts(config)`` says whether ``setting`` acts in ``config``; ``why`` completes "it acts only ..." (e.g.
    ``"with --mode sampled"``). :func:`check_inert` refuses the setting where it does not act and differs
    from its default: a default merely restated is accepted, since it changes nothing either way.
    """

    setting: str
    acts: Callable[[Any], bool]
    why: str


def field_default(obj: Any, name: str) -> Any:
    """The default of the dataclass field ``name`` of ``obj`` (``dataclasses.MISSING`` where it has none)."""
    f = next(f for f in dataclasses.fields(obj) if f.name == name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def flag_name(name: str, flag_prefix: str = "--") -> str:
    """``group_size`` -> ``--group-size`` (``flag_prefix`` ``"--"``), else ``flag_prefix + name``."""
    return flag_prefix + name.replace("_", "-") if flag_prefix == "--" else flag_prefix + name


def check_inert(config: Any, rules: Iterable[Inert], flag_prefix: str = "--") -> None:
    """Refuse (``ValueError``, one line) the first setting of the dataclass instance ``config`` that differs
    from its default where its rule says it does not act (``--group-size 5`` with ``--mode exact``)."""
    for rule in rules:
        value = getattr(config, rule.setting)
        if value != field_default(config, rule.setting) and not rule.acts(config):
            shown = " ".join(map(str, value)) if isinstance(value, (tuple, list)) else value
            flag = flag_name(rule.setting, flag_prefix) + ("" if value is True else f" {shown}")  # a switch: its name
            raise ValueError(f"{flag} does nothing in this run: it acts only {rule.why}; drop it")


def fills_a_field(params: Iterable[tuple[type, Mapping[str, Any]]], fields: Iterable[str]) -> bool:
    """Whether a run-wide setting that fills the parameter ``fields`` of every objective reaches at least one:
    ``params`` holds ``(parameters dataclass, the objective's own overrides)`` per objective trained, and the
    setting reaches an objective whose dataclass has one of the fields its overrides leave unset (``--clip``
    fills ``eps_low``/``eps_high``: with GRPO-free LAD runs, or with ``--set grpo.eps_low=.. --set
    grpo.eps_high=..``, it reaches nothing)."""
    fields = set(fields)
    return any(f.name in fields and f.name not in own for cls, own in params for f in dataclasses.fields(cls))


# --- devices --------------------------------------------------------------------------------------------------

DEVICE_PATTERN = re.compile(r"cpu(:0)?|cuda(:(0|[1-9][0-9]{0,3}))?", re.ASCII)


def check_device(device: Any, flag: str = "--device") -> str:
    """``device`` if it is ``cpu`` (``cpu:0``), ``cuda`` or ``cuda:K`` with ``K`` written in ASCII digits (at most
    4, no leading zero); else ``ValueError`` naming ``flag``. Whether device ``K`` exists is the trainer's
    check (``ladsim.bandit.trainer.resolve_device``)."""
    if not isinstance(device, str) or not DEVICE_PATTERN.fullmatch(device):
        raise ValueError(f"{flag} must be cpu, cuda or cuda:K (K a device index in ASCII digits), got "
                         f"{device!r}")
    return device
