"""AC/DC (Peste et al. 2021), regularization, from random weights: a dense warm-up, then
alternating compressed phases (top-k global magnitude mask at the target, fixed) and decompressed
phases (every weight trains; pruned ones restart from zero), each `phase` of the run long, ending
with a compressed phase over the last `final` of the run (ImageNet: 10 dense epochs, 5-epoch
phases, the last 15 epochs compressed, of 100)."""

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
        return "compressed" if int((t - self.param("warmup")) / self.param("phase")) % 2 == 0 else "decompressed"

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        now, nxt = self.phase_at(step), self.phase_at(step + 1)
        if nxt == "compressed" and (now != "compressed" or self.masks is None):
            self.set_masks(magnitude_masks(self.model, self.target))
        elif nxt != "compressed" and self.masks is not None:
            self.masks = None  # decompress: every weight trains
        self.enforce()
