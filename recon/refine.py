"""`hold refine FIT_RUN --out DIR [key=value ...]`: stage `refine`, contact-aware pose refinement.

The fitted networks are frozen: the object's SDF field is the object surface, the hand model's
mesh is the hand surface. Per frame, the hands' global orientation and translation (finger pose
optionally) and the object's pose, plus the one object scale, are optimised with Adam for a fixed
number of steps against (hold.pose_losses): silhouettes of each node vs the build's label masks,
the build's 2D hand keypoints, contact of the hand's contact zones with the object surface where
they are already close, penetration of the hand into the object, temporal smoothness, and a prior
that keeps each frame's object rotation near the fit's (RefineConfig.w_object_rotation_prior).
Starts from the fit run's CURRENT poses (what `fit` trained). By default contact and penetration
move only the hand (RefineConfig.object_contact_share): the object follows its silhouette,
smoothness and rotation prior, which measured better than letting a noisy hand drag it.

DIR/hands.npz, DIR/object.npz   refined poses in the build's layout (hold.data.poses)
DIR/qa/before_after.mp4          input frames with the projected hand/object: before | after
DIR/refine.json                  config, loss terms before/after, timings, GT metrics before/after
                                 when the build has gt/; written LAST (the stage's done marker)

A DIR whose refine.json was made from the same fit model (sha256 of model.pt) and the same config
is left as it is.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from hold.config import resolve_config
from hold.data import load_sequence
from hold.data.groundtruth import load_trajectory
from hold.data.io import atomic_write_json
from hold.data.poses import save_poses, with_poses_from
from hold.data.schema import HandTrack, ObjectTrack, Sequence
from hold.geometry.camera import project_with_depth
from hold.geometry.mesh_sampling import sample_triangles
from hold.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from hold.hands.contact import contact_zone_vertices, contact_zones
from hold.mesh import MeshConfig, extract_mesh
from hold.metrics import pose_errors
from hold.pose_losses import (
    allowed_distance, contact_loss, keypoint_error_px, keypoint_loss, mask_pixels, nearest_points, penetration_depth,
    penetration_loss, rigid_sdf_m, rotation_acceleration, silhouette_loss, smoothness_loss, translation_acceleration,
)
from hold.progress import track
from hold.rendering import LABELS
from hold.run_dir import load_trained_model
from hold.video import write_mp4
from recon.train import device_of

REFINE_JSON = "refine.json"


@dataclass
class RefineConfig:
    """Stage `refine`: which poses move, the loss weights, and the optimiser."""

    steps: int = 150
    """Adam steps per batch of frames."""
    batch_frames: int = 0
    """Frames optimised together (0 = all frames at once). Batches run one after another; the
    smoothness term sees the two already refined frames before a batch; the object scale carries on."""
    lr_rot: float = 0.01
    """Adam step size of the rotation corrections (radians)."""
    lr_transl: float = 0.002
    """Adam step size of the translation corrections (metres)."""
    lr_scale: float = 0.005
    """Adam step size of the log object scale (unitless)."""
    lr_finger: float = 0.01
    """Adam step size of the finger-pose corrections (radians), when refine_fingers."""
    lr_final_ratio: float = 0.1
    """Step sizes decay exponentially to this fraction at the last step."""
    refine_fingers: bool = False
    """Also optimise the finger articulation (hand_pose)."""
    refine_object_scale: bool = True
    """Optimise the object scale (one for the sequence)."""
    refine_object_rotation: bool = True
    """Optimise the object's per-frame rotation (kept near its start by w_object_rotation_prior)."""
    w_object_rotation_prior: float = 30.0
    """Weight per radian² of each frame's object rotation correction: a Gaussian prior around the
    fit's rotation. The silhouettes of a rounded object leave some rotation directions nearly
    unconstrained and Adam, which normalises its steps, random-walks along them: without the prior
    the demo's rotation error went 1.9 -> 5.5 deg (even with the exact GT surface). Measured on six
    synthetic runs (8-60 frames, 150 steps, docs/benchmarks.md): 30 lowered the error on all six
    (demo fit 1.95 -> 1.50 deg; 1.52 with the demo preset's 100 steps; 60 frames 256² 4.1 -> 2.8
    deg); 10 did about as well, 50 and 100 less."""
    w_silhouette: float = 1.0
    """Weight per pixel of each silhouette term (inward and outward, hand and object)."""
    silhouette_resolution: int = 128
    """The silhouette terms compare at most this many pixels along the image's longer side: masks
    are subsampled by an integer factor (cheap distance transforms and searches at any video size,
    and a projected-point density that stays above one point per mask pixel)."""
    silhouette_max_px: float = 15.0
    """Silhouette distances are truncated here (working pixels): robust to mask errors such as an arm."""
    silhouette_tolerance_px: float = 0.5
    """Mask pixels this close to a projected surface point count as covered (working pixels): the
    points have gaps between them, and without a dead zone the term favours moving toward the
    camera; a larger one lets a node shrink by as much."""
    mask_pixels: int = 256
    """Mask pixels per node and frame the outward silhouette term compares (random subset)."""
    nearest_every: int = 5
    """Steps between two searches of each mask pixel's nearest projected point (reused in between)."""
    w_keypoints: float = 1.0
    """Weight per pixel of the robust 2D keypoint term."""
    keypoint_sigma_px: float = 10.0
    """Geman-McClure scale of the keypoint residuals (pixels): larger errors count ~constant."""
    w_contact: float = 500.0
    """Weight per metre of the contact term (mean distance of the closest point of each touching zone)."""
    contact_radius_m: float = 0.01
    """A contact zone (fingertip pad, palm) whose closest point is within this distance of the
    object surface is taken as touching, and that point is pulled onto the surface (metres)."""
    contact_tolerance_m: float = 0.002
    """Gap still counted as touching (metres): skin, estimates and the learned surface are not exact."""
    object_contact_share: float = 0.0
    """Share of the contact and penetration gradients that moves the object pose and scale (the
    hand always gets all of it). Measured on synthetic sequences (hand noise 1 cm / 5 deg, object
    4 deg / 5 mm): any share above ~0.05 lets the noisy hand drag the object along the depth/scale
    direction its silhouette cannot see, and object pose errors grow; 0 keeps the object on its
    silhouette, SfM start and smoothness, and contact then places the hand against it."""
    w_penetration: float = 20000.0
    """Weight per metre of the penetration term (mean depth of hand points inside the object)."""
    w_smooth_transl: float = 2000.0
    """Weight per (metre/frame^2)^2 of the translation acceleration of the wrist and the object."""
    w_smooth_rot: float = 5.0
    """Weight per (radian/frame^2)^2 of the rotation acceleration of the hand and the object."""
    hand_points: int = 0
    """Hand-model vertices used as the hand surface: 0 = all, else a fixed random subset of this
    size (contact zones always included)."""
    object_points: int = 1500
    """Points sampled on the object field's surface for the object silhouette."""
    object_mesh_resolution: int = 64
    """Marching-cubes resolution of the object field's surface (voxels per side of the unit cube)."""
    qa_video: bool = True
    """Write qa/before_after.mp4."""
    qa_fps: float = 10.0
    """Frame rate of the QA video."""
    qa_min_height: int = 256
    """The QA video is upscaled (nearest, integer factor) to at least this height (pixels)."""
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu' or 'cuda'."""
    seed: int = 0
    """Seed of the point and mask-pixel subsets."""


