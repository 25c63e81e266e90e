"""Learning-rate schedules that follow a fit's budget, whichever limit binds: steps, epochs or wall time."""

from __future__ import annotations

import math

import torch
from lightning.pytorch.callbacks import Timer


def budget_fraction(trainer) -> float:
    """How much of the fit's budget is spent, in [0, 1]: the larger of optimiser steps over the steps that
    ``max_steps``/``max_epochs`` allow, and, under ``max_time``, training time over ``max_time``.

    The time part makes a schedule depend on the machine's speed (a ``max_time`` fit is not reproducible
    step for step anyway); fits limited by steps or epochs stay deterministic.
    """
    if trainer is None:
        return 0.0
    fraction = 0.0
    total = trainer.estimated_stepping_batches
    if math.isfinite(total) and total > 0:
        fraction = trainer.global_step / total
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    remaining = timer.time_remaining() if timer is not None else None
    if remaining is not None:
        elapsed = timer.time_elapsed()
        fraction = max(fraction, elapsed / max(elapsed + remaining, 1e-9))
    return min(max(fraction, 0.0), 1.0)


def cosine(fraction: float) -> float:
    """The cosine factor at ``fraction`` of a schedule: 1 at 0, 0 at 1 (clamped to [0, 1])."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(fraction, 0.0), 1.0)))


def cosine_schedule(optimizer: torch.optim.Optimizer, module, warmup_steps: int = 0) -> dict:
    """Lightning scheduler config: linear warm-up over ``warmup_steps``, then cosine from the base learning
    rate to 0 over the rest of the budget (:func:`budget_fraction`), stepped every optimiser step."""

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        return warm * cosine(budget_fraction(module._trainer))

    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}
