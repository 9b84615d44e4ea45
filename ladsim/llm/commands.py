"""CLI command ``ladsim bench loss``: parse, delegate to :func:`ladsim.llm.bench.run_bench`, report."""

from __future__ import annotations

from pathlib import Path

import typer

from ladsim.divergences import get_divergence
from ladsim.io import check_out_file, write_json
from ladsim.llm.token_loss import LOSS_AGG_MODES


def bench_loss(
    tokens: int = typer.Option(1 << 20, help="Tokens of the loss benchmark (rows of 1024)."),
    vocab: int = typer.Option(32768, help="Vocabulary size V of the LM-head benchmark."),
    dim: int = typer.Option(1024, help="Hidden size d of the LM-head benchmark."),
    linear_tokens: int = typer.Option(8192, help="Tokens of the LM-head benchmark."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    repeats: int = typer.Option(5, help="Timed repeats of the loss benchmark (median)."),
    linear_repeats: int = typer.Option(2, help="Timed repeats of the LM-head benchmark (median)."),
    warmup: int = typer.Option(1, help="Untimed warm-up rounds of the loss benchmark."),
    div: str = typer.Option("js", help="f-divergence of LAD."),
    eta: float = typer.Option(1.0, help="LAD temperature eta > 0."),
    loss_agg_mode: str = typer.Option("token-mean", help=f"One of: {', '.join(LOSS_AGG_MODES)}."),
    compile: bool = typer.Option(True, "--compile/--no-compile", help="torch.compile the fused kernel if possible."),
    chunk_size: int | None = typer.Option(None, help="Tokens per chunk of the LM-head path (default: auto)."),
    peak_bandwidth_gbs: float | None = typer.Option(None, help="Device peak memory bandwidth (GB/s), if known."),
    threads: int | None = typer.Option(None, help="torch CPU threads (default: torch's choice)."),
    json_path: Path | None = typer.Option(None, "--json", help="Write every figure to this JSON file."),  # noqa: B008
) -> None:
    """Fused LAD vs eager GRPO/LAD, and the chunked LM head vs materialized logits: time and peak memory."""
    from ladsim.llm.bench import check_bench_counts, format_report, run_bench

    from ladsim.resources import check_memory

    get_divergence(div)
    if not 0 < eta < float("inf"):
        raise ValueError(f"--eta must be a finite number > 0, got {eta}")
    check_bench_counts(tokens=tokens, vocab=vocab, dim=dim, linear_tokens=linear_tokens, repeats=repeats,
                       linear_repeats=linear_repeats, warmup=warmup)
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"--chunk-size must be a positive integer, got {chunk_size}")
    if peak_bandwidth_gbs is not None and not 0 < peak_bandwidth_gbs < float("inf"):
        raise ValueError(f"--peak-bandwidth-gbs must be a finite number > 0, got {peak_bandwidth_gbs}")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    # float32 bytes held at once, generously: ~16 token tensors; LM head: weight + its gradient, hidden states and
    # their gradient, and the materialized baseline's logits with softmax and gradient.
    check_memory(4 * (16 * tokens + 2 * vocab * dim + 2 * linear_tokens * dim + 3 * linear_tokens * vocab),
                 "bench loss")
    if json_path is not None:  # before any work: a bad path must not cost the benchmark
        check_out_file(json_path)
    res = run_bench(tokens=tokens, vocab=vocab, dim=dim, linear_tokens=linear_tokens, device=device,
                    repeats=repeats, linear_repeats=linear_repeats, warmup=warmup, div=div, eta=eta,
                    loss_agg_mode=loss_agg_mode, compile=compile, chunk_size=chunk_size,
                    peak_bandwidth_gbs=peak_bandwidth_gbs, threads=threads, log=lambda s: typer.echo(s, err=True))
    typer.echo(format_report(res))
    if json_path is not None:
        write_json(json_path, res)
        typer.echo(f"wrote {json_path}")
