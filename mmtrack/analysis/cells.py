"""Which run fills which cell of a multiplicity sheet: the design (axes with the default first, seeds; from the
study or inferred from the runs' params) and the assignment of FINISHED runs to cells, the same for every metric
(and the run ids whose predictions are worth downloading). The statistics over the cells are
`mmtrack.analysis.sheet`; a pure function of the runs table, like it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mmtrack.analysis.run_table import finished_mask, metric_column, norm_series, normalise, param_names, sort_key
from mmtrack.errors import MMTrackError
from mmtrack.training.config import AXES, NOT_APPLICABLE

MISSING = "—"  # how a missing value is shown (also in the messages of Sheet.missing)


def format_value(value: Any) -> str:
    """A normalised param value as shown in a sheet and its messages (0.1, 128, randaugment)."""
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# --------------------------------------------------------------------------------------------------------
# Design
# --------------------------------------------------------------------------------------------------------


@dataclass
class Design:
    """Which runs make up a sheet: the axes (values listed default first), the default configuration, the
    seed param and the seeds (None: every seed found among the FINISHED runs). ``default`` may hold keys that
    are not axes; those are fixed constraints every cell's run must meet."""

    axes: dict[str, list]
    default: dict[str, object]
    seed_param: str = "seed"
    seeds: list | None = None
    # tables whose columns are the values of one param under extra constraints, by table label (a seed-sources
    # study: one table per configuration, columns = sources): label -> {"column": param, "where": {param: value}}
    tables: dict[str, dict] | None = None

    @classmethod
    def from_study(cls, study: Mapping) -> Design:
        """The design of a study dict (the experiment tag ``mmtrack.study``). Its ``fixed`` params (non-axis
        training params every run shares) are constraints too; ``default`` wins over ``fixed``."""
        if study.get("design") == "seed-sources":  # a table per configuration: columns = sources, rows = seeds
            seeds = study.get("seeds") or [0]
            sources = list(study.get("sources") or [])
            default = {**(study.get("fixed") or {}), **(study.get("default") or {}), "seed": seeds[0]}
            points = [("source", {})] + [
                (f"source · {axis}={format_value(v)}", {axis: v})
                for axis, values in (study.get("axes") or {}).items()
                for v in values
                if normalise(v) != normalise(default.get(axis))
            ]
            return cls(
                axes={label: sources for label, _ in points},
                default=default,
                seed_param="source_seed",
                seeds=seeds,
                tables={label: {"column": "source", "where": where} for label, where in points},
            ).normalised()
        axes = study.get("axes")
        if not isinstance(axes, Mapping) or not axes:
            raise MMTrackError("the study has no 'axes' (a mapping axis -> list of values); add them to the study")
        default = {**(study.get("fixed") or {}), **(study.get("default") or {})}
        for axis, values in axes.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise MMTrackError(f"study axis {axis!r} has no values; list them, default first")
            default.setdefault(axis, values[0])
        return cls(
            axes={a: list(v) for a, v in axes.items()},
            default=default,
            seed_param=study.get("seed_param", "seed"),
            seeds=study.get("seeds"),
        ).normalised()

    def normalised(self) -> Design:
        """A copy with every value normalised and each axis's default moved first."""
        default = {str(k).removeprefix("params."): normalise(v) for k, v in self.default.items()}
        axes: dict[str, list] = {}
        tables = None
        if self.tables:
            tables = {
                label: {"column": t["column"], "where": {k: normalise(v) for k, v in t["where"].items()}}
                for label, t in self.tables.items()
            }
        for axis, values in self.axes.items():
            axis = str(axis).removeprefix("params.")
            vals = list(dict.fromkeys(normalise(v) for v in values))
            if not vals:
                raise MMTrackError(f"design axis {axis!r} has no values")
            if tables and axis in tables:  # a table's columns: in the order given, no default among them
                axes[axis] = vals
                continue
            dflt = default.setdefault(axis, vals[0])
            if dflt not in vals:
                raise MMTrackError(
                    f"default {axis}={format_value(dflt)} is not among the axis values "
                    f"{', '.join(map(format_value, vals))}; add it or change the default"
                )
            axes[axis] = [dflt] + [v for v in vals if v != dflt]
        seed_param = str(self.seed_param).removeprefix("params.")
        if seed_param in axes:
            raise MMTrackError(f"the seed param {seed_param!r} cannot also be an axis")
        seeds = None if self.seeds is None else list(dict.fromkeys(normalise(s) for s in self.seeds))
        return Design(axes=axes, default=default, seed_param=seed_param, seeds=seeds, tables=tables)

    @property
    def keys(self) -> list[str]:
        """The params a cell's run is matched on (besides the seed): axes, then fixed default keys (with tables:
        their column params too)."""
        axes = [a for a in self.axes if not self.tables or a not in self.tables]
        columns = list(dict.fromkeys(t["column"] for t in (self.tables or {}).values()))
        return axes + columns + [k for k in self.default if k not in self.axes and k not in columns]

    def describe(self, **changes: Any) -> str:
        """One configuration as "lr=0.1, batch_size=128, ..." (the default with `changes` applied)."""
        cfg = {**{k: self.default[k] for k in self.keys if k in self.default}, **changes}
        return ", ".join(f"{k}={format_value(v)}" for k, v in cfg.items())


