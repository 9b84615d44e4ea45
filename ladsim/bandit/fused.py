"""The bandit's fused engine: one optimizer step as a short, fixed chain of in-place tensor kernels, no autograd.

Every registered loss depends on the logits ``theta (S, N)`` only through ``logp = log_softmax(theta)``, so

    dL/dtheta = g - softmax(theta) * sum_y g(y),        g = dL/dlogp      (the log-softmax backward)

and ``g`` is the objective's hand-derived gradient (``Objective.grad``, elementwise ``dl/dlogp`` of its terms)
reduced the way the loss is reduced: times ``pi_old`` in exact mode, scattered onto the sampled arms with weight
``1/G`` in sampled mode. A full-support objective (``lad-theory``) returns the row's gradient itself, and so
does an objective's exact gradient (``Objective.exact_grad``) on an exact batch, where ``pi_old`` folds into
the derivative: the PPO family's ``pi_old * (-A pi/pi_old)`` is ``-A pi``, two kernels instead of four. The KL
penalty adds ``beta k'(logp - logp_ref)`` to the terms' derivative, the entropy bonus ``coef pi (logp + 1)`` to
``g``. An objective's own state (FlowRL's ``log Z``) gets its gradient from the same call. The update is torch's
own fused Adam kernel on the same tensors (so Adam is torch's, bit for bit) or ``theta -= lr * grad`` (SGD).

An objective registered without a hand gradient is differentiated by autograd here, for ``g`` only: the rest of
the step is the same.

On small problems (the paper's 8 seeds x 50 arms) a step costs its kernels' fixed launch cost, about 1.2 us each on
CPU, not their arithmetic, so the engine keeps the chain short: it runs in ``torch.inference_mode`` (no autograd
bookkeeping), uses torch's one-kernel log-softmax backward, and the objectives compute what depends only on
``pi_old``, the advantages and the reference policy once per ``pi_old`` (``Batch.memo``), and takes an
objective's exact gradient where it has one. Measured (2026-11-26, 2-core CPU; ``ladsim bench bandit``'s
8 seeds x 4000 steps divided by 4000): grpo 9 us a step, clip-cov, the longest, 23 us; a hand-written loop of
clip-cov's seventeen kernels with nothing else around them (a throwaway script) takes 19-21 us.

Why torch and not numpy, numba or a compiler: the engine has to run on CUDA too (``--device cuda``), torch's
elementwise kernels are vectorized (SLEEF) and multi-threaded for large ``S x N`` (1000 seeds), and the registry's
objectives are torch functions, so the hand gradients and the autograd reference share their code. Several steps
per dispatch were tried with ``torch.compile`` (inductor, CPU) on kl-cov's step (its sort form): 11.8 s to compile
one step and then 0.20 s for 4000 steps against 0.13 s for the same kernels run eagerly, because its guards and
Python wrapper cost more per call than the kernels it fuses; eight steps unrolled into one graph: 7.0 s to
compile, 0.23 s. numba would compile a whole
run into one loop but is a new dependency, would be a second implementation of every objective's gradient, and
its import and compilation would land in every ``ladsim run``; numpy has no GPU. The trainer runs small problems
on one thread (``threads_for``).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

from ladsim.losses import log_softmax_backward
from ladsim.objectives import Batch, EntropyBonus, KLPenalty, Objective, objective_loss


def objective_gradient(obj: Objective, batch: Batch, params: Any, state: Mapping[str, Tensor], logp: Tensor,
                       arms: Tensor | None = None, kl: KLPenalty | None = None,
                       bonus: EntropyBonus | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """``(dL/dlogp (S, N), {name: dL/dstate (S,)})`` of the summed loss ``objective_loss(...)``.

    ``logp (S, N)`` is the full row the batch was taken from: ``batch.logp`` itself in exact mode, or
    ``logp.gather(-1, arms)`` with ``arms (S, G)`` in sampled mode. Hand gradients where the objective has one
    (the gradient of its exact loss, ``Objective.exact_grad``, on an exact batch without a mask where it has
    that), autograd of the objective's loss otherwise.
    """
    exact = obj.exact_grad is not None and batch.exact and batch.mask is None
    if obj.grad is None and not exact:
        return _autograd_gradient(obj, batch, params, state, logp, arms, kl, bonus)
    d_terms, d_state = (obj.exact_grad if exact else obj.grad)(batch, params, state)
    if (obj.full_support or exact) and kl is None and bonus is None:  # the row's gradient already
        return d_terms, d_state
    w = _reduce_weights(batch)

    def spread(x: Tensor) -> Tensor:  # per-entry gradient of the reduced loss, onto the full row
        return w * x if arms is None else _scatter(w * x, arms, logp)

    if obj.full_support or exact:  # only the KL penalty's terms are reduced
        g = d_terms if kl is None else d_terms + spread(kl.grad(batch))
    else:
        g = spread(d_terms if kl is None else d_terms + kl.grad(batch))
        d_state = {k: (w * v).sum(-1) for k, v in d_state.items()}
    if bonus is not None:
        mass = torch.broadcast_to(w, batch.logp.shape).sum(-1, keepdim=True) if batch.weights is not None else 1.0
        g = g + bonus.grad(logp, mass)
    return g, d_state


def _reduce_weights(batch: Batch) -> Tensor | float:
    """The weight of each entry in the reduced loss (``ladsim.losses.reduce_actions``): ``pi_old`` (exact),
    ``1/n`` (the sample mean), masked entries 0."""
    if batch.mask is None:
        return batch.weights if batch.weights is not None else 1.0 / batch.logp.shape[-1]
    mask = torch.broadcast_to(batch.mask, batch.logp.shape).to(batch.logp.dtype)
    if batch.weights is not None:
        return batch.weights * mask
    return mask / mask.sum(-1, keepdim=True).clamp(min=1.0)


def _scatter(g_batch: Tensor, arms: Tensor, logp: Tensor) -> Tensor:
    """Sum the sampled entries' gradients ``(S, G)`` onto their arms ``(S, N)`` (an arm drawn twice gets both)."""
    return torch.zeros_like(logp).scatter_add_(-1, arms, torch.broadcast_to(g_batch, arms.shape).to(logp.dtype))


