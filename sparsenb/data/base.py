"""What every dataset module shares: the error a user can act on, a dataset's description, the
in-memory dataset of generated images, the split names. The registry and the paper loaders both
import it (and nothing else of each other's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..errors import UserError

SPLITS = ("train", "val", "test")  # "val": mini tasks only (the paper's datasets have train/test)


class DataError(UserError, RuntimeError):
    """A dataset that is missing, incomplete or corrupt; the message says what to do."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    metric: str  # "top1" | "mean_per_class" (Table 2)
    kind: str  # "general" | "specialized" | "upstream"
    profile: str  # "paper" | "mini"
    title: str
    train_test: tuple[int, int] | None = None  # Table 2 sizes (paper datasets)


class ArrayDataset(Dataset):
    """Images held in memory as uint8 (N, H, W, 3); items are (PIL image or transform(image), label)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: list[str], transform=None, name: str = ""):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.targets, self.classes = images, np.asarray(labels, np.int64), list(classes)
        self.transform, self.name = transform, name

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i])
        return (self.transform(img) if self.transform else img), int(self.targets[i])
