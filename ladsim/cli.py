"""The ``ladsim`` command line: thin typer commands that parse, delegate and report.

Every command lives beside the code it drives; this module only assembles them. Errors a user can fix
(bad values, missing files, an existing output) are printed as one line with exit code 2; set
``LADSIM_DEBUG=1`` to see the traceback instead.

Startup: importing this module imports typer and nothing heavy. The commands (and torch, pandas, matplotlib
behind them) are imported when ``app`` is first used; ``ladsim``, ``ladsim --help`` and ``ladsim --version``
answer from the table ``COMMANDS`` without importing any of them (a test holds the table to the commands'
own help). After a command the process exits without the interpreter's teardown, which takes ~0.3-1 s once
torch is loaded.
"""

from __future__ import annotations

import os
import signal
import sys

import typer

HELP = "Controlled bandit and toy-theory simulator for GRPO and LAD (Learning Advantage Distribution)."
# name -> the first line of its help, for the instant top-level --help
COMMANDS = {
    "run": "Train policies and write a run directory.",
    "bench": "Benchmarks that print ratios measured side by side in one run.",
    "verify": "Verify Lemma 3.1, Lemma 3.2, the LAD gradient, Theorem B.1 and the facts about the objectives LAD "
              "is compared with (KL estimators, entropy mechanism, KL-penalty and FlowRL fixed points) "
              "numerically (docs/theory.md).",
    "objectives": "List every registered objective: its loss, parameters with defaults, and reference.",
    "study": "Run a study file (a grid of cached runs) and draw its figure.",
    "figures": "Run every study in studies/ (cached runs are reused) and draw every figure (PNG and PDF).",
}


def version() -> str:
    """The installed package's version (``pyproject.toml``), as ``ladsim.__version__`` has it."""
    from ladsim import __version__

    return __version__


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"ladsim {version()}")
        raise typer.Exit()


_app = typer.Typer(
    name="ladsim",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
run_app = typer.Typer(help=COMMANDS["run"], no_args_is_help=True)
bench_app = typer.Typer(help=COMMANDS["bench"], no_args_is_help=True)
_app.add_typer(run_app, name="run")
_app.add_typer(bench_app, name="bench")


@_app.callback()
def _root(show_version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                            help="Print the version and exit.")) -> None:
    """Controlled bandit and toy-theory simulator for GRPO and LAD (Learning Advantage Distribution)."""


def _register_run() -> None:
    from ladsim.bandit import commands
    from ladsim.prompts import commands as prompts_commands
    from ladsim.tree import commands as tree_commands

    run_app.command("bandit")(commands.run_bandit)
    run_app.command("tree")(tree_commands.run_tree)
    run_app.command("prompts")(prompts_commands.run_prompts)


def _register_bench() -> None:
    from ladsim.bandit import commands as bandit_commands
    from ladsim.llm import commands as llm_commands

    from ladsim.prompts import commands as prompts_commands
    from ladsim.tree import commands as tree_commands

    bench_app.command("bandit")(bandit_commands.bench_bandit)
    bench_app.command("tree")(tree_commands.bench_tree)
    bench_app.command("prompts")(prompts_commands.bench_prompts)
    bench_app.command("loss")(llm_commands.bench_loss)


def _register_verify() -> None:
    from ladsim.theory import commands

    _app.command("verify")(commands.verify)


def _register_objectives() -> None:
    from ladsim.objectives import commands

    _app.command("objectives")(commands.list_objectives_command)


def _register_study() -> None:
    from ladsim.studies import commands

    _app.add_typer(commands.study_app, name="study")


def _register_figures() -> None:
    from ladsim.studies import commands

    _app.command("figures")(commands.figures)


_REGISTER = {"run": _register_run, "bench": _register_bench, "verify": _register_verify,
             "objectives": _register_objectives, "study": _register_study, "figures": _register_figures}
_registered: set[str] = set()


def _register(command: str | None = None) -> None:
    """Attach the commands to the app, importing their modules: only ``command``'s where it is one of
    ``COMMANDS`` (``ladsim run bandit`` needs no study code), every one otherwise."""
    for name in [command] if command in _REGISTER else list(_REGISTER):
        if name not in _registered:
            _registered.add(name)
            _REGISTER[name]()


