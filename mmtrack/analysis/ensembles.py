"""Does ensembling help? Single models beside the ensembles built from them (`mmtrack ensemble`), metric by
metric: the spread (Δmax^all) of each, how much the ensembles shrink it, and the noise floors that say whether
what is left is more than test-set sampling. Pure pandas, like the sheets it compares."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mmtrack.analysis.multiplicity import Multiplicity, multiplicity
from mmtrack.analysis.sheet import Sheet
from mmtrack.errors import MMTrackError
from mmtrack.tags import RUN_NAME_TAG, column

COLUMNS = (
    "metric",
    "single_delta_max_all",
    "single_models",
    "one_seed_delta_max_all",  # single models, the first seed of each configuration: as many as the ensembles
    "ensemble_delta_max_all",
    "ensembles",
    "ratio",
    "ratio_one_seed",  # ensembles / one seed per configuration: the like-for-like comparison
    "single_noise_floor",
    "ensemble_noise_floor",
)


def config_columns(runs: pd.DataFrame) -> list[str]:
    """The param columns that make a configuration: every param but `seed` and the evaluation settings (sorted)."""
    return sorted(c for c in runs.columns if c.startswith("params.") and c != "params.seed" and ".eval." not in c)


SUFFIX = "-ensembles"  # the ensembles of experiment X live in experiment X-ensembles


def experiment_name(
    experiment: str, size: int | None = None, selected: bool | str = False, alpha: float | None = None
) -> str:
    """Where ensembles of `experiment` go: `-ensembles` (each configuration's seeds, all of them), `-ensembles-k<K>`
    (K of them, several draws), `-ensembles-configs` (every configuration, one per seed), `-ensembles-selected`
    (of a selection, or of given runs); selective ensembles of level `alpha` add `-selective<alpha>`. One kind and
    size per experiment, so its sheets have one cell per configuration and draw."""
    tail = "" if alpha is None else f"-selective{alpha:g}"
    if selected:
        return f"{experiment}{SUFFIX}-{selected if isinstance(selected, str) else 'selected'}{tail}"
    return f"{experiment}{SUFFIX}" + (f"-k{size}" if size else "") + tail


@dataclass
class Planned:
    """One ensemble to build: its run name, the params its members share (`seed` = the draw), its members."""

    name: str
    params: dict[str, str]
    members: list[str]
    seeds: list[int]
    draw: int


def plan_seed_ensembles(runs: pd.DataFrame, size: int | None = None, draws: int = 5, seed: int = 0) -> list[Planned]:
    """Ensembles over the seeds of each configuration of `runs` (FINISHED runs; a configuration = every param but
    `seed` and `eval.*`): one of all its seeds, or with `size` K up to `draws` ensembles of K distinct seeds
    (every K-subset when there are no more than `draws`, else a fixed-seed draw of them)."""
    fin = runs[runs["status"] == "FINISHED"]
    if "params.seed" not in fin:
        raise MMTrackError("these runs have no seed param; ensembles over seeds need runs of several seeds")
    keys = config_columns(fin)
    rng = np.random.default_rng(seed)
    out = []
    for _, group in fin.groupby(keys, dropna=False, sort=False):
        group = group.assign(_seed=group["params.seed"].astype(int)).sort_values("_seed")
        ids, seeds = group["run_id"].astype(str).tolist(), group["_seed"].tolist()
        k = size or len(ids)
        if k > len(ids) or len(ids) < 2:
            continue
        combos = list(itertools.combinations(range(len(ids)), k))
        if len(combos) > draws:
            combos = [combos[i] for i in sorted(rng.choice(len(combos), draws, replace=False))]
        first = group.iloc[0]
        name = first.get(column(RUN_NAME_TAG))
        label = str(name if isinstance(name, str) and name else first["run_id"]).split(" · ")[0]
        params = {c[len("params.") :]: str(first[c]) for c in keys if pd.notna(first[c])}
        for d, combo in enumerate(combos):
            name = f"{label} · ens{k}" + (f" #{d}" if len(combos) > 1 else "")
            out.append(Planned(name, params, [ids[i] for i in combo], [seeds[i] for i in combo], d))
    return out


def plan_config_ensembles(runs: pd.DataFrame) -> list[Planned]:
    """One ensemble per seed over every configuration's run of that seed (architectures may differ: the members
    then run one after the other), `seed` = that seed."""
    fin = runs[runs["status"] == "FINISHED"]
    if "params.seed" not in fin:
        raise MMTrackError("these runs have no seed param; ensembles over configurations pair runs by seed")
    keys = config_columns(fin)
    out = []
    for seed, group in fin.groupby(fin["params.seed"].astype(int), sort=True):
        if len(group) < 2:
            continue
        shared = {c[len("params.") :]: str(group[c].iloc[0]) for c in keys if group[c].nunique(dropna=False) == 1}
        ids = group["run_id"].astype(str).tolist()
        out.append(
            Planned(f"every configuration · s{seed} · ens{len(ids)}", shared, ids, [int(seed)] * len(ids), int(seed))
        )
    return out


def one_seed_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The FINISHED runs of each configuration's first seed (a configuration: `config_columns`)."""
    fin = runs[runs["status"] == "FINISHED"]
    keys = config_columns(fin)
    order = pd.to_numeric(fin["params.seed"], errors="coerce") if "params.seed" in fin else None
    fin = fin.assign(_seed=order).sort_values("_seed") if order is not None else fin
    return fin.drop_duplicates(keys) if keys else fin.head(1)


