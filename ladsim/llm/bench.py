"""``ladsim bench loss``: the fused LAD loss and the chunked LM-head path, timed side by side in one run.

Two measurements, each as the median over repeats after a warm-up, the contenders interleaved round by round:

1. Loss at ``tokens`` tokens (``(tokens / 1024, 1024)`` float32, random response lengths), forward + backward:
   the fused LAD loss (:func:`ladsim.llm.fused.fused_lad_loss`, compiled when possible), ladsim's eager LAD
   (:func:`ladsim.llm.token_loss.lad_token_loss`, autograd through the core) and an eager GRPO reference written
   the way verl writes its vanilla policy loss (:func:`verl_style_grpo_loss`: elementwise ops, dual clip, masked
   means). Bytes moved are the algorithm's minimum traffic (:func:`fused_lad_bytes`); on CUDA the fraction of
   the device's peak bandwidth is reported when the peak is known (or given).
2. LM head at ``vocab x dim`` and ``linear_tokens`` tokens, forward + backward (gradients for hidden states and
   weight): :func:`ladsim.llm.linear.fused_linear_lad_loss` against :func:`materialized_lad_loss`. Peak memory:
   on CUDA ``torch.cuda.max_memory_allocated`` above the allocation before the call; on CPU (Linux) the peak
   resident set size above the resident size before the call (``VmHWM`` after resetting it through
   ``/proc/self/clear_refs``), which counts every allocation of the process, torch's included.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from ladsim.llm import fused as fused_mod
from ladsim.llm.fused import fused_lad_loss
from ladsim.llm.linear import auto_chunk_size, fused_linear_lad_loss, materialized_lad_loss
from ladsim.llm.token_loss import LOSS_AGG_MODES, lad_token_loss

TARGET_FUSED_VS_GRPO = 1.0
TARGET_LINEAR_MEMORY = 1.0 / 8.0
RESPONSE_LENGTH = 1024


# --- the eager GRPO reference, in verl's style --------------------------------------------------------

def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def _verl_style_agg(loss_mat: Tensor, mask: Tensor, mode: str) -> Tensor:
    if mode == "token-mean":
        return _masked_mean(loss_mat, mask)
    seq_sum = (loss_mat * mask).sum(-1)
    nonempty = (mask.sum(-1) > 0).float()
    if mode == "seq-mean-token-sum":
        return _masked_mean(seq_sum, nonempty)
    if mode == "seq-mean-token-mean":
        return _masked_mean(seq_sum / mask.sum(-1).clamp(min=1.0), nonempty)
    if mode == "seq-mean-token-sum-norm":
        return _masked_mean(seq_sum / mask.shape[-1], nonempty)
    raise ValueError(f"unknown loss_agg_mode {mode!r}; choose one of: {', '.join(LOSS_AGG_MODES)}")


def verl_style_grpo_loss(old_log_prob: Tensor, log_prob: Tensor, advantages: Tensor, response_mask: Tensor,
                         loss_agg_mode: str = "token-mean", clip_ratio_low: float = 0.2,
                         clip_ratio_high: float = 0.2, clip_ratio_c: float = 3.0):
    """Eager PPO/GRPO clipped loss with dual clip, as verl-style trainers write it: one torch op per line.

    ``ratio = exp(logp - logp_old)``; ``l = max(-A r, -A clip(r, 1 - lo, 1 + hi))``; for ``A < 0`` also
    ``min(l, -A c)``; aggregated with the mask multiplied in. Shapes ``(B, T)``. Returns
    ``(loss, clipfrac, approx_kl, clipfrac_lower)``. Equal to ``grpo_token_loss`` while no ratio exceeds ``c``
    on a negative advantage.
    """
    mask = response_mask.float()
    neg_kl = log_prob - old_log_prob
    ratio = torch.exp(neg_kl)
    approx_kl = _masked_mean(-neg_kl, mask)
    loss1 = -advantages * ratio
    loss2 = -advantages * torch.clamp(ratio, 1.0 - clip_ratio_low, 1.0 + clip_ratio_high)
    clipped = torch.maximum(loss1, loss2)
    clipfrac = _masked_mean(torch.gt(loss2, loss1).float(), mask)
    loss3 = -advantages * clip_ratio_c
    dual = torch.minimum(loss3, clipped)
    clipfrac_lower = _masked_mean(torch.gt(clipped, loss3).float() * (advantages < 0).float(), mask)
    per_token = torch.where(advantages < 0, dual, clipped)
    return _verl_style_agg(per_token, mask, loss_agg_mode), clipfrac, approx_kl, clipfrac_lower


# --- measuring ------------------------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int, warmup: int,
                         device: torch.device) -> dict[str, float]:
    """Median wall time (s) of each callable; every round runs each once, in turn (side by side)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(warmup + repeats):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_memory(fn: Callable[[], object], device: torch.device) -> tuple[int | None, str]:
    """Peak bytes allocated by ``fn()`` above what was allocated before it, and the method used."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        del out
        return int(peak), "torch.cuda.max_memory_allocated"
    if not _reset_hwm():
        fn()
        return None, "unavailable (no /proc/self/clear_refs)"
    base = _status_bytes("VmRSS")
    out = fn()
    hwm = _status_bytes("VmHWM")
    del out
    if base is None or hwm is None:
        return None, "unavailable (no /proc/self/status)"
    return int(hwm - base), "peak RSS above RSS before (VmHWM, reset via /proc/self/clear_refs)"


def fused_lad_bytes(n_tokens: int, logp_bytes: int = 4) -> int:
    """Minimum memory traffic of one fused forward + backward, per token: read logp, logp_old, A (4 B each
    here), the mask (1 B) and the aggregation weights (4 B); write dL/dlogp (4 B); building the weights reads
    the mask and writes them (1 + 4 B); backward reads the saved gradient and writes logp's (4 + logp_bytes)."""
    per_token = (logp_bytes + 4 + 4 + 1 + 4 + 4) + (1 + 4) + (4 + logp_bytes)
    return n_tokens * per_token


