"""Every training loop of sparsenb, over one SGD epoch helper (`sgd_epoch`): linear finetuning on
cached features (sparsenb.features), full finetuning with fixed masks, online linear finetuning
(Sec. 3.6), and `fit`, the upstream loop with a pruning method's hooks.

    res = train.linear_finetune(Xtr, ytr, Xte, yte, num_classes, cfg.linear, metric="top1", seed=21)
    res = train.full_finetune(model, train_loader, test_loader, cfg.full, metric="top1", seed=21)
    res["best"], res["final"], res["curve"]

Hyperparameters come from params/<profile>.yaml (sections `linear` and `full`).
"""

from __future__ import annotations

import math
import time
from typing import TypedDict

import numpy as np
import torch
import torch.nn as nn

from . import devices, metrics, prune
from . import masks as masklib
from .progress import bar, log
from .snapshot import Snapshot


class RunResult(TypedDict, total=False):
    """What a finetuning loop returns (`summary`): the accuracy conventions and the curve."""

    reported: float  # test accuracy at the epoch chosen on validation ('final' without validation)
    reported_epoch: int
    val_accuracy: float
    best: float  # the best test accuracy over epochs (the paper code's convention)
    best_epoch: int
    final: float
    curve: list[dict]  # per epoch: epoch, loss, accuracy (test), val_accuracy
    train_seconds: float
    predictions: dict  # split -> {"labels", "probs" (float16)} at the reported epoch (results.record stores them)


class FitResult(TypedDict, total=False):
    """What `fit` returns (an upstream run): its length, time, curve, sparsity and top-1 per split."""

    steps: int
    epochs: float
    seconds: float
    curve: list[dict]  # per epoch: epoch, loss (and sparsity for sparse methods)
    sparsity: float
    val_top1: float
    test_top1: float
    top1: float  # = test_top1


def sgd_epoch(
    forward,
    batches,
    optimizer: torch.optim.Optimizer,
    step=None,
    after_backward=None,
    after_step=None,
    max_steps: int | None = None,
    precision: devices.Precision | None = None,
) -> tuple[float, int]:
    """One pass of SGD over `batches` ((x, y) on the right device): the loss of `forward(x)`, its
    gradients, `after_backward()` (masks, clipping), `step()` (default optimizer.step),
    `after_step()`; stops early after `max_steps`; the forward pass under `precision`'s autocast.
    Every training loop of sparsenb is this one. Returns (mean loss, steps taken)."""
    precision = precision or devices.Precision("fp32", "cpu")
    loss_fn = nn.CrossEntropyLoss()
    total, n, steps = None, 0, 0
    for x, y in batches:
        if max_steps is not None and steps >= max_steps:
            break
        with precision.autocast():
            loss = loss_fn(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        precision.backward(loss)
        if after_backward is not None:
            after_backward()
        (step or optimizer.step)()
        if after_step is not None:
            after_step()
        total = loss.detach() * len(y) + (0 if total is None else total)
        n += len(y)
        steps += 1
    return (float(total) / n if n else 0.0), steps


def _on(device, loader, channels_last: bool = False):
    """The batches of `loader` moved to `device` (images channels-last when asked)."""
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        yield (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y.to(device, non_blocking=True)


def _sgd(params, hp) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD (lr, momentum, weight decay on every parameter, BN and biases included, as the official
    optimizer over model.parameters(): policies/trainers.py:24-35) and MultiStepLR, stepped once
    after every epoch: the lr drops once `milestones[i]` epochs are done. The official trainer drops
    it after 0-based epochs 50 and 100 (policies/trainers.py:134-137): milestones [51, 101]."""
    opt = torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(hp["milestones"]), gamma=hp["gamma"])
    return opt, sched


# --- evaluation ------------------------------------------------------------------------------


@torch.no_grad()
def outputs(model: nn.Module, loader, device=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, predictions, class probabilities) over a loader, model in eval mode; predictions are
    the argmax of the logits, probabilities their softmax (float32)."""
    device = device or devices.default_device()
    model.eval()
    ys, ps, probs = [], [], []
    for x, y in loader:
        out = model(x.to(device, non_blocking=True)).float()
        ps.append(out.argmax(1).cpu())
        probs.append(out.softmax(1).cpu())
        ys.append(y)
    return torch.cat(ys).numpy(), torch.cat(ps).numpy(), torch.cat(probs).numpy()


def predict(model: nn.Module, loader, device=None) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions) over a loader, model in eval mode."""
    y, p, _ = outputs(model, loader, device)
    return y, p


def evaluate(model: nn.Module, loader, metric: str = "top1", device=None) -> float:
    y, p = predict(model, loader, device)
    return metrics.score(y, p, metric)


class Chosen:
    """The test (and val) class probabilities of the epoch a run reports: the first epoch with the
    best validation accuracy, or the last epoch without validation -- as `summary` chooses it."""

    def __init__(self):
        self.val, self.predictions = None, None

    def offer(self, row: dict, preds: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """`preds`: split -> (labels, probabilities) of this epoch."""
        v = row.get("val_accuracy")
        if self.predictions is None or v is None or v > self.val:
            self.val = v
            self.predictions = {s: {"labels": y, "probs": p.astype(np.float16)} for s, (y, p) in preds.items()}


# --- linear finetuning -------------------------------------------------------------------------


def linear_finetune(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    hp: dict,
    metric: str = "top1",
    seed: int = 0,
    device=None,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> RunResult:
    """Train a dense nn.Linear head (PyTorch default init) on fixed features with SGD + momentum,
    weight decay and a step schedule (hp: lr, momentum, weight_decay, batch_size, epochs,
    milestones, gamma). Evaluated on the validation (if given) and test features after every epoch.

    Returns `summary` of the curve ('reported': test at the epoch chosen on validation, ...) + 'head'."""
    device = device or devices.default_device()
    g = devices.seed_everything(seed)
    head = nn.Linear(train_x.shape[1], num_classes).to(device)
    opt, sched = _sgd(head.parameters(), hp)
    train_x, train_y = train_x.to(device), train_y.to(device)
    evals = {"test": (test_x.to(device), test_y.numpy())}
    if val is not None:
        evals["val"] = (val[0].to(device), val[1].numpy())
    n, bs = len(train_y), int(hp["batch_size"])
    curve, chosen = [], Chosen()
    t0 = time.time()
    for epoch in range(1, int(hp["epochs"]) + 1):
        head.train()
        perm = torch.randperm(n, generator=g).to(device)
        loss, _ = sgd_epoch(head, ((train_x[idx], train_y[idx]) for idx in perm.split(bs)), opt)
        sched.step()
        head.eval()
        row, preds = {"epoch": epoch, "loss": loss}, {}
        with torch.no_grad():
            for name, (x, y) in evals.items():
                logits = head(x).float()
                row["accuracy" if name == "test" else "val_accuracy"] = metrics.score(
                    y, logits.argmax(1).cpu().numpy(), metric
                )
                preds[name] = (y, logits.softmax(1).cpu().numpy())
        chosen.offer(row, preds)
        curve.append(row)
        if epoch == 1 or epoch % max(1, int(hp["epochs"]) // 10) == 0 or epoch == int(hp["epochs"]):
            _log_epoch("linear", epoch, hp, row, metric, t0)
    return summary(curve, time.time() - t0, head=head.state_dict(), predictions=chosen.predictions)


def summary(curve: list[dict], seconds: float, **extra) -> RunResult:
    """Both reporting conventions of a run from its per-epoch curve:
    - 'reported': test accuracy at the epoch with the best validation accuracy (first of ties) --
      the mini profile's convention: nothing is chosen on the test set;
    - 'best' (+ 'best_epoch'): the highest test accuracy over epochs, the paper code's convention;
    - 'final': test accuracy after the last epoch.
    Without a validation curve, 'reported' is 'final' (no choice made at all)."""
    best = max(curve, key=lambda r: r["accuracy"])
    out = {
        "best": best["accuracy"],
        "best_epoch": best["epoch"],
        "final": curve[-1]["accuracy"],
        "curve": curve,
        "train_seconds": seconds,
    }
    if all("val_accuracy" in r for r in curve):
        chosen = max(curve, key=lambda r: r["val_accuracy"])
        out.update(reported=chosen["accuracy"], reported_epoch=chosen["epoch"], val_accuracy=chosen["val_accuracy"])
    else:
        out.update(reported=curve[-1]["accuracy"], reported_epoch=curve[-1]["epoch"])
    return {**out, **extra}


# --- full finetuning ---------------------------------------------------------------------------


class FullTrainer:
    """The training step of full finetuning, set up once: the model on its device (channels-last when
    asked), SGD and its step schedule (`_sgd`), the fixed zero set (`masks.FixedMask`), the precision
    and `torch.compile`. `epoch(batches)` is what `full_finetune` runs every epoch and what
    `bench train` times."""

    def __init__(
        self,
        model: nn.Module,
        hp: dict,
        device=None,
        fixed_masks: dict | None = None,
        channels_last: bool = True,
        precision: str = "fp32",
        compile: bool = False,
    ):
        self.device = torch.device(device or devices.default_device())
        self.prec = devices.Precision(precision, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
        fm_masks = fixed_masks if fixed_masks is not None else masklib.from_weights(model, include_head=False)
        self.model = model.to(self.device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.channels_last = channels_last
        self.fixed = masklib.FixedMask(self.model, fm_masks)
        self.opt, self.sched = _sgd(self.model.parameters(), hp)
        self.net = torch.compile(self.model) if compile else self.model  # shares model's parameters (and masks)

    def epoch(self, batches, desc: str = "") -> float:
        """One epoch of SGD over `batches` (a loader, or any iterable of (x, y)) with the zero set
        fixed on every step, then the schedule's step; returns the mean loss."""
        self.model.train()
        loss, _ = sgd_epoch(
            self.net,
            _on(self.device, bar(batches, desc=desc), self.channels_last),
            self.opt,
            step=lambda: self.fixed.step(self.opt, self.prec.scaler),
            precision=self.prec,
        )
        self.sched.step()
        return loss


def full_finetune(
    model: nn.Module,
    train_loader,
    test_loader,
    hp: dict,
    metric: str = "top1",
    seed: int = 0,
    device=None,
    fixed_masks: dict | None = None,
    channels_last: bool = True,
    val_loader=None,
    precision: str = "fp32",
    compile: bool = False,
) -> RunResult:
    """Finetune every unpruned weight, BN included, with the zero set of the backbone fixed: the
    mask (from `weight != 0` unless given) is enforced by `masks.FixedMask` on every step, so pruned
    weights get no gradient, momentum or weight-decay drift. The head should already be the new
    dense one (`models.replace_head`) and is not masked.

    `precision` (fp32 | bf16 | fp16) autocasts the forward pass; the zero set stays fixed bit for bit
    under every one (weights, optimizer state and masks are fp32). `compile` runs the model through
    `torch.compile` (same parameters, so the masks hold as in eager mode).

    Returns `summary` of the curve (validation evaluated too when `val_loader` is given) and
    'sparsity' (of the prunable backbone layers: every conv but the stem)."""
    devices.seed_everything(seed)
    ft = FullTrainer(model, hp, device, fixed_masks, channels_last, precision, compile)
    curve, chosen = [], Chosen()
    t0 = time.time()
    for epoch in range(1, int(hp["epochs"]) + 1):
        row = {"epoch": epoch, "loss": ft.epoch(train_loader, desc=f"epoch {epoch}")}
        preds = _score_epoch(ft.net, {"test": test_loader, "val": val_loader}, row, metric, ft.device)
        chosen.offer(row, preds)
        curve.append(row)
        _log_epoch("full", epoch, hp, row, metric, t0)
    return summary(
        curve,
        time.time() - t0,
        sparsity=prune.target_sparsity(ft.model, include_head=False),
        predictions=chosen.predictions,
    )


def _score_epoch(net: nn.Module, loaders: dict, row: dict, metric: str, device) -> dict:
    """Adds the test (and val) accuracy of `net` to the epoch's `row`; returns split -> (labels,
    probabilities) for `Chosen.offer`. A split whose loader is None is skipped."""
    preds = {}
    for name, loader in loaders.items():
        if loader is not None:
            y, p, prob = outputs(net, loader, device)
            row["accuracy" if name == "test" else "val_accuracy"] = metrics.score(y, p, metric)
            preds[name] = (y, prob)
    return preds


def _log_epoch(kind: str, epoch: int, hp: dict, row: dict, metric: str, t0: float) -> None:
    log(
        f"{kind} epoch {epoch:>3}/{hp['epochs']}  loss {row['loss']:.4f}  {metric} {row['accuracy']:.4f}"
        + (f"  val {row['val_accuracy']:.4f}" if "val_accuracy" in row else "")
        + f"  ({time.time() - t0:.1f} s)"
    )


# --- online linear finetuning (Sec. 3.6) ----------------------------------------------------------


def online_linear_finetune(
    embed,
    train_loader,
    test_loader,
    feature_dim: int,
    num_classes: int,
    hp: dict,
    metric: str = "top1",
    seed: int = 0,
    val_loader=None,
) -> RunResult:
    """Linear finetuning where every training batch (augmented) goes through the frozen backbone
    `embed` (a callable images -> features: an `engine.Engine` or a torch module) on every step,
    and the dense head trains in PyTorch. Returns the usual summary ('reported': test at the epoch
    chosen on `val_loader` where given) plus 'epoch_seconds' (the training part of each epoch:
    feature extraction + head update)."""
    devices.seed_everything(seed)
    head = nn.Linear(feature_dim, num_classes)
    opt, sched = _sgd(head.parameters(), hp)
    curve, epoch_seconds = [], []
    t_all = time.time()
    for epoch in range(1, int(hp["epochs"]) + 1):
        t0 = time.time()
        head.train()

        def forward(x):
            with torch.no_grad():
                f = embed(x)
            return head(f)

        loss, _ = sgd_epoch(forward, bar(train_loader, desc=f"online epoch {epoch}"), opt)
        sched.step()
        epoch_seconds.append(time.time() - t0)
        head.eval()
        row = {"epoch": epoch, "loss": loss, "seconds": epoch_seconds[-1]}
        for key, loader in (("accuracy", test_loader), ("val_accuracy", val_loader)):
            if loader is not None:
                ys, ps = [], []
                with torch.no_grad():
                    for x, y in loader:
                        ps.append(head(embed(x)).argmax(1))
                        ys.append(y)
                row[key] = metrics.score(torch.cat(ys).numpy(), torch.cat(ps).numpy(), metric)
        acc = row["accuracy"]
        curve.append(row)
        log(
            f"online epoch {epoch:>3}/{hp['epochs']}  loss {loss:.4f}  {metric} {acc:.4f}  "
            f"epoch {epoch_seconds[-1]:.2f} s"
        )
    return summary(curve, time.time() - t_all, epoch_seconds=float(np.mean(epoch_seconds)))


# --- upstream training: one SGD loop with a pruning method's hooks ------------------------------


def lr_factor(opt: dict, total: int):
    """The learning rate's multiplier at step s of a `total`-step run, by `opt["schedule"]`:
    - cosine: 0.5 (1 + cos(pi s / total)), to zero at the end (the shared upstream recipe);
    - constant: 1 (LTH-T's IMP rounds);
    - exponential: 1 until `decay_from`, then times `gamma` at `decay_from` and every `decay_every`
      after it up to `decay_to` (fractions of the run): WoodFisher's and GMP's continuation from the
      dense model (ExponentialLR stepped after epochs 40, 46, ..., 88 of 100: from 0.41 every 0.06
      to 0.89, nine decays)."""
    kind = opt.get("schedule", "cosine")
    if kind == "cosine":
        return lambda s: 0.5 * (1 + math.cos(math.pi * s / total))
    if kind == "constant":
        return lambda s: 1.0
    if kind == "exponential":
        gamma, start, every = float(opt["gamma"]), float(opt["decay_from"]), float(opt["decay_every"])
        most = math.floor((float(opt.get("decay_to", 1.0)) - start) / every + 1e-9) + 1

        def factor(s: int) -> float:
            t = s / total
            return 1.0 if t < start - 1e-9 else gamma ** min(most, math.floor((t - start) / every + 1e-9) + 1)

        return factor
    raise ValueError(f"unknown learning-rate schedule {kind!r}: cosine, constant or exponential")


def fit(
    model: nn.Module,
    method: prune.Method,
    train_loader,
    epochs: float,
    opt: dict,
    device=None,
    evals: dict | None = None,
    desc: str = "",
    grad_clip: float | None = None,
    resume=None,
) -> FitResult:
    """Train for `epochs` (may be fractional) with SGD (`opt`: lr, momentum, nesterov, weight_decay)
    and the learning-rate schedule of `opt` (`lr_factor`), calling the method's hooks around every step;
    ends with method.finish(), then top-1 on each loader of `evals` ({"val": ..., "test": ...}).

    `grad_clip` bounds the gradient norm (after the method masked it). It is part of the one recipe
    (dense included) because weights coming back to life (AC/DC's decompressed phases, RigL's growth)
    behind BatchNorm get huge gradients in very sparse layers; convergence.csv shows its effect on
    dense training.

    `resume` (a path): the run's state is saved there after every epoch (model, optimizer, schedule,
    the method's state, the data order's random state) and a run that finds it continues from it --
    a killed long run loses at most one epoch, and ends as the uninterrupted run would (bit for bit
    where the method's randomness is all in that state; WoodFisher's Fisher batches are not). The
    file is removed when the run finishes."""
    device = device or devices.default_device()
    model.to(device).to(memory_format=torch.channels_last)
    steps_per_epoch = len(train_loader)
    total = max(1, int(round(epochs * steps_per_epoch)))
    method.total_steps, method.steps_per_epoch = total, steps_per_epoch
    method.prepare(model)
    optimizer = _fit_sgd(model, opt)
    method.start(model, optimizer)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(opt, total))
    hooks, t0, curve, before = _FitHooks(model, method, sched, grad_clip), time.time(), [], 0.0
    snapshot = Snapshot(resume, desc, total)
    if snapshot.exists():
        hooks.step, curve, before = snapshot.restore(model, optimizer, sched, method, train_loader, device)
        log(f"{desc}: resumed at step {hooks.step}/{total} from {resume}")
    model.train()
    while hooks.step < total:
        loss, _ = sgd_epoch(
            model,
            _on(device, bar(train_loader, desc=desc), channels_last=True),
            optimizer,
            after_backward=hooks.after_backward,
            after_step=hooks.after_step,
            max_steps=total - hooks.step,
        )
        curve.append(_fit_row(model, method, round(hooks.step / steps_per_epoch, 2), loss))
        _log_fit(desc, curve[-1], epochs, before + time.time() - t0)
        if hooks.step < total:
            snapshot.save(hooks.step, curve, before + time.time() - t0, model, optimizer, sched, method, train_loader)
    method.finish()
    snapshot.remove()
    out = {"steps": total, "epochs": epochs, "seconds": before + time.time() - t0, "curve": curve}
    return _fit_result(model, out, evals, device)


