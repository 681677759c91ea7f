"""What the figures and tables promise a reader: units on the axes, intervals that say what they
are, one legend outside the panels in the paper's order, a categorical sparsity axis, every model
visible in the pruned-filter totals, tables rounded with "±" and bold defined, demo outputs marked;
and the two choices behind them: the speed-up's epoch chosen on validation, a sweep's one bar."""

import re

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

matplotlib.use("Agg")

from sparsenb import config, plots, progress, report, summary  # noqa: E402


def _cells() -> pd.DataFrame:
    """Two tasks, linear and full: dense at 0, two methods at 80/90%, structured at 50%, dense_5x at 0."""
    rows = []
    for ft in ("linear", "full"):
        for k, ds in enumerate(("cars", "pets")):
            rows.append((ft, ds, "dense", 0.0, 70.0 + k, 0.2, 3))
            rows.append((ft, ds, "dense_5x", 0.0, 71.0 + k, 0.3, 3))
            rows.append((ft, ds, "structured", 0.5, 60.0 + k, 0.5, 3))
            for s in (0.8, 0.9):
                rows.append((ft, ds, "gmp", s, 69.0 + k - 10 * (s - 0.8), 0.4, 3))
                rows.append((ft, ds, "acdc", s, 72.04 + k, 0.1, 3))
    c = pd.DataFrame(rows, columns=["finetune", "dataset", "method", "sparsity", "mean", "std", "seeds"])
    return c.assign(arch="resnet50")


def _legend_labels(fig) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def test_figure2_units_intervals_one_legend_outside_and_a_categorical_sparsity_axis():
    from sparsenb import summary

    c = _cells()
    fig = plots.figure2(c, summary.alpha_summary(c), 0.8)
    axes = fig.axes
    assert all(re.search(r"\((points|%)\)", ax.get_ylabel()) for ax in axes), [ax.get_ylabel() for ax in axes]
    assert all("95% CI over" in ax.get_title() for ax in axes)
    assert all(ax.get_legend() is None for ax in axes) and len(fig.legends) == 1
    assert _legend_labels(fig) == plots.method_order(set(c.method) - {"dense"})
    assert fig.legends[0].get_bbox_to_anchor().x0 >= fig.bbox.x1 - 1  # right of the panels
    top, bottom = axes[0], axes[2]
    lo, hi = top.get_ylim()
    assert lo < 0 < hi  # bars of the gap to dense start at 0: nothing truncated
    assert [t.get_text() for t in bottom.get_xticklabels()] == ["0%", "50%", "80%", "90%"]
    assert list(bottom.get_xticks()) == [0, 1, 2, 3]  # equally spaced whatever the values


def test_accuracy_vs_sparsity_has_one_panel_per_task_in_percent_with_dense_as_a_line():
    c = _cells()
    fig = plots.accuracy_vs_sparsity(c, "full", title="demo")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["cars", "pets"]
    assert panels[0].get_ylabel() == "accuracy (%)" and "demo" in fig._suptitle.get_text()
    assert "95% CI over seeds" in fig._suptitle.get_text()
    # dense is a horizontal line at its mean, not a point at a sparsity of its own
    dense = plots.colors(["dense"])["dense"]
    assert any(ln.get_color() == dense and set(ln.get_ydata()) == {70.0} for ln in panels[0].get_lines())
    assert _legend_labels(fig) == plots.method_order(c.method)


def test_ci95_is_the_t_interval_and_undefined_for_one_seed():
    half = plots.ci95([1.0, 1.0], [3, 1])
    assert half[0] == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5) and np.isnan(half[1])


def test_pruned_filters_shows_every_model_total_even_at_zero_and_no_lines_across_layers():
    rows = []
    for m, s, dead in (("dense", 0.0, 0), ("gmp", 0.9, 0), ("acdc", 0.9, 3), ("str", 0.8, 0)):
        for i in range(6):
            rows.append({"method": m, "sparsity": s, "layer": f"l{i}", "filters": 16, "pruned_filters": dead})
        rows.append({"method": m, "sparsity": s, "layer": "total", "filters": 96, "pruned_filters": 6 * dead})
    t = pd.DataFrame(rows).assign(fraction=lambda d: d.pruned_filters / d.filters)
    fig = plots.pruned_filters(t)
    totals, layers = fig.axes[0], fig.axes[1]
    labels = [t.get_text() for t in totals.get_yticklabels()]
    assert labels == ["dense 0%", "gmp 90%", "acdc 90%", "str 80%"]  # the paper's order
    assert [a.get_text() for a in totals.texts] == ["0.0", "0.0", "18.8", "0.0"]  # zeros are printed
    assert not layers.get_lines() and layers.images  # a heat map, not lines joining categorical layers


