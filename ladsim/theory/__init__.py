"""Numerical checks of the LAD theory (Lemma 3.1, Lemma 3.2, the gradient, Theorem B.1); see docs/theory.md."""


def verify(quick: bool = True, seed: int = 0, only: list[str] | None = None) -> dict:
    """Run the theory checks (``ladsim verify``) and return the JSON report: ``{"checks": [...], "passed", "seed",
    "mode", "seconds"}``; ``only`` restricts them by name (``ladsim.theory.report.NAMES``)."""
    import time

    from ladsim.theory.report import run_checks, to_json

    start = time.perf_counter()
    results = run_checks(seed=seed, quick=quick, only=only)
    return to_json(results, seed, quick, time.perf_counter() - start)
