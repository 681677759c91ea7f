"""Architectures and checkpoint loading: every supported format loads bit-exact; every bad input
raises one CheckpointError that says what is wrong."""

import re

import numpy as np
import pytest
import torch
import torch.nn as nn

from sparsenb import masks, models, weights
from sparsenb.config import ConfigError
from sparsenb.weights import CheckpointError


def _randomise(model: nn.Module, sparsity: float = 0.0, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics (so nothing equals its init), optionally sparse."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype.is_floating_point:
                t.copy_(
                    torch.rand(t.shape, generator=g) + 0.1
                    if "running_var" in name
                    else torch.randn(t.shape, generator=g)
                )
            elif "num_batches_tracked" in name:
                t.fill_(7)
        for m in masks.prunable(model).values():
            m.weight.mul_((torch.rand(m.weight.shape, generator=g) >= sparsity).float())
    return model.eval()


def _assert_same(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("arch", sorted(models.ARCHS))
def test_every_architecture_builds_with_a_linear_fc_head_and_its_backbone(arch):
    """Every registered architecture (a new one is tested without editing this file): `fc` an
    nn.Linear with the classes asked for, a backbone giving its feature_dim features, a new head."""
    m = models.build(arch, 7).eval()
    x = torch.randn(2, 3, 32, 32)
    assert m(x).shape == (2, 7)
    assert isinstance(m.fc, nn.Linear) and m.fc.out_features == 7
    assert models.backbone(m)(x).shape == (2, models.feature_dim(m))
    models.replace_head(m, 3)
    assert m(x).shape == (2, 3) and masks.prunable(m)


def test_mini_resnet_x_has_strided_stem_and_256_features():
    m = models.build("mini_resnet_x", 10)
    assert m.conv1.stride == (2, 2) and models.feature_dim(m) == 256
    assert models.backbone(m)(torch.randn(2, 3, 32, 32)).shape == (2, 256)


def test_unknown_arch_lists_valid():
    with pytest.raises(ConfigError, match="resnet50.*mobilenet_v1"):
        models.build("resnet51", 10)


def test_mobilenet_v1_matches_the_paper_shape():
    m = models.build("mobilenet_v1", 1000)
    n_params = sum(p.numel() for p in m.parameters())
    assert 4.2e6 < n_params < 4.3e6  # MobileNetV1 1.0x: 4.2 M parameters
    convs = [k for k in m.state_dict() if k.endswith("weight") and m.state_dict()[k].dim() == 4]
    assert len(convs) == 27 and convs[0] == "model.0.0.weight" and "model.13.3.weight" in convs


# --- formats -------------------------------------------------------------------------------------


def _ist(sd, arch, module_prefix=False, wrapped=False):
    out = {}
    for k, v in sd.items():
        name, _, leaf = k.rpartition(".")
        if wrapped and leaf in ("weight", "bias") and v.dim() in (2, 4):
            out[f"{name}._layer.{leaf}"] = v
            out[f"{name}._{leaf}_mask"] = (v != 0).float() if leaf == "weight" else torch.ones_like(v)
        elif wrapped and leaf == "bias" and name == "fc":
            out[f"{name}._layer.bias"] = v
            out[f"{name}._bias_mask"] = torch.ones_like(v)
        else:
            out[k] = v
    if module_prefix:
        out = {f"module.{k}": v for k, v in out.items()}
    return {"model_config": {"arch": arch, "dataset": "imagenet"}, "model_state_dict": out}


@pytest.mark.parametrize("variant", ["plain", "state_dict", "ist", "ist_module", "ist_wrapped", "ist_wrapped_module"])
def test_loads_every_layout_bit_exact(tmp_path, variant):
    ref = _randomise(models.build("resnet18", 10), sparsity=0.8)
    sd = ref.state_dict()
    obj = {
        "plain": sd,
        "state_dict": {"state_dict": sd, "epoch": 3},
        "ist": _ist(sd, "resnet18"),
        "ist_module": _ist(sd, "resnet18", module_prefix=True),
        "ist_wrapped": _ist(sd, "resnet18", wrapped=True),
        "ist_wrapped_module": _ist(sd, "resnet18", wrapped=True, module_prefix=True),
    }[variant]
    torch.save(obj, tmp_path / "c.pth")
    got = weights.load_upstream(tmp_path / "c.pth", "resnet18")
    _assert_same(ref, got)


def test_wrapped_mask_is_applied_when_weights_are_not_zeroed(tmp_path):
    ref = _randomise(models.build("mini_resnet", 10), sparsity=0.0)
    sd = ref.state_dict()
    ck = _ist(sd, "mini_resnet", wrapped=True)["model_state_dict"]
    mask = (torch.rand(sd["layer1.0.conv1.weight"].shape) > 0.5).float()
    ck["layer1.0.conv1._weight_mask"] = mask
    torch.save({"model_state_dict": ck}, tmp_path / "c.pth")
    got = weights.load_upstream(tmp_path / "c.pth", "mini_resnet")
    assert torch.equal(got.layer1[0].conv1.weight, sd["layer1.0.conv1.weight"] * mask)


def test_str_conv_fc_and_thresholds(tmp_path):
    ref = _randomise(models.build("resnet50", 1000), sparsity=0.9)
    sd = dict(ref.state_dict())
    sd["fc.weight"] = sd["fc.weight"][:, :, None, None].clone()  # 1x1 conv classifier
    sd["layer1.0.conv1.sparseThreshold"] = torch.tensor([-3.2])
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "str.pth")
    ck = weights.read_upstream(tmp_path / "str.pth", "resnet50")
    got = ck.model
    assert ck.format == "str"
    _assert_same(ref, got)


def _to_rigl_names(sd):
    out = {}
    for k, v in sd.items():
        k2 = re.sub(r"^conv1\.", "initial_conv.conv.", k)
        k2 = re.sub(r"^bn1\.", "initial_conv.bn.", k2)
        k2 = re.sub(r"^(layer\d)\.(\d+)\.conv(\d)\.", r"\1.block.\2.conv\3.conv.", k2)
        k2 = re.sub(r"^(layer\d)\.(\d+)\.bn(\d)\.", r"\1.block.\2.conv\3.bn.", k2)
        k2 = re.sub(r"^(layer\d)\.(\d+)\.downsample\.0\.", r"\1.block.\2.shortcut.conv.", k2)
        k2 = re.sub(r"^(layer\d)\.(\d+)\.downsample\.1\.", r"\1.block.\2.shortcut.bn.", k2)
        out[k2] = v
    return out


def test_rigl_tf_port_names_and_maxpool(tmp_path):
    ref = _randomise(models.build("resnet50", 1000), sparsity=0.9)
    rigl = _to_rigl_names(ref.state_dict())
    assert any(k.startswith("layer1.block.0.shortcut.conv") for k in rigl)
    torch.save({"model_state_dict": rigl}, tmp_path / "rigl.pth")
    ck = weights.read_upstream(tmp_path / "rigl.pth", "resnet50")
    got = ck.model
    _assert_same(ref, got)
    assert ck.format == "rigl_tf"
    # RigL's TF port pools differently: pad right/bottom, then pool without padding
    x = torch.randn(1, 64, 112, 112)
    ref_pool = nn.MaxPool2d(3, 2, 0)(nn.functional.pad(x, (0, 1, 0, 1)))
    assert torch.equal(got.maxpool(x), ref_pool)
    assert not torch.equal(ref.maxpool(x), ref_pool)


def _to_sparseml_names(sd):
    out = {}
    for k, v in sd.items():
        k2 = re.sub(r"^conv1\.", "input.conv.", k)
        k2 = re.sub(r"^bn1\.", "input.bn.", k2)
        k2 = re.sub(r"^layer(\d)\.", lambda m: f"sections.{int(m.group(1)) - 1}.", k2)
        k2 = k2.replace(".downsample.0.", ".identity.conv.").replace(".downsample.1.", ".identity.bn.")
        k2 = re.sub(r"^fc\.", "classifier.fc.", k2)
        out[k2] = v
    return out


def test_sparseml_names(tmp_path):
    ref = _randomise(models.build("resnet50", 1000), sparsity=0.95)
    torch.save(_to_sparseml_names(ref.state_dict()), tmp_path / "sml.pth")
    ck = weights.read_upstream(tmp_path / "sml.pth", "resnet50")
    got = ck.model
    assert ck.format == "sparseml"
    _assert_same(ref, got)


def test_mobilenet_ist(tmp_path):
    ref = _randomise(models.build("mobilenet_v1", 1000), sparsity=0.75)
    torch.save(_ist(ref.state_dict(), "mobilenet", wrapped=True, module_prefix=True), tmp_path / "mb.pth")
    _assert_same(ref, weights.load_upstream(tmp_path / "mb.pth", "mobilenet_v1"))


# --- errors --------------------------------------------------------------------------------------


def test_wrong_arch_says_which(tmp_path):
    torch.save(_randomise(models.build("resnet18", 10)).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match="looks like a 'resnet18'.*the profile's `arch`.*-p arch resnet18"):
        weights.load_upstream(tmp_path / "r18.pth", "resnet34")


def test_model_config_arch_mismatch(tmp_path):
    torch.save(_ist(_randomise(models.build("resnet18", 10)).state_dict(), "resnet18"), tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match="'resnet18'.*not 'resnet50'"):
        weights.load_upstream(tmp_path / "c.pth", "resnet50")


def test_missing_and_extra_tensors_are_named(tmp_path):
    sd = dict(_randomise(models.build("mini_resnet", 10)).state_dict())
    del sd["layer2.0.conv1.weight"]
    sd["layer9.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "c.pth")
    with pytest.raises(CheckpointError) as e:
        weights.load_upstream(tmp_path / "c.pth", "mini_resnet")
    assert "layer2.0.conv1.weight" in str(e.value) and "layer9.weight" in str(e.value)


def test_shape_mismatch_is_named(tmp_path):
    torch.save(_randomise(models.build("mini_resnet_s", 10)).state_dict(), tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatches.*conv1.weight: checkpoint \(16, 3, 3, 3\)"):
        weights.load_upstream(tmp_path / "c.pth", "mini_resnet")


def test_corrupt_and_missing_files(tmp_path):
    torch.save(_randomise(models.build("mini_resnet", 10)).state_dict(), tmp_path / "c.pth")
    data = (tmp_path / "c.pth").read_bytes()
    (tmp_path / "trunc.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        weights.load_upstream(tmp_path / "trunc.pth", "mini_resnet")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        weights.load_upstream(tmp_path / "nope.pth", "mini_resnet")
    torch.save({"epoch": 3, "note": "x"}, tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="no state dict found"):
        weights.load_upstream(tmp_path / "junk.pth", "mini_resnet")


def test_save_checkpoint_roundtrip(tmp_path):
    ref = _randomise(models.build("mini_resnet", 128), sparsity=0.9)
    p = weights.save_checkpoint(ref, tmp_path / "u.pth", "mini_resnet", method="gmp", sparsity=0.9)
    got = weights.load_upstream(p, "mini_resnet")
    _assert_same(ref, got)


def test_replace_head_is_dense_default_init():
    m = _randomise(models.build("mini_resnet", 128), sparsity=0.9)
    info = models.replace_head(m, 7)
    assert m.fc.out_features == 7 and masks.sparsity(m.fc.weight) == 0.0
    bound = 1 / m.fc.in_features**0.5  # kaiming_uniform(a=sqrt(5)) bound for nn.Linear
    assert m.fc.weight.abs().max() <= bound + 1e-6
    assert info["head_sparsity_before"] > 0.8 and info["sparsity_after"] < info["sparsity_before"]


def test_backbone_outputs_features():
    m = models.build("mini_resnet", 10).eval()
    f = models.backbone(m)(torch.randn(3, 3, 32, 32))
    assert f.shape == (3, models.feature_dim(m))
    assert isinstance(m.fc, nn.Linear)  # the original keeps its head


def test_checkpoints_of_real_training_scripts_load(tmp_path):
    """Training scripts save their arguments and numpy numbers beside the weights: those load
    (weights_only, allowlisted by name); a pickle that would run code is refused naming the global."""
    import argparse
    import os

    m = models.build("mini_resnet_x", 10)
    p = tmp_path / "script.pth"
    extras = {
        "args": argparse.Namespace(lr=0.1, arch="resnet50"),
        "epoch": np.int64(5),
        "best": np.float64(0.7),
        "dtype": np.dtype("float32"),
    }
    torch.save({"state_dict": m.state_dict(), **extras}, p)
    loaded = weights.load_upstream(p, "mini_resnet_x", 10)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), m.state_dict().values()))

    class RunsCode:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"state_dict": m.state_dict(), "x": RunsCode()}, p)
    with pytest.raises(CheckpointError, match=r"would run code when loaded: its pickle calls posix.system") as e:
        weights.load_upstream(p, "mini_resnet_x", 10)
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value)


def test_empty_checkpoint_is_named_empty(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty"):
        weights.load_upstream(tmp_path / "empty.pth", "mini_resnet_x", 10)


def test_the_format_label_says_ist_for_ist_checkpoints(tmp_path):
    m = models.build("mini_resnet_x", 10)
    weights.save_checkpoint(m, tmp_path / "ist.pth", "mini_resnet_x")
    torch.save(m.state_dict(), tmp_path / "plain.pth")
    assert weights.read_upstream(tmp_path / "ist.pth", "mini_resnet_x").format == "ist"
    assert weights.read_upstream(tmp_path / "plain.pth", "mini_resnet_x").format == "torchvision"
    assert not hasattr(weights.load_upstream(tmp_path / "ist.pth", "mini_resnet_x"), "checkpoint_format")
