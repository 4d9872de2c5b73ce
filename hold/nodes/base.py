"""What every field node shares: SDF + colour fields in field space, a density, per-frame appearance,
and ray sampling inside the node's bounding sphere (coarse + SDF-guided importance samples)."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from hold.fields import ColorField, ColorFieldConfig, SDFField, SDFFieldConfig
from hold.rendering import (LaplaceDensity, NeusDensity, NodeSamples, interval_deltas, ray_sphere_intersect,
                            sdf_guided_samples, stratified_samples)


@dataclass
class FieldNodeConfig:
    """Fields, density and sampling budget of one node."""

    sdf: SDFFieldConfig = field(default_factory=SDFFieldConfig)
    """Signed-distance field (field space: the node's unit sphere)."""
    color: ColorFieldConfig = field(default_factory=ColorFieldConfig)
    """Colour field."""
    density: Literal["volsdf", "neus"] = "volsdf"
    """SDF -> density: VolSDF Laplace (HOLD) or NeuS logistic (converted to a density to merge)."""
    beta_init: float = 0.005
    """Initial Laplace-density scale beta (metres)."""
    neus_inv_s_init: float = 200.0
    """Initial NeuS sharpness inv_s (1/metres) when density='neus'."""
    beta_min: float = 0.0005
    """Smallest beta (metres)."""
    n_coarse: int = 32
    """Coarse samples per ray inside the node's sphere."""
    n_importance: int = 32
    """SDF-guided importance samples per ray (total budget = n_coarse + n_importance)."""
    sphere_margin: float = 1.05
    """Bounding sphere radius as a multiple of the field's unit sphere."""


@dataclass
class NodeOutput:
    """A node's samples along the batch's rays plus what its losses need."""

    samples: NodeSamples
    """For compositing (camera frame, metres)."""
    grad_field: Float[Tensor, "R S 3"] | None
    """SDF gradient in field space at the samples (eikonal), None without gradients."""
    x_field: Float[Tensor, "R S 3"]
    """Sample positions in field space."""
    sdf_field: Float[Tensor, "R S"]
    """SDF at the samples, field units."""


class FieldNode(nn.Module, abc.ABC):
    """Base of the hand and object nodes. Subclasses provide the camera -> field-space mapping."""

    label: int

    def __init__(self, cfg: FieldNodeConfig, num_frames: int):
        super().__init__()
        self.cfg = cfg
        self.sdf = SDFField(cfg.sdf)
        self.color = ColorField(self.sdf.feature_dim, cfg.color)
        if cfg.density == "volsdf":
            self.density = LaplaceDensity(beta_init=cfg.beta_init, beta_min=cfg.beta_min)
        elif cfg.density == "neus":
            self.density = NeusDensity(inv_s_init=cfg.neus_inv_s_init)
        else:
            raise ValueError(f"node density must be 'volsdf' or 'neus', got {cfg.density!r}")
        self.appearance = nn.Embedding(num_frames, cfg.color.appearance_dim)
        nn.init.zeros_(self.appearance.weight)

    # --- to implement per node ---------------------------------------------------------------
    @abc.abstractmethod
    def bounding_sphere(self, frame: Int[Tensor, "R"]) -> tuple[Float[Tensor, "R 3"], Float[Tensor, "R"]]:
        """Centre (camera frame) and radius (metres) of the node's bounding sphere per ray."""

    @abc.abstractmethod
    def to_field(self, x_cam: Float[Tensor, "R S 3"], frame: Int[Tensor, "R"]):
        """(x_field (R,S,3), metres_per_field_unit (R,1) or (R,S), linear map cam-from-field
        (R,3,3) or (R,S,3,3) for normals, valid (R,S) bool)."""

    def prepare(self, frames: Int[Tensor, "U"]) -> None:
        """Per-batch precomputation for the frames about to be rendered (hand: posed mesh)."""

    @staticmethod
    def normal_to_cam(grad_field: Tensor, M: Tensor) -> Tensor:
        """Field-space SDF gradient -> unit camera-frame normal. For x_cam = M x_field + c the
        gradient transforms with M^-T; M is a rotation times a scale here (up to LBS blending),
        so M @ grad has the right direction."""
        eq = "rij,rsj->rsi" if M.dim() == 3 else "rsij,rsj->rsi"
        n = torch.einsum(eq, M, grad_field)
        return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    # --- shared ----------------------------------------------------------------------------------
    def surface_width(self) -> float:
        """Current width of the density's transition at the surface (metres): beta, or 1/inv_s."""
        if isinstance(self.density, NeusDensity):
            return 1.0 / float(self.density.inv_s.detach())
        return float(self.density.beta.detach())

    def sample(self, origins: Float[Tensor, "R 3"], dirs: Float[Tensor, "R 3"], frame: Int[Tensor, "R"],
               with_grad: bool, perturb: bool) -> NodeOutput:
        """Evaluate the node along rays: coarse + SDF-guided samples in its bounding sphere."""
        center, radius = self.bounding_sphere(frame)
        t_near, t_far, hit = ray_sphere_intersect(origins, dirs, center, radius * self.cfg.sphere_margin)
        t_far = torch.where(hit, t_far, t_near + 1e-3)

        def sdf_metres(t: Tensor) -> Tensor:
            x_cam = origins[:, None] + t[..., None] * dirs[:, None]
            x_field, scale, _, valid = self.to_field(x_cam, frame)
            s = self.sdf(x_field.reshape(-1, 3))[0].reshape(t.shape) * scale
            return torch.where(valid, s, torch.full_like(s, 1.0))

        with torch.no_grad():
            beta = self.surface_width()
            if self.cfg.n_importance > 0:
                t = sdf_guided_samples(t_near, t_far, sdf_metres, self.cfg.n_coarse, self.cfg.n_importance,
                                       beta=max(beta, 1e-3), perturb=perturb)
            else:
                t = stratified_samples(t_near, t_far, self.cfg.n_coarse, perturb=perturb)
        x_cam = origins[:, None] + t[..., None] * dirs[:, None]
        x_field, scale, rot, valid = self.to_field(x_cam, frame)
        R, S = t.shape
        flat = x_field.reshape(-1, 3)
        if with_grad:
            sdf_f, feat, grad = self.sdf.sdf_and_gradient(flat, create_graph=self.training)
        else:
            with torch.enable_grad():
                sdf_f, feat, grad = self.sdf.sdf_and_gradient(flat.detach(), create_graph=False)
            grad = grad.detach()
        sdf_f, grad = sdf_f.reshape(R, S), grad.reshape(R, S, 3)
        normal_cam = self.normal_to_cam(grad, rot)
        app = self.appearance(frame)[:, None].expand(R, S, -1).reshape(R * S, -1)
        rgb = self.color(feat, normal_cam.reshape(-1, 3), None, app).reshape(R, S, 3)
        sdf_m = sdf_f * scale
        valid = valid & hit[:, None]
        delta = None
        if isinstance(self.density, NeusDensity):
            delta = interval_deltas(t, "repeat")
            cos = (dirs[:, None] * normal_cam).sum(-1)
            sigma = self.density(sdf_m, cos, delta)
        else:
            sigma = self.density(sdf_m)
        sigma = torch.where(valid, sigma, torch.zeros_like(sdf_m))
        samples = NodeSamples(t=t, sigma=sigma, rgb=rgb, normal=normal_cam, sdf=sdf_m, label=self.label, valid=valid,
                              delta=delta)
        return NodeOutput(samples=samples, grad_field=grad if with_grad else None, x_field=x_field, sdf_field=sdf_f)
