"""`mmtrack`: the command line. Thin typer commands over the library; nothing in mmtrack imports this package.

`_app` holds the typer app, consoles and shared helpers; `_options` the option types; each `*_cmds` module
registers its commands on the app when imported here."""

from __future__ import annotations

# importing a command module registers its commands; `mmtrack --help` lists them in this order
from mmtrack.cli import run_cmds, sweep_cmds, report_cmds, data_cmds, misc_cmds  # noqa: F401, I001
from mmtrack.cli._app import app, console, err, make_console, run_main

__all__ = ["app", "console", "err", "main", "make_console"]


def main() -> None:
    run_main()
