"""`hold preprocess sfm SEQ_DIR`: the object's per-frame pose and canonical point cloud by structure from motion.

The camera is static and the object moves, so SfM on object-only frames (hand and background masked out)
sees a rigid scene (the object) filmed by a moving "camera": world = the object's SfM frame and
T_cam_from_obj(t) = cam_from_world(t). pycolmap (preprocess/sfm_colmap.py) runs SIFT under per-image masks,
exhaustive (short clips) or sequential matching (no loop detection: it needs a vocabulary tree download), and
global (GLOMAP) and incremental mapping with ONE shared pinhole camera; the largest model of the best fitting
run is kept (see sfm_colmap.py for why both).

Canonical space. The SfM points X (few observations / large reprojection errors dropped, then the farthest 2 %
from the median centre trimmed) are normalized to the unit sphere: x_obj = (X - c) / r, with c the centre of
their bounding box and r the largest |X - c|. Since X = r x_obj + c,

    x_cam = R_t X + t_t = R_t (r x_obj) + (R_t c + t_t)   =>   T_cam_from_obj(t) = [R_t | R_t c + t_t],  scale = r,

which is the contract's x_cam = T_cam_from_obj @ [scale * x_obj, 1] (DESIGN.md). Translations and `scale` are in
SfM units: the `align` step gives them metres. Frames that did not register get SLERP / linear interpolated
poses of their registered neighbours and valid = False.

Outputs: SEQ_DIR/object.npz (ObjectTrack), SEQ_DIR/qa/sfm.png (SfM points reprojected on a few frames) and the
step record SEQ_DIR/preprocess/sfm.json, whose info holds the estimated intrinsics K (3x3, pixels of images/).
Work files (cropped frames, COLMAP masks, database, model) go to SEQ_DIR/preprocess/sfm_work/.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float, Int, UInt8
from PIL import Image, ImageDraw
from scipy.ndimage import distance_transform_edt

from hold.data.errors import ProblemLog, SequenceError
from hold.data.io import atomic_write_npz, write_image
from hold.data.schema import (
    IMAGES_DIR, LABELS, MASKS_DIR, OBJECT_NPZ, ObjectTrack, read_png, check_object_arrays,
)
from hold.geometry.rotations import (
    axis_angle_to_matrix, interpolate_linear, interpolate_rotations, matrix_to_axis_angle,
)
from hold.progress import track
from hold.synth.preview import overlay_labels
from preprocess.frames import contact_sheet
from preprocess.masks import FIX_FRAMES, frame_stems
from preprocess.records import StepRecord, fingerprint, load_record, remove_record, should_skip, write_record
from preprocess.sfm_colmap import CAMERA_MODELS, MAPPERS, ColmapConfig, ColmapResult, run_colmap

STEP = "sfm"
QA_PATH = "qa/sfm.png"
WORK_DIR = "preprocess/sfm_work"
MIN_FRAMES = 3
"""SfM needs two views to start and a third to be more than a stereo pair."""
MIN_POINTS = 10
"""Fewer SfM points than this cannot define the object's canonical space."""
FEW_KEYPOINTS = 100
"""Mean SIFT keypoints per frame on the object below which SfM typically fails (too few features)."""
FIX_MASKS = "run `hold preprocess masks SEQ_DIR ...` first (label masks: 1 = object, 2/3 = hands)"
OBJECT = LABELS["object"]
HAND_LABELS = (LABELS["right"], LABELS["left"], LABELS["ignore"])


