"""Sparse transfer to object detection (the paper's Table 4; issue 35): the upstream backbone, its
zero set held fixed, inside a detector that is new and dense, fully finetuned on a detection task.

The mini detector is CenterNet-style (Zhou et al. 2019, "Objects as Points"): the backbone's
stride-4 and stride-8 stages merged by a two-level FPN into one stride-4 map, and three light heads
on it -- a class heatmap of object centres (penalty-reduced focal loss on Gaussian peaks), box
width/height and the centre's sub-cell offset (L1 at the centres). Written here because torchvision
has no CenterNet and its FCOS needs a stride-8+ pyramid that a 64-pixel image cannot feed (a
prototype: CenterNet 0.799 vs FCOS 0.759 mAP@0.5 in 12 epochs, 1.3x faster).

    net = CenterNet(backbone, num_classes=10)
    out = net(images)                      # {"heat": (B, C, H/4, W/4), "wh": (B, 2, ...), "offset": ...}
    preds = decode(out)                    # per image {"boxes" x1y1x2y2 px, "scores", "labels"}
    metrics = evaluate(net, images, targets)   # torchmetrics MeanAveragePrecision (faster-coco-eval)

COCO's 101-point interpolated AP (torchmetrics) is neither VOC07's 11-point rule nor YOLOv5's: compare
gaps with Table 4, never absolute values. `map_scores` (mAP of any detector's boxes) and `summary`
(a record's numbers from the per-epoch curve) serve the paper profile's detector too (sparsenb.fcos);
`sparsenb.detectors` picks the profile's.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import devices, train
from . import masks as masklib
from .prune import target_sparsity

STRIDE = 4  # the output map's stride (the stem and layer2 each halve the image)


def _head(ch: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(ch, out, 1))


class CenterNet(nn.Module):
    """The mini backbone (a MiniResNet: conv1/bn1, layer1..layerN) with a stride-4 FPN and heads."""

    def __init__(self, backbone: nn.Module, num_classes: int, ch: int = 64):
        super().__init__()
        self.backbone = backbone  # its expand / fc are not used
        n = backbone.num_stages
        self.taps = (f"layer{n - 1}", f"layer{n}")  # stride 4 and stride 8 with a stride-2 stem
        c4, c8 = (getattr(backbone, t)[-1].conv2.out_channels for t in self.taps)
        self.lat4, self.lat8 = nn.Conv2d(c4, ch, 1), nn.Conv2d(c8, ch, 1)
        self.smooth = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True))
        self.heads = nn.ModuleDict({"heat": _head(ch, num_classes), "wh": _head(ch, 2), "offset": _head(ch, 2)})
        nn.init.constant_(self.heads["heat"][-1].bias, -2.19)  # sigmoid 0.1: CenterNet's prior

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b = self.backbone
        x = b.relu(b.bn1(b.conv1(x)))
        for i in range(1, b.num_stages - 1):
            x = getattr(b, f"layer{i}")(x)
        c4 = getattr(b, self.taps[0])(x)
        c8 = getattr(b, self.taps[1])(c4)
        p = self.smooth(self.lat4(c4) + F.interpolate(self.lat8(c8), size=c4.shape[-2:], mode="nearest"))
        return {k: h(p) for k, h in self.heads.items()}


def gaussian_radius(h: float, w: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius: the largest centre shift that keeps IoU >= min_overlap (its three cases)."""
    o = min_overlap
    cases = (
        (1, h + w, w * h * (1 - o) / (1 + o)),
        (4, 2 * (h + w), (1 - o) * w * h),
        (4 * o, -2 * o * (h + w), (o - 1) * w * h),
    )
    return min((b + math.sqrt(b**2 - 4 * a * c)) / 2 for a, b, c in cases)  # / 2, as CenterNet's code has it


def encode(targets: list[dict], num_classes: int, size: int, max_objects: int = 8) -> dict[str, torch.Tensor]:
    """Training targets on the stride-4 map: Gaussian centre peaks per class, and at each object's
    centre cell its box size and sub-cell offset (in map cells)."""
    n, m = len(targets), size // STRIDE
    heat = np.zeros((n, num_classes, m, m), np.float32)
    reg = np.zeros((n, max_objects, 4), np.float32)  # w, h, dx, dy
    ind = np.zeros((n, max_objects), np.int64)
    on = np.zeros((n, max_objects), np.float32)
    yy, xx = np.mgrid[0:m, 0:m]
    for i, t in enumerate(targets):
        for j, (box, label) in enumerate(zip(t["boxes"][:max_objects] / STRIDE, t["labels"][:max_objects])):
            w, h = box[2] - box[0], box[3] - box[1]
            c = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
            ci = np.minimum(c.astype(int), m - 1)
            sigma = (2 * max(0, int(gaussian_radius(h, w))) + 1) / 6
            g = np.exp(-((xx - ci[0]) ** 2 + (yy - ci[1]) ** 2) / (2 * sigma**2))
            heat[i, label] = np.maximum(heat[i, label], g)
            reg[i, j], ind[i, j], on[i, j] = (w, h, *(c - ci)), ci[1] * m + ci[0], 1.0
    return {k: torch.from_numpy(v) for k, v in dict(heat=heat, reg=reg, ind=ind, on=on).items()}


