"""Pruning: magnitude masks (the building block of GMP, AC/DC, LTH-T and the benchmarks).

    prune.magnitude(model, 0.9)                    # global magnitude, 90% of conv/linear weights zero
    prune.magnitude(model, 0.9, scope="uniform")   # 90% in every layer
"""
from __future__ import annotations

import torch
import torch.nn as nn

from . import masks as masklib

SCOPES = ("global", "uniform")


@torch.no_grad()
def magnitude_masks(model: nn.Module, sparsity: float, scope: str = "global",
                    include_head: bool = False) -> dict[str, torch.Tensor]:
    """Masks keeping the largest-magnitude weights so that exactly `sparsity` of the prunable
    weights are pruned (globally, or in each layer with scope='uniform'). Ties at the threshold
    are broken by index so the count is exact."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; valid: {', '.join(SCOPES)}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    layers = masklib.prunable(model, include_head)
    out = {}
    if scope == "uniform":
        for name, m in layers.items():
            out[name] = _exact_topk_mask(m.weight.abs(), int(round(sparsity * m.weight.numel())))
        return out
    flat = torch.cat([m.weight.abs().flatten() for m in layers.values()])
    keep = _exact_topk_mask(flat, int(round(sparsity * flat.numel())))
    i = 0
    for name, m in layers.items():
        n = m.weight.numel()
        out[name] = keep[i:i + n].view_as(m.weight)
        i += n
    return out


def _exact_topk_mask(scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    flat = scores.flatten()
    mask = torch.ones_like(flat, dtype=torch.bool)
    if n_prune > 0:
        idx = torch.argsort(flat, stable=True)[:n_prune]
        mask[idx] = False
    return mask.view_as(scores)


def magnitude(model: nn.Module, sparsity: float, scope: str = "global", include_head: bool = False) -> nn.Module:
    """Prune `model` in place by weight magnitude; returns it."""
    masklib.apply(model, magnitude_masks(model, sparsity, scope, include_head))
    return model
