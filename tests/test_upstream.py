"""The mini upstream reference set: recipes as budgets of D, a manifest that vouches for every
checkpoint (sha256 + recipe), compact storage, and a rebuild that matches its entry."""

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from sparsenb import calibration, checkpoints, config, models, prune, train, upstream, weights


def _tiny(tmp_path, **extra):
    over = {
        "data_root": str(tmp_path / "data"),
        "checkpoint_root": str(tmp_path / "ckpt"),
        "mini_data.upstream.train_per_class": 2,
        "mini_data.upstream.val_per_class": 1,
        "mini_data.upstream.test_per_class": 1,
        "upstream.D": 0.5,
        "upstream.optimizer.batch_size": 64,
        "upstream.seeds": [0, 1],
        "upstream.methods.lth_t.round_budget": 0.5,
        "sparsities": [0.8, 0.9],
    }
    over.update(extra)
    return config.load("mini", over)


def test_budgets_are_the_papers_ratios():
    cfg = config.load("mini", {"upstream.D": 10})
    assert upstream.budget("dense", cfg) == (10, 10)
    assert upstream.budget("dense_5x", cfg) == (50, 50)
    assert upstream.budget("dense_2x_scratch", cfg) == (20, 20)
    for m in ("acdc", "str", "rigl_erk_1x", "gmp_scratch"):
        assert upstream.budget(m, cfg) == (10, 10)  # D from scratch
    for m in ("gmp", "woodfisher", "structured", "dense_2x"):
        assert upstream.budget(m, cfg) == (10, 20)  # D more from the dense model
    assert upstream.budget("rigl_erk_5x", cfg) == (50, 50)
    assert upstream.budget("lth_t", cfg)[0] == 0  # masks on dense weights, no retraining


def test_every_sparse_method_has_its_budget_matched_control():
    """The control is the same run at target 0: same start (from dense or not), same budget, same
    optimizer and schedule -- for every sparse method of the registry."""
    cfg = config.load("mini")
    for m in cfg.upstream["methods"]:
        c = prune.control_of(m)
        if not prune.is_sparse(m):
            assert c is None and prune.family(m) in ("dense", "control"), m
            continue
        assert c in cfg.upstream["methods"] and not prune.is_sparse(c), (m, c)
        if prune.METHODS[m].dense_state:  # LTH-T keeps the dense weights: dense itself is its control
            assert c == "dense"
            continue
        assert prune.METHODS[c].from_dense == prune.METHODS[m].from_dense, m
        assert upstream.budget(c, cfg) == upstream.budget(m, cfg), m
        assert upstream.optimizer(c, cfg) == upstream.optimizer(m, cfg), m


def test_one_optimizer_except_the_official_schedules():
    """Momentum, weight decay, Nesterov and batch are shared; only a method's `optimizer` entry may
    set its own lr and schedule (the official code's), and nothing else."""
    cfg = config.load("mini")
    shared = cfg.upstream["optimizer"]
    for m, hp in cfg.upstream["methods"].items():
        assert not {"lr", "momentum", "weight_decay", "nesterov", "batch_size", "epochs"} & set(hp), m
        opt = upstream.optimizer(m, cfg)
        assert {k: opt[k] for k in ("momentum", "weight_decay", "nesterov", "batch_size")} == {
            k: shared[k] for k in ("momentum", "weight_decay", "nesterov", "batch_size")
        }, m
    assert upstream.optimizer("acdc", cfg) == dict(shared)
    assert upstream.optimizer("gmp", cfg)["schedule"] == "exponential" and upstream.optimizer("gmp", cfg)["lr"] < 0.01
    with pytest.raises(config.ConfigError, match="upstream.methods.gmp.optimizer.*momentum"):
        config.load("mini", {"upstream.methods.gmp.optimizer.momentum": 0.5})


