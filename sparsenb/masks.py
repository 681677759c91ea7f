"""Sparsity masks: derived from `weight != 0`, kept fixed, reported, transferred (LTH-T), and
analysed for fully pruned filters (paper Sec. 3.5).

    m = masks.from_weights(model)          # {layer name: bool tensor} for every conv/linear
    masks.apply(model, m)                  # re-zero pruned weights
    masks.report(model)                    # per-layer and global sparsity (DataFrame)
    masks.pruned_filters(model)            # fraction of all-zero conv output channels per layer
"""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn as nn

PRUNABLE = (nn.Conv2d, nn.Linear)


def prunable(model: nn.Module, include_head: bool = True) -> dict[str, nn.Module]:
    """Every conv and linear layer by name (the classifier `fc` only with include_head)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, PRUNABLE) and (include_head or n != "fc")}


def sparsity(t: torch.Tensor) -> float:
    return float((t == 0).sum()) / max(t.numel(), 1)


def from_weights(model: nn.Module, include_head: bool = False) -> dict[str, torch.Tensor]:
    """{layer: weight != 0} for the conv/linear layers (the head is excluded by default: it is
    replaced by a dense one downstream)."""
    return {n: (m.weight.detach() != 0) for n, m in prunable(model, include_head).items()}


@torch.no_grad()
def apply(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero every weight outside its mask (in place)."""
    layers = dict(model.named_modules())
    for name, mask in masks.items():
        w = layers[name].weight
        w.mul_(mask.to(w.device, w.dtype))


@torch.no_grad()
def transfer(sparse: nn.Module, dense: nn.Module, include_head: bool = False) -> nn.Module:
    """LTH-T: the mask of `sparse` applied to the weights of `dense` (in place; returns `dense`)."""
    m = from_weights(sparse, include_head)
    apply(dense, m)
    return dense


def global_sparsity(model: nn.Module, include_head: bool = True) -> float:
    layers = prunable(model, include_head).values()
    zeros = sum(int((m.weight == 0).sum()) for m in layers)
    total = sum(m.weight.numel() for m in layers)
    return zeros / max(total, 1)


def report(model: nn.Module, include_head: bool = True) -> pd.DataFrame:
    """One row per conv/linear layer (params, zeros, sparsity) and a final 'global' row."""
    rows = []
    for name, m in prunable(model, include_head).items():
        w = m.weight.detach()
        rows.append(
            {
                "layer": name,
                "type": type(m).__name__,
                "shape": tuple(w.shape),
                "params": w.numel(),
                "zeros": int((w == 0).sum()),
            }
        )
    df = pd.DataFrame(rows)
    total = {"layer": "global", "type": "", "shape": (), "params": int(df.params.sum()), "zeros": int(df.zeros.sum())}
    df = pd.concat([df, pd.DataFrame([total])], ignore_index=True)
    df["sparsity"] = df.zeros / df.params.clip(lower=1)
    return df


def pruned_filters(model: nn.Module) -> pd.DataFrame:
    """Per conv layer: output channels (filters) whose weights are all zero, count and fraction,
    with a final 'total' row (paper Sec. 3.5, App. E)."""
    rows = []
    for name, m in prunable(model, include_head=False).items():
        if not isinstance(m, nn.Conv2d):
            continue
        w = m.weight.detach().flatten(1)
        dead = int((w == 0).all(dim=1).sum())
        rows.append({"layer": name, "filters": w.shape[0], "pruned_filters": dead, "sparsity": sparsity(w)})
    df = pd.DataFrame(rows)
    total = {
        "layer": "total",
        "filters": int(df.filters.sum()),
        "pruned_filters": int(df.pruned_filters.sum()),
        "sparsity": float("nan"),
    }
    df = pd.concat([df, pd.DataFrame([total])], ignore_index=True)
    df["fraction"] = df.pruned_filters / df.filters
    return df


class FixedMask:
    """Keeps a model's zero set fixed during training: gradients of pruned weights are zeroed before
    the optimizer step (so momentum and weight decay never move them) and the weights are re-zeroed
    after it. Use as `fm = FixedMask(model); ...; fm.step(optimizer)` in place of optimizer.step()."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor] | None = None):
        self.model = model
        self.masks = masks if masks is not None else from_weights(model)
        layers = dict(model.named_modules())
        self.pairs = [(layers[n].weight, m.to(layers[n].weight.device)) for n, m in self.masks.items()]
        self.weights, self.on_device = [w for w, _ in self.pairs], [m for _, m in self.pairs]  # for step

    @torch.no_grad()
    def step(self, optimizer: torch.optim.Optimizer, scaler=None) -> None:
        """One optimizer step (through an fp16 GradScaler when given: a skipped step is fine, the
        weights are re-zeroed either way)."""
        # one fused multiply per list (torch._foreach_mul_): the same products as a loop over layers,
        # a few kernel launches instead of three per layer
        with_grad = [(w.grad, m) for w, m in self.pairs if w.grad is not None]
        if with_grad:
            torch._foreach_mul_(*map(list, zip(*with_grad)))
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
        torch._foreach_mul_(self.weights, self.on_device)
        # momentum buffers of pruned weights stay exactly zero: their gradient and decay are zero
        bufs = [(optimizer.state.get(w, {}).get("momentum_buffer"), m) for w, m in self.pairs]
        bufs = [(b, m) for b, m in bufs if b is not None]
        if bufs:
            torch._foreach_mul_(*map(list, zip(*bufs)))