@dataclass
class SfmConfig:
    """The sfm step: which pixels COLMAP may use, how its output is cleaned, when to give up."""

    matcher: str = "auto"
    """'auto' (exhaustive up to `exhaustive_max_frames` frames, else sequential), 'exhaustive' or 'sequential'."""
    exhaustive_max_frames: int = 60
    """Longest clip (frames) that 'auto' matches exhaustively (all pairs: cost grows with T^2)."""
    min_registered: float = 0.5
    """Fraction of frames that must register; below it the step stops instead of writing a poor track."""
    min_rotation_deg: float = 10.0
    """Smallest rotation span of the object over the registered frames (degrees): below it the views are too
    alike to triangulate its shape (the poses may be fine, the points are not) and the step stops."""
    focal_px: float | None = None
    """Initial focal length guess (pixels of images/); None: 1.2 x the longer image side (COLMAP's prior)."""
    hand_margin_px: float = 4.0
    """Pixels within this distance of a hand (or ignore) pixel are masked out too: no hand-edge features."""
    edge_margin_px: float = 1.0
    """Object pixels within this distance of the background are masked out (silhouette-edge features mix
    the moving object with the static background)."""
    upsample_below_px: int = 1000
    """SIFT upsamples (first octave -1) crops whose longer side is under this many pixels; larger crops have
    features enough at their own resolution and would take 4x longer (used when colmap.first_octave is None)."""
    crop_margin_px: int = 32
    """SfM runs on the frames cropped to the union of the object masks plus this margin (one crop for all
    frames, so the camera stays shared): less to extract, same geometry."""
    min_track_length: int = 3
    """Points seen in fewer images are dropped from the canonical cloud."""
    max_point_error_px: float = 2.0
    """Points with a larger mean reprojection error (pixels) are dropped."""
    keep_percentile: float = 98.0
    """Points farther from the median centre than this percentile of the distances are trimmed (outliers)."""
    radius_margin: float = 1.0
    """Unit sphere radius r = this x the largest kept |X - c| (1.0: the farthest point lands on the sphere)."""
    keep_work: bool = False
    """Keep the cropped frames and COLMAP masks in the work folder (the database and model are always kept)."""
    colmap: ColmapConfig = field(default_factory=ColmapConfig)
    """SIFT / matching / mapping settings (its `matcher` is set from `matcher` above)."""


# ----------------------------------------------------------------------------------------------
# Pure maths


def colmap_mask(
    labels: UInt8[np.ndarray, "H W"], hand_margin_px: float, edge_margin_px: float
) -> Bool[np.ndarray, "H W"]:
    """Pixels where COLMAP may keep SIFT keypoints: the object, minus a band next to hands / ignore pixels
    (`hand_margin_px`) and next to the background (`edge_margin_px`); distances centre to centre."""
    obj = labels == OBJECT
    box = mask_bbox(obj)
    if box is None:
        return obj
    # Distances only matter within the margin of the object: work in its box grown by the margin (and one
    # pixel, so that the image border never counts as a hand or background pixel it is not).
    pad = int(math.ceil(max(hand_margin_px, edge_margin_px))) + 1
    H, W = labels.shape
    x0, y0, x1, y1 = max(0, box[0] - pad), max(0, box[1] - pad), min(W, box[2] + pad), min(H, box[3] + pad)
    win = labels[y0:y1, x0:x1]
    obj_w = win == OBJECT
    keep_w = obj_w.copy()
    hand = np.isin(win, HAND_LABELS)
    if hand_margin_px > 0 and hand.any():
        keep_w &= distance_transform_edt(~hand) > hand_margin_px
    other = ~obj_w & ~hand  # background (the hand band is handled above)
    if edge_margin_px > 0 and other.any():
        keep_w &= distance_transform_edt(~other) > edge_margin_px
    keep = np.zeros_like(obj)
    keep[y0:y1, x0:x1] = keep_w
    return keep


def mask_bbox(mask: Bool[np.ndarray, "H W"]) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the True pixels, exclusive ends; None when there are none."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def crop_box(
    boxes: list[tuple[int, int, int, int] | None], margin_px: int, width: int, height: int
) -> tuple[int, int, int, int]:
    """Union of the boxes grown by `margin_px` and clipped to the image, (x0, y0, x1, y1) exclusive ends."""
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return 0, 0, width, height
    b = np.array(boxes)
    return (max(0, int(b[:, 0].min()) - margin_px), max(0, int(b[:, 1].min()) - margin_px),
            min(width, int(b[:, 2].max()) + margin_px), min(height, int(b[:, 3].max()) + margin_px))


def select_points(
    points: Float[np.ndarray, "N 3"],
    errors: Float[np.ndarray, " N"],
    track_lengths: Int[np.ndarray, " N"],
    min_track_length: int,
    max_error_px: float,
    keep_percentile: float,
) -> Bool[np.ndarray, " N"]:
    """Points for the canonical cloud: enough observations, small reprojection error, and within the
    `keep_percentile` percentile of distances from the (robust) median centre of those."""
    ok = (track_lengths >= min_track_length) & (errors <= max_error_px) & np.isfinite(points).all(axis=1)
    if ok.sum() < 2:
        return ok
    centre = np.median(points[ok], axis=0)
    dist = np.linalg.norm(points - centre, axis=1)
    return ok & (dist <= np.percentile(dist[ok], keep_percentile))


