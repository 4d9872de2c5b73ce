"""HO3D (v2 / v3) ground truth of one sequence, converted to hold's trajectory layout.

Expected layout (as the dataset ships; the user downloads it and the YCB models themselves):

    <HO3D>/train/<SEQ>/meta/0000.pkl ...   one pickle per frame (latin-1 pickles, python-2 era)
    <HO3D>/train/<SEQ>/rgb/0000.jpg ...    (v3; png in v2) not read here
    <YCB>/<objName>/textured_simple.obj    or <YCB>/models/<objName>/textured_simple.obj

Per-frame keys read (facts from shreyashampali/ho3d: vis_HO3D.py, utils/vis_utils.py, README):
- handPose (48,) MANO full pose, axis-angle: 3 global + 15x3 finger joints, flat_hand_mean=True;
  handTrans (3,), handBeta (10,): MANO_RIGHT parameters (the hand is always the right one);
- handJoints3D (21, 3) in MANO's joint order (wrist; index, middle, little, ring, thumb joints 1-3;
  then the tips of thumb, index, middle, ring, little). The evaluation split holds only the root,
  (3,), so its frames carry no hand keypoints;
- objRot (3,) or (3, 1) axis-angle and objTrans (3,): x_gl = R(objRot) x_obj + objTrans; objRot is
  None on frames without annotation; objName (str), the YCB model name; camMat (3, 3) intrinsics;
- all positions in metres in an OpenGL-style camera frame (x right, y up, the scene on -z); hold
  uses OpenCV (y down, z forward), so every point and pose is flipped by diag(1, -1, -1).

Frames without an annotation become NaN and `valid[t] = False`. Hand vertices need the user's MANO
model (`mano_dir`); without it only keypoints are available, which is enough for MPJPE but not for
the hand surface metrics (CD_hand, v2v, contact/penetration of the ground truth).
"""
from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Bool, Float

from hold.data.groundtruth import HandObjectTrajectory, HandTrajectory, ObjectTrajectory
from hold.geometry.rotations import axis_angle_to_matrix
from hold.hands.mano import KEYPOINT_SOURCES

META_DIR = "meta"
YCB_MESH = "textured_simple.obj"
# For each of hold's 21 keypoints (hold.hands.base.KEYPOINT_NAMES), its index in handJoints3D. That array
# is MANO's 16 joints followed by the fingertip vertices in thumb..little order: exactly the
# cat(joints, tips) that hold's MANO backend indexes, so the map is the same.
HO3D_TO_COMMON: tuple[int, ...] = KEYPOINT_SOURCES
CV_FROM_GL: Float[np.ndarray, "3 3"] = np.diag([1.0, -1.0, -1.0])
"""OpenGL-style camera frame (y up, looking along -z) -> OpenCV camera frame (y down, z forward)."""
FIX_HO3D = ("pass the folder of ONE HO3D sequence (e.g. HO3D_v3/train/ABF10, the one holding meta/), "
            "as downloaded")


@dataclass
class HO3DSequence:
    """One HO3D sequence as hold's ground truth, plus what the layout cannot hold."""

    trajectory: HandObjectTrajectory
    """Right hand and object, OpenCV camera frame, metres; NaN on frames without annotation; the hand's
    vertices are (T, 0, 3) when no MANO model was given."""
    valid: Bool[np.ndarray, "T"]
    """Frames with a full annotation (21 hand joints and the object pose)."""
    frame_ids: list[str]
    """Frame names (meta/<id>.pkl), in order."""
    object_name: str | None
    """YCB model name (objName), None when no frame names one."""
    K: Float[np.ndarray, "3 3"] | None
    """Intrinsics in hold's pixel convention (pixel centres at +0.5: camMat's principal point + 0.5)."""
    mano_dir: Path | None = None
    """Where the MANO model came from, None when vertices were not computed."""


def object_pose_cv(obj_rot: np.ndarray, obj_trans: np.ndarray) -> Float[np.ndarray, "4 4"]:
    """T_cam_from_obj in hold's OpenCV camera frame from HO3D's objRot/objTrans (OpenGL frame)."""
    rot = torch.as_tensor(np.asarray(obj_rot, dtype=np.float64).reshape(3))
    T = np.eye(4)
    T[:3, :3] = CV_FROM_GL @ axis_angle_to_matrix(rot).numpy()
    T[:3, 3] = CV_FROM_GL @ np.asarray(obj_trans, dtype=np.float64).reshape(3)
    return T