def loss(out: dict[str, torch.Tensor], enc: dict[str, torch.Tensor], wh_weight: float = 0.1) -> torch.Tensor:
    """Penalty-reduced focal loss on the heatmap (alpha 2, beta 4) + L1 on size (x wh_weight) and offset,
    normalised by the number of objects."""
    p = out["heat"].sigmoid().clamp(1e-4, 1 - 1e-4)
    gt = enc["heat"]
    pos = gt.eq(1).float()
    focal = -(pos * (1 - p) ** 2 * p.log() + (1 - pos) * (1 - gt) ** 4 * p**2 * (1 - p).log()).sum()
    n = enc["on"].sum().clamp_min(1.0)
    b, _, h, w = out["wh"].shape
    reg = torch.cat([out["wh"], out["offset"]], 1).reshape(b, 4, h * w)
    at = reg.gather(2, enc["ind"][:, None, :].expand(-1, 4, -1)).permute(0, 2, 1)  # (B, K, 4)
    l1 = (at - enc["reg"]).abs() * enc["on"][..., None]
    return (focal + wh_weight * l1[..., :2].sum() + l1[..., 2:].sum()) / n


@torch.no_grad()
def decode(out: dict[str, torch.Tensor], k: int = 32) -> list[dict[str, torch.Tensor]]:
    """Peaks of the heatmap (3x3 max-pool NMS, the top k over classes and cells) as boxes in pixels."""
    heat = out["heat"].sigmoid()
    heat = heat * (F.max_pool2d(heat, 3, 1, 1) == heat)
    b, c, h, w = heat.shape
    scores, idx = heat.reshape(b, -1).topk(min(k, c * h * w))
    labels, cell = idx // (h * w), idx % (h * w)
    ys, xs = (cell // w).float(), (cell % w).float()
    reg = torch.cat([out["wh"], out["offset"]], 1).reshape(b, 4, h * w)
    wh, off = (reg.gather(2, cell[:, None, :].expand(-1, 4, -1))[:, s] for s in (slice(0, 2), slice(2, 4)))
    cx, cy = xs + off[:, 0], ys + off[:, 1]
    boxes = torch.stack([cx - wh[:, 0] / 2, cy - wh[:, 1] / 2, cx + wh[:, 0] / 2, cy + wh[:, 1] / 2], -1) * STRIDE
    return [{"boxes": boxes[i], "scores": scores[i], "labels": labels[i]} for i in range(b)]


def channel_stats(images: np.ndarray) -> tuple[tuple, tuple]:
    """Per-channel mean and std in [0, 1] of uint8 training images (N, H, W, 3): the run's normalisation."""
    flat = images.reshape(-1, 3)
    return tuple(flat.mean(0) / 255), tuple(flat.std(0) / 255)


def batches(images: np.ndarray, targets: list[dict], batch: int, mean, std, rng=None):
    """(x normalised (B, 3, H, W), targets) in order, or shuffled and half of them mirrored when `rng`."""
    order = rng.permutation(len(images)) if rng is not None else np.arange(len(images))
    mean, std = (torch.tensor(v, dtype=torch.float32)[:, None, None] for v in (mean, std))
    for lo in range(0, len(order), batch):
        idx = order[lo : lo + batch]
        x = torch.from_numpy(images[idx]).permute(0, 3, 1, 2).float() / 255
        t = [dict(targets[i]) for i in idx]
        if rng is not None:
            flip = rng.random(len(idx)) < 0.5
            x[flip] = x[flip].flip(-1)
            for j in np.flatnonzero(flip):
                b = t[j]["boxes"].copy()
                b[:, [0, 2]] = x.shape[-1] - b[:, [2, 0]]
                t[j] = {**t[j], "boxes": b}
        yield (x - mean) / std, t


@torch.no_grad()
def evaluate(net: nn.Module, images: np.ndarray, targets: list[dict], mean, std, batch: int = 128) -> dict:
    """`map_scores` of the detector on scenes (N, H, W, 3) with their targets."""
    net.eval()
    dev = next(net.parameters()).device

    def pairs():
        for x, t in batches(images, targets, batch, mean, std):
            preds = [{k: v.cpu() for k, v in d.items()} for d in decode(net(x.to(dev)))]
            yield preds, [{"boxes": torch.from_numpy(d["boxes"]), "labels": torch.from_numpy(d["labels"])} for d in t]

    return map_scores(pairs())


def map_scores(pairs) -> dict:
    """mAP@0.5 (the paper's), mAP@[.5:.95] and mAP@0.75 (COCO's 101-point AP, torchmetrics with the
    faster-coco-eval backend), and AP@0.5 per class, of batches of (predictions, true boxes): lists of
    {"boxes", "scores", "labels"} and {"boxes", "labels"} per image (tensors, x1 y1 x2 y2 pixels)."""
    from torchmetrics.detection import MeanAveragePrecision

    coco = MeanAveragePrecision(backend="faster_coco_eval")
    at50 = MeanAveragePrecision(backend="faster_coco_eval", iou_thresholds=[0.5], class_metrics=True)
    for preds, gts in pairs:
        coco.update(preds, gts)
        at50.update(preds, gts)
    a, b = coco.compute(), at50.compute()
    per_class = {int(c): round(float(v), 4) for c, v in zip(b["classes"].view(-1), b["map_per_class"].view(-1))}
    return {
        "map50": float(a["map_50"]),
        "map50_95": float(a["map"]),
        "map75": float(a["map_75"]),
        "ap50_per_class": per_class,
    }


def backbone_masks(net: CenterNet) -> dict[str, torch.Tensor]:
    """The upstream zero set: every conv of the backbone (names as in `net`); the FPN and heads are new
    and dense."""
    return {f"backbone.{n}": m for n, m in masklib.from_weights(net.backbone, include_head=False).items()}


def finetune(net: CenterNet, splits: dict, hp: dict, seed: int = 0, log=print) -> dict:
    """Full finetuning of the detector with the backbone's zero set fixed (masks.FixedMask, as
    classification's full finetuning): SGD with the step schedule of `hp` (lr, momentum,
    weight_decay, batch_size, epochs, milestones, gamma), mirrored training images; val and test
    scored every epoch. `splits`: {"train"|"val"|"test": (images, targets)}. The epoch is chosen on
    validation mAP@0.5; its test numbers are `reported`."""
    devices.seed_everything(seed)
    images, targets = splits["train"]
    mean, std = channel_stats(images)
    dev = next(net.parameters()).device
    fixed = masklib.FixedMask(net, backbone_masks(net))
    before = target_sparsity(net.backbone)
    opt, sched = train._sgd(net.parameters(), hp)
    rng, curve, t0 = np.random.default_rng(seed), [], time.time()
    for epoch in range(1, int(hp["epochs"]) + 1):
        net.train()
        total = 0.0
        for x, t in batches(images, targets, int(hp["batch_size"]), mean, std, rng):
            enc = {k: v.to(dev) for k, v in encode(t, net.heads["heat"][-1].out_channels, x.shape[-1]).items()}
            out = loss(net(x.to(dev)), enc)
            opt.zero_grad(set_to_none=True)
            out.backward()
            fixed.step(opt)
            total += out.item() * len(t)
        sched.step()
        row = {"epoch": epoch, "loss": total / len(images)}
        for split in ("val", "test"):
            m = evaluate(net, *splits[split], mean, std)
            row.update({f"{split}_{k}": v for k, v in m.items()})
        curve.append(row)
        log(
            f"epoch {epoch}/{hp['epochs']}  loss {row['loss']:.3f}  val mAP@0.5 {row['val_map50']:.3f}  "
            f"({time.time() - t0:.0f} s)"
        )
    return summary(curve, before, target_sparsity(net.backbone), time.time() - t0)


def summary(curve: list[dict], before: float, after: float, seconds: float) -> dict:
    """The run's numbers as every record has them (`reported`: test mAP@0.5 at the epoch chosen on
    validation mAP@0.5; `best`, `final`), with every metric at those epochs beside them."""
    chosen = max(curve, key=lambda r: r["val_map50"])
    at = lambda r: {k[5:]: v for k, v in r.items() if k.startswith("test_")}  # noqa: E731
    best = {k: max(r[f"test_{k}"] for r in curve) for k in ("map50", "map50_95", "map75")}
    return {
        "metric": "map50",
        "reported": chosen["test_map50"],
        "reported_epoch": chosen["epoch"],
        "best": best["map50"],
        "final": curve[-1]["test_map50"],
        "reported_metrics": at(chosen),
        "best_metrics": best,
        "final_metrics": at(curve[-1]),
        "curve": [{k: v for k, v in r.items() if "per_class" not in k} for r in curve],
        "sparsity_before": before,
        "sparsity_after": after,
        "seconds": seconds,
    }


@devices.one_cpu_thread
def run(spec, device=None) -> dict:
    """One 09_detection run (a `specs.DetectionSpec`): the upstream model as the detector's backbone
    (its sparsity checked against its label), the task's scenes generated, finetuned (`finetune`);
    returns what its record keeps (test numbers at the epoch chosen on validation at the top)."""
    from . import finetune as ft
    from .data import detection as scenes

    model, up = ft.upstream_model(spec, device)
    devices.seed_everything(spec.seed)  # the new FPN and heads' initialisation is part of the run
    num_classes = scenes.TASKS[spec.task].num_classes
    net = CenterNet(model, num_classes, int(spec.hp["fpn_channels"])).to(device or spec.device)
    size = int(spec.hp["image_size"])
    splits = {s: scenes.generate(spec.task, s, spec.sizes, spec.data_seed, size)[:2] for s in ("train", "val", "test")}
    res = finetune(net, splits, spec.hp, seed=spec.seed)
    shown = examples(net, splits["test"], splits["train"][0])
    return {
        **record(spec, res, up),
        "train_size": len(splits["train"][0]),
        "test_objects": int(sum(len(t["labels"]) for t in splits["test"][1])),
        "examples": shown,
    }


def record(spec, res: dict, up: dict) -> dict:
    """What every 09_detection record holds, whichever detector ran: the task, the test numbers at
    the epoch chosen on validation at the top, `finetune`'s summary, the backbone's sparsity after
    finetuning and its upstream model."""
    rep = res["reported_metrics"]
    return {
        "dataset": spec.task,
        "upstream_seed": spec.upstream_seed,
        **{k: rep[k] for k in ("map50", "map50_95", "map75", "ap50_per_class")},
        **{k: v for k, v in res.items() if k != "sparsity_after"},
        "achieved_sparsity": res["sparsity_after"],
        "upstream_top1": up.get("top1"),
        "upstream_sha256": up["sha256"],
    }


@torch.no_grad()
def examples(net: nn.Module, test: tuple, train_images: np.ndarray, n: int = 8, min_score: float = 0.3) -> list:
    """The finished detector's boxes on the first `n` test scenes (score >= min_score) beside the true
    ones, for the notebook's figure (the scenes are regenerated from the run's spec)."""
    mean, std = channel_stats(train_images)
    images, targets = test[0][:n], test[1][:n]
    net.eval()
    x, _ = next(batches(images, targets, n, mean, std))
    out = []
    for d, t in zip(decode(net(x.to(next(net.parameters()).device))), targets):
        keep = d["scores"] >= min_score
        out.append(
            {
                "boxes": d["boxes"][keep].cpu().round(decimals=1).tolist(),
                "labels": d["labels"][keep].cpu().tolist(),
                "scores": d["scores"][keep].cpu().round(decimals=3).tolist(),
                "true_boxes": t["boxes"].tolist(),
                "true_labels": t["labels"].tolist(),
            }
        )
    return out


def figure(rec: dict, images: np.ndarray, class_names: list[str], path=None):
    """The record's example test scenes: true boxes (white, dashed) and the detector's (one colour per
    class, with its score)."""
    import matplotlib.pyplot as plt

    from . import plots

    n = len(rec["examples"])
    fig, axes = plt.subplots(1, n, figsize=(1.9 * n, 2.2))
    cmap = plt.get_cmap("tab20")
    for ax, img, ex in zip(np.atleast_1d(axes), images, rec["examples"]):
        ax.imshow(img)
        for (x1, y1, x2, y2), lab in zip(ex["true_boxes"], ex["true_labels"]):
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="white", ls="--", lw=1))
        for (x1, y1, x2, y2), lab, sc in zip(ex["boxes"], ex["labels"], ex["scores"]):
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=cmap(lab % 20), lw=1.5))
            ax.text(x1, y1 - 1, f"{lab} {sc:.2f}", color=cmap(lab % 20), fontsize=6)
        ax.set_axis_off()
    fig.suptitle(
        f"{rec['method']} {rec['sparsity']:.0%} on {rec['dataset']}: test mAP@0.5 {rec['map50']:.3f} "
        f"(dashed: true boxes; the finished detector's with score >= 0.3)",
        fontsize=8,
    )
    fig.tight_layout()
    return plots._save(fig, path)


def example_images(rec: dict, spec) -> tuple[np.ndarray, list[str]]:
    """The test scenes of the record's examples (regenerated from its spec) and the task's class names."""
    from .data import detection as scenes

    images, _, names = scenes.generate(spec.task, "test", spec.sizes, spec.data_seed, spec.hp["image_size"])
    return images[: len(rec["examples"])], names


def curve_rows(rec: dict) -> list[dict]:
    """The per-epoch curve as `plots.curve` draws it (mAP@0.5 in place of accuracy)."""
    return [
        {"epoch": r["epoch"], "loss": r["loss"], "accuracy": r["test_map50"], "val_accuracy": r["val_map50"]}
        for r in rec["curve"]
    ]
