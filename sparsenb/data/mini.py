"""The offline mini suite: generated images standing in for ImageNet and for the downstream tasks.

Every image is an object (a lobed shape, maybe hollow or elongated, filled with a texture in two
colours) on a background (gradient, stripes, blobs or noise) with clutter (distractor discs), pixel
noise and random pose (position, scale, rotation). A *class* fixes some of these factors; the
others are drawn per image as nuisance. The upstream task (`upstream`, 128 classes) and the
downstream tasks share the low-level vocabulary (edges, textures, colours) but not their classes:
downstream classes are factor combinations, values or factors that no upstream class has.

    imgs, labels, classes = generate("shapes10", "train", sizes, seed=0)

Generation is vectorised numpy, deterministic in (task, split, sizes, seed), and takes seconds.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

GENERATOR_VERSION = 1  # bump when the renderer changes: it is part of every cache key

# --- the renderer ----------------------------------------------------------------------------

FACTORS = ("k", "amp", "aspect", "hollow", "tex", "freq", "tangle", "hue1", "hue2", "bgtype", "bghue")
N_TEX = 5       # stripes, checker, dots, rings, gradient
N_BG = 4        # gradient, stripes, blobs, noise


def _hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB, all arrays in [0, 1]; returns (..., 3)."""
    h = np.mod(h, 1.0) * 6.0
    i = np.floor(h).astype(np.int64) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(np.shape(h) + (3,), dtype=np.float32)
    for idx, (r, g, b) in enumerate(choices):
        m = i == idx
        out[m] = np.stack([np.broadcast_to(r, h.shape)[m], np.broadcast_to(g, h.shape)[m],
                           np.broadcast_to(b, h.shape)[m]], -1)
    return out


