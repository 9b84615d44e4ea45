"""Reward specifications for N-armed bandits with several good arms.

A reward spec knows, for every arm ``y``:

* ``expected_rewards()``  ``R(y)`` as an ``(N,)`` float64 array (what exact expectations use);
* ``sample(arms, gen)``   sampled rewards for a tensor of arm indices (what sampled groups use);
* ``second_moment()``     ``E[r^2 | y]`` of one sampled reward (the spread that std-scaled advantages divide by);
* ``success_prob()``      the probability that one pull of ``y`` counts as a success, in ``[0, 1]``
  (what pass@k and distinct@k use);
* ``modes()``             the spec's modes, each a list of arm indices (what mode coverage uses).

Specs are built from one string (``parse_reward``), the form the CLI and the study files use:

* ``mixture`` or ``mixture:MEAN/WIDTH/HEIGHT,...``  a Gaussian-mixture shape over the arm index;
* ``correct`` or ``correct:ARM,ARM,...[;p=P][;q=Q]``  correct arms pay 1 with probability P, others with Q;
* a path to a ``.csv`` or ``.npy`` file holding exactly one finite reward per arm (``load_reward_file``).

Anything that could be read two ways is refused, naming the ambiguity: an option given twice
(``correct:1;p=0.5;p=0.9``), a file whose shape or columns leave open which number is which arm's.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ladsim.streams import SeedStreams, uniform_like

# The paper's Figure 1 bandit: 50 arms, a trimodal target. Its means, widths and heights are not given in
# the paper; these are ladsim's choice (LAD_SPEC asks for one documented place): three separated peaks of
# unequal height, so that advantage maximization has one best arm to collapse onto. Means and widths are
# fractions of the number of arms N: at N = 50 the peaks sit at arms 10, 25, 40 with widths 3, 4, 3.
DEFAULT_MIXTURE = ((0.2, 0.06, 1.0), (0.5, 0.08, 0.85), (0.8, 0.06, 0.7))
DEFAULT_CORRECT_FRACTION = 0.1  # correct arms per arm for `correct` without a list: 5 of 50


def _spread(n_arms: int, k: int) -> tuple[int, ...]:
    """``k`` arms spread evenly over ``0..n_arms-1``, away from the edges."""
    return tuple(int(round((i + 0.5) * n_arms / k)) for i in range(k))


def _runs(mask: np.ndarray) -> list[list[int]]:
    """Maximal runs of consecutive True entries, as lists of indices."""
    runs, current = [], []
    for i, m in enumerate(mask):
        if m:
            current.append(i)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


class _Deterministic:
    """What the deterministic rewards share: every pull of arm ``y`` pays ``R(y) = expected_rewards()[y]``, and
    the success probability is ``R`` min-max scaled to ``[0, 1]``."""

    def expected_rewards(self) -> np.ndarray:
        raise NotImplementedError

    def second_moment(self) -> np.ndarray:
        """``E[r^2 | y]`` of one sampled reward, ``(N,)``: deterministic, so ``R(y)^2``."""
        return self.expected_rewards() ** 2

    def nonzero_prob(self) -> np.ndarray:
        """``P(r != 0 | y)`` of one sampled reward, ``(N,)``: deterministic, so ``R(y) != 0``."""
        return (self.expected_rewards() != 0).astype(np.float64)

    def sample(self, arms: Tensor, gen: torch.Generator | None = None) -> Tensor:
        return torch.as_tensor(self.expected_rewards(), device=arms.device)[arms]

    def success_prob(self) -> np.ndarray:
        return _minmax(self.expected_rewards())


@dataclass(frozen=True)
class GaussianMixture(_Deterministic):
    """Deterministic shaped reward ``R(y) = sum_k h_k exp(-(y - m_k)^2 / (2 w_k^2))``.

    Mode ``k`` is the set of arms within two widths of its mean. Success probability: ``R`` min-max scaled
    to ``[0, 1]``.
    """

    n_arms: int
    components: tuple[tuple[float, float, float], ...] = ()

    kind = "mixture"

    def __post_init__(self) -> None:
        _check_arms(self.n_arms)
        if not self.components:  # the default trimodal shape, scaled to the number of arms
            scaled = tuple((min(m * self.n_arms, self.n_arms - 1.0), w * self.n_arms, h)
                           for m, w, h in DEFAULT_MIXTURE)
            object.__setattr__(self, "components", scaled)
        for mean, width, height in self.components:
            if not (0 <= mean <= self.n_arms - 1):
                raise ValueError(f"mixture mean {mean} lies outside the arms 0..{self.n_arms - 1}")
            if not (width > 0 and math.isfinite(width)):
                raise ValueError(f"mixture width must be a finite number > 0, got {width}")
            if not (height > 0 and math.isfinite(height)):
                raise ValueError(f"mixture height must be a finite number > 0, got {height}")
        _check_rewards(self.expected_rewards(), f"the mixture {self.components}")

    def expected_rewards(self) -> np.ndarray:
        y = np.arange(self.n_arms, dtype=np.float64)[:, None]
        m, w, h = (np.array(c, dtype=np.float64) for c in zip(*self.components))
        return (h * np.exp(-0.5 * ((y - m) / w) ** 2)).sum(-1)

    def modes(self) -> list[list[int]]:
        arms = np.arange(self.n_arms)
        return [arms[np.abs(arms - m) <= 2 * w].tolist() for m, w, _ in self.components]

    def describe(self) -> dict:
        return {"kind": self.kind, "n_arms": self.n_arms,
                "components": [{"mean": m, "width": w, "height": h} for m, w, h in self.components]}


@dataclass(frozen=True)
class CorrectSet:
    """Verifiable reward: a pull of a correct arm pays 1 with probability ``p``, of any other arm with ``q``.

    Every correct arm is a mode of its own. Success probability: ``p`` on correct arms, ``q`` elsewhere.
    """

    n_arms: int
    correct: tuple[int, ...] = ()
    p: float = 1.0
    q: float = 0.0

    kind = "correct"

    def __post_init__(self) -> None:
        _check_arms(self.n_arms)
        if not self.correct:
            k = max(2, int(round(DEFAULT_CORRECT_FRACTION * self.n_arms)))
            object.__setattr__(self, "correct", _spread(self.n_arms, min(k, self.n_arms - 1)))
        bad = [a for a in self.correct if not 0 <= a < self.n_arms]
        if bad:
            raise ValueError(f"correct arms {bad} lie outside the arms 0..{self.n_arms - 1}")
        if len(set(self.correct)) != len(self.correct):
            raise ValueError(f"correct arms repeat: {list(self.correct)}")
        for name, v in (("p", self.p), ("q", self.q)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"correct-set probability {name} must lie in [0, 1], got {v}")
        if not self.p > self.q:
            raise ValueError(f"correct arms must pay more often than the others: need p > q, "
                             f"got p={self.p}, q={self.q}")
        if len(self.correct) == self.n_arms:
            raise ValueError(f"every one of the {self.n_arms} arms is correct: all expected rewards are equal, "
                             f"nothing to learn")

    def success_prob(self) -> np.ndarray:
        prob = np.full(self.n_arms, self.q, dtype=np.float64)
        prob[list(self.correct)] = self.p
        return prob

    def expected_rewards(self) -> np.ndarray:
        return self.success_prob()

    def second_moment(self) -> np.ndarray:
        """``E[r^2 | y]`` of one sampled reward, ``(N,)``: a Bernoulli reward's is its mean."""
        return self.success_prob()

    def nonzero_prob(self) -> np.ndarray:
        """``P(r != 0 | y)`` of one sampled reward, ``(N,)``: a pull pays 1 or 0, so its success probability."""
        return self.success_prob()

    def sample(self, arms: Tensor, gen: torch.Generator | SeedStreams | None = None) -> Tensor:
        prob = torch.as_tensor(self.success_prob(), device=arms.device)[arms]
        if isinstance(gen, SeedStreams):  # one uniform per pull from each seed's own stream (rows = seeds)
            return (uniform_like(tuple(arms.shape), gen, prob.dtype, arms.device) < prob).to(prob.dtype)
        return torch.bernoulli(prob, generator=gen)

    def modes(self) -> list[list[int]]:
        return [[a] for a in sorted(self.correct)]

    def describe(self) -> dict:
        return {"kind": self.kind, "n_arms": self.n_arms, "correct": list(self.correct), "p": self.p, "q": self.q}


