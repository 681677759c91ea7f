"""Who pays for sparsity, from predicted labels on one test set: per-class accuracy and its change
against a control, how concentrated that change is (Gini), prediction disagreement, and transfer-PIEs
(Hooker et al. 2019, "What Do Compressed Deep Neural Networks Forget?": examples on which the modal
prediction of the sparse models differs from the modal prediction of the dense models).

    classes.per_class(pred, labels, num_classes)          # accuracy of each class
    classes.gini(np.abs(change))                           # 0: spread evenly, -> 1: on few classes
    classes.pies(sparse_preds, dense_preds)                # boolean mask over test examples
"""

from __future__ import annotations

import numpy as np


def per_class(pred, labels, num_classes: int) -> np.ndarray:
    """Accuracy of each class (NaN for a class without test examples)."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    hits = np.bincount(labels, weights=(pred == labels).astype(float), minlength=num_classes)
    n = np.bincount(labels, minlength=num_classes).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, hits / np.maximum(n, 1), np.nan)


def gini(values) -> float:
    """Gini coefficient of non-negative values (0: all equal; (n-1)/n: all on one); 0 for all zeros."""
    v = np.sort(np.asarray(values, dtype=float)[np.isfinite(values)])
    if (v < 0).any():
        raise ValueError("gini needs non-negative values (pass the absolute changes)")
    if len(v) == 0 or v.sum() == 0:
        return 0.0
    n = len(v)
    return float((2 * np.arange(1, n + 1) - n - 1).dot(v) / (n * v.sum()))


def disagreement(pred_a, pred_b) -> float:
    """Fraction of examples on which two models predict different labels."""
    return float(np.mean(np.asarray(pred_a) != np.asarray(pred_b)))


def _counts(preds, k: int) -> np.ndarray:
    """examples x labels: how many models (rows of `preds`) predict each label."""
    preds = np.asarray(preds)
    counts = np.zeros((preds.shape[1], k), dtype=int)
    for row in preds:
        counts[np.arange(preds.shape[1]), row] += 1
    return counts


def _modes(preds, k: int) -> np.ndarray:
    """examples x labels: whether each label is a modal label (ties: all of the tied labels)."""
    c = _counts(preds, k)
    return c == c.max(1, keepdims=True)


def modal(preds) -> np.ndarray:
    """The most frequent label per example over models (rows of `preds`, models x examples); a tie
    goes to the smallest label."""
    preds = np.asarray(preds)
    return _counts(preds, int(preds.max()) + 1).argmax(1)


def pies(sparse_preds, dense_preds) -> np.ndarray:
    """Transfer-PIEs: the examples on which the sparse models' modal label differs from the dense
    models' modal label (both: models x examples); with ties, on which no label is modal in both."""
    k = int(max(np.max(sparse_preds), np.max(dense_preds))) + 1
    return ~(_modes(sparse_preds, k) & _modes(dense_preds, k)).any(1)


def seed_baseline(dense_preds) -> float:
    """What the dense models' own seed noise gives: the mean over dense models j of the fraction of
    examples on which model j's label is not a modal label of the others (needs >= 2 models). One
    model against a modal label flips more often than a modal against a modal, so a PIE rate above
    it is conservative evidence of excess."""
    dense_preds = np.asarray(dense_preds)
    if len(dense_preds) < 2:
        return float("nan")
    k, n = int(dense_preds.max()) + 1, dense_preds.shape[1]
    out = [
        1 - _modes(np.delete(dense_preds, j, axis=0), k)[np.arange(n), dense_preds[j]].mean()
        for j in range(len(dense_preds))
    ]
    return float(np.mean(out))
