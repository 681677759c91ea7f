"""Generated detection tasks (issue 35; the paper's Table 4 in the mini profile): 64x64 scenes with
1-4 objects of the task's classes and 0-2 distractors (objects of upstream classes, never labelled)
on the classification tasks' backgrounds, drawn by the same renderer (sparsenb.data.render), with
boxes from the silhouettes.

    images, targets, classes = generate("det_shapes10", "train", {"train_images": 500}, seed=0)
    targets[i]  # {"boxes": float32 (n, 4) x1 y1 x2 y2 in pixels, "labels": int64 (n,)}

Objects sit in the cells of a jittered 3x3 grid (so that they overlap a little, never wholly), each
at a size drawn per object; a box is the extent of the object's pixels left visible (coverage > 0.5)
once the objects drawn after it are on top; an object less than half visible is not labelled (it is
still drawn). Deterministic in (task, split, sizes, seed, size).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import mini
from .render import background, object_layer, photograph

DETECTION_VERSION = 1  # bump when the scene layout changes (with mini.GENERATOR_VERSION, in every cache key)


@dataclass(frozen=True)
class DetectionTask:
    name: str
    source: str  # the classification task whose classes it detects (sparsenb.data.mini.TASKS)
    num_classes: int
    mirrors: str
    description: str


TASKS: dict[str, DetectionTask] = {
    t.name: t
    for t in [
        DetectionTask(
            "det_shapes10", "shapes10", 10, "PASCAL VOC", "shapes10's objects: upstream appearances on new shapes"
        ),
        DetectionTask(
            "det_objects10", "objects40", 10, "PASCAL VOC", "10 of objects40's: upstream objects in shifted colours"
        ),
        DetectionTask(
            "det_flowers12", "fine_colors24", 12, "PASCAL VOC", "12 of fine_colors24's flowers, told apart by hue"
        ),
    ]
}

SPLIT_SEEDS = {"train": 11, "val": 13, "test": 12}
_GRID = (-0.55, 0.0, 0.55)  # cell centres (image coordinates in [-1, 1])


def _objects(rng: np.random.Generator, combos: list[dict], n: int, scale=(0.2, 0.32)) -> dict[str, np.ndarray]:
    """Factor arrays of `n` objects, each of a random combo of `combos` (its class index in 'cls')."""
    f = mini._nuisance(rng, n)
    cls = rng.integers(0, len(combos), n)
    for j, combo in enumerate(combos):
        for key, val in combo.items():
            if key in f:
                f[key][cls == j] = val
    f["scale"] = rng.uniform(*scale, n)
    glyph = f["obj"] > 0.5  # writing: upright strokes, plain proportions (as in the classification tasks)
    f["rot"] = np.where(glyph, rng.normal(0, 0.2, n), f["rot"])
    f["aspect"][glyph], f["hollow"][glyph], f["tex"][glyph] = 1.0, 0.0, 4
    f["hue1"] = f["hue1"] + rng.normal(0, 0.01, n)
    f["hue2"] = f["hue2"] + rng.normal(0, 0.01, n)
    f["cls"] = cls
    return f


def generate(task: str, split: str, sizes: dict, seed: int = 0, size: int = 64) -> tuple[np.ndarray, list, list]:
    """Images (N, size, size, 3) uint8, one target dict per image, class names."""
    if task not in TASKS:
        raise KeyError(f"unknown detection task {task!r}; valid: {', '.join(TASKS)}")
    spec = TASKS[task]
    combos, names = mini.class_factors(spec.source, seed)
    combos, names = combos[: spec.num_classes], names[: spec.num_classes]
    upstream, _ = mini.class_factors("upstream", seed)
    n_img = int(sizes[f"{split}_images"])
    rng = np.random.default_rng([seed, sum(map(ord, task)), SPLIT_SEEDS[split], DETECTION_VERSION])
    n_obj = rng.integers(1, 5, n_img)
    n_dis = rng.integers(0, 3, n_img)
    total = n_obj + n_dis
    targets = _objects(rng, combos, int(n_obj.sum()))
    distract = _objects(rng, upstream, int(n_dis.sum()))
    bg = mini._nuisance(rng, n_img)
    img = background(bg, rng, size)
    ti = di = 0
    out = []
    for i in range(n_img):
        cells = rng.permutation(9)[: total[i]]
        kinds = rng.permutation(np.r_[np.ones(n_obj[i], bool), np.zeros(n_dis[i], bool)])  # drawing order
        f, is_target = {}, []
        for k, cell in zip(kinds, cells):
            src, j = (targets, ti) if k else (distract, di)
            ti, di = (ti + 1, di) if k else (ti, di + 1)
            for key, val in src.items():
                f.setdefault(key, []).append(val[j])
            f["cx"][-1] = _GRID[cell % 3] + rng.uniform(-0.12, 0.12)
            f["cy"][-1] = _GRID[cell // 3] + rng.uniform(-0.12, 0.12)
            f["bgtype"][-1], f["bghue"][-1] = bg["bgtype"][i], bg["bghue"][i]  # ink on paper where paper
            is_target.append(bool(k))
        f = {key: np.asarray(v) for key, v in f.items()}
        alpha, rgb = object_layer(f, rng, size)
        boxes, labels = [], []
        for o in range(len(alpha)):
            img[i] = img[i] * (1 - alpha[o][..., None]) + rgb[o] * alpha[o][..., None]
        for o in range(len(alpha)):
            own = alpha[o] > 0.5
            visible = own & ~np.any(alpha[o + 1 :] > 0.5, axis=0)
            if is_target[o] and visible.sum() >= 0.5 * max(own.sum(), 1) and visible.any():
                ys, xs = np.nonzero(visible)
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                labels.append(int(f["cls"][o]))
        out.append({"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": np.asarray(labels, np.int64)})
    return photograph(img, rng), out, names
