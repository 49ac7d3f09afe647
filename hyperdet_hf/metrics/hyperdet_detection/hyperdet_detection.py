"""Synthetic-image detection metrics as a local `evaluate` module (loads offline, no Hub access).

    import evaluate
    metric = evaluate.load("<path>/hyperdet_detection")          # or hyperdet_hf.evaluation.load_detection_metric()
    metric.compute(predictions=p_fake, references=labels)        # labels: 0 real, 1 fake

Returns the field's numbers (UnivFD / CNNDetection protocol):
- ``acc``: accuracy with ``P(fake) >= threshold`` (default 0.5) called fake; ``real_acc`` / ``fake_acc`` the same
  on real / fake images only; ``balanced_acc`` their mean;
- ``ap``: average precision, fake = positive, exactly as ``sklearn.metrics.average_precision_score``
  (step-wise, ties grouped); ``auc``: ROC AUC (Mann-Whitney, ties counted one half);
- ``acc_oracle``: the best accuracy over all thresholds on these scores, and ``threshold_oracle``, the highest
  threshold reaching it (``P(fake) >= threshold_oracle`` called fake) -- UnivFD's oracle threshold;
- ``n_real``, ``n_fake``.
Metrics that need both classes (AP, AUC, oracle) or one class (real/fake acc) are ``None`` when it is missing.

Self-contained (numpy only): `evaluate` copies this file into its modules cache and imports it there.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Accuracy at a threshold, real/fake accuracy, average precision, ROC AUC and oracle-threshold accuracy for real (0) vs fake (1) detection scores."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): P(fake) of each image (any monotone score works for AP/AUC/oracle).
    references (`list` of `int`): 0 for real, 1 for fake.
    threshold (`float`, default 0.5): a score >= threshold is called fake.
Returns:
    dict with acc, real_acc, fake_acc, balanced_acc, ap, auc, acc_oracle, threshold_oracle, n_real, n_fake.
"""
_CITATION = """@inproceedings{ojha2023univfd, title={Towards Universal Fake Image Detectors that Generalize Across Generative Models}, author={Ojha, Utkarsh and Li, Yuheng and Lee, Yong Jae}, booktitle={CVPR}, year={2023}}"""


def _binary_curve(y, s):
    """True/false positives at each distinct score, highest score first (sklearn's _binary_clf_curve)."""
    order = np.argsort(s, kind="mergesort")[::-1]
    s, y = s[order], y[order]
    idx = np.r_[np.where(np.diff(s))[0], y.size - 1]
    tps = np.cumsum(y, dtype=np.float64)[idx]
    fps = 1 + idx - tps
    return fps, tps, s[idx]


def average_precision(y, s):
    """``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds, as sklearn computes it."""
    fps, tps, _ = _binary_curve(y, s)
    ps = tps + fps
    precision = np.zeros_like(tps)
    np.divide(tps, ps, out=precision, where=ps != 0)
    recall = tps / tps[-1]
    precision = np.hstack((precision[::-1], 1))
    recall = np.hstack((recall[::-1], 0))
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def roc_auc(y, s):
    """P(score of a fake > score of a real) + 0.5 P(equal): the area under the ROC curve."""
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # average (mid) ranks of tied scores, 1-based
    ends = np.cumsum(counts)
    mid = ends - (counts - 1) / 2.0
    ranks = mid[inverse]
    n_pos = y.sum()
    n_neg = y.size - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def oracle_accuracy(y, s):
    """Best accuracy of ``s >= t`` over all thresholds, and the highest ``t`` that reaches it."""
    fps, tps, thresholds = _binary_curve(y, s)
    n = y.size
    n_neg = n - y.sum()
    acc = (tps + (n_neg - fps)) / n  # at threshold t_i: called fake iff s >= t_i
    all_real = n_neg / n
    best = int(np.argmax(acc))
    if all_real >= acc[best]:
        return float(all_real), float(np.nextafter(thresholds[0], np.inf))
    return float(acc[best]), float(thresholds[best])


def detection_metrics(predictions, references, threshold=0.5):
    s = np.asarray(predictions, dtype=np.float64).reshape(-1)
    y = np.asarray(references).astype(np.int64).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"predictions and references differ in length: {s.size} vs {y.size}")
    if np.isnan(s).any():
        raise ValueError("predictions contain NaN")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("references must be 0 (real) or 1 (fake)")
    n_fake = int(y.sum())
    n_real = int(y.size - n_fake)
    called_fake = s >= threshold
    out = {
        "acc": float(np.mean(called_fake == (y == 1))) if y.size else None,
        "real_acc": float(np.mean(~called_fake[y == 0])) if n_real else None,
        "fake_acc": float(np.mean(called_fake[y == 1])) if n_fake else None,
        "ap": None,
        "auc": None,
        "acc_oracle": None,
        "threshold_oracle": None,
        "n_real": n_real,
        "n_fake": n_fake,
    }
    out["balanced_acc"] = (out["real_acc"] + out["fake_acc"]) / 2 if n_real and n_fake else None
    if n_real and n_fake:
        out["ap"] = average_precision(y, s)
        out["auc"] = roc_auc(y, s)
        out["acc_oracle"], out["threshold_oracle"] = oracle_accuracy(y, s)
    return out


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class HyperdetDetection(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("int64")}),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.average_precision_score.html"],
        )

    def _compute(self, predictions, references, threshold=0.5):
        return detection_metrics(predictions, references, threshold)
