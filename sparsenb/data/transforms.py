"""The paper's transforms, at any resolution (224 for the paper, 32 for the mini profile).

- linear finetuning: Resize(size*256/224) -> CenterCrop(size), ImageNet mean/std, no augmentation;
- full finetuning, train: RandomResizedCrop(size) + horizontal flip, the dataset's own mean/std;
- full finetuning, test: Resize -> CenterCrop, the dataset's own mean/std.
RigL checkpoints were trained on bicubic-resized images: pass `bicubic=True` for them.

The evaluation transform has two orders (`ORDERS`, the profile's `eval_transform`):
- "resize_crop" (paper profile): the official scripts' order (IST-DASLab/sparse-imagenet-transfer
  utils/transfer/constants.py:44-51, finetune_pre_extracted_features.py:181-186): Resize(256) of the
  short side on the PIL image (bilinear; bicubic for RigL), CenterCrop(224), ToTensor, Normalize --
  the same torchvision PIL operations, so the same tensors;
- "crop_resize" (mini profile, unchanged): the centre 224/256 of the short side, then one resize.
  Same region, another resampling grid (11-19% relative L2 off the official order on 224 px inputs).
"""

from __future__ import annotations

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# the evaluation crop of the paper's code: Resize(256) -> CenterCrop(224) keeps 224/256 of the short side
CROP_RATIO = 224 / 256
ORDERS = ("resize_crop", "crop_resize")


def resize_size(size: int) -> int:
    """The resize before the centre crop: 256 for 224, in proportion elsewhere."""
    return int(round(size / CROP_RATIO))


def _v2():
    from torchvision.transforms import v2  # on demand (~1.5 s): in-memory datasets never need it

    return v2


def _interp(bicubic: bool):
    from torchvision.transforms import InterpolationMode

    return InterpolationMode.BICUBIC if bicubic else InterpolationMode.BILINEAR


def _to_float(mean, std):
    T = _v2()
    return [T.ToDtype(torch.float32, scale=True), T.Normalize(list(mean), list(std))]


class CenterCropFraction(torch.nn.Module):
    """The centre square of side `ratio` x the short side (224/256: what Resize(256) -> CenterCrop(224)
    keeps of any image), so it can be cropped first and resized once, as FFCV's decoder does."""

    def __init__(self, ratio: float = CROP_RATIO):
        super().__init__()
        self.ratio = ratio

    def forward(self, img):
        h, w = img.shape[-2:]
        side = max(1, int(round(min(h, w) * self.ratio)))
        return _v2().functional.center_crop(img, [side, side])

    def __repr__(self) -> str:
        return f"CenterCropFraction(ratio={self.ratio:.6f})"


class Evaluation:
    """The evaluation transform (linear finetuning and every test split), in one of two `ORDERS`:
    - "resize_crop": Resize(resize_size(size)) of the short side -> CenterCrop(size) -> normalise,
      on the PIL image (torchvision's PIL kernels: the official pipeline's tensors);
    - "crop_resize": centre crop of 224/256 of the short side -> one antialiased resize to `size` ->
      normalise (the mini profile's).
    Built on first use; in-memory datasets get the same operations on whole batches instead
    (`loaders.ArrayBatches`, see `features.extract_features`)."""

    def __init__(self, size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD, bicubic: bool = False, order="crop_resize"):
        if order not in ORDERS:
            raise ValueError(f"unknown evaluation order {order!r}; valid: {', '.join(ORDERS)}")
        self.size, self.mean, self.std, self.bicubic = int(size), tuple(mean), tuple(std), bool(bicubic)
        self.order = order
        self._compose = None

    def geometry(self) -> list:
        """The steps before normalisation: a PIL image in, a uint8 image tensor (C, H, W) out."""
        T = _v2()
        if self.order == "resize_crop":
            return [eval_geometry(self.size, self.bicubic), T.ToImage()]
        return [
            T.ToImage(),
            CenterCropFraction(CROP_RATIO),
            T.Resize([self.size, self.size], interpolation=_interp(self.bicubic), antialias=True),
        ]

    def compose(self):
        if self._compose is None:
            self._compose = _v2().Compose([*self.geometry(), *_to_float(self.mean, self.std)])
        return self._compose

    def __call__(self, img):
        return self.compose()(img)

    def __repr__(self) -> str:  # stable, and part of the feature-cache key
        interp = "BICUBIC" if self.bicubic else "BILINEAR"
        if self.order == "resize_crop":
            return (
                f"Evaluation(PIL Resize({resize_size(self.size)}, {interp}), CenterCrop({self.size}), "
                f"Normalize({self.mean}, {self.std}))"
            )
        return (  # the mini profile's, unchanged: its cached features stay valid
            f"Evaluation(CenterCropFraction(ratio={CROP_RATIO:.6f}), Resize({self.size}, "
            f"{interp}, antialias), Normalize({self.mean}, {self.std}))"
        )


