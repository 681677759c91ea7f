"""The offline mini suite: generated images standing in for ImageNet and for the downstream tasks.

Every image is an object -- a lobed shape (maybe hollow or elongated) or a stroke glyph, filled with
one of 8 textures in two colours -- on a background (gradient, stripes, blobs, noise, horizon, or
plain paper under writing) with clutter (distractor discs), pixel noise and pose (position, scale,
rotation). A *class* fixes some of these factors; the others are drawn per image as nuisance.
The upstream task (`upstream`, 128 classes: objects, scenes and glyphs, as ImageNet mixes objects,
scenes and text) and the downstream tasks share the low-level vocabulary (edges, strokes, textures,
colours, layouts) but not their classes: downstream classes are factor combinations, values, glyphs
or layouts that no upstream class has.

    imgs, labels, classes = generate("shapes10", "train", sizes, seed=0)

Generation is vectorised numpy (the drawing: sparsenb.data.render), deterministic in (task, split,
sizes, seed), and takes seconds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .render import GLYPHS, N_BG, N_TEX, hsv_to_rgb, render

GENERATOR_VERSION = 3  # bump when the renderer changes: it is part of every cache key

# --- tasks: which factors make a class ----------------------------------------------------------


def _nuisance(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Every factor drawn at random from its full range (what a class does not fix)."""
    return {
        "obj": np.zeros(n, np.float32),  # 0: lobed shape, 1: glyph (only where a class says so)
        "glyph": rng.integers(0, len(GLYPHS), n).astype(np.float32),
        "k": rng.choice([0, 3, 4, 5, 6, 7], n).astype(np.float32),
        "amp": rng.uniform(0.15, 0.45, n),
        "aspect": rng.uniform(0.55, 1.0, n),
        "hollow": (rng.random(n) < 0.3).astype(np.float32),
        "tex": rng.integers(0, N_TEX, n).astype(np.float32),
        "freq": rng.uniform(1.2, 3.5, n),
        "tangle": rng.uniform(0, np.pi, n),
        "hue1": rng.random(n),
        "hue2": rng.random(n),
        "bgtype": rng.integers(0, N_BG, n).astype(np.float32),
        "bghue": rng.random(n),
        "cx": rng.uniform(-0.3, 0.3, n),
        "cy": rng.uniform(-0.3, 0.3, n),
        "scale": rng.uniform(0.45, 0.75, n),
        "rot": rng.uniform(0, 2 * np.pi, n),
    }


def _pose(rng: np.random.Generator, n: int, scale=(0.45, 0.75), shift: float = 0.3, rot: float | None = None):
    """Per-image pose; `rot` None = any rotation, else a normal spread (radians) around upright."""
    return {
        "cx": rng.uniform(-shift, shift, n),
        "cy": rng.uniform(-shift, shift, n),
        "scale": rng.uniform(*scale, n),
        "rot": rng.uniform(0, 2 * np.pi, n) if rot is None else rng.normal(0, rot, n),
    }


# How a task photographs its objects (a large, centred object for fine-grained tasks, as in the
# paper's; glyphs are upright, as writing is). Everything else uses the nuisance pose above.
TASK_POSE = {
    "fine_colors24": dict(scale=(0.6, 0.85), shift=0.15),
    "fine_forms24": dict(scale=(0.6, 0.85), shift=0.15),
    "fine_pairs32": dict(scale=(0.6, 0.85), shift=0.15),
    "textures16": dict(scale=(1.2, 1.5), shift=0.1),
    "fine_textures20": dict(scale=(1.2, 1.5), shift=0.1),
    "small_objects48": dict(scale=(0.3, 0.45), shift=0.4),  # small, anywhere in the frame
}
GLYPH_POSE = dict(scale=(1.0, 1.35), shift=0.1, rot=0.2)

# Upstream classes: 48 objects, 24 scenes (background layout x fine hue, any object) and 56 glyphs (stroke
# characters, upright, most in dark ink on paper). An object class is a shape (lobes x elongation x hollow)
# in an appearance (texture x frequency x colour pair); every appearance is worn by 4 shapes and every
# shape by several appearances, so neither alone tells a class apart (as no single cue does in
# ImageNet). Downstream tasks use combinations, hues, layouts and factor groupings upstream lacks.
_UP_GRID = dict(
    k=[0, 3, 4, 5, 6],
    aspect=[1.0, 0.55],
    hollow=[0, 1],
    tex=[0, 1, 2, 3, 4],
    freq=[1.5, 3.0],
    hue1=[i / 12 for i in range(12)],
    hue_off=[0.33, 0.5],
)
_UP_SPLIT = {"appearances": 12, "shapes_per_appearance": 4, "glyphs": 56}  # scenes: layouts x hues below
_SCENE_LAYOUTS = [0, 2]  # gradient, blobs: upstream scenes are told apart by fine hue steps
_SCENE_HUES = {"upstream": [i / 24 for i in range(12)], "scenes20": [1 / 48, 7 / 48, 13 / 48, 19 / 48]}


