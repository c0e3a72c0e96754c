"""The typer app, its consoles and the helpers every command shares. Command modules register on `app`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape as esc
from rich.table import Table

from mmtrack.errors import MMTrackError
from mmtrack.metrics import is_accuracy

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
    help="Benchmark model multiplicity: train configurations as MLflow runs, measure accuracy "
    "under intervention, build multiplicity sheets and simulate model selection.",
)
PIPE_WIDTH = 400  # piped or redirected output (CI logs, tee, files): wide enough that no table is ever cut


def make_console(stderr: bool = False) -> Console:
    """A terminal's own width; elsewhere $COLUMNS, else PIPE_WIDTH (rich would assume 80 columns and cut or
    drop table columns). Tables keep their natural width either way."""
    probe = Console(stderr=stderr)
    if probe.is_terminal or os.environ.get("COLUMNS"):
        return probe
    return Console(stderr=stderr, width=PIPE_WIDTH)


console = make_console()
err = make_console(stderr=True)


def quiet() -> None:
    """Keep library chatter (MLflow, alembic, ART, Optuna) out of the command's output: only their errors."""
    from mmtrack import tracking

    tracking.quiet_libraries()


def fmt_metric(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if is_accuracy(name) else f"{value:.4f}"


def metrics_table(metrics: dict[str, float], title: str) -> Table:
    table = Table(title=title, show_edge=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in sorted(metrics.items(), key=lambda kv: (kv[0] != "acc", kv[0])):
        table.add_row(esc(name), fmt_metric(name, value))
    return table


def emit_text(text: str, out: Path | None) -> None:
    """Write a rendered output to stdout, or to `out` (saying so on stderr)."""
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        err.print(f"wrote {esc(str(out))}")


def experiment_runs(
    experiment: str,
    tracking_uri: str | None,
    refresh: bool = False,
    rashomon: float | None = None,
    rashomon_metric: str = "acc",
):
    """(client, experiment id, study dict or None, runs table) for an experiment; report runs left out; with
    `rashomon`, only its ε-Rashomon set (which models stayed and which fell out is printed on stderr)."""
    from mmtrack.api import open_experiment

    exp = open_experiment(experiment, tracking_uri, refresh, rashomon, rashomon_metric)
    if exp.rashomon is not None:
        err.print(esc(exp.rashomon.note()), highlight=False, soft_wrap=True)
    return exp.client, exp.experiment_id, exp.study, exp.runs


def run_main() -> None:
    try:
        app()
    except MMTrackError as exc:
        err.print(f"[bold red]error:[/] {esc(exc.message)}", highlight=False, soft_wrap=True)
        sys.exit(2)