# ----------------------------------------------------------------------------------------------
# The problem: fixed data of the run, the pose variables, and the posed geometry


class HandRig:
    """One hand: the fit's poses and the fixed data to pose it cheaply."""

    def __init__(self, side: str, node, track: HandTrack | None, cfg: RefineConfig, rng: np.random.Generator):
        self.side, self.model = side, node.model
        dev = node.global_orient.device
        self.R0 = axis_angle_to_matrix(node.global_orient.detach())
        self.transl0 = node.transl.detach().clone()
        self.pose0 = node.hand_pose.detach().clone()
        self.betas = node.betas.detach().clone()  # (1,B)
        V = node.rest_vertices.shape[0]
        zones = contact_zones(self.model)
        zone = contact_zone_vertices(self.model).to(dev)
        zone_of = {int(v): z for z, idx in enumerate(zones.values()) for v in idx.tolist()}
        self.zone_id = torch.as_tensor([zone_of[int(v)] for v in zone.tolist()], device=dev)
        self.num_zones = len(zones)
        rest = np.setdiff1d(np.arange(V), zone.cpu().numpy())
        n_extra = len(rest) if cfg.hand_points <= 0 else min(len(rest), max(cfg.hand_points - len(zone), 0))
        extra = rng.choice(rest, n_extra, replace=False)
        self.points = torch.cat([zone, torch.as_tensor(np.sort(extra), device=dev)])
        self.zone = torch.arange(len(zone), device=dev)  # positions of the zone vertices in self.points
        kp = None if track is None else track.keypoints_2d
        self.keypoints_2d = None if kp is None else torch.as_tensor(kp, dtype=torch.float32, device=dev)
        self.label = LABELS[side]
        if not cfg.refine_fingers:  # the articulated hand before its global rigid motion, once
            self.local = self.articulate(torch.arange(self.R0.shape[0], device=dev), self.pose0)

    def articulate(self, frames: Tensor, hand_pose: Tensor) -> dict[str, Tensor]:
        """Hand at `hand_pose` with no global rotation or translation: points, keypoints, root joint."""
        U = frames.shape[0]
        z = torch.zeros(U, 3, device=hand_pose.device)
        out = self.model(z, hand_pose, self.betas.expand(U, -1), z)
        return {"points": out.vertices[:, self.points], "keypoints": out.keypoints, "root": out.joints[:, 0]}


