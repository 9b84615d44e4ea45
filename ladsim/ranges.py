"""Where a run's numbers mean something: the range of every magnitude setting, per dtype, in one table.

Finite but absurd magnitudes (rewards near ``1e300``, ``--init-std 1e200``, ``--kl-beta 1e308``, ``--eta 1e-200``)
used to train to nonsense with exit code 0. Every bound below was measured: one setting swept at a time over
every registered objective (both LADs with every divergence), in float64 and float32, exact and sampled modes
(8 arms, 4 seeds, 100 steps unless said otherwise; ``docs/ranges.md`` gives the sweeps, their criteria and the
command). A bound sits at or below the largest swept value at which every run still did what the setting means;
the value after it broke. Any world's config applies them (``check_range``, ``check_exponent``) once, before any
work; the README's bad-input paragraph links the table.

The two mechanisms behind most limits: Adam squares every gradient entry (its second moment), so a gradient
beyond ``sqrt(max)`` of the dtype (1.3e154 in float64, 1.8e19 in float32) makes it infinite and the policy stops
moving; and a probability ``exp(logit - logsumexp)`` underflows to 0 once logits spread beyond the dtype's
smallest subnormal (745 nats in float64, 103 in float32), after which no gradient reaches that arm.
"""

from __future__ import annotations

from dataclasses import dataclass

DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class Range:
    """``|value| <= high[dtype]`` for the setting shown as ``flag``; ``why`` says what breaks beyond it."""

    flag: str
    high: dict[str, float]
    why: str


RANGES: dict[str, Range] = {
    # Rewards c * R with eta = 0.2 c (u fixed): every objective trained up to c = 1e155 (float64) and 1e20
    # (float32); at 1e156-1e160 and 1e21-1e22 Adam's second moment overflowed (flowrl first, its squared
    # residual) and the policy froze. Bound below sqrt(max) of the dtype.
    "reward": Range("reward magnitude |R|", {"float64": 1e150, "float32": 1e18},
                    "the gradients scale with the rewards and Adam squares them (its second moment overflows: "
                    "the policy stops moving); rescale the rewards"),
    # Rewards c + R: advantages are centered, so the policy must not depend on c. Measured: the final policy
    # moved by TV > 1e-3 from the unshifted run's at c = 1e5 (float32; fine at 1e4) and c = 1e13 (float64;
    # fine at 1e12): the advantages' relative rounding is eps * max|R| / span(R).
    "reward_offset": Range("max|R| / span(R)", {"float64": 1e12, "float32": 1e4},
                           "the rewards differ from each other by too few of the dtype's digits (the advantages "
                           "R - E[R] are rounding error); subtract their offset"),
    # init_std sigma: logits prior + sigma z over 100 seeds x 1000 arms, 2 steps. Some probability was exactly
    # 0 from sigma = 100 (float64; fine at 80) and 15 (float32; fine at 12). max |z| grows with the draws
    # (4.4 at 1e5 draws, 6.1 at 1e9), so the bound keeps a margin of 0.7.
    "init_std": Range("--init-std", {"float64": 50.0, "float32": 8.0},
                      "the initial logits spread so far that some arm's probability underflows to 0"),
    # One optimizer step, 8 arms, init_std 0.1: Adam's first step moves every logit by lr, and some probability
    # was 0 after it from lr = 400 (float64; fine at 350) and 100 (float32; fine at 50): 2 lr beyond 745 / 103
    # nats. SGD's step is lr times the gradient: within this bound, a run that still diverges is refused after
    # training ("training diverged").
    "lr": Range("--lr", {"float64": 350.0, "float32": 50.0},
                "a single optimizer step can push an arm's probability to 0"),
    # KL penalty (k2, k3, k3+) with init_std 1: every seed's entropy must rise toward the uniform prior's. It did
    # up to beta = 1e155 (float64) and 1e20 (float32) and stopped from 1e160 / 1e21 (Adam's second moment
    # overflowed). k1 is not a pull toward the prior under pi_old's weights and was not swept.
    "kl_beta": Range("--kl-beta", {"float64": 1e150, "float32": 1e18},
                     "the penalty's gradient overflows Adam's second moment and the policy stops moving"),
    # A prior of 7 ones and one p: every objective trained down to p = 1e-320 (float64, a subnormal) and 1e-44
    # (float32); p = 1e-45 rounds to 0 in float32 (log pi_old = -inf, NaN). Bound: within the normal numbers
    # (smallest 2.2e-308 / 1.2e-38), where a probability keeps the dtype's full precision.
    "prior": Range("prior: largest / smallest probability", {"float64": 1e300, "float32": 1e37},
                   "the smallest prior probability leaves the dtype's normal numbers (it rounds toward 0)"),
    # Entropy bonus with init_std 1: every seed's entropy must rise. It did up to 1e155 (float64) and 1e21
    # (float32), not from 1e160 / 1e25.
    "entropy_coef": Range("--entropy-coef", {"float64": 1e150, "float32": 1e18},
                          "the bonus's gradient overflows Adam's second moment and the policy stops moving"),
}

