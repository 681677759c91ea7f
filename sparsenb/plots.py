"""Figures (seaborn/matplotlib); each function returns the matplotlib Figure and can save it."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def _sns():
    import seaborn  # imported when a figure needs it (a second of start-up for every notebook otherwise)

    return seaborn


# The paper's method order (its Table 1), then our crossed arm and the budget-matched controls: every
# legend follows it and each method keeps one colour in every figure, whatever subset is shown.
METHOD_ORDER = (
    "dense",
    "gmp",
    "woodfisher",
    "mfac",
    "acdc",
    "str",
    "rigl_erk_1x",
    "rigl_erk_5x",
    "lth_t",
    "structured",
    "gmp_scratch",
    "dense_2x",
    "dense_2x_scratch",
    "dense_5x",
)
_FIXED = {"dense": "#222222", "dense_2x": "#666666", "dense_2x_scratch": "#999999", "dense_5x": "#bbbbbb"}


def method_order(methods) -> list[str]:
    """`methods` in the paper's order (methods it does not know after, by name)."""
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(set(methods), key=lambda m: (rank.get(m, len(rank)), m))


def colors(methods=()) -> dict[str, str]:
    """method -> colour: dense and the controls in greys, the others from tab10 / tab20 by their place
    in METHOD_ORDER (registered methods it does not list after them) -- the same for any subset."""
    from matplotlib import colormaps

    from . import prune

    known = list(METHOD_ORDER) + [m for m in prune.METHODS if m not in METHOD_ORDER]
    known += sorted(set(methods) - set(known))
    hues = [colormaps["tab20"](j) for j in [*range(0, 20, 2), *range(1, 20, 2)]]  # tab10's, then their light tints
    out, k = {}, 0
    for m in known:
        if m in _FIXED:
            out[m] = _FIXED[m]
        else:
            r, g, b, _ = hues[k % len(hues)]
            out[m] = "#{:02x}{:02x}{:02x}".format(round(255 * r), round(255 * g), round(255 * b))
            k += 1
    return {m: out[m] for m in (methods if len(methods) else known)}


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
    _sns().barplot(x=counts.index, y=counts.values, ax=ax, color="tab:blue")
    ax.set_xlabel("class")
    ax.set_ylabel("images")
    if len(counts) > 30:
        ax.set_xticks(ax.get_xticks()[:: max(1, len(counts) // 20)])
    ax.set_title(title)
    return _save(fig, path)


def layer_sparsity(report: pd.DataFrame, path=None, title: str = ""):
    """Sparsity per layer (masks.report), the global value as a line."""
    layers = report[report.layer != "global"]
    fig, ax = plt.subplots(figsize=(max(5, len(layers) * 0.35), 3))
    _sns().barplot(data=layers, x="layer", y="sparsity", ax=ax, color="tab:blue")
    glob = report[report.layer == "global"]
    if len(glob):
        ax.axhline(float(glob.sparsity.iloc[0]), color="k", ls="--", lw=1, label="global")
        ax.legend(loc="lower right")
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    ax.set_title(title)
    return _save(fig, path)


def curve(rows: list[dict], path=None, title: str = "", metric: str = "accuracy"):
    """Test accuracy (and training loss) per epoch of one run."""
    df = pd.DataFrame(rows)  # plain matplotlib: one per run, and seaborn costs a second to import
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(df["epoch"], df["accuracy"], marker="o", label=f"test {metric}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.legend(loc="lower right")
    ax2 = ax.twinx()
    ax2.plot(df["epoch"], df["loss"], color="tab:red", label="train loss")
    ax2.set_ylabel("train loss", color="tab:red")
    ax.set_title(title)
    return _save(fig, path)


def pruned_filters(table: pd.DataFrame, path=None, title: str = "Fully pruned filters per layer"):
    """App. E: the fraction of fully pruned conv filters per layer, one line per method, one panel
    per sparsity."""
    layers = table[table.layer != "total"]
    sparsities = sorted(layers.sparsity.unique())
    fig, axes = plt.subplots(
        1, max(1, len(sparsities)), figsize=(4.5 * max(1, len(sparsities)), 3.2), sharey=True, squeeze=False
    )
    for ax, s in zip(axes[0], sparsities):
        sub = layers[layers.sparsity == s]
        _sns().lineplot(
            data=sub,
            x="layer",
            y="fraction",
            hue="method",
            hue_order=method_order(sub.method.unique()),
            palette=colors(list(sub.method.unique())),
            marker="o",
            ax=ax,
            sort=False,
        )
        ax.set_title(f"sparsity {s:.0%}")
        ax.tick_params(axis="x", rotation=90, labelsize=6)
        ax.set_ylabel("fully pruned filters")
    fig.suptitle(title)
    return _save(fig, path)


def speedup(df: pd.DataFrame, path=None, title: str = "Online linear finetuning: epoch time vs accuracy gap"):
    """Figure 4: average epoch time against the accuracy gap to dense, one point per method and
    engine (dense in PyTorch and in DeepSparse)."""
    d = df.copy()
    d["label"] = d.method + " (" + d.engine + ")"
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    _sns().scatterplot(
        data=d,
        x="accuracy_gap",
        y="epoch_seconds",
        hue="method",
        hue_order=method_order(d.method.unique()),
        palette=colors(list(d.method.unique())),
        style="engine",
        s=90,
        ax=ax,
    )
    for _, r in d.iterrows():
        ax.annotate(r.label, (r.accuracy_gap, r.epoch_seconds), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.axvline(0, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("accuracy gap to dense (best epoch)")
    ax.set_ylabel("average epoch time (s)")
    ax.set_title(title)
    return _save(fig, path)


def figure2(c: pd.DataFrame, alpha_summary: pd.DataFrame, sparsity: float = 0.8, path=None):
    """Figure 2: (top) accuracy per task of every method at `sparsity` and dense, per finetuning mode;
    (bottom) mean relative increase in error vs sparsity per method, standard-error bars."""
    fts = [f for f in ("linear", "full") if f in set(c.finetune)]
    fig, axes = plt.subplots(2, max(1, len(fts)), figsize=(7 * max(1, len(fts)), 7.5), squeeze=False)
    for j, ft in enumerate(fts):
        top = c[(c.finetune == ft) & ((c.sparsity == sparsity) | (c.method == "dense"))]
        order = method_order(top.method.unique())  # the paper's order in every panel
        _sns().barplot(
            data=top,
            x="dataset",
            y="mean",
            hue="method",
            hue_order=order,
            ax=axes[0, j],
            errorbar=None,
            palette=colors(list(c.method.unique())),
        )
        lo = max(0.0, top["mean"].min() - 5)
        axes[0, j].set_ylim(lo, min(100, top["mean"].max() + 2))
        axes[0, j].set_title(f"{ft} finetuning: accuracy at {sparsity:.0%} (dense: 0%)")
        axes[0, j].tick_params(axis="x", rotation=45, labelsize=7)
        axes[0, j].legend(fontsize=6, ncol=2)
        a = alpha_summary[alpha_summary.finetune == ft]
        ax = axes[1, j]
        pal = colors(list(c.method.unique()))
        for method in method_order(a.method.unique()):
            sub = a[a.method == method].sort_values("sparsity")
            ax.errorbar(
                sub.sparsity, sub.alpha_mean, yerr=sub.alpha_se, marker="o", capsize=3, label=method, color=pal[method]
            )
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("upstream sparsity")
        ax.set_ylabel("mean relative increase in error")
        ax.set_title(f"{ft} finetuning: error relative to dense (lower is better)")
        if ax.get_legend_handles_labels()[0]:  # a panel with nothing to plot gets no empty legend
            ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


def figure3(alphas: pd.DataFrame, difficulty: pd.DataFrame, kinds: dict, sparsities=(0.8, 0.9), path=None):
    """Figure 3: relative increase in error (linear finetuning) against task difficulty (dense full
    minus dense linear accuracy), one panel per sparsity; marker: general vs specialized task."""
    a = alphas[(alphas.finetune == "linear") & alphas.sparsity.isin(sparsities)]
    a = a.merge(difficulty, on=[k for k in ("arch", "dataset") if k in a.columns and k in difficulty.columns])
    a["kind"] = a.dataset.map(kinds)
    fig, axes = plt.subplots(1, len(sparsities), figsize=(5.5 * len(sparsities), 3.8), squeeze=False, sharey=True)
    for ax, s in zip(axes[0], sparsities):
        sub = a[a.sparsity == s]
        if len(sub):
            pal = colors(list(a.method.unique()))
            _sns().scatterplot(
                data=sub,
                x="difficulty",
                y="alpha",
                hue="method",
                hue_order=method_order(sub.method.unique()),
                style="kind",
                s=60,
                ax=ax,
                palette=pal,
            )
            for method, g in sub.groupby("method"):
                if len(g) > 2:
                    k, b = np.polyfit(g.difficulty, g.alpha, 1)
                    xs = np.linspace(g.difficulty.min(), g.difficulty.max(), 10)
                    ax.plot(xs, k * xs + b, lw=0.8, alpha=0.6, color=pal[method])
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("task difficulty: dense full - dense linear accuracy (points)")
        ax.set_ylabel("relative increase in error (linear)")
        ax.set_title(f"sparsity {s:.0%}")
        if ax.get_legend_handles_labels()[0]:  # a panel with nothing to plot gets no empty legend
            ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


def convergence(conv, opt: dict, path=None):
    """The dense-budget study: validation and test top-1 against the budget (log2 axis), the mean
    over seeds and each seed, runs without gradient clipping marked; the runs of recipe `opt` only."""
    import matplotlib.pyplot as plt

    base = conv[
        (conv.lr == opt["lr"]) & (conv.weight_decay == opt["weight_decay"]) & (conv.batch_size == opt["batch_size"])
    ]
    clipped, unclipped = base[base.grad_clip.notna()], base[base.grad_clip.isna()]
    g = clipped.groupby("epochs")
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for col, label in (("val_top1", "validation"), ("top1", "test")):
        m = g[col].mean() * 100
        ax.plot(m.index, m.values, "o-", label=f"{label} (mean over seeds)")
    ax.scatter(clipped.epochs, clipped.val_top1 * 100, s=10, color="gray", alpha=0.6, label="validation, each seed")
    if len(unclipped):
        ax.scatter(
            unclipped.epochs,
            unclipped.val_top1 * 100,
            marker="x",
            color="red",
            label="validation, no gradient clipping",
        )
    ticks = sorted(clipped.epochs.unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.set_xlabel("dense budget (epochs; one cosine run each)")
    ax.set_ylabel("upstream top-1 (%)")
    ax.set_title("mini upstream: dense top-1 against its budget", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


# --- 08_beyond_accuracy ------------------------------------------------------------------------


def reliability(runs: pd.DataFrame, path=None, title: str = "Reliability (15 equal-mass bins), pooled over tasks"):
    """One panel per finetuning mode: accuracy against confidence of the bins of every run
    (`beyond.study.load`, column `reliability`), a line per method (mean over its runs' bins in
    order) -- above the diagonal under-confident, below over-confident."""
    modes = [m for m in ("linear", "full") if (runs.finetune == m).any()]
    fig, axes = plt.subplots(1, max(1, len(modes)), figsize=(4 * max(1, len(modes)), 3.8), squeeze=False)
    col = colors(runs.method.unique())
    for ax, mode in zip(axes[0], modes):
        sub = runs[runs.finetune == mode]
        for m in method_order(sub.method):
            bins = pd.concat(list(sub[sub.method == m]["reliability"]), keys=range((sub.method == m).sum()))
            mean = bins.groupby(level=1)[["confidence", "accuracy"]].mean()
            ax.plot(mean.confidence, mean.accuracy, "o-", ms=3, color=col[m], label=m)
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{mode} finetuning", fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def per_class_drops(pc: pd.DataFrame, path=None, title: str = "Per-class accuracy change vs the dense control"):
    """Distribution of per-class accuracy change (sparse - control, points; one value per class,
    task and seed) per method and sparsity, one panel per finetuning mode."""
    modes = [m for m in ("linear", "full") if (pc.finetune == m).any()]
    fig, axes = plt.subplots(1, max(1, len(modes)), figsize=(5 * max(1, len(modes)), 3.6), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        sub = pc[pc.finetune == mode].assign(change=lambda t: 100 * t.change)
        sub = sub.assign(sparsity=sub.sparsity.map(lambda s: f"{s:.0%}"))
        order = method_order(sub.method)
        _sns().boxplot(
            data=sub, x="sparsity", y="change", hue="method", hue_order=order, palette=colors(order), ax=ax, fliersize=1
        )
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylabel("per-class change (points)")
        ax.set_title(f"{mode} finetuning", fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def robustness(rob: pd.DataFrame, path=None, title: str = "Robustness: corrupted / clean accuracy against sparsity"):
    """Mean relative accuracy under corruption (over corruptions, severities, tasks and seeds)
    against sparsity, one line per method (the controls at sparsity 0), one panel per severity."""
    sev = sorted(rob.severity.unique())
    fig, axes = plt.subplots(1, max(1, len(sev)), figsize=(3.6 * max(1, len(sev)), 3.4), squeeze=False, sharey=True)
    col = colors(rob.method.unique())
    for ax, s in zip(axes[0], sev):
        g = rob[rob.severity == s].groupby(["method", "sparsity"])["relative"].mean().reset_index()
        for m in method_order(g.method):
            r = g[g.method == m].sort_values("sparsity")
            ax.plot(100 * r.sparsity, r.relative, "o-", color=col[m], label=m)
        ax.set_xlabel("sparsity (%)")
        ax.set_title(f"severity {s}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("corrupted / clean accuracy")
    axes[0][-1].legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
