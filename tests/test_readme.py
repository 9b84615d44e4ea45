"""Every command the README shows runs as written: the README is a user's guide, and a guide whose commands fail
is worse than none.

Each line of each ``bash`` block is a command (a trailing ``# ...`` is a comment). ``make`` targets must exist
(``make -n``, a dry run); ``ladsim`` commands that take seconds are run for real, in a fresh working directory
holding the repository's ``studies/``; the long ones (the full ``ladsim verify``, ``ladsim figures`` and its
cluster form) are parsed by the real command line, which checks every option and value without running them.
The Python example is run by ``tests/test_api.py``.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LONG = (("verify",), ("figures",), ("bench",), ("study", "run"))  # parsed, not run: minutes of work each
MAX_LINES = 200  # the "at most ~200 lines"


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def test_the_readme_is_a_short_guide():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES + 10, len(lines)
    assert not re.search(r"\bissue \d+|\(issue", README.read_text(), re.I)  # no issue numbers
    assert len(readme_commands()) >= 8


def test_every_command_is_a_known_kind():
    for command in readme_commands():
        assert shlex.split(command)[0] in ("make", "ladsim"), command


def parse_only(args: list[str]) -> None:
    """Parse ``ladsim ARGS`` with the real command line down to its leaf command, running nothing: each group
    names its subcommand, and the leaf parses every option and value (a usage error raises)."""
    from ladsim import cli

    command, name, rest, parent = typer.main.get_command(cli.app), "ladsim", list(args), None
    while hasattr(command, "list_commands"):  # a group: descend to the command it names
        ctx = command.make_context(name, [], parent=parent, resilient_parsing=True)
        sub = command.get_command(ctx, rest[0]) if rest else None
        if sub is None:
            raise ValueError(f"no command {rest[:1]} under {name}")
        command, name, rest, parent = sub, rest[0], rest[1:], ctx
    command.make_context(name, rest, parent=parent)


@pytest.mark.parametrize("command", [c for c in readme_commands() if c.startswith("make ")])
def test_make_targets_exist(command):
    proc = subprocess.run(["make", "-n", *shlex.split(command)[1:]], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("command", [c for c in readme_commands() if c.startswith("ladsim ")])
def test_ladsim_commands_run_as_written(command, tmp_path):
    args = shlex.split(command)[1:]
    if any(tuple(args[:len(long)]) == long for long in LONG) and "--quick" not in args:
        parse_only(args)
        return
    shutil.copytree(ROOT / "studies", tmp_path / "studies", ignore=shutil.ignore_patterns("cache"))
    proc = subprocess.run([sys.executable, "-m", "ladsim.cli", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr


def test_parse_only_accepts_a_valid_long_command():
    parse_only(["figures", "--executor", "ray", "--address", "ray://HOST:10001"])


@pytest.mark.parametrize("args", [["figures", "--no-such-flag"], ["verify", "--seed", "x"], ["nope"]])
def test_parse_only_refuses_what_the_command_line_refuses(args):
    with pytest.raises(Exception) as err:  # typer's click usage errors (an unknown option, a bad value)
        parse_only(args)
    assert getattr(err.value, "exit_code", 2) == 2
