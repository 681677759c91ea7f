"""The six upstream pruning methods of the paper (plus structured filter pruning), each a small class
whose hooks the training loop `sparsenb.upstream.fit` calls:

    method.start(model, optimizer)        # before the first step (e.g. RigL's random ERK masks)
    method.after_backward(step)           # gradients are there (RigL reads them; masks zero them)
    method.after_step(step)               # weights updated (prune on schedule, re-apply masks)
    method.finish()                       # end of training (exact target sparsity, remove reparam.)

Steps are optimizer steps, `total_steps` the length of the run. Every method ends with exactly
`target` sparsity over the prunable layers (`prune.targets`). Hyperparameters: params/mini.yaml,
section `upstream.methods`.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.utils.parametrize as P

from .. import masks as masklib
from . import magnitude_masks, masks_from_scores, targets


class Method:
    """Base: a fixed mask (if any) is enforced on gradients, momentum and weights after every step."""

    name = "dense"
    from_dense = True          # starts from the trained dense model (else from scratch)
    fixed_at_end = True

    def __init__(self, target: float = 0.0, total_steps: int = 1, masks: dict | None = None, **hp):
        self.target, self.total_steps, self.hp = float(target), int(total_steps), hp
        self.initial_masks = masks             # a fixed mask to train under from the first step
        self.masks: dict[str, torch.Tensor] | None = None
        self.model = self.optimizer = None
        self.history: list[dict] = []

    # hooks ----------------------------------------------------------------------------------------
    def start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model, optimizer
        self.layers = targets(model)
        if self.initial_masks:
            self.set_masks({k: v.to(self.layers[k].weight.device) for k, v in self.initial_masks.items()})

    @torch.no_grad()
    def after_backward(self, step: int) -> None:
        if self.masks:
            for n, m in self.masks.items():
                g = self.layers[n].weight.grad
                if g is not None:
                    g.mul_(m)

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        self.enforce()

    def finish(self) -> None:
        self.set_masks(magnitude_masks(self.model, self.target)) if self.target > 0 else None
        self.enforce()

    # helpers --------------------------------------------------------------------------------------
    @torch.no_grad()
    def set_masks(self, masks: dict | None) -> None:
        self.masks = masks
        self.enforce()
        if masks:
            self.history.append({"sparsity": self.sparsity()})

    @torch.no_grad()
    def enforce(self) -> None:
        if not self.masks:
            return
        for n, m in self.masks.items():
            w = self.layers[n].weight
            w.mul_(m)
            buf = self.optimizer.state.get(w, {}).get("momentum_buffer") if self.optimizer else None
            if buf is not None:
                buf.mul_(m)

    def sparsity(self) -> float:
        from . import target_sparsity
        return target_sparsity(self.model)


def cubic_schedule(step: int, start: int, end: int, final: float, initial: float = 0.0) -> float:
    """Zhu & Gupta's gradual schedule: s_t = s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^3."""
    if step <= start:
        return initial
    if step >= end:
        return final
    return final + (initial - final) * (1 - (step - start) / max(end - start, 1)) ** 3


class GMP(Method):
    """Gradual magnitude pruning from the dense model: global magnitude masks on a cubic schedule
    between `start` and `end` (fractions of the run), every `every` steps; then fixed-mask finetuning."""

    name = "gmp"

    def _due(self, step: int) -> bool:
        s0, s1 = int(self.hp.get("start", 0.0) * self.total_steps), int(self.hp.get("end", 0.6) * self.total_steps)
        every = max(1, int(self.hp.get("every", 0.05) * self.total_steps))
        return s0 <= step <= s1 and (step - s0) % every == 0, s0, s1

    def prune_to(self, sparsity: float) -> None:
        self.set_masks(magnitude_masks(self.model, sparsity))

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        due, s0, s1 = self._due(step)
        if due or step == s1:
            self.prune_to(cubic_schedule(step, s0, s1, self.target))
        self.enforce()