class PoseVariables(torch.nn.Module):
    """Corrections to the fit's poses, zero = the fit's poses. Per frame and hand: a camera-frame
    rotation left-multiplied onto global_orient (so about the wrist joint) and a translation; per
    frame for the object: a camera-frame rotation about the object origin (R = exp(w) R0) and a
    translation (t = t0 + dt); and the log object scale."""

    def __init__(self, T: int, sides: list[str], has_object: bool, num_pose: dict[str, int], device):
        super().__init__()
        z = lambda *s: torch.nn.Parameter(torch.zeros(*s, device=device))  # noqa: E731
        self.hand_rot = torch.nn.ParameterDict({s: z(T, 3) for s in sides})
        self.hand_transl = torch.nn.ParameterDict({s: z(T, 3) for s in sides})
        self.hand_pose = torch.nn.ParameterDict({s: z(T, num_pose[s]) for s in sides})
        self.obj_rot = z(T, 3) if has_object else None
        self.obj_transl = z(T, 3) if has_object else None
        self.obj_log_scale = z(()) if has_object else None


@dataclass
class Posed:
    """Posed geometry of a batch of frames (camera frame, metres)."""

    hand_points: dict[str, Float[Tensor, "B N 3"]]
    hand_keypoints: dict[str, Float[Tensor, "B 21 3"]]
    hand_R: dict[str, Float[Tensor, "B 3 3"]]
    hand_transl: dict[str, Float[Tensor, "B 3"]]
    hand_pose: dict[str, Float[Tensor, "B P"]]
    obj_T: Float[Tensor, "B 4 4"] | None
    obj_scale: Tensor | None
    obj_points: Float[Tensor, "B N 3"] | None
    obj_rot_delta: Float[Tensor, "B 3"] | None
    """The object's rotation correction (axis-angle, camera frame) relative to the fit's rotation."""