def cuda_peak_bandwidth(device: torch.device) -> float | None:
    """Theoretical DRAM bandwidth in bytes/s from the device properties, where torch exposes them."""
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "memory_clock_rate", None)
    bus_bits = getattr(props, "memory_bus_width", None)
    if not clock_khz or not bus_bits:
        return None
    return 2.0 * clock_khz * 1e3 * bus_bits / 8.0  # double data rate


# --- the benchmark --------------------------------------------------------------------------------------

def _loss_inputs(tokens: int, device: torch.device, seed: int):
    t = min(RESPONSE_LENGTH, tokens)
    b = max(1, tokens // t)
    g = torch.Generator(device="cpu").manual_seed(seed)
    logp = (-2.0 * torch.rand(b, t, generator=g)).to(device)
    old = (logp.cpu() + 0.1 * torch.randn(b, t, generator=g)).to(device)
    adv = torch.randn(b, 1, generator=g).expand(b, t).contiguous().to(device)
    lengths = torch.randint(1, t + 1, (b, 1), generator=g)
    mask = (torch.arange(t)[None, :] < lengths).to(device)
    return logp, old, adv, mask


def _linear_inputs(n: int, vocab: int, dim: int, device: torch.device, seed: int):
    g = torch.Generator(device="cpu").manual_seed(seed)
    t = min(512, n)
    b = max(1, n // t)
    h = torch.randn(b, t, dim, generator=g).to(device)
    w = (torch.randn(vocab, dim, generator=g) / math.sqrt(dim)).to(device)
    y = torch.randint(0, vocab, (b, t), generator=g).to(device)
    old = (-math.log(vocab) + 0.5 * torch.randn(b, t, generator=g)).to(device)
    adv = torch.randn(b, 1, generator=g).expand(b, t).contiguous().to(device)
    mask = torch.ones(b, t, dtype=torch.bool, device=device)
    return h, w, y, old, adv, mask


def check_bench_counts(*, tokens: int, vocab: int, dim: int, linear_tokens: int, repeats: int,
                       linear_repeats: int, warmup: int) -> None:
    """``ValueError`` naming the CLI flag unless the sizes and repeats are positive integers and ``warmup >= 0``."""
    for name, val in (("tokens", tokens), ("vocab", vocab), ("dim", dim), ("linear_tokens", linear_tokens),
                      ("repeats", repeats), ("linear_repeats", linear_repeats)):
        if not isinstance(val, int) or val < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {val!r}")
    if warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {warmup!r}")


def run_bench(*, tokens: int = 1 << 20, vocab: int = 32768, dim: int = 1024, linear_tokens: int = 8192,
              device: str = "cpu", repeats: int = 5, linear_repeats: int = 2, warmup: int = 1,
              div: str = "js", eta: float = 1.0, loss_agg_mode: str = "token-mean", compile: bool = True,
              chunk_size: int | None = None, peak_bandwidth_gbs: float | None = None, seed: int = 0,
              threads: int | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Run both measurements and return every figure as a flat dict (see the module docstring)."""
    check_bench_counts(tokens=tokens, vocab=vocab, dim=dim, linear_tokens=linear_tokens, repeats=repeats,
                       linear_repeats=linear_repeats, warmup=warmup)
    if loss_agg_mode not in LOSS_AGG_MODES:
        raise ValueError(f"unknown loss_agg_mode {loss_agg_mode!r}; choose one of: {', '.join(LOSS_AGG_MODES)}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but no CUDA device is available here")
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be a positive integer, got {threads!r}")
        torch.set_num_threads(threads)
    dev = torch.device(device)
    say = log or (lambda s: None)
    res: dict = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "device": device,
        "device_name": torch.cuda.get_device_name(dev) if device == "cuda" else (platform.processor()
                                                                                   or platform.machine()),
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_before": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "div": div, "eta": eta, "loss_agg_mode": loss_agg_mode,
    }

    # 1. the loss at `tokens` tokens
    logp0, old, adv, mask = _loss_inputs(tokens, dev, seed)
    n = logp0.numel()
    res.update(tokens=n, batch=logp0.shape[0], response_length=logp0.shape[1],
               unmasked_fraction=float(mask.float().mean()))
    lp = logp0.clone().requires_grad_()

    def eager_grpo():
        return torch.autograd.grad(verl_style_grpo_loss(old, lp, adv, mask, loss_agg_mode)[0], lp)[0]

    def eager_lad():
        return torch.autograd.grad(lad_token_loss(lp, old, adv, mask, eta=eta, div=div,
                                                  loss_agg_mode=loss_agg_mode), lp)[0]

    def fused(comp: bool):
        return lambda: torch.autograd.grad(fused_lad_loss(lp, old, adv, mask, eta=eta, div=div,
                                                          loss_agg_mode=loss_agg_mode, compile=comp), lp)[0]

    compiled = False
    if compile:
        say("compiling the fused kernel (torch.compile) ...")
        t0 = time.perf_counter()
        fused(True)()
        _sync(dev)
        res["compile_s"] = time.perf_counter() - t0
        compiled = fused_mod.compile_error() is None and not fused_mod.compile_disabled()
        res["compile_error"] = fused_mod.compile_error()
    res["compiled"] = compiled
    # agreement of the measured contenders (value and gradient), on these very inputs
    lp_ref = logp0.clone().requires_grad_()
    ref_loss = lad_token_loss(lp_ref, old, adv, mask, eta=eta, div=div, loss_agg_mode=loss_agg_mode)
    ref_grad, = torch.autograd.grad(ref_loss, lp_ref)
    f_loss = fused_lad_loss(lp, old, adv, mask, eta=eta, div=div, loss_agg_mode=loss_agg_mode, compile=compiled)
    f_grad, = torch.autograd.grad(f_loss, lp)
    f_loss, ref_loss = f_loss.detach(), ref_loss.detach()
    res["fused_vs_eager_lad_loss_rel_diff"] = float((f_loss - ref_loss).abs() / ref_loss.abs().clamp(min=1e-30))
    res["fused_vs_eager_lad_grad_max_abs_diff"] = float((f_grad - ref_grad).abs().max())
    res["grad_max_abs"] = float(ref_grad.abs().max())
    del lp_ref, ref_grad, f_grad

    say(f"loss: {n:,} tokens, forward + backward, {warmup} warm-up + {repeats} repeats, interleaved ...")
    fns = {"fused_lad_s": fused(compiled), "eager_lad_s": eager_lad, "eager_grpo_s": eager_grpo}
    if compiled:
        fns["fused_lad_eager_kernel_s"] = fused(False)
    res.update(_interleaved_medians(fns, repeats, warmup, dev))
    res["fused_vs_eager_grpo"] = res["fused_lad_s"] / res["eager_grpo_s"]
    res["fused_vs_eager_lad"] = res["fused_lad_s"] / res["eager_lad_s"]
    res["eager_lad_vs_eager_grpo"] = res["eager_lad_s"] / res["eager_grpo_s"]
    res["fused_lad_bytes"] = fused_lad_bytes(n, logp0.element_size())
    res["fused_lad_bytes_per_s"] = res["fused_lad_bytes"] / res["fused_lad_s"]
    peak = peak_bandwidth_gbs * 1e9 if peak_bandwidth_gbs else (cuda_peak_bandwidth(dev) if device == "cuda"
                                                                 else None)
    res["peak_bandwidth_bytes_per_s"] = peak
    res["bandwidth_fraction"] = res["fused_lad_bytes_per_s"] / peak if peak else None
    del logp0

    # 2. the LM head
    h0, w0, y, old, adv, mask = _linear_inputs(linear_tokens, vocab, dim, dev, seed + 1)
    chunk = chunk_size or auto_chunk_size(vocab, y.numel())
    res.update(linear_tokens=y.numel(), vocab=vocab, dim=dim, chunk_size=chunk)
    h = h0.clone().requires_grad_()
    w = w0.clone().requires_grad_()

    def lin_fused():
        return torch.autograd.grad(fused_linear_lad_loss(h, w, y, old, adv, mask, eta=eta, div=div,
                                                         loss_agg_mode=loss_agg_mode, chunk_size=chunk), (h, w))

    def lin_materialized():
        return torch.autograd.grad(materialized_lad_loss(h, w, y, old, adv, mask, eta=eta, div=div,
                                                         loss_agg_mode=loss_agg_mode), (h, w))

    say(f"linear: {y.numel():,} tokens, V = {vocab:,}, d = {dim:,}, chunk {chunk}: peak memory (warm-up) ...")
    res["linear_fused_peak_bytes"], method = peak_memory(lin_fused, dev)
    res["linear_materialized_peak_bytes"], _ = peak_memory(lin_materialized, dev)
    res["memory_method"] = method
    if res["linear_fused_peak_bytes"] and res["linear_materialized_peak_bytes"]:
        res["linear_memory_ratio"] = res["linear_fused_peak_bytes"] / res["linear_materialized_peak_bytes"]
    else:
        res["linear_memory_ratio"] = None
    res["linear_logits_bytes"] = y.numel() * vocab * 4
    res["linear_weight_bytes"] = w0.numel() * w0.element_size()
    gf, gm = lin_fused(), lin_materialized()
    res["linear_grad_h_max_abs_diff"] = float((gf[0] - gm[0]).abs().max())
    res["linear_grad_w_max_abs_diff"] = float((gf[1] - gm[1]).abs().max())
    res["linear_grad_w_max_abs"] = float(gm[1].abs().max())
    del gf, gm
    say(f"linear: timing, {linear_repeats} repeats, interleaved ...")
    t = _interleaved_medians({"linear_fused_s": lin_fused, "linear_materialized_s": lin_materialized},
                             linear_repeats, 0, dev)
    res.update(t)
    res["linear_time_ratio"] = res["linear_fused_s"] / res["linear_materialized_s"]

    res["targets"] = {
        "fused_vs_eager_grpo_max": TARGET_FUSED_VS_GRPO,
        "fused_vs_eager_grpo_met": res["fused_vs_eager_grpo"] <= TARGET_FUSED_VS_GRPO,
        "linear_memory_ratio_max": TARGET_LINEAR_MEMORY,
        "linear_memory_ratio_met": (res["linear_memory_ratio"] is not None
                                    and res["linear_memory_ratio"] <= TARGET_LINEAR_MEMORY),
    }
    res["liger_kernel"] = _liger_note(device)
    res["load_average_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return res


def _liger_note(device: str) -> str:
    try:
        import liger_kernel  # noqa: F401
    except Exception:  # noqa: BLE001
        return "not installed: no comparison"
    return ("installed, not compared: ladsim does not call Liger-Kernel's API; compare by hand on "
            f"{device}")


def _fmt_load(load) -> str:
    return "n/a" if not load else "/".join(f"{x:.1f}" for x in load)


def format_report(res: dict) -> str:
    """Human-readable summary of :func:`run_bench`'s dict."""
    def gib(x):
        return "n/a" if x is None else f"{x / 2**30:.3f} GiB"

    lines = [
        (f"device {res['device']} ({res['device_name']}), {res['cpu_threads']} torch threads, torch {res['torch']}, "
         f"{res['date']}, load average before {_fmt_load(res['load_average_before'])}"),
        f"loss  {res['tokens']:,} tokens ({res['batch']} x {res['response_length']}), div {res['div']}, "
        f"eta {res['eta']}, {res['loss_agg_mode']}, fused kernel compiled: {res['compiled']}"
        + (f" (compile {res['compile_s']:.1f} s)" if res.get("compile_s") is not None else ""),
        f"  fused LAD      {res['fused_lad_s'] * 1e3:9.2f} ms",
    ]
    if "fused_lad_eager_kernel_s" in res:
        lines.append(f"  fused LAD, eager kernel {res['fused_lad_eager_kernel_s'] * 1e3:9.2f} ms")
    bw = res["fused_lad_bytes_per_s"] / 1e9
    frac = res["bandwidth_fraction"]
    lines += [
        f"  eager LAD      {res['eager_lad_s'] * 1e3:9.2f} ms",
        f"  eager GRPO     {res['eager_grpo_s'] * 1e3:9.2f} ms  (verl-style)",
        (f"  fused / eager GRPO = {res['fused_vs_eager_grpo']:.3f}  (target <= {TARGET_FUSED_VS_GRPO})   "
         f"fused / eager LAD = {res['fused_vs_eager_lad']:.3f}"),
        f"  fused LAD moves >= {res['fused_lad_bytes'] / 1e6:.1f} MB: {bw:.1f} GB/s"
        + (f", {100 * frac:.1f}% of peak" if frac else " (device peak bandwidth unknown)"),
        f"linear {res['linear_tokens']:,} tokens, V = {res['vocab']:,}, d = {res['dim']:,}, chunk {res['chunk_size']}",
        f"  fused-linear   {res['linear_fused_s']:8.2f} s   peak {gib(res['linear_fused_peak_bytes'])}",
        f"  materialized   {res['linear_materialized_s']:8.2f} s   peak {gib(res['linear_materialized_peak_bytes'])}",
        f"  memory ratio = {res['linear_memory_ratio']:.3f} (target <= {TARGET_LINEAR_MEMORY:.3f})   "
        f"time ratio = {res['linear_time_ratio']:.3f}   [{res['memory_method']}]"
        if res["linear_memory_ratio"] is not None else f"  memory: {res['memory_method']}",
        f"Liger-Kernel: {res['liger_kernel']}",
    ]
    return "\n".join(lines)
