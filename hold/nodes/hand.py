"""The hand node: a canonical space = the hand model's rest pose (with the build's shape).

Camera-frame samples go to canonical space by inverse LBS: skinning weights of the closest point
of the posed hand surface (hold.geometry.lbs.surface_skinning_weights), then the inverse of the
blended bone transform. Samples farther than `max_surface_dist_m` from the posed surface get no
hand density. Field space = canonical / r around the rest mesh's bounding-sphere centre.

Per-frame global_orient, hand_pose and transl are trainable (initialized from the build); the
shape (betas) is fixed so the canonical space, and the SDF prior computed in it, do not move.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor, nn

from hold.geometry.lbs import surface_skinning_weights
from hold.geometry.lbs import _solve3  # closed-form 3x3 solve shared with inverse_lbs
from hold.geometry.mesh_query import closest_surface_points, vertex_face_table
from hold.geometry.mesh_sampling import sample_triangles
from hold.hands.base import HandModel
from hold.nodes.base import FieldNode, FieldNodeConfig
from hold.rendering import LABELS


@dataclass
class HandNodeConfig(FieldNodeConfig):
    """Hand node: fields + sampling (see FieldNodeConfig) and the canonical mapping."""

    max_surface_dist_m: float = 0.02
    """Samples farther than this from the posed hand-model surface get no hand density (metres)."""
    sphere_pad_m: float = 0.02
    """Padding of the per-frame bounding sphere around the posed hand mesh (metres)."""
    prior_bank_size: int = 40000
    """Canonical points (near the rest surface and in the sphere) with their mesh SDF, for the prior."""


def mesh_sdf(x: Float[Tensor, "N 3"], verts: Float[Tensor, "V 3"], faces: Tensor, vf_table: Tensor) -> Float[Tensor, "N"]:
    """Signed distance to a mesh: distance to the closest triangle, sign from that triangle's normal
    (negative inside). Exact in distance; the sign can err only right at sharp edges."""
    f, bary, dist = closest_surface_points(x[None], verts[None], faces, vf_table, k=8)
    tri = verts[faces[f[0]]]
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    q = (tri * bary[0][..., None]).sum(1)
    sign = torch.sign(((x - q) * n).sum(-1))
    return torch.where(sign == 0, torch.ones_like(sign), sign) * dist[0]


class HandNode(FieldNode):
    def __init__(self, cfg: HandNodeConfig, model: HandModel, global_orient, hand_pose, betas, transl):
        T = int(np.asarray(global_orient).shape[0])
        super().__init__(cfg, num_frames=T)
        self.label = LABELS[model.side]
        self.model = model
        f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        self.global_orient = nn.Parameter(f32(global_orient))
        self.hand_pose = nn.Parameter(f32(hand_pose))
        self.transl = nn.Parameter(f32(transl))
        self.register_buffer("betas", f32(betas).reshape(1, -1))
        with torch.no_grad():
            rest = model(**{**model.zero_params(1), "betas": self.betas}).rest_vertices[0]
        self.register_buffer("rest_vertices", rest)
        center = 0.5 * (rest.min(0).values + rest.max(0).values)
        self.register_buffer("field_center", center)
        self.field_radius = float((rest - center).norm(dim=-1).max()) + cfg.sphere_pad_m
        self.register_buffer("vf_table", vertex_face_table(model.faces, rest.shape[0]), persistent=False)
        self._posed: dict | None = None
        bank_x, bank_sdf = self._prior_bank(cfg.prior_bank_size)
        self.register_buffer("prior_x_field", bank_x, persistent=False)
        self.register_buffer("prior_sdf_m", bank_sdf, persistent=False)

    def _prior_bank(self, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
        """Canonical points and the hand-model mesh's SDF there (metres): half near the surface
        (Gaussian offsets of 2 mm and 1 cm), half uniform in the field's sphere."""
        g = torch.Generator().manual_seed(seed)
        rest, faces = self.rest_vertices, self.model.faces
        surf = torch.as_tensor(sample_triangles(rest[faces].cpu().double().numpy(), n // 2,
                                                np.random.default_rng(seed))[0], dtype=rest.dtype, device=rest.device)
        sigma = torch.where(torch.rand(n // 2, 1, generator=g) < 0.5, 0.002, 0.01)
        near = surf + sigma * torch.randn(n // 2, 3, generator=g)
        u = torch.randn(n - n // 2, 3, generator=g)
        u = u / u.norm(dim=-1, keepdim=True) * torch.rand(n - n // 2, 1, generator=g) ** (1 / 3)
        far = self.field_center + u * self.field_radius
        x = torch.cat([near, far])
        with torch.no_grad():
            sdf = torch.cat([mesh_sdf(c, rest, faces, self.vf_table) for c in x.split(8192)])
        return (x - self.field_center) / self.field_radius, sdf

    # --- posing ----------------------------------------------------------------------------------
    def posed(self, frames: Tensor):
        """Hand model output for the given frame indices (U,)."""
        U = frames.shape[0]
        return self.model(self.global_orient[frames], self.hand_pose[frames], self.betas.expand(U, -1),
                          self.transl[frames])

    def prepare(self, frames: Tensor) -> None:
        frames = torch.unique(frames)
        out = self.posed(frames)
        lookup = torch.full((self.global_orient.shape[0],), -1, dtype=torch.long, device=frames.device)
        lookup[frames] = torch.arange(frames.shape[0], device=frames.device)
        self._posed = dict(frames=frames, lookup=lookup, vertices=out.vertices, A=out.bone_transforms,
                           weights=out.skinning_weights, keypoints=out.keypoints)

    def _slot(self, frame: Tensor) -> Tensor:
        if self._posed is None:
            raise RuntimeError("HandNode.prepare(frames) must run before rendering those frames")
        slot = self._posed["lookup"][frame]
        if (slot < 0).any():
            raise RuntimeError("HandNode: a ray's frame was not prepared")
        return slot

    def bounding_sphere(self, frame):
        v = self._posed["vertices"]
        center = 0.5 * (v.min(1).values + v.max(1).values)  # (U,3)
        radius = (v - center[:, None]).norm(dim=-1).max(1).values + self.cfg.sphere_pad_m
        slot = self._slot(frame)
        return center[slot], radius[slot]

    def to_field(self, x_cam, frame):
        slot = self._slot(frame)
        R, S, _ = x_cam.shape
        x_cano = torch.zeros_like(x_cam)
        M = torch.zeros(R, S, 3, 3, dtype=x_cam.dtype, device=x_cam.device)
        dist = torch.zeros(R, S, dtype=x_cam.dtype, device=x_cam.device)
        p = self._posed
        for u in torch.unique(slot).tolist():  # few frames per batch: one inverse-LBS call each
            rows = slot == u
            pts = x_cam[rows].reshape(1, -1, 3)
            w, d = surface_skinning_weights(pts, p["vertices"][u:u + 1], self.model.faces, p["weights"],
                                            vf_table=self.vf_table)
            T34 = (w @ p["A"][u:u + 1, :, :3, :].flatten(-2)).unflatten(-1, (3, 4))  # (1,N,3,4)
            xc = _solve3(T34[..., :3], pts - T34[..., 3])
            n_rows = int(rows.sum())
            x_cano[rows] = xc.reshape(n_rows, S, 3)
            M[rows] = T34[0, :, :, :3].reshape(n_rows, S, 3, 3)
            dist[rows] = d.reshape(n_rows, S)
        x_field = (x_cano - self.field_center) / self.field_radius
        valid = (dist <= self.cfg.max_surface_dist_m) & (x_field.norm(dim=-1) <= self.cfg.sphere_margin)
        return x_field, self.field_radius, M, valid

    def prior_loss(self, n: int, clamp_m: float = 0.01, generator: torch.Generator | None = None) -> Tensor:
        """Canonical SDF prior: L1 between the field's and the hand-model mesh's SDF (both clamped
        to +-clamp_m, metres) at `n` points of the bank."""
        idx = torch.randint(0, self.prior_x_field.shape[0], (n,), device=self.prior_x_field.device, generator=generator)
        pred = self.sdf(self.prior_x_field[idx])[0] * self.field_radius
        target = self.prior_sdf_m[idx]
        return (pred.clamp(-clamp_m, clamp_m) - target.clamp(-clamp_m, clamp_m)).abs().mean()
