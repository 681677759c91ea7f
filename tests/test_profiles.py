"""Profiles are objects that own what differs between them (sparsenb.profiles): every registered
profile answers the same questions; the mini and paper profiles answer them as the study needs; no
other module compares profile or method names."""

import re
from pathlib import Path

import pandas as pd
import pytest

from sparsenb import checkpoints, config, data, profiles, prune, report, schema
from sparsenb.config import ConfigError


@pytest.fixture(params=sorted(profiles.PROFILES))
def cfg(request, tmp_path):
    return config.load(request.param, {"checkpoint_root": str(tmp_path / "ckpt")})


def test_every_profile_answers_what_differs(cfg):
    p = profiles.of(cfg)
    assert p is profiles.get(cfg["profile"]) and p.name == cfg["profile"]
    assert p.splits[0] == "train" and p.splits[-1] == "test" and set(p.splits) <= set(data.SPLITS)
    assert all(cfg.get(k) is not None for k in p.sections), "its params file lacks a section it needs"
    family = data.names(p.data_family)
    assert family and set(cfg["datasets"]) <= set(family), "a dataset it studies is not of its data family"
    assert p.results_root(cfg) == Path(cfg["results_root"])
    where = {checkpoints.checkpoint_path(m, s, cfg, 1) for m in prune.METHODS for s in (0.8, 0.9)}
    assert len(where) == 2 * len(prune.METHODS), "two upstream models share a checkpoint file"
    assert all(w.is_relative_to(cfg["checkpoint_root"]) and w.suffix == ".pth" for w in where)
    for m in prune.METHODS:
        assert p.interpolation(m) in ("bilinear", "bicubic")
        control = p.control(m)
        assert control is None if not prune.is_sparse(m) else not prune.is_sparse(control)
    assert "gmp" in p.off_target_fix("gmp", 0.9) or "recipe" in p.off_target_fix("gmp", 0.9)


def test_every_dataset_belongs_to_a_registered_profile():
    assert {data.info(n).profile for n in data.names()} <= set(profiles.PROFILES)


def test_mini_and_paper_decide_what_the_study_needs(tmp_path):
    mini, paper = profiles.get("mini"), profiles.get("paper")
    assert mini.splits == ("train", "val", "test") and paper.splits == ("train", "test")
    assert profiles.default() is mini and mini.label("beyond", "resnet50") == "beyond"
    assert paper.label("beyond", "resnet50") == "beyond-paper-resnet50"
    # RigL's published checkpoints are evaluated bicubic as its TF code did; the mini models are ours
    assert [m for m in prune.METHODS if paper.bicubic(m)] == ["rigl_erk_1x", "rigl_erk_5x"]
    assert not any(mini.bicubic(m) for m in prune.METHODS)
    # budget-matched controls exist only where the models are made
    assert mini.control("gmp") == "dense_2x" and paper.control("gmp") == "dense"
    assert mini.control("dense_5x") is None and paper.control("dense") is None
    assert mini.makes_upstream and mini.renders_data and not (paper.makes_upstream or paper.renders_data)
    assert mini.beton_resolution(32) is None and paper.beton_resolution(224) == 448
    cfg = config.load("mini", {"checkpoint_root": str(tmp_path)})
    assert mini.figures_dir(cfg) == tmp_path
    assert paper.figures_dir(cfg).parts[-2:] == ("upstream", "paper")


def test_a_profile_written_on_another_shares_all_but_its_changes(tmp_path, monkeypatch):
    mini, conv = config.load("mini"), config.load("mini_converged")
    assert conv["full"] == mini["full"] and conv["linear"] == mini["linear"]  # one recipe, written once
    assert conv["upstream"]["methods"]["gmp"] == mini["upstream"]["methods"]["gmp"]
    assert "gmp_scratch" not in conv["upstream"]["methods"] and "gmp_scratch" in mini["upstream"]["methods"]
    assert len(conv["datasets"]) == 12 and set(mini["datasets"]) < set(conv["datasets"])
    kinds = [data.info(d).kind for d in conv["datasets"]]
    assert kinds.count("general") == kinds.count("specialized") == 6  # the paper's Sec. 3.3 split
    assert conv["checkpoint_root"] != mini["checkpoint_root"] and conv["results_root"] != mini["results_root"]
    assert not profiles.get("mini_converged").default and profiles.default() is profiles.get("mini")
    # a mini task it adds is not one of mini's: refused by name there
    from sparsenb import specs

    specs.check_dataset(conv, "objects60", "03")
    with pytest.raises(ConfigError, match="objects60"):
        specs.check_dataset(mini, "objects60", "03")
    # a derived file holds only base, profile, overrides, drop
    monkeypatch.setattr(config, "PARAMS", tmp_path)
    (tmp_path / "mini.yaml").write_text((config.ROOT / "params" / "mini.yaml").read_text())
    (tmp_path / "mine.yaml").write_text("base: mini\nprofile: mine\nlinear: {epochs: 3}\n")
    with pytest.raises(ConfigError, match="move linear under overrides"):
        config.params_of("mine")
    (tmp_path / "mine.yaml").write_text("base: mini\nprofile: mine\noverrides: {linear.epochs: 3, linear.nope.x: 1}\n")
    with pytest.raises(ConfigError, match="unknown config key 'linear.nope.x'"):
        config.params_of("mine")


