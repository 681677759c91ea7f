"""LTH for transfer (Chen et al. 2021), lottery ticket: iterative magnitude pruning with rewinding
finds the mask -- round 0 prunes `rate` of the dense weights by global magnitude without training;
each later round trains the masked dense weights (at the constant lr of params
`upstream.methods.lth_t.optimizer`), prunes `rate` of the remaining weights (or exactly down to the
next requested sparsity) and rewinds to the dense weights -- and the final mask is applied to the
*dense* upstream weights with no retraining.
One trajectory gives the masks of every requested sparsity."""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from .base import Method, Schedule
from .magnitude import magnitude_masks


class LTH(Method):
    name, family, from_dense, dense_state = "lth_t", "lottery_ticket", True, True
    hyperparameters = {"rate": float, "round_budget": float, "optimizer": Schedule}  # no run of its own: the IMP rounds
    finetunes = ("full",)  # designed for full finetuning: the paper leaves it out of linear finetuning (Sec. 3.3)

    def round_budget(self) -> float:
        """The training of one IMP round, in multiples of D."""
        return float(self.param("round_budget"))

    def trajectory_budget(self, sparsities) -> float:
        """The training of the one trajectory that gives every one of `sparsities`, in multiples of D."""
        return self.rounds(sparsities, self.param("rate")) * self.round_budget()

    def find_masks(
        self, model: nn.Module, dense_state: dict, train_round: Callable[[nn.Module, Method, str], None], sparsities
    ) -> dict[float, dict]:
        """IMP as Chen et al.'s main_imp_imagenet.py: round 0 prunes the dense weights without
        training; every later round rewinds to the dense weights, trains them under the current mask
        (`train_round(model, fixed_mask_method, desc)`) and prunes `rate` of the remaining weights
        (or exactly down to the next requested sparsity). Returns {sparsity: masks}; the model ends
        rewound."""
        rate = float(self.param("rate"))
        out, current, mask_now, rnd = {}, 0.0, None, 0
        todo = sorted(sparsities)
        while todo:
            nxt = 1 - (1 - current) * (1 - rate)
            hit = nxt >= todo[0] - 1e-9
            if hit:
                nxt = todo.pop(0)
            model.load_state_dict(dense_state)  # rewind
            if rnd > 0:
                train_round(model, Method(current, masks=mask_now), f"lth round {rnd} ({current:.2f})")
            mask_now = magnitude_masks(model, nxt)
            current, rnd = nxt, rnd + 1
            if hit:
                out[current] = {k: v.clone() for k, v in mask_now.items()}
        model.load_state_dict(dense_state)
        return out

    @staticmethod
    def rounds(sparsities, rate: float) -> int:
        """How many IMP rounds train (round 0 does not) to reach the largest of `sparsities`."""
        current, n, todo = 0.0, 0, sorted(sparsities)
        while todo:
            nxt = 1 - (1 - current) * (1 - rate)
            if nxt >= todo[0] - 1e-9:
                nxt = todo.pop(0)
            current, n = nxt, n + 1
        return n - 1