def _object(shape, look, hue_shift: float = 0.0) -> dict:
    (k, aspect, hollow), (tex, freq, h1, off) = shape, look
    return dict(
        k=k, amp=0.3, aspect=aspect, hollow=hollow, tex=tex, freq=freq, hue1=h1 + hue_shift, hue2=h1 + hue_shift + off
    )


def _object_grid(rng: np.random.Generator):
    """Upstream object classes, one unused (shape, appearance) pair per appearance (shapes10) and five
    more (objects60): shapes an appearance never has upstream."""
    g = _UP_GRID
    shapes = list(itertools.product(g["k"], g["aspect"], g["hollow"]))
    # appearances come in twins: same texture and frequency, hues one grid step apart, so that
    # colour has to be seen finely (as texture and shape have to be)
    patterns = list(itertools.product(g["tex"], g["freq"]))
    step = g["hue1"][1] - g["hue1"][0]
    looks = []
    for pi in rng.permutation(len(patterns))[: _UP_SPLIT["appearances"] // 2]:
        h, off = g["hue1"][rng.integers(len(g["hue1"]))], g["hue_off"][rng.integers(len(g["hue_off"]))]
        looks += [(*patterns[pi], h, off), (*patterns[pi], (h + step) % 1.0, off)]
    used, unused, more = [], [], []
    for look in looks:
        order = rng.permutation(len(shapes))
        n = _UP_SPLIT["shapes_per_appearance"]
        used += [(shapes[i], look) for i in order[:n]]
        unused += [(shapes[i], look) for i in order[n : n + 1]]
        more += [(shapes[i], look) for i in order[n + 1 : n + 6]]
    return used, unused, more


@dataclass(frozen=True)
class TaskSpec:
    name: str
    num_classes: int  # upstream: the default; mini_data.upstream.classes may use fewer
    kind: str  # "upstream" | "general" | "specialized"
    metric: str  # "top1" | "mean_per_class"
    mirrors: str  # the paper dataset it stands in for
    description: str


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec(
            "upstream",
            128,
            "upstream",
            "top1",
            "ImageNet",
            "128 classes: 48 objects (shape x elongation x hollow in an appearance: texture x frequency x "
            "colour pair), 24 scenes (background layout x fine hue), "
            "56 stroke glyphs (upright; ink on paper or on a scene)",
        ),
        TaskSpec(
            "shapes10",
            10,
            "general",
            "top1",
            "CIFAR-10",
            "10 objects: upstream appearances on shapes they never have upstream",
        ),
        TaskSpec(
            "objects40",
            40,
            "general",
            "mean_per_class",
            "Caltech-101/256",
            "40 upstream objects in colours shifted off the upstream hues, mildly imbalanced",
        ),
        TaskSpec(
            "textures16",
            16,
            "general",
            "top1",
            "DTD",
            "8 textures (3 never a class upstream) x 2 frequencies on a large object; shape and colours are nuisance",
        ),
        TaskSpec(
            "scenes20",
            20,
            "general",
            "top1",
            "SUN397",
            "background layout (one new) x hues between the upstream scene hues; the object is nuisance",
        ),
        TaskSpec(
            "fine_shapes30",
            30,
            "specialized",
            "mean_per_class",
            "FGVC Aircraft / Stanford Cars",
            "30 stroke glyphs never seen upstream, told apart by single strokes, imbalanced; colours are nuisance",
        ),
        TaskSpec(
            "fine_colors24",
            24,
            "specialized",
            "mean_per_class",
            "Oxford Flowers",
            "five-lobed 'flowers' told apart by fine hue steps, imbalanced",
        ),
        # five more (issue 38: the paper's 12 tasks, 6 general and 6 specialized as its Sec. 3.3 groups them)
        TaskSpec(
            "objects60",
            60,
            "general",
            "top1",
            "CIFAR-100",
            "60 objects: each upstream appearance on five shapes it never has upstream",
        ),
        TaskSpec(
            "small_objects48",
            48,
            "general",
            "mean_per_class",
            "Caltech-256",
            "48 upstream objects in colours shifted the other way from objects40's, small and anywhere in a "
            "cluttered frame, mildly imbalanced",
        ),
        TaskSpec(
            "fine_textures20",
            20,
            "specialized",
            "top1",
            "Food-101",
            "4 textures x 5 fine frequency steps on a large object; shape and colours are nuisance",
        ),
        TaskSpec(
            "fine_forms24",
            24,
            "specialized",
            "mean_per_class",
            "Oxford-IIIT Pets",
            "lobed forms told apart by lobe count x lobe depth x elongation in one texture; colours are "
            "nuisance; imbalanced",
        ),
        TaskSpec(
            "fine_pairs32",
            32,
            "specialized",
            "mean_per_class",
            "Birdsnap",
            "striped elongated 'birds' told apart by their two colours (8 hues x 4 second-colour offsets), imbalanced",
        ),
        TaskSpec(
            "digits",
            10,
            "specialized",
            "top1",
            "(real images)",
            "scikit-learn's handwritten digits (8x8, real scans), upscaled to RGB",
        ),
    ]
}


