"""`mmtrack`: the command line: typer commands that parse options, call the library and print; nothing in mmtrack
imports this package. Two commands still assemble data themselves (`report`'s contested test images,
`datasets show`'s dataset resolution): candidates to move into the library.

`_app` holds the typer app, consoles and shared helpers; `_options` the option types; each `*_cmds` module
registers its commands on the app when imported here."""

from __future__ import annotations

from mmtrack.cli._app import app, console, err, make_console, run_main

# Importing a command module registers its commands; `mmtrack --help` lists them in this order.
# isort: off
from mmtrack.cli import train_cmds  # noqa: F401, E402  (train)
from mmtrack.cli import evaluate_cmds  # noqa: F401, E402  (evaluate)
from mmtrack.cli import import_cmds  # noqa: F401, E402  (import)
from mmtrack.cli import sweep_cmds  # noqa: F401, E402  (sweep, worker)
from mmtrack.cli import report_cmds  # noqa: F401, E402  (sheet, report)
from mmtrack.cli import select_cmds  # noqa: F401, E402  (select)
from mmtrack.cli import ensemble_cmds  # noqa: F401, E402  (ensemble)
from mmtrack.cli import data_cmds  # noqa: F401, E402  (datasets)
from mmtrack.cli import study_cmds  # noqa: F401, E402  (study, studies)
from mmtrack.cli import archs_cmds  # noqa: F401, E402  (archs)
from mmtrack.cli import misc_cmds  # noqa: F401, E402  (server, info)
# isort: on

__all__ = ["app", "console", "err", "main", "make_console"]


def main() -> None:
    run_main()
