"""Resource checks made before any work starts: a size that cannot fit is refused with one line, not allocated,
and a thread count is bounded by the CPUs this process may run on.

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


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_threads(threads: object, flag: str = "--threads") -> None:
    """``None`` (the default) or an integer in ``[1, cpu_count()]``; else ``ValueError`` naming ``flag``.

    More intra-op threads than CPUs only time-slice the same cores, and far more fail outright: OpenMP
    allocates a stack per thread (``--threads 100000`` ended in ``libgomp: Out of memory`` and exit 1, a
    claimed output left behind, before this check existed).
    """
    if threads is None:
        return
    limit = cpu_count()
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= limit:
        raise ValueError(f"{flag} must be an integer in [1, {limit}] (the CPUs this process may use), "
                         f"got {threads!r}")
