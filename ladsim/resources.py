"""Memory checks made before any work starts: a size that cannot fit is refused with one line, not allocated.

Estimates are upper-bound-ish counts of the tensors a job holds at once (documented where they are made);
the limit is ``MEMORY_FRACTION`` of the memory the machine has available now (``MemAvailable`` in
``/proc/meminfo``, else physical memory), or ``LADSIM_MEMORY_LIMIT_GB`` when set.
"""

from __future__ import annotations

import os

MEMORY_FRACTION = 0.5  # of the available memory: leaves room for the interpreter, torch's allocator and others


def available_memory_bytes() -> int:
    """Memory available now, in bytes (``MemAvailable``; physical memory where /proc is absent)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def memory_limit_bytes() -> int:
    """The most one job may plan to use: ``LADSIM_MEMORY_LIMIT_GB`` or ``MEMORY_FRACTION`` of what is free."""
    override = os.environ.get("LADSIM_MEMORY_LIMIT_GB")
    if override:
        try:
            return int(float(override) * (1 << 30))
        except ValueError:
            raise ValueError(f"LADSIM_MEMORY_LIMIT_GB must be a number, got {override!r}") from None
    return int(MEMORY_FRACTION * available_memory_bytes())


def check_memory(need_bytes: float, what: str) -> None:
    """Refuse (``ValueError``, one line) when ``need_bytes`` exceeds ``memory_limit_bytes()``."""
    limit = memory_limit_bytes()
    if need_bytes > limit:
        raise ValueError(f"{what} needs about {need_bytes / (1 << 30):.3g} GiB of memory, more than the "
                         f"{limit / (1 << 30):.3g} GiB limit (half the available memory; set "
                         f"LADSIM_MEMORY_LIMIT_GB to change it); reduce the sizes")