# u = max|A| / eta, the exponent of the target pi_old exp(A/eta) and of LAD's perspective arguments. Rewards
# 0/1 with eta = 1/u (sampled with std scaling: eta = max|A| / u, max|A| = (G - 1)/sqrt(G)): a run is broken
# when it no longer raises every seed's expected reward. Largest u measured fine, lad and lad-theory together
# (the smaller), over exact, sampled and std-scaled sampled modes, rounded down:
#   float64: rkl, jf 450 (500 broke); hd 800 (1000); pearson 360 (lad-theory, 380); neyman 225 (250);
#            kl, js, tv: every swept value up to 1e100 trained.
#   float32: rkl, jf 65 (70); hd 100 (150); pearson 50 (lad-theory, 55); neyman 32 (35); kl, js, tv up to 1e4
#            (lad with kl and js broke at 1e30).
# Objectives without eta meet u only in the target (computed in log space): every swept value trained up to
# 1e100 (float64) and 1e30 (float32), the TARGET row.
EXPONENT_LIMITS: dict[str, dict[str, float]] = {
    "float64": {"kl": 1e100, "rkl": 400.0, "jf": 400.0, "js": 1e100, "hd": 700.0, "tv": 1e100, "pearson": 320.0,
                "neyman": 200.0},
    "float32": {"kl": 1e4, "rkl": 60.0, "jf": 60.0, "js": 1e4, "hd": 90.0, "tv": 1e4, "pearson": 45.0,
                "neyman": 30.0},
}
TARGET = "target"
EXPONENT_LIMITS["float64"][TARGET] = 1e100
EXPONENT_LIMITS["float32"][TARGET] = 1e30


def check_range(name: str, value: float, dtype: str, table: dict[str, Range] = RANGES) -> None:
    """Refuse (``ValueError``, one line) ``|value| > table[name].high[dtype]``."""
    entry = table[name]
    high = entry.high[dtype]
    if not abs(value) <= high:
        raise ValueError(f"{entry.flag} = {value:.3g} is beyond {high:g}, the most a {dtype} run means "
                         f"something at: {entry.why} (measured ranges: docs/ranges.md)")


def exponent_limit(div: str, dtype: str) -> float:
    """The largest ``max|A| / eta`` a LAD objective with divergence ``div`` trains at in ``dtype``
    (``div = TARGET``: any objective, through its target alone)."""
    return EXPONENT_LIMITS[dtype][div]


def check_exponent(u: float, div: str, dtype: str, what: str) -> None:
    """Refuse (``ValueError``) ``u = max|A| / eta`` beyond :func:`exponent_limit`; ``what`` names the objective
    (or the target) and how ``max|A|`` arose, for the message."""
    limit = exponent_limit(div, dtype)
    if not u <= limit:
        raise ValueError(f"{what}: max|A| / eta = {u:.3g} is beyond {limit:g}, the most "
                         + ("the target exp(A/eta)" if div == TARGET else f"LAD with the {div} divergence")
                         + f" trains at in {dtype} (the exponent exp(A/eta) overflows or its gradient stops "
                         f"the policy); raise --eta or rescale the rewards (measured ranges: docs/ranges.md)")


def range_rows() -> list[tuple[str, str, str]]:
    """``(setting, float64 bound, float32 bound)`` for every entry of both tables, as markdown cells (``|``
    escaped): the rows of docs/ranges.md, which a test holds to this table."""
    rows = [(r.flag, f"<= {r.high['float64']:g}", f"<= {r.high['float32']:g}") for r in RANGES.values()]
    for div in EXPONENT_LIMITS["float64"]:
        label = "max|A| / eta, any objective (the target)" if div == TARGET else f"max|A| / eta, LAD with {div}"
        rows.append((label, f"<= {EXPONENT_LIMITS['float64'][div]:g}", f"<= {EXPONENT_LIMITS['float32'][div]:g}"))
    return [tuple(cell.replace("|", "\\|") for cell in row) for row in rows]
