"""Neural SDF field in FIELD space (the node's canonical space scaled into the unit sphere).

sdf, feature = MLP(concat(x_field, encoding(x_field))): the hash grid sees (x_field + 1) / 2
clamped to [0, 1]^3 (points outside the unit cube reuse the border cells and stay finite); the
frequency encoding sees x_field itself. SDF values are in field units (the node multiplies by its
scale to get metres).

Initialisation (geometric_init=True): `sphere_init_` (see hold/fields/mlp.py) makes
sdf(x) ~ |x| - init_radius with the encoding's input weights at zero, so the encoding starts with
no influence and is learnt from there (instant-nsr-pl / NeuS2 practice for hash grids); measured
error <= 0.016 field units over the unit ball for the default 64 x 2 MLP.

Normals: analytic (autograd, differentiable with create_graph=True for the eikonal loss) or
central finite differences (6 extra evaluations; first-order only, for MLP backends without
second derivatives such as tcnn's fully fused MLPs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn

from hold.fields.frequency import FrequencyEncoding
from hold.fields.hash_grid import HashGridConfig, HashGridEncoding
from hold.fields.mlp import MLP, sphere_init_


@dataclass
class SDFFieldConfig:
    """SDF field: encoding + MLP -> (sdf, feature)."""

    encoding: Literal["hashgrid", "frequency"] = "hashgrid"
    """Input encoding: multiresolution hash grid or NeRF positional encoding (HOLD's baseline)."""
    hash_grid: HashGridConfig = field(default_factory=HashGridConfig)
    """Hash grid settings (encoding='hashgrid')."""
    n_frequencies: int = 6
    """Positional-encoding frequencies 2^0..2^(n-1) (encoding='frequency'; HOLD uses 6)."""
    hidden_dim: int = 64
    """MLP width."""
    n_hidden_layers: int = 2
    """MLP hidden layers (HOLD: 8 x 256)."""
    feature_dim: int = 15
    """Geometry feature vector passed to the colour field."""
    geometric_init: bool = True
    """Start from a sphere SDF of radius init_radius (else PyTorch's default init)."""
    init_radius: float = 0.5
    """Radius of the initial sphere, field units."""
    inside_out: bool = False
    """Initial SDF positive inside the sphere (radius - |x|), for scenes seen from inside."""
    normals: Literal["analytic", "finite_difference"] = "analytic"
    """How sdf_and_gradient computes the gradient."""
    fd_eps: float = 1e-3
    """Finite-difference half step, field units."""
    weight_norm: bool = False
    """Weight-normalise the MLP layers (IDR / HOLD)."""
    skip_connection: bool = False
    """Concatenate the MLP input to the middle layer's input (IDR / HOLD: into layer 4 of 8)."""

    def __post_init__(self) -> None:
        if isinstance(self.hash_grid, dict):  # from YAML / OmegaConf
            self.hash_grid = HashGridConfig(**self.hash_grid)
        if self.encoding not in ("hashgrid", "frequency"):
            raise ValueError(f"SDFFieldConfig.encoding must be 'hashgrid' or 'frequency', found {self.encoding!r}.")
        if self.normals not in ("analytic", "finite_difference"):
            raise ValueError(f"SDFFieldConfig.normals must be 'analytic' or 'finite_difference', found {self.normals!r}.")
        if self.fd_eps <= 0 or self.feature_dim < 0:
            raise ValueError(f"SDFFieldConfig: need fd_eps > 0 and feature_dim >= 0, found {self.fd_eps} and "
                             f"{self.feature_dim}.")


class SDFField(nn.Module):
    """x_field (N, 3) -> sdf (N,) in field units and a feature (N, feature_dim)."""

    def __init__(self, cfg: SDFFieldConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or SDFFieldConfig()
        if cfg.encoding == "hashgrid":
            self.encoding: nn.Module = HashGridEncoding(cfg.hash_grid)
        else:
            # x is concatenated separately, so the encoding leaves it out.
            self.encoding = FrequencyEncoding(cfg.n_frequencies, include_input=False)
        self.mlp = MLP(
            3 + self.encoding.output_dim,
            cfg.hidden_dim,
            cfg.n_hidden_layers,
            1 + cfg.feature_dim,
            activation="softplus",
            softplus_beta=100.0,
            weight_norm=cfg.weight_norm,
            skip_in_middle=cfg.skip_connection,
        )
        if cfg.geometric_init:
            sphere_init_(self.mlp, cfg.init_radius, inside_out=cfg.inside_out)

    @property
    def feature_dim(self) -> int:
        return self.cfg.feature_dim

    def set_progress(self, active_levels: int) -> None:
        """Coarse-to-fine: enable hash-grid levels < active_levels (the frequency encoding has no levels)."""
        if isinstance(self.encoding, HashGridEncoding):
            self.encoding.set_active_levels(min(int(active_levels), self.cfg.hash_grid.n_levels))

    def encode(self, x_field: Float[Tensor, "N 3"]) -> Float[Tensor, "N K"]:
        if isinstance(self.encoding, HashGridEncoding):
            return self.encoding(((x_field + 1.0) * 0.5).clamp(0.0, 1.0))
        return self.encoding(x_field)

    def forward(self, x_field: Float[Tensor, "N 3"]) -> tuple[Float[Tensor, "N"], Float[Tensor, "N C"]]:
        if x_field.ndim != 2 or x_field.shape[1] != 3:
            raise ValueError(f"SDFField.forward: expected x_field of shape (N, 3), found {tuple(x_field.shape)}.")
        out = self.mlp(torch.cat([x_field, self.encode(x_field).to(x_field.dtype)], dim=-1))
        return out[:, 0], out[:, 1:]

    def sdf_and_gradient(
        self, x_field: Float[Tensor, "N 3"], create_graph: bool = False
    ) -> tuple[Float[Tensor, "N"], Float[Tensor, "N C"], Float[Tensor, "N 3"]]:
        """(sdf, feature, d sdf / d x_field). create_graph=True keeps the gradient differentiable
        (eikonal loss) on the analytic path; the finite-difference gradient is differentiable
        w.r.t. the parameters whenever autograd is enabled. Under torch.no_grad() everything
        returned is detached."""
        if self.cfg.normals == "finite_difference":
            return self._sdf_and_fd_gradient(x_field)
        grad_enabled = torch.is_grad_enabled()
        with torch.enable_grad():
            x = x_field if x_field.requires_grad else x_field.detach().requires_grad_(True)
            sdf, feature = self(x)
            (grad,) = torch.autograd.grad(
                sdf, x, torch.ones_like(sdf), create_graph=create_graph and grad_enabled, retain_graph=grad_enabled
            )
        if not grad_enabled:
            return sdf.detach(), feature.detach(), grad.detach()
        return sdf, feature, grad

    def _sdf_and_fd_gradient(self, x_field: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        eps = self.cfg.fd_eps
        n = x_field.shape[0]
        offsets = torch.eye(3, dtype=x_field.dtype, device=x_field.device) * eps  # (3, 3)
        shifted = torch.cat([x_field[:, None, :] + offsets, x_field[:, None, :] - offsets], dim=1)  # (N, 6, 3)
        sdf_all, feat_all = self(torch.cat([x_field, shifted.reshape(-1, 3)], dim=0))  # one batched evaluation
        sdf_pm = sdf_all[n:].reshape(n, 6)
        grad = (sdf_pm[:, :3] - sdf_pm[:, 3:]) / (2.0 * eps)
        return sdf_all[:n], feat_all[:n], grad