@dataclass(frozen=True)
class ArrayReward(_Deterministic):
    """A user-supplied deterministic reward per arm (from a ``.csv`` or ``.npy`` file).

    Modes: maximal runs of consecutive arms whose min-max scaled reward is at least 1/2. Success probability:
    the min-max scaled reward.
    """

    values: tuple[float, ...]
    source: str = ""

    kind = "array"

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=np.float64)
        _check_arms(v.size)
        _check_rewards(v, "the reward file" if self.source else "the rewards")

    @property
    def n_arms(self) -> int:
        return len(self.values)

    def expected_rewards(self) -> np.ndarray:
        return np.asarray(self.values, dtype=np.float64)

    def modes(self) -> list[list[int]]:
        return _runs(self.success_prob() >= 0.5)

    def describe(self) -> dict:
        return {"kind": self.kind, "n_arms": self.n_arms, "source": self.source, "values": list(self.values)}


RewardSpec = GaussianMixture | CorrectSet | ArrayReward


def _check_arms(n_arms: int) -> None:
    if not isinstance(n_arms, (int, np.integer)) or n_arms < 2:
        raise ValueError(f"a bandit needs at least 2 arms, got {n_arms}")


def _check_rewards(v: np.ndarray, what: str) -> None:
    """Expected rewards must be finite and not all equal (a constant reward has nothing to learn: the same
    refusal for built-in specs and reward files)."""
    if not np.all(np.isfinite(v)):
        bad = np.flatnonzero(~np.isfinite(v))[:5].tolist()
        raise ValueError(f"rewards must be finite numbers; {what} gives NaN or Inf at arms {bad}")
    with np.errstate(over="ignore"):
        span = np.ptp(v)
    if span == 0:
        raise ValueError(f"all rewards are equal in {what}: no arm is better than another, nothing to learn")
    if not np.isfinite(span):
        raise ValueError(f"the rewards of {what} span more than a float64 holds (max - min overflows); "
                         f"rescale them")


