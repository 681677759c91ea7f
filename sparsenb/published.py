"""The paper's released per-seed results (IST-DASLab/sparse-imagenet-transfer, shipped in
sparsenb/reference_results/), checked against their published sha256 and read as a tidy frame.

    pub = published.load_published()   # finetune, arch, dataset, method, sparsity, seed, accuracy
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import files
from .errors import UserError

REFERENCE = Path(__file__).resolve().parent / "reference_results"
PUBLISHED_FILES = {
    ("linear", "resnet50"): "linear_transfer_results.csv",
    ("full", "resnet50"): "full_transfer_results.csv",
    ("linear", "mobilenet_v1"): "linear_mobilenet_transfer_results.csv",
    ("full", "mobilenet_v1"): "full_mobilenet_transfer_results.csv",
}
# sha256 of the released files as published (IST-DASLab/sparse-imagenet-transfer; ../shared/reference_results)
PUBLISHED_SHA256 = {
    "linear_transfer_results.csv": "d5abab094c7aef76aa076cfe34e5a0c7ffe97faa39a169e3d9f8da5feb66164f",
    "full_transfer_results.csv": "f832254c5c347ec0379b6716cb3572c86db4283945811f0fe0678a0bb03392c1",
    "linear_mobilenet_transfer_results.csv": "8b8461920effb737cd950a3887a3b8402d177ebd7abed63f412add9adb3a128e",
    "full_mobilenet_transfer_results.csv": "12ad96e2b236262bd5fb0a902c6eaeb4481214fc39a1a96a0c84387ca34ec618",
}
DATASET_NAMES = {"SUN": "sun397", "birds": "birdsnap"}  # the paper repo's keys -> ours
METHOD_NAMES = {
    "Dense": "dense",
    "AC/DC": "acdc",
    "LTH-T": "lth_t",
    "RigL ERK 1x": "rigl_erk_1x",
    "RigL ERK 5x": "rigl_erk_5x",
    "STR": "str",
    "WoodFisher": "woodfisher",
    "GMP": "gmp",
    "M-FAC": "mfac",
}


def load_published() -> pd.DataFrame:
    """The paper's released per-seed accuracies as a tidy frame (accuracy in [0, 1]); a file whose
    sha256 is not the released one's is refused (one error naming it)."""
    frames = []
    for (finetune, arch), fname in PUBLISHED_FILES.items():
        if (got := files.sha256(REFERENCE / fname)) != PUBLISHED_SHA256[fname]:
            raise UserError(
                f"{REFERENCE / fname} is not the paper's released file (sha256 {got[:12]}..., released "
                f"{PUBLISHED_SHA256[fname][:12]}...): restore it (git checkout -- sparsenb/reference_results/)"
            )
        df = pd.read_csv(REFERENCE / fname)
        df = df.loc[:, [c for c in df.columns if not c.startswith("Unnamed")]]  # trailing empty column
        frames.append(
            pd.DataFrame(
                {
                    "finetune": finetune,
                    "arch": arch,
                    "dataset": df.dset.map(lambda d: DATASET_NAMES.get(d, d)),
                    "method": df.model.map(METHOD_NAMES),
                    "sparsity": df.sparsity.astype(float),
                    "seed": df.seed.str.replace("seed_", "").astype(int),
                    "accuracy": df.val_acc.astype(float),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