def test_gmp_schedule_is_the_official_one_per_epoch():
    """WoodFisher configs/resnet50.yaml scaled to a 100-epoch run: lr constant to epoch 40, then x0.6
    after epochs 40, 46, ..., 88 (nine decays); pruning at epochs 1, 6, ..., 36 and 40."""
    cfg = config.load("mini")
    f = train.lr_factor(upstream.optimizer("gmp", cfg), 100)
    decays = [round(math.log(f(e)) / math.log(0.6)) for e in range(100)]
    assert decays[:41] == [0] * 41 and decays[41] == 1 and decays[47] == 2 and decays[46] == 1
    assert decays[89:] == [9] * 11 and max(decays) == 9
    m = prune.make("gmp", 0.9, 100, **upstream.method_hp("gmp", cfg))
    assert [e for e in range(100) if m.due(e)] == [1, 6, 11, 16, 21, 26, 31, 36, 40]
    assert m.sparsity_at(1) == pytest.approx(0.05) and m.sparsity_at(40) == pytest.approx(0.9)


def test_acdc_phases_are_the_official_ones():
    """ACDC iht_imagenet_resnet50 (100 epochs): dense 0-9, compressed 10-14, 20-24, ..., 70-74 and
    85-99; decompressed 15-19, ..., 65-69 and 75-84."""
    cfg = config.load("mini")
    m = prune.make("acdc", 0.9, 100, **upstream.method_hp("acdc", cfg))
    compressed = [e for e in range(100) if m.phase_at(e) == "compressed"]
    expected = [e for k in range(10, 71, 10) for e in range(k, k + 5)] + list(range(85, 100))
    assert compressed == expected
    assert [e for e in range(100) if m.phase_at(e) == "dense"] == list(range(10))


def test_lth_round_zero_prunes_the_dense_weights_untrained():
    """Chen et al.'s IMP: the first mask comes from the dense weights without training; each later
    round trains under the current mask, prunes 20% of what remains, rewinds."""
    model = models.build("mini_resnet_x", 10)
    dense_state = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []

    def train_round(m, fixed, desc):
        calls.append(round(fixed.target, 3))

    lth = prune.make("lth_t", 0.0, 1, rate=0.2, round_budget=0.1, optimizer={"lr": 1e-4, "schedule": "constant"})
    found = lth.find_masks(model, dense_state, train_round, [0.2, 0.5])
    assert calls == [0.2, 0.36, 0.488]  # round 0 (to 0.2) untrained; then under 0.2, 0.36, 0.488
    first = prune.magnitude_masks(model, 0.2)
    assert all(torch.equal(found[0.2][k], first[k]) for k in first)  # the model is rewound: same weights
    assert prune.LTH.rounds([0.2, 0.5], 0.2) == 3


def test_choose_D_smallest_within_tolerance():
    conv = pd.DataFrame(
        {
            "epochs": [14, 28, 56, 14, 28, 56],
            "seed": [0, 0, 0, 1, 1, 1],
            "grad_clip": 2.0,
            "val_top1": [0.70, 0.775, 0.78, 0.71, 0.775, 0.785],
        }
    )
    assert calibration.choose_D(conv, 0.01) == 28
    assert calibration.choose_D(conv, 0.001) == 56


def test_choose_s_init_interpolates_on_achieved_sparsity():
    calib = pd.DataFrame({"s_init": [-6.0, -4.0, -2.0], "achieved_sparsity": [0.5, 0.8, 0.95]})
    assert calibration.choose_s_init(calib, 0.8) == pytest.approx(-4.0)
    assert -4.0 < calibration.choose_s_init(calib, 0.9) < -2.0


