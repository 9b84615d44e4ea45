"""``ladsim bench loss``: the verl-style GRPO reference, peak-memory measurement, JSON output and CLI errors."""

from __future__ import annotations

import json

import pytest
import torch
from cli_helpers import run_main

from ladsim.llm.bench import peak_memory, run_bench, verl_style_grpo_loss
from ladsim.llm.token_loss import LOSS_AGG_MODES, grpo_token_loss

REQUIRED = ("fused_lad_s", "eager_lad_s", "eager_grpo_s", "fused_vs_eager_grpo", "linear_fused_peak_bytes",
            "linear_materialized_peak_bytes", "linear_memory_ratio")


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_verl_style_grpo_equals_core_grpo(mode):
    g = torch.Generator().manual_seed(1)
    lp = -2 * torch.rand(6, 10, generator=g, dtype=torch.float64)
    old = lp + 0.5 * torch.randn(6, 10, generator=g, dtype=torch.float64)  # ratios within (e^-2, e^2): c = 3 inactive
    adv = torch.randn(6, 10, generator=g, dtype=torch.float64)
    mask = torch.rand(6, 10, generator=g) > 0.3
    mask[0] = False
    a = lp.clone().requires_grad_()
    b = lp.clone().requires_grad_()
    la, clipfrac, _, _ = verl_style_grpo_loss(old, a, adv, mask, mode, clip_ratio_c=10.0)
    lb = grpo_token_loss(b, old, adv, mask, loss_agg_mode=mode)
    torch.testing.assert_close(la, lb, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(torch.autograd.grad(la, a)[0], torch.autograd.grad(lb, b)[0])
    assert 0.0 < clipfrac.item() < 1.0


def test_dual_clip_bounds_negative_advantage_loss():
    lp = torch.tensor([[2.0]])  # ratio e^2 ~ 7.4 > c = 3
    loss, _, _, lower = verl_style_grpo_loss(torch.zeros(1, 1), lp, torch.tensor([[-1.0]]), torch.ones(1, 1))
    assert loss.item() == pytest.approx(3.0) and lower.item() == 1.0


def test_peak_memory_sees_a_large_allocation():
    n = 64 * 2**20  # 256 MiB of float32

    def alloc():
        x = torch.ones(n)
        return float(x.sum())

    peak, method = peak_memory(alloc, torch.device("cpu"))
    if peak is None:
        pytest.skip(method)
    assert 0.9 * 4 * n <= peak <= 1.5 * 4 * n


def test_run_bench_small_writes_every_figure(tmp_path):
    res = run_bench(tokens=4096, vocab=512, dim=32, linear_tokens=512, repeats=1, linear_repeats=1,
                    compile=False, chunk_size=64)
    for k in REQUIRED:
        assert k in res and res[k] is not None, k
    assert res["fused_vs_eager_grpo"] == pytest.approx(res["fused_lad_s"] / res["eager_grpo_s"])
    assert res["fused_vs_eager_lad_grad_max_abs_diff"] <= 1e-6 * max(1.0, res["grad_max_abs"])
    assert res["linear_grad_w_max_abs_diff"] <= 1e-4 * max(1.0, res["linear_grad_w_max_abs"])
    assert res["tokens"] == 4096 and res["chunk_size"] == 64 and res["compiled"] is False
    json.dumps(res)  # serializable


def test_cli_writes_json_and_reports_errors_in_one_line(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "loss", "--tokens", "2048", "--vocab", "256", "--dim", "16", "--linear-tokens", "256",
            "--repeats", "1", "--linear-repeats", "1", "--no-compile", "--json", str(out)]
    code, stdout, err = run_main(args, capsys)
    assert code == 0, err
    data = json.loads(out.read_text())
    assert all(k in data for k in REQUIRED)
    assert "fused / eager GRPO" in stdout
    code, _, err = run_main(args[:2] + ["--tokens", "0"], capsys)
    assert code == 2
    assert err.strip().startswith("error:") and "--tokens" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_main(args[:2] + ["--device", "tpu"], capsys)
    assert code == 2 and "--device" in err
