"""Masks stay fixed, finetuning learns, features are cached, metrics agree with scikit-learn."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from sparsenb import devices, features, masks, metrics, models, train
from sparsenb.data import ArrayDataset, transforms

HP = dict(lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=32, epochs=3, milestones=[2], gamma=0.1)


def _sparse_mini(sparsity=0.9, seed=0):
    torch.manual_seed(seed)
    m = models.build("mini_resnet_s", 10)
    with torch.no_grad():
        for layer in masks.prunable(m, include_head=False).values():
            w = layer.weight
            k = int(w.numel() * sparsity)
            thr = w.abs().flatten().kthvalue(k).values
            w.mul_((w.abs() > thr).float())
    return m


def _toy_images(n=96, seed=0):
    """Two classes a small CNN separates quickly: bright left half vs bright right half."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.rand(n, 3, 32, 32, generator=g) * 0.5
    x[y == 0, :, :, :16] += 0.5
    x[y == 1, :, :, 16:] += 0.5
    return x, y


def test_masks_report_and_apply():
    m = _sparse_mini(0.9)
    rep = masks.report(m, include_head=False)
    assert rep.iloc[-1]["layer"] == "global"
    assert abs(rep.iloc[-1]["sparsity"] - 0.9) < 0.01
    assert (rep.iloc[:-1]["sparsity"] > 0.89).all()
    mk = masks.from_weights(m)
    with torch.no_grad():
        for layer in masks.prunable(m, include_head=False).values():
            layer.weight.add_(1.0)
    masks.apply(m, mk)
    assert abs(masks.global_sparsity(m, include_head=False) - 0.9) < 0.01


@pytest.mark.parametrize(
    "precision,compile",
    [
        ("fp32", False),
        pytest.param("bf16", False, marks=pytest.mark.slow),
        pytest.param("fp32", True, marks=pytest.mark.slow),
    ],
)
def test_full_finetune_keeps_zero_set_bit_for_bit(precision, compile):
    """Under every precision (weights, optimizer state and masks stay fp32; bf16 autocasts), and
    through torch.compile."""
    m = _sparse_mini(0.9)
    before = {n: (layer.weight == 0).clone() for n, layer in masks.prunable(m, include_head=False).items()}
    weights = {n: layer.weight.detach().clone() for n, layer in masks.prunable(m, include_head=False).items()}
    models.replace_head(m, 2)
    x, y = _toy_images(128)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    res = train.full_finetune(
        m,
        loader,
        DataLoader(TensorDataset(x, y), batch_size=64),
        dict(HP, epochs=4, lr=0.1, weight_decay=5e-3),  # 32 steps, large decay
        seed=1,
        device="cpu",
        precision=precision,
        compile=compile,
    )
    for n, layer in masks.prunable(m, include_head=False).items():
        assert layer.weight.dtype == torch.float32 and torch.equal(layer.weight == 0, before[n]), (
            f"{n}: zero set changed"
        )
    assert res["sparsity"] == pytest.approx(0.9, abs=0.01)
    assert res["best"] >= res["final"] - 1e-9 and len(res["curve"]) == 4
    # the unpruned weights did train: every layer's kept weights moved, the training loss fell (the toy's
    # eval-mode accuracy after 32 steps depends on the data order through BN's running statistics)
    for n, layer in masks.prunable(m, include_head=False).items():
        kept = ~before[n]
        assert (layer.weight.detach()[kept] - weights[n][kept]).abs().max() > 1e-3, f"{n} did not train"
    assert res["curve"][-1]["loss"] < res["curve"][0]["loss"] / 5


def test_without_fixed_mask_zeros_would_drift():
    """The check above can fail: a plain SGD step with weight decay and momentum moves pruned weights."""
    m = _sparse_mini(0.9)
    x, y = _toy_images(32)
    models.replace_head(m, 2)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    nn.CrossEntropyLoss()(m(x), y).backward()
    opt.step()
    assert masks.global_sparsity(m, include_head=False) < 0.5


def test_fixed_mask_momentum_buffers_stay_zero():
    m = _sparse_mini(0.8)
    fm = masks.FixedMask(m)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x, y = _toy_images(16)
    for _ in range(3):
        opt.zero_grad()
        nn.CrossEntropyLoss()(m(x), y).backward()
        fm.step(opt)
    for w, mk in fm.pairs:
        assert torch.count_nonzero(opt.state[w]["momentum_buffer"][~mk]) == 0


