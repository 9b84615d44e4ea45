"""Trainer integrations: ladsim's objectives inside real verl and TRL training.

* :mod:`ladsim.integrations.verl` - policy losses for verl 0.9.1 (``pip install 'ladsim[verl]'``);
* :mod:`ladsim.integrations.trl`  - a ``GRPOTrainer`` subclass for TRL 1.16 (``pip install 'ladsim[trl]'``).

Each submodule imports its trainer at the top, so nothing here is imported by ``import ladsim``: import the
submodule you use. See docs/llm.md.
"""
