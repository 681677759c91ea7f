"""Batches for training and evaluation, from FFCV `.beton` files or a torchvision DataLoader.

Both backends apply the same transforms (see `transforms`): "eval" = resize + centre crop (in the
`order` given: the paper profile's official Resize(256) -> CenterCrop(224), or the mini profile's
crop-then-resize), "train" = random resized crop + flip; both normalise and yield (float NCHW
images, int64 labels). In the official order ffcv evaluates from an eval-ready `.beton` (the
official crops stored raw: the same pixels); its training decoder approximates torchvision's
RandomResizedCrop (OpenCV INTER_AREA on re-encoded JPEGs, see README).
ffcv is the fast path (JPEG decoding and augmentation in compiled code, several processes);
the torch backend is the fallback where ffcv cannot be installed, and what the mini profile uses.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import devices, files
from ..progress import log
from . import transforms as tr
from .base import DataError

BACKENDS = ("torch", "ffcv")
MODES = ("eval", "train")


def write_beton(
    dataset,
    path: str | os.PathLike,
    max_resolution: int | None = None,
    jpeg_quality: int = 90,
    raw: bool = False,
    num_workers: int = 1,
    prepare=None,
) -> Path:
    """Write a dataset of (PIL image | HWC uint8 array, int label) items to an FFCV `.beton`.

    Images are stored as JPEG (`raw=False`, the paper setting) or raw pixels, at most
    `max_resolution` on their longer side, after `prepare` (image -> image) when given: an
    eval-ready file stores `transforms.eval_geometry(size)`'s crops, raw. Written to a temporary
    file and renamed, so a killed write never leaves a truncated `.beton` behind."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    path = Path(path)
    fields = {
        "image": RGBImageField(
            write_mode="raw" if raw else "jpg", max_resolution=max_resolution, jpeg_quality=jpeg_quality
        ),
        "label": IntField(),
    }
    dataset = with_transform(dataset, None)  # raw images in the file
    with files.atomic(path) as tmp:
        log = tmp.with_name(tmp.name + ".errors")
        try:
            DatasetWriter(str(tmp), fields, num_workers=num_workers).from_indexed_dataset(
                _Reported(dataset, log, prepare)
            )
            bad = log.read_text().splitlines() if log.exists() else []
        finally:
            log.unlink(missing_ok=True)
        if bad:  # raised inside the `atomic` block: the partial file is removed, nothing is renamed
            raise DataError(
                f"{len(bad)} item(s) of {getattr(dataset, 'name', '') or 'the dataset'} could not be "
                f"read while writing {path.name}; the first: {bad[0]}"
            )
    return path


def with_transform(dataset, transform):
    """A view of `dataset` whose items go through `transform`: a shallow copy (images and samples
    shared), so the dataset given is never changed -- another loader over it keeps its own."""
    view = copy.copy(dataset)
    view.transform = transform
    return view


class _Reported:
    """The dataset as ffcv's writer processes read it, except that an item that fails to load is
    written down (index, error) in `log` and replaced by a black placeholder -- an exception inside
    a writer process would otherwise hang the writer forever -- so the write can end and fail."""

    def __init__(self, dataset, log: Path, prepare=None):
        self.dataset, self.log, self.prepare = dataset, Path(log), prepare

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        try:
            img, label = self.dataset[i]
            return (self.prepare(img) if self.prepare is not None else img), label
        except Exception as e:  # noqa: BLE001 - reported after the write, as one DataError
            with open(self.log, "a") as f:
                f.write(f"item {i}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}\n")
            return np.zeros((8, 8, 3), np.uint8), 0


def check_beton(path: str | os.PathLike) -> None:
    """Raise DataError when `path` is not a complete, readable `.beton`."""
    from ffcv.reader import Reader

    path = Path(path)
    if not path.exists():
        raise DataError(f"no .beton at {path}: write it with sparsenb.data.write_beton(dataset, '{path}')")
    try:
        reader = Reader(str(path))
        n = int(reader.num_samples)
        alloc = reader.alloc_table
        end = int((alloc["ptr"] + alloc["size"]).max()) if len(alloc) else 0
        size = path.stat().st_size
    except Exception as e:
        raise DataError(
            f"{path} is not a readable .beton ({type(e).__name__}: {e}); delete it and "
            f"write it again with sparsenb.data.write_beton"
        ) from e
    if n <= 0 or end > size:
        raise DataError(
            f"{path} is truncated or corrupt ({n} samples, data up to byte {end} but the file "
            f"has {size}); delete it and write it again with sparsenb.data.write_beton"
        )


def usable_workers(num_workers: int) -> int:
    """ffcv's decoding threads (numba) must number between 1 and the cores this process may use: more
    is clamped (numba would stop with "The number of threads must be between 1 and N")."""
    return max(1, min(int(num_workers), devices.cores()))