def test_tables_are_rounded_define_plus_minus_and_bold_the_best_of_each_column():
    from sparsenb import summary

    c = _cells()
    t1 = summary.table1(c)
    wide = summary.wide(t1).reset_index()
    md = report.markdown("table1_wide", wide, "a test source", report._bold("table1_wide", c))
    assert "± is the sample standard deviation over seeds" in md and "a test source" in md
    assert "**bold**: the best mean of its column" in md
    linear = [ln for ln in md.splitlines() if ln.startswith("| linear")]
    assert "**73.0 ± 0.1 (n=3)**" in linear[1]  # pets at 80%: the column's best (acdc)
    assert "| 71.0 ± 0.2 (n=3)" in linear[0]  # pets dense: 71.2 < 73.0 - 0.1, not marked
    long = report.markdown("table1", t1, "x")
    assert re.search(r"\| 72\.0 +\|", long) and "72.04" not in long  # rounded to 0.1 as the paper prints


def test_demo_summaries_say_demo_and_stay_apart_from_the_study(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSENB_OUTPUTS", str(tmp_path))
    demo = dict(config.load("mini")["demo"]["overrides"])
    sel = "results: profile mini, arch mini_resnet_s (3 runs)"
    tidy = summary.Tidy(pd.DataFrame(), [], sel, "results")
    other = {"upstream.D": 0.5}
    assert not report.is_demo(other) and "DEMO" not in report.source_title("results", tidy, other)
    assert report.folder("results", tidy, None) == tmp_path / "summary" / "results"
    assert (
        report.folder("results", tidy, other)
        == tmp_path / "cache" / "overrides" / "upstream.D=0.5" / "summary" / "results"
    )
    assert report.is_demo(demo) and report.source_title("results", tidy, demo).startswith("DEMO")
    assert report.folder("results", tidy, demo) == tmp_path / "cache" / "demo" / "summary"
    assert report.source_title("published", tidy, demo).startswith("the paper's released results")
    title = report.source_title("results", None, demo)
    assert "DEMO" in report.markdown("alpha", pd.DataFrame({"alpha_mean": [0.1234]}), title)


def test_online_linear_finetuning_reports_the_epoch_chosen_on_validation():
    from sparsenb.train import online_linear_finetune

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g)
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    hp = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "epochs": 4, "milestones": [3], "gamma": 0.1}
    res = online_linear_finetune(torch.nn.Identity(), batches, batches[:2], 8, 3, hp, val_loader=batches[2:])
    val = [r["val_accuracy"] for r in res["curve"]]
    assert res["reported_epoch"] == 1 + int(np.argmax(val))
    assert res["reported"] == res["curve"][res["reported_epoch"] - 1]["accuracy"]
    assert "val_accuracy" not in online_linear_finetune(torch.nn.Identity(), batches, batches, 8, 3, hp)["curve"][0]


def test_figure4_has_one_panel_per_task_in_points():
    rows = [
        (ds, m, e, sec, gap)
        for ds in ("pets", "flowers", "dtd")
        for m, e, sec, gap in [
            ("dense", "torch", 2.0, 0.0),
            ("dense", "deepsparse", 3.0, 0.0),
            ("gmp", "deepsparse", 1.0, -0.4),
        ]
    ]
    df = pd.DataFrame(rows, columns=["dataset", "method", "engine", "epoch_seconds", "accuracy_gap"])
    df["epoch_rule"] = df.dataset.map(lambda d: "last epoch" if d == "pets" else "chosen on validation")
    fig = plots.speedup(df)
    assert [ax.get_title() for ax in fig.axes] == ["pets", "flowers", "dtd"]
    assert all(len(ax.collections) == 3 and "points" in ax.get_xlabel() for ax in fig.axes)
    assert [ax.get_xlabel().split("; ")[1] for ax in fig.axes] == ["last epoch)"] + ["chosen on validation)"] * 2
    assert _legend_labels(fig)[:2] == ["dense", "gmp"]


