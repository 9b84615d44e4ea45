"""The vectorized bandit trainer: ``S`` seeds of a softmax policy over ``N`` arms train as one ``(S, N)`` tensor.

Seeds are a tensor dimension (as in purejaxrl): the loss of every seed is computed in one batched call of the
shared loss core, the per-seed losses are summed (seeds share no parameters, so the gradient of the sum is each
seed's own gradient) and one optimizer updates the whole ``(S, N)`` logit tensor. Adam and SGD act elementwise,
so this is exactly ``S`` independent runs. There is no Python loop over seeds or arms.

One optimizer step, top to bottom (LAD_SPEC):

1. every ``refresh_every`` steps: ``pi_old <- pi_theta`` (never when ``refresh_every = 0``);
2. exact mode: ``A(y) = R(y) - E_{pi_old}[R]`` for every arm, expectations weighted by ``pi_old``;
   sampled mode (every ``epochs`` steps): ``G`` arms per seed drawn from ``pi_old``, their rewards drawn from
   the spec, group-relative advantages;
3. loss: the objective's, looked up in the registry (``ladsim.objectives``), on a :class:`Batch`: all arms
   weighted by ``pi_old`` (exact mode) or the sampled group (sampled mode), with the prior as the reference
   policy and the policy's entropy where the objective or the entropy bonus needs it, plus the run's KL
   penalty and entropy bonus. A full-support objective (``lad-theory``: it needs the partition functions)
   always gets the exact batch over all arms: it is the oracle objective in sampled mode too;
4. backward, optimizer step (the policy's logits and the objective's own state, e.g. FlowRL's ``log Z``).

Step 4 has two engines that agree to rounding: the fused one (default; ``ladsim.bandit.fused``: hand-derived
gradients, torch's fused Adam kernel, no autograd graph; it builds the step's Batch once per ``pi_old`` and
sample, and rewrites the policy's tensors in it in place at each step) and the autograd reference. Random draws
(sampled arms and rewards, initial noise, clip-cov's pick) come from per-seed streams (``ladsim.streams``): seed
``i``'s run depends on ``(seed, i)`` only, not on how many seeds train with it.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from ladsim.advantages import exact_estimator_advantages, group_advantages, sampled_advantages
from ladsim.bandit.config import BanditConfig
from ladsim.bandit.fused import FusedOptimizer, logit_gradient, objective_gradient
from ladsim.bandit.metrics import PolicyMetrics
from ladsim.objectives import Batch, Objective, get_objective, objective_loss
from ladsim.streams import SeedStreams

if TYPE_CHECKING:
    import pandas as pd


def torch_dtype(config: BanditConfig) -> torch.dtype:
    """The torch dtype of the run (``config.dtype``)."""
    return getattr(torch, config.dtype)


@dataclass
class TrainResult:
    """What a bandit experiment produced.

    Attributes:
        config: the settings.
        metrics: tidy frame, one row per (objective, seed, logged step), one column per metric.
        final_policy: objective -> ``(S, N)`` array of final action probabilities.
        target: ``(N,)`` the distribution the objectives should reach, ``pi_old exp(A/eta) / Z`` at the prior.
        rewards: ``(N,)`` expected reward per arm.
    """

    config: BanditConfig
    metrics: pd.DataFrame
    final_policy: dict[str, np.ndarray]
    target: np.ndarray
    rewards: np.ndarray


def log_prior(config: BanditConfig) -> Tensor:
    """``log pi_old`` at the start, ``(N,)``: uniform, or the given prior normalized."""
    if config.prior is None:
        return torch.full((config.arms,), -np.log(config.arms), dtype=torch_dtype(config))
    prior = torch.tensor(config.prior, dtype=torch_dtype(config))
    return torch.log(prior / prior.sum())


def target_log_distribution(config: BanditConfig, reward_scale: float = 1.0) -> Tensor:
    """``log(pi_old exp(A/(scale eta)) / Z)`` at the prior, ``(N,)``; the centering of ``A`` cancels in ``Z``."""
    rewards = torch.tensor(config.reward_spec().expected_rewards(), dtype=torch_dtype(config))
    return torch.log_softmax(log_prior(config) + rewards / (reward_scale * config.eta), dim=-1)


def std_target_log_distribution(config: BanditConfig) -> Tensor | None:
    """The target of sampled mode with std-scaled advantages, ``log softmax(log pi_old + R / (sigma eta))``,
    ``(N,)``, at the prior; ``None`` in other modes. ``sigma = sqrt(E_{pi_old}[r^2] - E_{pi_old}[r]^2)`` is the
    std of one sampled reward, the large-group limit of the group std that GRPO divides advantages by."""
    if not config.std_scaled():
        return None
    spec = config.reward_spec()
    prior = log_prior(config).double().exp().numpy()
    mean = prior @ spec.expected_rewards()
    sigma = float(np.sqrt(max(prior @ spec.second_moment() - mean**2, 0.0)))
    return None if sigma == 0.0 else target_log_distribution(config, sigma)


def make_optimizer(params: Tensor | list[Tensor], config: BanditConfig) -> torch.optim.Optimizer:
    """Adam (torch defaults) or plain SGD over the logits (and an objective's own state, e.g. FlowRL's log Z).
    Adam uses torch's fused kernel where available: one pass over the ``(S, N)`` logits instead of a chain of
    elementwise ops, the same update rule."""
    params = [params] if isinstance(params, Tensor) else list(params)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr)
    try:
        return torch.optim.Adam(params, lr=config.lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch, or no fused kernel for this device/dtype
        return torch.optim.Adam(params, lr=config.lr)


def exact_advantages(rewards: Tensor, logp_old: Tensor) -> Tensor:
    """``A = R - E_{pi_old}[R]``: ``rewards (N,)``, ``logp_old (S, N)`` -> ``(S, N)``."""
    return rewards - (logp_old.exp() * rewards).sum(-1, keepdim=True)


def exact_estimator(config: BanditConfig, rewards: Tensor) -> Callable[[Tensor], Tensor]:
    """``logp_old (S, N) -> (S, N)``: the exact advantages of the run's estimator (``config.estimators()[0]``,
    its large-group limit), resolved once per run; the default ``dr-grpo`` is :func:`exact_advantages`. Noisy
    rewards enter through their second moment (``grpo``, ``reinforce++``, ``trl-batch``) and their chance of
    being nonzero (``gpg``). ``rewards (N,)``: the expected rewards."""
    name = config.estimators()[0]
    if name == "dr-grpo":
        return functools.partial(exact_advantages, rewards)
    spec = config.reward_spec()
    moments = {key: torch.as_tensor(value, dtype=rewards.dtype, device=rewards.device)
               for key, value in (("second_moment", spec.second_moment()), ("nonzero", spec.nonzero_prob()))}

    def advantages(logp_old: Tensor) -> Tensor:
        greedy = rewards[logp_old.argmax(-1)].unsqueeze(-1)                             # (S, 1)
        return exact_estimator_advantages(name, rewards, logp_old.exp().unsqueeze(1), greedy=greedy,
                                          scale=config.advantage_scale, **moments).squeeze(1)

    return advantages


def group_estimator(config: BanditConfig, spec, streams: SeedStreams, dtype: torch.dtype
                    ) -> Callable[[Tensor, Tensor], Tensor]:
    """``(arms (S, G), logp_old (S, N)) -> (S, G)``: the advantages of sampled pulls under the run's sampled
    estimator, resolved once per run. Their rewards are drawn (one per pull, the seeds' streams), and for
    ``remax`` one more pull of ``pi_old``'s greedy arm per seed, its baseline."""
    name, scale = config.estimators()[1], config.advantage_scale

    def advantages(arms: Tensor, logp_old: Tensor) -> Tensor:
        rewards = spec.sample(arms, streams).to(dtype)
        if name == "grpo":
            return group_advantages(rewards, scale=scale)
        greedy = spec.sample(logp_old.argmax(-1, keepdim=True), streams).to(dtype) if name == "remax" else None
        return sampled_advantages(name, rewards.unsqueeze(1), greedy=greedy, scale=scale).squeeze(1)

    return advantages


def policy_entropy(logp: Tensor, out: Tensor | None = None) -> Tensor:
    """``H(pi) = -sum_y pi(y) log pi(y)`` per seed, ``(S, N)`` -> ``(S, 1)``: differentiable, or written into
    ``out`` (not differentiable)."""
    if out is None:
        return torch.linalg.vecdot(logp.exp(), logp).neg_().unsqueeze(-1)
    return torch.sum(logp.exp().mul_(logp), -1, keepdim=True, out=out).neg_()


ENGINES = ("fused", "autograd")
SMALL_PROBLEM = 4096  # S x N below this trains on one thread (see threads_for)


def threads_for(elements: int) -> int:
    """torch threads for an ``(S, N)`` problem of ``elements = S * N`` entries: one below ``SMALL_PROBLEM``.

    On small tensors every kernel costs its fixed dispatch time, and the threads' synchronization only adds to
    it (a 4 x 50 log_softmax measured ~7 ms with 2 threads on a busy 2-core machine, < 0.1 ms with one).
    Measured on an idle 2-core machine (practical LAD, exact mode, float64, 2026-11-25; ``ladsim bench bandit
    --seeds S --steps T --threads 1`` against ``--threads 2``, its ``vectorized_s``): 8 x 50 arms, 2000 steps,
    0.037 s on one thread and 0.042 s on two; 80 x 50: 0.098 and 0.088 s; 1000 x 50, 4000 steps: 1.86 and 1.02 s
    (the row-wise log-softmax and the reductions split over threads long before torch's 32768-entry grain for
    elementwise kernels). Larger problems use torch's default (the machine's cores).
    """
    return 1 if elements < SMALL_PROBLEM else torch.get_num_threads()


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run torch's CPU kernels on ``threads`` intra-op threads for the duration (``None``: leave as is)."""
    if threads is None:
        yield
        return
    from ladsim.resources import check_threads

    check_threads(threads, "threads")  # at most the CPUs this process may use
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu"`` or ``"cuda"`` (``"cuda:K"``) as a ``torch.device``; ``ValueError`` for any other string
    (parsed strictly: ``ladsim.validation.check_device``), where CUDA is absent, or where device ``K`` is not
    among the machine's."""
    from ladsim.validation import check_device

    dev = torch.device(check_device(str(device)))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but CUDA is not available here (no GPU or a CPU-only torch); "
                         "use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device} requested but this machine has {torch.cuda.device_count()} CUDA "
                         f"device(s): cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return dev


def train_objective(config: BanditConfig, objective: str, on_steps: Callable[[int], None] | None = None,
                    engine: str = "fused", threads: int | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Train ``config.seeds`` policies under one registered objective (``ladsim.objectives``).

    Returns ``(trajectory, final_policy)``: ``trajectory`` maps ``"step"`` to ``(T,)`` and each metric to
    ``(T, S)`` arrays at the logged steps (0, ``log_every``, ..., ``steps``); ``final_policy`` is ``(S, N)``.
    ``on_steps(n)`` is called as training advances by ``n`` steps (for progress bars).

    ``engine``: ``"fused"`` (default) computes each step's gradient by hand (``ladsim.bandit.fused``) and
    updates with torch's fused Adam kernel, no autograd graph; ``"autograd"`` is the reference: the loss of
    ``objective_loss``, ``backward`` and a ``torch.optim`` optimizer. Both draw the same random numbers and
    agree to rounding (the tests hold them to 1e-12 in float64). ``threads``: torch CPU threads (default
    ``threads_for(S * N)``).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from: {', '.join(ENGINES)}")
    device = resolve_device(config.device)
    obj = get_objective(objective)
    if engine == "autograd":
        grad_mode = torch.enable_grad()
    elif obj.grad is None:  # the fused engine's autograd fallback records a graph
        grad_mode = torch.no_grad()
    else:  # no autograd bookkeeping at all on the fused engine's tensors (~10% of a small kernel's cost)
        grad_mode = torch.inference_mode()
    with torch_threads(threads if threads is not None else threads_for(config.seeds * config.arms)), grad_mode:
        return _train(config, obj, on_steps, engine, device)


def _train(config: BanditConfig, obj: Objective, on_steps: Callable[[int], None] | None, engine: str,
           device: torch.device) -> tuple[dict[str, np.ndarray], np.ndarray]:
    params = config.objective_params(obj.name)
    kl, bonus, control = config.kl_penalty(), config.entropy_bonus(), config.entropy_control()
    needs_entropy = "entropy" in obj.needs or bonus is not None or control is not None
    spec = config.reward_spec()
    S, N, G = config.seeds, config.arms, config.group_size
    streams = SeedStreams(config.seed, S, device)  # seed i's draws depend on (seed, i) only
    dtype = torch_dtype(config)
    rewards = torch.tensor(spec.expected_rewards(), dtype=dtype, device=device)
    prior = log_prior(config).to(device)
    std_target = std_target_log_distribution(config)
    metrics = PolicyMetrics(target_log_distribution(config).to(device), spec.expected_rewards(),
                            spec.success_prob(), spec.modes(), config.metric_ks,
                            log_std_target=None if std_target is None else std_target.to(device))

    theta = prior.expand(S, N).clone()
    if config.init_std > 0:
        theta += config.init_std * streams.normal(N, dtype).to(device)
    state = obj.state(params, (S,), dtype, device)
    fused = engine == "fused"
    if fused:
        state = {k: v.detach() for k, v in state.items()}
        opt = FusedOptimizer([theta, *state.values()], config.optimizer, config.lr)
    else:
        theta.requires_grad_(True)
        opt = make_optimizer([theta, *state.values()], config)
    sampled = config.mode == "sampled" and not obj.full_support
    controllers = None if control is None else control.begin(S, dtype, device)

    exact_advantages_of, group_advantages_of = exact_estimator(config, rewards), group_estimator(config, spec,
                                                                                                  streams, dtype)
    logp_old = prior.expand(S, N)
    advantages = exact_advantages_of(logp_old)
    weights = logp_old.exp()
    arms = batch_logp_old = group_adv = logp_ref = None
    memo: dict = {}  # the objective's constants while pi_old and the sample stay (Batch.memo)
    batch: Batch | None = None  # with logp, the policy's full row: the fused engine keeps both while memo stays
    logp: Tensor | None = None
    steps_logged, logged = [], []

    def log(step: int) -> None:
        steps_logged.append(step)
        logged.append(metrics(torch.log_softmax(theta.detach(), -1)))

    progress_chunk = max(1, config.steps // 100)
    for step in range(config.steps):
        if config.refresh_every and step % config.refresh_every == 0:
            logp_old = torch.log_softmax(theta.detach(), -1)
            weights = logp_old.exp()
            advantages = exact_advantages_of(logp_old)
            memo = {}
        if sampled and step % config.epochs == 0:  # a full-support objective never reads a sample
            arms = streams.categorical(weights, G)  # (S, G)
            group_adv = group_advantages_of(arms, logp_old)
            batch_logp_old = logp_old.gather(-1, arms)
            logp_ref = prior[arms]
            memo = {}
        if step % config.log_every == 0:
            log(step)

        if fused and batch is not None and batch.memo is memo:
            # Same pi_old and sample: the fused engine rewrites the policy's tensors of the batch in place (a
            # frozen Batch takes about 1.5 us to build, more than one of a small step's kernels).
            torch.log_softmax(theta, -1, out=logp)
            if sampled:
                torch.gather(logp, -1, arms, out=batch.logp)
            if needs_entropy:
                policy_entropy(logp, out=batch.entropy)
        else:
            logp = torch.log_softmax(theta, -1)
            entropy = policy_entropy(logp) if needs_entropy else None
            if sampled:
                batch = Batch(logp.gather(-1, arms), batch_logp_old, group_adv, logp_ref=logp_ref,
                              entropy=entropy, generator=streams, memo=memo)
            else:
                batch = Batch(logp, logp_old, advantages, weights=weights, logp_ref=prior, entropy=entropy,
                              generator=streams, memo=memo)
        if control is not None:
            bonus = control.bonus(controllers)
        if fused:
            g, d_state = objective_gradient(obj, batch, params, state, logp, arms if sampled else None, kl, bonus)
            opt.step([logit_gradient(g, logp), *(d_state[k] for k in state)])
        else:
            loss = objective_loss(obj, batch, params, state, kl=kl, entropy_bonus=bonus)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
        if control is not None:  # one state: the step's mean token entropy is the policy's entropy
            control.update(controllers, batch.entropy.reshape(S))
        if on_steps is not None and (step + 1) % progress_chunk == 0:
            on_steps(progress_chunk)
    if on_steps is not None:
        on_steps(config.steps % progress_chunk)
    log(config.steps)

    trajectory = {"step": np.array(steps_logged)}
    for name in logged[0]:
        trajectory[name] = torch.stack([m[name] for m in logged]).cpu().numpy()
    final = torch.softmax(theta.detach(), -1).cpu().numpy()
    return trajectory, final


def train(config: BanditConfig, on_steps: Callable[[int], None] | None = None, engine: str = "fused",
          threads: int | None = None) -> TrainResult:
    """Train every objective of ``config`` (``train_objective``) and gather a tidy metrics frame."""
    import pandas as pd

    frames, finals = [], {}
    for objective in config.objectives:
        trajectory, finals[objective] = train_objective(config, objective, on_steps, engine, threads)
        steps = trajectory.pop("step")
        T, S = len(steps), config.seeds
        frame = pd.DataFrame({
            "objective": objective,
            "seed": np.tile(np.arange(S), T),
            "step": np.repeat(steps, S),
            **{name: values.reshape(-1) for name, values in trajectory.items()},
        })
        frames.append(frame)
    return TrainResult(
        config=config,
        metrics=pd.concat(frames, ignore_index=True),
        final_policy=finals,
        target=target_log_distribution(config).exp().numpy(),
        rewards=config.reward_spec().expected_rewards(),
    )
