"""The resumable state of one upstream training run (`train.fit(..., resume=path)`): model,
optimizer, schedule, the pruning method's own state and the data order, saved after every epoch,
so a killed run continues where it stopped and ends as the uninterrupted run would."""

from __future__ import annotations

from pathlib import Path

import torch

from . import files
from .errors import ConfigError


class Snapshot:
    """The resumable state of one `fit` run in one file (our own: loaded with weights_only=False)."""

    def __init__(self, path, desc: str, total: int):
        self.path = None if path is None else Path(path)
        self.key = {"desc": desc, "total": total}

    def exists(self) -> bool:
        return self.path is not None and self.path.exists()

    @staticmethod
    def _order(loader) -> torch.Generator | None:
        return getattr(loader, "gen", None) or getattr(loader, "generator", None)

    def save(self, step, curve, seconds, model, optimizer, sched, method, loader) -> None:
        if self.path is None:
            return
        order = self._order(loader)
        state = {
            **self.key,
            "step": step,
            "curve": curve,
            "seconds": seconds,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "sched": sched.state_dict(),
            "method": method.state(),
            "order": order.get_state() if order is not None else None,
            "torch_rng": torch.get_rng_state(),
        }
        files.torch_save(state, self.path)

    def restore(self, model, optimizer, sched, method, loader, device) -> tuple[int, list, float]:
        state = torch.load(self.path, map_location=device, weights_only=False)
        if {k: state.get(k) for k in self.key} != self.key:
            raise ConfigError(
                f"{self.path} is the saved state of another run ({state.get('desc')!r}, "
                f"{state.get('total')} steps), not of {self.key['desc']!r}: delete it"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["sched"])
        method.load_state(state["method"])
        order = self._order(loader)
        if order is not None and state["order"] is not None:
            order.set_state(state["order"])
        torch.set_rng_state(state["torch_rng"])
        return state["step"], state["curve"], state["seconds"]

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
