"""The run cache: one ``.npz`` file per run, named by the SHA-256 of the run's full configuration.

A run's key is the SHA-256 of the canonical JSON of ``{kind, every setting, CACHE_VERSION}``; its result is one
``<cache>/<key>.npz`` file (no pickles) written atomically and carrying its own key, so an interrupted study
resumes where it stopped, a finished run is never recomputed, runs shared by two studies are computed once, a
changed setting changes exactly the keys of the runs it enters, and a file that cannot be read, or that is
stored under another key, is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ladsim.io import atomic_file

CACHE_VERSION = 2  # bump when a run's output format or meaning changes: every cached run is then recomputed
DEFAULT_CACHE = Path("studies") / "cache"
# Settings added after runs were cached, left out of the key at their default: the runs they do not change keep
# their keys (a run at a new setting's default is the run it was before the setting existed).
ADDED_SETTINGS = {"advantage": None, "kl_bias_correction": False, "top_entropy_quantile": 1.0,
                  "entropy_target": None, "entropy_coef_delta": 0.005, "entropy_coef_min": 0.0,
                  "entropy_coef_max": 1.0}


def run_key(kind: str, config) -> str:
    """SHA-256 of the canonical JSON of the run's full configuration and the cache format version."""
    settings = {k: v for k, v in config.to_dict().items()
                if k != "device"  # where it ran is not what it is
                and not (k in ADDED_SETTINGS and v == ADDED_SETTINGS[k])}
    payload = {"kind": kind, "config": settings, "version": CACHE_VERSION}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(cache_dir: str | Path, key: str) -> Path:
    """Where the run with ``key`` is cached."""
    return Path(cache_dir) / f"{key}.npz"


def save_frames(path: str | Path, frames: dict[str, pd.DataFrame], meta: dict) -> None:
    """Write frames as one ``.npz`` (no pickles; strings as unicode arrays), atomically."""
    arrays: dict[str, np.ndarray] = {}
    layout = {}
    for name, frame in frames.items():
        layout[name] = list(frame.columns)
        for i, col in enumerate(frame.columns):
            values = frame[col].to_numpy()
            if values.dtype == object:
                values = values.astype(str)
            arrays[f"{name}.{i}"] = values
    arrays["__meta__"] = np.array(json.dumps({"layout": layout, **meta}))
    with atomic_file(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def load_frames(path: str | Path, key: str | None = None) -> dict[str, pd.DataFrame] | None:
    """Frames written by ``save_frames``; ``None`` when the file is missing, unreadable, not ours, or (with
    ``key``) stored under another run's key: a cache file copied or renamed over another is never trusted."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
            if meta.get("version") != CACHE_VERSION or (key is not None and meta.get("key") != key):
                return None
            return {name: pd.DataFrame({col: data[f"{name}.{i}"] for i, col in enumerate(cols)})
                    for name, cols in meta["layout"].items()}
    except Exception:  # truncated, corrupt or foreign file: recompute
        return None


def clean_stale_temps(*directories: str | Path, older_than_s: float = 60.0) -> int:
    """Remove the temporary files (``.NAME.*.tmp``) an interrupted writer left; return how many."""
    removed = 0
    now = time.time()
    for directory in directories:
        directory = Path(directory)
        if not directory.is_dir():
            continue
        for tmp in directory.glob(".*.tmp"):
            try:
                if tmp.is_file() and now - tmp.stat().st_mtime > older_than_s:
                    tmp.unlink()
                    removed += 1
            except OSError:
                pass
    return removed