def normalize_points(
    points: Float[np.ndarray, "N 3"], radius_margin: float = 1.0
) -> tuple[Float[np.ndarray, "3"], float, Float[np.ndarray, "N 3"]]:
    """(c, r, x_obj): c the bounding-box centre, r = radius_margin x max |X - c|, x_obj = (X - c) / r."""
    centre = 0.5 * (points.min(axis=0) + points.max(axis=0))
    radius = float(radius_margin * np.linalg.norm(points - centre, axis=1).max())
    if not radius > 0:
        raise ValueError("normalize_points: all points coincide, the object's size is undefined")
    return centre, radius, (points - centre) / radius


def object_track(
    cam_from_world: Float[np.ndarray, "T 4 4"],
    registered: Bool[np.ndarray, " T"],
    centre: Float[np.ndarray, "3"],
) -> Float[np.ndarray, "T 4 4"]:
    """Rigid T_cam_from_obj per frame from the SfM poses (world = object SfM frame) with the canonical centre
    folded in: [R_t | R_t c + t_t], so that x_cam = T_cam_from_obj @ (r x_obj) for x_obj = (X - c) / r.
    Frames not registered get their neighbours' poses interpolated (SLERP of the rotation, linear
    interpolation of the object centre's position; the edges hold the nearest registered pose)."""
    if not registered.any():
        raise ValueError("object_track: no frame is registered, there is no pose to interpolate from")
    R = np.asarray(cam_from_world[:, :3, :3], dtype=np.float64)
    t = R @ np.asarray(centre, np.float64) + cam_from_world[:, :3, 3]
    valid = torch.as_tensor(registered, dtype=torch.bool)
    aa = interpolate_rotations(matrix_to_axis_angle(torch.as_tensor(R)), valid)
    out = np.tile(np.eye(4), (len(R), 1, 1))
    out[:, :3, :3] = axis_angle_to_matrix(aa).numpy()
    out[:, :3, 3] = interpolate_linear(torch.as_tensor(t), valid).numpy()
    out[registered, :3, :3] = R[registered]  # bit-exact where SfM gave a pose (no axis-angle round trip)
    return out


def project_points(
    K: Float[np.ndarray, "3 3"], T_cam_from_obj: Float[np.ndarray, "4 4"], scale: float, x_obj: Float[np.ndarray, "N 3"]
) -> tuple[Float[np.ndarray, "N 2"], Bool[np.ndarray, " N"]]:
    """Pixel coordinates (pixel centres at +0.5, as COLMAP) of canonical points and whether they are in front."""
    x_cam = (scale * x_obj) @ T_cam_from_obj[:3, :3].T + T_cam_from_obj[:3, 3]
    z = x_cam[:, 2]
    front = z > 1e-9
    uv = (x_cam @ K.T)[:, :2] / np.where(front, z, 1.0)[:, None]
    return uv, front


def rotation_span_deg(R: Float[np.ndarray, "T 3 3"], max_frames: int = 200) -> float:
    """Largest rotation angle between any two of the rotations (degrees, at most 180), over at most
    `max_frames` evenly spaced ones (the span of a smooth trajectory is found on a subsample)."""
    R = np.asarray(R, dtype=np.float64)
    if len(R) > max_frames:
        R = R[np.linspace(0, len(R) - 1, max_frames).round().astype(int)]
    cos = (np.einsum("aji,bji->ab", R, R) - 1.0) / 2.0  # trace(R_a^T R_b) = sum_ij R_a[j,i] R_b[j,i]
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))).max())


def explain_failure(
    num_registered: int, num_frames: int, min_registered: float, keypoints: Int[np.ndarray, " T"],
    matched_pairs: int, object_frames: int,
) -> str:
    """Why SfM registered too few frames, in words with the numbers that tell (see FEW_KEYPOINTS)."""
    mean_kp = float(np.mean(keypoints)) if len(keypoints) else 0.0
    text = (f"SfM registered only {num_registered} of {num_frames} frames ({100 * num_registered / num_frames:.0f} %; "
            f"--min-registered asks for {100 * min_registered:.0f} %). SIFT keypoints inside the object masks: "
            f"mean {mean_kp:.0f}, min {int(np.min(keypoints)) if len(keypoints) else 0}, "
            f"max {int(np.max(keypoints)) if len(keypoints) else 0} per frame; {matched_pairs} frame pairs matched; "
            f"the object is visible in {object_frames} frames. Likely cause: ")
    if mean_kp < FEW_KEYPOINTS:
        text += (f"too few features on the object (under {FEW_KEYPOINTS} keypoints per frame): the object is small "
                 "in the frame, blurred or weakly textured")
    elif matched_pairs < num_frames - 1:
        text += ("the frames do not match each other (fewer matched pairs than consecutive frames): the object "
                 "changes too much between frames (fast motion, blur, large stride)")
    else:
        text += ("too little rotation of the object: the views are too similar to triangulate (SfM needs the "
                 "object to turn, at least ~20-30 degrees over the clip)")
    return text


