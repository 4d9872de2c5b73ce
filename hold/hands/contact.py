"""Contact zones of a hand model: the vertices that touch a grasped object (fingertip pads + palm).

Derived geometrically from the model's rest mesh (mean shape, zero pose) so it works for every
backend (anny, MANO, ...) without per-model annotations:

- fingertip pad of each finger: vertices within `TIP_RADIUS_M` of the fingertip keypoint whose
  normal faces the finger's palmar side (the palm normal with its component along the distal
  bone removed, so the rounded tip end, whose normals run along the bone, counts as pad too);
- palm: vertices within `PALM_RADIUS_M` of the palm's surface centre (the palmar surface point
  above the palm-centre keypoint average) whose normal faces out of the palm.

The result depends only on the model's topology and rest geometry, so it is computed once per
model and cached.
"""
from __future__ import annotations

import weakref

import torch
from jaxtyping import Float, Int
from torch import Tensor

from hold.geometry.mesh_query import vertex_normals
from hold.hands.base import FINGERTIP_KEYPOINTS, HandModel
from hold.hands.kinematics import palm_center, palm_normal

TIP_RADIUS_M = 0.015
"""Fingertip pad: vertices at most this far from the fingertip keypoint (metres)."""
PALM_RADIUS_M = 0.015
"""Palm zone: vertices at most this far from the palm's surface centre (metres)."""
PALM_NORMAL_MIN_COS = 0.5
"""Palm zone vertices' normals make at most 60 degrees with the palm normal."""
ZONE_NAMES: tuple[str, ...] = ("thumb", "index", "middle", "ring", "little", "palm")

_CACHE: "weakref.WeakKeyDictionary[HandModel, dict[str, Tensor]]" = weakref.WeakKeyDictionary()


def palm_surface_center(
    vertices: Float[Tensor, "V 3"], keypoints: Float[Tensor, "21 3"], side: str
) -> Float[Tensor, "3"]:
    """The palmar surface point over the palm centre: of the vertices in front of the palm centre
    (along the palm normal), the one closest to the line through the centre along the normal."""
    n, c = palm_normal(keypoints, side), palm_center(keypoints)
    rel = vertices - c
    along = rel @ n
    off_line = (rel - along[:, None] * n).norm(dim=-1)
    off_line = torch.where(along > 0, off_line, torch.full_like(off_line, float("inf")))
    return vertices[torch.argmin(off_line)]


def _compute_zones(model: HandModel) -> dict[str, Tensor]:
    with torch.no_grad():
        out = model(**model.zero_params(1, device=model.faces.device))
    v, kp = out.vertices[0].double(), out.keypoints[0].double()
    vn = vertex_normals(v, model.faces)
    n = palm_normal(kp, model.side)
    zones: dict[str, Tensor] = {}
    for name, tip in zip(ZONE_NAMES[:5], FINGERTIP_KEYPOINTS):
        d = kp[tip] - kp[tip - 1]  # distal bone direction (the keypoint before a tip is its DIP / IP joint)
        d = d / d.norm()
        palmar = n - (n @ d) * d
        palmar = palmar / palmar.norm()
        near = (v - kp[tip]).norm(dim=-1) <= TIP_RADIUS_M
        zones[name] = torch.nonzero(near & (vn @ palmar > 0)).flatten()
    anchor = palm_surface_center(v, kp, model.side)
    near = (v - anchor).norm(dim=-1) <= PALM_RADIUS_M
    zones["palm"] = torch.nonzero(near & (vn @ n >= PALM_NORMAL_MIN_COS)).flatten()
    for name, idx in zones.items():
        if idx.numel() == 0:
            raise ValueError(f"contact zones of hand model '{model.name}' ({model.side}): the '{name}' zone is "
                             f"empty: no rest-mesh vertex lies near its anchor on the palmar side. Fix: check "
                             f"the model's keypoints (tips on the surface) and face winding (outward normals)")
    return zones


def contact_zones(model: HandModel) -> dict[str, Int[Tensor, "N"]]:
    """Vertex indices of each zone (ZONE_NAMES: five fingertip pads, then the palm), cached per model."""
    zones = _CACHE.get(model)
    if zones is None:
        zones = _compute_zones(model)
        _CACHE[model] = zones
    return zones


def contact_zone_vertices(model: HandModel) -> Int[Tensor, "N"]:
    """Sorted, unique vertex indices of all contact zones (fingertip pads + palm) of `model`."""
    return torch.unique(torch.cat(list(contact_zones(model).values())))


def contact_zone_anchors(model: HandModel) -> Float[Tensor, "6 3"]:
    """Rest-pose anchors of the zones (metres, model frame): the five fingertip keypoints, then the
    palm's surface centre. Every zone vertex lies within TIP_RADIUS_M / PALM_RADIUS_M of its anchor."""
    with torch.no_grad():
        out = model(**model.zero_params(1, device=model.faces.device))
    v, kp = out.vertices[0], out.keypoints[0]
    return torch.cat([kp[list(FINGERTIP_KEYPOINTS)], palm_surface_center(v, kp, model.side)[None]])
