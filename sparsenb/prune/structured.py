"""Structured pruning (App. J): whole filters (conv output channels) with the smallest L1 norm are
zeroed, the same fraction in every prunable conv, on GMP's schedule from the dense model, then
fixed-mask training. `target` is the fraction of filters removed."""

from __future__ import annotations

import torch
import torch.nn as nn

from .gmp import GMP


class Structured(GMP):
    name, family, weight_sparsity = "structured", "structured", False

    def prune_to(self, sparsity: float) -> None:
        masks = {}
        for n, m in self.layers.items():
            w = m.weight.detach()
            if isinstance(m, nn.Conv2d):
                norms = w.abs().flatten(1).sum(1)
                k = int(round(sparsity * w.shape[0]))
                keep = torch.ones(w.shape[0], dtype=torch.bool, device=w.device)
                keep[torch.argsort(norms, stable=True)[:k]] = False
                masks[n] = keep[:, None, None, None].expand_as(w).clone()
            else:
                masks[n] = torch.ones_like(w, dtype=torch.bool)
        self.set_masks(masks)

    def finish(self) -> None:
        self.prune_to(self.target)
