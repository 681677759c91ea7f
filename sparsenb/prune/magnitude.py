"""Prunable layers, sparsity over them, and exact top-k magnitude masks.

Prunable layers ("targets"): every conv and linear layer except the stem convolution, which the
paper's checkpoints keep dense, and the classifier `fc`, which transfer replaces by a new dense head
(pruning it upstream can also cut the whole network off at high sparsity: a global magnitude
threshold may remove every classifier weight). Sparsity is always reported over the targets.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .. import masks as masklib

SCOPES = ("global", "uniform")
STEMS = ("conv1", "model.0.0")  # first conv of the ResNets and of MobileNetV1


def targets(model: nn.Module, include_head: bool = False) -> dict[str, nn.Module]:
    """The prunable layers: conv + linear minus the stem (and minus `fc` unless include_head)."""
    return {n: m for n, m in masklib.prunable(model, include_head).items() if n not in STEMS}


def target_sparsity(model: nn.Module, include_head: bool = False) -> float:
    layers = targets(model, include_head).values()
    return sum(int((m.weight == 0).sum()) for m in layers) / max(1, sum(m.weight.numel() for m in layers))


def topk_mask(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Boolean mask of the `keep` highest scores (ties broken by index: deterministic)."""
    flat = scores.flatten()
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[torch.argsort(flat, descending=True, stable=True)[: max(0, keep)]] = True
    return mask.view_as(scores)


@torch.no_grad()
def masks_from_scores(scores: dict[str, torch.Tensor], sparsity: float, scope: str = "global") -> dict:
    """Keep the highest-scoring weights: exactly round(sparsity * n) pruned, globally or per layer."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; valid: {', '.join(SCOPES)}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if scope == "uniform":
        return {n: topk_mask(s, s.numel() - int(round(sparsity * s.numel()))) for n, s in scores.items()}
    flat = torch.cat([s.flatten() for s in scores.values()])
    keep = topk_mask(flat, flat.numel() - int(round(sparsity * flat.numel())))
    out, i = {}, 0
    for n, s in scores.items():
        out[n] = keep[i : i + s.numel()].view_as(s)
        i += s.numel()
    return out


def magnitude_masks(model: nn.Module, sparsity: float, scope: str = "global", include_head: bool = False) -> dict:
    """Magnitude masks over the prunable layers (exact count, ties broken by index)."""
    return masks_from_scores(
        {n: m.weight.detach().abs() for n, m in targets(model, include_head).items()}, sparsity, scope
    )


def magnitude(model: nn.Module, sparsity: float, scope: str = "global", include_head: bool = False) -> nn.Module:
    """Prune `model` in place by weight magnitude; returns it."""
    masklib.apply(model, magnitude_masks(model, sparsity, scope, include_head))
    return model
