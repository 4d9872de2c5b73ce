"""Load and save sequence builds; every write is atomic (temp file in the same folder + os.replace).

A crash or an exception during a save never leaves a half-written file: each file appears whole
or not at all, and sequence.json is written last, so an interrupted save keeps the previous
sequence.json (the commit point of a build).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io as _io
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
from jaxtyping import Float, UInt8
from PIL import Image

from hold.data.errors import ProblemLog, SequenceError
from hold.data.schema import (
    FIX_HANDS, FIX_IMAGES, FIX_JSON, FIX_MASKS, FIX_OBJECT, FRAME_DIGITS, HANDS_NPZ, IMAGES_DIR, MASK_VALUES,
    MASKS_DIR, OBJECT_NPZ, SCHEMA_VERSION, SEQUENCE_JSON, HandTrack, Intrinsics, ObjectTrack, Sequence,
    check_hand_arrays, check_meta, check_object_arrays, check_schema_version, frame_name, t_note,
)

PNG_COMPRESS_LEVEL = 1
"""zlib level for PNG writes: level 1 is several times faster than the default 6 for ~10 % larger
files, and frames are written once per video (intermediates, not archives)."""
DEPTH_UNIT_M = 1e-4
"""Depth PNGs store uint16 in units of 0.1 mm (max 6.5535 m); 0 means no surface."""


# ----------------------------------------------------------------------------------------------
# Atomic writes


@contextlib.contextmanager
def _atomic_file(path: Path | str) -> Iterator[IO[bytes]]:
    """Open a temp file next to `path`; on clean exit fsync it and os.replace it onto `path`.

    On any exception the temp file is removed and `path` is untouched. The temp name ends in
    '.tmp' and starts with '.', so a file left by a hard kill is never mistaken for a frame.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with _atomic_file(path) as f:
        f.write(data)


def atomic_write_json(path: Path | str, obj: Any, allow_nan: bool = True) -> None:
    """Write `obj` as indented JSON atomically (serialization errors happen before any write).

    `allow_nan=False` refuses NaN/inf (not valid JSON); the default writes them as Python's json does.
    """
    text = json.dumps(obj, indent=2, allow_nan=allow_nan) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_npz(path: Path | str, arrays: Mapping[str, np.ndarray]) -> None:
    """Write arrays as an uncompressed .npz atomically (keys may contain '/')."""
    with _atomic_file(path) as f:
        np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})


def _write_png(path: Path | str, arr: np.ndarray) -> None:
    buf = _io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    atomic_write_bytes(path, buf.getvalue())


def write_image(path: Path | str, rgb: UInt8[np.ndarray, "H W 3"]) -> None:
    """Write an RGB uint8 frame as PNG, atomically."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise SequenceError(path, None, found=f"an array of shape {rgb.shape} dtype {rgb.dtype}",
                            expected="(H, W, 3) uint8 RGB", fix="convert the frame to 8-bit RGB first")
    _write_png(path, np.ascontiguousarray(rgb))


def write_mask(path: Path | str, labels: UInt8[np.ndarray, "H W"]) -> None:
    """Write a uint8 label mask (values in LABELS) as a single-channel PNG, atomically."""
    labels = np.asarray(labels)
    if labels.dtype != np.uint8 or labels.ndim != 2:
        raise SequenceError(path, None, found=f"an array of shape {labels.shape} dtype {labels.dtype}",
                            expected="(H, W) uint8 labels", fix="convert the mask to uint8 labels first")
    bad = sorted(set(np.unique(labels).tolist()) - MASK_VALUES)
    if bad:
        raise SequenceError(path, None, found=f"label values {bad}", expected=f"values in {sorted(MASK_VALUES)}",
                            fix="map entities to 0 background, 1 object, 2 right hand, 3 left hand, 255 ignore")
    _write_png(path, np.ascontiguousarray(labels))


def write_depth(path: Path | str, depth: Float[np.ndarray, "H W"] | np.ndarray) -> None:
    """Write a depth map as 16-bit PNG in 0.1 mm units, atomically.

    A uint16 array is written as is (already in 0.1 mm units). A float array is taken as metres:
    non-finite or <= 0 means no surface (0); depths beyond 6.5535 m are an error.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise SequenceError(path, None, found=f"shape {depth.shape}", expected="(H, W)",
                            fix="pass one depth map per frame")
    if depth.dtype == np.uint16:
        _write_png(path, np.ascontiguousarray(depth))
        return
    if not np.issubdtype(depth.dtype, np.floating):
        raise SequenceError(path, None, found=f"dtype {depth.dtype}",
                            expected="float (metres) or uint16 (0.1 mm units)", fix="convert the depth map")
    surface = np.isfinite(depth) & (depth > 0)
    d = np.where(surface, depth, 0.0)
    max_m = round(np.iinfo(np.uint16).max * DEPTH_UNIT_M, 4)
    if d.max(initial=0.0) > max_m:
        raise SequenceError(path, None, found=f"depth up to {d.max():.4g} m",
                            expected=f"at most {max_m} m (uint16 in 0.1 mm units)",
                            fix="move the scene closer or mark far pixels as no surface (0)")
    units = np.rint(d / DEPTH_UNIT_M)
    units = np.where(surface, np.maximum(units, 1), 0).astype(np.uint16)  # a surface never rounds to "none"
    _write_png(path, units)


