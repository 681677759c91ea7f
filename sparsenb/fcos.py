"""Table 4 on the paper profile (issue 35): torchvision's FCOS (Tian et al. 2019, "FCOS: Fully
Convolutional One-Stage Object Detection") with a feature pyramid over layer2-4 of the published
sparse ResNet50, fully finetuned on PASCAL VOC (VOC07+12 trainval -> VOC2007 test,
sparsenb.data.voc) with the backbone's zero set fixed.

    net = fcos.build(backbone, 20, hp, mean, std)   # FCOS over backbone.layer2-4 (+ P6, P7)
    res = fcos.finetune(net, loaders, hp)           # {"train"|"val"|"test": DataLoader} -> detection.summary
    rec = fcos.run(spec)                            # one 09_detection run (a paper-profile DetectionSpec)

The backbone is the upstream model as every notebook loads it (`finetune.upstream_model`: the
published checkpoint, its sparsity checked against its label). Its BatchNorm layers train, as in
full finetuning (not torchvision's frozen BN), and every one of its convs keeps its zero set
(masks.FixedMask, as the mini detector and full finetuning do). The FPN (lateral and output convs,
P6 / P7) and FCOS's heads are new and dense: only the backbone is sparse. FCOS, not Faster R-CNN:
one stage and no proposals, closer to the paper's YOLO detectors, and one loss the backbone serves.

The recipe (params/paper.yaml `detection`) is the paper's VOC recipe, SparseML's YOLOv5 transfer
recipe: 50 epochs, lr 0.0032 rising linearly from 0 over 2 warm-up epochs then cosine to 0.000384,
SGD, with YOLOv5's VOC finetuning hyperparameters (momentum 0.843, weight decay 0.00036, 512-pixel
images). Not copied: YOLOv5's augmentation (mosaic, mixup, HSV, scale; here horizontal flips only),
its EMA of the weights, its warm-up of momentum and of the biases' lr, its decay-free BN and bias
groups -- and FCOS is not YOLO. mAP is COCO's 101-point AP (`detection.map_scores`), not VOC07's
11-point rule: compare gaps with Table 4, not absolute values.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn as nn

from . import detection, devices, upstream
from . import masks as masklib
from .data import voc
from .prune import target_sparsity


def _out_channels(stage: nn.Module) -> int:
    """The channels a ResNet stage puts out (its last block's last conv)."""
    return [m for m in stage[-1].modules() if isinstance(m, nn.Conv2d)][-1].out_channels


def build(backbone: nn.Module, num_classes: int, hp: dict, mean, std) -> nn.Module:
    """torchvision's FCOS with an FPN of `fpn_channels` over the backbone's layer2-4 and P6 / P7 from P5
    (torchvision's fcos_resnet50_fpn layout), images resized to `image_size` / `max_size` and
    normalised with `mean` / `std`, detections above `score_thresh`; torchvision's defaults else."""
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    ch = int(hp["fpn_channels"])
    stages = [f"layer{i}" for i in (2, 3, 4)]
    body = BackboneWithFPN(
        backbone,
        return_layers={s: str(i) for i, s in enumerate(stages)},
        in_channels_list=[_out_channels(getattr(backbone, s)) for s in stages],
        out_channels=ch,
        extra_blocks=LastLevelP6P7(ch, ch),
    )
    return FCOS(
        body,
        num_classes,
        min_size=int(hp["image_size"]),
        max_size=int(hp["max_size"]),
        image_mean=list(mean),
        image_std=list(std),
        score_thresh=float(hp["score_thresh"]),
    )


def backbone_masks(net: nn.Module) -> dict[str, torch.Tensor]:
    """The upstream zero set: every conv of the backbone (names as in `net`); the FPN and heads are new
    and dense."""
    return {f"backbone.body.{n}": m for n, m in masklib.from_weights(net.backbone.body, include_head=False).items()}


def lr_factor(hp: dict, steps_per_epoch: int):
    """The lr of step k (0-based) over `lr`: rising linearly from 0 over `warmup_epochs`, then cosine
    from 1 to final_lr / lr at the last epoch's end (SparseML's warm-up and cosine modifiers)."""
    epochs, warm, low = float(hp["epochs"]), float(hp["warmup_epochs"]), float(hp["final_lr"]) / float(hp["lr"])

    def factor(step: int) -> float:
        t = (step + 1) / steps_per_epoch  # epochs done after this step
        if t <= warm:
            return t / warm
        return low + (1 - low) * (1 + math.cos(math.pi * min(1.0, (t - warm) / max(epochs - warm, 1e-9)))) / 2

    return factor


def loaders(splits: dict[str, list], hp: dict, num_workers: int, seed: int) -> dict:
    """{"train"|"val"|"test": DataLoader} of the task's images: train shuffled and mirrored (seeded by
    the run's seed), the others in order; batches of `batch_size` as lists."""
    from torch.utils.data import DataLoader

    def one(split: str):
        train = split == "train"
        return DataLoader(
            voc.Detections(splits[split], flip=train),
            batch_size=int(hp["batch_size"]),
            shuffle=train,
            num_workers=num_workers,
            collate_fn=voc.collate,
            generator=torch.Generator().manual_seed(seed) if train else None,
            persistent_workers=num_workers > 0,
        )

    return {s: one(s) for s in ("train", "val", "test")}


def _on(dev, images, targets):
    return [x.to(dev) for x in images], [{k: v.to(dev) for k, v in t.items()} for t in targets]


def train_epoch(net: nn.Module, loader, opt, sched, fixed: masklib.FixedMask) -> float:
    """One epoch (the lr stepped after every batch); the mean of FCOS's summed losses per image."""
    net.train()
    dev, total, n = next(net.parameters()).device, 0.0, 0
    for images, targets in loader:
        loss = sum(net(*_on(dev, images, targets)).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        fixed.step(opt)
        sched.step()
        total, n = total + loss.item() * len(images), n + len(images)
    return total / max(n, 1)


@torch.no_grad()
def evaluate(net: nn.Module, loader) -> dict:
    """`detection.map_scores` of the detector's boxes (in each image's own pixels) over a loader."""
    net.eval()
    dev = next(net.parameters()).device

    def pairs():
        for images, targets in loader:
            out = net([x.to(dev) for x in images])
            yield [{k: v.cpu() for k, v in d.items()} for d in out], targets

    return detection.map_scores(pairs())


def finetune(net: nn.Module, loaders: dict, hp: dict, log=print) -> dict:
    """Full finetuning of the detector with the backbone's zero set fixed: SGD (lr, momentum,
    weight_decay on every parameter) under `lr_factor`, val and test scored every epoch; the epoch
    is chosen on validation mAP@0.5 (`detection.summary`: reported, best, final, the curve)."""
    fixed = masklib.FixedMask(net, backbone_masks(net))
    before = target_sparsity(net.backbone.body)
    opt = torch.optim.SGD(net.parameters(), lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(hp, max(len(loaders["train"]), 1)))
    curve, t0 = [], time.time()
    for epoch in range(1, int(hp["epochs"]) + 1):
        row = {"epoch": epoch, "lr": opt.param_groups[0]["lr"]}  # the lr of the epoch's first step
        row["loss"] = train_epoch(net, loaders["train"], opt, sched, fixed)
        for split in ("val", "test"):
            row.update({f"{split}_{k}": v for k, v in evaluate(net, loaders[split]).items()})
        curve.append(row)
        log(
            f"epoch {epoch}/{hp['epochs']}  loss {row['loss']:.3f}  val mAP@0.5 {row['val_map50']:.3f}  "
            f"({time.time() - t0:.0f} s)"
        )
    return detection.summary(curve, before, target_sparsity(net.backbone.body), time.time() - t0)


@devices.one_cpu_thread
def run(spec, device=None) -> dict:
    """One 09_detection run on the paper profile (a `specs.DetectionSpec`): the published upstream
    model as FCOS's backbone, finetuned on the task's VOC images (`finetune`); returns what its record
    keeps (test numbers at the epoch chosen on validation at the top)."""
    from . import finetune as ft

    cfg, device = spec.cfg, device or spec.device
    model, up = ft.upstream_model(spec, device)
    devices.seed_everything(spec.seed)  # the new FPN and heads' initialisation is part of the run
    net = build(model, len(voc.CLASSES), spec.hp, *upstream.norm_stats(cfg)).to(device)
    splits = voc.splits(cfg["data_root"], spec.sizes)
    res = finetune(net, loaders(splits, spec.hp, int(cfg["num_workers"]), spec.seed), spec.hp)
    return {
        **detection.record(spec, res, up),
        "classes": list(voc.CLASSES),
        **{f"{s}_size": len(items) for s, items in splits.items()},
        "test_objects": int(sum(len(it.labels) for it in splits["test"])),
        "examples": examples(net, splits["test"]),
    }


@torch.no_grad()
def examples(net: nn.Module, items: list, n: int = 8, min_score: float = 0.3) -> list:
    """The finished detector's boxes on the first `n` test images (score >= min_score) beside the
    true ones, with each image's id (the notebook's figure reads it again)."""
    net.eval()
    shown = items[:n]
    images = [voc.Detections(shown)[i][0] for i in range(len(shown))]
    out = net([x.to(next(net.parameters()).device) for x in images]) if shown else []
    return [
        {
            "image": it.id,
            "boxes": d["boxes"][d["scores"] >= min_score].cpu().round(decimals=1).tolist(),
            "labels": d["labels"][d["scores"] >= min_score].cpu().tolist(),
            "scores": d["scores"][d["scores"] >= min_score].cpu().round(decimals=3).tolist(),
            "true_boxes": it.boxes.tolist(),
            "true_labels": it.labels.tolist(),
        }
        for it, d in zip(shown, out)
    ]


def example_images(rec: dict, spec) -> tuple[list[np.ndarray], list[str]]:
    """The record's example test images (read again from data_root by their ids) and VOC's classes."""
    by_id = {it.id: it for it in voc.splits(spec.cfg["data_root"], spec.sizes)["test"]}
    return [np.asarray(voc.read_image(by_id[ex["image"]].path)) for ex in rec["examples"]], list(voc.CLASSES)
