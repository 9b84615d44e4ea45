"""Startup: ``ladsim --help`` and ``--version`` import nothing heavy; the instant help matches the commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import typer
from typer.testing import CliRunner

HEAVY = ("torch", "numpy", "scipy", "matplotlib", "pandas", "rich")


def _modules_after(args: list[str], packages: tuple[str, ...] = HEAVY) -> tuple[str, list[str]]:
    """``(stdout, the modules of packages that ladsim ARGS imported)``, in a fresh process."""
    code = ("import json, sys\nsys.argv = ['ladsim', *json.loads(sys.argv[1])]\nimport ladsim.cli\n"
            "try:\n    ladsim.cli.main()\nexcept SystemExit:\n    pass\n"
            "print(json.dumps(sorted(m for m in sys.modules if any(m == p or m.startswith(p + '.') for p in %r))),"
            " file=sys.stderr)" % (packages,))
    env = {**os.environ, "LADSIM_DEBUG": "1"}  # no fast exit: the child prints its modules after main()
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, check=True,
                          env=env)
    return proc.stdout, json.loads(proc.stderr.strip().splitlines()[-1])


def test_help_and_version_import_nothing_heavy():
    for args in ([], ["--help"], ["--version"]):
        out, heavy = _modules_after(args)
        assert heavy == [], (args, heavy)
        assert out.strip()
    out, _ = _modules_after(["--version"])
    assert out.startswith("ladsim ")
    # the check can fail: a real command does import the heavy modules
    _, heavy = _modules_after(["objectives"])
    assert "torch" in heavy


def test_a_command_imports_only_its_own_command_modules():
    # `ladsim run ...` needs no study, theory or trainer-adapter code (the tree trains with the LLM path's token
    # losses, ladsim.llm); the full app (`ladsim.cli.app`) still has every command
    _, loaded = _modules_after(["run", "--help"], ("ladsim.studies", "ladsim.theory", "ladsim.llm", "ladsim.bandit",
                                                   "ladsim.tree", "ladsim.integrations"))
    assert loaded and all(m.startswith(("ladsim.bandit", "ladsim.tree", "ladsim.llm")) for m in loaded), loaded
    assert any(m.startswith("ladsim.bandit") for m in loaded) and not any("integrations" in m for m in loaded)


def test_instant_help_lists_every_command_with_its_own_help():
    from ladsim import cli

    app = cli.app
    group = typer.main.get_group(app)
    real = {name: cmd.get_short_help_str(limit=1000) for name, cmd in group.commands.items()}
    assert real == cli.COMMANDS
    for name in cli.COMMANDS:
        assert name in cli.top_level_help()


def test_version_flag_in_the_full_app():
    from ladsim import cli

    result = CliRunner().invoke(cli.app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("ladsim ")


def test_a_command_error_still_exits_2_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "ladsim.cli", "run", "bandit", "--arms", "1"], capture_output=True,
                          text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
