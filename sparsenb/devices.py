"""Where and in which number format a run computes: seeding, the device (the profile's `device`:
auto, cpu, cuda, cuda:N) and mixed precision (fp32 | bf16 | fp16).

    devices.seed_everything(21); device = devices.device_of(cfg)
    prec = devices.Precision("bf16", device); with prec.autocast(): ...
"""

from __future__ import annotations

import contextlib
import functools
import os
import random

import numpy as np
import torch

from .errors import ConfigError, check_choice


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def cores() -> int:
    """The CPU cores this process may use (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def one_cpu_thread(run):
    """Decorate a run `run(spec, device=None)`: on a CPU it computes with one intra-op thread, the
    thread count restored after. The same run id then gives the same numbers on any machine (two
    threads sum convolution gradients in another order: full finetuning's reported accuracy moved by
    2 points on digits); the sweeps run one run per core anyway."""

    @functools.wraps(run)
    def pinned(spec, device=None):
        if torch.device(device or spec.device).type != "cpu":
            return run(spec, device)
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return run(spec, device)
        finally:
            torch.set_num_threads(before)

    return pinned


def isa() -> str:
    """The widest x86 vector instruction set of this CPU that PyTorch's kernels use (avx512 or avx2):
    CPU training on another one rounds differently, so a run reproduces bit for bit on the same."""
    import platform

    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    return f"{platform.machine()} {'avx512' if 'avx512f' in flags else 'avx2' if 'avx2' in flags else ''}".strip()


def machine() -> str:
    """Where a model is trained or a run computed (the same recipe gives other bits on another device,
    instruction set or library)."""
    where = f"cuda {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else f"cpu {isa()}"
    return f"{where}, torch {torch.__version__.split('+')[0]}, {torch.get_num_threads()} threads"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_of(cfg) -> torch.device:
    """The profile's `device`: auto (cuda when a GPU is visible, else cpu) or a torch device name."""
    name = cfg["device"]
    if name == "auto":
        return default_device()
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a device name; use auto, cpu, cuda or cuda:<index>") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: no GPU is visible here; use device auto or cpu")
    return device


PRECISIONS = ("fp32", "bf16", "fp16")


class Precision:
    """Mixed precision for one device: autocast to bf16 (GPU or CPU) or fp16 (GPU, with a GradScaler
    against underflow); fp32 does nothing. Weights, optimizer state and masks stay fp32."""

    def __init__(self, name: str = "fp32", device=None):
        check_choice("precision", name, PRECISIONS)
        self.name, self.device = name, torch.device(device or default_device())
        if name == "fp16" and self.device.type != "cuda":
            raise ConfigError("precision fp16 needs a GPU (its loss scaling); on a CPU use bf16 or fp32")
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name)
        self.scaler = torch.amp.GradScaler("cuda") if name == "fp16" else None

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()
