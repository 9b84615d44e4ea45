"""How much memory a bandit run needs, estimated from its sizes alone (before anything is allocated)."""

from __future__ import annotations

from typing import Any


def estimate_memory_bytes(config: Any) -> int:
    """Bytes a run of ``config`` (a ``BanditConfig``, read for its sizes only) holds at its peak, over-estimated.

    Training, per objective: about 24 ``(S, N)`` tensors (logits, gradient, Adam's two moments, ``pi_old``, its
    weights, advantages, log-softmax and loss temporaries, their backward; the reward spec's arrays) and in
    sampled mode about 12 ``(S, G)`` ones plus the ``int64`` arm indices. Results: every logged step keeps
    ``7 + 2 len(ks)`` metrics per seed (float64, about 3 copies: arrays, tidy frame, CSV text), and each
    objective's final ``(S, N)`` policy (about 8 copies in the final-policy frame and its CSV).
    """
    item = 8 if config.dtype == "float64" else 4
    S, N, G = config.seeds, config.arms, config.group_size
    train = 24 * S * N * item
    if config.mode == "sampled":
        train += S * G * (8 + 12 * item)
    logged = config.steps // max(1, config.log_every) + 2
    results = len(config.objectives) * (logged * S * (7 + 2 * len(config.metric_ks)) * 8 * 3 + 8 * S * N * 8)
    return train + results
