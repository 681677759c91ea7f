"""Probe (not the study): does a narrower mini model reach a plateau of dense validation top-1 in
fewer epochs? Dense convergence of the mini upstream task with the shared recipe (first seed, grad
clip 2, plus one run without it at the smallest budget) for a MiniResNet of another width.

    OMP_NUM_THREADS=1 python scripts/probe_width.py 12 14,28,56,112   # rows -> $SPARSENB_OUTPUTS/probe-w12/

Measured 2026-11-25 (AVX2, one thread each): outputs/upstream/scale_probe_width.csv.
"""

import sys

import torch

from sparsenb import calibration, config, models, paths

width, budgets = int(sys.argv[1]), [int(e) for e in sys.argv[2].split(",")]
torch.set_num_threads(1)
models.register(f"mini_resnet_w{width}")(lambda n: models.MiniResNet(n, width=width, stem_stride=2, expand=256))
cfg = config.load(
    "mini",
    {
        "arch": f"mini_resnet_w{width}",
        "upstream.convergence.epochs": budgets,
        "upstream.convergence.seeds": [0],
        "upstream.convergence.all_seeds_up_to": min(budgets),
        "upstream.convergence.search": None,
    },
)
print(calibration.convergence(cfg, paths.output(f"probe-w{width}"), device="cpu").to_string(index=False))
