"""Figures (seaborn/matplotlib); each function returns the matplotlib Figure and can save it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import files
from .prune import DENSE


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
        with files.atomic(path) as tmp:  # a committed figure: the same bytes, or refused (sparsenb.evidence)
            fig.savefig(tmp, dpi=120, bbox_inches="tight")
    return fig


def ci95(std, n):
    """Half-width of the 95% t interval of a mean from its sample std over `n` values (NaN for n < 2)."""
    from scipy import stats

    std, n = np.asarray(std, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(0.975, n - 1) * std / np.sqrt(n)
    return np.where(n >= 2, half, np.nan)


def _legend_outside(fig, methods, pal, title="method", **kw):
    """One legend for the whole figure, right of the panels, in the paper's method order."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=pal[m], marker=kw.get("marker", "s"), ls="", ms=7) for m in methods]
    fig.legend(handles, methods, title=title, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)


def _sparsity_axis(ax, levels):
    """A categorical sparsity axis: equal spacing whatever the values (0% controls, 50% structured)."""
    ax.set_xticks(range(len(levels)))
    ax.set_xticklabels([f"{s:.0%}" for s in levels])
    ax.set_xlim(-0.5, max(1, len(levels)) - 0.5)


def sample_grid(dataset, n: int = 32, cols: int = 8, seed: int = 0, path=None, title: str = ""):
    """A grid of `n` random images of a dataset of (PIL image, label) items, each titled by its
    class index (the mini tasks' class names are long generator parameters: `dataset.classes`)."""
    idx = np.random.default_rng(seed).choice(len(dataset), min(n, len(dataset)), replace=False)
    rows = int(np.ceil(len(idx) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, i in zip(np.atleast_1d(axes).ravel(), idx):
        img, label = dataset[int(i)]
        ax.imshow(np.asarray(img))
        ax.set_title(f"class {label}", fontsize=8)
    fig.suptitle(f"{title}\n(title: class index)" if title else "", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def class_histogram(dataset, path=None, title: str = ""):
    """Images per class (train imbalance is what makes mean per-class accuracy matter)."""
    counts = pd.Series(np.asarray(dataset.targets)).value_counts().sort_index()
    n = len(counts)
    fig, ax = plt.subplots(figsize=(min(14, max(5, n * 0.22)), 3))
    ax.bar(range(n), counts.values, color="tab:blue", width=0.8)
    step = max(1, int(np.ceil(n / 25)))
    ax.set_xticks(range(0, n, step))
    ax.set_xticklabels([str(c) for c in counts.index[::step]], fontsize=8)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_xlabel("class index")
    ax.set_ylabel("training images")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def layer_sparsity(report: pd.DataFrame, path=None, title: str = ""):
    """Sparsity per layer (masks.report) in %, the global value as a line."""
    layers = report[report.layer != "global"]
    fig, ax = plt.subplots(figsize=(max(5, len(layers) * 0.35), 3))
    ax.bar(range(len(layers)), 100 * layers.sparsity.to_numpy(), color="tab:blue")
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers.layer, rotation=90, fontsize=7)
    glob = report[report.layer == "global"]
    if len(glob):
        ax.axhline(100 * float(glob.sparsity.iloc[0]), color="k", ls="--", lw=1, label="global")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_ylim(0, 100)
    ax.set_ylabel("weights pruned (%)")
    ax.set_title(title)
    return _save(fig, path)


def curve(rows: list[dict], path=None, title: str = "", metric: str = "accuracy"):
    """Test (and validation) accuracy in % and the training loss per epoch of one run."""
    df = pd.DataFrame(rows)  # plain matplotlib: one per run, and seaborn costs a second to import
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(df["epoch"], 100 * df["accuracy"], marker="o", label=f"test {metric}")
    if "val_accuracy" in df and df["val_accuracy"].notna().any():
        ax.plot(df["epoch"], 100 * df["val_accuracy"], marker="s", label=f"validation {metric}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric} (%)")
    ax2 = ax.twinx()
    ax2.plot(df["epoch"], df["loss"], color="tab:red", label="train loss")
    ax2.set_ylabel("train loss", color="tab:red")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 0.95), frameon=False, fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def pruned_filters(table: pd.DataFrame, path=None, title: str = "Fully pruned conv filters (App. E)"):
    """App. E: one row per upstream model (method and sparsity, the paper's order). Left: the share
    of all its conv filters that are fully pruned, the value printed on every bar (0 too); right:
    the same per layer as a heat map, layers in forward order (their names in the CSV)."""
    totals = table[table.layer == "total"]
    rows = [(m, s) for m in method_order(totals.method) for s in sorted(totals[totals.method == m].sparsity.unique())]
    pal = colors([m for m, _ in rows])
    tot = totals.set_index(["method", "sparsity"]).fraction
    values = [100 * float(tot[r]) for r in rows]
    fig, (ax, hm) = plt.subplots(
        1, 2, figsize=(13, 0.32 * len(rows) + 1.8), sharey=True, gridspec_kw={"width_ratios": [1, 1.6]}
    )
    y = np.arange(len(rows))
    ax.barh(y, values, color=[pal[m] for m, _ in rows], height=0.7)
    for yy, v in zip(y, values):
        ax.annotate(f"{v:.1f}", (v, yy), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{m} {s:.0%}" for m, s in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, max(1.0, max(values, default=0) * 1.2))
    ax.set_xlabel("fully pruned filters, all conv layers (%)")
    ax.set_title("per model, in total")
    _filter_heatmap(hm, table[table.layer != "total"], rows, fig)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _filter_heatmap(ax, layers: pd.DataFrame, rows: list, fig):
    """Rows (method, sparsity), columns conv layers in forward order, colour: % of filters pruned."""
    names = list(dict.fromkeys(layers.layer))
    grid = np.full((len(rows), len(names)), np.nan)
    for i, (m, s) in enumerate(rows):
        sub = layers[(layers.method == m) & (layers.sparsity == s)].set_index("layer").fraction
        grid[i] = 100 * sub.reindex(names).to_numpy(dtype=float)
    top = max(1.0, float(np.nanmax(grid))) if np.isfinite(grid).any() else 1.0
    im = ax.imshow(grid, aspect="auto", cmap="magma_r", vmin=0, vmax=top, interpolation="nearest")
    step = max(1, len(names) // 12)
    ax.set_xticks(range(0, len(names), step))
    ax.set_xticklabels([str(j + 1) for j in range(0, len(names), step)], fontsize=8)
    ax.set_xlabel("conv layer (forward order; names in pruned_filters.csv)")
    ax.set_title("per layer")
    fig.colorbar(im, ax=ax, label="filters fully pruned (%)")


def speedup(df: pd.DataFrame, path=None, title: str = "Online linear finetuning: epoch time vs accuracy gap"):
    """Figure 4: average epoch time against the accuracy gap to dense (points; the epoch of each
    run chosen on validation where the task has a validation split, else the last, as the x label
    says from column `epoch_rule`), one point per method and engine, one panel per task."""
    d = df.assign(dataset=df["dataset"] if "dataset" in df else "")
    tasks = list(dict.fromkeys(d.dataset))
    pal = colors(list(d.method.unique()))
    marks = {e: m for e, m in zip(sorted(d.engine.unique()), "osD^v")}
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.8 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sub = d[d.dataset == task]
        for _, r in sub.iterrows():
            ax.scatter(r.accuracy_gap, r.epoch_seconds, s=70, color=pal[r.method], marker=marks[r.engine])
            ax.annotate(
                r.method, (r.accuracy_gap, r.epoch_seconds), fontsize=7, xytext=(4, 3), textcoords="offset points"
            )
        ax.axvline(0, color="gray", lw=0.8, ls=":")
        rule = ", ".join(sorted(set(sub.epoch_rule))) if "epoch_rule" in sub else ""
        ax.set_xlabel("accuracy − dense (points" + (f"; {rule})" if rule else ")"))
        ax.set_ylabel("average epoch time (s)")
        ax.set_ylim(0, None)
        ax.set_title(task or title, fontsize=10)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    methods = method_order(d.method.unique())
    handles = [Patch(color=pal[m]) for m in methods]
    handles += [Line2D([], [], color="k", marker=mk, ls="", fillstyle="none") for mk in marks.values()]
    fig.legend(handles, methods + [f"engine: {e}" for e in marks], loc="center left", bbox_to_anchor=(1.0, 0.5),
               frameon=False, fontsize=8)  # fmt: skip
    if tasks != [""]:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _gap_to_dense(c: pd.DataFrame, ft: str, sparsity: float) -> pd.DataFrame:
    """Per task and method at `sparsity`: accuracy minus dense (points) with the 95% interval of
    that difference over seeds (Welch's standard error, t with the smaller cell's seeds - 1)."""
    from scipy import stats

    d = c[(c.finetune == ft) & (c.method == DENSE)].set_index("dataset")
    s = c[(c.finetune == ft) & (c.sparsity == sparsity) & (c.method != DENSE)].copy()
    s = s[s.dataset.isin(d.index)]
    dm, ds, dn = (s.dataset.map(d[k]) for k in ("mean", "std", "seeds"))
    s["gap"] = s["mean"] - dm
    se = np.sqrt(s["std"] ** 2 / s["seeds"] + ds**2 / dn)
    dof = np.minimum(s["seeds"], dn) - 1
    s["half"] = np.where(dof >= 1, stats.t.ppf(0.975, dof.clip(lower=1)) * se, np.nan)
    return s


def figure2(c: pd.DataFrame, alpha_summary: pd.DataFrame, sparsity: float = 0.8, path=None, title: str = ""):
    """Figure 2. Top: per task, each method's accuracy at `sparsity` minus dense (points), 95%
    intervals over seeds. Bottom: relative increase in error vs dense (%, mean over tasks) against
    sparsity on a categorical axis, 95% intervals over tasks. One legend, outside the panels."""
    fts = [f for f in ("linear", "full") if f in set(c.finetune)]
    fig, axes = plt.subplots(2, max(1, len(fts)), figsize=(7.5 * max(1, len(fts)), 8), squeeze=False)
    pal = colors(list(c.method.unique()))
    shown = set()
    for j, ft in enumerate(fts):
        top = _gap_to_dense(c, ft, sparsity)
        shown |= set(top.method)
        ax = axes[0, j]
        tasks = sorted(top.dataset.unique())
        order = method_order(top.method)
        w = 0.8 / max(1, len(order))
        for k, m in enumerate(order):
            g = top[top.method == m].set_index("dataset").reindex(tasks)
            x = np.arange(len(tasks)) + (k - (len(order) - 1) / 2) * w
            ax.bar(x, g.gap, width=w, color=pal[m], yerr=g.half, error_kw={"lw": 0.8, "capsize": 1.5})
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(tasks)))
        ax.set_xticklabels(tasks, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"accuracy − dense at {sparsity:.0%} (points)")
        ax.set_title(
            f"{ft} finetuning: {sparsity:.0%} sparse vs dense, per task"
            "\n(error bars: 95% CI over seeds; none for one seed)",
            fontsize=10,
        )
        a = alpha_summary[alpha_summary.finetune == ft]
        shown |= set(a.method)
        _alpha_panel(axes[1, j], a, pal, f"{ft} finetuning: error relative to dense (lower is better)")
    _legend_outside(fig, method_order(shown), pal)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _alpha_panel(ax, a: pd.DataFrame, pal: dict, title: str):
    """Mean relative increase in error (%) per method against a categorical sparsity axis, 95% t
    intervals over tasks; methods dodged around each level."""
    levels = sorted(a.sparsity.unique())
    order = method_order(a.method)
    for k, m in enumerate(order):
        sub = a[a.method == m].sort_values("sparsity")
        x = np.array([levels.index(s) for s in sub.sparsity]) + (k - (len(order) - 1) / 2) * 0.04
        half = ci95(sub.alpha_se * np.sqrt(sub.tasks), sub.tasks)
        ax.errorbar(x, 100 * sub.alpha_mean, yerr=100 * half, marker="o", capsize=3, color=pal[m], lw=1.2, ms=5)
    ax.axhline(0, color="k", lw=0.8)
    _sparsity_axis(ax, levels)
    ax.set_xlabel("upstream sparsity (categorical axis)")
    ax.set_ylabel("relative increase in error vs dense (%)")
    ax.set_title(f"{title}\n(mean over tasks, 95% CI over tasks)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def accuracy_vs_sparsity(c: pd.DataFrame, finetune: str, path=None, title: str = "", cols: int = 4):
    """One panel per task: accuracy (%) of every method against sparsity (categorical axis), 95%
    t intervals over seeds; dense as a black line with its interval as a band, the budget controls
    at 0% as points at 0%."""
    d = c[c.finetune == finetune]
    tasks = sorted(d.dataset.unique())
    levels = sorted(d[d.method != DENSE].sparsity.unique())
    pal = colors(list(d.method.unique()))
    order = method_order(d.method)
    rows = int(np.ceil(len(tasks) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.ravel()[len(tasks) :]:
        ax.axis("off")
    for ax, task in zip(axes.ravel(), tasks):
        t = d[d.dataset == task]
        for k, m in enumerate(order):
            sub = t[t.method == m].sort_values("sparsity")
            if m == DENSE:
                mu, half = float(sub["mean"].iloc[0]), float(ci95(sub["std"], sub["seeds"])[0])
                ax.axhline(mu, color=pal[m], lw=1)
                if np.isfinite(half):
                    ax.axhspan(mu - half, mu + half, color=pal[m], alpha=0.12, lw=0)
                continue
            x = np.array([levels.index(s) for s in sub.sparsity]) + (k - (len(order) - 1) / 2) * 0.04
            ax.errorbar(x, sub["mean"], yerr=ci95(sub["std"], sub["seeds"]), marker="o", ms=3.5, lw=1,
                        capsize=2, color=pal[m])  # fmt: skip
        _sparsity_axis(ax, levels)
        ax.set_title(task, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    for ax in axes[-1, :]:
        ax.set_xlabel("upstream sparsity")
    _legend_outside(fig, order, pal)
    fig.suptitle(
        (title + "\n" if title else "")
        + f"{finetune} finetuning: accuracy per task (mean over seeds, 95% CI over seeds; dense: line and band)"
    )
    fig.tight_layout()
    return _save(fig, path)


def figure3(alphas: pd.DataFrame, difficulty: pd.DataFrame, kinds: dict, sparsities=(0.8, 0.9), path=None, title=""):
    """Figure 3: relative increase in error (linear finetuning, %) against task difficulty (dense
    full minus dense linear accuracy), one panel per sparsity; marker: general vs specialized task;
    a least-squares line per method with more than two tasks."""
    a = alphas[(alphas.finetune == "linear") & alphas.sparsity.isin(sparsities)]
    a = a.merge(difficulty, on=[k for k in ("arch", "dataset") if k in a.columns and k in difficulty.columns])
    a["kind"] = a.dataset.map(kinds).fillna("task")
    pal = colors(list(a.method.unique()))
    marks = {k: m for k, m in zip(sorted(a.kind.unique()), "o^sD")}
    fig, axes = plt.subplots(1, len(sparsities), figsize=(5.5 * len(sparsities), 3.9), squeeze=False, sharey=True)
    for ax, s in zip(axes[0], sparsities):
        sub = a[a.sparsity == s]
        for (method, kind), g in sub.groupby(["method", "kind"]):
            ax.scatter(g.difficulty, 100 * g.alpha, color=pal[method], marker=marks[kind], s=35)
        for method, g in sub.groupby("method"):
            if len(g) > 2:
                k, b = np.polyfit(g.difficulty, 100 * g.alpha, 1)
                xs = np.linspace(g.difficulty.min(), g.difficulty.max(), 10)
                ax.plot(xs, k * xs + b, lw=0.9, alpha=0.7, color=pal[method])
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("task difficulty: dense full − dense linear (points)")
        ax.set_title(f"sparsity {s:.0%}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("relative increase in error, linear (%)")
    from matplotlib.lines import Line2D

    methods = method_order(a.method.unique())
    handles = [Line2D([], [], color=pal[m], marker="s", ls="") for m in methods]
    handles += [Line2D([], [], color="k", marker=mk, ls="", fillstyle="none") for mk in marks.values()]
    fig.legend(handles, methods + [f"task: {k}" for k in marks], loc="center left", bbox_to_anchor=(1.0, 0.5),
               frameon=False, fontsize=8)  # fmt: skip
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def convergence(conv, opt: dict, path=None, D: float | None = None):
    """The dense-budget study: validation and test top-1 against the budget (log2 axis), the mean
    over seeds and each seed, runs without gradient clipping marked; the runs of recipe `opt` only;
    `D`, the budget the mini study uses, marked."""
    import matplotlib.pyplot as plt

    base = conv[
        (conv.lr == opt["lr"]) & (conv.weight_decay == opt["weight_decay"]) & (conv.batch_size == opt["batch_size"])
    ]
    clipped, unclipped = base[base.grad_clip.notna()], base[base.grad_clip.isna()]
    g = clipped.groupby("epochs")
    fig, ax = plt.subplots(figsize=(8.5, 3.8))
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
    if D is not None:
        ax.axvline(D, color="black", lw=0.8, ls="--", label=f"D = {D:g}, the study's budget (chosen by compute)")
    ax.set_title("mini upstream: dense top-1 against its budget", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
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
    _legend_outside(fig, method_order(runs.method), col, marker="o")
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
        if ax.get_legend():
            ax.get_legend().remove()
    _legend_outside(fig, method_order(pc.method), colors(method_order(pc.method)))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def robustness(rob: pd.DataFrame, path=None, title: str = "Robustness: corrupted / clean accuracy against sparsity"):
    """Relative accuracy under corruption (corrupted / clean, mean over corruptions) against sparsity,
    one colour per method (the controls at sparsity 0, each method's points nudged sideways so that
    none hides another), one panel per severity; bars: 95% interval over tasks x upstream seeds
    (`stats.crossed`)."""
    from . import stats

    sev = sorted(rob.severity.unique())
    fig, axes = plt.subplots(1, max(1, len(sev)), figsize=(3.6 * max(1, len(sev)), 3.4), squeeze=False, sharey=True)
    col = colors(rob.method.unique())
    order = method_order(rob.method.unique())
    for ax, s in zip(axes[0], sev):
        unit = rob[rob.severity == s].groupby(["method", "sparsity", "dataset", "upstream_seed"]).relative.mean()
        for i, m in enumerate(order):
            pts = [(sp, stats.crossed(u.droplevel([0, 1]))) for (mm, sp), u in unit.groupby(level=[0, 1]) if mm == m]
            x = [100 * sp + 1.5 * (i - (len(order) - 1) / 2) for sp, _ in pts]
            y = [e.mean for _, e in pts]
            err = [[e.mean - e.low for _, e in pts], [e.high - e.mean for _, e in pts]]
            ax.errorbar(x, y, yerr=err, fmt="o-", color=col[m], capsize=2, ms=5, label=m)
        ax.set_xlabel("sparsity (%)")
        ax.set_title(f"severity {s}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("corrupted / clean accuracy")
    _legend_outside(fig, order, col, marker="o")
    fig.suptitle(f"{title}\n(bars: 95% interval over tasks x upstream seeds)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def budget_curve(b: pd.DataFrame, path=None, title: str = ""):
    """The gain in transfer accuracy (points) of the dense-like models over dense at D against their
    upstream budget (epochs from random weights, log axis), one panel per finetuning mode; 95%
    intervals of the paired gain over tasks x upstream seeds (`summary.budget_curve`). Models at one
    budget sit side by side."""
    from . import prune

    modes = [ft for ft in ("linear", "full") if (b.finetune == ft).any()]
    pal = colors(list(b.method.unique()))
    fig, axes = plt.subplots(1, len(modes), figsize=(4.2 * len(modes), 3.4), squeeze=False)
    for ax, ft in zip(axes[0], modes):
        t = b[b.finetune == ft].assign(gain=lambda x: x.gain.where(x.method != prune.DENSE, 0.0))
        from_random = [m for m in t.method if not prune.METHODS[m].from_dense]  # the continuation is off the curve
        scratch = t[t.method.isin(from_random)].sort_values("epochs")
        ax.plot(scratch.epochs, scratch.gain, color="#888888", lw=1, zorder=1)
        ax.axhline(0, color="black", lw=0.8)
        for m in method_order(t.method):
            r = t[t.method == m].iloc[0]
            same = list(method_order(t[t.epochs == r.epochs].method))
            x = r.epochs * 1.06 ** (same.index(m) - (len(same) - 1) / 2)  # side by side at one budget
            err = None if pd.isna(r.gain_low) else [[r.gain - r.gain_low], [r.gain_high - r.gain]]
            ax.errorbar(x, r.gain, yerr=err, marker="o", capsize=3, color=pal[m], label=m, zorder=2)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(t.epochs.unique()), [f"{e:g}" for e in sorted(t.epochs.unique())])
        ax.minorticks_off()
        ax.set_xlabel("upstream budget (epochs from random weights)")
        ax.set_title(f"{ft} finetuning", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("gain over dense at D (points)")
    _legend_outside(fig, method_order(b.method), pal)
    fig.suptitle(
        (title + "\n" if title else "") + "budget -> transfer: mean over tasks x upstream seeds of the paired gain, "
        "95% CI over both"
    )
    fig.tight_layout()
    return _save(fig, path)
