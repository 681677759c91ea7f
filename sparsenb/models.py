"""Architectures, upstream checkpoint loading (format detected) and the new downstream head.

    model = sparsenb.models.build("resnet50", num_classes=1000)
    model = sparsenb.models.load_upstream("checkpoints/acdc/0.9.pth", "resnet50")
    sparsenb.models.replace_head(model, num_classes=37)

Every architecture names its classifier `fc` (an nn.Linear), so heads, masks and feature
extraction work the same on all of them.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn

from .config import check_choice


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the requested architecture; the message says why."""


# --- architectures -----------------------------------------------------------------------------

class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class MiniResNet(nn.Module):
    """The mini profile's model: a CIFAR-style ResNet (3x3 stem, three stages of basic blocks,
    widths w, 2w, 4w), torchvision-like names (conv1, bn1, layerN, fc)."""

    def __init__(self, num_classes: int = 10, width: int = 32, blocks=(1, 1, 1), stem_stride: int = 1,
                 expand: int = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, stem_stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        cin = width
        for i, n in enumerate(blocks):
            cout = width * 2 ** i
            layer = [BasicBlock(cin if j == 0 else cout, cout, 2 if (i > 0 and j == 0) else 1) for j in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            cin = cout
        self.num_stages = len(blocks)
        self.expand = None
        if expand:   # a 1x1 expansion before pooling, as ResNet50's last 1x1 convs (2048 features)
            self.expand = nn.Sequential(nn.Conv2d(cin, expand, 1, bias=False), nn.BatchNorm2d(expand),
                                        nn.ReLU(inplace=True))
            cin = expand
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        if self.expand is not None:
            x = self.expand(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class MobileNetV1(nn.Module):
    """MobileNetV1 (Howard et al. 2017) as in the paper's code: `model` = stem + 13 depthwise-separable
    blocks + pooling, `fc` the classifier, so the published state dicts load unchanged."""

    CFG = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
           (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 1024, 2),
           (1024, 1024, 1)]

    def __init__(self, num_classes: int = 1000):
        super().__init__()

        def cbr(cin, cout, k, stride=1, groups=1):
            return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True)]

        layers = [nn.Sequential(*cbr(3, 32, 3, 2))]
        for cin, cout, s in self.CFG:
            layers.append(nn.Sequential(*cbr(cin, cin, 3, s, groups=cin), *cbr(cin, cout, 1)))
        layers.append(nn.AdaptiveAvgPool2d(1))    # the paper's AvgPool2d(7) at 224 px, any size here
        self.model = nn.Sequential(*layers)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.model(x), 1))


def _tv_models():
    import torchvision.models   # on demand: importing torchvision costs ~1.5 s, the mini models need none of it

    return torchvision.models


def _resnet50_rigl(num_classes: int) -> nn.Module:
    """torchvision's ResNet50 with the max-pool of RigL's TF port: pad right/bottom by one, then a
    3x3/2 pool without padding (torchvision pads by one on every side). Same weights, other outputs."""
    m = _tv_models().resnet50(num_classes=num_classes)
    m.maxpool = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(3, stride=2, padding=0))
    return m


_BUILDERS = {
    "resnet18": lambda n: _tv_models().resnet18(num_classes=n),
    "resnet34": lambda n: _tv_models().resnet34(num_classes=n),
    "resnet50": lambda n: _tv_models().resnet50(num_classes=n),
    "resnet50_rigl": _resnet50_rigl,
    "mobilenet_v1": lambda n: MobileNetV1(n),
    "mini_resnet": lambda n: MiniResNet(n, width=32),
    "mini_resnet_s": lambda n: MiniResNet(n, width=16),
    # the mini profile's default: strided stem (as ImageNet ResNets), widths 24/48/96, 256 features
    "mini_resnet_x": lambda n: MiniResNet(n, width=24, stem_stride=2, expand=256),
}
ARCHS = tuple(_BUILDERS)


def build(arch: str, num_classes: int) -> nn.Module:
    """A freshly initialised model of `arch` (one of ARCHS) with `num_classes` outputs."""
    check_choice("arch", arch, ARCHS)
    return _BUILDERS[arch](int(num_classes))


def feature_dim(model: nn.Module) -> int:
    return model.fc.in_features


def replace_head(model: nn.Module, num_classes: int) -> dict:
    """Put a new dense nn.Linear(features, num_classes) in place of `fc`, with PyTorch's default
    (Kaiming-uniform) init, as the paper does. Returns the sparsity change over conv+linear weights."""
    from . import masks

    before = masks.global_sparsity(model)
    old = model.fc
    model.fc = nn.Linear(old.in_features, num_classes).to(old.weight.device)
    return {"head_sparsity_before": masks.sparsity(old.weight), "sparsity_before": before,
            "sparsity_after": masks.global_sparsity(model)}


def backbone(model: nn.Module) -> nn.Module:
    """The model without its classifier: outputs the penultimate (pooled) features. Shares every
    weight with `model` (a shallow copy with its own module table), so `model` keeps its head."""
    import copy

    b = copy.copy(model)
    b._modules = OrderedDict(model._modules)
    b.fc = nn.Identity()
    return b


