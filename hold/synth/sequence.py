"""`hold synth`: a hand grasping a textured object, moving in front of a static camera, with exact
ground truth and noisy "estimates" that emulate off-the-shelf tools (a hand-pose regressor, a 2D
keypoint detector). Writes a valid sequence build (hold.data) plus `gt/`.

Pipeline per sequence: build object -> synthesize a grasp (fingers closed onto the surface) ->
a smooth trajectory of the rigid hand+object assembly (a wide yaw sweep with pitch/roll wobble so
SfM sees many sides) -> render RGB, labels, depth per frame -> perturb the truth into estimates.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from hold.data import HandTrack, Intrinsics, ObjectTrack, Sequence, save_sequence
from hold.data.groundtruth import HandObjectTrajectory, HandTrajectory, ObjectTrajectory, save_trajectory
from hold.data.io import write_depth, write_image, write_mask
from hold.geometry.camera import make_intrinsics, project
from hold.geometry.rotations import axis_angle_to_matrix, interpolate_linear, interpolate_rotations, matrix_to_axis_angle
from hold.hands import load_hand_model
from hold.hands.kinematics import palm_center, palm_normal
from hold.progress import track
from hold.synth.grasp import GraspConfig, synthesize_grasp
from hold.synth.objects import ObjectConfig, make_object
from hold.synth.render import RenderConfig, SynthRenderer
from hold.synth.sdf import MeshSDF
from hold.synth.textures import skin_colors


@dataclass
class EstimateNoise:
    """Noise that turns ground truth into emulated off-the-shelf estimates (the build's inputs)."""

    hand_rot_deg: float = 5.0
    """Std of the per-frame global-orientation error (degrees, random axis)."""
    hand_transl_m: float = 0.01
    """Std of the per-frame hand translation error per axis (metres)."""
    hand_pose_rad: float = 0.05
    """Std of the per-joint finger pose error per axis-angle component (radians)."""
    betas: float = 0.3
    """Std of the hand shape error (beta units); one draw for the whole sequence."""
    keypoints_px: float = 2.0
    """Std of the 2D keypoint error (pixels)."""
    drop_rate: float = 0.1
    """Fraction of frames where the "detector" fails: marked invalid, filled by interpolation."""
    object_rot_deg: float = 0.0
    """Std of the per-frame object orientation error in the build (degrees; 0 = GT poses)."""
    object_transl_m: float = 0.0
    """Std of the per-frame object translation error in the build (metres)."""


@dataclass
class SynthConfig:
    """A synthetic sequence: scene, motion, camera, rendering and estimate noise."""

    num_frames: int = 30
    """Number of frames T."""
    width: int = 256
    """Image width (pixels)."""
    height: int = 256
    """Image height (pixels)."""
    seed: int = 0
    """Seed for everything random (object texture, grasp, motion, noise): same seed, same files."""
    object: str = "box"
    """Built-in shape (box, cylinder, sphere, ellipsoid) or a textured mesh file trimesh can load."""
    object_size_m: float = 0.08
    """Longest extent of a built-in shape (metres); mesh files keep their own size."""
    hand_model: str = "anny"
    """Hand model backend (the default embedded one needs no files)."""
    mano_dir: str | None = None
    """Folder with MANO_RIGHT.pkl when hand_model is 'mano'."""
    distance_m: float = 0.38
    """Distance from the camera to the hand+object assembly (metres)."""
    focal_scale: float = 1.1
    """Focal length as a multiple of the image's larger side (1.1 ~ 49 degree field of view)."""
    yaw_range_deg: float = 240.0
    """Total rotation of the assembly about the vertical axis over the sequence (degrees)."""
    pitch_amp_deg: float = 25.0
    """Amplitude of the pitch wobble (degrees)."""
    roll_amp_deg: float = 12.0
    """Amplitude of the roll wobble (degrees)."""
    transl_amp_m: float = 0.02
    """Amplitude of the translation wobble in x/y (metres)."""
    num_object_points: int = 4096
    """Canonical object points written to object.npz (surface samples in the unit sphere)."""
    fps: float = 10.0
    """Frame rate written to sequence.json."""
    noise: EstimateNoise = field(default_factory=EstimateNoise)
    """Estimate noise (the build's hand/object inputs); ground truth is always exact."""
    grasp: GraspConfig = field(default_factory=GraspConfig)
    """Grasp synthesis settings."""


def _rot(axis: str, deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def _frame_from_axes(forward: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Rotation whose columns are an orthonormal frame built from two directions (Gram-Schmidt)."""
    z = forward / np.linalg.norm(forward)
    y = up - z * (up @ z)
    y /= np.linalg.norm(y)
    return np.stack([np.cross(y, z), y, z], 1)


def assembly_trajectory(cfg: SynthConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame rotation (T,3,3) and position (T,3) of the assembly centre in the camera frame."""
    T = cfg.num_frames
    s = np.linspace(0.0, 1.0, T)
    phase = rng.uniform(0, 2 * np.pi, 4)
    yaw = cfg.yaw_range_deg * (s - 0.5)
    pitch = cfg.pitch_amp_deg * np.sin(2 * np.pi * s + phase[0])
    roll = cfg.roll_amp_deg * np.sin(2 * np.pi * 1.5 * s + phase[1])
    R = np.stack([_rot("y", y) @ _rot("x", p) @ _rot("z", r) for y, p, r in zip(yaw, pitch, roll)])
    pos = np.stack([cfg.transl_amp_m * np.sin(2 * np.pi * s + phase[2]),
                    cfg.transl_amp_m * np.sin(2 * np.pi * s + phase[3]),
                    np.full(T, cfg.distance_m)], 1)
    return R, pos


def _perturb_rotations(aa: np.ndarray, std_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Compose each rotation with a random rotation of std `std_deg` (random axis)."""
    if std_deg <= 0:
        return aa.copy()
    noise = rng.normal(size=aa.shape) * math.radians(std_deg) / math.sqrt(3)
    R = axis_angle_to_matrix(torch.as_tensor(noise)) @ axis_angle_to_matrix(torch.as_tensor(aa))
    return matrix_to_axis_angle(R).numpy()


def generate(cfg: SynthConfig, out: str | Path, progress: bool = True) -> Path:
    """Generate the sequence build at `out` (created; existing files are replaced atomically)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    T, W, H = cfg.num_frames, cfg.width, cfg.height
    if T < 2:
        raise ValueError(f"hold synth: --frames must be >= 2, got {T}")

    hand = load_hand_model(cfg.hand_model, "right", cfg.mano_dir)
    mesh = make_object(ObjectConfig(shape=cfg.object, size_m=cfg.object_size_m, seed=cfg.seed))
    sdf = MeshSDF(mesh)
    extent = float(np.ptp(mesh.vertices, axis=0).max())
    betas_gt = rng.normal(size=hand.num_betas) * 0.5
    grasp = synthesize_grasp(hand, sdf, extent, rng, cfg.grasp, betas=betas_gt)

    # Hand at its grasp pose in its rest frame; the assembly centre sits between palm and object.
    with torch.no_grad():
        rest = hand(torch.zeros(1, 3), torch.as_tensor(grasp.hand_pose[None], dtype=torch.float32),
                    torch.as_tensor(grasp.betas[None], dtype=torch.float32), torch.zeros(1, 3))
    kp_rest = rest.keypoints[0]
    wrist = rest.joints[0, 0].numpy()  # global_orient pivots about the root joint (bone 0) in every backend
    obj_center = grasp.T_hand_from_obj[:3, 3]
    center = 0.5 * (palm_center(kp_rest).numpy() + obj_center)
    # Start with the palm (and the object in it) facing the camera, fingers pointing up the image.
    n = palm_normal(kp_rest, hand.side).numpy()
    up_hand = (kp_rest[9] - kp_rest[0]).numpy()
    R_base = _frame_from_axes(np.array([0.0, 0.0, -1.0]), np.array([0.0, -1.0, 0.0])) @ _frame_from_axes(n, up_hand).T
    R_t, p_t = assembly_trajectory(cfg, rng)
    R_cam_from_hand = R_t @ R_base  # (T,3,3)
    # posed = R (x - wrist) + wrist + transl must equal R (x - center) + p  =>  transl below.
    transl = p_t - R_cam_from_hand @ center + R_cam_from_hand @ wrist - wrist
    global_orient = matrix_to_axis_angle(torch.as_tensor(R_cam_from_hand)).numpy()
    T_cam_from_hand = np.tile(np.eye(4), (T, 1, 1))
    T_cam_from_hand[:, :3, :3] = R_cam_from_hand
    T_cam_from_hand[:, :3, 3] = p_t - R_cam_from_hand @ center
    T_cam_from_obj = T_cam_from_hand @ grasp.T_hand_from_obj

    f = cfg.focal_scale * max(W, H)
    K = make_intrinsics(f, f, W / 2.0, H / 2.0, dtype=torch.float64).numpy()
    hand_pose = np.tile(grasp.hand_pose, (T, 1))
    with torch.no_grad():
        gt_hand = hand(torch.as_tensor(global_orient, dtype=torch.float32),
                       torch.as_tensor(hand_pose, dtype=torch.float32),
                       torch.as_tensor(grasp.betas, dtype=torch.float32)[None].expand(T, -1),
                       torch.as_tensor(transl, dtype=torch.float32))
    verts, faces = gt_hand.vertices.numpy(), hand.faces.numpy()
    colors = skin_colors(verts.shape[1], cfg.seed)

    (out / "gt" / "depth").mkdir(parents=True, exist_ok=True)
    with SynthRenderer(RenderConfig(width=W, height=H, K=K, background_seed=cfg.seed)) as renderer:
        for t in track(range(T), "synth: rendering frames", T, enabled=progress):
            r = renderer.render(mesh, T_cam_from_obj[t], verts[t], faces, colors)
            write_image(out / "images" / f"{t:06d}.png", r["rgb"])
            write_mask(out / "masks" / f"{t:06d}.png", r["labels"])
            write_depth(out / "gt" / "depth" / f"{t:06d}.png", r["depth"])

    # Ground truth (exact, metric).
    save_trajectory(HandObjectTrajectory(
        num_frames=T,
        hands={"right": HandTrajectory(side="right", keypoints=gt_hand.keypoints.numpy(), vertices=verts, faces=faces,
                                       params=dict(global_orient=global_orient.astype(np.float32),
                                                   hand_pose=hand_pose.astype(np.float32),
                                                   betas=grasp.betas.astype(np.float32),
                                                   transl=transl.astype(np.float32)))},
        object=ObjectTrajectory(vertices=np.asarray(mesh.vertices), faces=np.asarray(mesh.faces),
                                T_cam_from_obj=T_cam_from_obj, K=K),
        hand_model=cfg.hand_model), out / "gt")

    # Emulated estimates: noisy hand parameters and 2D keypoints, with detector drop-outs.
    nz = cfg.noise
    valid = rng.uniform(size=T) >= nz.drop_rate
    if not valid.any():  # interpolation needs at least one detection
        valid[0] = True
    est_orient = _perturb_rotations(global_orient, nz.hand_rot_deg, rng)
    est_transl = transl + rng.normal(size=transl.shape) * nz.hand_transl_m
    est_pose = hand_pose + rng.normal(size=hand_pose.shape) * nz.hand_pose_rad
    est_betas = grasp.betas + rng.normal(size=grasp.betas.shape) * nz.betas
    kp2d = project(torch.as_tensor(K), gt_hand.keypoints.double()).numpy() + rng.normal(size=(T, 21, 2)) * nz.keypoints_px
    kp2d = np.concatenate([kp2d, np.ones((T, 21, 1))], -1)
    kp2d[~valid] = 0.0  # the detector found nothing on dropped frames
    v = torch.as_tensor(valid)
    est_orient = interpolate_rotations(torch.as_tensor(est_orient)[:, None], v)[:, 0].numpy()
    est_pose = interpolate_rotations(torch.as_tensor(est_pose).reshape(T, 15, 3), v).reshape(T, 45).numpy()
    est_transl = interpolate_linear(torch.as_tensor(est_transl), v).numpy()

    obj_T = T_cam_from_obj.copy()
    obj_rot = matrix_to_axis_angle(torch.as_tensor(obj_T[:, :3, :3])).numpy()
    obj_T[:, :3, :3] = axis_angle_to_matrix(torch.as_tensor(_perturb_rotations(obj_rot, nz.object_rot_deg, rng))).numpy()
    obj_T[:, :3, 3] += rng.normal(size=(T, 3)) * nz.object_transl_m
    # Canonical object space: the unit sphere around the mesh's bounding-box centre (its origin).
    radius = float(np.linalg.norm(mesh.vertices, axis=1).max())
    points = np.asarray(mesh.sample(cfg.num_object_points, seed=cfg.seed)) / radius

    f32 = lambda x: np.asarray(x, dtype=np.float32)  # noqa: E731
    seq = Sequence(
        root=out, num_frames=T, intrinsics=Intrinsics(K=K, width=W, height=H),
        hands={"right": HandTrack(side="right", global_orient=f32(est_orient), hand_pose=f32(est_pose),
                                  betas=f32(est_betas), transl=f32(est_transl), valid=valid,
                                  keypoints_2d=f32(kp2d))},
        hand_model=cfg.hand_model,
        object=ObjectTrack(T_cam_from_obj=f32(obj_T), scale=radius, points=f32(points), valid=np.ones(T, bool)),
        fps=cfg.fps,
        sources={"images": "hold synth (pyrender)", "masks": "hold synth (exact labels)",
                 "hands": f"hold synth: GT + noise {json.dumps(asdict(nz))}",
                 "object": "hold synth: GT object poses (+ configured noise), surface samples"},
        extra={"synth_config": json.loads(json.dumps(asdict(cfg))),
               "grasp": {"curls_deg": grasp.curls_deg.tolist(), "in_contact": grasp.in_contact.tolist()}},
    )
    save_sequence(seq, out)
    return out