def test_lth_transfer_keeps_dense_weights_on_mask():
    sparse = _sparse_mini(0.9, seed=0)
    dense = models.build("mini_resnet_s", 10)
    ref = {k: v.clone() for k, v in dense.state_dict().items()}
    masks.transfer(sparse, dense)
    for n, layer in masks.prunable(dense, include_head=False).items():
        keep = dict(sparse.named_modules())[n].weight != 0
        assert torch.equal(layer.weight[keep], ref[n + ".weight"][keep])
        assert torch.count_nonzero(layer.weight[~keep]) == 0


def test_pruned_filters():
    m = models.build("mini_resnet_s", 10)
    with torch.no_grad():
        m.layer1[0].conv1.weight[:4] = 0  # 4 of 16 filters fully pruned
        m.conv1.weight[0, :2] = 0  # a partly pruned filter does not count
    df = masks.pruned_filters(m).set_index("layer")
    assert df.loc["layer1.0.conv1", "pruned_filters"] == 4
    assert df.loc["layer1.0.conv1", "fraction"] == 0.25
    assert df.loc["conv1", "pruned_filters"] == 0
    assert df.loc["total", "pruned_filters"] == 4


def test_linear_finetune_learns_and_reports_best_and_final():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(5, 20, generator=g) * 3

    def sample(n):
        y = torch.arange(n) % 5
        return centers[y] + torch.randn(n, 20, generator=g), y

    xtr, ytr = sample(400)
    xte, yte = sample(200)
    res = train.linear_finetune(xtr, ytr, xte, yte, 5, dict(HP, epochs=6, milestones=[3, 5]), metric="top1", seed=3)
    assert res["final"] > 0.9 and res["best"] >= res["final"]
    assert [r["epoch"] for r in res["curve"]] == list(range(1, 7))
    again = train.linear_finetune(xtr, ytr, xte, yte, 5, dict(HP, epochs=6, milestones=[3, 5]), seed=3)
    assert again["curve"] == res["curve"]  # seeded: reproducible


def test_extract_features_eval_mode_and_cache(tmp_path):
    rng = np.random.default_rng(0)
    ds = ArrayDataset(
        rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), np.arange(20) % 4, ["a", "b", "c", "d"], name="toy"
    )
    m = models.build("mini_resnet_s", 10)
    m.train()
    bn_before = m.bn1.running_mean.clone()
    tf = transforms.evaluation(32)
    f1, y1 = features.extract_features(m, ds, tf, cache_dir=tmp_path, batch_size=8)
    assert f1.shape == (20, 64) and torch.equal(y1, torch.arange(20) % 4)
    assert torch.equal(m.bn1.running_mean, bn_before)  # BN statistics untouched (eval mode)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    f2, _ = features.extract_features(m, ds, tf, cache_dir=tmp_path)
    assert torch.equal(f1, f2) and len(list(tmp_path.glob("*.pt"))) == 1
    with torch.no_grad():
        m.conv1.weight.mul_(0.5)  # other weights: other key
    features.extract_features(m, ds, tf, cache_dir=tmp_path)
    features.extract_features(m, ds, transforms.evaluation(32, mean=(0, 0, 0), std=(1, 1, 1)), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 3
    assert ds.transform is None


def test_metrics_against_sklearn():
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    rng = np.random.default_rng(1)
    y = rng.choice(7, 500, p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05])
    recall = np.array([0.9, 0.8, 0.6, 0.5, 0.5, 0.2, 0.1])  # rare classes recognised worse
    p = np.where(rng.random(500) < recall[y], y, (y + 1) % 7)
    assert metrics.mean_per_class(y, p) == pytest.approx(balanced_accuracy_score(y, p), abs=1e-12)
    assert metrics.top1(y, p) == pytest.approx(accuracy_score(y, p), abs=1e-12)
    assert metrics.mean_per_class(y, p) != pytest.approx(metrics.top1(y, p), abs=1e-3)
    with pytest.raises(ValueError, match="top1, mean_per_class"):
        metrics.score(y, p, "top5")


def test_relative_error_increase_and_summary():
    assert metrics.relative_error_increase(0.8, 0.9) == pytest.approx(1.0)  # errors 0.2 vs 0.1
    assert metrics.relative_error_increase(0.95, 0.9) == pytest.approx(-0.5)
    df = pd.DataFrame(
        {
            "finetune": "linear",
            "dataset": ["a", "b", "c"] * 2,
            "method": ["dense"] * 3 + ["gmp"] * 3,
            "sparsity": [0.0] * 3 + [0.9] * 3,
            "accuracy": [0.9, 0.8, 0.5, 0.8, 0.8, 0.6],
        }
    )
    a = metrics.alpha_table(df)
    assert a.set_index("dataset").alpha.to_dict() == pytest.approx({"a": 1.0, "b": 0.0, "c": -0.2})
    s = metrics.alpha_summary(a)
    assert s.alpha_mean[0] == pytest.approx(0.8 / 3)
    assert s.alpha_se[0] == pytest.approx(np.std([1.0, 0.0, -0.2], ddof=1) / np.sqrt(3))
    assert s.tasks[0] == 3