def to_working_pixels(uv: Float[Tensor, "... 2"], f: int) -> Float[Tensor, "... 2"]:
    """Image pixels -> pixels of a label map subsampled as labels[f // 2::f, f // 2::f]: working pixel i
    is original pixel f i + f // 2, so that pixel's centre (f i + f // 2 + 0.5) maps to i + 0.5."""
    return (uv - (f // 2 + 0.5)) / f + 0.5


class RefineProblem:
    """Everything the refinement needs of a fitted run, and the loss terms of any pose state."""

    def __init__(self, model, seq: Sequence, cfg: RefineConfig, device: str):
        self.cfg, self.device, self.T = cfg, device, seq.num_frames
        rng = np.random.default_rng(cfg.seed)
        self.K = model.K.to(device)
        self.hands = {s: HandRig(s, node, seq.hands.get(s), cfg, rng) for s, node in model.hands.items()}
        self.obj = model.object
        if self.obj is not None:
            self.obj_T0 = self.obj.T_cam_from_obj(torch.arange(self.T, device=device)).detach()
            self.obj_scale0 = self.obj.scale.detach().clone()
            self.obj_x, self.obj_center = self._object_surface(rng)
        self._load_masks(seq, rng)

    # --- fixed data ------------------------------------------------------------------------------
    def _object_surface(self, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        """Points on the object field's zero level (unit-sphere units) and its bounding-box centre."""
        sdf = self.obj.sdf
        v, f = extract_mesh(lambda x: sdf(x)[0], -np.ones(3), np.ones(3),
                            MeshConfig(resolution=self.cfg.object_mesh_resolution), self.device)
        if len(f) == 0:
            raise ValueError("refine: the fit run's object SDF field has no surface (no zero crossing in the unit "
                             "sphere), so there is nothing to refine the object against. Fix: check the fit run "
                             "(its logs/ and `hold export`), or re-train it with more steps")
        pts = sample_triangles(v[f].astype(np.float64), self.cfg.object_points, rng)[0]
        center = 0.5 * (v.min(0) + v.max(0))
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=self.device)  # noqa: E731
        return as_t(pts), as_t(center)

    def _load_masks(self, seq: Sequence, rng: np.random.Generator) -> None:
        self.has_masks = seq.has_masks and all(seq.mask_path(i).is_file() for i in range(self.T))
        self.sil: dict[str, dict[str, Tensor]] = {}
        self.sil_factor = 1
        if not self.has_masks:
            return
        W, H = seq.intrinsics.image_size
        f = self.sil_factor = max(1, math.ceil(max(W, H) / max(self.cfg.silhouette_resolution, 1)))
        # nearest subsampling keeps labels discrete: working pixel i samples original pixel f i + f // 2
        labels = [seq.load_mask(i)[f // 2::f, f // 2::f] for i in range(self.T)]
        nodes = {s: h.label for s, h in self.hands.items()}
        if self.obj is not None:
            nodes["object"] = LABELS["object"]
        allowed = [allowed_distance(lab) for lab in labels]
        for name, label in nodes.items():
            per = [mask_pixels(lab, label, self.cfg.mask_pixels, rng) for lab in labels]
            M = max(1, max(len(p) for p in per))
            uv = torch.zeros(self.T, M, 2, device=self.device)
            ok = torch.zeros(self.T, M, dtype=torch.bool, device=self.device)
            for i, p in enumerate(per):
                uv[i, :len(p)] = torch.as_tensor(p, device=self.device)
                ok[i, :len(p)] = True
            self.sil[name] = {"uv": uv, "ok": ok}
        dist = torch.as_tensor(np.stack([a[0] for a in allowed]), device=self.device)
        usable = torch.as_tensor([a[1] for a in allowed], device=self.device)
        self.sil_dist, self.sil_usable = dist, usable

    def variables(self) -> PoseVariables:
        return PoseVariables(self.T, list(self.hands), self.obj is not None,
                             {s: h.pose0.shape[1] for s, h in self.hands.items()}, self.device)

    # --- posing ----------------------------------------------------------------------------------
    def pose(self, var: PoseVariables, frames: Tensor) -> Posed:
        pts, kps, Rs, ts, poses = {}, {}, {}, {}, {}
        for s, h in self.hands.items():
            R = axis_angle_to_matrix(var.hand_rot[s][frames]) @ h.R0[frames]
            transl = h.transl0[frames] + var.hand_transl[s][frames]
            hand_pose = h.pose0[frames] + var.hand_pose[s][frames]
            if self.cfg.refine_fingers:
                loc = h.articulate(frames, hand_pose)
            else:
                loc = {k: v[frames] for k, v in h.local.items()}
            j = loc["root"][:, None]
            # posed = R (x - j) + j + transl: global_orient pivots about the root joint in every backend
            move = lambda x: torch.einsum("bij,bnj->bni", R, x - j) + j + transl[:, None]  # noqa: E731
            pts[s], kps[s], Rs[s], ts[s], poses[s] = move(loc["points"]), move(loc["keypoints"]), R, transl, hand_pose
        obj_T = obj_s = obj_pts = obj_dw = None
        if self.obj is not None:
            obj_dw = var.obj_rot[frames]
            T0 = self.obj_T0[frames]
            R = axis_angle_to_matrix(obj_dw) @ T0[:, :3, :3]
            t = T0[:, :3, 3] + var.obj_transl[frames]
            obj_T = torch.cat([torch.cat([R, t[..., None]], -1), T0[:, 3:]], 1)
            obj_s = self.obj_scale0 * var.obj_log_scale.exp()
            obj_pts = torch.einsum("bij,nj->bni", obj_T[:, :3, :3], obj_s * self.obj_x) + obj_T[:, None, :3, 3]
        return Posed(pts, kps, Rs, ts, poses, obj_T, obj_s, obj_pts, obj_dw)

    def object_sdf_m(self, posed: Posed, x_cam: Tensor) -> Tensor:
        """Object SDF (metres) at hand points; the object's pose and scale get only
        `object_contact_share` of this term's gradient (the value is unchanged)."""
        a = self.cfg.object_contact_share
        share = lambda x: x.detach() + a * (x - x.detach())  # noqa: E731
        return rigid_sdf_m(lambda x: self.obj.sdf(x)[0], x_cam, share(posed.obj_T), share(posed.obj_scale))

    # --- losses ----------------------------------------------------------------------------------
    def terms(self, posed: Posed, frames: Tensor, context: Posed | None = None,
              nearest: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Per-frame data terms (B,) and sequence smoothness terms (scalars), unweighted.
        `context`: already refined poses of the frames just before `frames` (smoothness only).
        `nearest`: cache of each node's nearest-point indices (read when filled, else filled)."""
        cfg, out = self.cfg, {}
        nodes = {s: posed.hand_points[s] for s in self.hands}
        if self.obj is not None:
            nodes["object"] = posed.obj_points
        for name, x in nodes.items():
            if not self.has_masks:
                continue
            uv, z = project_with_depth(self.K, x)
            uv = to_working_pixels(uv, self.sil_factor)
            sil, ok = self.sil[name], z > 1e-3
            idx = None if nearest is None else nearest.get(name)
            if idx is None:
                idx = nearest_points(sil["uv"][frames], uv, ok)
                if nearest is not None:
                    nearest[name] = idx
            inward, outward = silhouette_loss(uv, ok, self.sil_dist[frames], sil["uv"][frames], sil["ok"][frames],
                                              max_px=cfg.silhouette_max_px, nearest=idx,
                                              tolerance_px=cfg.silhouette_tolerance_px)
            use = self.sil_usable[frames].to(inward.dtype)
            key = "hand" if name in self.hands else "object"
            out[f"sil_{key}_in"] = out.get(f"sil_{key}_in", 0) + inward * use
            out[f"sil_{key}_out"] = out.get(f"sil_{key}_out", 0) + outward * use
        for s, h in self.hands.items():
            if h.keypoints_2d is not None:
                uv = project_with_depth(self.K, posed.hand_keypoints[s])[0]
                kp = h.keypoints_2d[frames]
                out["keypoints"] = out.get("keypoints", 0) + keypoint_loss(uv, kp, cfg.keypoint_sigma_px)
                with torch.no_grad():  # mean over the hands with keypoints, for reports
                    n_kp = sum(g.keypoints_2d is not None for g in self.hands.values())
                    out["keypoint_err_px"] = out.get("keypoint_err_px", 0) + keypoint_error_px(uv, kp) / n_kp
            if self.obj is not None:
                sdf = self.object_sdf_m(posed, posed.hand_points[s])
                c, n = contact_loss(sdf[:, h.zone], h.zone_id, h.num_zones, cfg.contact_radius_m,
                                    cfg.contact_tolerance_m)
                out["contact"] = out.get("contact", 0) + c
                out["contact_zones"] = out.get("contact_zones", 0) + n
                out["penetration"] = out.get("penetration", 0) + penetration_loss(sdf)
                out["penetration_max_m"] = torch.maximum(out.get("penetration_max_m", torch.zeros_like(c)),
                                                         penetration_depth(sdf.detach()))
        if self.obj is not None and cfg.refine_object_rotation:
            out["object_rotation_prior"] = posed.obj_rot_delta.square().sum(-1)
        # smoothness over the batch, with the refined context frames in front
        def seq_of(get):
            x = get(posed)
            return x if context is None else torch.cat([get(context).detach(), x])
        acc_t, acc_r = [], []
        for s in self.hands:
            acc_t.append(translation_acceleration(seq_of(lambda p: p.hand_keypoints[s][:, 0])))
            acc_r.append(rotation_acceleration(seq_of(lambda p: p.hand_R[s])))
        if self.obj is not None:
            acc_t.append(translation_acceleration(seq_of(lambda p: p.obj_T[:, :3, 3])))
            acc_r.append(rotation_acceleration(seq_of(lambda p: p.obj_T[:, :3, :3])))
        out["smooth_transl"] = sum(smoothness_loss(a) for a in acc_t) if acc_t else torch.zeros(())
        out["smooth_rot"] = sum(smoothness_loss(a) for a in acc_r) if acc_r else torch.zeros(())
        return out

    def total(self, t: dict[str, Tensor]) -> Tensor:
        c = self.cfg
        per_frame = 0.0
        for k in ("sil_hand_in", "sil_hand_out", "sil_object_in", "sil_object_out"):
            if k in t:
                per_frame = per_frame + c.w_silhouette * t[k]
        for k, w in (("keypoints", c.w_keypoints), ("contact", c.w_contact), ("penetration", c.w_penetration),
                     ("object_rotation_prior", c.w_object_rotation_prior)):
            if k in t:
                per_frame = per_frame + w * t[k]
        loss = per_frame.mean() if torch.is_tensor(per_frame) else torch.zeros((), device=self.device)
        return loss + c.w_smooth_transl * t["smooth_transl"] + c.w_smooth_rot * t["smooth_rot"]

    @torch.no_grad()
    def report(self, var: PoseVariables) -> dict[str, float]:
        """Every term averaged over all frames (plain floats; distances in the units of the term)."""
        frames = torch.arange(self.T, device=self.device)
        t = self.terms(self.pose(var, frames), frames)
        out = {"total": float(self.total(t))}
        for k, v in t.items():
            v = v.float()
            out[k] = float(v.max()) if k == "penetration_max_m" else float(v.mean())
        return out


# ----------------------------------------------------------------------------------------------
# Optimisation


def optimize(problem: RefineProblem, var: PoseVariables, progress: bool = True) -> list[float]:
    """Adam over batches of frames (all at once when cfg.batch_frames is 0); returns the loss history."""
    cfg, T = problem.cfg, problem.T
    size = T if cfg.batch_frames <= 0 else cfg.batch_frames
    batches = [torch.arange(a, min(a + size, T), device=problem.device) for a in range(0, T, size)]
    history = []
    gamma = cfg.lr_final_ratio ** (1.0 / max(cfg.steps - 1, 1))
    steps = [(b, i) for b in range(len(batches)) for i in range(cfg.steps)]
    opt = sched = None
    for b, i in track(steps, "refine: optimising poses", len(steps), enabled=progress):
        frames = batches[b]
        if i == 0:  # a fresh optimiser per batch: each batch owns its frames' variables
            groups = [{"params": list(var.hand_rot.values()), "lr": cfg.lr_rot},
                      {"params": list(var.hand_transl.values()), "lr": cfg.lr_transl}]
            if cfg.refine_fingers:
                groups.append({"params": list(var.hand_pose.values()), "lr": cfg.lr_finger})
            if var.obj_rot is not None:
                if cfg.refine_object_rotation:
                    groups.append({"params": [var.obj_rot], "lr": cfg.lr_rot})
                groups.append({"params": [var.obj_transl], "lr": cfg.lr_transl})
                if cfg.refine_object_scale:
                    groups.append({"params": [var.obj_log_scale], "lr": cfg.lr_scale})
            opt = torch.optim.Adam(groups)
            sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
            ctx_frames = torch.arange(max(0, int(frames[0]) - 2), int(frames[0]), device=problem.device)
            with torch.no_grad():  # earlier batches' frames: fixed while this batch is optimised
                context = problem.pose(var, ctx_frames) if len(ctx_frames) else None
        if i % max(cfg.nearest_every, 1) == 0:
            nearest: dict[str, Tensor] = {}
        loss = problem.total(problem.terms(problem.pose(var, frames), frames, context, nearest))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
    return history


# ----------------------------------------------------------------------------------------------
# Outputs


@torch.no_grad()
def refined_sequence(problem: RefineProblem, var: PoseVariables, seq: Sequence) -> Sequence:
    """`seq` with the refined poses (betas, valid flags, keypoints and object points unchanged)."""
    frames = torch.arange(problem.T, device=problem.device)
    p = problem.pose(var, frames)
    f32 = lambda x: x.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    hands = {}
    for s, h in problem.hands.items():
        old = seq.hands[s]
        hands[s] = dataclasses.replace(old, global_orient=f32(matrix_to_axis_angle(p.hand_R[s])),
                                       transl=f32(p.hand_transl[s]), hand_pose=f32(p.hand_pose[s]),
                                       betas=f32(h.betas[0]))
    obj = None
    if problem.obj is not None:
        T = p.obj_T.detach().double()
        T[:, 3] = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=T.dtype, device=T.device)
        obj = ObjectTrack(T_cam_from_obj=T.cpu().numpy().astype(np.float32), scale=float(p.obj_scale),
                          points=seq.object.points, valid=seq.object.valid)
    return dataclasses.replace(seq, hands=hands, object=obj)


@torch.no_grad()
def gt_metrics(problem: RefineProblem, var: PoseVariables, gt_dir: Path) -> dict[str, float]:
    """Errors against the build's ground truth (means over frames): hand root-relative MPJPE and
    root (wrist) error (mm); object rotation error relative to the first frame (degrees,
    canonical-frame free, as `hold evaluate`), absolute rotation error (meaningful when the canonical
    frame is the GT mesh's, as in synthetic builds), the error of the object's posed bounding-box
    centre (mm), and the scale ratio (largest radius of the field's surface x scale / of the GT mesh;
    ~1, slightly below for a learned surface that rounds corners)."""
    gt = load_trajectory(gt_dir)
    frames = torch.arange(problem.T, device=problem.device)
    p = problem.pose(var, frames)
    out: dict[str, float] = {}
    for s in problem.hands:
        if s not in gt.hands:
            continue
        kp = p.hand_keypoints[s].cpu().double().numpy()
        g = gt.hands[s].keypoints.astype(np.float64)
        root = np.linalg.norm(kp[:, 0] - g[:, 0], axis=-1)
        rel = np.linalg.norm((kp - kp[:, :1]) - (g - g[:, :1]), axis=-1).mean(-1)
        out[f"hand_{s}_root_err_mm"] = float(root.mean() * 1000)
        out[f"hand_{s}_mpjpe_ra_mm"] = float(rel.mean() * 1000)
    if problem.obj is not None and gt.object is not None:
        Tp = p.obj_T.cpu().double().numpy()
        Tg = gt.object.T_cam_from_obj.astype(np.float64)
        out["obj_rot_err_deg"] = float(pose_errors(Tp, Tg, relative_to_first=True)["rot_deg_mean"])
        out["obj_rot_err_abs_deg"] = float(pose_errors(Tp, Tg)["rot_deg_mean"])
        c_pred = (problem.obj_center.double() * p.obj_scale.double()).cpu().numpy()
        vg = gt.object.vertices.astype(np.float64)
        c_gt = 0.5 * (vg.min(0) + vg.max(0))
        cp = np.einsum("tij,j->ti", Tp[:, :3, :3], c_pred) + Tp[:, :3, 3]
        cg = np.einsum("tij,j->ti", Tg[:, :3, :3], c_gt) + Tg[:, :3, 3]
        out["obj_center_err_mm"] = float(np.linalg.norm(cp - cg, axis=-1).mean() * 1000)
        out["obj_scale_ratio"] = float(p.obj_scale) * float(np.linalg.norm(problem.obj_x.cpu().numpy(), axis=1).max()) \
            / float(np.linalg.norm(vg, axis=1).max())
    return out


def _splat(img: np.ndarray, uv: np.ndarray, color: tuple[int, int, int], alpha: float = 0.6) -> None:
    """Blend `color` into the pixels hit by the points uv (pixel coordinates), in place."""
    H, W = img.shape[:2]
    px = np.floor(uv).astype(np.int64)
    ok = (px[:, 0] >= 0) & (px[:, 0] < W) & (px[:, 1] >= 0) & (px[:, 1] < H)
    px = np.unique(px[ok], axis=0)
    c = np.asarray(color, dtype=np.float32)
    img[px[:, 1], px[:, 0]] = ((1 - alpha) * img[px[:, 1], px[:, 0]] + alpha * c).astype(np.uint8)


@torch.no_grad()
def write_qa_video(problem: RefineProblem, before: PoseVariables, after: PoseVariables, seq: Sequence,
                   path: Path, fps: float, min_height: int) -> None:
    """Input frames with the projected hand (red) and object (blue) surfaces: before | after."""
    frames = torch.arange(problem.T, device=problem.device)
    views = []
    for var in (before, after):
        p = problem.pose(var, frames)
        hand = [project_with_depth(problem.K, x)[0].cpu().numpy() for x in p.hand_points.values()]
        obj = None if p.obj_points is None else project_with_depth(problem.K, p.obj_points)[0].cpu().numpy()
        views.append((hand, obj))
    H = seq.intrinsics.height
    up = max(1, math.ceil(min_height / H))
    video = []
    for t in range(problem.T):
        rgb = seq.load_image(t)
        panels = []
        for hand, obj in views:
            img = rgb.copy()
            if obj is not None:
                _splat(img, obj[t], (40, 110, 255))
            for uv in hand:
                _splat(img, uv[t], (255, 60, 40))
            panels.append(img)
        video.append(np.concatenate(panels, 1).repeat(up, 0).repeat(up, 1))
    write_mp4(path, video, fps=fps)


# ----------------------------------------------------------------------------------------------
# Entry points


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def refine(fit_run: Path, out: Path, cfg: RefineConfig | None = None, progress: bool = True) -> Path:
    """Refine the poses of the trained run `fit_run` into `out` (see the module docstring); returns `out`."""
    cfg = cfg or RefineConfig()
    fit_run, out = Path(fit_run), Path(out)
    model_pt = fit_run / "checkpoints" / "model.pt"
    if not model_pt.is_file():
        raise FileNotFoundError(f"{model_pt} does not exist: {fit_run} is not a finished training run. "
                                f"Fix: run `hold train BUILD --out {fit_run}` first (it resumes if interrupted)")
    sha = _sha256(model_pt)
    done = out / REFINE_JSON
    if done.is_file():
        try:
            prev = json.loads(done.read_text())
        except (json.JSONDecodeError, OSError):
            prev = {}
        if prev.get("fit_model_sha256") == sha and prev.get("config") == asdict(cfg):
            if progress:
                print(f"hold refine: {out} is up to date (same fit model and config); nothing to do")
            return out
    t0 = time.perf_counter()
    device = device_of(cfg)
    trained = load_trained_model(fit_run, device)
    model, build = trained.model.requires_grad_(False), trained.build
    seq = load_sequence(build)
    if trained.poses_from is not None:
        seq = with_poses_from(seq, trained.poses_from)
    if not model.hands and model.object is None:
        raise ValueError(f"refine: {fit_run} has neither a hand nor an object; nothing to refine")
    t_load = time.perf_counter()
    problem = RefineProblem(model, seq, cfg, device)
    start, var = problem.variables(), problem.variables()
    t_setup = time.perf_counter()
    before = problem.report(start)
    history = optimize(problem, var, progress)
    after = problem.report(var)
    t_opt = time.perf_counter()
    refined = refined_sequence(problem, var, seq)
    metrics = None
    if (Path(build) / "gt").is_dir():
        metrics = {"before": gt_metrics(problem, start, Path(build) / "gt"),
                   "after": gt_metrics(problem, var, Path(build) / "gt")}
    out.mkdir(parents=True, exist_ok=True)
    done.unlink(missing_ok=True)  # outputs below change: the old done marker must not vouch for them
    save_poses(out, refined)
    t_write = time.perf_counter()
    if cfg.qa_video:
        write_qa_video(problem, start, var, seq, out / "qa" / "before_after.mp4", cfg.qa_fps, cfg.qa_min_height)
    t_qa = time.perf_counter()
    report = {
        "fit_run": str(fit_run.resolve()), "build": str(Path(build).resolve()), "fit_model_sha256": sha,
        "config": asdict(cfg), "num_frames": problem.T, "hands": list(problem.hands),
        "has_object": problem.obj is not None, "used_masks": problem.has_masks,
        "losses": {"before": before, "after": after},
        "loss_history": history[:: max(1, len(history) // 50)],
        "metrics": metrics,
        "object_scale": {"before": float(problem.obj_scale0) if problem.obj is not None else None,
                         "after": refined.object.scale if refined.object is not None else None},
        "timings": {"device": torch.cuda.get_device_name() if device == "cuda" else
                    f"cpu ({torch.get_num_threads()} threads)",
                    "load_s": round(t_load - t0, 3), "setup_s": round(t_setup - t_load, 3),
                    "optimize_s": round(t_opt - t_setup, 3), "write_s": round(t_write - t_opt, 3),
                    "qa_video_s": round(t_qa - t_write, 3), "total_s": round(t_qa - t0, 3),
                    "steps": len(history)},
    }
    atomic_write_json(done, report)
    return out


def refine_command(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hold refine", description="Contact-aware pose refinement of a fitted run "
                                "(stage `refine`). key=value arguments override RefineConfig fields, e.g. steps=300.")
    p.add_argument("fit_run", type=Path, help="a trained run directory (checkpoints/model.pt, run.json, config.yaml)")
    p.add_argument("--out", type=Path, required=True, help="output folder (hands.npz, object.npz, refine.json, qa/)")
    p.add_argument("--config", action="append", default=[], help="YAML file with RefineConfig fields (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_intermixed_args(argv)
    cfg = resolve_config(RefineConfig(), args.config, args.overrides)
    out = refine(args.fit_run, args.out, cfg, progress=not args.quiet)
    report = json.loads((out / REFINE_JSON).read_text())
    b, a = report["losses"]["before"], report["losses"]["after"]
    print(f"hold refine: loss {b['total']:.4g} -> {a['total']:.4g} -> {out}")
    if report.get("metrics"):
        mb, ma = report["metrics"]["before"], report["metrics"]["after"]
        print("hold refine: " + ", ".join(f"{k} {mb[k]:.3g} -> {ma[k]:.3g}" for k in ma))
    return 0


if __name__ == "__main__":
    sys.exit(refine_command())
