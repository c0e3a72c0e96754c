"""Prediction multiplicity: do near-equally accurate models give the same answers on the same examples?

From the per-example test predictions every run stores (Marx, Calmon & Ustun, "Predictive Multiplicity in
Classification", ICML 2020), for a set of models and a reference model h0 among them:

* **ambiguity** = share of test examples that *some* model of the set predicts differently from h0;
* **discrepancy** = the largest share of test examples on which *one* model of the set differs from h0;
* **contested rate** (reference-free) = share of test examples on which the models do not all agree.

Marx et al. define the set as every model within ε of the best loss; mmtrack's sets are the runs of an experiment,
of one configuration (seed-only multiplicity), or of a selection. The reference defaults to the default
configuration's first seed. Per group, the same three numbers are computed over the group's test examples only.
Pure numpy/pandas: predictions come in as {run id: predicted labels (n,)}, all of one test set in one order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mmtrack.errors import MMTrackError


@dataclass(frozen=True)
class Multiplicity:
    n_models: int
    n_examples: int
    reference: str | None  # run id of h0
    ambiguity: float | None  # None without a reference or with fewer than 2 models
    discrepancy: float | None
    contested: float | None

    def to_dict(self) -> dict:
        return {
            "n_models": self.n_models,
            "n_examples": self.n_examples,
            "reference": self.reference,
            "ambiguity": self.ambiguity,
            "discrepancy": self.discrepancy,
            "contested": self.contested,
        }


def stack(predictions: Mapping[str, np.ndarray], run_ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """(run ids, predictions matrix (models, examples)) for the runs that have predictions, in the given order."""
    ids = [r for r in (run_ids if run_ids is not None else list(predictions)) if r in predictions]
    if not ids:
        return [], np.zeros((0, 0), dtype=np.int64)
    lengths = {len(predictions[r]) for r in ids}
    if len(lengths) > 1:
        raise MMTrackError(
            f"stored predictions differ in length ({sorted(lengths)}): the runs were not evaluated on the same test set"
        )
    return ids, np.stack([np.asarray(predictions[r]) for r in ids])


def multiplicity(
    predictions: Mapping[str, np.ndarray],
    run_ids: Sequence[str] | None = None,
    reference: str | None = None,
    mask: np.ndarray | None = None,
) -> Multiplicity:
    """Ambiguity, discrepancy and contested rate of the models `run_ids` (default: all) against `reference` (a run
    with predictions, in the set or not, e.g. the default configuration outside a selection that dropped it; None:
    the reference-free contested rate only), over the examples in `mask`."""
    ids, preds = stack(predictions, run_ids)
    keep = None if mask is None else np.asarray(mask, dtype=bool)
    if keep is not None and len(ids):
        preds = preds[:, keep]
    n_models, n_examples = preds.shape if len(ids) else (0, 0)
    if n_models < 2 or n_examples == 0:
        return Multiplicity(n_models, n_examples, reference, None, None, None)
    contested = float((preds != preds[0]).any(axis=0).mean())
    if reference is None or reference not in predictions:
        return Multiplicity(n_models, n_examples, None, None, None, contested)
    ref = np.asarray(predictions[reference])  # compared with, whether or not it is one of the set
    differs = preds != (ref if keep is None else ref[keep])  # (models, examples)
    return Multiplicity(
        n_models, n_examples, reference, float(differs.any(axis=0).mean()), float(differs.mean(axis=1).max()), contested
    )


def vote_shares(
    predictions: Mapping[str, np.ndarray], run_ids: Sequence[str] | None = None, n_classes: int | None = None
) -> np.ndarray:
    """(examples, classes): the share of models voting for each class on each example."""
    ids, preds = stack(predictions, run_ids)
    if not ids:
        return np.zeros((0, 0))
    k = n_classes or int(preds.max()) + 1
    counts = np.zeros((preds.shape[1], k))
    for row in preds:
        counts[np.arange(len(row)), row] += 1
    return counts / len(ids)


def contested_examples(
    predictions: Mapping[str, np.ndarray], labels: np.ndarray, run_ids: Sequence[str] | None = None, top: int = 12
) -> list[dict]:
    """The `top` examples with the most divided votes: smallest share for the majority class first (ties: the
    lower share of correct votes, then the example index). Each: index, label, majority class and its share,
    share of correct votes, votes {class: share}."""
    shares = vote_shares(predictions, run_ids, n_classes=None if not len(labels) else int(max(labels.max() + 1, 1)))
    if not len(shares):
        return []
    if shares.shape[1] <= labels.max():
        shares = np.pad(shares, ((0, 0), (0, int(labels.max()) + 1 - shares.shape[1])))
    majority = shares.max(axis=1)
    correct = shares[np.arange(len(labels)), labels]
    order = np.lexsort((np.arange(len(labels)), correct, majority))
    out = []
    for i in order[:top]:
        if majority[i] >= 1.0:
            break  # unanimous from here on: not contested
        votes = {int(c): float(s) for c, s in enumerate(shares[i]) if s > 0}
        out.append(
            {
                "index": int(i),
                "label": int(labels[i]),
                "majority": int(shares[i].argmax()),
                "majority_share": float(majority[i]),
                "correct_share": float(correct[i]),
                "votes": votes,
            }
        )
    return out
