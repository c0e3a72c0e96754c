"""Shared helpers on runs tables (the `mlflow.search_runs` layout: `run_id`, `status`, `params.*`, `metrics.*`,
`tags.*`), so sheets and selections agree on what a finished run is, how a metric column is named, how a param
value compares and how many decimals a percentage point keeps. Pure pandas/numpy: nothing here talks to MLflow."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mmtrack.errors import MMTrackError
from mmtrack.metrics import scale

METRIC_PREFIX = "metrics."
PARAM_PREFIX = "params."
FINISHED = "FINISHED"
PP_DECIMALS = 10  # decimals kept on reported percentage points: drops float noise such as 92.80000000000001


# ----------------------------------------------------------------------------------------------- runs and metrics


def check_runs(runs: pd.DataFrame) -> None:
    """The runs table has the columns every analysis needs."""
    missing = [c for c in ("run_id", "status") if c not in runs.columns]
    if missing:
        raise MMTrackError(
            f"the runs table lacks column(s) {', '.join(missing)}; pass a table in mlflow.search_runs format"
        )


def finished_mask(runs: pd.DataFrame) -> np.ndarray:
    """Which rows are FINISHED runs (RUNNING, FAILED and KILLED runs never count)."""
    if "status" not in runs.columns:
        raise MMTrackError("the runs table has no 'status' column; pass mlflow.search_runs output")
    return (runs["status"].astype(str) == FINISHED).to_numpy()


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The FINISHED runs of a runs table."""
    return runs[finished_mask(runs)]


def finished_run_ids(runs: pd.DataFrame) -> list[str]:
    """The ids of the FINISHED runs, in table order."""
    return finished(runs)["run_id"].astype(str).tolist()


def strip_metric(name: str) -> str:
    return str(name).removeprefix(METRIC_PREFIX)


def available_metrics(runs: pd.DataFrame) -> list[str]:
    """Metric names (without the ``metrics.`` prefix) present as columns of the runs table, sorted."""
    return sorted(strip_metric(c) for c in runs.columns if str(c).startswith(METRIC_PREFIX))


def metric_column(runs: pd.DataFrame, metric: str) -> str:
    """The column of one metric (``acc`` or ``metrics.acc``), or an error naming the metrics there are."""
    col = METRIC_PREFIX + strip_metric(metric)
    if col not in runs.columns:
        names = [strip_metric(c) for c in runs.columns if str(c).startswith(METRIC_PREFIX)]
        raise MMTrackError(
            f"unknown metric {strip_metric(metric)!r}; the runs have: {', '.join(names) or 'no metrics at all'}"
        )
    return col


def check_metrics(runs: pd.DataFrame, names: Sequence[str] | str, what: str) -> list[str]:
    """Prefixes stripped, duplicates dropped (order kept), every name checked to be a metric column."""
    if isinstance(names, str):
        names = [names]
    cleaned = list(dict.fromkeys(strip_metric(n) for n in names))
    existing = available_metrics(runs)
    unknown = [n for n in cleaned if n not in existing]
    if unknown:
        raise MMTrackError(
            f"unknown {what} metric(s) {', '.join(unknown)}; metrics in these runs: "
            f"{', '.join(existing) if existing else '(none)'}"
        )
    return cleaned


def metric_values(runs: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Metric values as logged (fractions for accuracies) indexed by run id; NaN where a run lacks a metric."""
    values = runs[[METRIC_PREFIX + m for m in metrics]].apply(pd.to_numeric, errors="coerce").astype(float)
    values.columns = list(metrics)
    values.index = runs["run_id"].astype(str).to_numpy()
    return values


def scaled(values: pd.DataFrame) -> pd.DataFrame:
    """Accuracies (``acc``, ``acc/...``) in percentage points; other metrics in their own unit."""
    return values.mul(pd.Series({c: scale(c) for c in values.columns}), axis=1)


# ----------------------------------------------------------------------------------------------- param values


def normalise(value: Any) -> Any:
    """A param value in comparable form: numbers as int (when integral) or float, other values as stripped
    strings, missing as None. So "0.1" == "0.10" == 0.1 and "128" == 128.0 == 128."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, bool):
        return str(value)  # MLflow logs True as "True"
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _number(float(value))
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return text if math.isnan(number) else _number(number)


def _number(x: float) -> int | float:
    return int(x) if x.is_integer() and abs(x) < 2**53 else x


def sort_key(value: Any) -> tuple:
    """Numbers first, numerically; then strings."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0, str(value))


def norm_series(column: pd.Series) -> pd.Series:
    """A param column normalised, as an object Series (no dtype inference: 128 stays int, None stays None)."""
    return pd.Series([normalise(v) for v in column], index=column.index, dtype=object)


def param_names(runs: pd.DataFrame) -> list[str]:
    return [c.removeprefix(PARAM_PREFIX) for c in runs.columns if c.startswith(PARAM_PREFIX)]


# ----------------------------------------------------------------------------------------------- JSON-ready data


def jsonable(obj: Any) -> Any:
    """Plain Python data for strict JSON: numpy scalars and arrays as Python ones, NaN/inf as None, keys as str."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj
