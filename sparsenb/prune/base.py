"""The recipe interface every upstream method implements; `sparsenb.train.fit` calls its hooks:

    method.prepare(model)                 # before the optimizer exists (STR adds its thresholds)
    method.start(model, optimizer)        # before the first step (e.g. RigL's random ERK masks)
    method.after_backward(step)           # gradients are there (RigL reads them; masks zero them)
    method.after_step(step)               # weights updated (prune on schedule, re-apply masks)
    method.finish()                       # end of training (final mask)

Steps are optimizer steps; `total_steps` and `steps_per_epoch` describe the run. A method's class
says what it is and owns every special case of it, so that no other module compares method names:
- `family` (progressive | regularization | lottery_ticket | control | dense | structured);
- `from_dense`: starts from the trained dense model (else from random weights);
- `sparse`: False for dense and the controls (filed at sparsity 0, trained at target 0);
- `control`: the name of its budget-matched control -- the same run at target sparsity 0: same
  start, schedule, data order, seed and gradient bound (None for dense and the controls);
- `follows`: a control that runs another method's schedule takes that method's params entry;
- `dense_state`: keeps the dense weights and only finds masks, one trajectory for every sparsity
  (`find_masks`, `trajectory_budget`: LTH-T);
- `needs_gradients`: prunes from fresh mini-batch gradients (`grad_fn`: WoodFisher);
- `eval_interpolation`: how its published models were evaluated (RigL's TF code: bicubic), applied
  where the profile evaluates published checkpoints (`sparsenb.profiles`);
- `finetunes`: the finetuning modes the paper reports it in (LTH-T: full only);
- `extra_info()`: what its run adds to the checkpoint's record.
Its budget (a multiple of the dense budget D) and hyperparameters are in params (`upstream.methods`);
an `optimizer` entry there replaces the shared learning rate and schedule with the method's own
(the official code's), for it and for the control that follows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from .magnitude import magnitude_masks, target_sparsity, targets

FAMILIES = ("dense", "control", "progressive", "regularization", "lottery_ticket", "structured")


@dataclass
class Schedule:
    """A method's own learning rate and schedule (its `optimizer` entry in params; sparsenb.train.lr_factor)."""

    lr: float
    schedule: Literal["cosine", "constant", "exponential"]
    gamma: float | None = None  # exponential: the factor of each decay
    decay_from: float | None = None  # ... the first decay, as a fraction of the run
    decay_every: float | None = None  # ... the run's fraction between decays
    decay_to: float | None = None  # ... the last decay


class Method:
    """Training under a method's hooks; a fixed mask (if given) is enforced on gradients, momentum
    and weights. A new pruning method subclasses it: sparse, with dense at D as its control unless
    it names another."""

    name = "dense"
    family = "dense"
    from_dense = False  # starts from the trained dense model (else from random initialisation)
    exact_target = True  # ends at exactly `target` sparsity (STR lands where its thresholds put it)
    sparse = True  # False for dense and the controls: sparsity 0
    control: str | None = "dense"  # the budget-matched control (the same run at target sparsity 0)
    follows: str | None = None  # a control: the method whose params entry (schedule) it runs
    dense_state = False  # keeps the dense weights, only finds a mask (LTH-T): no run of its own
    needs_gradients = False  # needs `grad_fn` (fresh mini-batch gradients) to prune (WoodFisher)
    weight_sparsity = True  # its nominal sparsity is a fraction of weights (structured: of filters)
    eval_interpolation = "bilinear"  # resizing at evaluation of its published models (RigL: bicubic)
    finetunes = ("linear", "full")  # the finetuning modes the paper reports it in (LTH-T: full only)
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

    def extra_info(self) -> dict:
        """What the method's run adds to the checkpoint's record (RigL: mask changes; STR: history)."""
        return {}

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


class Dense(Method):
    """Dense training from random weights (the budget D): the model every from-dense method starts from."""

    name, family, sparse, control = "dense", "dense", False, None


class Control(Dense):
    """A budget-matched control: dense training (target 0) over a sparse method's budget, start and
    schedule, so that a longer or restarted run is not mistaken for a property of sparsity.
    dense_5x: 5D from random weights (RigL 5x's control); dense_2x_scratch: 2D from random weights
    (with dense at D and 5D, the budget -> transfer reference curve)."""

    family = "control"
    hyperparameters = {"budget": float}


class ContinuedControl(Control):
    """dense_2x: the dense model trained a further D on GMP's schedule (the one GMP and WoodFisher
    run after the dense model) without pruning -- GMP at target 0; their control."""

    from_dense, follows = True, "gmp"
    hyperparameters: dict[str, type] = {}


class RandomInit(Control):
    """random_init: the architecture at its initialisation (the upstream seed's), no upstream training
    (budget 0), finetuned exactly as every other model. The control of transfer itself: a task on
    which the dense upstream model does not beat it does not need the upstream model at all."""


def cubic_schedule(step: int, start: int, end: int, final: float, initial: float = 0.0) -> float:
    """Zhu & Gupta's gradual schedule: s_t = s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^3 for
    t0 <= t <= t1 (s_i from t0 on, 0 before)."""
    if step < start:
        return 0.0
    if step >= end:
        return final
    return final + (initial - final) * (1 - (step - start) / max(end - start, 1)) ** 3