def test_compact_checkpoint_roundtrip_bit_exact(tmp_path):
    m = models.build("mini_resnet_x", 128)
    prune.magnitude(m, 0.9)
    dense = tmp_path / "dense.pth"
    small = tmp_path / "small.pth"
    weights.save_checkpoint(m, dense, "mini_resnet_x")
    weights.save_checkpoint(m, small, "mini_resnet_x", compact=True)
    assert small.stat().st_size < 0.35 * dense.stat().st_size
    back = weights.load_upstream(small, "mini_resnet_x")
    for (k, a), (_, b) in zip(m.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k


def test_reference_set_manifest_verify_and_rebuild(tmp_path):
    cfg = _tiny(tmp_path)
    assert ("dense_5x", 0.0, 0) in upstream.reference_set(cfg)
    assert ("gmp", 0.9, 1) in upstream.reference_set(cfg)
    for m, s, seed in [("dense", 0.0, 0), ("gmp", 0.9, 0), ("lth_t", 0.8, 0)]:
        model, info = upstream.get(m, s, cfg, seed, device="cpu")
        assert info["checkpoint_format"] == "ist" and info["method"] == m  # the sidecar's info, and the format
    man = checkpoints.read_manifest(cfg)
    assert set(man.method) == {"dense", "gmp", "lth_t"} and len(man) == 4  # LTH-T: both sparsities at once
    row = man[man.method == "gmp"].iloc[0]
    assert row.epochs == 1.0 and row.sparsity == 0.9 and abs(row.achieved_sparsity - 0.9) < 1e-3
    assert all(checkpoints.verify(cfg, m, s, seed) == "ok" for m, s, seed in [("dense", 0, 0), ("gmp", 0.9, 0)])
    # a changed file is caught; a changed recipe makes the checkpoint stale
    path = checkpoints.checkpoint_path("gmp", 0.9, cfg, 0)
    saved = path.read_bytes()
    path.write_bytes(saved[:-10] + b"0123456789")
    assert checkpoints.verify(cfg, "gmp", 0.9, 0) == "corrupt"
    with pytest.raises(weights.CheckpointError, match="sha256"):
        upstream.get("gmp", 0.9, cfg, 0, device="cpu")
    path.write_bytes(saved)
    stale = _tiny(tmp_path, **{"upstream.methods.gmp.end": 0.7})
    assert checkpoints.verify(stale, "gmp", 0.9, 0) == "stale"
    # rebuilt from nothing with the same recipe: the same tensors
    again = _tiny(tmp_path / "again")
    a, _ = upstream.get("gmp", 0.9, cfg, 0, device="cpu")
    b, _ = upstream.get("gmp", 0.9, again, 0, device="cpu")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
    assert not math.isnan(row.top1)


def test_plan_times_this_machine():
    cfg = config.load("mini", {"upstream.optimizer.batch_size": 16})
    per_epoch = upstream.epoch_seconds(cfg, steps=2, device="cpu")
    assert 0 < per_epoch < float("inf")  # a time, whatever the load (no bound that a busy machine breaks)
    plan = upstream.planned_seconds(config.load("mini", {"upstream.D": 10}), 1.0)
    assert plan[("dense_5x", 0.0, 0)] == 50 and plan[("gmp", 0.9, 1)] == 10  # own epochs x s/epoch


def test_convergence_and_calibration_rows_resume(tmp_path, monkeypatch):
    """Each run is one CSV row; a second call trains nothing (rows kept, claims released)."""
    cfg = _tiny(
        tmp_path,
        **{
            "upstream.convergence.epochs": [0.5, 1],
            "upstream.convergence.seeds": [0],
            "upstream.convergence.all_seeds_up_to": 1,
            "upstream.convergence.search": None,
            "upstream.methods.str.calibration": [-4.5, -4.0],
        },
    )
    conv = calibration.convergence(cfg, tmp_path / "out", device="cpu")
    assert sorted(zip(conv.epochs, conv.grad_clip.isna())) == [(0.5, False), (1, False), (1, True)]
    calib = calibration.str_calibration(cfg, tmp_path / "out", device="cpu")
    assert sorted(calib.s_init) == [-4.5, -4.0] and calib.achieved_sparsity.between(0, 1).all()
    monkeypatch.setattr(train, "fit", lambda *a, **k: pytest.fail("retrained a finished run"))
    assert len(calibration.convergence(cfg, tmp_path / "out")) == 3
    assert len(calibration.str_calibration(cfg, tmp_path / "out")) == 2


def test_published_checkpoint_names_that_are_not_sparsities_are_skipped(tmp_path):
    m = models.build("mini_resnet_x", 10)
    for name in ("gmp/0.9.pth", "gmp/90.pth", "acdc/best.pth", "dense/0.pth"):
        weights.save_checkpoint(m, tmp_path / name, "mini_resnet_x")
    cfg = config.load("paper", {"checkpoint_root": str(tmp_path)})
    assert upstream.available(cfg) == [("dense", 0.0), ("gmp", 0.9)]


def test_dense_2x_is_gmp_at_target_zero(tmp_path):
    """The control has no code path of its own: GMP's run with target 0 (and no initial pruning)
    from the same dense model, data order and seed ends in the same weights, bit for bit."""
    cfg = _tiny(tmp_path)
    dense, _ = upstream.get("dense", 0.0, cfg, 0, device="cpu")
    state = {k: v.clone() for k, v in dense.state_dict().items()}
    out = {}
    for name, method in [
        ("dense_2x", prune.make("dense_2x", 0.0, 1, seed=0)),
        ("gmp", prune.make("gmp", 0.0, 1, seed=0, **{**upstream.method_hp("gmp", cfg), "initial": 0.0})),
    ]:
        model = models.build(cfg.arch, cfg.mini_data["upstream"]["classes"])
        model.load_state_dict(state)
        upstream.fit_recipe(model, method, cfg, 0, 0.5, "cpu", method_name=name)
        out[name] = model.state_dict()
    for k, v in out["dense_2x"].items():
        assert torch.equal(v, out["gmp"][k]), k


def test_finetuning_loads_and_never_trains(tmp_path):
    """`load` refuses a model the manifest does not vouch for with the command that builds it; an
    upstream seed outside the reference set is refused by name; an off-target model is never filed
    under its nominal sparsity."""
    from sparsenb.errors import UserError

    cfg = _tiny(tmp_path)
    with pytest.raises(UserError, match=r"upstream build --method gmp --sparsity 0.9 --seed 1"):
        upstream.load("gmp", 0.9, cfg, 1, device="cpu")
    assert not checkpoints.manifest_path(cfg).exists()  # nothing was trained
    with pytest.raises(UserError, match=r"upstream seed 7 is not in the reference set; its upstream seeds are \[0, 1"):
        upstream.load("dense", 0.0, cfg, 7)
    upstream.build("dense", 0.0, cfg, 0, device="cpu")
    upstream.load("dense", 0.0, cfg, 0, device="cpu")
    # a model that missed its nominal sparsity: verify says so, build and load refuse it
    path = checkpoints.checkpoint_path("dense", 0.0, cfg, 0)
    info = {"sparsity": 0.85, "test_top1": 0.1, "seconds": 1.0}
    target = checkpoints.checkpoint_path("gmp", 0.9, cfg, 0)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(path.read_bytes())
    checkpoints.register(cfg, target, "gmp", 0.9, 0, info, 1.0)
    assert checkpoints.verify(cfg, "gmp", 0.9, 0) == "off-target"
    with pytest.raises(UserError, match="1.5 points"):
        upstream.load("gmp", 0.9, cfg, 0)
    with pytest.raises(upstream.OffTarget, match="reached sparsity 0.850"):
        upstream.build("gmp", 0.9, cfg, 0, device="cpu")


def test_the_shipped_reference_set_verifies():
    """Every committed reference checkpoint matches its manifest row: sha256, the current recipe and
    its nominal sparsity (`python -m sparsenb upstream verify` on what has landed so far)."""
    from sparsenb import paths

    cfg = config.load("mini", {"checkpoint_root": str(paths.ROOT / "outputs" / "upstream" / "mini")})
    man = checkpoints.read_manifest(cfg)
    wanted = set(upstream.reference_set(cfg))
    for row in man.itertuples():
        key = (row.method, float(row.sparsity), int(row.seed))
        assert key in wanted, f"{row.path} is not a model of the reference set"
        assert checkpoints.verify(cfg, *key) == "ok", row.path


def test_reference_table_pairs_each_model_with_its_control(tmp_path):
    """Table 3 of the reference set: every model beside its budget-matched control, the gap paired by
    upstream seed."""
    from sparsenb import analysis

    cfg = _tiny(tmp_path)
    rows = [("dense_2x", 0.0, 0, 0.60), ("dense_2x", 0.0, 1, 0.70), ("gmp", 0.9, 0, 0.58), ("gmp", 0.9, 1, 0.66)]
    root = checkpoints.manifest_path(cfg).parent
    for m, s, seed, top1 in rows:
        path = checkpoints.checkpoint_path(m, s, cfg, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{m}{seed}".encode())
        checkpoints.register(cfg, path, m, s, seed, {"test_top1": top1, "val_top1": top1, "sparsity": s}, 2.0)
    assert root.is_dir()
    t = analysis.reference_table(cfg).set_index("method")
    assert t.loc["gmp", "control"] == "dense_2x" and t.loc["gmp", "n"] == 2
    assert t.loc["gmp", "gap_to_control"] == pytest.approx(-3.0)  # (-2 and -4 points) paired by seed
    assert t.loc["gmp", "gap_se"] == pytest.approx(1.0)
    assert list(t.index) == ["dense_2x", "gmp"]
    # an off-target model and one of another recipe (stale) are left out, never filed under 0.9
    extra = [("acdc", 0.9, 0, 0.5, 0.85), ("woodfisher", 0.9, 0, 0.5, 0.9)]
    for m, s, seed, top1, achieved in extra:
        path = checkpoints.checkpoint_path(m, s, cfg, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{m}{seed}".encode())
        checkpoints.register(cfg, path, m, s, seed, {"test_top1": top1, "val_top1": top1, "sparsity": achieved}, 2.0)
    assert checkpoints.verify(cfg, "acdc", 0.9, 0) == "off-target"
    cfg["upstream"]["methods"]["woodfisher"]["block"] = 32  # its recipe changed since it was made
    assert checkpoints.verify(cfg, "woodfisher", 0.9, 0) == "stale"
    assert list(analysis.reference_table(cfg).method) == ["dense_2x", "gmp"]


def test_a_recipe_key_of_digits_only_stays_text_in_the_manifest(tmp_path, monkeypatch):
    """A recipe hash like 9382559432 (about 1 in 100) was read back from manifest.csv as a number and
    the checkpoint called stale."""
    cfg = _tiny(tmp_path)
    monkeypatch.setattr(checkpoints, "recipe_key", lambda cfg, method: "0123456789")
    path = checkpoints.checkpoint_path("dense", 0.0, cfg, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    checkpoints.register(cfg, path, "dense", 0.0, 0, {"test_top1": 0.5, "sparsity": 0.0}, 1.0)
    assert checkpoints.verify(cfg, "dense", 0.0, 0) == "ok"


def test_full_recipe_chosen_on_validation_over_complete_candidates():
    """The best mean validation accuracy over the tasks wins; a candidate missing a task cannot win
    (however good its partial mean); on a tie the shorter run wins."""
    rows = [
        (0.01, 8, "a", 0.50),
        (0.01, 8, "b", 0.70),
        (0.03, 8, "a", 0.62),
        (0.03, 8, "b", 0.62),
        (0.03, 16, "a", 0.66),
        (0.03, 16, "b", 0.58),
        (0.1, 16, "a", 0.99),  # b has not run yet
    ]
    t = pd.DataFrame(rows, columns=["lr", "epochs", "dataset", "val_accuracy"])
    assert calibration.choose_full_recipe(t, ["a", "b"]) == (0.03, 8)
    assert calibration.choose_full_recipe(t, ["a"]) == (0.1, 16)
    with pytest.raises(ValueError, match="every task"):
        calibration.choose_full_recipe(t, ["a", "b", "c"])


def test_full_recipe_search_covers_every_candidate_on_every_task():
    cfg = config.load("mini")
    runs = calibration.full_recipe_runs(cfg)
    fs = cfg["full_search"]
    assert len(runs) == len(set(runs)) == len(fs["lr"]) * len(fs["epochs"]) * len(cfg["datasets"])
    assert (cfg["full"]["lr"], cfg["full"]["epochs"]) in {(lr, e) for lr, e, _ in runs}


def test_the_shipped_full_recipe_is_the_one_chosen_on_validation():
    """params' full.lr / full.epochs are what `choose_full_recipe` picks from the committed search
    (outputs/finetune/full_recipe_D<D>.csv), and the milestones are scaled with the epochs."""
    cfg = config.load("mini")
    D = float(cfg["upstream"]["D"])
    table = pd.read_csv(Path(__file__).resolve().parents[1] / "outputs" / "finetune" / f"full_recipe_D{D:g}.csv")
    assert set(zip(table.lr, table.epochs, table.dataset)) == set(calibration.full_recipe_runs(cfg))
    full = cfg["full"]
    assert calibration.choose_full_recipe(table, list(cfg["datasets"])) == (full["lr"], full["epochs"])
    assert all(0 < m < full["epochs"] for m in full["milestones"])


def test_the_upstream_command_selects_from_the_reference_set_and_names_its_methods(tmp_path, monkeypatch, capsys):
    """`upstream verify|plan|build --method/--sparsity/--seed` act on the matching models of the
    reference set (upstream.select); a filter nothing matches is one error listing its methods."""
    from sparsenb import __main__ as cli

    monkeypatch.setenv("SPARSENB_CHECKPOINT_ROOT", str(tmp_path / "ckpt"))
    cfg = config.load("mini")
    methods = list(dict.fromkeys(m for m, _, _ in upstream.reference_set(cfg)))
    assert {m for m, _, _ in upstream.select(cfg, method="gmp")} == {"gmp"}
    assert all(s == 0.9 and sd == 0 for _, s, sd in upstream.select(cfg, sparsity=0.9, seed=0))
    assert cli.main(["upstream", "verify", "--method", "gmp", "--sparsity", "0.9", "--seed", "0"]) == 1
    assert capsys.readouterr().out.endswith("0 of 1 reference checkpoints verified (sha256 + recipe)\n")
    assert cli.main(["upstream", "verify", "--method", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsenb upstream: error: no model of the reference set matches --method/--sparsity/--seed")
    assert err.strip().endswith("its methods: " + ", ".join(methods))


def test_the_reference_sets_recipe_keys_stay_as_committed():
    """The committed manifest is keyed by these: a refactor that changes them orphans every shipped
    checkpoint (a changed recipe must change them -- then update the pins)."""
    cfg = config.load("mini")
    keys = {m: checkpoints.recipe_key(cfg, m) for m in ("dense", "gmp", "dense_5x")}
    assert keys == {"dense": "41aa32dbfe", "gmp": "8ae20b7061", "dense_5x": "f2ab0a5113"}
    paper = config.load("paper", {"checkpoint_root": "/ck"})
    assert checkpoints.checkpoint_path("gmp", 0.9, paper) == Path("/ck/gmp/0.9.pth")


def test_the_full_recipe_search_finetunes_the_dense_model_and_records_validation_only(tmp_path):
    """`calibration.full_recipe`: each candidate on each task is one full finetuning of the dense
    upstream model at that lr and length (milestones scaled); the table holds validation accuracy,
    never a test number, and a second call trains nothing."""
    extra = {
        "mini_data.tasks.shapes10": {"train_per_class": 4, "val_per_class": 2, "test_per_class": 2},
        "datasets": ["shapes10"],
        "full.epochs": 2,
        "full.milestones": [1],
        "full_search": {"lr": [0.01, 0.03], "epochs": [2]},
    }
    cfg = _tiny(tmp_path, **extra)
    upstream.get("dense", 0.0, cfg, 0, device="cpu")
    table = calibration.full_recipe(cfg, tmp_path / "search", device="cpu")
    assert sorted(table.lr) == [0.01, 0.03] and set(table.epochs) == {2} and set(table.dataset) == {"shapes10"}
    assert not any("test" in c or c in ("reported", "best", "final") for c in table.columns)
    assert table.val_accuracy.between(0, 1).all()
    assert calibration.full_recipe(cfg, tmp_path / "search", device="cpu").equals(table)  # resumed: nothing retrained
    assert calibration.choose_full_recipe(table, ["shapes10"])[1] == 2


def test_the_demo_trains_no_upstream_model_and_names_the_build_when_one_is_missing(tmp_path, monkeypatch, capsys):
    """`make demo` runs on the shipped reference set's first seed: with a model missing it stops at
    once, naming the command that builds it (no sweep starts, nothing is trained)."""
    from sparsenb import __main__ as cli
    from sparsenb import sweep

    monkeypatch.setenv("SPARSENB_CHECKPOINT_ROOT", str(tmp_path / "ckpt"))
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: pytest.fail("a sweep started"))
    assert cli.main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "not verified: dense 0 (missing)" in err and "python -m sparsenb upstream build --seed 0" in err


def test_a_reference_set_can_give_its_first_seeds_more():
    """Issue 38's design: 5 seeds at 80/90%, the first 3 also at 95% and with RigL 5x and dense_5x."""
    cfg = config.load("mini")
    assert len(upstream.reference_set(cfg)) == 72  # mini: 95% and the structured model on the first seed only
    cfg["upstream"] = {**cfg["upstream"], "seeds": [0, 1, 2, 3, 4], "first_seeds": 3}
    cfg["upstream"]["few_seeds_methods"] = ["rigl_erk_5x", "dense_5x"]
    per_seed = {sd: [(m, s) for m, s, k in upstream.reference_set(cfg) if k == sd] for sd in range(5)}
    assert ("gmp", 0.95) in per_seed[2] and ("gmp", 0.95) not in per_seed[3]
    assert ("rigl_erk_5x", 0.8) in per_seed[2] and not any(m in ("rigl_erk_5x", "dense_5x") for m, _ in per_seed[4])
    assert ("gmp", 0.9) in per_seed[4] and ("random_init", 0.0) in per_seed[4]
    assert [s for m, s in per_seed[1] if m == "structured"] == []


def test_a_reference_set_adopts_a_pilots_models_of_its_own_recipe_only(tmp_path, capsys):
    """`upstream adopt --source <pilot root>`: the pilot's models made by the set's recipe are taken
    with their manifest rows as they were (numbers, seconds, machine); another recipe's are not."""
    pilot, ref = _tiny(tmp_path / "pilot"), _tiny(tmp_path / "ref")
    upstream.get("dense", 0.0, pilot, 0, device="cpu")
    other = _tiny(tmp_path / "pilot", **{"upstream.methods.gmp.end": 0.7})  # gmp of another recipe
    upstream.get("gmp", 0.9, other, 0, device="cpu")
    todo = [("dense", 0.0, 0), ("gmp", 0.9, 0), ("acdc", 0.9, 0)]
    taken = checkpoints.adopt(ref, pilot["checkpoint_root"], todo)
    assert taken == ["dense/s0-seed0.pth"] and "not taken" in capsys.readouterr().out
    assert checkpoints.verify(ref, "dense", 0.0, 0) == "ok" and checkpoints.verify(ref, "gmp", 0.9, 0) == "missing"
    mine, theirs = checkpoints.read_manifest(ref), checkpoints.read_manifest(pilot)
    assert mine.iloc[0].to_dict() == theirs[theirs.method == "dense"].iloc[0].to_dict()
    assert checkpoints.adopt(ref, pilot["checkpoint_root"], todo) == []  # taken once
