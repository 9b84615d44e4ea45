"""Running the ``ladsim`` console entry point in-process, as the console script does (``main()`` turns user
errors into one line and exit code 2)."""

import sys

import pytest

from ladsim import cli


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``ladsim ARGS``."""
    argv = sys.argv
    sys.argv = ["ladsim", *args]
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err
