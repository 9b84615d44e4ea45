"""LLM-scale LAD and GRPO: token batches, verl's aggregation modes, a fused loss and a chunked LM-head path.

* :mod:`ladsim.llm.token_loss` - ``(B, T)`` token-level and sequence-level losses on the shared core, and the
  aggregation modes with verl's and TRL's normalization conventions;
* :mod:`ladsim.llm.objective_loss` - an objective by name on a token batch: the entry point of the trainer
  adapters in :mod:`ladsim.integrations` (verl, TRL);
* :mod:`ladsim.llm.fused`      - the fused LAD loss (custom autograd, hand-derived backward, optional compile);
* :mod:`ladsim.llm.linear`     - log-probs and LAD from hidden states and the LM head, chunk by chunk;
* :mod:`ladsim.llm.bench`      - ``ladsim bench loss``.
"""

from ladsim.llm.fused import fused_lad_loss, lad_grad_weight
from ladsim.llm.linear import chunked_token_logprobs, fused_linear_lad_loss, materialized_lad_loss
from ladsim.llm.objective_loss import objective_token_loss, objective_token_terms, token_objectives
from ladsim.llm.token_loss import (
    AGG_MODES,
    LOSS_AGG_MODES,
    agg_loss,
    agg_weights,
    grpo_token_loss,
    lad_token_loss,
)

__all__ = [
    "AGG_MODES", "LOSS_AGG_MODES", "agg_loss", "agg_weights", "chunked_token_logprobs", "fused_lad_loss",
    "fused_linear_lad_loss", "grpo_token_loss", "lad_grad_weight", "lad_token_loss", "materialized_lad_loss",
    "objective_token_loss", "objective_token_terms", "token_objectives",
]
