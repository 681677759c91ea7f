"""Figures (seaborn/matplotlib); each function returns the matplotlib Figure and can save it."""
from __future__ import annotations

from pathlib import Path


import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


def _save(fig, path):
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def sample_grid(dataset, n: int = 32, cols: int = 8, seed: int = 0, path=None, title: str = ""):
    """A grid of `n` random images of a dataset of (PIL image, label) items, labelled by class."""
    idx = np.random.default_rng(seed).choice(len(dataset), min(n, len(dataset)), replace=False)
    rows = int(np.ceil(len(idx) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.45))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, i in zip(np.atleast_1d(axes).ravel(), idx):
        img, label = dataset[int(i)]
        ax.imshow(np.asarray(img))
        name = dataset.classes[label] if hasattr(dataset, "classes") else str(label)
        ax.set_title(f"{label}: {name[:14]}", fontsize=6)
    fig.suptitle(title)
    return _save(fig, path)


def class_histogram(dataset, path=None, title: str = ""):
    """Images per class (train imbalance is what makes mean per-class accuracy matter)."""
    counts = pd.Series(np.asarray(dataset.targets)).value_counts().sort_index()
    fig, ax = plt.subplots(figsize=(max(4, len(counts) * 0.12), 2.8))
    sns.barplot(x=counts.index, y=counts.values, ax=ax, color="tab:blue")
    ax.set_xlabel("class")
    ax.set_ylabel("images")
    if len(counts) > 30:
        ax.set_xticks(ax.get_xticks()[:: max(1, len(counts) // 20)])
    ax.set_title(title)
    return _save(fig, path)
