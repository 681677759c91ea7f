"""The renderer of the mini suite's images: an object -- a lobed shape (maybe hollow or elongated)
or a stroke glyph, filled with one of 8 textures in two colours -- on a background, with clutter,
pixel noise and pose, one image per row of factor arrays. Which factors make a class is
sparsenb.data.mini's business; this module only draws.

    imgs = render(factors, rng, size=32)       # factors: name -> (B,) arrays; uint8 (B, size, size, 3)
"""

from __future__ import annotations

import numpy as np

FACTORS = (
    "obj",
    "glyph",
    "k",
    "amp",
    "aspect",
    "hollow",
    "tex",
    "freq",
    "tangle",
    "hue1",
    "hue2",
    "bgtype",
    "bghue",
    "cx",
    "cy",
    "scale",
    "rot",
)
TEXTURES = ("stripes", "checker", "dots", "rings", "gradient", "crosshatch", "waves", "sectors")
BACKGROUNDS = ("gradient", "stripes", "blobs", "noise", "horizon", "paper")
N_TEX = len(TEXTURES)
N_BG = 5  # nuisance backgrounds; "paper" (plain and light, for writing) only where a class says so


def _glyph_table(n: int = 96, seed: int = 12345) -> np.ndarray:
    """`n` distinct stroke glyphs (a tiny handwriting font): each three strokes between points of a
    3x3 grid, a stroke either straight (between neighbours, diagonals too) or a half circle (between
    points two steps apart, bulging to one side), the half circle drawn as 4 segments. Returns
    (n, 12, 2, 2) segment endpoints in object coordinates (unused segments repeat a point)."""
    gx, gy = (-0.5, 0.0, 0.5), (-0.65, 0.0, 0.65)
    pts = [np.array([gx[i % 3], gy[i // 3]]) for i in range(9)]
    strokes = []
    for i in range(9):
        for j in range(i + 1, 9):
            dx, dy = abs(i % 3 - j % 3), abs(i // 3 - j // 3)
            if max(dx, dy) == 1:
                strokes.append([(pts[i], pts[j])])
            if (dx, dy) in ((0, 1), (1, 0), (0, 2), (2, 0)):
                c, h = (pts[i] + pts[j]) / 2, (pts[j] - pts[i]) / 2
                normal = np.array([-h[1], h[0]])
                for side in (1, -1):
                    ang = np.linspace(0, np.pi, 5)
                    arc = [c - h * np.cos(a) + side * normal * np.sin(a) for a in ang]
                    strokes.append(list(zip(arc[:-1], arc[1:])))
    rng = np.random.default_rng(seed)
    seen, out = set(), []
    while len(out) < n:
        pick = tuple(sorted(rng.choice(len(strokes), 4, replace=False)))
        if pick not in seen:
            seen.add(pick)
            segs = [seg for k in pick for seg in strokes[k]]
            segs += [segs[-1][:1] * 2] * (16 - len(segs))
            out.append(segs)
    return np.asarray(out, np.float32)


GLYPHS = _glyph_table()


def hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB, all arrays in [0, 1]; returns (..., 3)."""
    h = np.mod(h, 1.0) * 6.0
    i = np.floor(h).astype(np.int64) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(np.shape(h) + (3,), dtype=np.float32)
    for idx, (r, g, b) in enumerate(choices):
        m = i == idx
        out[m] = np.stack(
            [np.broadcast_to(r, h.shape)[m], np.broadcast_to(g, h.shape)[m], np.broadcast_to(b, h.shape)[m]], -1
        )
    return out


def _select(index, options):
    """Per image, the option its integer `index` (B, 1, 1) names, from a list of (B, H, W) arrays."""
    out = np.zeros_like(options[0])
    for i, o in enumerate(options):
        out = np.where(index == i, o, out)
    return out


def _col(a) -> np.ndarray:
    """A (B,) array as float32 (B, 1, 1), to broadcast over an image."""
    return np.asarray(a, np.float32)[:, None, None]


def render(f: dict[str, np.ndarray], rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Draw one image per row of the factor arrays `f` (each shape (B,)); returns uint8 (B, H, W, 3).
    The steps draw from `rng` in this order (the generated data sets' digests depend on it)."""
    alpha, obj = object_layer(f, rng, size)
    img = background(f, rng, size)
    img = img * (1 - alpha[..., None]) + obj * alpha[..., None]
    return photograph(img, rng)


# The public primitives (the classification tasks compose them as `render` does; the detection tasks,
# sparsenb.data.detection, put several objects on one background). A change to any of them changes
# generated data: bump sparsenb.data.mini.GENERATOR_VERSION.


def canvas(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (yy, xx) in [-1, 1] of a size x size image."""
    lin = ((np.arange(size) + 0.5) / size * 2 - 1).astype(np.float32)
    return np.meshgrid(lin, lin, indexing="ij")


def object_layer(f: dict[str, np.ndarray], rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's object alone: its coverage (B, H, W) in [0, 1] and its colours (B, H, W, 3)."""
    yy, xx = canvas(size)
    u, v, r, th = _pose(f, xx, yy)
    alpha = _silhouette(f, u, v, r, th)
    return alpha, _object_colours(f, _texture(f, u, v, r, th), rng)


def background(f: dict[str, np.ndarray], rng: np.random.Generator, size: int) -> np.ndarray:
    """Each row's background (`bgtype`, `bghue`) with its clutter discs, float (B, H, W, 3)."""
    yy, xx = canvas(size)
    return _clutter(_background(f, rng, xx, yy), rng, xx, yy)


def photograph(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure, offset and pixel noise per image, then uint8."""
    B = len(img)
    img = img * _col(rng.uniform(0.8, 1.2, B))[..., None] + _col(rng.uniform(-0.08, 0.08, B))[..., None]
    img = img + rng.normal(0, 0.03, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _pose(f, xx, yy):
    """Object coordinates (u, v) of every pixel, their radius r and angle th; the object's radius is 1."""
    x, y = xx[None] - _col(f["cx"]), yy[None] - _col(f["cy"])
    c, s = _col(np.cos(f["rot"])), _col(np.sin(f["rot"]))
    u = (x * c + y * s) / _col(f["scale"])
    v = (-x * s + y * c) / _col(f["scale"] * f["aspect"])
    return u, v, np.hypot(u, v), np.arctan2(v, u)


def _silhouette(f, u, v, r, th) -> np.ndarray:
    """The object's coverage in [0, 1]: a lobed shape r < R(theta) with a soft edge, maybe hollow,
    or a glyph (`obj` > 0.5)."""
    amp, k = _col(f["amp"]), _col(f["k"])
    R = (1 + amp * np.cos(k * th)) / (1 + amp)
    alpha = np.clip((R - r) / 0.12 + 0.5, 0, 1)
    hole = np.clip((r - 0.5 * R) / 0.12 + 0.5, 0, 1)
    alpha = np.where(_col(f["hollow"]) > 0.5, alpha * hole, alpha)
    return np.where(_col(f["obj"]) > 0.5, _glyph(f, u, v), alpha)


def _glyph(f, u, v) -> np.ndarray:
    """The glyph's strokes: the distance to the nearest segment below the stroke width, soft-edged."""
    segs = GLYPHS[np.asarray(f["glyph"], np.int64) % len(GLYPHS)]  # (B, 3, 2, 2)
    dist = np.full_like(u, 9.0)
    for j in range(segs.shape[1]):
        p0, p1 = segs[:, j, 0], segs[:, j, 1]
        d = p1 - p0
        t = ((u - _col(p0[:, 0])) * _col(d[:, 0]) + (v - _col(p0[:, 1])) * _col(d[:, 1])) / _col(
            np.maximum((d**2).sum(1), 1e-6)
        )
        t = np.clip(t, 0, 1)
        dist = np.minimum(
            dist, np.hypot(u - _col(p0[:, 0]) - t * _col(d[:, 0]), v - _col(p0[:, 1]) - t * _col(d[:, 1]))
        )
    return np.clip((0.25 - dist) / 0.25 + 0.5, 0, 1)


def _texture(f, u, v, r, th) -> np.ndarray:
    """The texture `tex` in object coordinates, in [0, 1] (the mix of the object's two colours)."""
    ta = _col(f["tangle"])
    w1 = u * np.cos(ta) + v * np.sin(ta)
    w2 = -u * np.sin(ta) + v * np.cos(ta)
    fr = _col(f["freq"]) * 2 * np.pi
    s1, s2 = np.sin(fr * w1), np.sin(fr * w2)
    return _select(
        _col(f["tex"]),
        [
            0.5 + 0.5 * s1,  # stripes
            0.5 + 0.5 * np.tanh(4 * s1 * s2),  # checker
            (s1 * s2 > 0.35).astype(np.float32),  # dots
            0.5 + 0.5 * np.sin(fr * 1.5 * r),  # rings
            np.clip(0.5 + 0.6 * w1, 0, 1),  # gradient
            np.maximum(s1, s2) > 0.6,  # crosshatch
            0.5 + 0.5 * np.sin(fr * w1 + 2.0 * np.sin(fr * 0.5 * w2)),  # waves
            0.5 + 0.5 * np.sin(np.round(_col(f["freq"]) * 2.5) * th),  # sectors
        ],
    ).astype(np.float32)


def _object_colours(f, tex, rng) -> np.ndarray:
    """The object's pixels: its texture in hues hue1 and hue2 (random saturation and value); dark ink on paper."""
    B = len(f["k"])
    sat = rng.uniform(0.55, 0.95, (B, 2))
    val = rng.uniform(0.6, 1.0, (B, 2))
    c1 = hsv_to_rgb(f["hue1"], sat[:, 0], val[:, 0])[:, None, None, :]
    c2 = hsv_to_rgb(f["hue2"], sat[:, 1], val[:, 1] * 0.6)[:, None, None, :]
    obj = tex[..., None] * c1 + (1 - tex[..., None]) * c2
    return np.where(_col(f["bgtype"])[..., None] == 5, obj * 0.35, obj)  # on paper: dark ink


def _background(f, rng, xx, yy) -> np.ndarray:
    """A layout (`bgtype`) mixing two colours: hue bghue and its complement; paper is plain and light."""
    B, size = len(f["k"]), xx.shape[0]
    b0 = hsv_to_rgb(f["bghue"], rng.uniform(0.25, 0.65, B), rng.uniform(0.3, 0.8, B))[:, None, None, :]
    b1 = hsv_to_rgb(f["bghue"] + 0.5, rng.uniform(0.25, 0.65, B), rng.uniform(0.3, 0.8, B))[:, None, None, :]
    ga = rng.uniform(0, 2 * np.pi, B)
    gx, gy = _col(np.cos(ga)), _col(np.sin(ga))
    blobs = np.zeros((B, size, size), np.float32)
    for _ in range(3):
        bx, by = _col(rng.uniform(-1, 1, B)), _col(rng.uniform(-1, 1, B))
        blobs = np.maximum(blobs, np.exp(-((xx[None] - bx) ** 2 + (yy[None] - by) ** 2) / 0.08))
    noise = np.zeros_like(blobs)
    for _ in range(3):
        fx, fy = _col(rng.uniform(-4, 4, B)), _col(rng.uniform(-4, 4, B))
        noise += np.sin(fx * xx[None] * np.pi + fy * yy[None] * np.pi + _col(rng.uniform(0, 6.3, B))) / 3
    tilt = _col(rng.uniform(-0.3, 0.3, B))
    mix = _select(
        _col(f["bgtype"]),
        [
            0.5 + 0.5 * (xx[None] * gx + yy[None] * gy),  # gradient
            0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * (xx[None] * gx + yy[None] * gy) + _col(rng.uniform(0, 6.3, B))),
            blobs,
            0.5 + 0.5 * noise,
            1 / (1 + np.exp(-(yy[None] + tilt * xx[None] - _col(rng.uniform(-0.4, 0.4, B))) / 0.06)),  # horizon
            np.zeros_like(blobs),  # paper
        ],
    )
    paper = hsv_to_rgb(f["bghue"], rng.uniform(0.0, 0.15, B), rng.uniform(0.8, 1.0, B))[:, None, None, :]
    b0 = np.where(_col(f["bgtype"])[..., None] == 5, paper, b0)
    return mix[..., None] * b1 + (1 - mix[..., None]) * b0


def _clutter(bg, rng, xx, yy) -> np.ndarray:
    """Up to three small discs of random colour on the background (behind the object)."""
    B = len(bg)
    for _ in range(3):
        on = _col(rng.random(B) < 0.5)
        dx, dy = _col(rng.uniform(-1, 1, B)), _col(rng.uniform(-1, 1, B))
        rad = _col(rng.uniform(0.08, 0.2, B))
        disc = np.clip((rad - np.hypot(xx[None] - dx, yy[None] - dy)) / 0.05 + 0.5, 0, 1) * on
        dc = hsv_to_rgb(rng.random(B), rng.uniform(0.3, 0.9, B), rng.uniform(0.3, 1.0, B))[:, None, None, :]
        bg = bg * (1 - disc[..., None]) + dc * disc[..., None]
    return bg
