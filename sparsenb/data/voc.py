"""PASCAL VOC detection (the paper profile's Table 4, issue 35): VOC07+12 trainval -> VOC2007 test,
read from `<data_root>/VOCdevkit` in the official layout (torchvision's `VOCDetection` layout):

    VOCdevkit/VOC2007/Annotations/<id>.xml, JPEGImages/<id>.jpg, ImageSets/Main/{trainval,test}.txt
    VOCdevkit/VOC2012/Annotations/<id>.xml, JPEGImages/<id>.jpg, ImageSets/Main/trainval.txt

    items = voc.splits(data_root, {"train": ["VOC2007/trainval", "VOC2012/trainval"], "test": ["VOC2007/test"],
                                   "val_fraction": 0.05, "split_seed": 0})   # {"train"|"val"|"test": [Item]}
    ds = voc.Detections(items["train"], flip=True)  # (image float (3, H, W) in [0, 1], {"boxes", "labels"})

Nothing is downloaded. The official XML is parsed here (torchvision's VOCDetection gives the same
dicts, parsed again at every access). "Difficult" objects are dropped (the paper's VOC recipe);
labels are indices into `CLASSES` (0-19); boxes are x1 y1 x2 y2 in pixels, VOC's 1-based
inclusive corners shifted to 0-based edges (x1 = xmin - 1, x2 = xmax: detectron2's reading). The
validation split is carved from the training images with a fixed seed (`carve`): it chooses the
reported epoch, never the test set.
"""

from __future__ import annotations

import functools
import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .base import DataError

CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
LAYOUT = (
    "VOCdevkit/VOC2007/{Annotations,JPEGImages,ImageSets/Main/{trainval,test}.txt} and "
    "VOCdevkit/VOC2012/{Annotations,JPEGImages,ImageSets/Main/trainval.txt}"
)
URL = "http://host.robots.ox.ac.uk/pascal/VOC/ (or torchvision.datasets.VOCDetection(download=True) elsewhere)"


class MissingVOC(DataError):
    """A VOC image set (or a file it lists) is not where it was looked for."""


@dataclass(frozen=True)
class Item:
    """One image: its id ("VOC2007/000005"), its file, its objects (difficult ones dropped)."""

    id: str
    path: str
    boxes: np.ndarray  # float32 (n, 4) x1 y1 x2 y2, pixels
    labels: np.ndarray  # int64 (n,), indices into CLASSES


def _missing(root: Path, what: str) -> MissingVOC:
    return MissingVOC(
        f"PASCAL VOC not found under {root} ({what}). Expected layout: {root}/{LAYOUT}. It is published at "
        f"{URL} (sparsenb never downloads data): place it there, or set data_root (-p data_root)."
    )


def parse(xml: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(boxes, labels) of one annotation file, difficult objects dropped."""
    boxes, labels = [], []
    for obj in ET.parse(xml).getroot().iter("object"):
        if int(obj.findtext("difficult") or 0):
            continue
        name = (obj.findtext("name") or "").strip()
        if name not in CLASSES:
            raise DataError(f"{xml}: object class {name!r} is not one of VOC's 20 ({', '.join(CLASSES)})")
        bb = obj.find("bndbox")
        x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append([x1 - 1, y1 - 1, x2, y2])
        labels.append(CLASSES.index(name))
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)


@functools.lru_cache(maxsize=16)
def read_set(root: str, image_set: str) -> tuple[Item, ...]:
    """The images of one set ("VOC2007/test": VOCdevkit/VOC2007/ImageSets/Main/test.txt), in the
    list's order, each with its parsed annotation."""
    year, _, split = image_set.partition("/")
    base = Path(root) / "VOCdevkit" / year
    listing = base / "ImageSets" / "Main" / f"{split}.txt"
    if not listing.is_file():
        raise _missing(Path(root), f"no {listing.relative_to(root)}")
    items = []
    for image_id in listing.read_text().split():
        xml, jpg = base / "Annotations" / f"{image_id}.xml", base / "JPEGImages" / f"{image_id}.jpg"
        if not xml.is_file():
            raise _missing(Path(root), f"{listing.name} lists {image_id} but {xml.relative_to(root)} is missing")
        items.append(Item(f"{year}/{image_id}", str(jpg), *parse(xml)))
    return tuple(items)


def carve(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of `n` images: a `fraction` of them (at least one when the fraction is
    not 0) drawn with `seed` for validation, both sorted; the same for the same (n, fraction, seed)."""
    n_val = max(1, round(fraction * n)) if fraction > 0 else 0
    val = np.sort(np.random.default_rng(seed).permutation(n)[:n_val])
    return np.setdiff1d(np.arange(n), val), val


def splits(root: str | Path, task: dict) -> dict[str, list[Item]]:
    """The task's train / val / test images (params `detection.tasks.<task>`): its training sets
    joined, `val_fraction` of them carved off with `split_seed`; its test sets joined."""
    pool = [it for s in task["train"] for it in read_set(str(root), s)]
    train, val = carve(len(pool), float(task["val_fraction"]), int(task["split_seed"]))
    test = [it for s in task["test"] for it in read_set(str(root), s)]
    return {"train": [pool[i] for i in train], "val": [pool[i] for i in val], "test": test}


def content_key(root: str | Path, task: dict) -> str:
    """A content key of the task's images (ids and every object kept; no image is read): a run's
    record names the data it read, and a changed annotation is another run."""
    h = hashlib.sha1(repr(sorted((k, v) for k, v in task.items())).encode())
    for name, items in splits(root, task).items():
        h.update(name.encode())
        for it in items:
            h.update(it.id.encode() + it.boxes.tobytes() + it.labels.tobytes())
    return h.hexdigest()


def read_image(path: str) -> Image.Image:
    """The RGB image at `path` (one error naming it when it cannot be read)."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as e:
        raise DataError(f"VOC: cannot read image {path} ({type(e).__name__}: {e}); copy the dataset again") from e


class Detections(Dataset):
    """Items as torchvision's detectors take them: (image float (3, H, W) in [0, 1], {"boxes": float32
    (n, 4), "labels": int64 (n,)}); `flip`: mirrored with probability 1/2 (torch's random state)."""

    def __init__(self, items: list[Item], flip: bool = False):
        self.items, self.flip = list(items), flip

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        it = self.items[i]
        x = torch.from_numpy(np.asarray(read_image(it.path), np.uint8).copy()).permute(2, 0, 1).float() / 255
        boxes = torch.from_numpy(it.boxes.copy())
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
            boxes[:, [0, 2]] = x.shape[-1] - boxes[:, [2, 0]]
        return x, {"boxes": boxes, "labels": torch.from_numpy(it.labels.copy())}


def collate(batch):
    """A batch as lists (images of different sizes): ([image, ...], [target, ...])."""
    images, targets = zip(*batch)
    return list(images), list(targets)