def joints_to_common(joints_gl: Float[np.ndarray, "*B 21 3"]) -> Float[np.ndarray, "*B 21 3"]:
    """HO3D handJoints3D (MANO order, OpenGL frame) -> hold's 21 keypoints (common order, OpenCV frame)."""
    j = np.asarray(joints_gl, dtype=np.float64)
    return j[..., list(HO3D_TO_COMMON), :] @ CV_FROM_GL.T


def read_meta(path: Path) -> dict:
    """One meta pickle (python-2 pickles need latin-1 for their numpy arrays)."""
    try:
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
    except Exception as e:  # pickle raises many types on a bad file
        raise ValueError(f"{path}: cannot be read as an HO3D meta pickle ({type(e).__name__}: {e}). "
                         f"Fix: {FIX_HO3D}.") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: holds a {type(data).__name__}, expected a dict of annotations. Fix: {FIX_HO3D}.")
    return data


def _vec(meta: dict, key: str, n: int, path: Path) -> np.ndarray | None:
    """meta[key] as a flat (n,) float array; None when absent or None (frame not annotated)."""
    value = meta.get(key)
    if value is None:
        return None
    a = np.asarray(value, dtype=np.float64).reshape(-1)
    if a.size != n:
        raise ValueError(f"{path}: field '{key}' has {a.size} values; expected {n}. Fix: {FIX_HO3D}.")
    return a


def find_ycb_mesh(ycb_dir: Path | str, object_name: str) -> Path:
    """`<ycb>/<name>/textured_simple.obj` or `<ycb>/models/<name>/textured_simple.obj`."""
    ycb_dir = Path(ycb_dir)
    candidates = [ycb_dir / object_name / YCB_MESH, ycb_dir / "models" / object_name / YCB_MESH]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"--ycb-models {ycb_dir}: no mesh for object '{object_name}' (looked for "
                            f"{candidates[0]} and {candidates[1]}). Fix: point --ycb-models at the unpacked "
                            f"'YCB-Video 3D Models' folder (the one holding models/ or the object folders).")