def _minmax(v: np.ndarray) -> np.ndarray:
    span = np.ptp(v)
    return (v - v.min()) / span if span > 0 else np.ones_like(v)


def _floats(text: str, what: str) -> list[float]:
    parts = [x.strip() for x in text.split("/")]
    if not all(NUMBER.fullmatch(x) for x in parts):
        raise ValueError(f"malformed {what} {text!r}: expected numbers separated by '/'")
    return [float(x) for x in parts]


NPY_MAGIC = b"\x93NUMPY"
# A number as a CSV cell or a spec writes it: ASCII digits only (Python's float() also takes "1_000" and
# Arabic-Indic digits, which no other reader of the file would), or inf/nan (refused later, by name, as not finite).
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity|nan)", re.ASCII | re.IGNORECASE)
INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_ ]*", re.ASCII)  # a header cell: a column name, not a malformed number
EXACT_INTEGERS = 2**53  # float64 holds every integer up to here; beyond it an integer loses digits


def _cell_number(cell: str, where: str) -> float:
    if not cell:
        raise ValueError(f"{where} is empty; give every arm exactly one value")
    if not NUMBER.fullmatch(cell):
        raise ValueError(f"{where} is malformed: {cell!r} is not a number (ASCII digits)")
    if INTEGER.fullmatch(cell) and abs(int(cell)) > EXACT_INTEGERS:
        raise ValueError(f"{where} holds the integer {cell}, beyond 2^53: it would lose digits as a float64")
    return float(cell)


