"""The objective registry: a name -> parameters (a frozen dataclass) + a loss built on the shared core.

An objective (OBJECTIVES.md) is a per-action loss term ``l(y)`` to minimize, reduced over the last axis the way
the shared core reduces every loss (``ladsim.losses.reduce_actions``): summed with weights ``pi_old(y)`` for an
exact expectation over an enumerable action set, otherwise the (masked) mean over samples. Every client (the
bandit trainer, the landscape, the studies, the CLI, the LLM token path) looks objectives up here, so adding one
is one ``register_objective`` call plus its tests::

    @dataclass(frozen=True)
    class MyParams:
        scale: float = 1.0

    @register_objective("mine", MyParams, formula="l = -scale A r", reference="my notes")
    def my_terms(batch: Batch, params: MyParams, state: dict) -> Tensor:
        return -params.scale * batch.advantages * torch.exp(batch.logp - batch.logp_old.detach())

Objectives that need the whole action set (``lad-theory``: exact partition functions) register a ``loss``
(``(...)`` per row) with ``full_support=True`` instead of per-action terms. Objectives with trainable state of
their own (FlowRL's ``log Z``) pass ``init_state``; the trainer optimizes that state with the policy.

An objective may also register its gradient by hand (``grad=`` or :func:`register_gradient`), which the bandit's
fused engine uses instead of autograd (``ladsim.bandit.fused``)::

    @register_gradient("mine")
    def my_grad(batch, params, state):   # -> (dl/dlogp (..., n), {state name: dl/dstate (..., n)})
        return -params.scale * batch.advantages * torch.exp(batch.logp - batch.logp_old), {}

For per-action objectives the gradient is elementwise: ``dl(y)/dlogp(y)`` of each term, every other field of the
batch held constant (the batch's entropy too: an objective reading it must detach it), and the derivative of
each term in the objective's state (the reduction over the last axis is the caller's). For a full-support
objective it is the gradient of its reduced loss: ``(dL/dlogp (..., n), {name: dL/dstate (...)})``. An
objective without one is differentiated by autograd; tests hold every hand gradient to autograd's.

A per-action objective may add the gradient of its exact loss (``register_gradient(name, exact=True)``): the
same reduced form as a full-support objective's, for exact batches without a mask, where the weights
``pi_old = exp(logp_old)`` fold into the derivative and save kernels (the PPO family's ``pi_old dl/dlogp =
-A pi``); the fused engine uses it there.

What depends only on the batch's fixed fields (``logp_old``, ``advantages``, ``weights``, ``mask``, ``logp_ref``)
can be computed once while they stay the same: ``batch.constant(key, make)`` returns ``make()`` from the memo the
caller keeps (the bandit trainer renews it at every refresh of ``pi_old`` and every new sample), e.g.
``batch.constant(("mine.neg_scaled", params.scale), lambda: -params.scale * batch.advantages)``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping

import torch
from torch import Tensor

from ladsim.losses import reduce_actions
from ladsim.validation import parse_bool


@dataclass(frozen=True)
class Batch:
    """What an objective sees: tensors of shape ``(..., n)`` (broadcastable against ``logp``).

    The last axis holds the actions (exact mode), the sampled actions (a group) or the tokens of a batch; batch
    statistics (the covariances of clip-cov and kl-cov, their top-n selection) are taken over it. Leading axes
    (the bandit's seeds) are independent rows.

    Attributes:
        logp: ``log pi_theta(y)``, differentiable.
        logp_old: ``log pi_old(y)``, the behaviour policy (never differentiated).
        advantages: ``A(y)``.
        weights: exact-mode expectation weights ``pi_old(y)`` (summing to one over the last axis), or ``None``
            for the sample mean.
        mask: bool or 0/1; 0 removes an entry.
        logp_ref: ``log pi_ref(y)`` of the reference policy (KL penalty, FlowRL).
        entropy: the policy's entropy ``H`` broadcastable to ``logp`` (bandit: ``(..., 1)``; tokens: per token),
            differentiable (the entropy bonus differentiates it; entadv detaches it).
        generator: the random stream of objectives that draw (clip-cov's random pick in sampled mode).
        memo: a dict the caller keeps across calls while ``logp_old``, ``advantages``, ``weights``, ``mask``
            and ``logp_ref`` stay the same tensors, and replaces whenever one of them changes (the bandit
            trainer: a new dict at every refresh of ``pi_old`` and every new sample), so that objectives
            compute what depends on those fields alone once (:meth:`constant`); ``None``: no caching.
    """

    logp: Tensor
    logp_old: Tensor
    advantages: Tensor
    weights: Tensor | None = None
    mask: Tensor | None = None
    logp_ref: Tensor | None = None
    entropy: Tensor | None = None
    generator: torch.Generator | None = None
    memo: dict | None = None

    @property
    def exact(self) -> bool:
        """Whether the batch is an exact expectation (weights given) rather than a sample."""
        return self.weights is not None

    def promoted(self) -> "Batch":
        """The batch with float16/bfloat16 tensors promoted to float32 (every objective accumulates in float32)."""
        changes = {f.name: getattr(self, f.name).float() for f in dataclasses.fields(self)
                   if isinstance(getattr(self, f.name), Tensor)
                   and getattr(self, f.name).dtype in (torch.float16, torch.bfloat16)}
        return dataclasses.replace(self, **changes, memo=None) if changes else self  # constants in the old dtypes

    def constant(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per ``memo`` (see the attribute): ``make`` may read only the fields the
        memo is kept for, never ``logp``, ``entropy`` or an objective's state, and ``key`` must name
        everything else it depends on (e.g. ``("lad.log_q", params.eta)``)."""
        return memoized(self.memo, key, make)

    def need(self, field: str, objective: str) -> Tensor:
        """``getattr(self, field)``, or a ``ValueError`` saying that ``objective`` needs it."""
        value = getattr(self, field)
        if value is None:
            raise ValueError(f"objective {objective!r} needs batch.{field}")
        return value


def memoized(memo: dict | None, key: Hashable, make: Callable[[], Any]) -> Any:
    """``memo[key]``, computed by ``make()`` the first time (``memo = None``: always computed): the cache a
    caller keeps while ``pi_old`` and the sample stay (``Batch.memo``; a world's constants per ``pi_old``)."""
    if memo is None:
        return make()
    try:
        return memo[key]
    except KeyError:
        value = memo[key] = make()
        return value


Terms = Callable[[Batch, Any, Mapping[str, Tensor]], Tensor]
Grad = Callable[[Batch, Any, Mapping[str, Tensor]], "tuple[Tensor, dict[str, Tensor]]"]
FullLoss = Callable[[Batch, Any, Mapping[str, Tensor]], Tensor]
InitState = Callable[[Any, tuple[int, ...], torch.dtype], dict[str, Tensor]]


@dataclass(frozen=True)
class Objective:
    """One registered objective.

    Attributes:
        name: registry key (``"grpo"``, ``"lad"``, ...).
        params: the frozen dataclass type of its parameters; its field defaults are the documented defaults.
        terms: ``(batch, params, state) -> (..., n)`` per-action loss terms, or ``None`` for a full-support
            objective.
        loss: ``(batch, params, state) -> (...)`` for objectives that need the whole action set.
        formula: ``l(y)`` (or the loss) as written in OBJECTIVES.md / LAD_SPEC.md.
        reference: where the objective comes from.
        summary: one line for ``ladsim objectives``.
        init_state: ``(params, batch_shape, dtype) -> {name: tensor of batch_shape}``: trainable state of the
            objective's own (FlowRL's ``log Z``), optimized with the policy; ``None`` if it has none.
        full_support: the loss needs every action (exact partition functions): the bandit gives it the exact
            batch in every mode, and no token path can run it.
        needs: the optional :class:`Batch` fields the objective reads (``"entropy"``, ``"logp_ref"``), so that
            callers compute them only when needed.
        exact_loss: ``(batch, params, state) -> (...)``, the ``pi_old``-weighted sum of the terms computed more
            stably than ``sum_y w(y) l(y)`` (LAD folds the weights into its log-space arguments); used for
            batches with weights, optional.
        grad: ``(batch, params, state) -> (g, state_grads)``, the hand-derived gradient (module docstring), or
            ``None`` (autograd).
        exact_grad: ``(batch, params, state) -> (dL/dlogp (..., n), {name: dL/dstate (...)})``, the gradient of
            the ``pi_old``-weighted sum of the terms on an exact batch without a mask, optional (module
            docstring).
        unit: what one term is about where responses have several tokens (``ladsim.tree``): ``"token"`` (the
            default: a term per token, as verl's policy losses) or ``"response"`` (one term per whole response,
            its entry's log-probabilities ``log pi(y) / |y|``: FlowRL's trajectory balance).
    """

    name: str
    params: type
    terms: Terms | None
    loss: FullLoss | None
    formula: str
    reference: str
    summary: str = ""
    init_state: InitState | None = None
    full_support: bool = False
    needs: frozenset[str] = frozenset()
    exact_loss: FullLoss | None = None
    grad: Grad | None = None
    exact_grad: Grad | None = None
    unit: str = "token"

    def make_params(self, overrides: Mapping[str, Any] | None = None) -> Any:
        """The parameters with ``overrides`` applied (strings are parsed by field type, e.g. from ``--set``)."""
        return make_params(self, overrides)

    def state(self, params: Any, batch_shape: tuple[int, ...], dtype: torch.dtype = torch.float64,
              device: torch.device | str | None = None) -> dict[str, Tensor]:
        """Fresh trainable state (leaf tensors with ``requires_grad``), ``{}`` for objectives without state."""
        if self.init_state is None:
            return {}
        state = self.init_state(params, tuple(batch_shape), dtype)
        return {k: v.to(device=device).detach().requires_grad_(True) for k, v in state.items()}


OBJECTIVES: dict[str, Objective] = {}
UNITS = ("token", "response")


def register_objective(name: str, params: type, *, formula: str, reference: str, summary: str = "",
                       init_state: InitState | None = None, full_support: bool = False,
                       needs: tuple[str, ...] = (), exact_loss: FullLoss | None = None,
                       replace: bool = False, grad: Grad | None = None,
                       unit: str = "token") -> Callable[[Callable], Callable]:
    """Decorator registering ``fn`` under ``name``: per-action terms, or the full loss if ``full_support``.

    ``params`` must be a frozen dataclass whose fields all have defaults; ``needs`` names the optional
    :class:`Batch` fields the objective reads; ``grad`` is the optional hand gradient (module docstring; or
    add it later with :func:`register_gradient`); ``unit`` is ``"token"`` or ``"response"`` (``Objective.unit``).
    Registering an existing name raises ``ValueError`` unless ``replace=True``.
    """
    if unit not in UNITS:
        raise ValueError(f"unit of objective {name!r} must be one of {', '.join(UNITS)}, got {unit!r}")
    optional = {"weights", "mask", "logp_ref", "entropy", "generator"}
    if not set(needs) <= optional:
        raise ValueError(f"needs of objective {name!r} must be among {sorted(optional)}, got {list(needs)}")
    if not isinstance(name, str) or not name or any(c.isspace() or c in ".=," for c in name):
        raise ValueError(f"objective name must be a non-empty string without spaces, '.', '=' or ',', got {name!r}")
    if not (dataclasses.is_dataclass(params) and isinstance(params, type)):
        raise TypeError(f"params of objective {name!r} must be a dataclass type, got {params!r}")
    if not params.__dataclass_params__.frozen:
        raise TypeError(f"params of objective {name!r} must be a frozen dataclass")
    missing = [f.name for f in dataclasses.fields(params)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise TypeError(f"every parameter of objective {name!r} needs a default; missing: {', '.join(missing)}")

    def decorate(fn: Callable) -> Callable:
        if name in OBJECTIVES and not replace:
            raise ValueError(f"objective {name!r} is already registered (pass replace=True to replace it)")
        OBJECTIVES[name] = Objective(
            name=name, params=params, terms=None if full_support else fn, loss=fn if full_support else None,
            formula=formula, reference=reference, summary=summary or (fn.__doc__ or "").strip().split("\n")[0],
            init_state=init_state, full_support=full_support, needs=frozenset(needs), exact_loss=exact_loss,
            grad=grad, unit=unit)
        return fn

    return decorate


def register_gradient(name: str, *, exact: bool = False) -> Callable[[Grad], Grad]:
    """Decorator attaching a hand-derived gradient (module docstring) to the registered objective ``name``:
    ``Objective.grad``, or with ``exact=True`` the gradient of its exact loss, ``Objective.exact_grad``."""
    obj = get_objective(name)
    if exact and obj.full_support:
        raise ValueError(f"objective {name!r} is full-support: its gradient is already the reduced loss's")

    def decorate(fn: Grad) -> Grad:
        if not callable(fn):
            raise TypeError(f"the gradient of objective {name!r} must be callable, got {fn!r}")
        OBJECTIVES[obj.name] = dataclasses.replace(OBJECTIVES[obj.name], **{"exact_grad" if exact else "grad": fn})
        return fn

    return decorate


def unregister_objective(name: str) -> None:
    """Remove a registered objective (for tests and interactive use)."""
    OBJECTIVES.pop(name, None)


def get_objective(name: str | Objective) -> Objective:
    """Look an objective up by name; an unknown name raises ``ValueError`` naming the registered ones."""
    if isinstance(name, Objective):
        return name
    if not isinstance(name, str):
        raise TypeError(f"objective must be a name (str), got {type(name).__name__}")
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; choose from: {', '.join(OBJECTIVES)}") from None


def list_objectives() -> list[str]:
    """Registered objective names, in registration order."""
    return list(OBJECTIVES)


# --- parameters -------------------------------------------------------------------------------------------

_NONE_WORDS = {"none", "null"}


def _parse_value(objective: str, field: dataclasses.Field, value: Any, hint: Any) -> Any:
    """Parse ``value`` (a string from the command line, or a Python value) as the field's annotated type."""
    where = f"{objective}.{field.name}"
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if isinstance(value, str):
        text = value.strip()
        if optional and text.lower() in _NONE_WORDS:
            return None
        try:
            if base is bool:
                return parse_bool(text, where)
            if base is int:
                return int(text)
            if base is float:
                return float(text)
        except ValueError:
            raise ValueError(f"{where} must be {base.__name__}, got {value!r}") from None
        return text
    if value is None:
        if not optional:
            raise ValueError(f"{where} cannot be None")
        return None
    if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if base in (int, bool, str) and not isinstance(value, base) or (base is int and isinstance(value, bool)):
        raise TypeError(f"{where} must be {base.__name__}, got {type(value).__name__} {value!r}")
    return value


def make_params(objective: str | Objective, overrides: Mapping[str, Any] | None = None) -> Any:
    """``objective``'s parameters: the defaults with ``overrides`` applied and validated.

    Unknown parameter names raise ``ValueError`` naming the known ones; values are parsed by the field's type
    (``"10"`` -> ``10.0`` for a float, ``"none"`` -> ``None`` for an optional field) and then checked by the
    parameters' own ``__post_init__`` (e.g. ``flowrl.beta`` must be > 0).
    """
    obj = get_objective(objective)
    overrides = dict(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(obj.params)}
    unknown = [k for k in overrides if k not in fields]
    if unknown:
        known = ", ".join(fields) or "(none)"
        raise ValueError(f"unknown parameter {obj.name}.{unknown[0]}; {obj.name} has: {known}")
    hints = typing.get_type_hints(obj.params)
    values = {k: _parse_value(obj.name, fields[k], v, hints.get(k)) for k, v in overrides.items()}
    try:
        return obj.params(**values)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{obj.name}: {err}") from None


def layered_params(objective: str | Objective, shared: Mapping[str, Any],
                   overrides: Mapping[str, Any] | None = None) -> Any:
    """The parameters from layers: registry defaults < the ``shared`` settings the objective has (a run's
    ``eta``, ``div``, ...; the others are ignored) < ``overrides``, its own (checked by :func:`make_params`)."""
    obj = get_objective(objective)
    fields = {f.name for f in dataclasses.fields(obj.params)}
    values = {k: v for k, v in shared.items() if k in fields}
    values.update(overrides or {})
    return make_params(obj, values)


def parse_assignments(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, str]]:
    """``["flowrl.beta=10", "grpo.eps_low=0.2"]`` -> ``{"flowrl": {"beta": "10"}, "grpo": {"eps_low": "0.2"}}``.

    Names are checked against the registry and the objective's parameters, a parameter given twice is refused
    (which value would be meant?), and each objective's values are validated together once every assignment is
    in (``--set clip-cov.lb=6 --set clip-cov.ub=10`` is valid although ``lb=6`` alone is not); ``ValueError``
    otherwise. Values stay strings until :func:`make_params` parses them by type.
    """
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        name, dot, param = key.strip().rpartition(".")
        if not sep or not dot or not name or not param:
            raise ValueError(f"--set expects OBJECTIVE.PARAM=VALUE (e.g. flowrl.beta=10), got {item!r}")
        obj = get_objective(name)
        if param in out.get(obj.name, {}):
            raise ValueError(f"--set {obj.name}.{param} is given twice ({out[obj.name][param]!r} and {value!r}); "
                             f"give it once")
        out.setdefault(obj.name, {})[param] = value
    for name, values in out.items():
        make_params(name, values)  # names, types and ranges, on the values all together
    return out


def params_dict(params: Any) -> dict[str, Any]:
    """A parameters instance as a plain dict (for JSON and cache keys)."""
    return dataclasses.asdict(params)


def describe_fields(params: type) -> list[tuple[str, str, Any, str]]:
    """``[(name, type, default, doc)]`` of a parameters dataclass; ``doc`` from ``field(metadata={"doc": ...})``."""
    hints = typing.get_type_hints(params)
    out = []
    for f in dataclasses.fields(params):
        hint = hints.get(f.name)
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            type_name = " | ".join("None" if a is type(None) else a.__name__ for a in typing.get_args(hint))
        else:
            type_name = getattr(hint, "__name__", str(hint))
        out.append((f.name, type_name, f.default, f.metadata.get("doc", "")))
    return out


# --- validation helpers for parameters dataclasses ---------------------------------------------------------

def check_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, allow_none: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite real in the stated range."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}")


# --- evaluation -------------------------------------------------------------------------------------------

def objective_terms(objective: str | Objective, batch: Batch, params: Any = None,
                    state: Mapping[str, Tensor] | None = None) -> Tensor:
    """Per-action loss terms ``(..., n)`` of ``objective`` on ``batch`` (``params`` default: the defaults)."""
    obj = get_objective(objective)
    if obj.terms is None:
        raise ValueError(f"objective {obj.name!r} needs the whole action set and has no per-action terms; "
                         "use objective_loss on an exact batch over every action")
    return obj.terms(batch.promoted(), make_params(obj) if params is None else params, state or {})


def objective_loss(objective: str | Objective, batch: Batch, params: Any = None,
                   state: Mapping[str, Tensor] | None = None, *, kl: Any = None,
                   entropy_bonus: Any = None) -> Tensor:
    """The objective's loss on ``batch``, reduced over the last axis -> ``(...)``, plus the modifiers.

    ``loss = reduce(l) + kl.beta * reduce(k(logp - logp_ref)) - entropy_bonus.coef * reduce(H)``, every
    reduction being the core's ``reduce_actions(., batch.weights, batch.mask)`` (exact expectation or sample
    mean). ``kl``: a :class:`ladsim.objectives.modifiers.KLPenalty`; ``entropy_bonus``: an
    :class:`~ladsim.objectives.modifiers.EntropyBonus`.
    """
    obj = get_objective(objective)
    params = make_params(obj) if params is None else params
    if not isinstance(params, obj.params):
        raise TypeError(f"params of {obj.name!r} must be {obj.params.__name__}, got {type(params).__name__}")
    batch = batch.promoted()
    if obj.full_support:
        loss = obj.loss(batch, params, state or {})
    elif batch.exact and obj.exact_loss is not None:
        loss = obj.exact_loss(batch, params, state or {})
    else:
        loss = reduce_actions(obj.terms(batch, params, state or {}), batch.weights, batch.mask)
    for modifier in (kl, entropy_bonus):
        if modifier is not None:
            loss = loss + reduce_actions(modifier.terms(batch), batch.weights, batch.mask)
    return loss
