"""The object node: a rigid canonical space (the unit sphere of the normalized SfM cloud, or of the
GT mesh for synthetic runs) posed per frame by a trainable SE(3) correction and one scale.

x_cam = T_cam_from_obj @ (scale * x_obj); x_field = x_obj. Poses are `T_init @ se3_exp(delta)`
with `delta` (T,6) initialized at zero (a minimal parametrization around the build's estimate).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from hold.geometry.se3 import se3_exp
from hold.nodes.base import FieldNode, FieldNodeConfig
from hold.rendering import LABELS


@dataclass
class ObjectNodeConfig(FieldNodeConfig):
    """Object node: fields + sampling (see FieldNodeConfig)."""


class ObjectNode(FieldNode):
    label = LABELS["object"]

    def __init__(self, cfg: ObjectNodeConfig, T_cam_from_obj, scale: float):
        T_init = torch.as_tensor(T_cam_from_obj, dtype=torch.float32)
        super().__init__(cfg, num_frames=T_init.shape[0])
        self.register_buffer("T_init", T_init)
        self.pose_delta = nn.Parameter(torch.zeros(T_init.shape[0], 6))
        self.log_scale = nn.Parameter(torch.tensor(math.log(float(scale))))

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def T_cam_from_obj(self, frame: torch.Tensor) -> torch.Tensor:
        """(R,4,4) rigid pose per frame index (scale not included)."""
        return self.T_init[frame] @ se3_exp(self.pose_delta[frame])

    def bounding_sphere(self, frame):
        T = self.T_cam_from_obj(frame)
        return T[:, :3, 3], self.scale.expand(frame.shape[0])

    def to_field(self, x_cam, frame):
        T = self.T_cam_from_obj(frame)
        R, t = T[:, :3, :3], T[:, :3, 3]
        x_obj = torch.einsum("rji,rsj->rsi", R, x_cam - t[:, None]) / self.scale  # R^T (x - t) / s
        valid = x_obj.norm(dim=-1) <= self.cfg.sphere_margin
        return x_obj, self.scale, R, valid