class WoodFisher(GMP):
    """WoodFisher (Singh & Alistarh 2020): the GMP schedule, but each pruning step ranks weights by
    the OBS saliency w^2 / (2 [F^-1]_qq) under a block-diagonal empirical Fisher F (blocks of
    `block` weights inside each layer, damping `damp`, `fisher_samples` mini-batch gradients, the
    inverse built by Woodbury rank-one updates) and moves the surviving weights of each block by the
    OBS update dw = -F^-1[:, Q] (F^-1[Q, Q])^-1 w_Q for the pruned set Q."""

    name = "woodfisher"

    def __init__(self, target=0.0, total_steps=1, grad_fn=None, **hp):
        super().__init__(target, total_steps, **hp)
        self.grad_fn = grad_fn          # callable(model) -> None: one backward pass on a fresh mini-batch

    def prune_to(self, sparsity: float) -> None:
        if self.grad_fn is None:
            raise ValueError("WoodFisher needs grad_fn (one backward pass on a new mini-batch)")
        finv = fisher_inverse_blocks(self.model, self.layers, self.grad_fn, int(self.hp.get("fisher_samples", 32)),
                                     int(self.hp.get("block", 64)), float(self.hp.get("damp", 1e-4)))
        self.set_masks(obs_prune(self.layers, finv, sparsity, int(self.hp.get("block", 64))))


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
        g = torch.stack(gs, 1)                                   # (n_blocks, m, B)
        lam = damp * (g ** 2).mean(dim=(1, 2)).clamp_min(1e-12)   # per block, relative to gradient scale
        finv = torch.eye(block).expand(g.shape[0], block, block) / lam[:, None, None]
        for i in range(g.shape[1]):
            v = g[:, i, :, None]                                  # (n_blocks, B, 1)
            fv = finv @ v
            denom = samples + (v.transpose(1, 2) @ fv)            # (n_blocks, 1, 1)
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
        s = (w ** 2 / (2 * diag)).flatten()[: m.weight.numel()]
        scores[n] = s.view_as(m.weight)
    new_masks = masks_from_scores(scores, sparsity)
    for n, m in layers.items():
        w = _blocks(m.weight, block)
        keep = torch.cat([new_masks[n].flatten(), new_masks[n].new_zeros((-m.weight.numel()) % block)]).view(-1, block)
        for b in torch.nonzero((~keep).any(1) & (w != 0).any(1)).flatten().tolist():
            q = torch.nonzero(~keep[b]).flatten()
            fq = finv[n][b][:, q]                                 # (B, |Q|)
            delta = -fq @ torch.linalg.solve(fq[q] + 1e-12 * torch.eye(len(q)), w[b, q])
            w[b] += delta
            w[b, q] = 0.0
        m.weight.copy_(w.flatten()[: m.weight.numel()].view_as(m.weight))
    return new_masks


class ACDC(Method):
    """AC/DC (Peste et al. 2021), from scratch: dense warm-up, then alternating compressed phases
    (top-k magnitude mask at the target, fixed) and decompressed phases (all weights train, pruned
    ones restart from zero), each `phase` of the run long, ending with a compressed phase that
    lasts the final `final` fraction of the run."""

    name, from_dense = "acdc", False

    def phase_at(self, step: int) -> str:
        warm, phase, final = (self.hp.get(k, d) for k, d in (("warmup", 0.1), ("phase", 0.1), ("final", 0.2)))
        t = step / self.total_steps
        if t < warm:
            return "dense"
        if t >= 1 - final:
            return "compressed"
        return "compressed" if int((t - warm) / phase) % 2 == 0 else "decompressed"

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        now, nxt = self.phase_at(step), self.phase_at(step + 1)
        if nxt == "compressed" and (now != "compressed" or self.masks is None):
            self.set_masks(magnitude_masks(self.model, self.target))
        elif nxt != "compressed" and self.masks is not None:
            self.masks = None                                       # decompress: every weight trains
        self.enforce()