def test_a_sweep_shows_runs_done_failed_and_an_eta(monkeypatch, capsys):
    monkeypatch.setenv("SPARSENB_PROGRESS", "0")  # not a terminal: one line per finished run
    with progress.Runs(3, "sweep toy") as shown:
        shown.done("a", "ok", 1.0)
        shown.done("b", "FAIL", 2.0, "ValueError: boom")
    out = capsys.readouterr().out.splitlines()
    assert re.search(r"\[1/3 done, 0 failed, ETA \d+ s\]\s+ok\s+a \(1 s\)", out[0])
    assert re.search(r"\[2/3 done, 1 failed, ETA \d+ s\]\s+FAIL b \(2 s\)  ValueError: boom", out[1])


def test_the_committed_summary_notebook_holds_the_published_table1_of_the_current_code():
    """notebooks/07_summary.ipynb is committed executed on the released results (`make paper-tables`
    rewrites it) and nbval compares its cells marked NBVAL_CHECK_OUTPUT (Table 1, the findings)
    under `make test`. Here, fast: both marks are there, exactly as nbval reads them, with outputs,
    and the Table 1 output is the one the current code writes."""
    import nbformat
    from nbval.plugin import find_comment_markers

    from sparsenb import summary
    from sparsenb.config import ROOT

    nb = nbformat.read(str(ROOT / "notebooks" / "07_summary.ipynb"), as_version=4)
    checked = [c for c in nb.cells if c.cell_type == "code" and dict(find_comment_markers(c.source)).get("check")]
    assert len(checked) == 2 and all(c.outputs for c in checked)
    assert "verdicts.findings(tidy.frame)" in checked[1].source
    tidy = summary.select(summary.load("published"), "published")
    c = summary.cells(tidy.frame)
    table = report.markdown(
        "table1_wide", summary.wide(summary.table1(c)).reset_index(), report.source_title("published", tidy),
        report._bold("table1_wide", c),
    )  # fmt: skip
    shown = [o for o in checked[0].outputs if "text/markdown" in o.get("data", {})]
    assert shown and shown[0]["data"]["text/markdown"] == table, "run `make paper-tables` and commit its outputs"


def test_the_convergence_figure_marks_the_studys_budget_and_keeps_its_legend_off_the_data():
    rows = [
        dict(epochs=e, seed=s, grad_clip=2.0, lr=0.1, weight_decay=5e-4, batch_size=128, val_top1=v, top1=v)
        for e, v in ((14, 0.72), (28, 0.78), (56, 0.82))
        for s in (0, 1)
    ]
    fig = plots.convergence(pd.DataFrame(rows), {"lr": 0.1, "weight_decay": 5e-4, "batch_size": 128}, D=14)
    ax = fig.axes[0]
    assert any(list(line.get_xdata()) == [14, 14] for line in ax.get_lines())
    legend = ax.get_legend()
    assert "D = 14" in " ".join(t.get_text() for t in legend.get_texts()) and legend.get_bbox_to_anchor().x0 > 0
    assert ax.get_ylabel() == "upstream top-1 (%)"


def test_robustness_figure_has_an_interval_per_method_and_no_hidden_points():
    rows = [
        dict(method=m, sparsity=sp, dataset=f"t{t}", upstream_seed=u, severity=sev, corruption=c,
             relative=0.5 + 0.1 * t - 0.05 * sev + 0.01 * u)
        for m, sp in (("dense", 0.0), ("dense_2x", 0.0), ("gmp", 0.9), ("acdc", 0.9))
        for t in range(3) for u in range(2) for sev in (1, 3) for c in ("noise", "blur")
    ]  # fmt: skip
    fig = plots.robustness(pd.DataFrame(rows))
    ax = fig.axes[0]
    assert len(ax.containers) == 4 and "95% interval" in fig._suptitle.get_text()
    xs = [c.lines[0].get_xdata()[0] for c in ax.containers]
    assert len(set(xs)) == 4  # dense and dense_2x, gmp and acdc: side by side, not on top