# ----------------------------------------------------------------------------------------------
# Orchestration


def _say(msg: str) -> None:
    print(f"hold preprocess sfm: {msg}", file=sys.stderr)


def list_frames(seq_dir: Path) -> tuple[list[str], tuple[int, int]]:
    """File names of the frames in SEQ_DIR/images (masks.frame_stems) and their size (W, H); at least MIN_FRAMES."""
    stems, size = frame_stems(seq_dir)
    if len(stems) < MIN_FRAMES:
        raise SequenceError(seq_dir / IMAGES_DIR, None, found=f"{len(stems)} frame(s)",
                            expected=f"at least {MIN_FRAMES} frames for structure from motion",
                            fix="extract more frames (`hold preprocess frames` with a smaller --stride or a longer clip)")
    return [f"{s}.png" for s in stems], size


def read_labels(path: Path, size: tuple[int, int]) -> UInt8[np.ndarray, "H W"]:
    """A label mask of the contract (single-channel PNG, as Sequence.load_mask reads it) of the frames' size."""
    labels = read_png(path, ("L", "P"), FIX_MASKS, "a single-channel label PNG (mode L)")
    if (labels.shape[1], labels.shape[0]) != size:
        raise SequenceError(path, None, found=f"size {labels.shape[1]}x{labels.shape[0]}",
                            expected=f"{size[0]}x{size[1]} like the frames", fix=FIX_MASKS)
    return labels


def resolve_matcher(matcher: str, num_frames: int, exhaustive_max_frames: int) -> str:
    """The matcher to run: 'auto' picks exhaustive for clips of at most `exhaustive_max_frames` frames."""
    if matcher == "auto":
        return "exhaustive" if num_frames <= exhaustive_max_frames else "sequential"
    return matcher


def _check_config(cfg: SfmConfig, seq_dir: Path) -> None:
    def bad(option: str, found: Any, expected: str) -> SequenceError:
        return SequenceError(seq_dir, option, found=str(found), expected=expected, fix=f"pass a valid {option}")

    if cfg.matcher not in ("auto", "exhaustive", "sequential"):
        raise bad("--matcher", cfg.matcher, "auto, exhaustive or sequential")
    if not 0.0 <= cfg.min_registered <= 1.0:
        raise bad("--min-registered", cfg.min_registered, "a fraction in [0, 1]")
    if cfg.colmap.overlap < 1:
        raise bad("--overlap", cfg.colmap.overlap, "an integer >= 1")
    if cfg.colmap.mapper not in MAPPERS:
        raise bad("--mapper", cfg.colmap.mapper, " or ".join(MAPPERS))
    if cfg.colmap.num_starts < 1:
        raise bad("--starts", cfg.colmap.num_starts, "an integer >= 1")
    if cfg.colmap.max_features < 16:
        raise bad("--max-features", cfg.colmap.max_features, "an integer >= 16")
    if cfg.colmap.camera_model not in CAMERA_MODELS:
        raise bad("--camera-model", cfg.colmap.camera_model, " or ".join(CAMERA_MODELS))
    if cfg.focal_px is not None and not (math.isfinite(cfg.focal_px) and cfg.focal_px > 0):
        raise bad("--focal", cfg.focal_px, "a focal length in pixels > 0")
    for option, value in (("--hand-margin", cfg.hand_margin_px), ("--edge-margin", cfg.edge_margin_px),
                          ("crop_margin_px", cfg.crop_margin_px)):
        if not value >= 0:
            raise bad(option, value, "a margin in pixels >= 0")
    if cfg.min_track_length < 2:
        raise bad("--min-track-length", cfg.min_track_length, "an integer >= 2 (a point needs two views)")