# --- checkpoint loading ------------------------------------------------------------------------

def _unwrap(obj, path) -> tuple[dict, dict]:
    """Find the state dict inside a checkpoint object; returns (state_dict, model_config)."""
    config = {}
    for _ in range(3):
        if not isinstance(obj, dict):
            break
        if "model_state_dict" in obj:                         # IST common format
            config = obj.get("model_config") or {}
            obj = obj["model_state_dict"]
        elif "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        elif "model" in obj and isinstance(obj["model"], dict):
            obj = obj["model"]
        else:
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: no state dict found (expected a dict of tensors, or one under "
                              f"'model_state_dict' / 'state_dict'); is this a model checkpoint?")
    return dict(obj), config


def _strip_wrappers(sd: dict) -> dict:
    """`module.` prefixes (DataParallel) and IST wrapped layers (`._layer.weight` + `._weight_mask`)."""
    sd = {re.sub(r"^(module\.)+", "", k): v for k, v in sd.items()}
    out, maskmap = {}, {}
    for k, v in sd.items():
        if k.endswith("._weight_mask") or k.endswith("._bias_mask"):
            maskmap[k] = v
            continue
        out[k.replace("._layer.", ".")] = v
    for k, m in maskmap.items():   # a stored mask multiplies its weight (masks may be all ones)
        base, kind = k.rsplit("._", 1)
        target = f"{base}.{'weight' if kind == 'weight_mask' else 'bias'}"
        if target in out and out[target].shape == m.shape:
            out[target] = out[target] * m.to(out[target].dtype)
    return out


_RIGL_RULES = [
    (r"^initial_conv\.conv\.", "conv1."), (r"^initial_conv\.bn\.", "bn1."),
    (r"^(layer\d)\.block\.(\d+)\.conv(\d)\.conv\.", r"\1.\2.conv\3."),
    (r"^(layer\d)\.block\.(\d+)\.conv(\d)\.bn\.", r"\1.\2.bn\3."),
    (r"^(layer\d)\.block\.(\d+)\.shortcut\.conv\.", r"\1.\2.downsample.0."),
    (r"^(layer\d)\.block\.(\d+)\.shortcut\.bn\.", r"\1.\2.downsample.1."),
]
_SPARSEML_RULES = [
    (r"^input\.conv\.", "conv1."), (r"^input\.bn\.", "bn1."),
    (r"^sections\.(\d+)\.", lambda m: f"layer{int(m.group(1)) + 1}."),
    (r"\.identity\.conv\.", ".downsample.0."), (r"\.identity\.bn\.", ".downsample.1."),
    (r"^classifier\.fc\.", "fc."),
]


def _rename(sd: dict, rules) -> dict:
    out = {}
    for k, v in sd.items():
        for pat, rep in rules:
            k = re.sub(pat, rep, k)
        out[k] = v
    return out


def detect_format(sd: dict) -> str:
    """'rigl_tf' | 'sparseml' | 'torchvision' for a state dict with wrappers stripped."""
    keys = list(sd)
    if any(k.startswith("initial_conv.") or ".block." in k for k in keys):
        return "rigl_tf"
    if any(k.startswith(("sections.", "input.conv")) or k.startswith("classifier.fc") for k in keys):
        return "sparseml"
    return "torchvision"


def convert_state_dict(sd: dict) -> tuple[dict, str]:
    """Normalise any supported layout to this package's names; returns (state_dict, format)."""
    sd = _strip_wrappers(sd)
    fmt = detect_format(sd)
    if fmt == "rigl_tf":
        sd = _rename(sd, _RIGL_RULES)
    elif fmt == "sparseml":
        sd = _rename(sd, _SPARSEML_RULES)
    # STR: learnable thresholds have no place in a dense model; fc may be a 1x1 convolution
    dropped = [k for k in sd if k.split(".")[-1] in ("sparseThreshold",)]
    for k in dropped:
        del sd[k]
    if "fc.weight" in sd and sd["fc.weight"].dim() == 4:
        w = sd["fc.weight"]
        if w.shape[2:] != (1, 1):
            raise CheckpointError(f"fc.weight has shape {tuple(w.shape)}: a convolutional classifier must be 1x1")
        sd["fc.weight"] = w.flatten(1)
        fmt = "str" if fmt == "torchvision" else fmt
    elif dropped and fmt == "torchvision":
        fmt = "str"
    return sd, fmt


def _guess_arch(sd: dict) -> str | None:
    keys = {k for k in sd if not k.endswith("num_batches_tracked")}
    for arch in ARCHS:
        ref = {k for k in build(arch, 10).state_dict() if not k.endswith("num_batches_tracked")}
        if {k for k in keys if k.startswith("fc.")} and keys == ref:
            return arch
    return None


_MASK, _VALUES, _SHAPE = ".__compact_mask", ".__compact_values", ".__compact_shape"


