"""Grasp synthesis: place an object against the palm and close each finger until it touches.

Classic "auto-grasp" (as in GraspIt): every finger curls along its flexion axes
(hold.hands.kinematics) with a fixed ratio between its three joints; the largest curl whose finger
vertices stay outside the object (SDF >= margin) is found by a coarse scan then bisection, all
fingers batched at once. The segment that touched stops with the joints before it, the distal
joints keep closing, until the fingertip segment rests on the surface (or the finger is fully
curled). Result: phalanges and fingertips on the surface, no interpenetration.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hold.geometry.rotations import axis_angle_to_matrix
from hold.hands.base import HandModel
from hold.hands.kinematics import flexion_axes, palm_center, palm_normal, rest_keypoints


@dataclass
class GraspConfig:
    """How the object is placed in the hand and how the fingers close."""

    palm_gap_m: float = 0.004
    """Clearance between the palm surface and the object (metres)."""
    contact_margin_m: float = 0.0015
    """Fingers stop when their closest vertex is this far outside the surface (metres)."""
    toward_fingers: float = 0.55
    """Where the object sits between the palm centre (0) and the middle-finger PIP joint (1)."""
    max_curl_deg: float = 95.0
    """Largest curl of a finger's base joint (degrees); other joints scale with `joint_ratios`."""
    joint_ratios: tuple[float, float, float] = (1.0, 1.1, 0.7)
    """Curl of (base, middle, distal) joint relative to the base joint, fingers."""
    thumb_ratios: tuple[float, float, float] = (0.5, 0.8, 0.8)
    """Same for the thumb."""
    preshape_deg: float = 8.0
    """Initial flexion of every joint before closing (degrees)."""
    scan_steps: int = 40
    """Coarse scan resolution of the curl (then 12 bisection steps)."""


@dataclass
class Grasp:
    """A hand pose and the object placed in the hand's rest frame."""

    hand_pose: np.ndarray
    """(45,) finger pose of the grasp."""
    betas: np.ndarray
    """(NB,) hand shape."""
    T_hand_from_obj: np.ndarray
    """(4,4) object pose in the hand's rest frame (zero global orient, zero transl)."""
    curls_deg: np.ndarray
    """(5,3) final curl of each finger joint on top of the pre-shape, hand_pose order (degrees)."""
    in_contact: np.ndarray
    """(5,) whether the finger stopped on the surface (False: closed fully without touching)."""


def _finger_vertex_masks(model: HandModel, weights: torch.Tensor) -> list[torch.Tensor]:
    """Vertices that move with each finger: dominant skinning bone is one of its three joints."""
    dominant = weights.argmax(1)
    bones = torch.as_tensor(model.pose_joint_bones)
    return [torch.isin(dominant, bones[3 * f: 3 * f + 3]) for f in range(5)]