def render(f: dict[str, np.ndarray], rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Draw one image per row of the factor arrays `f` (each shape (B,)); returns uint8 (B, H, W, 3)."""
    B = len(f["k"])
    lin = ((np.arange(size) + 0.5) / size * 2 - 1).astype(np.float32)
    yy, xx = np.meshgrid(lin, lin, indexing="ij")
    col = lambda a: np.asarray(a, np.float32)[:, None, None]  # noqa: E731

    # pose (per image nuisance)
    cx, cy = rng.uniform(-0.3, 0.3, B), rng.uniform(-0.3, 0.3, B)
    scale = rng.uniform(0.45, 0.75, B)
    rot = rng.uniform(0, 2 * np.pi, B)
    x, y = xx[None] - col(cx), yy[None] - col(cy)
    c, s = col(np.cos(rot)), col(np.sin(rot))
    u = (x * c + y * s) / col(scale)
    v = (-x * s + y * c) / col(scale * f["aspect"])
    r = np.hypot(u, v)
    th = np.arctan2(v, u)

    # object silhouette: r < R(theta), soft edge, optional hole
    amp, k = col(f["amp"]), col(f["k"])
    R = (1 + amp * np.cos(k * th)) / (1 + amp)
    alpha = np.clip((R - r) / 0.12 + 0.5, 0, 1)
    hole = np.clip((r - 0.5 * R) / 0.12 + 0.5, 0, 1)
    alpha = np.where(col(f["hollow"]) > 0.5, alpha * hole, alpha)

    # texture in object coordinates
    ta = col(f["tangle"])
    w1 = u * np.cos(ta) + v * np.sin(ta)
    w2 = -u * np.sin(ta) + v * np.cos(ta)
    fr = col(f["freq"]) * 2 * np.pi
    s1, s2 = np.sin(fr * w1), np.sin(fr * w2)
    textures = [
        0.5 + 0.5 * s1,                                   # stripes
        0.5 + 0.5 * np.tanh(4 * s1 * s2),                 # checker
        (s1 * s2 > 0.35).astype(np.float32),              # dots
        0.5 + 0.5 * np.sin(fr * 1.5 * r),                 # rings
        np.clip(0.5 + 0.6 * w1, 0, 1),                    # gradient
    ]
    tex = np.zeros_like(u)
    for i, t in enumerate(textures):
        tex = np.where(col(f["tex"]) == i, t, tex)

    sat = rng.uniform(0.55, 0.95, (B, 2))
    val = rng.uniform(0.6, 1.0, (B, 2))
    c1 = _hsv_to_rgb(f["hue1"], sat[:, 0], val[:, 0])[:, None, None, :]
    c2 = _hsv_to_rgb(f["hue2"], sat[:, 1], val[:, 1] * 0.6)[:, None, None, :]
    obj = tex[..., None] * c1 + (1 - tex[..., None]) * c2

    # background
    b0 = _hsv_to_rgb(f["bghue"], rng.uniform(0.2, 0.6, B), rng.uniform(0.3, 0.8, B))[:, None, None, :]
    b1 = _hsv_to_rgb(f["bghue"] + 0.5, rng.uniform(0.2, 0.6, B), rng.uniform(0.3, 0.8, B))[:, None, None, :]
    ga = rng.uniform(0, 2 * np.pi, B)
    gx, gy = col(np.cos(ga)), col(np.sin(ga))
    grad = 0.5 + 0.5 * (xx[None] * gx + yy[None] * gy)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * (xx[None] * gx + yy[None] * gy) + col(rng.uniform(0, 6.3, B)))
    blobs = np.zeros_like(grad)
    for _ in range(3):
        bx, by = col(rng.uniform(-1, 1, B)), col(rng.uniform(-1, 1, B))
        blobs = np.maximum(blobs, np.exp(-((xx[None] - bx) ** 2 + (yy[None] - by) ** 2) / 0.08))
    noise = np.zeros_like(grad)
    for _ in range(3):
        fx, fy = col(rng.uniform(-4, 4, B)), col(rng.uniform(-4, 4, B))
        noise += np.sin(fx * xx[None] * np.pi + fy * yy[None] * np.pi + col(rng.uniform(0, 6.3, B))) / 3
    noise = 0.5 + 0.5 * noise
    mix = np.zeros_like(grad)
    for i, m in enumerate([grad, stripes, blobs, noise]):
        mix = np.where(col(f["bgtype"]) == i, m, mix)
    bg = mix[..., None] * b1 + (1 - mix[..., None]) * b0

    # clutter: up to three small discs of random colour, behind the object
    for _ in range(3):
        on = col(rng.random(B) < 0.5)
        dx, dy = col(rng.uniform(-1, 1, B)), col(rng.uniform(-1, 1, B))
        rad = col(rng.uniform(0.08, 0.2, B))
        disc = np.clip((rad - np.hypot(xx[None] - dx, yy[None] - dy)) / 0.05 + 0.5, 0, 1) * on
        dc = _hsv_to_rgb(rng.random(B), rng.uniform(0.3, 0.9, B), rng.uniform(0.3, 1.0, B))[:, None, None, :]
        bg = bg * (1 - disc[..., None]) + dc * disc[..., None]

    img = bg * (1 - alpha[..., None]) + obj * alpha[..., None]
    img = img * col(rng.uniform(0.8, 1.2, B))[..., None] + col(rng.uniform(-0.08, 0.08, B))[..., None]
    img = img + rng.normal(0, 0.03, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


# --- tasks: which factors make a class ----------------------------------------------------------

def _nuisance(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Every factor drawn at random from its full range (what a class does not fix)."""
    return {
        "k": rng.choice([0, 3, 4, 5, 6, 7], n).astype(np.float32),
        "amp": rng.uniform(0.15, 0.45, n),
        "aspect": rng.uniform(0.55, 1.0, n),
        "hollow": (rng.random(n) < 0.3).astype(np.float32),
        "tex": rng.integers(0, N_TEX, n).astype(np.float32),
        "freq": rng.uniform(1.2, 4.5, n),
        "tangle": rng.uniform(0, np.pi, n),
        "hue1": rng.random(n),
        "hue2": rng.random(n),
        "bgtype": rng.integers(0, N_BG, n).astype(np.float32),
        "bghue": rng.random(n),
    }


# Upstream classes are drawn from this coarse grid; downstream "combination" tasks use grid
# points upstream does not have, or values off the grid.
_UP_GRID = dict(k=[0, 3, 4, 5, 6], aspect=[1.0, 0.55], hollow=[0, 1], tex=list(range(N_TEX)),
                freq=[1.5, 3.0], hue1=[i / 8 for i in range(8)], hue_off=[0.33, 0.5])


def _grid_combos(hue_shift: float = 0.0):
    g = _UP_GRID
    for k, aspect, hollow, tex, freq, h1, off in itertools.product(
            g["k"], g["aspect"], g["hollow"], g["tex"], g["freq"], g["hue1"], g["hue_off"]):
        yield dict(k=k, amp=0.3, aspect=aspect, hollow=hollow, tex=tex, freq=freq,
                   hue1=h1 + hue_shift, hue2=h1 + hue_shift + off)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str          # "upstream" | "general" | "specialized"
    metric: str        # "top1" | "mean_per_class"
    mirrors: str       # the paper dataset it stands in for
    description: str


TASKS: dict[str, TaskSpec] = {t.name: t for t in [
    TaskSpec("upstream", "upstream", "top1", "ImageNet",
             "128 classes: shape x elongation x hollow x texture x frequency x colour pair"),
    TaskSpec("shapes10", "general", "top1", "CIFAR-10",
             "10 factor combinations absent upstream"),
    TaskSpec("objects40", "general", "mean_per_class", "Caltech-101/256",
             "40 combinations in colours shifted off the upstream hues, mildly imbalanced"),
    TaskSpec("textures16", "general", "top1", "DTD",
             "texture x new frequency x angle; shape and colours are nuisance"),
    TaskSpec("scenes20", "general", "top1", "SUN397",
             "background layout x background hue; the object is nuisance"),
    TaskSpec("fine_shapes30", "specialized", "mean_per_class", "FGVC Aircraft / Stanford Cars",
             "fine steps of lobes x lobe depth x elongation, imbalanced; texture and colours are nuisance"),
    TaskSpec("fine_colors24", "specialized", "mean_per_class", "Oxford Flowers / Birdsnap",
             "five-lobed 'flowers' told apart by fine hue steps, imbalanced"),
    TaskSpec("digits", "specialized", "top1", "(real images)",
             "scikit-learn's handwritten digits (8x8, real scans), upscaled to RGB"),
]}


def class_factors(task: str, seed: int, n_classes: int | None = None) -> tuple[list[dict], list[str]]:
    """The class-level factor values of a generated task and readable class names."""
    rng = np.random.default_rng([seed, 7919])
    up = list(_grid_combos())
    up_idx = rng.permutation(len(up))
    if task == "upstream":
        combos = [up[i] for i in up_idx[: n_classes or 128]]
    elif task == "shapes10":
        combos = [up[i] for i in up_idx[128:138]]                    # never upstream classes
    elif task == "objects40":
        shifted = list(_grid_combos(hue_shift=1 / 16))
        combos = [shifted[i] for i in rng.permutation(len(shifted))[:40]]
    elif task == "textures16":
        combos = [dict(tex=t, freq=fq, tangle=a) for t, fq, a in
                  itertools.product(range(4), [2.2, 4.2], [0.0, np.pi / 2])]
    elif task == "scenes20":
        combos = [dict(bgtype=b, bghue=h) for b, h in itertools.product(range(N_BG), [0.0, 0.2, 0.4, 0.6, 0.8])]
    elif task == "fine_shapes30":
        combos = [dict(k=k, amp=a, aspect=asp) for k, a, asp in
                  itertools.product([3, 4, 5, 6, 7], [0.15, 0.3, 0.45], [1.0, 0.7])]
    elif task == "fine_colors24":
        combos = [dict(k=5, amp=0.4, aspect=1.0, hollow=0, tex=3, freq=2.0, hue1=h / 12 + 0.02, hue2=h / 12 + 0.02 + d)
                  for h, d in itertools.product(range(12), [0.1, -0.1])]
    else:
        raise KeyError(task)
    names = ["-".join(f"{k}{_fmt(v)}" for k, v in c.items()) for c in combos]
    return combos, names


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def class_counts(n_classes: int, per_class: int, imbalance: float = 1.0, seed: int = 0) -> np.ndarray:
    """Images per class: `per_class` for the largest class, decaying geometrically to
    per_class / imbalance for the smallest (classes in a seeded random order)."""
    if imbalance <= 1.0:
        return np.full(n_classes, per_class)
    decay = imbalance ** (-np.arange(n_classes) / max(n_classes - 1, 1))
    counts = np.maximum(1, np.round(per_class * decay)).astype(int)
    return np.random.default_rng(seed).permutation(counts)


def generate(task: str, split: str, sizes: dict, seed: int = 0, size: int = 32,
             chunk: int = 2048) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images (N, size, size, 3) uint8, labels (N,) int64 and class names of one split."""
    if task == "digits":
        return _digits(split, sizes.get("test_fraction", 0.4), seed, size)
    combos, names = class_factors(task, seed, sizes.get("classes"))
    per = sizes["train_per_class" if split == "train" else "test_per_class"]
    imb = sizes.get("imbalance", 1.0)
    # train and test share the class sizes' order (a rare class is rare in both), test at 1/3 of
    # the imbalance so every class keeps enough test images for a stable mean per-class accuracy
    counts = class_counts(len(combos), per, imb if split == "train" else max(1.0, imb / 3), seed)
    labels = np.repeat(np.arange(len(combos)), counts)
    split_seed = {"train": 1, "test": 2}[split]
    task_seed = sum(map(ord, task))  # stable across interpreter runs, unlike hash()
    rng = np.random.default_rng([seed, task_seed, split_seed, GENERATOR_VERSION])
    f = _nuisance(rng, len(labels))
    for j, combo in enumerate(combos):
        m = labels == j
        for key, val in combo.items():
            if key in f:
                f[key][m] = val
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


def _digits(split: str, test_fraction: float, seed: int, size: int):
    """scikit-learn's 1,797 real 8x8 digit scans, upscaled (bilinear) and tinted to RGB.
    Split: per class, a seeded `test_fraction` of the images is test, the rest train."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()
    rng = np.random.default_rng([seed, 10])
    is_test = np.zeros(len(d.target), bool)
    for c in range(10):
        idx = np.flatnonzero(d.target == c)
        is_test[rng.choice(idx, int(round(len(idx) * test_fraction)), replace=False)] = True
    keep = is_test if split == "test" else ~is_test
    tint = _hsv_to_rgb(rng.random(len(x)), np.full(len(x), 0.5), np.full(len(x), 1.0))
    paper = 1.0 - 0.15 * rng.random((len(x), 1, 1, 1)).astype(np.float32)
    img = paper * (1 - x[..., None]) + x[..., None] * tint[:, None, None, :] * 0.35
    img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return img[keep], d.target[keep].astype(np.int64), [str(i) for i in range(10)]
