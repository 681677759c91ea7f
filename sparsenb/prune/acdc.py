"""AC/DC (Peste et al. 2021), regularization, from random weights: a dense warm-up, then
alternating compressed phases (top-k global magnitude mask at the target, fixed) and decompressed
phases (every weight trains; pruned ones restart from zero), each `phase` of the run long; the
last decompressed phase runs on until the final compressed phase over the last `final` of the run.
The official ResNet50 schedule (IST-DASLab/ACDC configs/neurips/
iht_imagenet_resnet50_insta_cosinelr_s90_ep100.yaml: pruning at epochs 10, 20, ..., 70 and 85,
recycling at 15, ..., 65 and 75): dense 0-10, compressed 10-15, 20-25, ..., 70-75, decompressed
15-20, ..., 65-70 and 75-85, compressed 85-100."""

from __future__ import annotations

import torch

from .base import Method
from .magnitude import magnitude_masks


class ACDC(Method):
    name, family = "acdc", "regularization"
    hyperparameters = {"budget": float, "warmup": float, "phase": float, "final": float}

    def phase_at(self, step: int) -> str:
        t = step / self.total_steps
        if t < self.param("warmup"):
            return "dense"
        if t >= 1 - self.param("final"):
            return "compressed"
        phase = self.param("phase")
        k = int((t - self.param("warmup")) / phase + 1e-9)
        # a compressed phase is followed by a decompressed one of at least `phase` before the final
        # compressed phase: the last decompressed phase runs 75-85% (ACDC iht config: 10 epochs)
        fits = self.param("warmup") + (k + 2) * phase <= 1 - self.param("final") + 1e-9
        return "compressed" if k % 2 == 0 and fits else "decompressed"

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        now, nxt = self.phase_at(step), self.phase_at(step + 1)
        if nxt == "compressed" and (now != "compressed" or self.masks is None):
            self.set_masks(magnitude_masks(self.model, self.target))
        elif nxt != "compressed" and self.masks is not None:
            self.masks = None  # decompress: every weight trains
        self.enforce()
