"""Gradual magnitude pruning (Zhu & Gupta 2017), progressive: from the trained dense model, global
magnitude masks on a cubic schedule from `initial` sparsity at `start` to the target at `end`
(fractions of the run), one pruning step every `every`; then fixed-mask training to the end.
The schedule is that of the IST-DASLab configs (ResNet50: pruning epochs [10, 10, 81] of 100,
initial sparsity 5%)."""

from __future__ import annotations

import torch

from .base import Method, Schedule, cubic_schedule
from .magnitude import magnitude_masks


class GMP(Method):
    name, family, from_dense, control = "gmp", "progressive", True, "dense_2x"
    hyperparameters = {
        "budget": float,
        "initial": float,
        "start": float,
        "end": float,
        "every": float,
        "optimizer": Schedule,
    }

    def schedule(self) -> tuple[int, int, int]:
        """(first pruning step, last pruning step, steps between pruning steps)."""
        s0 = int(round(self.param("start") * self.total_steps))
        s1 = max(s0, int(round(self.param("end") * self.total_steps)))
        return s0, s1, max(1, int(round(self.param("every") * self.total_steps)))

    def due(self, step: int) -> bool:
        s0, s1, every = self.schedule()
        return s0 <= step <= s1 and ((step - s0) % every == 0 or step == s1)

    def sparsity_at(self, step: int) -> float:
        s0, s1, _ = self.schedule()
        return cubic_schedule(step, s0, s1, self.target, self.param("initial"))

    def prune_to(self, sparsity: float) -> None:
        self.set_masks(magnitude_masks(self.model, sparsity))

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        if self.due(step):
            self.prune_to(self.sparsity_at(step))
        self.enforce()


class GMPScratch(GMP):
    """GMP from random weights over D with the shared recipe (the shape of STR's ResNet50 GMP
    baseline): the crossed arm that separates the family from the start and the budget; its control
    is dense at D."""

    name, from_dense, control = "gmp_scratch", False, "dense"
    hyperparameters = {k: v for k, v in GMP.hyperparameters.items() if k != "optimizer"}