def _read_csv(path: Path, what: str, column: str) -> np.ndarray:
    """One value per arm from a CSV file: one row or one column of numbers, or a header naming the ``column``
    of values and optionally an ``arm`` column (every arm ``0..N-1`` exactly once; the values are put in arm
    order). Refused, naming the ambiguity: blank lines between values, empty cells, rows of different lengths,
    several rows and columns without a header, a header with other columns or one column twice."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{what} {path} is not a text (UTF-8) CSV file") from None
    rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text))]
    while rows and not any(rows[-1]):  # trailing blank lines
        rows.pop()
    if not rows:
        raise ValueError(f"{what} {path} holds no values")
    for i, row in enumerate(rows):
        if not any(row):
            raise ValueError(f"{what} {path}: line {i + 1} is blank between values (a missing arm?); remove it")
    header = None
    if any(NAME.fullmatch(cell) and not NUMBER.fullmatch(cell) for cell in rows[0]):
        header = [cell.lower() for cell in rows[0]]
        for name in header:
            if name not in (column, "arm"):
                raise ValueError(f"{what} {path}: column {name!r} is not one ladsim reads; the file needs a "
                                 f"{column!r} column and optionally an 'arm' column, nothing else (which "
                                 f"values are the arms' would be a guess)")
            if header.count(name) > 1:
                raise ValueError(f"{what} {path}: column {name!r} appears {header.count(name)} times; give it "
                                 f"once")
        if column not in header:
            raise ValueError(f"{what} {path} has a header without a {column!r} column")
        rows = rows[1:]
        if not rows:
            raise ValueError(f"{what} {path} holds a header and no values")
    width = len(header) if header else len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"{what} {path}: line {i + 1 + bool(header)} has {len(row)} cells where the "
                             f"{'header' if header else 'first line'} has {width}")
    table = np.array([[_cell_number(cell, f"{what} {path}, line {i + 1 + bool(header)}, cell {j + 1}")
                       for j, cell in enumerate(row)] for i, row in enumerate(rows)], dtype=np.float64)
    if header is None:
        if table.shape[0] > 1 and table.shape[1] > 1:
            raise ValueError(f"{what} {path} must hold one value per arm (a single row or column), got shape "
                             f"{table.shape}: which numbers are the arms' is ambiguous")
        return table.reshape(-1)
    values = table[:, header.index(column)]
    if "arm" not in header:
        return values
    arms = table[:, header.index("arm")]
    n = len(arms)
    if sorted(arms.tolist()) != list(range(n)):
        repeats = sorted({a for a in arms.tolist() if arms.tolist().count(a) > 1})
        detail = f"arm(s) {repeats[:5]} appear more than once" if repeats else f"got {arms.tolist()[:8]}"
        raise ValueError(f"{what} {path}: the arm column must name every arm 0..{n - 1} exactly once; {detail}")
    out = np.empty(n)
    out[arms.astype(np.int64)] = values
    return out


def load_reward_file(path: str | Path, what: str = "reward file", column: str = "reward") -> np.ndarray:
    """Read exactly one value per arm from a ``.npy`` (shape ``(N,)``, ``(1, N)`` or ``(N, 1)``) or a ``.csv``
    (one row or column, or a header with a ``column`` of values and an optional ``arm`` column, see
    ``_read_csv``).

    ``what`` names the file in messages (``"prior file"`` for ``--prior``). Refused with ``ValueError``: a
    missing file, another suffix, a file that is not ``.npy``/CSV, non-real values (complex, text, objects),
    integers beyond 2^53 (they lose digits as float64), any ambiguous shape or column, fewer than 2 values.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist" + (" as a file" if path.exists() else ""))
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".npy"):
        raise ValueError(f"{what} {path} must end in .csv or .npy")
    try:
        if suffix == ".npy":
            with open(path, "rb") as handle:
                if handle.read(len(NPY_MAGIC)) != NPY_MAGIC:
                    raise ValueError(f"{what} {path} is not a .npy file (no NumPy header)")
            raw = np.load(path, allow_pickle=False)
            if raw.dtype.kind not in "biuf":
                kind = "complex" if raw.dtype.kind == "c" else str(raw.dtype)
                raise ValueError(f"{what} {path} must hold real numbers, got {kind} values")
            if raw.dtype.kind in "iu" and raw.size and max(abs(int(raw.max())), abs(int(raw.min()))) > EXACT_INTEGERS:
                raise ValueError(f"{what} {path} holds integers beyond 2^53: they would lose digits as float64")
            values = np.asarray(raw, dtype=np.float64)
            if values.ndim == 2 and 1 in values.shape:
                values = values.reshape(-1)
            if values.ndim != 1:
                raise ValueError(f"{what} {path} must hold one value per arm (a single row or column), "
                                 f"got shape {values.shape}")
        else:
            values = _read_csv(path, what, column)
    except ValueError as err:
        if str(err).startswith(what):
            raise
        raise ValueError(f"{what} {path} is malformed: it must hold numbers only ({err})") from None
    except Exception as err:  # corrupt .npy, unreadable file
        raise ValueError(f"{what} {path} could not be read: {err}") from None
    if values.size < 2:
        raise ValueError(f"{what} {path} holds {values.size} value(s); a bandit needs at least 2 arms")
    return values


