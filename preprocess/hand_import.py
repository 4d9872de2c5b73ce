"""Readers of hand estimates made elsewhere -> `HandEstimates` (per-frame keypoints, optional MANO parameters).

Formats (T = frames of the sequence, one entry per frame, in frame order; keypoints in the common
21-point order of hold.hands: wrist, then thumb, index, middle, ring, little, each base -> tip):

- Generic keypoints, JSON: a list of T frames, each `null` (no hand) or
  `{"keypoints_2d": [[u, v, c], ...] | [[u, v], ...] | null, "keypoints_3d": [[x, y, z], ...] | null}`;
  or an object `{"frames": [...], "keypoints_3d_metric": true}`. A single coordinate may be null.
- Generic keypoints, NPZ: `keypoints_2d` (T,21,2|3), optional `keypoints_3d` (T,21,3), optional
  `valid` (T,) bool, optional `keypoints_3d_metric` (bool); NaN = missing. The same keys prefixed
  with `<side>/` (hold's hands.npz layout, e.g. the emulated detections of `hold synth`) work too.
- HaMeR-style MANO parameters, NPZ: `global_orient` (T,3) axis-angle or (T,[1,]3,3) rotation
  matrices, `hand_pose` (T,45) / (T,15,3) axis-angle or (T,15,3,3) rotation matrices, `betas`
  (T,10) or (10,), `cam_t` | `pred_cam_t_full` | `transl` (T,3) metres, optional `valid` (T,),
  optional `focal_length` (scalar, (T,) or (T,2): the estimator's camera, principal point at the
  image centre, as HaMeR's full-image camera), optional `is_right` (scalar or (T,): HaMeR runs the
  right-hand model on the mirrored image for left hands; those parameters are mirrored here).

Pixel convention: hold puts pixel centres at integer + 0.5; many detectors put them at integers
(pass `pixel_offset=0.5`). 2D keypoints normalized to [0, 1] need `normalized=True`.
3D keypoints are read in camera-aligned axes (x right, y down, z forward); only their offsets from
the wrist are used, as metres when the file says `keypoints_3d_metric`, else up to scale.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float

from hold.data.errors import SequenceError
from hold.geometry.camera import project
from hold.geometry.rotations import matrix_to_axis_angle
from hold.hands.base import HandModel

NUM_KP = 21
KEYPOINT_ORDER = "21 keypoints in hold's order (wrist; thumb, index, middle, ring, little, each base -> tip)"
FIX_KEYPOINTS = "export one entry per frame of the sequence with 21 keypoints each (null / NaN where missing)"
FIX_MANO = "export HaMeR-style per-frame MANO parameters (see preprocess/hand_import.py for the keys)"
TRANSL_KEYS = ("cam_t", "pred_cam_t_full", "transl")


class HandInputError(SequenceError):
    """An estimate file is unusable; the message names the file, the field and the fix."""


@dataclass
class HandEstimates:
    """Per-frame hand observations for the fit (numpy)."""

    keypoints_2d: Float[np.ndarray, "T 21 3"]
    """(u, v) pixels in hold's convention and a confidence in [0, 1]; all 0 where missing."""
    detected: Bool[np.ndarray, " T"]
    """Frames where the estimator reported a hand."""
    keypoints_3d: Float[np.ndarray, "T 21 3"] | None = None
    """Camera-axis-aligned 3D keypoints (NaN where missing), or None."""
    keypoints_3d_metric: bool = False
    """Whether keypoints_3d are in metres (else only their shape is used)."""
    params: dict[str, np.ndarray] | None = None
    """MANO parameters in hold's `mano` convention (flat hand mean, this side's model):
    global_orient (T,3), hand_pose (T,45), betas (10,), transl (T,3); None for keypoint files."""
    source: str = ""
    """What was read, for provenance."""
    notes: list[str] = field(default_factory=list)
    """Things a person should know (frames dropped, conversions applied)."""


def _err(path: Path, fld: str | None, fix: str, message: str | None = None, **kw) -> HandInputError:
    return HandInputError(path, fld, fix=fix, message=message, **kw)


# ----------------------------------------------------------------------------------------------
# Generic keypoints