class _ToPIL:
    """PIL images pass; HWC uint8 arrays and CHW uint8 tensors become PIL images (so a transform
    meant for PIL images never silently passes an array through untouched)."""

    def __call__(self, img):
        from PIL import Image

        if isinstance(img, Image.Image):
            return img.convert("RGB") if img.mode != "RGB" else img
        if isinstance(img, torch.Tensor):
            img = img.permute(1, 2, 0).numpy() if img.ndim == 3 and img.shape[0] in (1, 3) else img.numpy()
        return Image.fromarray(np.asarray(img, dtype=np.uint8))

    def __repr__(self) -> str:
        return "ToPIL()"


def eval_geometry(size: int, bicubic: bool = False):
    """The official evaluation geometry on the PIL image: Resize(resize_size(size)) of the short side
    (PIL's resampling, as torchvision.transforms on PIL images) -> CenterCrop(size); a PIL image out.
    Also what an eval-ready `.beton` stores (`loaders.write_beton(..., prepare=...)`)."""
    T = _v2()
    return T.Compose(
        [_ToPIL(), T.Resize(resize_size(size), interpolation=_interp(bicubic), antialias=True), T.CenterCrop(size)]
    )


def evaluation(size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD, bicubic: bool = False, order="crop_resize"):
    """The evaluation transform (see `Evaluation`; the paper profile passes order="resize_crop")."""
    return Evaluation(size, mean, std, bicubic, order)


def train_augment(size: int, mean, std, scale=(0.08, 1.0), bicubic: bool = False):
    """RandomResizedCrop + horizontal flip -> normalise (full finetuning, train split), on the PIL
    image as the official code does (utils/transfer/constants.py:35-42): torchvision's PIL kernels
    and its random draws, so a seeded call gives the official pipeline's tensor."""
    T = _v2()
    return T.Compose(
        [
            _ToPIL(),
            T.RandomResizedCrop(size, scale=tuple(scale), interpolation=_interp(bicubic), antialias=True),
            T.RandomHorizontalFlip(),
            T.ToImage(),
            *_to_float(mean, std),
        ]
    )


def channel_stats(dataset, max_images: int = 5000, seed: int = 0) -> tuple[tuple, tuple]:
    """Per-channel mean and std (in [0, 1]) of a dataset's raw images, on a seeded sample."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(dataset), generator=g)[:max_images].tolist()
    images = getattr(dataset, "images", None)
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[-1] == 3:  # in memory: one pass
        x = torch.from_numpy(images[idx]).float().div_(255).double().reshape(-1, 3)
        mean = x.mean(0)
        std = (x.pow(2).mean(0) - mean**2).clamp_min(1e-12).sqrt()
        return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())
    T = _v2()
    to = T.Compose([T.ToImage(), T.ToDtype(torch.float32, scale=True)])
    s = torch.zeros(3, dtype=torch.float64)
    s2 = torch.zeros(3, dtype=torch.float64)
    n = 0
    for i in idx:
        x = to(dataset[i][0]).double().flatten(1)
        s += x.sum(1)
        s2 += (x**2).sum(1)
        n += x.shape[1]
    mean = s / n
    std = (s2 / n - mean**2).clamp_min(1e-12).sqrt()
    return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())