def test_fp16_needs_a_gpu():
    from sparsenb.config import ConfigError

    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        devices.Precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        devices.Precision("fp8", "cpu")


@pytest.mark.slow
def test_bench_train_measures_every_path_and_records_it(capsys):
    """`python -m sparsenb bench train` on a small model: full finetuning (fp32 baseline, channels_last,
    bf16, torch.compile), feature extraction and both loaders measured, ratios printed, one JSON line
    appended under the outputs root (the tests' temporary one, never the repository's)."""
    import json

    from sparsenb import bench, paths

    out = bench.train_bench(quick=True, arch="mini_resnet_s", compile=True)
    assert set(out["img_per_s"]) == {"fp32", "fp32_channels_last", "bf16_channels_last", "bf16_channels_last+compile"}
    assert out["tuned"] in out["img_per_s"] and set(out["features_img_per_s"]) == {"fp32", out["tuned"]}
    assert set(out["loader_img_per_s"]) == {"torch", "ffcv"}
    assert all(v > 0 for d in ("img_per_s", "features_img_per_s", "loader_img_per_s") for v in out[d].values())
    printed = capsys.readouterr().out
    assert "x1.00 vs fp32" in printed and "fed by each loader" in printed and '"tuned_vs_fp32"' in printed
    line = json.loads((paths.outputs() / "bench" / "train.jsonl").read_text().splitlines()[-1])
    assert line["arch"] == "mini_resnet_s" and line["device"].startswith("cpu")
    assert paths.outputs() != paths.ROOT / "outputs"


def test_bench_train_times_the_step_full_finetuning_runs(tmp_path, monkeypatch, capsys):
    """`bench train` times `train.FullTrainer.epoch`, the step `full_finetune` takes every epoch (not
    a copy of it): every full finetuning variant and both loader-fed runs go through it, warm-up and
    timed steps, with the paper profile's recipe; the record lands in the outputs root it is given."""
    import json

    from sparsenb import bench, config, data

    monkeypatch.setenv("SPARSENB_OUTPUTS", str(tmp_path))
    calls, real = [], train.FullTrainer.epoch

    def epoch(self, batches, desc=""):
        batches = list(batches)
        calls.append((self.channels_last, self.prec.name, len(batches), self.opt.defaults["lr"]))
        return real(self, batches, desc)

    monkeypatch.setattr(train.FullTrainer, "epoch", epoch)
    real_loader = data.loader  # both loader-fed runs through the torch loader (ffcv's JIT takes ~20 s)
    monkeypatch.setattr(data, "write_beton", lambda folder, path, **kw: path)
    monkeypatch.setattr(data, "loader", lambda *a, backend, beton, **kw: real_loader(*a, backend="torch", **kw))
    out = bench.train_bench(quick=True, arch="mini_resnet_s", image_size=32, batch_size=4, steps=2, compile=False)
    tuned = bench.TRAIN_VARIANTS[out["tuned"]][:2]
    variants = [(False, "fp32"), (True, "fp32"), (True, "bf16")]
    fed = [tuned] * 4  # torch then ffcv, warm-up then timed
    assert [c[:2] for c in calls] == [v for v in variants for _ in (0, 1)] + fed
    assert [c[2] for c in calls] == [1, 2] * 5  # one warm-up step, then the two timed ones
    assert {c[3] for c in calls} == {config.load("paper")["full"]["lr"]}
    assert set(out["img_per_s"]) == {"fp32", "fp32_channels_last", "bf16_channels_last"}
    assert '"tuned_vs_fp32"' in capsys.readouterr().out
    assert json.loads((tmp_path / "bench" / "train.jsonl").read_text())["img_per_s"] == out["img_per_s"]


@pytest.mark.slow
def test_full_finetuning_is_a_function_of_its_seed():
    """Two runs of one (method, sparsity, dataset, seed) give the same curve whatever the process did
    before -- torch starts each process from a random seed, so the new head is initialised after
    seeding, like everything else in the run."""
    from sparsenb import finetune, runs, upstream

    spec = runs.spec("03_full_ft", method="gmp", sparsity=0.9, overrides={"upstream.D": 0.5, "full.epochs": 1})
    upstream.build("gmp", 0.9, spec.cfg, 0, device="cpu")
    curves = []
    for noise in (1, 7):
        torch.rand(noise)  # another global RNG state
        curves.append(finetune.full(spec, device="cpu")["curve"])
    assert curves[0] == curves[1]