def infer_design(
    runs: pd.DataFrame,
    seed_param: str = "seed",
    defaults: Mapping[str, Any] | None = None,
    ignore: Iterable[str] = ("epochs",),
) -> Design:
    """Infer an OFAT design from the FINISHED runs.

    Axes = the params whose normalised values vary (except `seed_param` and `ignore`), in the paper's order
    (lr, batch_size, augment, optimizer, arch, width) then alphabetically. Each axis's default is its most
    frequent value (ties: first in sorted order) unless `defaults` names it; values are listed default first,
    then sorted (numbers numerically). Seeds are sorted numerically.
    """
    fin = runs[finished_mask(runs)]
    if fin.empty:
        raise MMTrackError("no FINISHED runs to infer a design from; train some runs first")
    names = param_names(runs)
    if seed_param not in names:
        raise MMTrackError(f"the runs have no param {seed_param!r} (the seed); params: {', '.join(names) or 'none'}")
    ignored = set(ignore) | {seed_param}
    observed = {name: norm_series(fin[f"params.{name}"]).dropna() for name in names}
    axes_found = [n for n in names if n not in ignored and observed[n].nunique() > 1]
    axes_found.sort(key=lambda n: (AXES.index(n) if n in AXES else len(AXES), n))  # the paper's table order

    default: dict[str, Any] = {}
    for axis in axes_found:
        counts = observed[axis].value_counts()
        top = counts[counts == counts.max()].index
        default[axis] = normalise(min(top, key=sort_key))
    for key, value in (defaults or {}).items():
        key, value = str(key).removeprefix("params."), normalise(value)
        if key in default:
            present = set(observed[key])
            if value not in present:
                raise MMTrackError(
                    f"default {key}={format_value(value)} matches no FINISHED run; values present: "
                    f"{', '.join(format_value(v) for v in sorted(present, key=sort_key))}"
                )
            default[key] = value
        elif key in observed and key != seed_param and set(observed[key]) == {value}:
            continue  # a constant param at that value: nothing to choose
        else:
            raise MMTrackError(
                f"cannot set a default for {key!r}: it is not an axis of these runs "
                f"(axes: {', '.join(axes_found) or 'none'})"
            )
    axes = {a: [default[a]] + sorted(set(observed[a]) - {default[a]}, key=sort_key) for a in axes_found}
    seeds = sorted(set(observed[seed_param]), key=sort_key)
    return Design(axes=axes, default=default, seed_param=seed_param, seeds=seeds)


def choose_design(
    runs: pd.DataFrame,
    study: Mapping | None = None,
    seed_param: str = "seed",
    defaults: Mapping[str, Any] | None = None,
) -> Design:
    """The design `mmtrack sheet` uses: the experiment's study when there is one and nothing overrides it
    (no `defaults`, the study's own seed param), else one inferred from the runs."""
    own = study.get("seed_param", "seed") if study else None
    if (
        study
        and not defaults
        and (seed_param == own or (seed_param == "seed" and study.get("design") == "seed-sources"))
    ):
        return Design.from_study(study)  # a seed-sources study's rows are its sources' seeds
    return infer_design(runs, seed_param=seed_param, defaults=defaults)


def sheet_metrics(runs: pd.DataFrame, names: Sequence[str] | None = None) -> list[str]:
    """The metrics to draw sheets of: `names` checked to exist (prefix stripped); by default every accuracy under
    intervention (``metrics.acc*``), ``acc`` first."""
    if names:
        return [metric_column(runs, n).removeprefix("metrics.") for n in names]
    names = sorted(c.removeprefix("metrics.") for c in runs.columns if c.startswith("metrics.acc"))
    return (["acc"] if "acc" in names else []) + [n for n in names if n != "acc"]


# --------------------------------------------------------------------------------------------------------
# Which run fills which cell (the same for every metric)
# --------------------------------------------------------------------------------------------------------


