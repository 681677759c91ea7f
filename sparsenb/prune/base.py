"""The recipe interface every upstream method implements; `sparsenb.train.fit` calls its hooks:

    method.prepare(model)                 # before the optimizer exists (STR adds its thresholds)
    method.start(model, optimizer)        # before the first step (e.g. RigL's random ERK masks)
    method.after_backward(step)           # gradients are there (RigL reads them; masks zero them)
    method.after_step(step)               # weights updated (prune on schedule, re-apply masks)
    method.finish()                       # end of training (final mask)

Steps are optimizer steps; `total_steps` and `steps_per_epoch` describe the run. A method's class
says what it is: `family` (progressive | regularization | lottery_ticket | control | dense |
structured) and `from_dense` (starts from the trained dense model, else from random weights); its
budget (a multiple of the dense budget D) and hyperparameters are in params (`upstream.methods`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .magnitude import magnitude_masks, target_sparsity, targets

FAMILIES = ("dense", "control", "progressive", "regularization", "lottery_ticket", "structured")


class Method:
    """Dense training; a fixed mask (if given) is enforced on gradients, momentum and weights."""

    name = "dense"
    family = "dense"
    from_dense = False  # starts from the trained dense model (else from random initialisation)
    exact_target = True  # ends at exactly `target` sparsity (STR lands where its thresholds put it)
    # its keys in params (`upstream.methods.<name>`) and their types: the schema of its entry. `budget`
    # is the length of its own run in multiples of D (sparsenb.upstream.budget reads it).
    hyperparameters: dict[str, type] = {"budget": float}

    def __init__(
        self,
        target: float = 0.0,
        total_steps: int = 1,
        masks: dict | None = None,
        steps_per_epoch: int = 1,
        seed: int = 0,
        **hp,
    ):
        self.target, self.total_steps, self.steps_per_epoch, self.hp = (
            float(target),
            int(total_steps),
            int(steps_per_epoch),
            hp,
        )
        self.seed = int(seed)  # the upstream seed (methods that draw random masks use it)
        self.initial_masks = masks  # a fixed mask to train under from the first step
        self.masks: dict[str, torch.Tensor] | None = None
        self.model = self.optimizer = None
        self.history: list[dict] = []

    def param(self, key: str):
        """A hyperparameter from params (`upstream.methods.<name>`); missing ones are an error."""
        if key not in self.hp:
            raise KeyError(f"method {self.name!r} needs hyperparameter {key!r} (params: upstream.methods.{self.name})")
        return self.hp[key]

    # hooks ----------------------------------------------------------------------------------------
    def prepare(self, model: nn.Module) -> None:
        self.model = model
        self.layers = targets(model)

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
        if self.target > 0:
            self.set_masks(magnitude_masks(self.model, self.target))
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
        return target_sparsity(self.model)

    # resuming a killed run (sparsenb.train.fit) -----------------------------------------------------
    _RUNTIME = ("model", "optimizer", "layers", "grad_fn", "initial_masks")

    def state(self) -> dict:
        """What the method has learned or decided so far (masks, counters, history), without the
        objects it is attached to; `load_state` puts it back after prepare() and start()."""
        return {k: v for k, v in self.__dict__.items() if k not in self._RUNTIME}

    def load_state(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.masks:
            self.masks = {n: m.to(self.layers[n].weight.device) for n, m in self.masks.items()}
            self.enforce()


class Dense5x(Method):
    """The control for extended budgets: dense training as long as RigL 5x (so that longer training
    is not mistaken for a property of sparsity)."""

    name, family = "dense_5x", "control"


def cubic_schedule(step: int, start: int, end: int, final: float, initial: float = 0.0) -> float:
    """Zhu & Gupta's gradual schedule: s_t = s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^3 for
    t0 <= t <= t1 (s_i from t0 on, 0 before)."""
    if step < start:
        return 0.0
    if step >= end:
        return final
    return final + (initial - final) * (1 - (step - start) / max(end - start, 1)) ** 3
