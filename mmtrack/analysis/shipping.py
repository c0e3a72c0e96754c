"""Which model do I ship? Single models, ensembles and selective ensembles side by side, per group, from their
stored predictions on one population (the group evaluation set): how accurate each kind is, how often it
abstains, how accurate it is where it answers, and how much ambiguity remains among the models of that kind.

Ambiguity (Marx, Calmon & Ustun 2020) is the share of examples on which two models of the kind give different
answers; a selective ensemble's abstentions are not answers, so two selective ensembles disagree on an example
only where both answer, differently (the inconsistency Black et al. 2022 bound). A pure function of the
predictions frames (`index`, `label`, `pred`, `group/<attribute>`): no torch, no MLflow."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

COLUMNS = ("kind", "group", "models", "examples", "acc", "abstain", "answered_acc", "ambiguity")


def _stack(preds: Mapping[str, pd.DataFrame]) -> tuple[np.ndarray, pd.DataFrame]:
    """(models, examples) predictions aligned on `index`, and the first frame (labels, groups) in that order."""
    frames = [df.sort_values("index").reset_index(drop=True) for df in preds.values()]
    base = frames[0]
    for df in frames[1:]:
        if len(df) != len(base) or (df["index"].to_numpy() != base["index"].to_numpy()).any():
            raise ValueError("predictions of different examples cannot be compared")
    return np.stack([df["pred"].to_numpy(np.int64) for df in frames]), base


def _row(kind: str, group: str, pred: np.ndarray, labels: np.ndarray, abstain: int | None) -> dict:
    answered = pred != abstain if abstain is not None else np.ones_like(pred, dtype=bool)
    correct = pred == labels
    n_answered = answered.sum(axis=1)
    per_model = np.where(n_answered > 0, (correct & answered).sum(axis=1) / np.maximum(n_answered, 1), np.nan)
    both = answered[:, None, :] & answered[None, :, :]
    differ = (pred[:, None, :] != pred[None, :, :]) & both
    ambiguous = differ.any(axis=(0, 1)) if len(pred) > 1 else np.zeros(pred.shape[1], dtype=bool)
    return {
        "kind": kind,
        "group": group,
        "models": int(pred.shape[0]),
        "examples": int(pred.shape[1]),
        "acc": float(correct.mean()) if pred.size else np.nan,
        "abstain": float(1 - answered.mean()) if pred.size else np.nan,
        "answered_acc": float(np.nanmean(per_model)) if np.isfinite(per_model).any() else np.nan,
        "ambiguity": float(ambiguous.mean()) if pred.size and len(pred) > 1 else np.nan,
    }


def ship_table(kinds: Mapping[str, Mapping[str, pd.DataFrame]], abstain: Mapping[str, int | None]) -> pd.DataFrame:
    """One row per kind (in the order given) and group ("all", then `attribute=value` per group column of the
    predictions): models, examples, mean accuracy (abstentions count as errors), mean abstention rate, mean
    accuracy on the answered examples, and ambiguity among the kind's models. `abstain[kind]` is the class a
    kind's predictions use for "abstained" (None: it never abstains). Kinds without predictions are left out."""
    rows = []
    for kind, preds in kinds.items():
        if not preds:
            continue
        pred, base = _stack(preds)
        labels = base["label"].to_numpy(np.int64)
        rows.append(_row(kind, "all", pred, labels, abstain.get(kind)))
        for col in [c for c in base.columns if c.startswith("group/")]:
            values = base[col]
            for value in values.cat.categories if hasattr(values, "cat") else sorted(values.dropna().unique()):
                mask = (values == value).to_numpy()
                if mask.any():
                    group = f"{col.removeprefix('group/')}={value}"
                    rows.append(_row(kind, group, pred[:, mask], labels[mask], abstain.get(kind)))
    return pd.DataFrame(rows, columns=list(COLUMNS))
