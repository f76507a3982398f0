"""Fused optimizer updates: one call updates every parameter of a model, where the
library has multi-tensor kernels (torch's ``_foreach_*``), instead of a Python loop of
several array operations per parameter.

These are a faster route to the *same* equations ``anyfc.optimizers`` writes once
against the Array API; that code is the reference and the fallback. Each function here
returns ``False`` (and touches nothing) unless it can do the whole update, in place:
every array a writable torch tensor, the rate and the step count plain Python numbers
(inside a compiled step they are traced values, and the reference runs). The results
equal the reference's to rounding (``tests/test_optimizers.py`` compares them in
float64).

``set_fused(False)`` turns the fused route off (the reference runs everywhere);
``fused()`` reads the setting.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import array_api_compat

Array = Any

_state = {"on": True}


def set_fused(on: bool) -> None:
    """Use the fused updates where they apply (``True``, the default) or never."""
    _state["on"] = bool(on)


def fused() -> bool:
    """Whether the fused updates are on (``set_fused``)."""
    return _state["on"]


def _torch_ready(*groups: Sequence[Array]) -> Any:
    """torch, when every array of every group is a plain torch tensor that can be
    updated in place (no autograd history, not a traced fake), else ``None``."""
    if not _state["on"] or not groups or not groups[0]:
        return None
    first = groups[0][0]
    if not array_api_compat.is_torch_array(first):
        return None
    import torch

    for group in groups:
        for a in group:
            if type(a) is not torch.Tensor or a.requires_grad:
                return None  # a subclass (a fake tensor while torch.compile traces), ...
    return torch


def _number(*values: Any) -> bool:
    return all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)


def adam_(params: list[Array], grads: list[Array], ms: list[Array], vs: list[Array], *,
          lr: Any, beta1: float, beta2: float, eps: float, t: Any, weight_decay: float,
          decoupled: bool, eps_hat: bool) -> bool:
    """Adam (``decoupled``: AdamW) on every parameter at once, in place, as
    ``optimizers.Adam._adam_step`` writes it; ``t`` is the step being taken (≥ 1).
    ``False`` where it cannot (see the module)."""
    torch = _torch_ready(params, grads, ms, vs)
    if torch is None or not _number(lr, t, beta1, beta2, eps, weight_decay):
        return False
    if weight_decay:
        if decoupled:  # p ← p - η·λ·p
            torch._foreach_add_(params, params, alpha=-(lr * weight_decay))
        else:  # g ← g + λ·p (new arrays: the layers' gradients stay as backward left them)
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
    torch._foreach_mul_(ms, beta1)
    torch._foreach_add_(ms, grads, alpha=1.0 - beta1)
    torch._foreach_mul_(vs, beta2)
    torch._foreach_addcmul_(vs, grads, grads, value=1.0 - beta2)
    denom = torch._foreach_sqrt(vs)
    if eps_hat:  # p ← p - η·√(1-β₂ᵗ)/(1-β₁ᵗ) · m / (√v + ε)
        step = lr * (1.0 - beta2**t) ** 0.5 / (1.0 - beta1**t)
    else:  # p ← p - η/(1-β₁ᵗ) · m / (√v/√(1-β₂ᵗ) + ε)
        step = lr / (1.0 - beta1**t)
        torch._foreach_div_(denom, (1.0 - beta2**t) ** 0.5)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, ms, denom, value=-step)
    return True


def sgd_(params: list[Array], grads: list[Array], vs: list[Array] | None, *, lr: Any,
         momentum: float, nesterov: bool, weight_decay: float,
         lr_in_velocity: bool) -> bool:
    """SGD (with momentum ``vs`` when ``momentum``; ``None`` without) on every parameter
    at once, in place, as ``optimizers.SGD.update`` writes it. ``False`` where it cannot
    (see the module)."""
    torch = _torch_ready(params, grads, *([vs] if vs is not None else []))
    if torch is None or not _number(lr, momentum, weight_decay):
        return False
    if weight_decay:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    if not momentum:
        torch._foreach_add_(params, grads, alpha=-lr)
        return True
    assert vs is not None
    if lr_in_velocity:  # v ← μ·v + η·g;  p ← p - v  (or p - (μ·v + η·g))
        scaled = torch._foreach_mul(grads, lr)
        torch._foreach_mul_(vs, momentum)
        torch._foreach_add_(vs, scaled)
        if nesterov:
            torch._foreach_add_(scaled, vs, alpha=momentum)
            torch._foreach_sub_(params, scaled)
        else:
            torch._foreach_sub_(params, vs)
        return True
    torch._foreach_mul_(vs, momentum)  # v ← μ·v + g;  p ← p - η·v  (or η·(g + μ·v))
    torch._foreach_add_(vs, grads)
    step = torch._foreach_add(grads, vs, alpha=momentum) if nesterov else vs
    torch._foreach_add_(params, step, alpha=-lr)
    return True