def ffcv_pipelines(mode, size, mean, std, scale, device=None, eval_ready: bool = False) -> dict:
    """ffcv's image and label pipelines. On a GPU (`device` cuda) the decoded uint8 batch is copied to
    the device (non-blocking, pinned) and normalised there, channels_last, as ffcv-imagenet does: the
    host decodes, the GPU does the arithmetic, and a quarter of the bytes cross the bus. Elsewhere
    the batch is normalised on the CPU (ffcv's numba kernel) into a float tensor.

    "eval" is ffcv's CenterCropRGBImageDecoder. From an `eval_ready` .beton (each image stored raw
    as the official Resize(256) -> CenterCrop(224) made it, `transforms.eval_geometry`) it takes the
    whole size x size image unchanged: the official pipeline's pixels. Otherwise it crops the centre
    224/256 of the short side and resizes it once with OpenCV's INTER_AREA (the mini profile's
    order, from the re-encoded JPEG)."""
    from ffcv.fields.decoders import CenterCropRGBImageDecoder, IntDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.transforms import NormalizeImage, RandomHorizontalFlip, Squeeze, ToDevice, ToTensor, ToTorchImage

    if mode == "train":
        image = [RandomResizedCropRGBImageDecoder((size, size), scale=tuple(scale)), RandomHorizontalFlip()]
    else:
        image = [CenterCropRGBImageDecoder((size, size), ratio=1.0 if eval_ready else tr.CROP_RATIO)]
    normalize = NormalizeImage(np.array(mean) * 255, np.array(std) * 255, np.float32)
    label = [IntDecoder(), ToTensor(), Squeeze(1)]
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        image += [ToTensor(), ToDevice(device, non_blocking=True), ToTorchImage(channels_last=True), normalize]
        label += [ToDevice(device, non_blocking=True)]
    else:
        image += [normalize, ToTensor(), ToTorchImage(channels_last=False)]
    return {"image": image, "label": label}


def check_eval_ready(beton, size: int) -> None:
    """Raise DataError unless every image of `beton` is size x size (an eval-ready file)."""
    from ffcv.reader import Reader

    meta = Reader(str(beton)).metadata["f0"]  # the image field's (mode, width, height, ...)
    if not (np.all(meta["width"] == size) and np.all(meta["height"] == size)):
        raise DataError(
            f"{beton} holds images of other sizes than {size}x{size}, so ffcv cannot evaluate in the "
            f"official order from it: write it eval-ready with write_beton(dataset, path, raw=True, "
            f"prepare=transforms.eval_geometry({size})) (data.prepare.beton_for does this for test splits)"
        )


def _ffcv_loader(beton, mode, size, mean, std, batch_size, shuffle, num_workers, seed, drop_last, scale, device, order):
    from ffcv.loader import Loader, OrderOption

    check_beton(beton)
    eval_ready = mode == "eval" and order == "resize_crop"
    if eval_ready:
        check_eval_ready(beton, size)
    return FFCVBatches(
        Loader(
            str(beton),
            batch_size=batch_size,
            num_workers=usable_workers(num_workers),
            order=OrderOption.RANDOM if shuffle else OrderOption.SEQUENTIAL,
            seed=seed,
            drop_last=drop_last,
            os_cache=True,
            pipelines=ffcv_pipelines(mode, size, mean, std, scale, device, eval_ready),
        )
    )


class FFCVBatches:
    """An ffcv Loader made safe to use like a DataLoader: ffcv reuses its output buffers (a batch
    kept past the next step would silently change), so batches are copied; and its reader thread
    is closed when iteration stops early (otherwise the interpreter aborts at exit)."""

    def __init__(self, ffcv_loader):
        self.loader = ffcv_loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        it = iter(self.loader)
        try:
            for images, labels in it:
                yield images.clone(), labels.clone().long()
        finally:
            it.close()