def class_factors(task: str, seed: int, n_classes: int | None = None) -> tuple[list[dict], list[str]]:
    """The class-level factor values of a generated task and readable class names."""
    rng = np.random.default_rng([seed, 7919])
    used, unused, more = _object_grid(rng)
    if task == "upstream":
        scenes = [dict(bgtype=b, bghue=h) for b, h in itertools.product(_SCENE_LAYOUTS, _SCENE_HUES["upstream"])]
        glyphs = [dict(obj=1, glyph=g) for g in range(_UP_SPLIT["glyphs"])]
        combos = [_object(*c) for c in used] + scenes + glyphs
        combos = combos[: n_classes or len(combos)]
    elif task == "shapes10":  # new shapes for upstream appearances
        combos = [_object(*unused[i]) for i in rng.permutation(len(unused))[:10]]
    elif task == "objects40":
        shifted = [_object(*c, hue_shift=1 / 16) for c in used]
        combos = [shifted[i] for i in rng.permutation(len(shifted))[:40]]
    elif task == "textures16":
        combos = [dict(tex=t, freq=fq) for t, fq in itertools.product(range(N_TEX), [1.2, 2.6])]
    elif task == "scenes20":
        combos = [dict(bgtype=b, bghue=h) for b, h in itertools.product(range(N_BG), _SCENE_HUES["scenes20"])]
    elif task == "fine_shapes30":
        combos = [dict(obj=1, glyph=_UP_SPLIT["glyphs"] + g) for g in range(30)]  # glyphs never upstream
    elif task == "fine_colors24":
        combos = [
            dict(k=5, amp=0.4, aspect=1.0, hollow=0, tex=3, freq=2.0, hue1=h / 12 + 1 / 24, hue2=h / 12 + 1 / 24 + d)
            for h, d in itertools.product(range(12), [0.1, -0.1])
        ]
    elif task == "objects60":
        combos = [_object(*c) for c in more]
    elif task == "small_objects48":
        combos = [_object(*c, hue_shift=-1 / 16) for c in used]
    elif task == "fine_textures20":
        combos = [dict(tex=t, freq=fq) for t, fq in itertools.product([1, 3, 5, 7], [1.4, 1.8, 2.2, 2.6, 3.0])]
    elif task == "fine_forms24":
        combos = [
            dict(k=k, amp=a, aspect=e, hollow=0, tex=2)
            for k, a, e in itertools.product([3, 4, 5, 6, 7, 8], [0.2, 0.4], [1.0, 0.7])
        ]
    elif task == "fine_pairs32":
        combos = [
            dict(k=0, aspect=0.6, hollow=0, tex=1, freq=2.0, hue1=h / 8 + 1 / 32, hue2=h / 8 + 1 / 32 + d)
            for h, d in itertools.product(range(8), [0.15, 0.3, -0.15, -0.3])
        ]
    else:
        raise KeyError(task)
    names = ["-".join(f"{k}{_fmt(v)}" for k, v in c.items()) for c in combos]
    return combos, names


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


SPLIT_SEEDS = {"train": 1, "test": 2, "val": 3}  # each split its own random stream: no image in two


