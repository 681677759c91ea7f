"""How far each evaluation path is from the official pipeline (Resize(256) -> CenterCrop(224) ->
ToTensor -> Normalize on the PIL image), on the stand-in Pets tree of tests/test_paper_e2e.py and its
random 90%-GMP ResNet50: relative L2 of the input tensors and of the extracted features, for the
previous order (crop 224/256 of the short side, then one resize), the paper profile's order, and
ffcv's eval path before (crop + INTER_AREA from JPEG) and now (eval-ready .beton) -- full
finetuning's test split; then linear-finetuning accuracy with the torch paths.

    PYTHONPATH=$PWD python scripts/measure_eval_transform.py [--size 224] [--epochs 150]

Writes nothing outside a temporary folder; prints one table."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as V1

from sparsenb import config, data, models, prune, train
from sparsenb.data import transforms as tr
from sparsenb.data.loaders import loader

BREEDS = ["Abyssinian", "Bengal", "american_bulldog", "beagle"]


def stand_in(root: Path) -> None:
    """The e2e test's Pets tree: 4 breeds x 8 JPEGs of 40x48 (6 trainval, 2 test per breed)."""
    pets = root / "pets" / "oxford-iiit-pet"
    (pets / "images").mkdir(parents=True)
    (pets / "annotations").mkdir()
    rows = {"trainval": [], "test": []}
    for k, breed in enumerate(BREEDS):
        for i in range(1, 9):
            value = 40 * k + i
            rng = np.random.default_rng(value)
            img = (rng.random((40, 48, 3)) * 60 + value).astype(np.uint8)
            Image.fromarray(img).save(pets / "images" / f"{breed}_{i}.jpg")
            rows["trainval" if i <= 6 else "test"].append(f"{breed}_{i} {k + 1} {1 if k < 2 else 2} {k + 1}")
    for split, r in rows.items():
        (pets / "annotations" / f"{split}.txt").write_text("\n".join(r) + "\n")


def batches(ds, transform) -> torch.Tensor:
    return torch.stack([transform(ds[i][0]) for i in range(len(ds))])


@torch.no_grad()
def feats(net, x) -> torch.Tensor:
    return torch.cat([net(b) for b in x.split(16)])


def rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--epochs", type=int, default=150)
    args = ap.parse_args()
    torch.manual_seed(0)
    models.build("resnet50", 1000)  # the e2e test builds dense first: the same random stream
    model = models.build("resnet50", 1000)
    prune.magnitude(model, 0.9)
    net = models.backbone(model).eval()
    s = args.size
    official = V1.Compose(
        [V1.Resize(tr.resize_size(s)), V1.CenterCrop(s), V1.ToTensor(), V1.Normalize(tr.IMAGENET_MEAN, tr.IMAGENET_STD)]
    )
    paths = {
        "crop_resize (before)": tr.evaluation(s, order="crop_resize"),
        "resize_crop (now)": tr.evaluation(s, order="resize_crop"),
    }
    hp = dict(config.load("paper")["linear"], epochs=args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        stand_in(Path(tmp))
        split = {k: data.get("pets", tmp, k) for k in ("train", "test")}
        ref = {k: batches(ds, official) for k, ds in split.items()}
        ref_f = {k: feats(net, x) for k, x in ref.items()}
        inputs = {name: {k: batches(ds, t) for k, ds in split.items()} for name, t in paths.items()}
        try:
            for label, order in (("ffcv before", "crop_resize"), ("ffcv now (eval-ready)", "resize_crop")):
                beton = Path(tmp) / f"test-{order}.beton"
                if order == "crop_resize":  # as the paper profile wrote test splits before
                    data.write_beton(split["test"], beton, max_resolution=2 * s)
                ff = loader(
                    split["test"], "eval", s, batch_size=64, backend="ffcv", beton=beton, num_workers=1, order=order
                )
                inputs[label] = {"test": torch.cat([x for x, _ in ff])}
        except ImportError:
            print("ffcv not installed: its rows are left out")
        print(f"size {s}; relative L2 to the official pipeline (test split; features of the stand-in ResNet50)")
        print(f"{'path':<22}{'inputs':>9}{'features':>10}{'linear top-1':>14}")
        yte = torch.as_tensor(split["test"].targets)
        ytr = torch.as_tensor(split["train"].targets)
        for name, x in {"official": ref, **inputs}.items():
            f = {k: feats(net, v) for k, v in x.items()}
            acc = float("nan")
            if "train" in f:
                res = train.linear_finetune(f["train"], ytr, f["test"], yte, 37, hp, seed=21, device="cpu")
                acc = res["final"]
            print(f"{name:<22}{rel(x['test'], ref['test']):>9.4f}{rel(f['test'], ref_f['test']):>10.4f}{acc:>14.3f}")


if __name__ == "__main__":
    main()
