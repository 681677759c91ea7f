"""What the README promises a contributor: a new pruning method is one class and one params entry.
A toy recipe registered here (nothing in sparsenb/ or params/ changes) goes through the upstream
pipeline, a linear finetuning run and the summary like the paper's methods."""

import json

import pytest
import torch

from sparsenb import checkpoints, config, finetune, models, prune, results, summary, upstream
from sparsenb.config import ConfigError


class RandomPruning(prune.Method):
    """Random unstructured pruning before the first step; trains under that fixed mask."""

    family = "progressive"
    hyperparameters = {"budget": float, "mask_seed_offset": int}

    def start(self, model, optimizer):
        super().start(model, optimizer)
        g = torch.Generator().manual_seed(self.seed + self.param("mask_seed_offset"))
        self.set_masks(
            {n: torch.rand(layer.weight.shape, generator=g) >= self.target for n, layer in self.layers.items()}
        )

    def finish(self):
        self.enforce()  # keeps its random mask (no final magnitude step)


@pytest.fixture
def toy(monkeypatch):
    """Register the recipe (undone after the test) and give it its params entry, as a user's
    params/mini.yaml would (SPARSENB_OVERRIDES reaches every profile load, 07_summary's too)."""
    monkeypatch.setitem(prune.METHODS, "toy_random", RandomPruning)
    shipped = config.load("mini")["upstream"]["methods"]

    def use(entry, **more):
        methods = {**shipped, "toy_random": entry}
        monkeypatch.setenv("SPARSENB_OVERRIDES", json.dumps({"upstream.methods": methods, **more}))

    return use


@pytest.mark.slow
def test_a_new_method_runs_through_upstream_linear_and_summary(toy, tmp_path):
    toy(
        {"budget": 1, "mask_seed_offset": 7},
        **{"upstream.D": 0.2, "upstream.seeds": [0], "linear.epochs": 2, "linear.milestones": [1]},
    )
    cfg = config.load("mini")
    assert ("toy_random", 0.8, 0) in upstream.reference_set(cfg)
    assert prune.names("progressive") == ["gmp", "woodfisher", "gmp_scratch", "toy_random"]

    model, info = upstream.get("toy_random", 0.8, cfg, 0, device="cpu")
    assert checkpoints.verify(cfg, "toy_random", 0.8, 0) == "ok"
    assert prune.target_sparsity(model) == pytest.approx(0.8, abs=0.01)
    assert 0 < info["val_top1"] <= 1

    run = finetune.run_config(cfg, "linear", "toy_random", 0.8, "shapes10", 21, 0)
    res = finetune.linear(cfg, "toy_random", 0.8, "shapes10", seed=21, device="cpu")
    results.record("02_linear_ft", run, res, root=tmp_path)
    tidy = summary.load_results(tmp_path)
    assert tidy.attrs["excluded"] == [] and list(tidy.method) == ["toy_random"]
    assert tidy.accuracy.iloc[0] == pytest.approx(res["reported"])
    assert summary.families()["toy_random"] == "progressive"


def test_its_params_entry_is_checked_against_its_declaration(toy):
    toy({"budget": 1})
    with pytest.raises(ConfigError, match="toy_random.mask_seed_offset: missing"):
        config.load("mini")
    toy({"budget": 1, "mask_seed_offset": 7, "lr": 0.1})
    with pytest.raises(ConfigError, match="unknown key lr; valid: budget, mask_seed_offset"):
        config.load("mini")
    toy({"budget": "long", "mask_seed_offset": 7})
    with pytest.raises(ConfigError, match="toy_random.budget: expected float"):
        config.load("mini")


def _tiny_net(num_classes):
    """A new architecture as a user would add it: any nn.Module whose classifier is `fc`."""
    net = torch.nn.Sequential()
    net.add_module("conv1", torch.nn.Conv2d(3, 8, 3, 2, 1, bias=False))
    net.add_module("bn1", torch.nn.BatchNorm2d(8))
    net.add_module("relu", torch.nn.ReLU())
    net.add_module("conv2", torch.nn.Conv2d(8, 16, 3, 2, 1, bias=False))
    net.add_module("pool", torch.nn.AdaptiveAvgPool2d(1))
    net.add_module("flatten", torch.nn.Flatten())
    net.add_module("fc", torch.nn.Linear(16, num_classes))
    return net


def test_a_new_architecture_runs_through_upstream_and_linear_finetuning(monkeypatch, tmp_path):
    """One registered builder (nothing in sparsenb/ or params/ changes, the profile's `arch` names
    it): the mini upstream recipe trains and prunes it, its checkpoint is vouched for and loads
    back, and a linear finetuning run transfers it."""
    monkeypatch.setitem(models.ARCHS, "tiny_net", _tiny_net)
    cfg = config.load(
        "mini",
        {
            "arch": "tiny_net",
            "data_root": str(tmp_path / "data"),
            "checkpoint_root": str(tmp_path / "ckpt"),
            "feature_cache": str(tmp_path / "features"),
            "mini_data.upstream.train_per_class": 2,
            "mini_data.upstream.val_per_class": 1,
            "mini_data.upstream.test_per_class": 1,
            "mini_data.tasks.shapes10": {"train_per_class": 4, "val_per_class": 2, "test_per_class": 2},
            "upstream.D": 0.5,
            "upstream.optimizer.batch_size": 32,
            "linear.epochs": 2,
            "linear.milestones": [1],
        },
    )
    model, info = upstream.get("gmp", 0.8, cfg, 0, device="cpu")
    assert checkpoints.verify(cfg, "gmp", 0.8, 0) == "ok" and checkpoints.verify(cfg, "dense", 0.0, 0) == "ok"
    assert isinstance(model.conv2, torch.nn.Conv2d) and prune.target_sparsity(model) == pytest.approx(0.8, abs=0.02)
    res = finetune.linear(cfg, "gmp", 0.8, "shapes10", seed=21, device="cpu")
    assert res["feature_dim"] == 16 and 0 <= res["reported"] <= 1