def read_depth(path: Path | str) -> Float[np.ndarray, "H W"]:
    """Read a 16-bit depth PNG as float32 metres (0 = no surface)."""
    path = Path(path)
    if not path.is_file():
        raise SequenceError(path, None, message="file not found", fix="regenerate the depth maps")
    with Image.open(path) as im:
        if im.mode not in ("I;16", "I"):
            raise SequenceError(path, None, found=f"mode '{im.mode}'", expected="16-bit grayscale ('I;16')",
                                fix="write depth with hold.data.io.write_depth")
        units = np.array(im).astype(np.float32)
    return units * np.float32(DEPTH_UNIT_M)


# ----------------------------------------------------------------------------------------------
# Reading raw records


def read_json(path: Path, log: ProblemLog, missing_fix: str = FIX_JSON) -> Any | None:
    """Parse a JSON file; reports (and returns None) when it is missing or malformed."""
    if not path.is_file():
        log.error(path, None, "file not found", missing_fix)
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        log.error(path, None, f"is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}", FIX_JSON)
    except (UnicodeDecodeError, OSError) as e:
        log.error(path, None, f"cannot be read ({e})", FIX_JSON)
    return None


def read_npz(path: Path, log: ProblemLog, fix: str, why: str = "") -> dict[str, np.ndarray] | None:
    """All arrays of an .npz (no pickles); reports (and returns None) when missing or unreadable."""
    if not path.is_file():
        log.error(path, None, f"file not found{' (' + why + ')' if why else ''}", fix)
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # BadZipFile, pickled object arrays, truncated members, ...
        log.error(path, None, f"cannot be read as .npz ({type(e).__name__}: {e})", fix)
        return None


def _missing_json_fix(root: Path) -> str:
    if (root / "build" / SEQUENCE_JSON).is_file():
        return f"did you mean {root / 'build'}? (the build is the 'build' folder of a sequence)"
    return "point at a sequence build folder (written by `hold preprocess build`)"


def read_meta(root: Path, log: ProblemLog):
    """sequence.json of `root`, version-checked and parsed (SequenceMeta), or None on a fatal problem."""
    if not root.is_dir():
        log.error(root, None, "folder not found", "point at a sequence build folder")
        return None
    path = root / SEQUENCE_JSON
    raw = read_json(path, log, _missing_json_fix(root))
    if raw is None or not check_schema_version(raw, path, log):
        return None
    return check_meta(raw, path, log)


# ----------------------------------------------------------------------------------------------
# Sequence <-> records


