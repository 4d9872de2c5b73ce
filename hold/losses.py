"""Loss terms as plain functions, and their weights/schedules (HOLD's values as defaults)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

IGNORE = 255


@dataclass
class LossConfig:
    """Loss weights and schedules (steps are optimizer steps)."""

    rgb: float = 1.0
    """L1 photometric loss weight."""
    mask_start: float = 1.1
    """Semantic-mask MSE weight at step 0 (HOLD: 1.1)."""
    mask_end: float = 0.1
    """Semantic-mask weight after `mask_decay_steps` (HOLD: 0.1)."""
    mask_decay_steps: int = 30000
    """Linear decay length of the mask weight (HOLD: 30k)."""
    eikonal: float = 0.1
    """Eikonal weight (|grad sdf| = 1 in field space)."""
    eikonal_random_points: int = 1024
    """Extra uniform points per node in field space for the eikonal term."""
    hand_prior: float = 5.0
    """Canonical hand SDF prior weight (HOLD: 5.0)."""
    hand_prior_points: int = 2048
    """Points of the prior bank used per step."""
    hand_prior_clamp_m: float = 0.01
    """Clamp of both SDFs in the prior (metres; HOLD: 1 cm)."""
    sparsity_start: float = 0.0
    """Opacity-sparsity weight at step 0 (HOLD ramps 0 -> 1)."""
    sparsity_end: float = 1.0
    """Opacity-sparsity weight after `sparsity_ramp_steps`."""
    sparsity_ramp_steps: int = 10000
    """Linear ramp length of the sparsity weight."""


def linear_schedule(step: int, start: float, end: float, steps: int) -> float:
    """start -> end linearly over `steps`, constant after."""
    if steps <= 0:
        return end
    a = min(max(step / steps, 0.0), 1.0)
    return start + (end - start) * a


def rgb_l1(pred: Float[Tensor, "R 3"], target: Float[Tensor, "R 3"]) -> Tensor:
    return (pred - target).abs().mean()


def semantic_mse(semantics: Float[Tensor, "R C"], labels: Int[Tensor, "R"]) -> Tensor:
    """Per-class MSE between rendered class weights and the one-hot label (ignore = 255)."""
    keep = labels != IGNORE
    if not keep.any():
        return semantics.sum() * 0.0
    onehot = torch.nn.functional.one_hot(labels[keep].long(), semantics.shape[-1]).to(semantics)
    return ((semantics[keep] - onehot) ** 2).mean()


def eikonal(grad: Float[Tensor, "N 3"]) -> Tensor:
    """(|grad| - 1)^2, mean."""
    if grad.numel() == 0:
        return grad.sum() * 0.0
    return ((grad.norm(dim=-1) - 1.0) ** 2).mean()


def opacity_sparsity(opacity: Float[Tensor, "R"], labels: Int[Tensor, "R"], node_label: int) -> Tensor:
    """A node rendered alone (amodal) must be transparent where the mask says background."""
    away = labels == 0
    if not away.any():
        return opacity.sum() * 0.0
    return opacity[away].abs().mean()
