"""``ladsim verify``: run the theory checks, print the table, write JSON and markdown, exit 1 on a failure."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from ladsim.io import check_out_file, write_json, write_text


def verify(
    quick: bool = typer.Option(False, "--quick", help="CI mode: small instance counts, under 30 s."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random instance (reproducible runs)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON to this path."),
    report: Optional[Path] = typer.Option(
        None, "--report",
        help="Markdown report path (default: docs/theory-report.md in a full run of every check; none with "
             "--quick or --only)."),
    only: Optional[list[str]] = typer.Option(None, "--only", help="Run only these checks (repeatable)."),
) -> None:
    """Verify Lemma 3.1, Lemma 3.2, the LAD gradient, Theorem B.1 and the facts about the objectives LAD is
    compared with (KL estimators, entropy mechanism, KL-penalty and FlowRL fixed points) numerically
    (docs/theory.md)."""
    from ladsim.theory.report import NAMES, format_markdown, format_table, run_checks, to_json

    if only:
        unknown = [o for o in only if o not in NAMES]
        if unknown:
            raise ValueError(f"unknown check {unknown[0]!r}; choose from: {', '.join(NAMES)}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"--seed must be an integer in [0, 2^63), got {seed}")
    if report is None and not quick and not only:  # the committed report is of every check, never a subset
        report = Path("docs/theory-report.md")
    if json_path is not None:  # before any work: a bad path must not cost the checks
        check_out_file(json_path)
    if report is not None:
        check_out_file(report, "--report")

    def progress(name: str, res, seconds: float) -> None:
        typer.echo(f"[{'pass' if res.passed else 'FAIL'}] {name} ({seconds:.1f} s)", err=True)

    t0 = time.perf_counter()
    results = run_checks(seed=seed, quick=quick, only=only, progress=progress)
    seconds = time.perf_counter() - t0
    typer.echo(format_table(results))
    ok = all(r.passed for r in results)
    typer.echo(f"{'all checks pass' if ok else 'SOME CHECKS FAIL'} ({seconds:.1f} s)")
    if json_path is not None:
        write_json(json_path, to_json(results, seed, quick, seconds))
    if report is not None:
        cmd = "ladsim verify" + (" --quick" if quick else "") + f" --seed {seed}"
        write_text(report, format_markdown(results, seed, quick, seconds, cmd))
    if not ok:
        raise typer.Exit(1)