@dataclass
class _MaskStats:
    """What the mask pass saw per frame."""

    boxes: list[tuple[int, int, int, int] | None] = field(default_factory=list)
    object_px: list[int] = field(default_factory=list)
    usable_px: list[int] = field(default_factory=list)
    packed: list[np.ndarray] = field(default_factory=list)


def _scan_masks(seq_dir: Path, names: list[str], size: tuple[int, int], cfg: SfmConfig, progress: bool) -> _MaskStats:
    """Read every label mask, derive the COLMAP mask (kept bit-packed) and its box."""
    if not (seq_dir / MASKS_DIR).is_dir():
        raise SequenceError(seq_dir / MASKS_DIR, None, message="folder not found (SfM runs on the object's pixels)",
                            fix=FIX_MASKS)
    stats = _MaskStats()
    for name in track(names, "sfm: masks", total=len(names), enabled=progress):
        labels = read_labels(seq_dir / MASKS_DIR / name, size)
        keep = colmap_mask(labels, cfg.hand_margin_px, cfg.edge_margin_px)
        stats.boxes.append(mask_bbox(keep))
        stats.object_px.append(int((labels == OBJECT).sum()))
        stats.usable_px.append(int(keep.sum()))
        stats.packed.append(np.packbits(keep))
    T = len(names)
    if not any(stats.object_px):
        raise SequenceError(seq_dir / MASKS_DIR, None,
                            message=f"has no object pixels: no pixel is labelled object (1) in any of the {T} masks, "
                                    "so there is nothing for SfM to reconstruct",
                            fix="re-run `hold preprocess masks` with the object's masks (e.g. --object DIR)")
    if not any(stats.usable_px):
        raise SequenceError(seq_dir / MASKS_DIR, None,
                            message=f"leaves no object pixels for SfM: every object pixel of the {T} masks is within "
                                    f"--hand-margin {cfg.hand_margin_px} px of a hand or --edge-margin "
                                    f"{cfg.edge_margin_px} px of the background",
                            fix="lower --hand-margin / --edge-margin, or check the masks (is the object labelled 1?)")
    return stats


def _write_colmap_inputs(
    seq_dir: Path, names: list[str], size: tuple[int, int], box: tuple[int, int, int, int], stats: _MaskStats,
    image_dir: Path, mask_dir: Path, progress: bool,
) -> None:
    """Cropped frames and their COLMAP masks (`<image name>.png`, white = keep) into the work folder."""
    W, H = size
    x0, y0, x1, y1 = box
    image_dir.mkdir(parents=True)
    mask_dir.mkdir(parents=True)
    for name, packed in track(list(zip(names, stats.packed)), "sfm: cropping frames", total=len(names),
                              enabled=progress):
        keep = np.unpackbits(packed, count=W * H).reshape(H, W).astype(bool)
        with Image.open(seq_dir / IMAGES_DIR / name) as im:
            rgb = np.asarray(im.convert("RGB"))
        if (rgb.shape[1], rgb.shape[0]) != size:
            raise SequenceError(seq_dir / IMAGES_DIR / name, None, found=f"size {rgb.shape[1]}x{rgb.shape[0]}",
                                expected=f"{W}x{H} like {names[0]}", fix=FIX_FRAMES)
        write_image(image_dir / name, np.ascontiguousarray(rgb[y0:y1, x0:x1]))
        Image.fromarray((keep[y0:y1, x0:x1] * np.uint8(255))).save(mask_dir / f"{name}.png", compress_level=1)


def _write_qa(
    seq_dir: Path, names: list[str], K: np.ndarray, track_: ObjectTrack, num_points: int, title: str,
    num_tiles: int = 8,
) -> None:
    """Reprojected SfM points (green on registered frames, yellow on interpolated ones) over a few frames."""
    T = len(names)
    idx = np.unique(np.linspace(0, T - 1, min(num_tiles, T)).round().astype(int))
    tiles, caps = [], []
    for t in idx:
        with Image.open(seq_dir / IMAGES_DIR / names[t]) as im:
            rgb = np.asarray(im.convert("RGB"))
        mask_path = seq_dir / MASKS_DIR / names[t]
        if mask_path.is_file():
            with Image.open(mask_path) as im:
                rgb = overlay_labels(rgb, np.asarray(im), alpha=0.25)
        uv, front = project_points(K, track_.T_cam_from_obj[t], track_.scale, track_.points)
        H, W = rgb.shape[:2]
        inside = front & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        img = Image.fromarray(rgb)
        draw = ImageDraw.Draw(img)
        rad = max(1.0, max(W, H) / 320)
        colour = (40, 255, 60) if track_.valid[t] else (255, 230, 40)
        for u, v in uv[inside]:
            draw.ellipse((u - rad, v - rad, u + rad, v + rad), fill=colour)
        tiles.append(np.asarray(img))
        caps.append(f"#{t} {'registered' if track_.valid[t] else 'interpolated'}, {int(inside.sum())}/{num_points} pts")
    write_image(seq_dir / QA_PATH, contact_sheet(tiles, caps, title))


