"""A study's grid: ``[base]`` settings times the ``[[grid]]`` axes -> validated runs, each under its cache key.

A scalar axis (``eta = [0.5, 1]``) sets the setting of its name; a table axis (``regime = [{label = ...,
mode = ...}]``) sets several settings per value and its column holds the label. ``objective`` is an axis too,
but its values are not a column (the frames carry the objective). A dotted setting (``"flowrl.beta" = 5``)
sets one objective's parameter (the ``params`` field of the configuration) in the runs that train it.

Nothing in a study file is silently ignored: every run is validated as its configuration class validates any
run (a setting that does nothing there is refused, naming the run), a dotted setting whose objective no run
trains is refused, a ``[base]`` setting that every ``[[grid]]`` block overrides is refused, and two axes of one
block that set the same setting (which one would win?) are refused.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from ladsim.studies.cache import run_key

KINDS = ("bandit", "tree", "prompts", "landscape")
TRAINED = ("bandit", "tree", "prompts")  # kinds whose runs train objectives over seeds (frames final, trajectory, ...)


def config_class(kind: str):
    if kind == "bandit":
        from ladsim.bandit.config import BanditConfig

        return BanditConfig
    if kind == "tree":
        from ladsim.tree.config import TreeConfig

        return TreeConfig
    if kind == "prompts":
        from ladsim.prompts.config import PromptsConfig

        return PromptsConfig
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


def axis_keys(values: list[tuple[Any, dict[str, Any]]], every: bool = False) -> set[str]:
    """The settings some value of an axis sets (``every``: that every value sets); ``objective`` stands for
    ``objectives`` too."""
    sets = [set(settings) | ({"objective", "objectives"} if {"objective", "objectives"} & set(settings) else set())
            for _, settings in values]
    return set.intersection(*sets) if every else set.union(*sets)


def check_block(named: list[tuple[str, list[tuple[Any, dict[str, Any]]]]]) -> None:
    """Two axes of one ``[[grid]]`` block must not set the same setting: the order of the axes would decide."""
    seen: dict[str, str] = {}
    for name, values in named:
        for key in sorted(axis_keys(values)):
            if key in seen:
                raise ValueError(f"grid axes {seen[key]!r} and {name!r} both set {key!r} in one [[grid]] block; "
                                 f"which one wins would be ambiguous: set it in one of them")
            seen[key] = name


def check_base_acts(base: dict[str, Any], blocks_keys: list[set[str]]) -> None:
    """A ``[base]`` setting that every ``[[grid]]`` block overrides reaches no run: refused."""
    shadowed = [k for k in base if blocks_keys and all(k in keys for keys in blocks_keys)]
    if shadowed:
        raise ValueError(f"[base] {shadowed[0]} does nothing: every [[grid]] block sets {shadowed[0]!r} itself; "
                         f"drop it from [base]")


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
    named_params: set[str] = set()  # objectives that dotted settings name
    trained: set[str] = set()
    blocks_keys = []
    for block in blocks:
        named = [(name, axis_values(name, values)) for name, values in block.items()]
        check_block(named)
        blocks_keys.append(set().union(*(axis_keys(values, every=True) for _, values in named)))
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
                    trained.add(objective)
                    named_params.update(one.get("params", {}))
                    # a dotted setting names its objective: it reaches that objective's runs only
                    one["params"] = {k: v for k, v in one.get("params", {}).items() if k == objective}
                try:
                    config = cls(**coerce_settings(kind, one))
                except (ValueError, TypeError) as err:
                    where = ", ".join(f"{n} = {label!r}" for n, label in labels if n != "objective")
                    run = f"{objective}" + (f" at {where}" if where else "") if objective else where or "the base"
                    raise type(err)(f"run {run}: {err}") from None
                key = run_key(kind, config)
                if key in seen:
                    continue
                seen.add(key)
                runs.append(Run(kind, config, tuple(labels), key))
    unused = sorted(named_params - trained)
    if unused:
        raise ValueError(f"the dotted setting(s) of {', '.join(unused)} do nothing: no run of the study trains "
                         f"{' or '.join(unused)}")
    check_base_acts(base, blocks_keys)
    runs = [dataclasses.replace(r, labels=tuple((a, dict(r.labels).get(a)) for a in axes)) for r in runs]
    return runs, axes
