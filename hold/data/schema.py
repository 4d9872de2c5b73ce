"""The sequence contract: constants, the in-memory dataclasses, and the checks of raw records.

A build is one folder (DESIGN.md "The sequence build"):

    sequence.json   schema_version, num_frames T, image_size [W, H], K, hands, hand_model, has_object,
                    fps, frame_names (optional), sources (provenance), extra (free dict)
    images/000000.png ...  T RGB uint8 frames, W x H
    masks/000000.png ...   optional uint8 label masks (LABELS)
    hands.npz       "<side>/global_orient" (T,3), "<side>/hand_pose" (T,P), "<side>/betas" (B,),
                    "<side>/transl" (T,3), "<side>/valid" (T,) bool, optional "<side>/keypoints_2d" (T,21,3)
    object.npz      "T_cam_from_obj" (T,4,4) rigid, "scale" () > 0, "points" (N,3) in the unit sphere,
                    "valid" (T,) bool;  x_cam = T_cam_from_obj @ [scale * x_obj, 1]
    gt/             optional ground truth (hold.data.groundtruth)

The `check_*` functions look at raw records (the parsed json dict, the dict of npz arrays) and
report to a `ProblemLog`; `load_sequence`, `save_sequence` and `validate` all go through them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from jaxtyping import Bool, Float
from PIL import Image

from hold.data.errors import ProblemLog, SequenceError

SCHEMA_VERSION = 1
LABELS: dict[str, int] = {"background": 0, "object": 1, "right": 2, "left": 3, "ignore": 255}
MASK_VALUES: frozenset[int] = frozenset(LABELS.values())
HAND_SIDES: tuple[str, ...] = ("right", "left")
HAND_MODELS: tuple[str, ...] = ("anny", "mano")
NUM_KEYPOINTS = 21

SEQUENCE_JSON = "sequence.json"
HANDS_NPZ = "hands.npz"
OBJECT_NPZ = "object.npz"
IMAGES_DIR = "images"
MASKS_DIR = "masks"
GT_DIR = "gt"
FRAME_DIGITS = 6

REQUIRED_KEYS: tuple[str, ...] = (
    "schema_version", "num_frames", "image_size", "K", "hands", "hand_model", "has_object",
)
OPTIONAL_KEYS: tuple[str, ...] = ("fps", "frame_names", "sources", "extra")
HAND_KEYS: tuple[str, ...] = ("global_orient", "hand_pose", "betas", "transl", "valid")
HAND_OPTIONAL_KEYS: tuple[str, ...] = ("keypoints_2d",)
OBJECT_KEYS: tuple[str, ...] = ("T_cam_from_obj", "scale", "points", "valid")

RIGID_TOL = 1e-4
"""Max |R^T R - I| and |last row - [0,0,0,1]| accepted as rigid (float32 compositions drift ~1e-6)."""
UNIT_SPHERE_TOL = 1e-3
"""Canonical object points may have norm up to 1 + this."""

# One fix per artefact: the preprocess step that writes it.
FIX_JSON = "re-run `hold preprocess build` (or correct sequence.json by hand)"
FIX_HANDS = "re-run `hold preprocess hands`, then `hold preprocess build`"
FIX_OBJECT = "re-run `hold preprocess sfm` and `hold preprocess align`, then `hold preprocess build`"
FIX_IMAGES = "re-run `hold preprocess frames` (then `hold preprocess build`)"
FIX_MASKS = "re-run `hold preprocess masks`"
FIX_REBUILD = "rebuild the sequence with this hold: `hold preprocess build`"


def frame_name(i: int) -> str:
    """File stem of frame i: zero-padded 6-digit index ('000042')."""
    return f"{i:0{FRAME_DIGITS}d}"


# ----------------------------------------------------------------------------------------------
# Dataclasses


@dataclass
class Intrinsics:
    """Pinhole camera of the (static) video camera, OpenCV convention, pixel centres at +0.5."""

    K: Float[np.ndarray, "3 3"]
    """[[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels (float64)."""
    width: int
    """Image width W in pixels."""
    height: int
    """Image height H in pixels."""

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def image_size(self) -> tuple[int, int]:
        """(W, H), as in sequence.json."""
        return (self.width, self.height)


@dataclass
class HandTrack:
    """Per-frame hand-model parameters of one hand in the camera frame (hands.npz, one side)."""

    side: str
    """'right' or 'left'."""
    global_orient: Float[np.ndarray, "T 3"]
    """Axis-angle wrist rotation per frame (radians, camera frame)."""
    hand_pose: Float[np.ndarray, "T P"]
    """Finger articulation per frame (axis-angle, P = 3 x joints of the hand model)."""
    betas: Float[np.ndarray, " B"]
    """Shape coefficients, shared by all frames (standard-normal prior)."""
    transl: Float[np.ndarray, "T 3"]
    """Translation per frame (metres, camera frame)."""
    valid: Bool[np.ndarray, " T"]
    """False where the estimate was interpolated (or missing) rather than observed."""
    keypoints_2d: Float[np.ndarray, "T 21 3"] | None = None
    """Optional detected 2D keypoints: (u, v) in pixels, confidence in [0, 1]."""

    @property
    def num_frames(self) -> int:
        return int(self.global_orient.shape[0])


@dataclass
class ObjectTrack:
    """Rigid object trajectory and its canonical SfM cloud (object.npz)."""

    T_cam_from_obj: Float[np.ndarray, "T 4 4"]
    """Rigid camera-from-object transform per frame (rotation + translation in metres)."""
    scale: float
    """Metres per canonical unit: x_cam = T_cam_from_obj @ [scale * x_obj, 1]."""
    points: Float[np.ndarray, "N 3"]
    """Canonical SfM points, inside the unit sphere."""
    valid: Bool[np.ndarray, " T"]
    """False where the pose was interpolated rather than registered."""

    @property
    def num_frames(self) -> int:
        return int(self.T_cam_from_obj.shape[0])

    def similarity_cam_from_obj(self) -> Float[np.ndarray, "T 4 4"]:
        """T_cam_from_obj with the scale folded in: maps canonical unit-sphere points to x_cam."""
        S = self.T_cam_from_obj.astype(np.float64).copy()
        S[:, :3, :3] *= self.scale
        return S


@dataclass
class Sequence:
    """One sequence build: metadata and trajectories in memory, frames read lazily from `root`."""

    root: Path | None
    """Build folder (None for a sequence not yet saved)."""
    num_frames: int
    """T, the number of frames."""
    intrinsics: Intrinsics
    """Camera intrinsics and image size."""
    hands: dict[str, HandTrack] = field(default_factory=dict)
    """Hand tracks by side, in sequence.json 'hands' order (may be empty)."""
    hand_model: str = "anny"
    """'anny' or 'mano': which hand model the parameters belong to."""
    object: ObjectTrack | None = None
    """The object track, None when the build has no object."""
    fps: float | None = None
    """Frame rate of the source video (frames per second), None when unknown."""
    sources: dict[str, Any] = field(default_factory=dict)
    """Free-text provenance per artefact ('images', 'masks', 'hands', 'object')."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free JSON-serializable data."""
    frame_names: list[str] | None = None
    """Optional original names of the frames (e.g. source file names), T of them."""

    def _file(self, folder: str, i: int) -> Path:
        if self.root is None:
            raise ValueError("this Sequence has no root folder: save it with hold.data.save_sequence first")
        if not 0 <= i < self.num_frames:
            raise IndexError(f"frame {i} out of range: the sequence has {self.num_frames} frames")
        return Path(self.root) / folder / f"{frame_name(i)}.png"

    def image_path(self, i: int) -> Path:
        """Path of RGB frame i."""
        return self._file(IMAGES_DIR, i)

    def mask_path(self, i: int) -> Path:
        """Path of label mask i (may not exist: masks are optional)."""
        return self._file(MASKS_DIR, i)

    @property
    def has_masks(self) -> bool:
        """Whether the build has a masks/ folder."""
        return self.root is not None and (Path(self.root) / MASKS_DIR).is_dir()

    def load_image(self, i: int) -> np.ndarray:
        """RGB frame i as (H, W, 3) uint8."""
        path = self.image_path(i)
        arr = read_png(path, ("RGB",), FIX_IMAGES, "RGB (8-bit, 3 channels)")
        self._check_size(path, arr, FIX_IMAGES)
        return arr

    def load_mask(self, i: int) -> np.ndarray:
        """Label mask i as (H, W) uint8 with values in LABELS."""
        path = self.mask_path(i)
        arr = read_png(path, ("L", "P"), FIX_MASKS, "L (8-bit single-channel labels)")
        self._check_size(path, arr, FIX_MASKS)
        return arr

    def _check_size(self, path: Path, arr: np.ndarray, fix: str) -> None:
        H, W = arr.shape[:2]
        if (W, H) != self.intrinsics.image_size:
            raise SequenceError(
                path, None, found=f"size {W}x{H}",
                expected=f"{self.intrinsics.width}x{self.intrinsics.height} (image_size in sequence.json)",
                fix=fix,
            )


def read_png(path: Path, modes: tuple[str, ...], fix: str, mode_text: str) -> np.ndarray:
    if not path.is_file():
        raise SequenceError(path, None, message="file not found", fix=fix)
    try:
        with Image.open(path) as im:
            if im.mode not in modes:
                raise SequenceError(path, None, found=f"mode '{im.mode}'", expected=mode_text, fix=fix)
            return np.array(im)
    except OSError as e:
        raise SequenceError(path, None, message=f"cannot be read as an image ({e})", fix=fix) from e


# ----------------------------------------------------------------------------------------------
# Pure maths used by the checks


def rigidity_errors(T: Float[np.ndarray, "T 4 4"]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: max |R^T R - I|, det(R), and max |last row - [0, 0, 0, 1]|."""
    T = np.asarray(T, dtype=np.float64)
    R = T[:, :3, :3]
    ortho = np.abs(np.einsum("tji,tjk->tik", R, R) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(R)
    bottom = np.abs(T[:, 3, :] - np.array([0.0, 0.0, 0.0, 1.0])).max(axis=1)
    return ortho, det, bottom


def nonrigid_frames(T: Float[np.ndarray, "T 4 4"], tol: float = RIGID_TOL) -> np.ndarray:
    """Indices of frames whose transform is not a proper rigid motion (orthonormal, det +1)."""
    ortho, det, bottom = rigidity_errors(T)
    bad = (ortho > tol) | (det <= 0) | (bottom > tol) | ~np.isfinite(ortho)
    return np.flatnonzero(bad)


def describe_frames(idx: np.ndarray | list[int], total: int, limit: int = 8) -> str:
    """'frames 3, 4, 9 (3 of 30)' with at most `limit` indices listed."""
    idx = [int(i) for i in idx]
    shown = ", ".join(str(i) for i in idx[:limit])
    if len(idx) > limit:
        shown += ", ..."
    word = "frame" if len(idx) == 1 else "frames"
    return f"{word} {shown} ({len(idx)} of {total})"


def t_note(T: int) -> str:
    return f"(T={T} from sequence.json num_frames)"


# ----------------------------------------------------------------------------------------------
# Checks of raw records


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _shape_text(spec: tuple[int | str, ...]) -> str:
    inner = ", ".join(str(s) for s in spec)
    return f"({inner},)" if len(spec) == 1 else f"({inner})"


def check_array(
    arrays: Mapping[str, np.ndarray],
    key: str,
    spec: tuple[int | str, ...],
    kind: str,
    path: Path,
    log: ProblemLog,
    fix: str,
    note: str = "",
    required: bool = True,
) -> np.ndarray | None:
    """Check presence, dtype kind ('float' | 'bool' | 'int') and shape of arrays[key].

    `spec` holds an int per axis that must match exactly, or a symbol (str) for a free size.
    Returns the array when it passed, else None. For kind 'float', floats other than float32 only
    warn (they are cast on load); kind 'float64' takes any float silently (intrinsics stay double).
    """
    if key not in arrays:
        if required:
            log.error(path, key, f"is missing (expected shape {_shape_text(spec)}{' ' + note if note else ''})", fix)
        return None
    arr = arrays[key]
    dt = arr.dtype
    if kind in ("float", "float64"):
        if not np.issubdtype(dt, np.floating):
            log.error(path, key, fix=fix, found=f"dtype {dt}", expected="float32" if kind == "float" else "float64")
            return None
        if kind == "float" and dt != np.float32:
            log.warning(path, key, f"has dtype {dt}, expected float32 (cast on load)",
                        "write float32 arrays (hold.data.save_sequence and save_trajectory do)")
    elif kind == "bool":
        if dt != np.bool_:
            log.error(path, key, fix=fix, found=f"dtype {dt}", expected="bool")
            return None
    elif kind == "int":
        if not np.issubdtype(dt, np.integer):
            log.error(path, key, fix=fix, found=f"dtype {dt}", expected="an integer dtype")
            return None
    else:
        raise ValueError(f"unknown array kind {kind!r}")
    ok = arr.ndim == len(spec) and all(not _is_int(s) or n == s for n, s in zip(arr.shape, spec))
    if not ok:
        expected = f"{_shape_text(spec)} {note}".rstrip()
        log.error(path, key, fix=fix, found=f"shape {tuple(arr.shape)}", expected=expected)
        return None
    return arr


def check_finite(arr: np.ndarray, key: str, path: Path, log: ProblemLog, fix: str, per_frame: bool = True) -> bool:
    """Error (naming the frames when the first axis is time) if arr holds NaN or inf."""
    finite = np.isfinite(arr)
    if finite.all():
        return True
    if per_frame and arr.ndim >= 1:
        bad = np.flatnonzero(~finite.reshape(arr.shape[0], -1).all(axis=1))
        where = f" at {describe_frames(bad, arr.shape[0])}"
    else:
        where = ""
    log.error(path, key, f"contains NaN/inf{where}", fix)
    return False


def check_rigid(T: np.ndarray, key: str, path: Path, log: ProblemLog, fix: str) -> bool:
    """Error naming the frames whose 4x4 transform is not rigid (orthonormal R, det +1, last row 0 0 0 1)."""
    bad = nonrigid_frames(T)
    if bad.size == 0:
        return True
    ortho, det, bottom = rigidity_errors(T[bad])
    worst = int(np.argmax(ortho + np.abs(det - 1) + bottom))
    parts = [f"max |R^T R - I| = {ortho[worst]:.3g}", f"det(R) = {det[worst]:.4g}"]
    if bottom[worst] > RIGID_TOL:
        parts.append(f"last row {np.round(T[bad[worst], 3], 4).tolist()}")
    log.error(
        path, key,
        f"is not rigid at {describe_frames(bad, T.shape[0])}: frame {int(bad[worst])} has {', '.join(parts)}; "
        "expected an orthonormal rotation with det +1 and last row [0, 0, 0, 1]",
        fix,
    )
    return False


@dataclass
class SequenceMeta:
    """sequence.json parsed; a field is None where the file's value was invalid (collect mode)."""

    schema_version: int | None
    num_frames: int | None
    image_size: tuple[int, int] | None
    K: np.ndarray | None
    hands: list[str] | None
    hand_model: str | None
    has_object: bool | None
    fps: float | None
    frame_names: list[str] | None
    sources: dict[str, Any]
    extra: dict[str, Any]


def check_schema_version(meta: Any, path: Path, log: ProblemLog) -> bool:
    """True when meta is a dict whose schema_version is the one this hold reads."""
    if not isinstance(meta, dict):
        log.error(path, None, f"holds a JSON {type(meta).__name__}, expected an object {{...}}", FIX_JSON)
        return False
    if "schema_version" not in meta:
        log.error(path, "schema_version", "is missing (cannot tell which contract this build follows)", FIX_REBUILD)
        return False
    v = meta["schema_version"]
    if not _is_int(v):
        log.error(path, "schema_version", f"is {v!r}, expected an integer", FIX_REBUILD)
        return False
    if v > SCHEMA_VERSION:
        log.error(path, "schema_version",
                  f"is {v}: written by a newer hold (schema {v} > {SCHEMA_VERSION})",
                  f"upgrade hold (this version reads schema {SCHEMA_VERSION})")
        return False
    if v < SCHEMA_VERSION:
        log.error(path, "schema_version",
                  f"is {v}: this build uses the old schema version {v}, this hold reads only schema "
                  f"{SCHEMA_VERSION} and does not convert silently",
                  f"it must be rebuilt: {FIX_REBUILD}")
        return False
    return True


def check_meta(meta: dict[str, Any], path: Path, log: ProblemLog) -> SequenceMeta:
    """Check every key of sequence.json (schema version checked first by check_schema_version)."""
    for key in REQUIRED_KEYS:
        if key not in meta:
            log.error(path, key, "is missing", FIX_JSON)
    for key in meta:
        if key not in REQUIRED_KEYS and key not in OPTIONAL_KEYS:
            log.warning(path, key, "is not part of the schema and is ignored", "put free data under 'extra'")

    T = meta.get("num_frames")
    if "num_frames" in meta and not (_is_int(T) and T >= 1):
        log.error(path, "num_frames", f"is {T!r}, expected an integer >= 1", FIX_JSON)
    num_frames = T if _is_int(T) and T >= 1 else None

    size = meta.get("image_size")
    image_size = None
    if "image_size" in meta:
        if isinstance(size, list) and len(size) == 2 and all(_is_int(s) and s > 0 for s in size):
            image_size = (size[0], size[1])
        else:
            log.error(path, "image_size", f"is {size!r}, expected [W, H] (two positive integers, pixels)", FIX_JSON)

    K = _check_K(meta, path, log, image_size)

    hands = meta.get("hands")
    hands_ok = None
    if "hands" in meta:
        if not isinstance(hands, list) or not all(isinstance(h, str) for h in hands):
            log.error(path, "hands", f"is {hands!r}, expected a list of hand sides, e.g. [\"right\"]", FIX_JSON)
        elif any(h not in HAND_SIDES for h in hands) or len(set(hands)) != len(hands):
            log.error(path, "hands", f"is {hands!r}, expected distinct sides out of {list(HAND_SIDES)}", FIX_JSON)
        else:
            hands_ok = list(hands)

    model = meta.get("hand_model")
    if "hand_model" in meta and model not in HAND_MODELS:
        log.error(path, "hand_model", f"is {model!r}, expected one of {list(HAND_MODELS)}", FIX_JSON)
    hand_model = model if model in HAND_MODELS else None

    has_object = meta.get("has_object")
    if "has_object" in meta and not isinstance(has_object, bool):
        log.error(path, "has_object", f"is {has_object!r}, expected true or false", FIX_JSON)
        has_object = None

    fps = meta.get("fps")
    if fps is not None and not (_is_number(fps) and fps > 0):
        log.error(path, "fps", f"is {fps!r}, expected a positive number (frames per second) or null", FIX_JSON)
        fps = None

    names = meta.get("frame_names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            log.error(path, "frame_names", "is not a list of strings", FIX_JSON)
            names = None
        elif num_frames is not None and len(names) != num_frames:
            log.error(path, "frame_names", fix=FIX_JSON, found=f"{len(names)} names",
                      expected=f"{num_frames} {t_note(num_frames)}")
            names = None
        elif len(set(names)) != len(names):
            log.error(path, "frame_names", "has duplicate names", FIX_JSON)
            names = None

    sources, extra = meta.get("sources", {}), meta.get("extra", {})
    for key, value in (("sources", sources), ("extra", extra)):
        if not isinstance(value, dict):
            log.error(path, key, f"is a {type(value).__name__}, expected an object {{...}}", FIX_JSON)
    sources = sources if isinstance(sources, dict) else {}
    extra = extra if isinstance(extra, dict) else {}

    return SequenceMeta(
        schema_version=meta.get("schema_version"), num_frames=num_frames, image_size=image_size, K=K,
        hands=hands_ok, hand_model=hand_model, has_object=has_object, fps=None if fps is None else float(fps),
        frame_names=names, sources=sources, extra=extra,
    )


def _check_K(meta: dict, path: Path, log: ProblemLog, image_size: tuple[int, int] | None) -> np.ndarray | None:
    if "K" not in meta:
        return None
    form = "[[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (pixels)"
    try:
        K = np.array(meta["K"], dtype=np.float64)
    except (TypeError, ValueError):
        log.error(path, "K", f"is {meta['K']!r}, expected {form}", FIX_JSON)
        return None
    if K.shape != (3, 3) or not np.isfinite(K).all():
        log.error(path, "K", f"is {meta['K']!r}, expected finite {form}", FIX_JSON)
        return None
    if not np.array_equal(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0.0 or K[0, 0] <= 0 or K[1, 1] <= 0:
        log.error(path, "K", f"is {K.tolist()}, expected {form} with fx, fy > 0", FIX_JSON)
        return None
    if K[0, 1] != 0.0:
        log.warning(path, "K", f"has skew K[0][1] = {K[0, 1]}; the renderer assumes zero skew")
    if image_size is not None:
        W, H = image_size
        if not (0 <= K[0, 2] <= W and 0 <= K[1, 2] <= H):
            log.warning(path, "K", f"has its principal point ({K[0, 2]}, {K[1, 2]}) outside the {W}x{H} image")
    return K


def check_hand_arrays(
    arrays: Mapping[str, np.ndarray], side: str, T: int, path: Path, log: ProblemLog, values: bool = True
) -> bool:
    """Check one hand side of hands.npz against T; `values` also checks finiteness and ranges."""
    mark = log.mark()
    note = t_note(T)
    p = f"{side}/"
    if not any(key.startswith(p) for key in arrays):
        log.error(path, side, f"is missing: sequence.json lists hand '{side}' but {path.name} has no "
                  f"'{p}...' arrays (keys: {sorted(arrays) or 'none'})", FIX_HANDS)
        return False
    specs: dict[str, tuple[tuple[int | str, ...], str, str]] = {
        "global_orient": ((T, 3), "float", note),
        "hand_pose": ((T, "P"), "float", note),
        "betas": (("B",), "float", ""),
        "transl": ((T, 3), "float", note),
        "valid": ((T,), "bool", note),
    }
    checked = {}
    for name, (spec, kind, n) in specs.items():
        checked[name] = check_array(arrays, p + name, spec, kind, path, log, FIX_HANDS, n)
    kp = check_array(arrays, p + "keypoints_2d", (T, NUM_KEYPOINTS, 3), "float", path, log, FIX_HANDS, note,
                     required=False)
    if values:
        for name in ("global_orient", "hand_pose", "betas", "transl"):
            if checked[name] is not None:
                check_finite(checked[name], p + name, path, log, FIX_HANDS, per_frame=name != "betas")
        if kp is not None and check_finite(kp, p + "keypoints_2d", path, log, FIX_HANDS):
            conf = kp[..., 2]
            if conf.min() < 0 or conf.max() > 1:
                bad = np.flatnonzero(((conf < 0) | (conf > 1)).any(axis=1))
                log.error(path, p + "keypoints_2d",
                          f"has confidences outside [0, 1] at {describe_frames(bad, T)} "
                          f"(range {conf.min():.3g} .. {conf.max():.3g})", FIX_HANDS)
    known = {p + k for k in HAND_KEYS + HAND_OPTIONAL_KEYS}
    for key in arrays:
        if key.startswith(p) and key not in known:
            log.warning(path, key, "is not part of the schema and is ignored")
    return not log.errors_since(mark)


def check_object_arrays(
    arrays: Mapping[str, np.ndarray], T: int, path: Path, log: ProblemLog, values: bool = True
) -> bool:
    """Check object.npz against T; `values` also checks finiteness, rigidity, scale and unit sphere."""
    mark = log.mark()
    note = t_note(T)
    pose = check_array(arrays, "T_cam_from_obj", (T, 4, 4), "float", path, log, FIX_OBJECT, note)
    scale = check_array(arrays, "scale", (), "float", path, log, FIX_OBJECT)
    points = check_array(arrays, "points", ("N", 3), "float", path, log, FIX_OBJECT)
    check_array(arrays, "valid", (T,), "bool", path, log, FIX_OBJECT, note)
    for key in arrays:
        if key not in OBJECT_KEYS:
            log.warning(path, key, "is not part of the schema and is ignored")
    if not values:
        return not log.errors_since(mark)
    if pose is not None and check_finite(pose, "T_cam_from_obj", path, log, FIX_OBJECT):
        check_rigid(pose, "T_cam_from_obj", path, log,
                    FIX_OBJECT + "; keep the object scale in 'scale', not in the matrix")
    if scale is not None:
        s = float(scale)
        if not (math.isfinite(s) and s > 0):
            log.error(path, "scale", f"is {s}, expected a finite number > 0 (metres per canonical unit)", FIX_OBJECT)
    if points is not None and check_finite(points, "points", path, log, FIX_OBJECT, per_frame=False):
        if points.shape[0] == 0:
            log.warning(path, "points", "is empty (no canonical SfM points)", FIX_OBJECT)
        else:
            norm = np.linalg.norm(points.astype(np.float64), axis=1)
            outside = int((norm > 1 + UNIT_SPHERE_TOL).sum())
            if outside:
                log.error(path, "points",
                          f"has {outside} of {len(norm)} points outside the unit sphere "
                          f"(max norm {norm.max():.4g}, allowed <= {1 + UNIT_SPHERE_TOL})",
                          "normalize the canonical cloud to the unit sphere and fold the factor into 'scale' ("
                          + FIX_OBJECT + ")")
    return not log.errors_since(mark)
