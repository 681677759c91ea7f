"""RigL (Evci et al. 2020), regularization, from random weights, with Erdos-Renyi-Kernel layer
densities: random sparse masks at the ERK densities; every `every_epochs` epochs until `end` of the
run, in each layer drop the fraction f_t = alpha/2 (1 + cos(pi t / T_end)) of active weights with
the smallest magnitude and grow as many with the largest dense-gradient magnitude among the weights
not active after the drop -- a weight dropped in this update may grow back and then keeps its value,
as the official code with `reinit_when_same=False`; other grown weights start at zero.
RigL "5x" is the same recipe with five times the budget (params)."""

from __future__ import annotations

import math

import torch

from .base import Method
from .magnitude import topk_mask


class RigL(Method):
    name, family = "rigl", "regularization"
    eval_interpolation = "bicubic"  # its published checkpoints come from TF code that resized bicubic
    hyperparameters = {"budget": float, "alpha": float, "every_epochs": float, "end": float}

    def start(self, model, optimizer) -> None:
        super().start(model, optimizer)
        g = torch.Generator().manual_seed(self.seed)
        dens = erk_densities({n: m.weight.shape for n, m in self.layers.items()}, 1 - self.target)
        keep = {n: int(round(dens[n] * m.weight.numel())) for n, m in self.layers.items()}
        total = sum(m.weight.numel() for m in self.layers.values())
        largest = max(self.layers, key=lambda n: self.layers[n].weight.numel())
        keep[largest] += int(round((1 - self.target) * total)) - sum(keep.values())  # exact overall count
        self.set_masks(
            {
                n: topk_mask(torch.rand(m.weight.shape, generator=g), keep[n]).to(m.weight.device)
                for n, m in self.layers.items()
            }
        )
        self.changed = 0

    def extra_info(self) -> dict:
        return {"mask_changes": self.changed}

    def every(self) -> int:
        return max(1, int(round(self.param("every_epochs") * self.steps_per_epoch)))

    @torch.no_grad()
    def after_backward(self, step: int) -> None:
        end = int(self.param("end") * self.total_steps)
        if 0 < step < end and step % self.every() == 0:
            frac = self.param("alpha") / 2 * (1 + math.cos(math.pi * step / end))
            for n, m in self.layers.items():
                if m.weight.grad is not None:
                    self._update(n, m.weight, m.weight.grad, frac)
        super().after_backward(step)

    def _update(self, n: str, w: torch.Tensor, grad: torch.Tensor, frac: float) -> None:
        mask = self.masks[n].flatten()
        active = int(mask.sum())
        k = min(int(frac * active), mask.numel() - active)  # dense (ERK) layers stay dense
        if k == 0:
            return
        drop_score = torch.where(mask, w.abs().flatten(), torch.full_like(mask, float("inf"), dtype=w.dtype))
        dropped = torch.zeros_like(mask)
        dropped[torch.argsort(drop_score, stable=True)[:k]] = True
        kept = mask & ~dropped
        grow_score = grad.abs().flatten().masked_fill(kept, -1.0)  # only weights still active are excluded
        grown = torch.zeros_like(mask)
        grown[torch.argsort(grow_score, descending=True, stable=True)[:k]] = True
        new = kept | grown
        w.masked_fill_((grown & ~mask).view(w.shape), 0.0)  # new connections start at zero
        self.changed += int((new != mask).sum())
        self.masks[n] = new.view_as(self.masks[n])


def erk_densities(shapes: dict[str, torch.Size], density: float) -> dict[str, float]:
    """Erdos-Renyi-Kernel: density of a layer proportional to sum(shape) / prod(shape), scaled to the
    overall `density`; layers that would exceed 1 are made dense and the rest rescaled."""
    dense: set[str] = set()
    total = sum(math.prod(s) for s in shapes.values())
    while True:
        budget = density * total - sum(math.prod(shapes[n]) for n in dense)
        raw = {n: sum(s) / math.prod(s) for n, s in shapes.items() if n not in dense}
        eps = budget / sum(raw[n] * math.prod(shapes[n]) for n in raw)
        over = [n for n in raw if eps * raw[n] > 1]
        if not over:
            out = {n: eps * r for n, r in raw.items()}
            out.update({n: 1.0 for n in dense})
            return out
        dense.update(over)


class RigL5x(RigL):
    """RigL 5x: the same recipe over five times the budget (params); its control is dense_5x."""

    control = "dense_5x"