def loader(
    dataset=None,
    mode: str = "eval",
    size: int = 224,
    mean=tr.IMAGENET_MEAN,
    std=tr.IMAGENET_STD,
    batch_size: int = 64,
    shuffle: bool = False,
    backend: str = "torch",
    beton=None,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    scale=(0.08, 1.0),
    bicubic: bool = False,
    device=None,
    order: str = "crop_resize",
):
    """An iterable of (images, labels) batches over `dataset` (torch) or `beton` (ffcv).

    `order`: the evaluation transform's (`transforms.ORDERS`; the paper profile's "resize_crop" is
    the official Resize -> CenterCrop, the default "crop_resize" the mini profile's).

    With backend="ffcv" and a `dataset`, the `.beton` is written first when `beton` does not exist
    (eval-ready for mode "eval" in the "resize_crop" order: `ffcv_pipelines`); with a cuda `device`,
    ffcv's batches arrive on it, normalised there."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    if backend == "ffcv" and bicubic and dataset is not None:
        # ffcv's decoders resize with OpenCV's INTER_AREA only: RigL's bicubic preprocessing (the paper's,
        # for its checkpoints) would be silently replaced, so those runs read through torch instead
        log(f"{mode} loader: bicubic resize (RigL) is not available in ffcv; this split reads through torch")
        backend = "torch"
    if backend == "ffcv":
        _ensure_beton(beton, dataset, mode, size, order)
        return _ffcv_loader(
            beton, mode, size, mean, std, batch_size, shuffle, num_workers, seed, drop_last, scale, device, order
        )
    if dataset is None:
        raise ValueError("backend='torch' needs a dataset")
    if isinstance(getattr(dataset, "images", None), np.ndarray) and not hasattr(dataset, "samples"):
        return ArrayBatches(dataset, mode, size, mean, std, batch_size, shuffle, seed, drop_last, scale, bicubic, order)
    transform = (
        tr.train_augment(size, mean, std, scale, bicubic)
        if mode == "train"
        else tr.evaluation(size, mean, std, bicubic, order)
    )
    return DataLoader(
        with_transform(dataset, transform),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),  # page-locked batches: the copy to a GPU overlaps compute
    )


def _ensure_beton(beton, dataset, mode: str, size: int, order: str) -> None:
    """The ffcv backend's `.beton`, written from `dataset` when missing (eval-ready for mode "eval"
    in the "resize_crop" order)."""
    if beton is None:
        raise ValueError("backend='ffcv' needs beton=<path to .beton> (written from `dataset` if missing)")
    if Path(beton).exists():
        return
    if dataset is None:
        raise DataError(f"no .beton at {beton} and no dataset to write it from")
    if mode == "eval" and order == "resize_crop":
        write_beton(dataset, beton, raw=True, prepare=tr.eval_geometry(size))
    else:
        write_beton(dataset, beton)


class ArrayBatches:
    """The torch backend's fast path for datasets held in memory (the mini suite): each batch is
    transformed as one tensor instead of image by image through PIL.
    - eval, order "crop_resize": centre crop of 224/256 of the short side, antialiased resize to
      `size` (as `evaluation`); order "resize_crop": antialiased resize of the short side to
      `transforms.resize_size(size)`, then the centre `size` x `size` (torchvision's rounding);
    - train: a random resized crop per image (area fraction in `scale`, aspect ratio in [3/4, 4/3],
      as RandomResizedCrop samples them) and a random horizontal flip, done by one grid_sample."""

    def __init__(
        self, dataset, mode, size, mean, std, batch_size, shuffle, seed, drop_last, scale, bicubic, order="crop_resize"
    ):
        if order not in tr.ORDERS:
            raise ValueError(f"unknown evaluation order {order!r}; valid: {', '.join(tr.ORDERS)}")
        self.order = order
        self.images, self.targets = dataset.images, torch.as_tensor(np.asarray(dataset.targets))
        self.mode, self.size, self.batch_size, self.shuffle, self.drop_last = mode, size, batch_size, shuffle, drop_last
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.scale, self.interp = tuple(scale), "bicubic" if bicubic else "bilinear"
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.targets)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _eval(self, x):
        h, w = x.shape[-2:]
        side = max(1, int(round(min(h, w) * tr.CROP_RATIO)))
        top, left = int(round((h - side) / 2)), int(round((w - side) / 2))
        x = x[..., top : top + side, left : left + side]
        return torch.nn.functional.interpolate(
            x, size=(self.size, self.size), mode=self.interp, antialias=True, align_corners=False
        )

    def _resize_crop(self, x):
        """uint8 batch -> float: torchvision's uint8 antialiased resize (the one closest to PIL's)
        of the short side, then the centre crop."""
        from torchvision.transforms.v2 import functional as F

        mode = F.InterpolationMode.BICUBIC if self.interp == "bicubic" else F.InterpolationMode.BILINEAR
        x = F.resize(x, [tr.resize_size(self.size)], interpolation=mode, antialias=True)
        return F.center_crop(x, [self.size, self.size]).float().div_(255)

    def _train(self, x):
        import math

        b, g = x.shape[0], self.gen
        area = torch.empty(b).uniform_(*self.scale, generator=g)
        logr = torch.empty(b).uniform_(math.log(3 / 4), math.log(4 / 3), generator=g)
        ratio = torch.exp(logr)
        cw = torch.sqrt(area * ratio).clamp(max=1.0)  # crop size as a fraction of the image side
        ch = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (torch.rand(b, generator=g) * 2 - 1) * (1 - cw)
        cy = (torch.rand(b, generator=g) * 2 - 1) * (1 - ch)
        flip = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2] = cw * flip, cx
        theta[:, 1, 1], theta[:, 1, 2] = ch, cy
        grid = torch.nn.functional.affine_grid(theta, (b, 3, self.size, self.size), align_corners=False)
        return torch.nn.functional.grid_sample(
            x, grid, mode=self.interp, padding_mode="reflection", align_corners=False
        )

    def __iter__(self):
        n = len(self.targets)
        order = torch.randperm(n, generator=self.gen) if self.shuffle else torch.arange(n)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = torch.from_numpy(self.images[idx.numpy()]).permute(0, 3, 1, 2)
            if self.mode == "eval" and self.order == "resize_crop":
                x = self._resize_crop(x.contiguous())
            else:
                x = x.float().div_(255)
                x = self._train(x) if self.mode == "train" else self._eval(x)
            yield (x - self.mean) / self.std, self.targets[idx]