def _fit_sgd(model: nn.Module, opt: dict) -> torch.optim.SGD:
    """The upstream optimizer over every parameter (`opt`: lr, momentum, weight_decay, nesterov)."""
    return torch.optim.SGD(
        model.parameters(),
        lr=opt["lr"],
        momentum=opt["momentum"],
        weight_decay=opt["weight_decay"],
        nesterov=opt["nesterov"],
    )


class _FitHooks:
    """The step counter of `fit` and what runs around each of its SGD steps: the method's hooks,
    gradient clipping after the method masked the gradients, the schedule's step."""

    def __init__(self, model: nn.Module, method: prune.Method, sched, grad_clip: float | None):
        self.model, self.method, self.sched, self.grad_clip = model, method, sched, grad_clip
        self.step = 0

    def after_backward(self) -> None:
        self.method.after_backward(self.step)
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)

    def after_step(self) -> None:
        self.method.after_step(self.step)
        self.sched.step()
        self.step += 1


def _fit_row(model: nn.Module, method: prune.Method, epoch: float, loss: float) -> dict:
    """The curve's row of one `fit` epoch: epoch, loss, and sparsity for a sparse method."""
    row = {"epoch": epoch, "loss": loss}
    if method.family not in ("dense", "control"):
        row["sparsity"] = prune.target_sparsity(model)
    return row


def _log_fit(desc: str, row: dict, epochs: float, seconds: float) -> None:
    log(
        f"{desc} epoch {row['epoch']:.2f}/{epochs:g}  loss {row['loss']:.3f}"
        + (f"  sparsity {row['sparsity']:.3f}" if "sparsity" in row else "")
        + f"  ({seconds:.0f} s)"
    )


def _fit_result(model: nn.Module, out: dict, evals: dict | None, device) -> FitResult:
    """`out` (steps, epochs, seconds, curve) with the final sparsity and top-1 on each of `evals`."""
    out["sparsity"] = prune.target_sparsity(model)
    for name, loader in (evals or {}).items():
        out[f"{name}_top1"] = evaluate(model, loader, "top1", device)
    if "test_top1" in out:
        out["top1"] = out["test_top1"]
    return out