def test_the_regime_b_profile_is_the_chosen_pilot_so_its_models_carry_over():
    """mini_converged's upstream recipe is pilot c32_w24_D112's: the pilot's seed-0 models (all but the
    pre-fix WoodFisher) have the reference set's recipe keys (a model copied from the pilot verifies
    as one of the set)."""
    from sparsenb import pilots

    spec = pilots.load()
    pilot, conv = pilots.config_of(spec, "c32_w24_D112"), config.load("mini_converged")
    for method in ("dense", "dense_2x", "gmp", "acdc"):
        assert checkpoints.recipe_key(conv, method) == checkpoints.recipe_key(pilot, method), method
    # WoodFisher's pilot model was the pre-fix port: regime B builds its own (the official pruner)
    assert checkpoints.recipe_key(conv, "woodfisher") != checkpoints.recipe_key(pilot, "woodfisher")


def test_a_missing_section_names_the_profile_that_needs_it():
    cfg = dict(config.load("mini"))
    del cfg["mini_data"]
    problems = schema.problems(cfg, prune.hyperparameters())
    assert "mini_data: missing (the mini profile makes its own data and upstream models)" in problems
    assert not [p for p in schema.problems(dict(config.load("paper")), prune.hyperparameters()) if "missing" in p]


def test_an_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown profile 'laptop'; valid: mini, mini_converged, paper"):
        profiles.get("laptop")
    with pytest.raises(ValueError, match="registered already"):
        profiles.register(type("Other", (profiles.Mini,), {})())


def test_the_schema_takes_any_registered_profile_and_names_the_valid_ones(monkeypatch):
    cfg = dict(config.load("mini"))
    cfg["profile"] = "laptop"
    assert schema.problems(cfg, prune.hyperparameters()) == [
        "profile: 'laptop' is not one of 'mini', 'mini_converged', 'paper'"
    ]
    laptop = type("Laptop", (profiles.Mini,), {"name": "laptop"})()
    monkeypatch.setitem(profiles.PROFILES, "laptop", laptop)  # a new profile: registered, no schema edit
    assert schema.problems(cfg, prune.hyperparameters()) == []
    cfg["profile"] = 3
    assert schema.problems(cfg, prune.hyperparameters()) == ["profile: expected str, got 3"]


# --- no module but the owners compares profile or method names -----------------------------------

SPARSENB = Path(profiles.__file__).parent
OWNERS = {"profiles.py", "prune", "verdicts.py"}  # verdicts quotes the paper's claims, which name methods
# files another change converts (each with the replacement named in its review); leave this list
# when converted -- the test below says when one no longer compares names
PENDING: set[str] = set()  # files still to convert (none)
_NAMES = "|".join(sorted(map(re.escape, prune.METHODS), key=len, reverse=True))
PROFILE_NAME = re.compile(r"""profile["']?\]?\)?\s*[!=]=\s*["']|["'](mini|paper)["']\s*[!=]=""")
METHOD_NAME = re.compile(
    rf"""[!=]=\s*["']({_NAMES})["']|["']({_NAMES})["']\s*[!=]=|startswith\(["']({_NAMES}|rigl|lth|dense)"""
)
FAMILY = re.compile(r"""family(\([^)]*\))?\s*[!=]=\s*["']\w+["']""")  # families are the registry's vocabulary


def _comparisons() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in sorted(SPARSENB.rglob("*.py")):
        rel = path.relative_to(SPARSENB)
        for i, line in enumerate(path.read_text().splitlines(), 1):
            line = FAMILY.sub("", line)
            if PROFILE_NAME.search(line) or METHOD_NAME.search(line):
                out.setdefault(str(rel), []).append(f"{rel}:{i}: {line.strip()}")
    return out


def test_no_module_but_the_owners_compares_profile_or_method_names():
    found = _comparisons()
    owned = {f for f in found if f in OWNERS or Path(f).parts[0] in OWNERS}
    stray = [hit for f, hits in found.items() if f not in owned | PENDING for hit in hits]
    assert not stray, "compare through sparsenb.profiles / the prune registry instead:\n" + "\n".join(stray)
    assert not PENDING - set(found), f"converted: remove {sorted(PENDING - set(found))} from PENDING"


def test_methods_own_their_special_cases():
    assert [m for m in prune.METHODS if not prune.reported_in(m, "linear")] == ["lth_t"]
    assert prune.reported_in("M-FAC", "linear")  # a method only the released results have
    assert [m for m in prune.METHODS if prune.eval_interpolation(m) == "bicubic"] == ["rigl_erk_1x", "rigl_erk_5x"]
    assert prune.DENSE in prune.METHODS and not prune.is_sparse(prune.DENSE) and prune.control_of(prune.DENSE) is None
    # the summary's figures leave LTH-T out of linear finetuning (as the paper), from the registry
    t = pd.DataFrame({"method": ["lth_t", "lth_t", "gmp"], "finetune": ["linear", "full", "linear"]})
    assert report._reported(t).values.tolist() == [["lth_t", "full"], ["gmp", "linear"]]
    assert list(report._reported(t.iloc[:0]).columns) == ["method", "finetune"]
