"""WoodFisher (Singh & Alistarh 2020), progressive: GMP's schedule, but each pruning step ranks the
weights by the OBS saliency w^2 / [F^-1]_qq under a block-diagonal empirical Fisher F and moves the
surviving weights by the OBS update. `form: official` is the official block pruner as its ResNet50
gradual runs use it (IST-DASLab/WoodFisher d4b1a96, pruners/woodfisherblock.py = "WFB",
scripts/resnet50_woodfisher_sparsity-0.9.sh), mapped line by line in docs/official-schedules.md:
- `fisher_samples` gradients, each of the mean loss over `fisher_batch` fresh training images, with
  the network in eval mode (BatchNorm's running statistics: WFB L521-523) and the gradients of the
  already pruned weights zeroed (WFB L52-56);
- per chunk of `block` contiguous weights of a layer, F = damp I + (1/N) sum_i g_i g_i^T with one
  absolute `damp` for every chunk (WFB L354-373), kept in the exact low-rank form
  F^-1 = (I - G^T (N damp I + G G^T)^-1 G) / damp of the official Woodbury recursion;
- one global ranking of w^2 / [F^-1]_qq over all layers (--woodburry-joint-sparsify), then the sum of
  the newly pruned weights' single-weight OBS updates dw = -F^-1 sum_q (w_q / [F^-1]_qq) e_q
  (WFB L446-473, L718-761), then the masks.
`form: pre_fix` (and an entry without `form`: regime A's models, built before the fix, so their
recipe keys stay valid) is the earlier port, which departs in four places: the Fisher pass in training
mode (BatchNorm's running statistics frozen), `damp` relative to each block's mean squared gradient,
gradients not masked, and the exact joint OBS solve per block. Its eval-mode BN omission alone costs
~8 points at 90% (the review in docs/official-schedules.md)."""

from __future__ import annotations

import contextlib
from typing import Literal

import torch
import torch.nn as nn

from .gmp import GMP
from .magnitude import masks_from_scores


class WoodFisher(GMP):
    name, needs_gradients = "woodfisher", True
    hyperparameters = {
        **GMP.hyperparameters,
        "fisher_samples": int,
        "fisher_batch": int,
        "block": int,
        "damp": float,
        "form": Literal["official", "pre_fix"] | None,  # absent: pre_fix (regime A's models)
    }

    def __init__(self, target=0.0, total_steps=1, grad_fn=None, **hp):
        super().__init__(target, total_steps, **hp)
        self.grad_fn = grad_fn  # callable(model) -> None: one backward pass on a fresh mini-batch

    def prune_to(self, sparsity: float) -> None:
        if self.grad_fn is None:
            raise ValueError("WoodFisher needs grad_fn (one backward pass on a new mini-batch)")
        n, block, damp = int(self.param("fisher_samples")), int(self.param("block")), float(self.param("damp"))
        if (self.hp.get("form") or "pre_fix") == "official":
            grads = fisher_gradients(self.model, self.layers, self.grad_fn, n, self.masks)
            self.set_masks(official_prune(self.layers, grads, self.masks, sparsity, block, damp))
            return
        with frozen_bn_stats(self.model):
            finv = fisher_inverse_blocks(self.model, self.layers, self.grad_fn, n, block, damp)
        self.set_masks(obs_prune(self.layers, finv, sparsity, block))


# the official form ------------------------------------------------------------------------------------
@torch.no_grad()
def fisher_gradients(model: nn.Module, layers, grad_fn, samples: int, masks=None) -> dict[str, torch.Tensor]:
    """{layer: (samples, numel)} gradients of `samples` calls of `grad_fn` in eval mode, the pruned
    weights' entries zeroed; the model's mode is restored after."""
    was = model.training
    model.eval()
    grads = {n: [] for n in layers}
    try:
        for _ in range(samples):
            model.zero_grad(set_to_none=True)
            with torch.enable_grad():
                grad_fn(model)
            for n, m in layers.items():
                g = m.weight.grad.detach().flatten().clone()
                grads[n].append(g * masks[n].flatten() if masks else g)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was)
    return {n: torch.stack(g) for n, g in grads.items()}


class ChunkInverse:
    """F^-1 of one chunk, F = damp I + (1/N) G^T G (G: N x B gradients), in float64 low-rank form:
    its diagonal and products with a vector, without the B x B matrix."""

    def __init__(self, grads: torch.Tensor, damp: float):
        self.g, self.damp = grads.double(), damp
        eye = torch.eye(len(self.g), dtype=torch.float64, device=self.g.device)
        k = len(self.g) * damp * eye + self.g @ self.g.T
        self.kinv = torch.linalg.inv(k)
        self.diag = (1.0 - ((self.g.T @ self.kinv) * self.g.T).sum(1)) / damp

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return (v - self.g.T @ (self.kinv @ (self.g @ v))) / self.damp


@torch.no_grad()
def official_prune(layers, grads: dict, masks, sparsity: float, block: int, damp: float) -> dict[str, torch.Tensor]:
    """WFB's prune_to_level with joint sparsification: the new global masks at `sparsity`, the weights
    moved by the newly pruned weights' single-weight OBS updates and masked."""
    chunks, scores = {}, {}
    for n, m in layers.items():
        chunks[n] = [(s, ChunkInverse(grads[n][:, s : s + block], damp)) for s in range(0, m.weight.numel(), block)]
        diag = torch.cat([c.diag for _, c in chunks[n]])
        alive = masks[n].flatten().double() if masks else torch.ones_like(diag)
        scores[n] = ((m.weight.flatten().double() ** 2 / (diag + 1e-10) + 1e-10) * alive).view_as(m.weight).float()
    new = masks_from_scores(scores, sparsity)
    for n, m in layers.items():
        w, keep = m.weight.flatten().double(), new[n].flatten()
        newly = (masks[n].flatten() if masks else torch.ones_like(keep)) & ~keep
        delta = torch.zeros_like(w)
        for s, c in chunks[n]:
            q = newly[s : s + len(c.diag)]
            if q.any():
                delta[s : s + len(q)] = c.matvec(torch.where(q, -w[s : s + len(q)] / c.diag, 0.0))
        m.weight.copy_(((w + delta) * keep).view_as(m.weight))
    return new


# the pre-fix form (regime A's models) ---------------------------------------------------------------
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
