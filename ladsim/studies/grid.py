"""A study's grid: ``[base]`` settings times the ``[[grid]]`` axes -> validated runs, each under its cache key.

A scalar axis (``eta = [0.5, 1]``) sets the setting of its name; a table axis (``regime = [{label = ...,
mode = ...}]``) sets several settings per value and its column holds the label. ``objective`` is an axis too,
but its values are not a column (the frames carry the objective). A dotted setting (``"flowrl.beta" = 5``)
sets one objective's parameter (the ``params`` field of the configuration).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from ladsim.studies.cache import run_key

KINDS = ("bandit", "landscape")


def config_class(kind: str):
    if kind == "bandit":
        from ladsim.bandit.config import BanditConfig

        return BanditConfig
    from ladsim.bandit.landscape import LandscapeConfig

    return LandscapeConfig


def coerce_settings(kind: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as the config class expects them: lists -> tuples, integers in float fields -> floats.

    ``eta = 1`` and ``eta = 1.0`` are the same setting and must hash the same.
    """
    cls = config_class(kind)
    fields = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    out = {}
    for key, value in settings.items():
        if key not in fields:
            raise ValueError(f"unknown {kind} setting {key!r}; known: {', '.join(sorted(fields))}")
        kind_of = fields[key]
        if isinstance(value, list):
            value = tuple(float(v) if "float" in kind_of and isinstance(v, int) else v for v in value)
        elif isinstance(value, int) and not isinstance(value, bool) and kind_of.startswith("float"):
            value = float(value)
        out[key] = value
    return out


@dataclass(frozen=True)
class Run:
    """One cached unit of work: a validated config (one objective for a bandit run) and its grid labels."""

    kind: str
    config: Any
    labels: tuple[tuple[str, Any], ...]
    key: str

    @property
    def cost(self) -> int:
        """Optimizer steps the run takes (the progress bar's unit)."""
        return self.config.steps * len(self.config.objectives)


def axis_values(name: str, values: Any) -> list[tuple[Any, dict[str, Any]]]:
    """A grid axis -> ``[(label, settings)]``."""
    if not isinstance(values, list) or not values:
        raise ValueError(f"grid axis {name!r} must be a non-empty list, got {values!r}")
    out = []
    for value in values:
        if isinstance(value, dict):
            if "label" not in value:
                raise ValueError(f"each table of grid axis {name!r} needs a 'label', got {value!r}")
            settings = {k: v for k, v in value.items() if k != "label"}
            out.append((value["label"], settings))
        else:
            out.append((value, {name: value}))
    return out


def gather_params(settings: dict[str, Any]) -> None:
    """Move dotted settings (``"flowrl.beta": 5``) into ``settings["params"]`` (``{"flowrl": {"beta": 5}}``)."""
    dotted = [k for k in settings if "." in k]
    if not dotted:
        return
    params = {name: dict(values) for name, values in settings.get("params", {}).items()}
    for key in dotted:
        name, _, param = key.rpartition(".")
        params.setdefault(name, {})[param] = settings.pop(key)
    settings["params"] = params


def expand_grid(kind: str, base: dict[str, Any], blocks: list[dict[str, Any]],
                overrides: dict[str, Any]) -> tuple[list[Run], list[str]]:
    """``(runs, axes)``: one run per grid point and objective (a bandit run trains one objective), in grid order,
    duplicates (same key) dropped; ``overrides`` win over ``base`` and the grid. Every run reports every axis
    (a block without an axis gets a missing value there)."""
    runs: list[Run] = []
    axes: list[str] = []
    seen: set[str] = set()
    cls = config_class(kind)
    for block in blocks:
        named = [(name, axis_values(name, values)) for name, values in block.items()]
        for name, _ in named:
            if name not in axes and name != "objective":  # the frames carry their objective already
                axes.append(name)
        for combo in itertools.product(*[values for _, values in named]) if named else [()]:
            settings = dict(base)
            labels = []
            for (name, _), (label, values) in zip(named, combo):
                settings.update(values)
                labels.append((name, label))
            objectives = [settings.pop("objective")] if "objective" in settings else None
            if objectives is None:
                objectives = list(settings.pop("objectives", cls().objectives))
            settings.update(overrides)
            gather_params(settings)
            if kind == "landscape":
                settings["objectives"] = objectives
                objectives = [None]
            for objective in objectives:
                one = dict(settings)
                if objective is not None:
                    one["objectives"] = [objective]
                config = cls(**coerce_settings(kind, one))
                key = run_key(kind, config)
                if key in seen:
                    continue
                seen.add(key)
                runs.append(Run(kind, config, tuple(labels), key))
    runs = [dataclasses.replace(r, labels=tuple((a, dict(r.labels).get(a)) for a in axes)) for r in runs]
    return runs, axes