def run_sfm(seq_dir: Path | str, cfg: SfmConfig | None = None, force: bool = False,
            progress: bool = True) -> StepRecord | None:
    """Run the sfm step; returns its record, or None when it was skipped (up to date)."""
    seq_dir = Path(seq_dir)
    cfg = cfg or SfmConfig()
    _check_config(cfg, seq_dir)
    names, size = list_frames(seq_dir)
    T = len(names)
    W, H = size
    colmap_cfg = dataclasses.replace(cfg.colmap, matcher=resolve_matcher(cfg.matcher, T, cfg.exhaustive_max_frames))
    options = dataclasses.asdict(dataclasses.replace(cfg, colmap=colmap_cfg))
    options.pop("keep_work")  # where the work files go does not change the result
    inputs = [seq_dir / IMAGES_DIR, seq_dir / MASKS_DIR]
    fp = fingerprint(inputs, options, root=seq_dir)
    if should_skip(seq_dir, STEP, fp, force):
        return None

    t0 = time.perf_counter()
    stats = _scan_masks(seq_dir, names, size, cfg, progress)
    box = crop_box(stats.boxes, cfg.crop_margin_px, W, H)
    x0, y0, x1, y1 = box
    work = seq_dir / WORK_DIR
    shutil.rmtree(work, ignore_errors=True)  # a stale database would silently reuse old features
    remove_record(seq_dir, STEP)
    t1 = time.perf_counter()

    if colmap_cfg.first_octave is None:
        colmap_cfg.first_octave = -1 if max(x1 - x0, y1 - y0) < cfg.upsample_below_px else 0
    f0 = cfg.focal_px if cfg.focal_px is not None else 1.2 * max(W, H)
    cx, cy = W / 2.0 - x0, H / 2.0 - y0  # the image centre, in the crop's pixels
    params = [f0, cx, cy] if colmap_cfg.camera_model == "SIMPLE_PINHOLE" else [f0, f0, cx, cy]
    _say(f"{T} frames {W}x{H}, SfM on the crop x {x0}..{x1}, y {y0}..{y1}; {colmap_cfg.matcher} matching")
    try:
        _write_colmap_inputs(seq_dir, names, size, box, stats, work / "images", work / "masks", progress)
        res: ColmapResult = run_colmap(work / "images", work / "masks", names, work, params, colmap_cfg, say=_say)
    finally:
        if not cfg.keep_work:  # copies of the inputs; the database and the models stay for inspection
            shutil.rmtree(work / "images", ignore_errors=True)
            shutil.rmtree(work / "masks", ignore_errors=True)
    t2 = time.perf_counter()

    n_reg = int(res.registered.sum())
    object_frames = int(sum(n > 0 for n in stats.usable_px))
    if n_reg < max(2, math.ceil(cfg.min_registered * T)):
        raise SequenceError(
            seq_dir / IMAGES_DIR, None,
            message=explain_failure(n_reg, T, cfg.min_registered, res.keypoints, res.matched_pairs, object_frames),
            fix="film the object turning slowly in front of the camera at a higher resolution (--max-side of "
                "`hold preprocess frames`), check masks/ (qa/masks.png), or lower --min-registered")

    span = rotation_span_deg(res.cam_from_world[res.registered, :3, :3])
    if span < cfg.min_rotation_deg:
        raise SequenceError(
            seq_dir / IMAGES_DIR, None,
            message=f"SfM registered {n_reg} of {T} frames, but the object turns by only {span:.1f} degrees over them "
                    f"(--min-rotation {cfg.min_rotation_deg:g}): too little rotation of the object, the views are too "
                    "alike to triangulate its shape",
            fix="film the object turning (at least ~20-30 degrees over the clip), or lower --min-rotation")

    # Canonical cloud and the object track.
    keep = select_points(res.points, res.point_errors, res.track_lengths, cfg.min_track_length,
                         cfg.max_point_error_px, cfg.keep_percentile)
    if keep.sum() < MIN_POINTS:
        raise SequenceError(
            seq_dir / IMAGES_DIR, None,
            message=f"SfM registered {n_reg} of {T} frames but only {int(keep.sum())} of its {len(res.points)} points "
                    f"are seen in >= {cfg.min_track_length} frames with error <= {cfg.max_point_error_px} px "
                    f"(need {MIN_POINTS})",
            fix="use higher-resolution frames or a more textured object; or relax --min-track-length")
    centre, radius, x_obj = normalize_points(res.points[keep], cfg.radius_margin)
    T_cam_from_obj = object_track(res.cam_from_world, res.registered, centre)
    K = res.K.copy()
    K[0, 2] += x0  # back from the crop's pixels to those of images/
    K[1, 2] += y0
    obj = ObjectTrack(T_cam_from_obj=T_cam_from_obj.astype(np.float32), scale=radius,
                      points=x_obj.astype(np.float32), valid=res.registered.copy())
    arrays = {"T_cam_from_obj": obj.T_cam_from_obj, "scale": np.asarray(obj.scale, np.float32),
              "points": obj.points, "valid": obj.valid}
    check_object_arrays(arrays, T, seq_dir / OBJECT_NPZ, ProblemLog(fail_fast=True))  # never write a bad file
    atomic_write_npz(seq_dir / OBJECT_NPZ, arrays)
    t3 = time.perf_counter()

    unregistered = [int(i) for i in np.flatnonzero(~res.registered)]
    f_rel = K[0, 0] / f0 - 1.0
    title = (f"sfm: {n_reg}/{T} frames registered, {int(keep.sum())} points, reprojection "
             f"{res.mean_reprojection_error:.2f} px, f {K[0, 0]:.1f} px; green registered, yellow interpolated")
    _write_qa(seq_dir, names, K, obj, int(keep.sum()), title)
    t4 = time.perf_counter()

    warns = []
    if unregistered:
        warns.append(f"{len(unregistered)} of {T} frames did not register and were interpolated "
                     f"(valid = False): {unregistered[:20]}{' ...' if len(unregistered) > 20 else ''}")
    if unregistered and len(res.model_sizes) > 1:
        warns.append(f"SfM split the frames into {len(res.model_sizes)} models {res.model_sizes} (registered frames "
                     "each); only the largest is used: the object may turn too fast between some frames")
    if abs(f_rel) > 0.5:
        warns.append(f"the estimated focal length {K[0, 0]:.1f} px is {100 * f_rel:+.0f} % off the initial guess "
                     f"{f0:.1f} px: check qa/sfm.png, or pass --focal if it is known")
    for w in warns:
        _say(f"warning: {w}")
    timings = {"masks": t1 - t0, **res.timings, "crop_and_colmap": t2 - t1, "track_write": t3 - t2, "qa": t4 - t3,
               "total": t4 - t0}
    info = {
        "K": K.tolist(),
        "image_size": [W, H],
        "camera_model": colmap_cfg.camera_model,
        "focal_init_px": f0,
        "num_frames": T,
        "num_registered": n_reg,
        "rotation_span_deg": span,
        "registered": res.registered.tolist(),
        "unregistered_frames": unregistered,
        "num_points": int(keep.sum()),
        "num_points_sfm": int(len(res.points)),
        "mean_reprojection_error_px": res.mean_reprojection_error,
        "kept_points_error_px": float(np.mean(res.point_errors[keep])),
        "keypoints_per_frame": res.keypoints.tolist(),
        "mean_keypoints": float(np.mean(res.keypoints)),
        "matched_pairs": res.matched_pairs,
        "matcher": colmap_cfg.matcher,
        "sift_first_octave": colmap_cfg.first_octave,
        "mapper": res.mapper,
        "model_sizes": res.model_sizes,
        "mapping_runs": res.run_summaries,
        "crop_box": list(box),
        "object_px_per_frame": stats.object_px,
        "sfm_centre": centre.tolist(),
        "sfm_radius": radius,
        "units": "SfM units (arbitrary scale); `hold preprocess align` makes them metres",
    }
    rec = write_record(seq_dir, STEP, fp, options=options, inputs=inputs, outputs=[OBJECT_NPZ, QA_PATH], info=info,
                       estimated=["object", "intrinsics"], warnings=warns, timings=timings)
    print(f"hold preprocess sfm: {n_reg}/{T} frames registered, {int(keep.sum())} points, reprojection error "
          f"{res.mean_reprojection_error:.2f} px, f = {K[0, 0]:.1f} px; wrote {seq_dir / OBJECT_NPZ} "
          f"in {t4 - t0:.1f} s (extract {res.timings['extract']:.1f} s, match {res.timings['match']:.1f} s, "
          f"map {res.timings['map']:.1f} s)")
    return rec


