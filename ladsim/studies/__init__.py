"""Studies: a TOML file -> a grid of cached runs -> tidy frames -> a figure (format: :mod:`ladsim.studies.parse`).

One module per job: :mod:`~ladsim.studies.parse` (the file), :mod:`~ladsim.studies.grid` (the runs),
:mod:`~ladsim.studies.cache` (the run cache), :mod:`~ladsim.studies.compute` (a worker's job: one run's
frames), :mod:`~ladsim.studies.execute` (the driver: what is not cached, on an executor, saved to the cache),
:mod:`~ladsim.studies.ray_executor` (the executor on a Ray cluster, ``ladsim[ray]``),
:mod:`~ladsim.studies.gather` (tidy frames, summaries, figure data), :mod:`~ladsim.studies.figures` (several
studies end to end, drawing).
"""

from ladsim.stats import bootstrap_interval
from ladsim.studies.cache import CACHE_VERSION, DEFAULT_CACHE, cache_path, clean_stale_temps, load_frames, run_key
from ladsim.studies.compute import compute_run
from ladsim.studies.execute import make_executor, open_executor, run_study
from ladsim.studies.figures import draw_study, run_studies
from ladsim.studies.gather import DEFAULT_DATA, StudyResult, data_path, load_data, pool, save_data, summarize
from ladsim.studies.grid import Run
from ladsim.studies.parse import Study, load_study, study_files

__all__ = [
    "CACHE_VERSION", "DEFAULT_CACHE", "DEFAULT_DATA", "Run", "Study", "StudyResult", "bootstrap_interval",
    "cache_path", "clean_stale_temps", "compute_run", "data_path", "draw_study", "load_data", "load_frames",
    "load_study", "make_executor", "open_executor", "pool", "run_key", "run_studies", "run_study", "save_data",
    "study_files", "summarize",
]
