"""What the README promises a contributor: a new pruning method is one class and one params entry;
a new recording notebook is one Spec class (and its notebook). A toy recipe registered here (nothing
in sparsenb/ or params/ changes) goes through the upstream pipeline, a linear finetuning run and the
summary like the paper's methods; a toy notebook kind goes through the run contract, the sweep and
the records like the study's notebooks."""

from dataclasses import dataclass

import pytest
import torch

from sparsenb import checkpoints, config, finetune, models, prune, results, runs, specs, summary, sweep, upstream
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
    """Register the recipe (undone after the test); `toy(entry, **more)` gives the overrides that add
    its params entry, as a user's params/mini.yaml would (passed as the runs' `overrides`)."""
    monkeypatch.setitem(prune.METHODS, "toy_random", RandomPruning)
    shipped = config.load("mini")["upstream"]["methods"]

    def use(entry, **more):
        return {"upstream.methods": {**shipped, "toy_random": entry}, **more}

    return use


@pytest.mark.slow
def test_a_new_method_runs_through_upstream_linear_and_summary(toy, tmp_path):
    over = toy(
        {"budget": 1, "mask_seed_offset": 7},
        **{"upstream.D": 0.2, "upstream.seeds": [0], "linear.epochs": 2, "linear.milestones": [1]},
    )
    cfg = config.load("mini", over)
    assert ("toy_random", 0.8, 0) in upstream.reference_set(cfg)
    assert prune.names("progressive") == ["gmp", "woodfisher", "gmp_scratch", "toy_random"]

    model, info = upstream.get("toy_random", 0.8, cfg, 0, device="cpu")
    assert checkpoints.verify(cfg, "toy_random", 0.8, 0) == "ok"
    assert prune.target_sparsity(model) == pytest.approx(0.8, abs=0.01)
    assert 0 < info["val_top1"] <= 1

    spec = runs.spec("02_linear_ft", method="toy_random", sparsity=0.8, overrides=over)
    res = finetune.linear(spec, device="cpu")
    results.write("02_linear_ft", spec.config(), res, root=tmp_path)
    tidy = summary.load_results(tmp_path, overrides=over)
    assert tidy.excluded == [] and list(tidy.frame.method) == ["toy_random"]
    assert tidy.frame.accuracy.iloc[0] == pytest.approx(res["reported"])
    assert summary.families()["toy_random"] == "progressive"


def test_its_params_entry_is_checked_against_its_declaration(toy):
    with pytest.raises(ConfigError, match="toy_random.mask_seed_offset: missing"):
        config.load("mini", toy({"budget": 1}))
    with pytest.raises(ConfigError, match="unknown key lr; valid: budget, mask_seed_offset"):
        config.load("mini", toy({"budget": 1, "mask_seed_offset": 7, "lr": 0.1}))
    with pytest.raises(ConfigError, match="toy_random.budget: expected float"):
        runs.spec("02_linear_ft", overrides=toy({"budget": "long", "mask_seed_offset": 7}))


# --- a new kind of notebook ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ProbeSpec(specs.Spec):
    """The one module a new recording notebook needs: its spec (what identifies a run), registered
    under the notebook's name by subclassing."""

    kind = "09_probe"
    method: str
    sparsity: float
    dataset: str
    seed: int
    hp: dict

    @classmethod
    def check(cls, cfg, p):
        specs.check(cfg, p, downstream=cls.kind)

    @classmethod
    def of(cls, cfg, p, inputs=True):
        sparsity, hp = float(p["sparsity"]), dict(cfg["linear"])
        return cls(
            **specs.common(cfg, p), method=p["method"], sparsity=sparsity, dataset=p["dataset"], seed=p["seed"], hp=hp
        )


@pytest.fixture
def probe_notebook(tmp_path, monkeypatch):
    """A notebook 09_probe: its parameters cell (the rest of it would call runs.setup and results.record)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(
        'profile = "mini"\nmethod = "gmp"\nsparsity = 0.9\ndataset = "shapes10"\nseed = 21\noverrides = {}'
    )
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params]
    path = tmp_path / "09_probe.ipynb"
    nbformat.write(nb, path)
    return path


def test_a_new_notebook_kind_is_one_spec_class(probe_notebook, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSENB_OUTPUTS", str(tmp_path / "outputs"))
    assert specs.KINDS["09_probe"] is ProbeSpec  # registered by subclassing: no list to edit
    cfg, spec = runs.setup(str(probe_notebook), method="acdc", overrides={"linear.epochs": 3})
    assert isinstance(spec, ProbeSpec) and spec.hp["epochs"] == 3 and cfg["linear"]["epochs"] == 3
    assert spec.config()["overrides"] == {"linear.epochs": 3} and spec.notebook == "09_probe"
    with pytest.raises(ConfigError, match="09_probe transfers to: shapes10"):  # the shared checks apply
        runs.setup(str(probe_notebook), dataset="upstream")
    with pytest.raises(ConfigError, match="09_probe has no parameter epochs"):
        runs.setup(str(probe_notebook), epochs=3)
    f = tmp_path / "probe.yaml"
    f.write_text(f"notebooks: [{probe_notebook}]\ngrid: {{method: [gmp, acdc]}}\n")
    grid = sweep.expand(sweep.load_sweep(f), tmp_path / "runs")
    assert [r.record.method for r in grid] == ["gmp", "acdc"] and not any(r.finished() for r in grid)
    rec = results.record(grid[1].record, {"best": 0.5})  # what the notebook's last cell would do
    assert [r.finished() for r in grid] == [False, True]  # the sweep skips it by the same spec
    assert results.load("09_probe").run_id.tolist() == [rec["run_id"]] == [grid[1].record.run_id]


# --- a new architecture ----------------------------------------------------------------------------


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
    over = {
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
    }
    cfg = config.load("mini", over)
    model, info = upstream.get("gmp", 0.8, cfg, 0, device="cpu")
    assert checkpoints.verify(cfg, "gmp", 0.8, 0) == "ok" and checkpoints.verify(cfg, "dense", 0.0, 0) == "ok"
    assert isinstance(model.conv2, torch.nn.Conv2d) and prune.target_sparsity(model) == pytest.approx(0.8, abs=0.02)
    spec = runs.spec("02_linear_ft", method="gmp", sparsity=0.8, dataset="shapes10", seed=21, overrides=over)
    res = finetune.linear(spec, device="cpu")
    assert res["feature_dim"] == 16 and 0 <= res["reported"] <= 1


def test_a_new_method_file_registers_in_every_process(tmp_path):
    """A new `prune/<name>.py` with `@prune.register` is imported with the package, so a sweep's
    kernel (another process) knows it; checked in a copy of the package, in a fresh interpreter."""
    import shutil
    import subprocess
    import sys

    pkg = tmp_path / "sparsenb"
    shutil.copytree(config.ROOT / "sparsenb", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "prune" / "mine.py").write_text(
        "from .base import Method\nfrom . import register\n\n\n"
        '@register("mine")\nclass Mine(Method):\n    family = "progressive"\n'
    )
    code = "import sparsenb.prune as p; print(p.METHODS['mine'].__name__, p.family('mine'))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path)}
    )
    assert out.stdout.split() == ["Mine", "progressive"], out.stderr[-2000:]
