"""LTH for transfer (Chen et al. 2021), lottery ticket: iterative magnitude pruning with rewinding
finds the mask -- each round trains the masked dense weights, prunes `rate` of the remaining weights
by global magnitude (or exactly down to the next requested sparsity) and rewinds to the dense
weights -- and the final mask is applied to the *dense* upstream weights with no retraining.
One trajectory gives the masks of every requested sparsity."""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from .base import Method
from .magnitude import magnitude_masks


class LTH(Method):
    name, family, from_dense = "lth_t", "lottery_ticket", True
    hyperparameters = {"rate": float, "round_budget": float}  # no run of its own: the IMP rounds

    def find_masks(
        self, model: nn.Module, dense_state: dict, train_round: Callable[[nn.Module, Method, str], None], sparsities
    ) -> dict[float, dict]:
        """IMP. `train_round(model, fixed_mask_method, desc)` trains the rewound model for one round
        under the mask of `fixed_mask_method`. Returns {sparsity: masks}; the model ends rewound."""
        rate = float(self.param("rate"))
        out, current, mask_now, rnd = {}, 0.0, None, 0
        todo = sorted(sparsities)
        while todo:
            rnd += 1
            nxt = 1 - (1 - current) * (1 - rate)
            hit = nxt >= todo[0] - 1e-9
            if hit:
                nxt = todo.pop(0)
            model.load_state_dict(dense_state)  # rewind
            train_round(model, Method(current, masks=mask_now), f"lth round {rnd} ({current:.2f})")
            mask_now = magnitude_masks(model, nxt)
            current = nxt
            if hit:
                out[current] = {k: v.clone() for k, v in mask_now.items()}
        model.load_state_dict(dense_state)
        return out