class RigL(Method):
    """RigL (Evci et al. 2020) with Erdos-Renyi-Kernel layer densities, from scratch: random sparse
    masks at the ERK densities; every `every` steps until `end` of the run, in each layer drop the
    fraction f_t = alpha/2 (1 + cos(pi t / T_end)) of active weights with the smallest magnitude and
    grow as many inactive ones with the largest gradient magnitude (grown weights start at zero).
    RigL "5x" is the same method run five times as many steps (see params)."""

    name, from_dense = "rigl", False

    def start(self, model, optimizer) -> None:
        super().start(model, optimizer)
        g = torch.Generator().manual_seed(int(self.hp.get("seed", 0)))
        dens = erk_densities({n: m.weight.shape for n, m in self.layers.items()}, 1 - self.target)
        keep = {n: int(round(dens[n] * m.weight.numel())) for n, m in self.layers.items()}
        total = sum(m.weight.numel() for m in self.layers.values())
        largest = max(self.layers, key=lambda n: self.layers[n].weight.numel())
        keep[largest] += int(round((1 - self.target) * total)) - sum(keep.values())   # exact overall count
        masks = {}
        for n, m in self.layers.items():
            r = torch.rand(m.weight.shape, generator=g)
            masks[n] = _exact_topk_mask_keep(r, keep[n])
        self.set_masks(masks)
        self.changed = 0

    @torch.no_grad()
    def after_backward(self, step: int) -> None:
        end = int(self.hp.get("end", 0.75) * self.total_steps)
        every = max(1, int(self.hp.get("every", 0.02) * self.total_steps))
        if 0 < step < end and step % every == 0:
            frac = self.hp.get("alpha", 0.3) / 2 * (1 + math.cos(math.pi * step / end))
            for n, m in self.layers.items():
                mask, w, grad = self.masks[n], m.weight, m.weight.grad
                if grad is None:
                    continue
                active = int(mask.sum())
                k = min(int(frac * active), mask.numel() - active)   # dense (ERK) layers stay dense
                if k == 0:
                    continue
                score_drop = torch.where(mask, w.abs(), torch.full_like(w, float("inf"))).flatten()
                dropped = torch.zeros(mask.numel(), dtype=torch.bool, device=mask.device)
                dropped[torch.argsort(score_drop, stable=True)[:k]] = True
                new = mask.flatten() & ~dropped
                # grow where the dense gradient is largest, never a weight dropped in this update
                score_grow = grad.abs().flatten().masked_fill(new | dropped, -1.0)
                grown = torch.zeros_like(dropped)
                grown[torch.argsort(score_grow, descending=True, stable=True)[:k]] = True
                new = new | grown
                w.masked_fill_(grown.view(mask.shape), 0.0)       # grown weights start at zero
                self.changed += int((new != mask.flatten()).sum())
                self.masks[n] = new.view_as(mask)
        super().after_backward(step)


def _exact_topk_mask_keep(scores: torch.Tensor, keep: int) -> torch.Tensor:
    flat = scores.flatten()
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[torch.argsort(flat, descending=True, stable=True)[:keep]] = True
    return mask.view_as(scores)


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


class SoftThreshold(nn.Module):
    """STR's reparametrisation: w_eff = sign(w) * relu(|w| - sigmoid(s)), s a learnable scalar."""

    def __init__(self, s: nn.Parameter):
        super().__init__()
        self.s = s

    def forward(self, w):
        return torch.sign(w) * torch.relu(w.abs() - torch.sigmoid(self.s))