def compact_state_dict(sd: dict) -> dict:
    """Float tensors of >= 1,024 entries with over half zeros -> packed bit pattern + nonzero values."""
    import numpy as np

    out = {}
    for k, v in sd.items():
        if v.is_floating_point() and v.numel() >= 1024 and float((v == 0).float().mean()) > 0.5:
            nz = (v != 0).flatten()
            out[k + _MASK] = torch.from_numpy(np.packbits(nz.numpy()))
            out[k + _VALUES] = v.flatten()[nz].clone()
            out[k + _SHAPE] = torch.tensor(list(v.shape), dtype=torch.int64)
        else:
            out[k] = v
    return out


def expand_state_dict(sd: dict) -> dict:
    """Inverse of compact_state_dict (a dict without compact entries is returned as is)."""
    import numpy as np

    if not any(k.endswith(_MASK) for k in sd):
        return sd
    out = {k: v for k, v in sd.items() if not k.endswith((_MASK, _VALUES, _SHAPE))}
    for k in [k[: -len(_MASK)] for k in sd if k.endswith(_MASK)]:
        shape = tuple(int(i) for i in sd[k + _SHAPE])
        n = int(np.prod(shape))
        nz = torch.from_numpy(np.unpackbits(sd[k + _MASK].numpy())[:n].astype(bool))
        values = sd[k + _VALUES]
        full = torch.zeros(n, dtype=values.dtype)
        full[nz] = values
        out[k] = full.view(shape)
    return out


def load_upstream(path: str | Path, arch: str, num_classes: int | None = None) -> nn.Module:
    """Load an upstream checkpoint of any supported format into `arch`; the format is detected.

    Formats: IST common format (`model_config` + `model_state_dict`, wrapped layers with masks,
    `module.` prefixes), plain or `state_dict`-nested torchvision dicts, STR (1x1-conv fc,
    sparseThreshold), RigL's TF port (names mapped; the model gets RigL's padded max-pool), SparseML.
    Loaded with weights_only=True. Every tensor must match: a missing, extra or mis-shaped tensor
    raises CheckpointError naming the keys."""
    check_choice("arch", arch, ARCHS)
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: check checkpoint_root in params/<profile>.yaml "
                              f"(expected <checkpoint_root>/<method>/<sparsity>.pth)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]}); the file may be truncated or corrupt: "
                              f"download or copy it again") from e
    raw, model_config = _unwrap(obj, path)
    raw = expand_state_dict(raw)
    sd, fmt = convert_state_dict(raw)
    cfg_arch = str(model_config.get("arch", "")).lower()
    if cfg_arch and arch.split("_")[0] not in cfg_arch.replace("_", ""):
        raise CheckpointError(f"{path} says it is a {model_config['arch']!r} (model_config.arch), not {arch!r}: "
                              f"pass the matching arch")
    if "fc.weight" not in sd:
        raise CheckpointError(f"{path}: no classifier weights (fc.weight) after conversion from format {fmt!r}; "
                              f"keys start with {sorted(sd)[:5]}")
    n = num_classes or sd["fc.weight"].shape[0]
    target_arch = "resnet50_rigl" if (fmt == "rigl_tf" and arch == "resnet50") else arch
    model = build(target_arch, n)
    ref = model.state_dict()
    missing = [k for k in ref if k not in sd and not k.endswith("num_batches_tracked")]
    extra = [k for k in sd if k not in ref]
    shape = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(ref[k].shape)}"
             for k in ref if k in sd and sd[k].shape != ref[k].shape]
    if missing or extra or shape:
        guess = _guess_arch(sd)
        hint = (f"it looks like a {guess!r} checkpoint: pass arch={guess!r}" if guess and guess != target_arch
                else "is this checkpoint of another architecture, or a format sparsenb does not know?")
        parts = [f"{path} (format {fmt!r}) does not fit {target_arch!r}; {hint}."]
        if missing:
            parts.append(f"missing {len(missing)} tensors, e.g. {missing[:5]}")
        if extra:
            parts.append(f"{len(extra)} unexpected tensors, e.g. {extra[:5]}")
        if shape:
            parts.append(f"{len(shape)} shape mismatches, e.g. {shape[:3]}")
        raise CheckpointError("\n  ".join(parts))
    full = OrderedDict((k, sd.get(k, ref[k])) for k in ref)
    model.load_state_dict(full)
    model.checkpoint_format = fmt
    return model.eval()


def save_checkpoint(model: nn.Module, path: str | Path, arch: str, compact: bool = False, **config) -> Path:
    """Save in the IST common format ({'model_config', 'model_state_dict'}), which load_upstream
    reads; written to a temp file and renamed. `compact`: tensors that are mostly zero are stored as
    their packed nonzero pattern + nonzero values (`<name>.__compact_mask` / `__compact_values`), a
    third of the size at 80% sparsity; load_upstream restores them bit-exactly."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if compact:
        sd = compact_state_dict(sd)
    torch.save({"model_config": {"arch": arch, **config}, "model_state_dict": sd}, tmp)
    os.replace(tmp, path)
    return path
