"""The objective registry (OBJECTIVES.md): every objective ladsim trains, by name, on the shared loss core.

    from ladsim.objectives import Batch, get_objective, make_params, objective_loss
    params = make_params("flowrl", {"beta": 10})
    loss = objective_loss("flowrl", batch, params, state=get_objective("flowrl").state(params, (S,)))

Registered here: ``grpo``, ``lad``, ``lad-theory``, ``entadv``, ``clip-cov``, ``kl-cov``, ``flowrl`` and the
catalogue of the trainers' other policy losses (:mod:`ladsim.objectives.catalogue`: ``cispo``, ``gspo``, ``sapo``,
``gmpo``, ``dppo-tv``, ``dppo-kl``, ``gpg``, ``dro``, ``luspo``, ``vespo``); the modifiers :class:`KLPenalty` and
:class:`EntropyBonus` compose with any of them. Register your own with :func:`register_objective` (see
:mod:`ladsim.objectives.registry`).
"""

# Importing the modules registers their objectives; this order is the listing order of `ladsim objectives`.
from ladsim.objectives import ppo  # noqa: F401  (grpo, entadv, clip-cov, kl-cov)
from ladsim.objectives import lad  # noqa: F401, I001  (lad, lad-theory)
from ladsim.objectives import flowrl  # noqa: F401  (flowrl)
from ladsim.objectives import catalogue  # noqa: F401  (cispo, gspo, sapo, gmpo, dppo-*, gpg, dro, luspo, vespo)
from ladsim.losses import KL_ESTIMATORS, kl_terms
from ladsim.objectives.modifiers import AdaptiveEntropy, EntropyBonus, KLPenalty, mean_entropy
from ladsim.objectives.registry import (
    OBJECTIVES,
    Batch,
    Objective,
    describe_fields,
    get_objective,
    layered_params,
    list_objectives,
    make_params,
    memoized,
    objective_loss,
    objective_terms,
    params_dict,
    parse_assignments,
    register_gradient,
    register_objective,
    unregister_objective,
)

__all__ = [
    "AdaptiveEntropy", "Batch", "EntropyBonus", "KLPenalty", "KL_ESTIMATORS", "OBJECTIVES", "Objective",
    "describe_fields", "get_objective", "kl_terms", "layered_params", "list_objectives", "make_params",
    "mean_entropy", "memoized", "objective_loss",
    "objective_terms", "params_dict", "parse_assignments", "register_gradient", "register_objective",
    "unregister_objective",
]