def synthesize_grasp(model: HandModel, sdf, object_extent_m: float, rng: np.random.Generator,
                     cfg: GraspConfig = GraspConfig(), betas: np.ndarray | None = None) -> Grasp:
    """Grasp an object whose signed distance (object frame, metres) is `sdf(points (N,3)) -> (N,)`."""
    betas_t = torch.zeros(1, model.num_betas) if betas is None else torch.as_tensor(betas, dtype=torch.float32)[None]
    kp = rest_keypoints(model, betas_t)
    axes = flexion_axes(model, kp)  # (15, 3)
    n = palm_normal(kp, model.side)
    thumb = [f for f in range(5) if model.pose_joint_keypoints[3 * f] in (1, 2)][0]
    ratios = torch.tensor([cfg.thumb_ratios if f == thumb else cfg.joint_ratios for f in range(5)])

    def hand(hand_pose: torch.Tensor):
        B = hand_pose.shape[0]
        with torch.no_grad():
            return model(torch.zeros(B, 3), hand_pose, betas_t.expand(B, -1), torch.zeros(B, 3))

    # Object orientation: random; position: in front of the palm, between palm centre and fingers.
    R_obj = axis_angle_to_matrix(torch.as_tensor(rng.normal(size=3) * np.pi, dtype=torch.float32)).numpy()
    anchor = (1 - cfg.toward_fingers) * palm_center(kp) + cfg.toward_fingers * kp[10]
    open_hand = hand((torch.deg2rad(torch.tensor(cfg.preshape_deg)) * axes).reshape(1, 45))
    verts0 = open_hand.vertices[0].numpy()

    def world_sdf(x: np.ndarray, center: np.ndarray) -> np.ndarray:
        return sdf((x - center) @ R_obj)  # x_obj = R^T (x - c)

    # Push the object out along the palm normal until the open hand clears it by palm_gap.
    lo, hi = 0.0, 2.0 * object_extent_m + 0.05
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if world_sdf(verts0, (anchor + mid * n).numpy()).min() >= cfg.palm_gap_m:
            hi = mid
        else:
            lo = mid
    center = (anchor + hi * n).numpy()

    weights = open_hand.skinning_weights
    masks = [m.numpy() for m in _finger_vertex_masks(model, weights)]
    # position (0 base, 1 middle, 2 distal) of each vertex's dominant bone within its finger
    bones = torch.as_tensor(model.pose_joint_bones)
    segment = (weights.argmax(1)[:, None] == bones[None]).float().argmax(1).remainder(3).numpy()
    ratios5 = ratios
    angles = torch.zeros(5, 3)  # curl (degrees) of every joint, on top of the pre-shape
    active = torch.ones(5, 3)  # joints still closing
    touched = torch.zeros(5, dtype=torch.bool)
    steps = torch.linspace(0.0, cfg.max_curl_deg, cfg.scan_steps)

    def probe(delta: torch.Tensor):  # (B,5) extra curl -> min SDF (B,5) and touching segment (B,5)
        ang = angles[None] + delta[..., None] * ratios5 * active
        v = hand(_pose_from_angles(ang)).vertices.numpy()
        d = world_sdf(v.reshape(-1, 3), center).reshape(v.shape[0], -1)
        clear = np.stack([d[:, m].min(1) for m in masks], 1)
        seg = np.stack([segment[m][d[:, m].argmin(1)] for m in masks], 1)
        return clear, seg

    def _pose_from_angles(ang: torch.Tensor) -> torch.Tensor:  # (B,5,3) degrees -> (B,45)
        rad = torch.deg2rad(cfg.preshape_deg + ang.clamp(max=cfg.max_curl_deg * 1.2)).reshape(-1, 15, 1)
        return (rad * axes).reshape(-1, 45)

    # Auto-grasp: close the active joints until some segment touches; freeze that segment and
    # the joints before it; repeat with the rest, so fingertips end on the surface too.
    for _ in range(3):
        if active.sum() == 0:
            break
        clear, _ = probe(steps[:, None].expand(-1, 5))
        ok = clear >= cfg.contact_margin_m
        lo = torch.zeros(5)
        hi = torch.full((5,), cfg.max_curl_deg)
        hits = torch.zeros(5, dtype=torch.bool)
        for f in range(5):
            bad = np.flatnonzero(~ok[:, f])
            if active[f].sum() == 0 or len(bad) == 0:
                continue
            hits[f] = True
            hi[f] = steps[bad[0]]
            lo[f] = steps[bad[0] - 1] if bad[0] > 0 else 0.0
        for _ in range(12):  # bisection, all fingers at once
            mid = 0.5 * (lo + hi)
            good = torch.as_tensor(probe(mid[None])[0][0] >= cfg.contact_margin_m)
            lo = torch.where(hits & good, mid, lo)
            hi = torch.where(hits & ~good, mid, hi)
        # fingers that never touch close fully and stop
        step = torch.where(hits, lo, torch.full((5,), cfg.max_curl_deg))
        _, seg = probe(hi[None])
        angles = angles + step[:, None] * ratios5 * active
        touched |= hits
        for f in range(5):
            if not hits[f]:
                active[f] = 0.0
            else:
                active[f, : int(seg[0, f]) + 1] = 0.0  # the touching segment and those before it stop

    hand_pose = _pose_from_angles(angles[None])[0]
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R_obj, center
    return Grasp(hand_pose=hand_pose.numpy(), betas=betas_t[0].numpy(), T_hand_from_obj=T,
                 curls_deg=angles.numpy(), in_contact=touched.numpy())
