"""The ``ladsim`` command line: thin typer commands that parse, delegate and report.

Every command lives beside the code it drives; this module only assembles them. Errors a user can fix
(bad values, missing files, an existing output) are printed as one line with exit code 2; set
``LADSIM_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import os
import signal
import sys

import typer

app = typer.Typer(
    name="ladsim",
    help="Controlled bandit and toy-theory simulator for GRPO and LAD (Learning Advantage Distribution).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
run_app = typer.Typer(help="Train policies and write a run directory.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print ratios measured side by side in one run.",
                        no_args_is_help=True)
app.add_typer(run_app, name="run")
app.add_typer(bench_app, name="bench")


def _register() -> None:
    from ladsim.studies import commands as study_commands
    from ladsim.bandit import commands as bandit_commands
    from ladsim.llm import commands as llm_commands
    from ladsim.objectives import commands as objective_commands
    from ladsim.theory import commands as theory_commands

    run_app.command("bandit")(bandit_commands.run_bandit)
    bench_app.command("bandit")(bandit_commands.bench_bandit)
    bench_app.command("loss")(llm_commands.bench_loss)
    app.command("verify")(theory_commands.verify)
    app.command("objectives")(objective_commands.list_objectives_command)
    app.add_typer(study_commands.study_app, name="study")
    app.command("figures")(study_commands.figures)


_register()


def _terminate(signum, frame) -> None:
    """SIGTERM -> ``SystemExit(143)`` in the main thread, so that every ``finally``/``except BaseException``
    runs: temporary outputs are removed and claimed output paths released, as on Ctrl-C."""
    raise SystemExit(128 + signum)


def main() -> None:
    """Console entry point: one-line errors with exit code 2 instead of tracebacks."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except (ValueError, OSError) as err:
        if os.environ.get("LADSIM_DEBUG"):
            raise
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