def __getattr__(name: str):
    """``ladsim.cli.app``: the full typer app, its commands imported on first access."""
    if name == "app":
        _register()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def top_level_help() -> str:
    """``ladsim --help`` from the ``COMMANDS`` table (no command module imported)."""
    width = max(map(len, COMMANDS))
    lines = ["Usage: ladsim [OPTIONS] COMMAND [ARGS]...", "", f"  {HELP}", "", "Options:",
             f"  {'--version':<{width + 2}}Print the version and exit.",
             f"  {'--help':<{width + 2}}Show this message and exit.", "", "Commands:"]
    lines += [f"  {name:<{width + 2}}{text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


def _terminate(signum, frame) -> None:
    """SIGTERM -> ``SystemExit(143)`` in the main thread, so that every ``finally``/``except BaseException``
    runs: temporary outputs are removed and claimed output paths released, as on Ctrl-C."""
    raise SystemExit(128 + signum)


def is_usage_error(err: BaseException) -> bool:
    """Whether ``err`` is one of click's own errors (a ``ClickException``: it knows its exit code and message)."""
    return hasattr(err, "exit_code") and callable(getattr(err, "format_message", None))


def one_line(err: BaseException | str) -> str:
    """A message on one line (a library's multi-line message joined with ``; ``)."""
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip())


def main() -> None:
    """Console entry point: one-line errors instead of tracebacks (exit code 2 for bad input and unusable
    outputs, 130 on Ctrl-C, 1 for an unforeseen failure, which asks for ``LADSIM_DEBUG=1``), and a fast exit."""
    signal.signal(signal.SIGTERM, _terminate)
    args = sys.argv[1:]
    if args in ([], ["--help"]):
        print(top_level_help())
        return
    if args == ["--version"]:
        print(f"ladsim {version()}")
        return
    code = 0
    try:
        _register(next((a for a in args if not a.startswith("-")), None))
        # not standalone: click's usage errors come back as exceptions, printed below as one line
        done = typer.main.get_command(_app).main(args=args, prog_name="ladsim", standalone_mode=False)
        code = done if isinstance(done, int) else 0
        if code == 130:  # typer turns Ctrl-C inside a command into a silent exit 130
            typer.echo("error: interrupted", err=True)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if not isinstance(done.code, (int, type(None))):
            print(done.code, file=sys.stderr)
    except (ValueError, OSError, MemoryError) as err:
        if os.environ.get("LADSIM_DEBUG"):
            raise
        typer.echo(f"error: {one_line(err) or 'out of memory; reduce the sizes'}", err=True)
        code = 2
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        code = 130
    except Exception as err:  # a failure ladsim did not foresee: still one line (outputs were released on the way)
        if is_usage_error(err):  # click's: an unknown option, a value of the wrong type, a missing command
            if type(err).__name__ == "NoArgsIsHelpError":  # `ladsim run`: the group's help, as click shows it
                err.show()
            else:
                typer.echo(f"error: {one_line(err.format_message())} (see --help)", err=True)
            sys.stdout.flush()
            code = err.exit_code
        elif os.environ.get("LADSIM_DEBUG"):
            raise
        else:
            typer.echo(f"error: unexpected {type(err).__name__}: {one_line(err)} (a ladsim bug; LADSIM_DEBUG=1 "
                       f"shows the traceback)", err=True)
            code = 1
    if "torch" in sys.modules and _is_entry_process() and not os.environ.get("LADSIM_DEBUG"):
        # skip the interpreter's teardown of torch's modules (everything is written and closed by now)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _is_entry_process() -> bool:
    """Whether this process is the ``ladsim`` console script or ``python -m ladsim.cli`` (not a caller of
    ``main()`` such as a test, whose process must go on)."""
    entry = sys.modules.get("__main__")
    spec = getattr(entry, "__spec__", None)
    script = os.path.basename(getattr(entry, "__file__", None) or "")
    return (spec is not None and spec.name == "ladsim.cli") or script == "ladsim"


if __name__ == "__main__":
    main()