def _f32(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def sequence_to_records(
    seq: Sequence, root: Path | str = "."
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(sequence.json dict, hands.npz arrays, object.npz arrays) of an in-memory sequence bound for `root`."""
    K = np.asarray(seq.intrinsics.K, dtype=np.float64)
    meta: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "num_frames": int(seq.num_frames),
        "image_size": [int(seq.intrinsics.width), int(seq.intrinsics.height)],
        "K": K.tolist(),
        "hands": list(seq.hands),
        "hand_model": seq.hand_model,
        "has_object": seq.object is not None,
        "fps": None if seq.fps is None else float(seq.fps),
    }
    if seq.frame_names is not None:
        meta["frame_names"] = list(seq.frame_names)
    meta["sources"] = seq.sources
    meta["extra"] = seq.extra
    hands: dict[str, np.ndarray] = {}
    for side, track in seq.hands.items():
        if track.side != side:
            raise SequenceError(Path(root) / HANDS_NPZ, side, found=f"a HandTrack with side '{track.side}'",
                                expected=f"side '{side}' (its key in Sequence.hands)",
                                fix="key Sequence.hands by HandTrack.side")
        p = f"{side}/"
        for name in ("global_orient", "hand_pose", "betas", "transl"):
            hands[p + name] = _f32(getattr(track, name))
        hands[p + "valid"] = np.asarray(track.valid)
        if track.keypoints_2d is not None:
            hands[p + "keypoints_2d"] = _f32(track.keypoints_2d)
    obj: dict[str, np.ndarray] = {}
    if seq.object is not None:
        o = seq.object
        obj = {"T_cam_from_obj": _f32(o.T_cam_from_obj), "scale": _f32(o.scale), "points": _f32(o.points),
               "valid": np.asarray(o.valid)}
    return meta, hands, obj


def _check_records(root: Path, meta_raw: dict, hands: dict, obj: dict, log: ProblemLog, values: bool = True):
    """Run every record check (fail-fast `log` raises on the first error); returns SequenceMeta."""
    path = root / SEQUENCE_JSON
    check_schema_version(meta_raw, path, log)
    meta = check_meta(meta_raw, path, log)
    for side in meta.hands or []:
        check_hand_arrays(hands, side, meta.num_frames, root / HANDS_NPZ, log, values=values)
    if meta.has_object:
        check_object_arrays(obj, meta.num_frames, root / OBJECT_NPZ, log, values=values)
    return meta


def hand_track(arrays: dict, side: str, keypoints_2d: np.ndarray | None) -> HandTrack:
    """The HandTrack of `side` from checked hands.npz arrays ('<side>/<field>' keys)."""
    p = f"{side}/"
    return HandTrack(side=side, global_orient=_f32(arrays[p + "global_orient"]),
                     hand_pose=_f32(arrays[p + "hand_pose"]), betas=_f32(arrays[p + "betas"]),
                     transl=_f32(arrays[p + "transl"]), valid=arrays[p + "valid"], keypoints_2d=keypoints_2d)


def object_track(arrays: dict) -> ObjectTrack:
    """The ObjectTrack from checked object.npz arrays."""
    return ObjectTrack(T_cam_from_obj=_f32(arrays["T_cam_from_obj"]), scale=float(arrays["scale"]),
                       points=_f32(arrays["points"]), valid=arrays["valid"])


def load_sequence(root: Path | str, check: bool = True) -> Sequence:
    """Load a build (metadata + trajectories; frames stay on disk, read by Sequence.load_image).

    Raises SequenceError naming the file and field of the FIRST problem. Structure (keys,
    shapes, dtypes, schema version) is always checked; `check` also checks values (finite poses,
    rigid transforms, unit-sphere points, confidence ranges). Use `validate` for a full report.
    """
    root = Path(root)
    log = ProblemLog(fail_fast=True)
    meta = read_meta(root, log)
    T = meta.num_frames
    hands: dict[str, HandTrack] = {}
    if meta.hands:
        arrays = read_npz(root / HANDS_NPZ, log, FIX_HANDS, f"sequence.json lists hands {meta.hands}")
        for side in meta.hands:
            check_hand_arrays(arrays, side, T, root / HANDS_NPZ, log, values=check)
            kp = arrays.get(f"{side}/keypoints_2d")
            hands[side] = hand_track(arrays, side, None if kp is None else _f32(kp))
    obj = None
    if meta.has_object:
        arrays = read_npz(root / OBJECT_NPZ, log, FIX_OBJECT, "sequence.json has_object is true")
        check_object_arrays(arrays, T, root / OBJECT_NPZ, log, values=check)
        obj = object_track(arrays)
    W, H = meta.image_size
    return Sequence(
        root=root, num_frames=T, intrinsics=Intrinsics(K=meta.K, width=W, height=H), hands=hands,
        hand_model=meta.hand_model, object=obj, fps=meta.fps, sources=meta.sources, extra=meta.extra,
        frame_names=meta.frame_names,
    )


def _write_frames(
    folder: Path, frames: Iterable[np.ndarray], T: int, size: tuple[int, int], writer, fix: str
) -> None:
    """Write exactly T frames as folder/000000.png...; remove stale higher-numbered frames."""
    W, H = size
    n = 0
    for i, arr in enumerate(frames):
        path = folder / f"{frame_name(i)}.png"
        if i >= T:
            raise SequenceError(folder, None, found="more than T frames", expected=f"{T} {t_note(T)}", fix=fix)
        shape = np.shape(arr)
        if tuple(shape[:2]) != (H, W):
            raise SequenceError(path, None, found=f"an array of shape {shape}",
                                expected=f"(H, W) = ({H}, {W}) first (image_size [{W}, {H}])", fix=fix)
        writer(path, arr)
        n += 1
    if n != T:
        raise SequenceError(folder, None, found=f"{n} frames", expected=f"{T} {t_note(T)}", fix=fix)
    for p in folder.glob("*.png"):  # frames of an earlier, longer build would break the contract
        if len(p.stem) == FRAME_DIGITS and p.stem.isdigit() and int(p.stem) >= T:
            p.unlink()


def save_sequence(
    seq: Sequence,
    root: Path | str,
    images: Iterable[np.ndarray] | None = None,
    masks: Iterable[np.ndarray] | None = None,
) -> Sequence:
    """Write `seq` as a build at `root` (created if needed); returns it with `root` set.

    Everything is checked in memory first (a bad sequence raises SequenceError before anything is
    written). `images`/`masks` (iterables of T (H,W,3) / (H,W) uint8 arrays) are written when given;
    otherwise the frames already in `root` are kept. Order: frames, hands.npz, object.npz, then
    sequence.json last, each file atomically.
    """
    root = Path(root)
    meta_raw, hands, obj = sequence_to_records(seq, root)
    try:
        json.dumps(meta_raw, allow_nan=False)
    except (TypeError, ValueError) as e:
        bad = next((k for k in ("sources", "extra", "frame_names", "fps") if not _json_ok(meta_raw.get(k))), None)
        raise SequenceError(root / SEQUENCE_JSON, bad, message=f"is not JSON-serializable ({e})",
                            fix="keep sources/extra to plain JSON types (str, number, bool, list, dict)") from e
    meta = _check_records(root, meta_raw, hands, obj, ProblemLog(fail_fast=True))

    root.mkdir(parents=True, exist_ok=True)
    size = (meta.image_size[0], meta.image_size[1])
    if images is not None:
        _write_frames(root / IMAGES_DIR, images, seq.num_frames, size, write_image, FIX_IMAGES)
    if masks is not None:
        _write_frames(root / MASKS_DIR, masks, seq.num_frames, size, write_mask, FIX_MASKS)
    atomic_write_npz(root / HANDS_NPZ, hands)
    if seq.object is not None:
        atomic_write_npz(root / OBJECT_NPZ, obj)
    atomic_write_json(root / SEQUENCE_JSON, meta_raw, allow_nan=False)
    if seq.object is None and (root / OBJECT_NPZ).exists():
        (root / OBJECT_NPZ).unlink()  # has_object is false now: a stale object.npz would only mislead
    return dataclasses.replace(seq, root=root)


def _json_ok(x: Any) -> bool:
    try:
        json.dumps(x, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False
