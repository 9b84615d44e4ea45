"""Rewards on whole responses of the token tree (WORLDS.md, World 1), from one string (``--reward``).

* ``answers:BODY,BODY,...[;partial=P][;length=C]``: a set of correct answers. A terminated response whose body
  (its tokens before the EOS) is one of them scores 1; any other terminated response scores ``P`` (default 0,
  a partial credit for answering at all); a truncated response (``L`` tokens, no EOS) scores 0: it never
  answered. ``length=C`` subtracts ``C`` per token from every response (a length penalty). A body is written
  digit by digit (``213`` is the tokens 2, 1, 3) when ``V <= 10``; with larger vocabularies, or to be explicit,
  separate tokens with ``.`` (``2.1.13``; a one-token answer ends with one: ``11.``). Every answer must be
  non-empty, use tokens ``1..V-1`` and have at most ``L - 1`` tokens (the EOS needs the last place).
* a ``.npy`` file of ``R`` rewards, one per response in the tree's order (``ladsim.tree.structure``), or a
  ``.csv`` file with a ``response`` column (the tokens as space-separated integers with the EOS, as
  ``final_policy.csv`` writes them, e.g. ``2 1 3 0``) and a ``reward`` column, every response exactly once.

What the engine reads from a reward (:class:`TreeReward`): ``values (R,)`` the reward of each response (sampled
mode scores a drawn response by the same deterministic value); ``success (R,)`` in ``[0, 1]``, what pass@k,
distinct@k and the correct mass count (1 on correct answers; a file's rewards min-max scaled); ``correct
(R,)`` bool (``success >= 1/2``); and the modes: each correct response is one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ladsim.tree.structure import EOS, TokenTree

DEFAULT_ANSWERS = "answers:12,213,3111"


@dataclass(frozen=True)
class TreeReward:
    """A reward on every response of a tree.

    Attributes:
        values: ``(R,)`` float64, the reward of each response.
        success: ``(R,)`` in ``[0, 1]``: the chance a response counts as a success.
        kind: ``"answers"`` or ``"file"``.
        spec: what :meth:`describe` reports (the answers and options, or the file).
    """

    values: np.ndarray
    success: np.ndarray
    kind: str
    spec: dict

    @property
    def correct(self) -> np.ndarray:
        return self.success >= 0.5

    def modes(self) -> list[list[int]]:
        """Each correct response is a mode of its own (``[[index], ...]``)."""
        return [[int(i)] for i in np.flatnonzero(self.correct)]

    def describe(self) -> dict:
        return {"kind": self.kind, **self.spec}


def parse_answer(text: str, tree: TokenTree) -> tuple[int, ...]:
    """One answer body -> its tokens (see the module docstring); ``ValueError`` naming what is wrong."""
    body = text.strip()
    if not body:
        raise ValueError("an empty answer: every answer needs at least one token before the EOS")
    if "." in body or " " in body:
        parts = body.replace(" ", ".").removesuffix(".").split(".")
        if any(not p.isdigit() or not p.isascii() for p in parts):
            raise ValueError(f"malformed answer {text!r}: tokens are integers separated by '.'")
        tokens = tuple(int(p) for p in parts)
    else:
        if not (body.isdigit() and body.isascii()):
            raise ValueError(f"malformed answer {text!r}: expected tokens like 213 or 2.1.3")
        if tree.vocab > 10 and len(body) > 1:
            raise ValueError(f"answer {text!r} can be read two ways with --vocab {tree.vocab} > 10 (one token "
                             f"{body} or the digits as tokens): separate the tokens with '.', e.g. "
                             f"{'.'.join(body)}, or end a one-token answer with '.' ({body}.)")
        tokens = tuple(int(c) for c in body)
    bad = [t for t in tokens if not 1 <= t < tree.vocab]
    if bad:
        what = "EOS (0) inside" if EOS in bad else f"token(s) {bad} outside 1..{tree.vocab - 1} in"
        raise ValueError(f"{what} answer {text!r}: answers are tokens 1..{tree.vocab - 1} (the EOS is added)")
    if len(tokens) > tree.length - 1:
        raise ValueError(f"answer {text!r} has {len(tokens)} tokens but --length {tree.length} leaves room for "
                         f"at most {tree.length - 1} before the EOS")
    return tokens


def answers_reward(spec: str, tree: TokenTree) -> TreeReward:
    """``answers:BODY,...[;partial=P][;length=C]`` (module docstring)."""
    head, _, body = spec.partition(":")
    answers_text, *options = body.split(";")
    if not answers_text.strip():
        raise ValueError(f"no answers in {spec!r}: write e.g. answers:12,213")
    answers = [parse_answer(a, tree) for a in answers_text.split(",")]
    if len(set(answers)) != len(answers):
        raise ValueError(f"answers repeat in {spec!r}")
    settings: dict[str, float] = {}
    for opt in options:
        key, eq, value = (x.strip() for x in opt.partition("="))
        if key not in ("partial", "length") or not eq:
            raise ValueError(f"malformed answers option {opt!r}: expected partial=P or length=C")
        if key in settings:
            raise ValueError(f"answers option {key!r} is given twice in {spec!r}: which one is meant?")
        try:
            settings[key] = float(value)
        except ValueError:
            raise ValueError(f"malformed answers option {opt!r}: {value!r} is not a number") from None
        if not math.isfinite(settings[key]):
            raise ValueError(f"answers option {key} must be finite, got {value!r}")
    partial, per_token = settings.get("partial", 0.0), settings.get("length", 0.0)
    if not 0.0 <= partial < 1.0:
        raise ValueError(f"partial credit must lie in [0, 1) (below a correct answer's 1), got {partial}")
    if not 0.0 <= per_token * tree.length < 1.0:
        raise ValueError(f"the length penalty must be >= 0 and cost less than a correct answer over {tree.length} "
                         f"tokens (C L < 1), got length={per_token}")
    correct = np.zeros(tree.n_responses, dtype=bool)
    for tokens in answers:
        correct[tree.index_of(tokens + (EOS,))] = True
    values = np.where(correct, 1.0, np.where(tree.response_terminated, partial, 0.0))
    values = values - per_token * tree.response_length
    return TreeReward(values=values, success=correct.astype(np.float64), kind="answers",
                      spec={"answers": [" ".join(map(str, a)) for a in answers], "partial": partial,
                            "length_penalty": per_token, "truncated": "scores 0 (never answered)"})


def file_reward(path: Path, tree: TokenTree) -> TreeReward:
    """A reward per response from a ``.npy`` (``R`` values, the tree's order) or ``.csv`` (``response, reward``)
    file (module docstring)."""
    if not path.is_file():
        raise ValueError(f"reward file {path} does not exist")
    suffix = path.suffix.lower()
    R = tree.n_responses
    if suffix == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except Exception as err:
            raise ValueError(f"reward file {path} could not be read as .npy: {err}") from None
        if values.dtype.kind not in "biuf":
            raise ValueError(f"reward file {path} must hold real numbers, got {values.dtype}")
        if values.ndim != 1 or values.size != R:
            raise ValueError(f"reward file {path} must hold one value per response, {R} for --vocab {tree.vocab} "
                             f"--length {tree.length}, as a 1-D array; got shape {values.shape}")
        values = values.astype(np.float64)
    elif suffix == ".csv":
        values = _csv_rewards(path, tree)
    else:
        raise ValueError(f"reward file {path} must end in .npy or .csv")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"reward file {path} holds NaN or inf at responses "
                         f"{np.flatnonzero(~np.isfinite(values))[:5].tolist()}")
    span = float(np.ptp(values))
    if span == 0.0:
        raise ValueError(f"all rewards in {path} are equal: no response is better than another, nothing to learn")
    if not math.isfinite(span):
        raise ValueError(f"the rewards of {path} span more than a float64 holds; rescale them")
    return TreeReward(values=values, success=(values - values.min()) / span, kind="file",
                      spec={"source": str(path)})


def _csv_rewards(path: Path, tree: TokenTree) -> np.ndarray:
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype={"response": str})
    except Exception as err:
        raise ValueError(f"reward file {path} could not be read as CSV: {err}") from None
    columns = [str(c).strip().lower() for c in frame.columns]
    if sorted(columns) != ["response", "reward"]:
        raise ValueError(f"reward file {path} must have exactly the columns response and reward, got {columns}")
    frame.columns = columns
    index = np.full(tree.n_responses, -1, dtype=np.int64)
    for row, text in enumerate(frame["response"].tolist()):
        try:
            tokens = [int(t) for t in str(text).split()]
            r = tree.index_of(tokens)
        except ValueError as err:
            raise ValueError(f"reward file {path}, row {row + 2}: response {text!r}: {err}") from None
        if index[r] >= 0:
            raise ValueError(f"reward file {path}: response {text!r} appears twice (rows {index[r] + 2} and "
                             f"{row + 2}): which reward is meant?")
        index[r] = row
    missing = np.flatnonzero(index < 0)
    if missing.size:
        names = tree.response_strings()
        raise ValueError(f"reward file {path} lacks {missing.size} of the {tree.n_responses} responses, e.g. "
                         f"{names[missing[0]]!r}: give every response exactly once")
    try:
        rewards = pd.to_numeric(frame["reward"], errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        raise ValueError(f"reward file {path}: the reward column must hold numbers only") from None
    return rewards[index]


def parse_tree_reward(spec: str, tree: TokenTree) -> TreeReward:
    """The reward named by ``spec`` (module docstring) on ``tree``; ``ValueError`` naming the problem."""
    if not isinstance(spec, str):
        raise ValueError(f"reward must be a string ('answers:...' or a file path), got {spec!r}")
    spec = spec.strip()
    if spec.partition(":")[0] == "answers":
        return answers_reward(spec, tree)
    path = Path(spec)
    if path.suffix.lower() in (".npy", ".csv"):
        return file_reward(path, tree)
    raise ValueError(f"unknown tree reward {spec!r}: use 'answers:12,213' or a path to a .npy/.csv file")
