#!/usr/bin/env bash
# The paper profile on a GPU machine, as a new user runs it: the training benchmark, then notebook
# 03_full_ft (ResNet50, full finetuning with fixed masks) through papermill on a small stand-in
# dataset in the Oxford-IIIT Pets layout and a random 90%-sparse ResNet50 in the IST checkpoint
# format (no real data or checkpoints can reach that machine). Usage: scripts/gpu_paper_smoke.sh <out dir>
set -euo pipefail
out=$1; mkdir -p "$out"
if [ -d .whl ]; then   # packages the GPU image lacks (papermill, ipykernel, ...), carried as wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
  export PATH=/tmp/site/bin:$PATH
else
  export PYTHONPATH=$PWD
fi
export SPARSENB_PROGRESS=0 PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -m sparsenb bench train | tee "$out/bench_train.txt"
cp outputs/bench/train.jsonl "$out/"
python3 - <<'PY'
import numpy as np, torch
from pathlib import Path
from PIL import Image
from sparsenb import models, prune, weights
root = Path("/tmp/paper-data/pets/oxford-iiit-pet")
rows = {"trainval": [], "test": []}
rng = np.random.default_rng(0)
breeds = ["Abyssinian", "Bengal", "american_bulldog", "beagle"]
for k, breed in enumerate(breeds):
    for i in range(1, 61):
        p = root / "images" / f"{breed}_{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        img = (rng.random((300, 260, 3)) * 60 + 40 * k).astype(np.uint8)
        Image.fromarray(img).save(p, quality=90)
        rows["trainval" if i <= 48 else "test"].append(f"{breed}_{i} {k + 1} {1 if k < 2 else 2} {k + 1}")
(root / "annotations").mkdir(exist_ok=True)
for split, r in rows.items():
    (root / "annotations" / f"{split}.txt").write_text("\n".join(r) + "\n")
torch.manual_seed(0)
m = models.build("resnet50", 1000)
prune.magnitude(m, 0.9)
weights.save_checkpoint(m, "/tmp/paper-ckpt/gmp/0.9.pth", "resnet50", method="gmp", sparsity=0.9)
print("stand-in pets (4 breeds, 192 train / 48 test JPEGs) and a random 90% ResNet50 checkpoint written")
PY
python3 -m ipykernel install --user --name python3 --display-name "Python 3 (sparsenb)" >/dev/null
export SPARSENB_DATA_ROOT=/tmp/paper-data SPARSENB_CHECKPOINT_ROOT=/tmp/paper-ckpt SPARSENB_BACKEND=torch SPARSENB_NUM_WORKERS=8
start=$(date +%s)
python3 -m papermill notebooks/03_full_ft.ipynb "$out/03_full_ft-paper-smoke.ipynb" -k python3 \
  -p profile paper -p method gmp -p sparsity 0.9 -p dataset pets -p seed 21 -p epochs 2 --cwd notebooks 2>&1 | tail -n 5
echo "03_full_ft paper smoke: $(( $(date +%s) - start )) s"
cp outputs/results/03_full_ft/*.json "$out/" 2>/dev/null || true
python3 - <<'PY'
import json, glob
for f in glob.glob("outputs/results/03_full_ft/*.json"):
    r = json.load(open(f))
    print({k: r.get(k) for k in ("profile", "arch", "method", "sparsity", "dataset", "best", "final", "reported",
                                 "achieved_sparsity", "train_seconds", "wall_seconds")})
PY