def class_counts(n_classes: int, per_class: int, imbalance: float = 1.0, seed: int = 0) -> np.ndarray:
    """Images per class: `per_class` for the largest class, decaying geometrically to
    per_class / imbalance for the smallest (classes in a seeded random order)."""
    if imbalance <= 1.0:
        return np.full(n_classes, per_class)
    decay = imbalance ** (-np.arange(n_classes) / max(n_classes - 1, 1))
    counts = np.maximum(1, np.round(per_class * decay)).astype(int)
    return np.random.default_rng(seed).permutation(counts)


def generate(
    task: str, split: str, sizes: dict, seed: int = 0, size: int = 32, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images (N, size, size, 3) uint8, labels (N,) int64 and class names of one split."""
    if task == "digits":
        return _digits(split, sizes["test_fraction"], sizes["val_fraction"], seed, size)
    combos, names = class_factors(task, seed, sizes.get("classes"))
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLIT_SEEDS)}")
    per = sizes[f"{split}_per_class"]
    imb = sizes.get("imbalance", 1.0)
    # the splits share the class sizes' order (a rare class is rare in all), validation and test at
    # 1/3 of the imbalance so every class keeps enough images for a stable mean per-class accuracy
    counts = class_counts(len(combos), per, imb if split == "train" else max(1.0, imb / 3), seed)
    labels = np.repeat(np.arange(len(combos)), counts)
    split_seed = SPLIT_SEEDS[split]
    task_seed = sum(map(ord, task))  # stable across interpreter runs, unlike hash()
    rng = np.random.default_rng([seed, task_seed, split_seed, GENERATOR_VERSION])
    f = _nuisance(rng, len(labels))
    if task in TASK_POSE:
        f.update(_pose(rng, len(labels), **TASK_POSE[task]))
    for j, combo in enumerate(combos):
        m = labels == j
        for key, val in combo.items():
            if key in f:
                f[key][m] = val
    glyph = f["obj"] > 0.5  # glyphs: upright strokes, plain proportions
    for key, val in _pose(rng, int(glyph.sum()), **GLYPH_POSE).items():
        f[key][glyph] = val
    f["aspect"][glyph], f["hollow"][glyph], f["tex"][glyph] = 1.0, 0.0, 4
    f["bgtype"][glyph & (rng.random(len(labels)) < 0.75)] = 5  # most writing is ink on paper
    # class-fixed continuous factors still jitter a little per image (no two images alike)
    f["hue1"] = f["hue1"] + rng.normal(0, 0.01, len(labels))
    f["hue2"] = f["hue2"] + rng.normal(0, 0.01, len(labels))
    f["freq"] = f["freq"] * rng.uniform(0.93, 1.07, len(labels))
    order = rng.permutation(len(labels))
    labels = labels[order]
    f = {k: np.asarray(v)[order] for k, v in f.items()}
    out = np.empty((len(labels), size, size, 3), np.uint8)
    for lo in range(0, len(labels), chunk):
        sl = slice(lo, lo + chunk)
        out[sl] = render({k: v[sl] for k, v in f.items()}, rng, size)
    return out, labels.astype(np.int64), names


def _digits(split: str, test_fraction: float, val_fraction: float, seed: int, size: int):
    """scikit-learn's 1,797 real 8x8 digit scans, upscaled (bilinear) and tinted to RGB.
    Split: per class, a seeded `test_fraction` of the images is test, `val_fraction` validation, the
    rest train (a real dataset: its test set cannot grow past 1,797 * test_fraction images)."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()
    rng = np.random.default_rng([seed, 10])
    part = np.zeros(len(d.target), np.int64)  # 0 train, 1 test, 2 val
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(d.target == c))
        n_test, n_val = int(round(len(idx) * test_fraction)), int(round(len(idx) * val_fraction))
        part[idx[:n_test]], part[idx[n_test : n_test + n_val]] = 1, 2
    keep = part == {"train": 0, "test": 1, "val": 2}[split]
    tint = hsv_to_rgb(rng.random(len(x)), np.full(len(x), 0.5), np.full(len(x), 1.0))
    paper = 1.0 - 0.15 * rng.random((len(x), 1, 1, 1)).astype(np.float32)
    img = paper * (1 - x[..., None]) + x[..., None] * tint[:, None, None, :] * 0.35
    img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return img[keep], d.target[keep].astype(np.int64), [str(i) for i in range(10)]
