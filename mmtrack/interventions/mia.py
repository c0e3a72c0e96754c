"""`mia[:rule_based|black_box]`: privacy risk, ART's membership inference attacks (accuracy, advantage, AUC)."""

from __future__ import annotations

import numpy as np
import torch

from mmtrack.interventions.evaluator import Evaluator, _fixed_subset
from mmtrack.models import predict_logits


def mia(ev: Evaluator, attack: str | None):
    from sklearn.metrics import roc_auc_score

    train, test = ev.data.train, ev.data.test
    k = min(ev.s.mia_examples, len(train), len(test))
    mi = _fixed_subset(len(train), k, ev.s.subset_seed + 1)
    ni = _fixed_subset(len(test), k, ev.s.subset_seed + 2)
    x_in, y_in = train.images[mi], train.labels[mi]
    x_out, y_out = test.images[ni], test.labels[ni]
    metrics, counts = {}, {}

    def record(name, inferred, truth, scores=None):
        tpr, fpr = inferred[truth == 1].mean(), inferred[truth == 0].mean()
        metrics[f"mia/{name}/accuracy"] = float((inferred == truth).mean())
        metrics[f"mia/{name}/advantage"] = float(tpr - fpr)
        if scores is not None:
            metrics[f"mia/{name}/auc"] = float(roc_auc_score(truth, scores))
        for key in list(metrics):
            if key.startswith(f"mia/{name}/"):
                counts[key] = len(truth)

    if attack in (None, "rule_based"):
        from art.attacks.inference.membership_inference import MembershipInferenceBlackBoxRuleBased

        x = torch.cat([x_in, x_out]).float().div(255).numpy()
        y = torch.cat([y_in, y_out]).numpy()
        truth = np.r_[np.ones(k), np.zeros(k)]
        inferred = MembershipInferenceBlackBoxRuleBased(ev.art_classifier()).infer(x, y).ravel()
        record("rule_based", inferred, truth)
    if attack in (None, "black_box"):
        from art.attacks.inference.membership_inference import MembershipInferenceBlackBox

        p_in = torch.softmax(predict_logits(ev.model, x_in, ev.s.batch_size), 1).numpy()
        p_out = torch.softmax(predict_logits(ev.model, x_out, ev.s.batch_size), 1).numpy()
        h = k // 2  # attack model trained on the first half, scored on the second
        mia = MembershipInferenceBlackBox(
            ev.art_classifier(), input_type="prediction", attack_model_type=ev.s.mia_attack_model
        )
        np.random.seed(ev.s.subset_seed)
        mia.fit(y=y_in[:h].numpy(), test_y=y_out[:h].numpy(), pred=p_in[:h], test_pred=p_out[:h])
        y_eval = np.r_[y_in[h:].numpy(), y_out[h:].numpy()]
        p_eval = np.r_[p_in[h:], p_out[h:]]
        truth = np.r_[np.ones(k - h), np.zeros(k - h)]
        proba = mia.infer(None, y_eval, pred=p_eval, probabilities=True)
        proba = np.asarray(proba)
        score = proba[:, 1] if proba.ndim == 2 and proba.shape[1] == 2 else proba.ravel()
        record("black_box", (score >= 0.5).astype(float), truth, score)
    return metrics, counts