def load_intrinsics(seq_dir: Path | str) -> Float[np.ndarray, "3 3"] | None:
    """The K estimated by the sfm step (pixels of images/), or None when the step has not run."""
    rec = load_record(seq_dir, STEP)
    return None if rec is None else np.asarray(rec.info["K"], dtype=np.float64)


def build_parser() -> argparse.ArgumentParser:
    d, c = SfmConfig(), ColmapConfig()
    p = argparse.ArgumentParser(
        prog="hold preprocess sfm",
        description="Object pose per frame + canonical point cloud by SfM (pycolmap SIFT) on the object's pixels; "
                    "writes SEQ_DIR/object.npz, qa/sfm.png and the intrinsics K in preprocess/sfm.json.")
    p.add_argument("seq_dir", type=Path, metavar="SEQ_DIR", help="the sequence folder (images/ and masks/)")
    p.add_argument("--matcher", default=d.matcher, choices=("auto", "exhaustive", "sequential"),
                   help=f"auto: exhaustive up to {d.exhaustive_max_frames} frames, else sequential (default auto)")
    p.add_argument("--mapper", default=c.mapper, choices=MAPPERS,
                   help="auto (default): global (GLOMAP) and incremental runs, the best fitting is kept; or one kind")
    p.add_argument("--overlap", type=int, default=c.overlap, help="sequential matching: frames ahead (default 10)")
    p.add_argument("--min-registered", type=float, default=d.min_registered, metavar="FRAC",
                   help="stop unless this fraction of the frames registers (default %(default)s)")
    p.add_argument("--max-features", type=int, default=c.max_features, help="SIFT keypoints per image (default 4096)")
    p.add_argument("--camera-model", default=c.camera_model, choices=CAMERA_MODELS, help="shared camera model")
    p.add_argument("--min-rotation", type=float, default=d.min_rotation_deg, metavar="DEG",
                   help="stop unless the object turns by at least this much over the registered frames "
                        "(default %(default)s)")
    p.add_argument("--focal", type=float, default=None, metavar="PX",
                   help="initial focal length in pixels (default: 1.2 x the longer image side)")
    p.add_argument("--hand-margin", type=float, default=d.hand_margin_px, metavar="PX",
                   help="mask out object pixels this close to a hand (default %(default)s)")
    p.add_argument("--edge-margin", type=float, default=d.edge_margin_px, metavar="PX",
                   help="mask out object pixels this close to the background (default %(default)s)")
    p.add_argument("--min-track-length", type=int, default=d.min_track_length,
                   help="drop points seen in fewer frames (default %(default)s)")
    p.add_argument("--threads", type=int, default=c.num_threads, help="CPU threads (-1: all)")
    p.add_argument("--seed", type=int, default=c.seed, help="random seed of COLMAP")
    p.add_argument("--starts", type=int, default=c.num_starts,
                   help="incremental mapping runs (seeds), besides the one global run (default %(default)s)")
    p.add_argument("--keep-work", action="store_true", help="keep the cropped frames and COLMAP masks")
    p.add_argument("--force", action="store_true", help="redo even if the step is up to date")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    colmap = ColmapConfig(mapper=args.mapper, overlap=args.overlap, max_features=args.max_features,
                          camera_model=args.camera_model, num_threads=args.threads, seed=args.seed,
                          num_starts=args.starts)
    cfg = SfmConfig(matcher=args.matcher, min_registered=args.min_registered, min_rotation_deg=args.min_rotation,
                    focal_px=args.focal, hand_margin_px=args.hand_margin, edge_margin_px=args.edge_margin,
                    min_track_length=args.min_track_length, keep_work=args.keep_work, colmap=colmap)
    run_sfm(args.seq_dir, cfg, force=args.force, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