def _as_points(value: Any, dims: tuple[int, ...], path: Path, fld: str) -> np.ndarray | None:
    """A (21, d) float array (None entries -> NaN) with d in dims, or None for a null value."""
    if value is None:
        return None
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _err(path, fld, FIX_KEYPOINTS, f"is not a list of numbers (found {str(value)[:60]!r})") from None
    if arr.ndim != 2 or arr.shape[0] != NUM_KP or arr.shape[1] not in dims:
        want = " or ".join(f"({NUM_KP}, {d})" for d in dims)
        raise _err(path, fld, FIX_KEYPOINTS, found=f"shape {arr.shape}", expected=f"{want}: {KEYPOINT_ORDER}")
    return arr


def _read_json(path: Path, num_frames: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, bool | None]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise _err(path, None, FIX_KEYPOINTS, f"is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from e
    metric = None
    if isinstance(raw, dict):
        if "frames" not in raw:
            raise _err(path, "frames", FIX_KEYPOINTS,
                       "is missing (an object must hold the list of frames under 'frames')")
        metric = raw.get("keypoints_3d_metric")
        if metric is not None and not isinstance(metric, bool):
            raise _err(path, "keypoints_3d_metric", FIX_KEYPOINTS, f"is {metric!r}, expected true or false")
        frames, where = raw["frames"], "frames"
    else:
        frames, where = raw, "(top level)"
    if not isinstance(frames, list):
        raise _err(path, where if where != "(top level)" else None, FIX_KEYPOINTS,
                   f"is a JSON {type(frames).__name__}, expected a list with one entry per frame")
    if len(frames) != num_frames:
        raise _err(path, where if where != "(top level)" else None, FIX_KEYPOINTS,
                   found=f"{len(frames)} frames", expected=f"{num_frames} (the frames of the sequence)")
    kp2 = np.full((num_frames, NUM_KP, 3), np.nan)
    kp3 = np.full((num_frames, NUM_KP, 3), np.nan)
    present = np.zeros(num_frames, bool)
    any3 = False
    for i, fr in enumerate(frames):
        if fr is None:
            continue
        if not isinstance(fr, dict):
            raise _err(path, f"frames[{i}]", FIX_KEYPOINTS,
                       f"is a JSON {type(fr).__name__}, expected an object or null")
        p2 = _as_points(fr.get("keypoints_2d"), (2, 3), path, f"frames[{i}].keypoints_2d")
        p3 = _as_points(fr.get("keypoints_3d"), (3,), path, f"frames[{i}].keypoints_3d")
        if p2 is None and p3 is not None:
            raise _err(path, f"frames[{i}].keypoints_2d", "add the detector's 2D keypoints (hold needs them to "
                       "place the hand in the camera; 3D keypoints only add its shape)",
                       "is missing while keypoints_3d is given")
        if p2 is not None:
            kp2[i, :, :2] = p2[:, :2]
            kp2[i, :, 2] = p2[:, 2] if p2.shape[1] == 3 else 1.0
            present[i] = True
        if p3 is not None:
            kp3[i] = p3
            any3 = True
    return kp2, (kp3 if any3 else None), present, metric


def _read_npz(path: Path, num_frames: int, side: str
              ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, bool | None]:
    z = _load_npz(path, FIX_KEYPOINTS)
    prefixed = {k[len(side) + 1:]: v for k, v in z.items() if k.startswith(f"{side}/")}
    if "keypoints_2d" not in z and "keypoints_2d" in prefixed:  # a hold hands.npz (e.g. from `hold synth`)
        z = prefixed
    if "keypoints_2d" not in z:
        raise _err(path, "keypoints_2d", FIX_KEYPOINTS,
                   f"is missing (keys: {sorted(z) or 'none'}); hold needs 2D keypoints to place the hand in the camera")
    a = np.asarray(z["keypoints_2d"], dtype=np.float64)
    if a.ndim != 3 or a.shape[0] != num_frames or a.shape[1] != NUM_KP or a.shape[2] not in (2, 3):
        raise _err(path, "keypoints_2d", FIX_KEYPOINTS, found=f"shape {a.shape}",
                   expected=f"({num_frames}, 21, 2) or ({num_frames}, 21, 3): T frames x {KEYPOINT_ORDER}")
    kp2 = np.concatenate([a[..., :2], a[..., 2:3] if a.shape[2] == 3 else np.ones(a.shape[:2] + (1,))], -1)
    present = np.isfinite(a[..., :2]).all(-1).any(-1)
    if "valid" in z:
        present &= _bool_vector(z["valid"], num_frames, path, "valid")
    kp3 = None
    if "keypoints_3d" in z:
        kp3 = np.asarray(z["keypoints_3d"], dtype=np.float64)
        if kp3.shape != (num_frames, NUM_KP, 3):
            raise _err(path, "keypoints_3d", FIX_KEYPOINTS, found=f"shape {kp3.shape}",
                       expected=f"({num_frames}, 21, 3): T frames x {KEYPOINT_ORDER}")
    metric = None
    if "keypoints_3d_metric" in z:
        m = np.asarray(z["keypoints_3d_metric"])
        if m.shape != () or m.dtype != np.bool_:
            raise _err(path, "keypoints_3d_metric", FIX_KEYPOINTS, found=f"{m.dtype} shape {m.shape}",
                       expected="a boolean scalar")
        metric = bool(m)
    return kp2, kp3, present, metric


def _load_npz(path: Path, fix: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # BadZipFile, pickled arrays, truncated members
        raise _err(path, None, fix, f"cannot be read as .npz ({type(e).__name__}: {e})") from e


def _bool_vector(v: np.ndarray, T: int, path: Path, fld: str) -> np.ndarray:
    v = np.asarray(v)
    if v.shape != (T,) or not (v.dtype == np.bool_ or np.issubdtype(v.dtype, np.integer)):
        raise _err(path, fld, "give one true/false per frame", found=f"{v.dtype} shape {v.shape}",
                   expected=f"({T},) bool")
    return v.astype(bool)


def read_keypoints(
    path: str | Path,
    num_frames: int,
    image_size: tuple[int, int],
    pixel_offset: float = 0.0,
    normalized: bool = False,
    metric_3d: bool | None = None,
    side: str = "right",
) -> HandEstimates:
    """Read generic per-frame keypoints (JSON or NPZ, see the module docstring).

    An NPZ in hold's hands.npz layout (`<side>/keypoints_2d`, `<side>/valid`) works too: its
    keypoints are the detections (its parameters are not used).

    `pixel_offset` is added to u and v (0.5 for detectors with pixel centres at integers);
    `normalized` scales u by W and v by H first; `metric_3d` overrides the file's
    keypoints_3d_metric (default: the file's flag, else scale-free).
    """
    path = Path(path)
    if not path.is_file():
        raise _err(path, None, "pass the keypoints file written by your detector (--keypoints FILE)",
                   "file not found")
    suffix = path.suffix.lower()
    if suffix == ".json":
        kp2, kp3, present, metric = _read_json(path, num_frames)
    elif suffix == ".npz":
        kp2, kp3, present, metric = _read_npz(path, num_frames, side)
    else:
        raise _err(path, None, "convert it to .json or .npz (see preprocess/hand_import.py)",
                   f"has the extension {suffix!r}, expected .json or .npz")
    W, H = image_size
    xy_ok = np.isfinite(kp2[..., :2]).all(-1)
    conf = np.where(xy_ok & present[:, None], np.nan_to_num(kp2[..., 2], nan=0.0), 0.0)
    if (conf < 0).any() or (conf > 1).any():
        bad = np.flatnonzero(((conf < 0) | (conf > 1)).any(1))
        raise _err(path, "keypoints_2d", "rescale the detector's scores to [0, 1]",
                   f"has confidences outside [0, 1] (range {conf.min():.3g} .. {conf.max():.3g}) in frames "
                   f"{bad[:8].tolist()}")
    uv = np.nan_to_num(kp2[..., :2], nan=0.0)
    seen = conf > 0
    if normalized:
        uv = uv * np.array([W, H], dtype=np.float64)
    elif seen.any() and max(W, H) > 16 and np.abs(uv[seen]).max() <= 1.5:
        raise _err(path, "keypoints_2d", "pass --keypoints-normalized to scale them by the image size",
                   f"looks normalized to [0, 1] (all coordinates <= 1.5), expected pixels of the {W}x{H} frames")
    uv = uv + pixel_offset
    if seen.any():
        u, v = uv[seen][:, 0], uv[seen][:, 1]
        far = (u < -0.5 * W) | (u > 1.5 * W) | (v < -0.5 * H) | (v > 1.5 * H)
        if far.mean() > 0.5:
            raise _err(path, "keypoints_2d", "detect on the frames of this sequence (same resolution) or rescale the "
                       "keypoints", f"lies mostly outside the {W}x{H} frames ({100 * far.mean():.0f} % of the "
                       f"keypoints more than half an image away): were they detected at another resolution?")
    kp2d = np.concatenate([uv, conf[..., None]], -1) * (conf[..., None] > 0)
    detected = seen.any(1)
    kp3d = None
    if kp3 is not None:
        kp3d = np.where(detected[:, None, None], kp3, np.nan)
    metric = bool(metric_3d if metric_3d is not None else (metric or False))
    notes = []
    if kp3d is not None:
        notes.append(f"3D keypoints used {'as metres' if metric else 'up to scale'} (root-relative)")
    return HandEstimates(keypoints_2d=kp2d.astype(np.float32), detected=detected, keypoints_3d=kp3d,
                         keypoints_3d_metric=metric, source=f"keypoints {path.name}", notes=notes)


# ----------------------------------------------------------------------------------------------
# HaMeR-style MANO parameters


def _rotations(arr: np.ndarray, T: int, joints: int, path: Path, fld: str, ok: np.ndarray) -> np.ndarray:
    """(T, joints, 3) axis-angle from axis-angle or rotation-matrix layouts."""
    a = np.asarray(arr, dtype=np.float64)
    if a.shape[0] != T:
        raise _err(path, fld, FIX_MANO, found=f"shape {a.shape}", expected=f"{T} frames first")
    n = int(np.prod(a.shape[1:])) if a.ndim > 1 else 0
    if a.ndim >= 3 and a.shape[-2:] == (3, 3) and n == joints * 9:
        R = a.reshape(T, joints, 3, 3)
        good = ok & np.isfinite(R).all((1, 2, 3))
        Rg = R[good]
        if Rg.size:
            ortho = np.abs(np.einsum("njab,njac->njbc", Rg, Rg) - np.eye(3)).max()
            det = np.linalg.det(Rg).min()
            if ortho > 1e-3 or det <= 0:
                raise _err(path, fld, FIX_MANO, f"holds matrices that are not rotations "
                           f"(max |R^T R - I| = {ortho:.3g}, min det = {det:.3g})")
        out = np.zeros((T, joints, 3))
        if good.any():
            out[good] = matrix_to_axis_angle(torch.as_tensor(Rg)).numpy()
        return np.where(good[:, None, None], out, np.nan)
    if n == joints * 3:
        return a.reshape(T, joints, 3)
    want = f"({T}, {joints * 3}) axis-angle or ({T}, {joints}, 3, 3) rotation matrices"
    raise _err(path, fld, FIX_MANO, found=f"shape {a.shape}", expected=want)


def read_mano_params(
    path: str | Path,
    num_frames: int,
    image_size: tuple[int, int],
    K: Float[np.ndarray, "3 3"],
    model: HandModel,
    side: str,
    pose_mean: dict[str, np.ndarray] | None = None,
) -> HandEstimates:
    """Read HaMeR-style per-frame MANO parameters and turn them into observations + an initial guess.

    `model`: the `mano` HandModel of `side` (flat hand mean) evaluating the parameters.
    `pose_mean`: per side ('right'/'left') MANO mean pose (45,), when the file's hand_pose is
    relative to MANO's mean pose (smplx flat_hand_mean=False); None when it is relative to the
    flat hand. The keypoints of the estimate become metric 3D observations; projected through
    the estimator's camera (`focal_length`, principal point at the image centre) or else K,
    they become the 2D observations (confidence 1).
    """
    path = Path(path)
    if not path.is_file():
        raise _err(path, None, "pass the file with the per-frame MANO parameters (--mano-params FILE)",
                   "file not found")
    if path.suffix.lower() != ".npz":
        raise _err(path, None, "save the parameters as .npz (numpy.savez)", f"has the extension {path.suffix!r}, "
                   "expected .npz")
    z = _load_npz(path, FIX_MANO)
    T = num_frames
    for key in ("global_orient", "hand_pose", "betas"):
        if key not in z:
            raise _err(path, key, FIX_MANO, f"is missing (keys: {sorted(z) or 'none'})")
    tkey = next((k for k in TRANSL_KEYS if k in z), None)
    if tkey is None:
        raise _err(path, "cam_t", FIX_MANO, f"is missing: expected one of {list(TRANSL_KEYS)} (T,3) in metres "
                   f"(keys: {sorted(z)})")
    transl = np.asarray(z[tkey], dtype=np.float64)
    if transl.shape != (T, 3):
        raise _err(path, tkey, FIX_MANO, found=f"shape {transl.shape}", expected=f"({T}, 3) metres")
    ok = np.ones(T, bool) if "valid" not in z else _bool_vector(z["valid"], T, path, "valid")
    notes = []
    if "is_right" in z:
        ir = np.asarray(z["is_right"]).astype(np.float64)
        ir = np.broadcast_to(ir, (T,)) if ir.shape in ((), (1,)) else ir
        if ir.shape != (T,):
            raise _err(path, "is_right", FIX_MANO, found=f"shape {ir.shape}", expected=f"a scalar or ({T},)")
        is_right = ir > 0.5
        other = ok & (is_right != (side == "right"))
        if other.any():
            notes.append(f"{int(other.sum())} frames hold the other hand (is_right) and count as not detected")
        ok &= is_right == (side == "right")
        mirrored = side == "left"  # HaMeR: a left hand is the right-hand model on the mirrored image
    else:
        mirrored = False
    go = _rotations(z["global_orient"], T, 1, path, "global_orient", ok)[:, 0]
    hp = _rotations(z["hand_pose"], T, 15, path, "hand_pose", ok)
    betas = np.asarray(z["betas"], dtype=np.float64)
    if betas.shape == (T, model.num_betas):
        pass
    elif betas.shape in ((model.num_betas,), (1, model.num_betas)):
        betas = np.broadcast_to(betas.reshape(1, -1), (T, model.num_betas))
    else:
        raise _err(path, "betas", FIX_MANO, found=f"shape {betas.shape}",
                   expected=f"({T}, {model.num_betas}) or ({model.num_betas},)")
    ok &= np.isfinite(go).all(-1) & np.isfinite(hp).all((-1, -2))
    ok &= np.isfinite(betas).all(-1) & np.isfinite(transl).all(-1)
    if pose_mean is not None:  # relative to MANO's mean pose -> relative to the flat hand
        hp = hp + pose_mean["right" if mirrored else side].reshape(15, 3)
        notes.append("hand_pose converted from MANO's mean-pose convention to the flat-hand one")
    if mirrored:  # mirror x: the same rotation seen in the mirror is (w_x, -w_y, -w_z)
        sign = np.array([1.0, -1.0, -1.0])
        go, hp = go * sign, hp * sign
        notes.append("left-hand parameters mirrored from the right-hand model (is_right = 0)")
    f32 = lambda x: torch.as_tensor(np.nan_to_num(x), dtype=torch.float32)  # noqa: E731
    shape = np.median(betas[ok], 0) if ok.any() else np.zeros(model.num_betas)
    with torch.no_grad():
        out = model(f32(go), f32(hp.reshape(T, 45)), f32(shape)[None].expand(T, -1), f32(transl))
    kp3 = out.keypoints.double().numpy()
    W, H = image_size
    if "focal_length" in z:
        f = np.asarray(z["focal_length"], dtype=np.float64)
        if f.shape in ((), (1,), (T,)):
            f = np.broadcast_to(f.reshape(-1, 1) if f.shape == (T,) else f.reshape(1, 1), (T, 2)).copy()
        elif f.shape != (T, 2):
            raise _err(path, "focal_length", FIX_MANO, found=f"shape {f.shape}",
                       expected=f"a scalar, ({T},) or ({T}, 2)")
        Ks = np.zeros((T, 3, 3))
        Ks[:, 0, 0], Ks[:, 1, 1], Ks[:, 0, 2], Ks[:, 1, 2], Ks[:, 2, 2] = f[:, 0], f[:, 1], W / 2.0, H / 2.0, 1.0
        notes.append(f"2D keypoints projected with the estimator's camera (focal {float(np.median(f)):.1f} px)")
    else:
        Ks = np.repeat(np.asarray(K, dtype=np.float64)[None], T, 0)
    uv = project(torch.as_tensor(Ks), torch.as_tensor(kp3)).numpy()
    in_front = (kp3[..., 2] > 0).all(-1)
    if (ok & ~in_front).any():
        notes.append(f"{int((ok & ~in_front).sum())} frames put the hand behind the camera and count as not detected")
    ok &= in_front
    kp2d = np.zeros((T, NUM_KP, 3))
    kp2d[ok] = np.concatenate([uv[ok], np.ones((int(ok.sum()), NUM_KP, 1))], -1)
    kp3d = np.where(ok[:, None, None], kp3, np.nan)
    params = {"global_orient": np.nan_to_num(go).astype(np.float32),
              "hand_pose": np.nan_to_num(hp.reshape(T, 45)).astype(np.float32),
              "betas": shape.astype(np.float32), "transl": np.nan_to_num(transl).astype(np.float32)}
    return HandEstimates(keypoints_2d=kp2d.astype(np.float32), detected=ok, keypoints_3d=kp3d, keypoints_3d_metric=True,
                         params=params, source=f"MANO parameters {path.name} ({tkey})", notes=notes)