def load_ycb_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V,3) metres, faces (F,3)) of a YCB model, geometry only (texture seams merged)."""
    import trimesh  # heavy import, only when a mesh is read

    mesh = trimesh.load(path, force="mesh", process=False)
    mesh = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), process=True)
    if len(mesh.faces) == 0:
        raise ValueError(f"{path}: has no triangles. Fix: re-download the YCB model.")
    return np.asarray(mesh.vertices, dtype=np.float32), np.asarray(mesh.faces, dtype=np.int64)


def is_ho3d_sequence(path: Path | str) -> bool:
    """True for a folder with meta/*.pkl (one HO3D sequence)."""
    meta = Path(path) / META_DIR
    return meta.is_dir() and any(meta.glob("*.pkl"))


def _mano_posed(mano_dir: Path, pose: np.ndarray, trans: np.ndarray, beta: np.ndarray, ok: np.ndarray):
    """Posed MANO vertices (T,778,3) and keypoints (T,21,3), OpenGL frame, NaN where not ok."""
    import torch

    from hold.hands.mano import load_mano

    hand = load_mano(mano_dir, "right", flat_hand_mean=True)  # HO3D's load_model(..., flat_hand_mean=True)
    T = len(pose)
    V = int(hand.v_template.shape[0])
    verts, kp = np.full((T, V, 3), np.nan), np.full((T, 21, 3), np.nan)
    idx = np.flatnonzero(ok)
    if len(idx):
        f64 = lambda a: torch.as_tensor(a[idx], dtype=torch.float64)  # noqa: E731
        with torch.no_grad():
            out = hand.double()(f64(pose[:, :3]), f64(pose[:, 3:]), f64(beta), f64(trans))
        verts[idx], kp[idx] = out.vertices.numpy(), out.keypoints.numpy()
    return verts, kp, hand.faces_buf.numpy().astype(np.int64)


def load_ho3d_sequence(
    seq_dir: Path | str,
    ycb_dir: Path | str | None = None,
    mano_dir: Path | str | None = None,
) -> HO3DSequence:
    """Read one HO3D sequence folder (the one holding meta/) as hold ground truth.

    ycb_dir: the YCB models folder; without it the trajectory has no object (hands only).
    mano_dir: folder with MANO_RIGHT.pkl; without it the hand has keypoints only (MPJPE).
    """
    seq_dir = Path(seq_dir)
    meta_dir = seq_dir / META_DIR
    paths = sorted(meta_dir.glob("*.pkl")) if meta_dir.is_dir() else []
    if not paths:
        raise FileNotFoundError(f"{meta_dir}: no HO3D annotations (meta/*.pkl) found. Fix: {FIX_HO3D}.")
    T = len(paths)
    joints = np.full((T, 21, 3), np.nan)
    pose, trans, beta = np.full((T, 48), np.nan), np.full((T, 3), np.nan), np.zeros((T, 10))
    T_obj = np.full((T, 4, 4), np.nan)
    names: set[str] = set()
    K = None
    for t, path in enumerate(paths):
        meta = read_meta(path)
        j = meta.get("handJoints3D")
        if j is not None and np.size(j) == 63:  # the evaluation split keeps only the root joint (3,)
            joints[t] = np.asarray(j, dtype=np.float64).reshape(21, 3)
        hp, ht, hb = (_vec(meta, "handPose", 48, path), _vec(meta, "handTrans", 3, path),
                      _vec(meta, "handBeta", 10, path))
        if hp is not None and ht is not None:
            pose[t], trans[t] = hp, ht
            beta[t] = hb if hb is not None else 0.0
        rot, tr = _vec(meta, "objRot", 3, path), _vec(meta, "objTrans", 3, path)
        if rot is not None and tr is not None:
            T_obj[t] = object_pose_cv(rot, tr)
        if meta.get("objName") is not None:
            names.add(str(meta["objName"]))
        if K is None and meta.get("camMat") is not None:
            K = np.asarray(meta["camMat"], dtype=np.float64).reshape(3, 3).copy()
            K[:2, 2] += 0.5  # OpenCV puts pixel centres at integers; hold at +0.5
    if len(names) > 1:
        raise ValueError(f"{meta_dir}: frames name several objects {sorted(names)}; expected one per sequence. "
                         f"Fix: {FIX_HO3D}.")
    object_name = names.pop() if names else None

    has_params = np.all(np.isfinite(pose), axis=1) & np.all(np.isfinite(trans), axis=1)
    kp_cv = joints_to_common(joints)
    verts_cv = np.zeros((T, 0, 3))
    faces = np.zeros((0, 3), dtype=np.int64)
    if mano_dir is not None:
        verts_gl, kp_mano_gl, faces = _mano_posed(Path(mano_dir), pose, trans, beta, has_params)
        verts_cv = verts_gl @ CV_FROM_GL.T
        kp_mano = kp_mano_gl @ CV_FROM_GL.T
        both = np.all(np.isfinite(kp_cv), axis=(1, 2)) & has_params
        if both.any():  # the annotation's joints and MANO's must agree, else the MANO setup is off
            gap = np.linalg.norm(kp_mano[both] - kp_cv[both], axis=-1).mean() * 1000.0
            if gap > 5.0:
                warnings.warn(f"{seq_dir}: MANO joints from handPose/handTrans differ from handJoints3D by "
                              f"{gap:.1f} mm on average; is {mano_dir} the right MANO_RIGHT.pkl (v1.2)?",
                              stacklevel=2)
        missing = ~np.all(np.isfinite(kp_cv), axis=(1, 2)) & has_params
        kp_cv[missing] = kp_mano[missing]  # joints computable from the MANO parameters

    hand_ok = np.all(np.isfinite(kp_cv), axis=(1, 2))
    obj = None
    if ycb_dir is not None:
        if object_name is None:
            raise ValueError(f"{meta_dir}: no frame names its object (objName). Fix: {FIX_HO3D}.")
        v, f = load_ycb_mesh(find_ycb_mesh(ycb_dir, object_name))
        obj = ObjectTrajectory(vertices=v, faces=f, T_cam_from_obj=T_obj.astype(np.float32), K=K)
    obj_ok = np.all(np.isfinite(T_obj.reshape(T, -1)), axis=1)
    hand = HandTrajectory(side="right", keypoints=kp_cv.astype(np.float32), vertices=verts_cv.astype(np.float32),
                          faces=faces)  # MANO params stay out: they live in the OpenGL frame
    traj = HandObjectTrajectory(hands={"right": hand}, object=obj, num_frames=T, hand_model="mano")
    return HO3DSequence(trajectory=traj, valid=hand_ok & obj_ok, frame_ids=[p.stem for p in paths],
                        object_name=object_name, K=K, mano_dir=Path(mano_dir) if mano_dir is not None else None)