@dataclass
class Cells:
    """The runs of a sheet before any metric is read: per axis, a grid (seeds x values) of row positions in
    ``runs`` (-1: no FINISHED run), and the messages the assignment produced, per axis in table order."""

    experiment: str
    design: Design  # normalised
    seeds: list
    runs: pd.DataFrame  # the runs table, index reset (positions index it)
    rows: dict[str, np.ndarray]  # axis -> int grid (len(seeds), len(values)) of positions in `runs`, -1 where empty
    no_run: dict[str, list[str]]  # axis -> "no FINISHED run for ..." messages
    duplicates: dict[str, list[str]]  # axis -> "2 FINISHED runs for ...: using ..." messages

    def run_ids(self) -> list[str]:
        """Every run filling some cell, sorted (the runs whose predictions a sheet can use)."""
        ids = self.runs["run_id"].astype(str).to_numpy()
        return sorted({ids[p] for grid in self.rows.values() for p in grid.ravel() if p >= 0})

    def reference_run(self) -> str | None:
        """The run of the default configuration with the first seed (the reference model of prediction
        multiplicity), or None when that cell is empty."""
        for grid in self.rows.values():
            if grid.size and grid[0, 0] >= 0:
                return str(self.runs["run_id"].iloc[grid[0, 0]])
        return None


def assign_cells(runs: pd.DataFrame, design: Design, experiment: str = "") -> Cells:
    """Which FINISHED run fills each cell of each table of `design` (the latest by ``end_time`` when several do).
    Metric-independent: build it once, then call :func:`sheet_stats` per metric."""
    design = design.normalised()
    names = set(param_names(runs))
    for key in design.keys + [design.seed_param]:
        if key not in names:
            raise MMTrackError(
                f"the runs have no param {key!r} named by the design; "
                f"params present: {', '.join(sorted(names)) or 'none'}"
            )
    finished = finished_mask(runs)
    if not finished.any():
        raise MMTrackError("no FINISHED runs to build a sheet from; train some runs first")
    runs = runs.reset_index(drop=True)
    params = pd.DataFrame({k: norm_series(runs[f"params.{k}"]) for k in design.keys + [design.seed_param]})
    seeds = (
        design.seeds
        if design.seeds is not None
        else sorted(set(params.loc[finished, design.seed_param].dropna()), key=sort_key)
    )
    frame = pd.DataFrame(
        {
            "run_id": runs["run_id"].astype(str),
            "status": runs["status"],
            "end_time": pd.to_datetime(runs["end_time"], utc=True) if "end_time" in runs else pd.NaT,
        }
    )
    rows, no_run, duplicates = {}, {}, {}
    for axis in design.axes:
        rows[axis], no_run[axis], duplicates[axis] = _assign_table(axis, design, seeds, params, frame, finished)
    return Cells(
        experiment=experiment,
        design=design,
        seeds=list(seeds),
        runs=runs,
        rows=rows,
        no_run=no_run,
        duplicates=duplicates,
    )


def _assign_table(
    axis: str, design: Design, seeds: list, params: pd.DataFrame, frame: pd.DataFrame, finished: np.ndarray
) -> tuple[np.ndarray, list[str], list[str]]:
    values = design.axes[axis]
    vindex = {v: i for i, v in enumerate(values)}
    sindex = {s: i for i, s in enumerate(seeds)}
    table = (design.tables or {}).get(axis)
    column = table["column"] if table else axis  # the param whose values are the table's columns
    wanted = {**design.default, **(table["where"] if table else {})}
    match = np.ones(len(frame), dtype=bool)
    for key in design.keys:
        if key != column and key in wanted:  # a param the run's architecture does not have (width "n/a") fits any
            match &= ((params[key] == wanted[key]) | (params[key] == NOT_APPLICABLE)).to_numpy()
    vi = np.array([vindex.get(v, -1) for v in params[column]], dtype=int)
    si = np.array([sindex.get(s, -1) for s in params[design.seed_param]], dtype=int)
    cand = match & (vi >= 0) & (si >= 0)
    tagged = frame.assign(vi=vi, si=si, pos=np.arange(len(frame)))
    sub = tagged[cand & finished].sort_values(["vi", "si", "end_time"], na_position="first", kind="stable")
    others = tagged[cand & ~finished]

    def where(v: int, s: int) -> str:
        extra = table["where"] if table else {}
        return design.describe(**extra, **{column: values[v], design.seed_param: seeds[s]})

    duplicates = []
    dup = sub[sub.duplicated(["vi", "si"], keep=False)]
    for (v, s), ids in dup.groupby(["vi", "si"])["run_id"]:
        ids = list(ids)
        duplicates.append(
            f"{len(ids)} FINISHED runs for {where(v, s)}: using {ids[-1]} (latest end_time), "
            f"ignoring {', '.join(ids[:-1])}"
        )
    chosen = sub.drop_duplicates(["vi", "si"], keep="last")
    grid = np.full((len(seeds), len(values)), -1, dtype=int)
    grid[chosen["si"].to_numpy(), chosen["vi"].to_numpy()] = chosen["pos"].to_numpy()
    no_run = []
    for s, v in zip(*np.nonzero(grid < 0)):
        found = others[(others["si"] == s) & (others["vi"] == v)]
        extra = (
            f" (found {', '.join(f'{st} {r}' for st, r in zip(found['status'], found['run_id']))})"
            if len(found)
            else ""
        )
        no_run.append(f"no FINISHED run for {where(v, s)}{extra}")
    return grid, no_run, duplicates