def parse_reward(spec: str, n_arms: int | None = None) -> RewardSpec:
    """Build a reward spec from its string form (module docstring). ``n_arms`` is required for the built-ins
    and, for a file, must match the file's length when given."""
    if not isinstance(spec, str):
        raise ValueError(f"reward must be a string ('mixture', 'correct' or a file path), got {spec!r}")
    spec = spec.strip()
    head, sep, body = spec.partition(":")
    if head.startswith("correct;") and not sep:  # `correct;p=0.9`: the default arms with options
        head, sep, body = "correct", ":", ";" + head[len("correct;"):]
    if head in ("mixture", "correct") and n_arms is None:
        raise ValueError(f"the {head} reward needs the number of arms")
    if head in ("mixture", "correct") and sep and not body.strip():
        raise ValueError(f"nothing after the colon in {spec!r}: write {head!r} for the default or "
                         f"{head}:{'MEAN/WIDTH/HEIGHT,...' if head == 'mixture' else 'ARM,ARM,...'}")
    if head == "mixture":
        if not body:
            return GaussianMixture(n_arms)
        comps = []
        for part in body.split(","):
            nums = _floats(part.strip(), "mixture component")
            if len(nums) != 3:
                raise ValueError(f"malformed mixture component {part!r}: expected MEAN/WIDTH/HEIGHT")
            comps.append(tuple(nums))
        return GaussianMixture(n_arms, tuple(comps))
    if head == "correct":
        arms_text, *options = body.split(";") if body else ("",)
        cells = [a.strip() for a in arms_text.split(",")]
        if arms_text.strip() and not all(INTEGER.fullmatch(a) for a in cells):
            raise ValueError(f"malformed correct arms {arms_text!r}: expected integers like 3,17,29 (ASCII digits, "
                             f"no empty entries)")
        arms = tuple(int(a) for a in cells if a)
        kwargs = {}
        for opt in options:
            key, _, value = opt.partition("=")
            key, value = key.strip(), value.strip()
            if key not in ("p", "q") or not value:
                raise ValueError(f"malformed correct-set option {opt!r}: expected p=PROB or q=PROB")
            if key in kwargs:
                raise ValueError(f"the correct-set option {key} is given twice in {spec!r} ({key}={kwargs[key]:g} "
                                 f"and {key}={value}): which one is meant? give it once")
            if not NUMBER.fullmatch(value):
                raise ValueError(f"malformed correct-set option {opt!r}: {value!r} is not a number")
            kwargs[key] = float(value)
        return CorrectSet(n_arms, arms, **kwargs)
    path = Path(spec)
    if path.suffix.lower() not in (".csv", ".npy"):
        raise ValueError(f"unknown reward {spec!r}: use 'mixture', 'correct' or a path to a .csv/.npy file")
    values = load_reward_file(path)
    if n_arms is not None and len(values) != n_arms:
        raise ValueError(f"reward file {path} has {len(values)} rewards but --arms is {n_arms}")
    return ArrayReward(tuple(values.tolist()), source=str(path))


def default_arms(reward: str, default: int = 50) -> int:
    """The arm count a reward spec implies: a reward file's length, else ``default`` (the paper's 50)."""
    if Path(reward).suffix.lower() in (".csv", ".npy"):
        return len(load_reward_file(reward))
    return default


def load_prior(path: str | Path) -> tuple[float, ...]:
    """``pi_old``'s prior from a ``.csv``/``.npy`` file: finite probabilities > 0, one per arm (normalized later)."""
    values = load_reward_file(path, what="prior file", column="prior")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"prior file {path} must hold finite probabilities > 0, one per arm")
    return tuple(values.tolist())