def ensemble_comparison(
    single: Sequence[Sheet], ensembles: Sequence[Sheet], single_runs: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per metric with both sheets: Δmax^all over the single models and over the ensembles, the ratio
    (ensembles / single: below 1, ensembling shrinks the spread), and each Δmax^all's noise floor. With
    `single_runs`, also Δmax^all over one seed per configuration (as many models as ensembles of all seeds:
    a smaller set spreads less by itself)."""
    by_metric = {s.metric: s for s in ensembles}
    first = one_seed_runs(single_runs) if single_runs is not None else None
    rows = []
    for s in single:
        e = by_metric.get(s.metric)
        if e is None:
            continue
        ratio = e.delta_max_all / s.delta_max_all if s.delta_max_all else math.nan
        rows.append(
            {
                "metric": s.metric,
                "single_delta_max_all": s.delta_max_all,
                "single_models": s.n_models,
                "one_seed_delta_max_all": _spread(first, s.metric),
                "ensemble_delta_max_all": e.delta_max_all,
                "ensembles": e.n_models,
                "ratio": ratio,
                "ratio_one_seed": e.delta_max_all / one if (one := _spread(first, s.metric)) else math.nan,
                "single_noise_floor": math.nan if s.noise_floor_all is None else s.noise_floor_all,
                "ensemble_noise_floor": math.nan if e.noise_floor_all is None else e.noise_floor_all,
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _spread(runs: pd.DataFrame | None, metric: str) -> float:
    if runs is None or f"metrics.{metric}" not in runs:
        return math.nan
    values = pd.to_numeric(runs[f"metrics.{metric}"], errors="coerce").dropna()
    return float(100 * (values.max() - values.min())) if len(values) > 1 else math.nan


@dataclass
class EnsembleFindings:
    """What the report says about ensembling: the comparison per metric, prediction multiplicity of single models
    (all, and one per configuration: as many as the ensembles) vs the ensembles, overall and per group, and the
    price (evaluation seconds per model, inference cost ×K)."""

    comparison: pd.DataFrame
    members: int  # K, members per ensemble
    multiplicity: dict[str, Multiplicity]  # "single models", "one seed per configuration", "ensembles"
    per_group: dict[str, dict[str, Multiplicity]] = field(default_factory=dict)  # group -> the same three
    group_population: str = "test"
    eval_seconds: dict[str, float] = field(default_factory=dict)  # "single", "ensemble": median seconds per run

    def to_dict(self) -> dict:
        from mmtrack.analysis.run_table import jsonable

        return jsonable(
            {
                "comparison": self.comparison.to_dict(orient="records"),
                "members": self.members,
                "multiplicity": {k: m.to_dict() for k, m in self.multiplicity.items()},
                "per_group": {g: {k: m.to_dict() for k, m in d.items()} for g, d in self.per_group.items()},
                "group_population": self.group_population,
                "eval_seconds": self.eval_seconds,
            }
        )


def _eval_seconds(runs: pd.DataFrame) -> float:
    cols = [c for c in runs.columns if c.startswith("metrics.seconds/eval/")]
    return float(runs[cols].sum(axis=1).mean()) if cols and len(runs) else math.nan  # stacked runs share costs


def ensemble_findings(
    single_sheets: Sequence[Sheet],
    single_runs: pd.DataFrame,
    single_preds: Mapping[str, pd.DataFrame],
    ensemble_sheets: Sequence[Sheet],
    ensemble_runs: pd.DataFrame,
    ensemble_preds: Mapping[str, pd.DataFrame],
    population: str = "test",
    references: Mapping[str, str | None] | None = None,
) -> EnsembleFindings:
    """Single models vs ensembles: `*_preds` are the runs' predictions on one population (`population`: the test
    split, or the group evaluation set whose group columns give the per-group rows). `references` ("single",
    "ensemble": the default configuration's first seed, its ensemble) give ambiguity and discrepancy."""
    refs = dict(references or {})
    fin = single_runs[single_runs["status"] == "FINISHED"]
    ens = ensemble_runs[ensemble_runs["status"] == "FINISHED"]
    one_seed = [str(r) for r in one_seed_runs(fin)["run_id"]]
    sets = {
        "single models": [str(r) for r in fin["run_id"]],
        "one seed per configuration": one_seed,
        "ensembles": [str(r) for r in ens["run_id"]],
    }
    preds = {**single_preds, **ensemble_preds}
    labels = {r: df["pred"].to_numpy() for r, df in preds.items()}
    findings = EnsembleFindings(
        ensemble_comparison(single_sheets, ensemble_sheets, single_runs),
        int(pd.to_numeric(ens["params.ensemble.size"]).max()) if len(ens) else 0,
        {k: multiplicity(labels, [r for r in ids if r in labels], _ref(k, refs)) for k, ids in sets.items()},
        group_population=population,
        eval_seconds={"single": _eval_seconds(fin), "ensemble": _eval_seconds(ens)},
    )
    first = next((preds[r] for r in sets["ensembles"] if r in preds), None)
    for col in [c for c in (first.columns if first is not None else []) if c.startswith("group/")]:
        for value in sorted(first[col].dropna().unique()):
            mask = (first[col] == value).to_numpy()
            findings.per_group[f"{col[len('group/') :]}/{value}"] = {
                k: multiplicity(labels, [r for r in ids if r in labels], _ref(k, refs), mask) for k, ids in sets.items()
            }
    return findings


def _ref(kind: str, refs: Mapping[str, str | None]) -> str | None:
    return refs.get("ensemble") if kind == "ensembles" else refs.get("single")
