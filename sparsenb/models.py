"""Architectures (a registry: one builder per name) and the new downstream head; reading and
writing their checkpoints is sparsenb.weights.

    model = sparsenb.models.build("resnet50", num_classes=1000)
    model = sparsenb.weights.load_upstream("checkpoints/acdc/0.9.pth", "resnet50")
    sparsenb.models.replace_head(model, num_classes=37)

Every architecture names its classifier `fc` (an nn.Linear), so heads, masks and feature
extraction work the same on all of them.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from . import masks
from .errors import check_choice

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

    def __init__(self, num_classes: int = 10, width: int = 32, blocks=(1, 1, 1), stem_stride: int = 1, expand: int = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, stem_stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        cin = width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            layer = [BasicBlock(cin if j == 0 else cout, cout, 2 if (i > 0 and j == 0) else 1) for j in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            cin = cout
        self.num_stages = len(blocks)
        self.expand = None
        if expand:  # a 1x1 expansion before pooling, as ResNet50's last 1x1 convs (2048 features)
            self.expand = nn.Sequential(
                nn.Conv2d(cin, expand, 1, bias=False), nn.BatchNorm2d(expand), nn.ReLU(inplace=True)
            )
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

    CFG = [
        (32, 64, 1),
        (64, 128, 2),
        (128, 128, 1),
        (128, 256, 2),
        (256, 256, 1),
        (256, 512, 2),
        (512, 512, 1),
        (512, 512, 1),
        (512, 512, 1),
        (512, 512, 1),
        (512, 512, 1),
        (512, 1024, 2),
        (1024, 1024, 1),
    ]

    def __init__(self, num_classes: int = 1000):
        super().__init__()

        def cbr(cin, cout, k, stride=1, groups=1):
            return [
                nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        layers = [nn.Sequential(*cbr(3, 32, 3, 2))]
        for cin, cout, s in self.CFG:
            layers.append(nn.Sequential(*cbr(cin, cin, 3, s, groups=cin), *cbr(cin, cout, 1)))
        layers.append(nn.AdaptiveAvgPool2d(1))  # the paper's AvgPool2d(7) at 224 px, any size here
        self.model = nn.Sequential(*layers)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.model(x), 1))


def _tv_models():
    import torchvision.models  # on demand: importing torchvision costs ~1.5 s, the mini models need none of it

    return torchvision.models


def _resnet50_rigl(num_classes: int) -> nn.Module:
    """torchvision's ResNet50 with the max-pool of RigL's TF port: pad right/bottom by one, then a
    3x3/2 pool without padding (torchvision pads by one on every side). Same weights, other outputs."""
    m = _tv_models().resnet50(num_classes=num_classes)
    m.maxpool = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(3, stride=2, padding=0))
    return m


# name -> builder(num_classes); `register` adds one
ARCHS: dict = {
    "resnet18": lambda n: _tv_models().resnet18(num_classes=n),
    "resnet34": lambda n: _tv_models().resnet34(num_classes=n),
    "resnet50": lambda n: _tv_models().resnet50(num_classes=n),
    "resnet50_rigl": _resnet50_rigl,
    "mobilenet_v1": lambda n: MobileNetV1(n),
    "mini_resnet": lambda n: MiniResNet(n, width=32),
    "mini_resnet_s": lambda n: MiniResNet(n, width=16),
    # the mini profile's default: strided stem (as ImageNet ResNets), widths 24/48/96, 256 features
    "mini_resnet_x": lambda n: MiniResNet(n, width=24, stem_stride=2, expand=256),
    # the same at widths 32/64/128 (1.8x the compute): the regime pilots' capacity knob
    "mini_resnet_x32": lambda n: MiniResNet(n, width=32, stem_stride=2, expand=256),
}


def register(name: str):
    """Add an architecture (a decorated function num_classes -> nn.Module whose classifier is `fc`):

    @models.register("mini_resnet_w12")
    def mini_resnet_w12(num_classes):
        return models.MiniResNet(num_classes, width=12, stem_stride=2, expand=256)
    """

    def add(fn):
        if name in ARCHS and ARCHS[name] is not fn:
            raise ValueError(f"architecture {name!r} is registered already")
        ARCHS[name] = fn
        return fn

    return add


def build(arch: str, num_classes: int) -> nn.Module:
    """A freshly initialised model of `arch` (one of ARCHS) with `num_classes` outputs."""
    check_choice("arch", arch, ARCHS)
    return ARCHS[arch](int(num_classes))


def feature_dim(model: nn.Module) -> int:
    return model.fc.in_features


def replace_head(model: nn.Module, num_classes: int) -> dict:
    """Put a new dense nn.Linear(features, num_classes) in place of `fc`, with PyTorch's default
    (Kaiming-uniform) init, as the paper does. Returns the sparsity change over conv+linear weights."""
    before = masks.global_sparsity(model)
    old = model.fc
    model.fc = nn.Linear(old.in_features, num_classes).to(old.weight.device)
    return {
        "head_sparsity_before": masks.sparsity(old.weight),
        "sparsity_before": before,
        "sparsity_after": masks.global_sparsity(model),
    }


def backbone(model: nn.Module) -> nn.Module:
    """The model without its classifier: outputs the penultimate (pooled) features. Shares every
    weight with `model` (a shallow copy with its own module table), so `model` keeps its head."""
    import copy

    b = copy.copy(model)
    b._modules = OrderedDict(model._modules)
    b.fc = nn.Identity()
    return b
