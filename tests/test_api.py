"""The public API of ``import ladsim``: what it exports, that loading it is light, and the README example."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import ladsim

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_public_name_resolves_and_is_documented():
    assert len(ladsim.__all__) >= 20
    for name in ladsim.__all__:
        value = getattr(ladsim, name)
        assert value is not None
        if callable(value):
            assert (value.__doc__ or "").strip(), f"{name} has no docstring"
    assert set(ladsim.__all__) <= set(dir(ladsim))


def test_unknown_attribute_is_an_attribute_error():
    try:
        ladsim.nope
    except AttributeError as err:
        assert "nope" in str(err)
    else:
        raise AssertionError("ladsim.nope resolved")


def test_import_ladsim_loads_no_heavy_module():
    code = ("import sys, ladsim; heavy = [m for m in ('torch', 'matplotlib', 'scipy', 'pandas') if m in sys.modules];"
            " print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_training_through_the_api_loads_no_plotting_library():
    code = ("import sys, ladsim; r = ladsim.train(ladsim.BanditConfig(arms=6, steps=5, seeds=1, log_every=5,"
            " objectives=('grpo', 'lad'))); print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_the_readme_library_example_runs_as_written(tmp_path):
    text = README.read_text()
    block = re.search(r"<!-- example:api -->\n```python\n(.*?)```", text, re.S)
    assert block, "the README's API example (marked <!-- example:api -->) is missing"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 15
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr


def test_plots_leave_the_matplotlib_backend_alone():
    # the raw rcParams entry (reading rcParams["backend"] or get_backend() would itself resolve a backend)
    code = ("import sys, matplotlib; raw = lambda: dict.__getitem__(matplotlib.rcParams, 'backend');"
            " before = raw(); import ladsim.plots as p, numpy as np;"
            " p.plot_distribution(np.full(4, 0.25), {'lad': np.full(4, 0.25)});"
            " print(before == raw(), 'matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "True False"
