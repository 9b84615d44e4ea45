"""ladsim: a controlled bandit and toy-theory simulator for the RL objectives that post-train LLMs.

GRPO, LAD (Learning Advantage Distribution, Li & Li, arXiv:2602.20132) and the objectives LAD is compared with,
on softmax policies over N arms, with exact numbers. The public API, by floor:

* the shared loss core: ``lad_loss``, ``lad_theory_loss``, ``grpo_loss``, ``ppo_terms`` and the ``*_terms``;
  ``get_divergence``; ``group_advantages``;
* the objective registry: ``Batch``, ``register_objective``, ``get_objective``, ``list_objectives``,
  ``make_params``, ``objective_loss``, ``objective_terms``, ``KLPenalty``, ``EntropyBonus``;
* the bandit: ``BanditConfig``, ``train`` (a ``TrainResult`` with tidy frames), ``run`` (train and write a run
  directory); the 3-armed landscape ``LandscapeConfig``, ``run_landscape``;
* the token tree (responses of several tokens, WORLDS.md): ``TreeConfig``, ``train_tree`` (a ``TreeResult``),
  ``run_tree``; many prompts sharing parameters: ``PromptsConfig``, ``train_prompts``, ``run_prompts``;
* studies: ``load_study``, ``run_study``, ``run_studies``, ``draw_study``;
* the theory checks: ``verify``.

Example::

    import ladsim
    config = ladsim.BanditConfig(objectives=("grpo", "lad"), steps=1000)
    result = ladsim.train(config)
    print(result.metrics.groupby("objective").last())

Names are loaded on first use, so ``import ladsim`` itself imports neither torch nor any plotting library.
"""

from __future__ import annotations

import importlib
import importlib.metadata

try:
    __version__ = importlib.metadata.version("ladsim")  # pyproject.toml's, the one place it is written
except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown"

_API = {
    "ladsim.losses": ("lad_loss", "lad_theory_loss", "grpo_loss", "lad_terms", "grpo_terms", "ppo_terms"),
    "ladsim.divergences": ("get_divergence", "DIVERGENCES"),
    "ladsim.advantages": ("group_advantages",),
    "ladsim.objectives": ("Batch", "register_objective", "get_objective", "list_objectives", "make_params",
                          "objective_loss", "objective_terms", "KLPenalty", "EntropyBonus"),
    "ladsim.bandit.config": ("BanditConfig",),
    "ladsim.bandit.trainer": ("train", "TrainResult"),
    "ladsim.bandit.run": ("run",),
    "ladsim.bandit.landscape": ("LandscapeConfig", "run_landscape"),
    "ladsim.tree.config": ("TreeConfig",),
    "ladsim.tree.trainer": ("train_tree", "TreeResult"),
    "ladsim.tree.run": ("run_tree",),
    "ladsim.prompts.config": ("PromptsConfig",),
    "ladsim.prompts.trainer": ("train_prompts", "PromptsResult"),
    "ladsim.prompts.run": ("run_prompts",),
    "ladsim.studies": ("load_study", "run_study", "run_studies", "draw_study"),
    "ladsim.theory": ("verify",),
}
_WHERE = {name: module for module, names in _API.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    """Load a public name from its module on first use (PEP 562)."""
    if name not in _WHERE:
        raise AttributeError(f"module 'ladsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