def _autograd_gradient(obj: Objective, batch: Batch, params: Any, state: Mapping[str, Tensor], logp: Tensor,
                       arms: Tensor | None, kl: KLPenalty | None,
                       bonus: EntropyBonus | None) -> tuple[Tensor, dict[str, Tensor]]:
    """The fallback: autograd of ``objective_loss`` in ``logp`` and the state, the batch rebuilt on a leaf."""
    import dataclasses

    with torch.enable_grad():
        leaf = logp.detach().requires_grad_(True)
        leaves = {k: v.detach().requires_grad_(True) for k, v in state.items()}
        changes: dict[str, Any] = {"logp": leaf if arms is None else leaf.gather(-1, arms)}
        if batch.entropy is not None:
            changes["entropy"] = -(leaf.exp() * leaf).sum(-1, keepdim=True)
        loss = objective_loss(obj, dataclasses.replace(batch, **changes), params, leaves, kl=kl,
                              entropy_bonus=bonus)
        grads = torch.autograd.grad(loss.sum(), [leaf, *leaves.values()], allow_unused=True)
    g = grads[0] if grads[0] is not None else torch.zeros_like(logp)
    d_state = {k: (v if v is not None else torch.zeros_like(leaves[k])) for k, v in zip(leaves, grads[1:])}
    return g, d_state


def logit_gradient(g: Tensor, logp: Tensor) -> Tensor:
    """``dL/dtheta = g - pi * sum(g)`` for ``logp = log_softmax(theta)``: ``g, logp (S, N)`` -> ``(S, N)``."""
    return log_softmax_backward(g, logp)


class FusedOptimizer:
    """Adam (torch's defaults and torch's fused kernel where it exists) or plain SGD over a list of tensors.

    ``step(grads)`` updates the tensors in place from gradients given in the same order; no ``.grad``
    attributes, no autograd. Adam's update is torch's: ``torch.optim.Adam(fused=True)`` runs the same kernel on
    the same tensors; without a fused kernel (older torch, some devices) the update falls back to a
    ``torch.optim.Adam`` object stepped with the given gradients.
    """

    def __init__(self, params: list[Tensor], optimizer: str, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params, self.kind, self.lr, self.betas, self.eps = params, optimizer, float(lr), betas, eps
        self._torch = None
        if optimizer == "adam":
            self.exp_avg = [torch.zeros_like(p) for p in params]
            self.exp_avg_sq = [torch.zeros_like(p) for p in params]
            # torch's fused Adam keeps its step count as a float32 tensor on the parameters' device
            self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in params]
            self.one = torch.ones((), dtype=torch.float32, device=params[0].device)  # a tensor adds in 0.6 us, 1 in 1.6
            if not _fused_adam_available(params):
                self._torch = torch.optim.Adam(params, lr=self.lr, betas=betas, eps=eps)

    def step(self, grads: list[Tensor]) -> None:
        if self.kind == "sgd":
            for p, g in zip(self.params, grads):
                p.add_(g, alpha=-self.lr)
        elif self._torch is not None:
            for p, g in zip(self.params, grads):
                p.grad = g
            self._torch.step()
        else:
            for step in self.steps:
                step.add_(self.one)
            torch._fused_adam_(self.params, grads, self.exp_avg, self.exp_avg_sq, [], self.steps, lr=self.lr,
                               beta1=self.betas[0], beta2=self.betas[1], weight_decay=0.0, eps=self.eps,
                               amsgrad=False, maximize=False)


def _fused_adam_available(params: list[Tensor]) -> bool:
    """Whether torch's fused Adam kernel runs on these tensors (the reference's ``Adam(fused=True)`` does then)."""
    if not hasattr(torch, "_fused_adam_"):
        return False
    # Probe the kernel itself on a one-element copy: building a torch.optim.Adam to ask would import
    # torch._dynamo (0.8 s, a third of a whole `ladsim run bandit`).
    try:
        for p in params[:1]:
            x = [torch.zeros(1, dtype=p.dtype, device=p.device) for _ in range(4)]
            step = [torch.ones((), dtype=torch.float32, device=p.device)]
            torch._fused_adam_([x[0]], [x[1]], [x[2]], [x[3]], [], step, lr=1e-3, beta1=0.9, beta2=0.999,
                               weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)
    except (RuntimeError, TypeError, ValueError, NotImplementedError):
        return False
    return True