class STR(Method):
    """Soft Threshold Reparametrization (Kusupati et al. 2020), from scratch: every prunable layer's
    weight goes through sign(w) relu(|w| - sigmoid(s_l)) with a learnable threshold parameter s_l
    (init `s_init`), trained with weight decay `s_decay` that raises the thresholds. To land on the
    target sparsity on a short run, s_decay is scaled up or down every `every` steps so the
    sparsity follows the cubic schedule (a controller; STR proper tunes the decay by hand). At the
    end the thresholds are folded into the weights and the result trimmed to the exact target by
    magnitude, then kept fixed for the final `final` fraction of the run."""

    name, from_dense = "str", False

    def start(self, model, optimizer) -> None:
        super().start(model, optimizer)
        self.thresholds = {}
        for n, m in self.layers.items():
            s = nn.Parameter(torch.tensor(float(self.hp.get("s_init", -8.0))))
            self.thresholds[n] = s
            P.register_parametrization(m, "weight", SoftThreshold(s))
        # no momentum on the thresholds: the controller below must see the effect of its last change
        self.s_opt = torch.optim.SGD(list(self.thresholds.values()), lr=optimizer.param_groups[0]["lr"])
        self.decay = float(self.hp.get("s_decay", 1e-3))
        self.s_history = []

    @torch.no_grad()
    def after_backward(self, step: int) -> None:
        end = int((1 - self.hp.get("final", 0.2)) * self.total_steps)
        if step >= end:
            return super().after_backward(step)
        for s in self.thresholds.values():
            if s.grad is None:
                s.grad = torch.zeros_like(s)
            s.grad.add_(self.decay * s)          # L2 decay on s < 0 pulls it up: thresholds rise
        self.s_opt.step()
        self.s_opt.zero_grad(set_to_none=True)
        every = max(1, int(self.hp.get("every", 0.02) * self.total_steps))
        if step % every == 0:
            want = cubic_schedule(step, 0, end, self.target)
            have = self.sparsity()            # reads the thresholded weights
            self.decay = min(max(self.decay * (1.25 if have < want else 0.8), 1e-7), 10.0)
            self.s_history.append({"step": step, "sparsity": have, "want": want,
                                   "threshold_mean": float(torch.stack([torch.sigmoid(s) for s in
                                                                        self.thresholds.values()]).mean())})

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        end = int((1 - self.hp.get("final", 0.2)) * self.total_steps)
        if step == end:
            self.fold()
        self.enforce()

    @torch.no_grad()
    def fold(self) -> None:
        """Replace every reparametrised weight by its thresholded value and fix the mask at exactly the
        target: the weights with the largest margin |w| - threshold survive. Where the thresholds
        pruned more than the target, the surviving weights below their threshold get back their
        un-thresholded value; where they pruned less, the smallest margins are cut."""
        if not any(P.is_parametrized(m, "weight") for m in self.layers.values()):
            return
        raw, margin = {}, {}
        for n, m in self.layers.items():
            w = m.parametrizations.weight.original
            raw[n] = w.detach().clone()
            margin[n] = w.abs() - torch.sigmoid(self.thresholds[n])
        keep = masks_from_scores(margin, self.target)
        for n, m in self.layers.items():
            P.remove_parametrizations(m, "weight", leave_parametrized=True)
            w = m.weight
            w.copy_(torch.where(keep[n] & (w == 0), raw[n], w) * keep[n])
        # the optimizer held the original (now removed) tensors: point it at the new ones
        self.optimizer.param_groups[0]["params"] = list(self.model.parameters())
        self.optimizer.state.clear()
        self.set_masks(keep)

    def finish(self) -> None:
        self.fold()
        super().finish()


class LTH(Method):
    """LTH for transfer (Chen et al. 2021): iterative magnitude pruning with rewinding finds the mask
    -- each round trains the masked dense weights, prunes `rate` (20%) of the remaining weights by
    magnitude, and rewinds to the dense weights -- and the final mask is applied to the *dense*
    upstream weights with no retraining. Driven by `upstream.lth_masks`, not by hooks."""

    name = "lth_t"


class Structured(GMP):
    """Structured pruning (appendix J): whole filters (conv output channels) with the smallest L1
    norm are zeroed, the same fraction in every prunable conv, gradually on the GMP schedule, then
    fixed-mask finetuning. `target` is the fraction of filters removed."""

    name = "structured"

    def prune_to(self, sparsity: float) -> None:
        masks = {}
        for n, m in self.layers.items():
            w = m.weight.detach()
            if isinstance(m, nn.Conv2d):
                norms = w.abs().flatten(1).sum(1)
                k = int(round(sparsity * w.shape[0]))
                keep = torch.ones(w.shape[0], dtype=torch.bool)
                keep[torch.argsort(norms, stable=True)[:k]] = False
                masks[n] = keep[:, None, None, None].expand_as(w).clone()
            else:
                masks[n] = torch.ones_like(w, dtype=torch.bool)
        self.set_masks(masks)

    def finish(self) -> None:
        self.prune_to(self.target)


METHODS = {"dense": Method, "gmp": GMP, "woodfisher": WoodFisher, "acdc": ACDC, "rigl_erk_1x": RigL,
           "rigl_erk_5x": RigL, "str": STR, "lth_t": LTH, "structured": Structured}


def make(method: str, target: float, total_steps: int, **hp) -> Method:
    from ..config import check_choice

    check_choice("method", method, METHODS)
    m = METHODS[method](target=target, total_steps=total_steps, **hp)
    m.name = method
    return m
