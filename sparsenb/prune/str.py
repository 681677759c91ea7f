"""Soft Threshold Reparametrization (Kusupati et al. 2020), regularization, from random weights:
every prunable layer's weight is used as sign(w) relu(|w| - sigmoid(s_l)) with one learnable
threshold parameter s_l per layer (initialised at `s_init`, one value per target sparsity). The
thresholds are ordinary parameters of the run: the same optimizer, learning-rate schedule and weight
decay train them (as the official code does). There is no controller and no fold: at the end the
thresholded weights are the model, and the sparsity is where the thresholds put it -- near the
target, not on it (`exact_target = False`; the achieved sparsity is reported)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.utils.parametrize as P

from .. import masks as masklib
from .base import Method


class SoftThreshold(nn.Module):
    """STR's reparametrisation: w_eff = sign(w) * relu(|w| - sigmoid(s)), s a learnable scalar."""

    def __init__(self, s_init: float):
        super().__init__()
        self.s = nn.Parameter(torch.tensor(float(s_init)))

    def forward(self, w):
        return torch.sign(w) * torch.relu(w.abs() - torch.sigmoid(self.s))


class STR(Method):
    name, family, exact_target = "str", "regularization", False
    hyperparameters = {"budget": float, "s_init": dict[float, float], "calibration": list[float]}

    def s_init(self) -> float:
        table = self.param("s_init")
        for key, value in table.items():
            if abs(float(key) - self.target) < 1e-9:
                return float(value)
        raise KeyError(
            f"STR has no s_init for sparsity {self.target:g} (params upstream.methods.str.s_init has "
            f"{', '.join(str(k) for k in table)}): add one"
        )

    def prepare(self, model: nn.Module) -> None:
        """Reparametrise before the optimizer is built, so that it trains the thresholds too."""
        super().prepare(model)
        for m in self.layers.values():
            if not P.is_parametrized(m, "weight"):
                P.register_parametrization(m, "weight", SoftThreshold(self.s_init()).to(m.weight.device))

    def extra_info(self) -> dict:
        return {"str_history": self.history}

    def thresholds(self) -> dict[str, float]:
        return {
            n: float(torch.sigmoid(m.parametrizations.weight[0].s))
            for n, m in self.layers.items()
            if P.is_parametrized(m, "weight")
        }

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        every = max(1, self.total_steps // 50)
        if step % every == 0:
            th = self.thresholds()
            self.history.append(
                {"step": step, "sparsity": self.sparsity(), "threshold_mean": sum(th.values()) / max(1, len(th))}
            )

    @torch.no_grad()
    def finish(self) -> None:
        """The thresholded weights become the weights; the mask is where they are zero."""
        for m in self.layers.values():
            if P.is_parametrized(m, "weight"):
                P.remove_parametrizations(m, "weight", leave_parametrized=True)
        self.optimizer = None
        self.masks = {n: (m.weight != 0) for n, m in self.layers.items()}
        self.history.append({"step": self.total_steps, "sparsity": self.sparsity()})
        masklib.apply(self.model, self.masks)
