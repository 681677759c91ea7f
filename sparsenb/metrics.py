"""Accuracy as Table 2 scores each dataset, and the paper's relative increase in error.

metrics.score(y_true, y_pred, "mean_per_class")
metrics.relative_error_increase(acc_sparse, acc_dense)       # alpha per task
metrics.alpha_summary(df)                                    # mean and standard error over tasks
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .prune import DENSE

METRICS = ("top1", "mean_per_class")


def top1(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if len(y_true) else float("nan")


def mean_per_class(y_true, y_pred) -> float:
    """The mean over classes present in y_true of each class's recall (= balanced accuracy)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = np.unique(y_true)
    return float(np.mean([(y_pred[y_true == c] == c).mean() for c in classes])) if len(classes) else float("nan")


def score(y_true, y_pred, metric: str) -> float:
    if metric == "top1":
        return top1(y_true, y_pred)
    if metric == "mean_per_class":
        return mean_per_class(y_true, y_pred)
    raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")


def real_accuracy(y_pred, real: list[list[int]]) -> float:
    """ImageNet ReaL accuracy: a prediction is correct when it is in the image's set of reassessed
    labels; images whose set is empty are excluded."""
    hits = [int(p) in set(labels) for p, labels in zip(np.asarray(y_pred), real) if len(labels)]
    return float(np.mean(hits)) if hits else float("nan")


def relative_error_increase(acc_sparse, acc_dense):
    """alpha = (err_sparse - err_dense) / err_dense with err = 1 - accuracy (accuracies in [0, 1]).
    Negative: the sparse model makes fewer errors than the dense one."""
    err_s = 1.0 - np.asarray(acc_sparse, dtype=float)
    err_d = 1.0 - np.asarray(acc_dense, dtype=float)
    return (err_s - err_d) / err_d


def alpha_table(df: pd.DataFrame, by=("finetune", "method", "sparsity")) -> pd.DataFrame:
    """Per task alpha of every sparse row against the dense row of the same finetune (and arch).

    `df` has columns dataset, method, sparsity, accuracy (the mean over seeds per cell), finetune;
    the dense rows have method 'dense' (prune.DENSE). Returns the sparse rows with a column alpha."""
    keys = [k for k in ("finetune", "arch") if k in df.columns]
    dense = df[df.method == DENSE].groupby(keys + ["dataset"], as_index=False)["accuracy"].mean()
    dense = dense.rename(columns={"accuracy": "dense_accuracy"})
    sparse = df[df.method != DENSE].merge(dense, on=keys + ["dataset"], how="inner")
    sparse["alpha"] = relative_error_increase(sparse.accuracy, sparse.dense_accuracy)
    return sparse


def alpha_summary(alphas: pd.DataFrame, by=("finetune", "method", "sparsity")) -> pd.DataFrame:
    """Mean alpha over tasks with its standard error (std / sqrt(n_tasks)), per group."""
    by = [b for b in by if b in alphas.columns]
    g = alphas.groupby(by)["alpha"]
    out = g.agg(alpha_mean="mean", alpha_std="std", tasks="count").reset_index()
    out["alpha_se"] = out.alpha_std / np.sqrt(out.tasks)
    return out.drop(columns="alpha_std")
