"""Robustness of a transferred model: accuracy under common corruptions (Hendrycks & Dietterich
2019, the `imagecorruptions` implementation) of a downstream test set, relative to clean accuracy.

No record keeps a finetuned model, so one robustness run finetunes again: the linear head is trained
exactly as `02_linear_ft` trains it (the same cached clean features, hyperparameters and seed), held in
memory (its state after the last epoch: the clean accuracy of the record is that head's, not necessarily
the 02 record's reported epoch), and evaluated on the clean test set and on each corrupted copy.
Corrupted images are made on the fly from the evaluation view of each test image (centre crop and
resize to the model's input size, then the corruption, then normalisation -- as ImageNet-C corrupts
the 224 px crop), seeded per image, and never written anywhere: neither next to the data nor into
the feature cache. `beyond.max_test_images` caps the test images (a seeded sample, the same for the
clean and the corrupted accuracy).

    spec = runs.spec("08_beyond_accuracy", mode="run", method="gmp", sparsity=0.9)   # specs.RobustnessSpec
    res = robustness.run(spec)                                   # {"clean", "corrupted": [...], ...}
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from .. import data, devices, finetune, metrics, models, train
from ..data import transforms as tr
from ..errors import check_choice


def names() -> list[str]:
    """The corruptions `imagecorruptions` implements (its 15 benchmark ones and 4 held-out)."""
    from imagecorruptions import get_corruption_names

    return get_corruption_names("all")


def corrupt(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """uint8 HxWx3 -> the corrupted uint8 image; the library draws from numpy's global generator,
    which is seeded here and restored after."""
    from imagecorruptions import corrupt as _corrupt

    state = np.random.get_state()
    try:
        np.random.seed(seed % 2**32)
        out = _corrupt(image, severity=int(severity), corruption_name=name)
    finally:
        np.random.set_state(state)
    return np.array(out, dtype=np.uint8)  # a writable copy (JPEG comes back as a read-only PIL view)


class Corrupted(Dataset):
    """Items of `base` (PIL image, label) as the evaluation transform sees them, corrupted by
    (`name`, `severity`) before normalisation; `indices`: a subset of `base`."""

    def __init__(self, base, evaluation: tr.Evaluation, name: str, severity: int, seed: int = 0, indices=None):
        from torchvision.transforms import v2 as T

        self.base, self.name, self.severity, self.seed = base, name, int(severity), int(seed)
        self.indices = np.arange(len(base)) if indices is None else np.asarray(indices)
        self.geometry = T.Compose(evaluation.geometry())  # the run's own evaluation order
        self.normalise = T.Compose([T.ToDtype(torch.float32, scale=True), T.Normalize(evaluation.mean, evaluation.std)])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        img, label = self.base[int(self.indices[i])]
        x = self.geometry(img.convert("RGB")).permute(1, 2, 0).numpy()
        seed = (self.seed * 1_000_003 + int(self.indices[i])) * 31 + self.severity
        x = corrupt(np.ascontiguousarray(x), self.name, self.severity, seed)
        return self.normalise(torch.from_numpy(x).permute(2, 0, 1)), label


@torch.no_grad()
def embed(model, dataset, batch_size: int, num_workers: int = 0, device="cpu") -> tuple[torch.Tensor, np.ndarray]:
    """Penultimate features of every item (already tensors) and the labels; nothing cached."""
    net = models.backbone(model).to(device).eval()
    feats, labels = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, num_workers=num_workers):
        feats.append(net(x.to(device)).float().cpu())
        labels.append(np.asarray(y))
    return torch.cat(feats), np.concatenate(labels)


def subset(n: int, max_images: int, seed: int) -> np.ndarray:
    """All indices (max_images 0 or >= n), else a seeded sorted sample of `max_images`."""
    if not max_images or max_images >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_images, replace=False))


def run(spec, device=None) -> dict:
    """Train the linear head as 02_linear_ft does (`spec`: a robustness run's, `specs.RobustnessSpec`);
    its test accuracy (the dataset's metric), clean and under each corruption x severity of params
    `beyond`, on the same test images."""
    cfg, dataset, seed = spec.cfg, spec.dataset, spec.seed
    hp = cfg["beyond"]
    for name in hp["corruptions"]:
        check_choice("corruption (params beyond.corruptions)", name, names())
    device = device or devices.device_of(cfg)
    meta = data.info(dataset)
    model, _, ev, feats, _ = finetune.linear_inputs(spec, device)
    split = lambda s: data.get(dataset, cfg["data_root"], s, cfg=cfg)  # noqa: E731
    res = train.linear_finetune(
        *feats["train"],
        *feats["test"],
        meta.num_classes,
        cfg["linear"],
        meta.metric,
        seed,
        device,
        val=feats.get("val"),
    )
    head = torch.nn.Linear(feats["train"][0].shape[1], meta.num_classes)
    head.load_state_dict(res["head"])
    test = split("test")
    idx = subset(len(test), hp["max_test_images"], seed)

    def score(x, y):
        with torch.no_grad():
            return metrics.score(y, head(x.cpu()).argmax(1).numpy(), meta.metric)

    clean = score(feats["test"][0][idx], feats["test"][1].numpy()[idx])
    rows = []
    for name in hp["corruptions"]:
        for sev in hp["severities"]:
            x, y = embed(
                model, Corrupted(test, ev, name, sev, seed, idx), cfg["eval_batch_size"], cfg["num_workers"], device
            )
            acc = score(x, y)
            rows.append(
                {
                    "corruption": name,
                    "severity": int(sev),
                    "accuracy": acc,
                    "relative": acc / clean if clean else float("nan"),
                }
            )
    return {
        "metric": meta.metric,
        "clean": clean,
        "corrupted": rows,
        "relative_mean": float(np.mean([r["relative"] for r in rows])),
        "head_epoch": int(cfg["linear"]["epochs"]),
        "test_images": int(len(idx)),
    }


def table(res: dict) -> pd.DataFrame:
    """A run's corrupted accuracy as corruption x severity relative to clean accuracy."""
    df = pd.DataFrame(res["corrupted"])
    return df.pivot(index="corruption", columns="severity", values="relative").rename_axis(
        columns="severity: corrupted / clean"
    )
