"""WoodFisher (Singh & Alistarh 2020), progressive: GMP's schedule, but each pruning step ranks
weights by the OBS saliency w^2 / (2 [F^-1]_qq) under a block-diagonal empirical Fisher F (blocks of
`block` weights inside each layer, damping `damp`, `fisher_samples` mini-batch gradients of
`fisher_batch` images, the inverse built by Woodbury rank-one updates) and moves the surviving
weights of each block by the OBS update dw = -F^-1[:, Q] (F^-1[Q, Q])^-1 w_Q for the pruned set Q.
The Fisher pass computes gradients in training mode without updating BatchNorm's running statistics."""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from .gmp import GMP
from .magnitude import masks_from_scores


class WoodFisher(GMP):
    name, needs_gradients = "woodfisher", True
    hyperparameters = {**GMP.hyperparameters, "fisher_samples": int, "fisher_batch": int, "block": int, "damp": float}

    def __init__(self, target=0.0, total_steps=1, grad_fn=None, **hp):
        super().__init__(target, total_steps, **hp)
        self.grad_fn = grad_fn  # callable(model) -> None: one backward pass on a fresh mini-batch

    def prune_to(self, sparsity: float) -> None:
        if self.grad_fn is None:
            raise ValueError("WoodFisher needs grad_fn (one backward pass on a new mini-batch)")
        block = int(self.param("block"))
        with frozen_bn_stats(self.model):
            finv = fisher_inverse_blocks(
                self.model,
                self.layers,
                self.grad_fn,
                int(self.param("fisher_samples")),
                block,
                float(self.param("damp")),
            )
        self.set_masks(obs_prune(self.layers, finv, sparsity, block))


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module):
    """Batches still normalised by their own statistics (training mode), but BatchNorm's running
    mean/var are left as they were: momentum 0 while inside."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (mom, nbt) in zip(bns, saved):
            m.momentum = mom
            if nbt is not None:
                m.num_batches_tracked.copy_(nbt)


def _blocks(w: torch.Tensor, block: int) -> torch.Tensor:
    """A layer's weights as (n_blocks, block), zero-padded at the end."""
    flat = w.detach().flatten()
    pad = (-flat.numel()) % block
    return torch.cat([flat, flat.new_zeros(pad)]).view(-1, block)


@torch.no_grad()
def fisher_inverse_blocks(model, layers, grad_fn, samples: int, block: int, damp: float) -> dict[str, torch.Tensor]:
    """{layer: (n_blocks, B, B)} inverse of the damped block-diagonal empirical Fisher
    F = damp * mean(diag G) * I + (1/m) sum_i g_i g_i^T, by m Woodbury rank-one updates."""
    grads = {n: [] for n in layers}
    for _ in range(samples):
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            grad_fn(model)
        for n, m in layers.items():
            grads[n].append(_blocks(m.weight.grad, block))
    model.zero_grad(set_to_none=True)
    out = {}
    for n, gs in grads.items():
        g = torch.stack(gs, 1)  # (n_blocks, m, B)
        lam = damp * (g**2).mean(dim=(1, 2)).clamp_min(1e-12)  # per block, relative to gradient scale
        finv = torch.eye(block, device=g.device).expand(g.shape[0], block, block) / lam[:, None, None]
        for i in range(g.shape[1]):
            v = g[:, i, :, None]  # (n_blocks, B, 1)
            fv = finv @ v
            denom = samples + (v.transpose(1, 2) @ fv)  # (n_blocks, 1, 1)
            finv = finv - (fv @ fv.transpose(1, 2)) / denom
        out[n] = finv
    return out


@torch.no_grad()
def obs_prune(layers, finv: dict, sparsity: float, block: int) -> dict[str, torch.Tensor]:
    """Global OBS saliency ranking to exactly `sparsity`, then the joint OBS update in every block."""
    scores = {}
    for n, m in layers.items():
        w = _blocks(m.weight, block)
        diag = torch.diagonal(finv[n], dim1=1, dim2=2).clamp_min(1e-20)
        s = (w**2 / (2 * diag)).flatten()[: m.weight.numel()]
        scores[n] = s.view_as(m.weight)
    new_masks = masks_from_scores(scores, sparsity)
    for n, m in layers.items():
        w = _blocks(m.weight, block)
        keep = torch.cat([new_masks[n].flatten(), new_masks[n].new_zeros((-m.weight.numel()) % block)]).view(-1, block)
        for b in torch.nonzero((~keep).any(1) & (w != 0).any(1)).flatten().tolist():
            q = torch.nonzero(~keep[b]).flatten()
            fq = finv[n][b][:, q]  # (B, |Q|)
            delta = -fq @ torch.linalg.solve(fq[q] + 1e-12 * torch.eye(len(q), device=fq.device), w[b, q])
            w[b] += delta
            w[b, q] = 0.0
        m.weight.copy_(w.flatten()[: m.weight.numel()].view_as(m.weight))
    return new_masks
