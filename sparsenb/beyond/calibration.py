"""Calibration of one run's class probabilities: expected calibration error (15 equal-mass bins and
the classic equal-width bins), negative log-likelihood, Brier score, reliability-diagram data, and
temperature scaling fitted on the validation split.

    calibration.metrics(probs, labels, n_bins=15)        # {"ece_mass", "ece_width", "nll", "brier", ...}
    t = calibration.fit_temperature(val_probs, val_labels)
    calibration.metrics(calibration.scale(test_probs, t), test_labels)

The equal-width ECE is torchmetrics' (`multiclass_calibration_error`, l1); NLL and Brier are
scikit-learn's (Brier: the sum over classes of squared errors, in [0, 2]). Equal-mass bins (the same
number of test examples in each, Nixon et al. 2019) are `reliability(..., scheme="mass")`; the ECE of
either scheme is the count-weighted mean |accuracy - confidence| over its bins.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SCHEMES = ("mass", "width")
EPS = 1e-12  # stored probabilities are float16: a class below its smallest number is 0


def normalise(probs) -> np.ndarray:
    """float64 probabilities whose rows sum to 1 (float16 storage rounds them)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, None)
    return p / p.sum(1, keepdims=True)


def reliability(probs, labels, n_bins: int = 15, scheme: str = "mass") -> pd.DataFrame:
    """One row per non-empty bin of top-label confidence: lower and upper confidence, count, mean
    confidence, accuracy, gap (accuracy - confidence). `scheme`: "mass" (equal counts, sorted by
    confidence, ties split by position) or "width" (equal-width bins of [0, 1]; a confidence on an
    edge goes to the upper bin, as torchmetrics bins it)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; valid: {', '.join(SCHEMES)}")
    p = normalise(probs)
    conf, correct = p.max(1), (p.argmax(1) == np.asarray(labels)).astype(float)
    if scheme == "mass":
        order = np.argsort(conf, kind="stable")
        groups = [g for g in np.array_split(order, min(n_bins, len(conf))) if len(g)]
    else:
        idx = np.clip(np.searchsorted(np.linspace(0, 1, n_bins + 1), conf, side="right") - 1, 0, n_bins - 1)
        groups = [np.flatnonzero(idx == b) for b in range(n_bins)]
        groups = [g for g in groups if len(g)]
    rows = [
        {
            "low": conf[g].min(),
            "high": conf[g].max(),
            "count": len(g),
            "confidence": conf[g].mean(),
            "accuracy": correct[g].mean(),
        }
        for g in groups
    ]
    out = pd.DataFrame(rows, columns=["low", "high", "count", "confidence", "accuracy"])
    out["gap"] = out["accuracy"] - out["confidence"]
    return out


def ece_of(bins: pd.DataFrame) -> float:
    """Count-weighted mean |accuracy - confidence| over the bins of `reliability`."""
    return float((bins["count"] * bins["gap"].abs()).sum() / bins["count"].sum())


def ece_width(probs, labels, n_bins: int = 15) -> float:
    """The classic ECE (equal-width bins, l1), computed by torchmetrics."""
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    p = normalise(probs)
    return float(
        multiclass_calibration_error(
            torch.from_numpy(p), torch.as_tensor(np.asarray(labels), dtype=torch.long), p.shape[1], n_bins, "l1"
        )
    )


def nll(probs, labels) -> float:
    from sklearn.metrics import log_loss

    p = normalise(probs)
    return float(log_loss(np.asarray(labels), np.clip(p, EPS, 1), labels=np.arange(p.shape[1])))


def brier(probs, labels) -> float:
    from sklearn.metrics import brier_score_loss

    p = normalise(probs)
    return float(brier_score_loss(np.asarray(labels), p, labels=np.arange(p.shape[1]), scale_by_half=False))


def metrics(probs, labels, n_bins: int = 15) -> dict:
    """Top-1 accuracy, mean confidence, both ECEs, NLL and Brier of one split's predictions."""
    p = normalise(probs)
    labels = np.asarray(labels)
    return {
        "top1": float((p.argmax(1) == labels).mean()),
        "confidence": float(p.max(1).mean()),
        "ece_mass": ece_of(reliability(p, labels, n_bins, "mass")),
        "ece_width": ece_width(p, labels, n_bins),
        "nll": nll(p, labels),
        "brier": brier(p, labels),
    }


def scale(probs, temperature: float) -> np.ndarray:
    """Probabilities with their logits divided by `temperature` (log p is the logits up to a
    constant per row, which softmax ignores)."""
    z = np.log(np.clip(normalise(probs), EPS, 1)) / temperature
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit_temperature(probs, labels, bounds=(0.05, 20.0)) -> float:
    """The temperature minimising the NLL of `probs` (the validation split), by scipy's bounded
    scalar minimiser on log T."""
    from scipy.optimize import minimize_scalar

    z = np.log(np.clip(normalise(probs), EPS, 1))
    y = np.asarray(labels)

    def loss(log_t):
        s = z / np.exp(log_t)
        s = s - s.max(1, keepdims=True)
        return float(-(s[np.arange(len(y)), y] - np.log(np.exp(s).sum(1))).mean())

    r = minimize_scalar(loss, bounds=np.log(bounds), method="bounded", options={"xatol": 1e-5})
    return float(np.exp(r.x))
