"""Colour field: rgb in [0, 1] from the SDF field's feature, the surface normal, optionally the
view direction and a per-frame appearance code (the codes themselves, an nn.Embedding per frame,
live in the nodes)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn

from hold.fields.mlp import MLP


@dataclass
class ColorFieldConfig:
    """Colour MLP: (feature, normal, view dir, appearance code) -> rgb."""

    hidden_dim: int = 64
    """MLP width."""
    n_hidden_layers: int = 2
    """MLP hidden layers."""
    appearance_dim: int = 8
    """Per-frame appearance code length (0 = none)."""
    use_normal: bool = True
    """Feed the SDF normal (unit, field frame) to the MLP."""
    use_view_dir: bool = False
    """Feed the unit viewing direction (field frame) to the MLP."""

    def __post_init__(self) -> None:
        if self.appearance_dim < 0 or self.hidden_dim < 1 or self.n_hidden_layers < 0:
            raise ValueError(f"ColorFieldConfig: need appearance_dim >= 0, hidden_dim >= 1, n_hidden_layers >= 0, "
                             f"found {self.appearance_dim}, {self.hidden_dim}, {self.n_hidden_layers}.")


class ColorField(nn.Module):
    """rgb = sigmoid(MLP(concat(feature, [normal], [view_dir], [appearance])))."""

    def __init__(self, feature_dim: int, cfg: ColorFieldConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or ColorFieldConfig()
        self.feature_dim = feature_dim
        in_dim = feature_dim + 3 * int(cfg.use_normal) + 3 * int(cfg.use_view_dir) + cfg.appearance_dim
        if in_dim < 1:
            raise ValueError("ColorField: no inputs (feature_dim = 0 and every optional input disabled).")
        self.mlp = MLP(in_dim, cfg.hidden_dim, cfg.n_hidden_layers, 3, activation="relu")

    def forward(
        self,
        feature: Float[Tensor, "N F"],
        normal: Float[Tensor, "N 3"] | None = None,
        view_dir: Float[Tensor, "N 3"] | None = None,
        appearance: Float[Tensor, "N A"] | None = None,
    ) -> Float[Tensor, "N 3"]:
        """appearance=None uses the zero code (e.g. frames without a trained code)."""
        n = feature.shape[0]
        cfg = self.cfg
        _check(feature, (n, self.feature_dim), "feature")
        parts = [feature]
        if cfg.use_normal:
            if normal is None:
                raise ValueError("ColorField.forward: 'normal' is required (ColorFieldConfig.use_normal=True).")
            _check(normal, (n, 3), "normal")
            parts.append(normal)
        if cfg.use_view_dir:
            if view_dir is None:
                raise ValueError("ColorField.forward: 'view_dir' is required (ColorFieldConfig.use_view_dir=True).")
            _check(view_dir, (n, 3), "view_dir")
            parts.append(view_dir)
        if cfg.appearance_dim:
            if appearance is None:
                appearance = feature.new_zeros(n, cfg.appearance_dim)
            _check(appearance, (n, cfg.appearance_dim), "appearance")
            parts.append(appearance)
        return torch.sigmoid(self.mlp(torch.cat([p.to(feature.dtype) for p in parts], dim=-1)))


def _check(t: Tensor, shape: tuple[int, int], name: str) -> None:
    if tuple(t.shape) != shape:
        raise ValueError(f"ColorField.forward: '{name}' must have shape {shape}, found {tuple(t.shape)}.")
