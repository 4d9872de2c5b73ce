"""`hold preprocess masks SEQ_DIR --estimate [--box X0 Y0 X1 Y1 | --first-mask PNG]`: the built-in fallback when
no masks were made elsewhere. Writes what the importer (preprocess/masks.py) writes: SEQ_DIR/masks/000000.png ...
(0 background, 1 object, 2 right hand, 3 left hand, 255 ignore), qa/masks.png and the step record, whose
`estimated` is ["masks"].

- Hands: when SEQ_DIR/hands.npz exists (the hands step ran), the fitted hand-model mesh of each frame is projected
  with K (sequence.json, else the hands step's record) and rasterised: its silhouette is the hand label, and a band
  around its outline is ignore (255): the fitted hand is only approximately where the real one is.
- Object: frame 0 from the user's first-frame mask, or GrabCut in the user's box, or GrabCut seeded next to the hand:
  pixels of the hand's silhouette and of its convex hull (what the fingers enclose) whose colour is unlike the skin
  (the dominant colour of the hand's core) are probable object, the skin is background. Then frame by frame: the
  previous mask is carried along the backward optical flow, its dilation is GrabCut's 'probable foreground', its
  erosion minus the hand 'sure foreground', the rest background. The rasterised hand is amodal (it includes fingers
  hidden behind the object), so where GrabCut finds the object's colours on it the object wins. Pixels of the
  probable band whose colour does not decide (|log-likelihood ratio| small) become 255, and so does a thin band on
  the object's outline.
- Tracking loss: a GrabCut result whose area jumps by more than `max_area_change` against the warped previous mask is
  rejected (the warped mask is kept, its probable band ignored); when the object's area collapses or explodes
  against the first frame's, tracking is lost: the hand seed restarts it where there is a hand, otherwise the rest of
  the frames are ignore (255) outside the hands, and the step says so.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Bool, Float, Int, UInt8

from hold.data.errors import SequenceError
from hold.data.io import write_image, write_mask
from hold.data.schema import HAND_SIDES, HANDS_NPZ, IMAGES_DIR, LABELS, MASKS_DIR, SEQUENCE_JSON
from hold.progress import track
from hold.synth.preview import overlay_labels
from preprocess import mask_track as mt
from preprocess.frames import contact_sheet, read_rgb
from preprocess.masks import QA_PATH, STEP, binarize, boundary_band, frame_stems, image_size, is_clean_rescale, \
    read_mask_values, resize_nearest
from preprocess.records import (
    fingerprint, load_record, output_fingerprint, remove_record, should_skip, staged_folder, write_record,
)

IGNORE = LABELS["ignore"]
OBJECT = LABELS["object"]
HANDS_RECORD = "preprocess/hands.json"
FIX_SEED = ("run `hold preprocess hands SEQ_DIR ...` first (the object is then sought next to the hand), or pass "
            "--box X0 Y0 X1 Y1 (a box around the object in the first frame, pixels of images/) or --first-mask PNG "
            "(the object's mask in the first frame)")
FIX_LOST = ("look at qa/masks.png; pass a tighter --box or a --first-mask, or make the masks elsewhere (SAM2) and "
            "import them with --object DIR")


@dataclass
class MaskEstimateConfig:
    """The built-in mask estimate: where the object starts, how it is tracked, what counts as low confidence."""

    box: tuple[float, float, float, float] | None = None
    """Box around the object in the first frame, (x0, y0, x1, y1) in pixels of images/ (continuous coordinates)."""
    first_mask: Path | None = None
    """Image of the object's mask in the first frame (object = nonzero, or >= `threshold` when it is not binary);
    at the frames' size or a clean rescale of it (e.g. the original video's)."""
    threshold: int = 128
    """Threshold of a non-binary first mask, 8-bit scale."""
    hand_model: str | None = None
    """Hand model of hands.npz ('anny' | 'mano'); None: the one sequence.json or the hands step names."""
    mano_dir: Path | None = None
    """Folder with MANO_RIGHT.pkl / MANO_LEFT.pkl when the hand model is 'mano'."""
    hand_band_frac: float = 0.012
    """Pixels within this fraction of the image's longer side from the fitted hand's outline -> ignore (255)."""
    sure_frac: float = 0.08
    """Erosion radius of the tracked mask giving GrabCut's 'sure foreground', as a fraction of the object's
    equivalent diameter (the diameter of a disk of its area)."""
    probable_frac: float = 0.06
    """Dilation radius of the tracked mask giving GrabCut's 'probable foreground' (fraction of the diameter)."""
    min_radius_px: float = 2.0
    """Smallest erosion / dilation radius (pixels)."""
    grabcut_iterations: int = 3
    """GrabCut iterations per frame."""
    grabcut_margin_px: int = 16
    """Background context around the seed box GrabCut sees (pixels)."""
    confidence_llr: float = 1.0
    """Probable-band pixels whose colour log-likelihood ratio (object vs background, nats) is below this in
    magnitude -> ignore (255)."""
    boundary_band_px: float = 1.0
    """Pixels within this distance of the object's outline (both sides, pixels) -> ignore (255); 0 = none."""
    max_area_change: float = 2.0
    """A frame's GrabCut result whose area differs from the warped previous mask's by more than this factor is
    rejected (the warped mask is used, its probable band ignored)."""
    lost_area_ratio: float = 0.2
    """Tracking is lost when the object's area falls below this fraction of the first frame's, or exceeds its
    inverse times it."""
    min_area_px: int = 16
    """An object region smaller than this (pixels) counts as no object."""
    flow_window_px: int = 15
    """Averaging window of the Farneback optical flow (pixels)."""


# ----------------------------------------------------------------------------------------------
# Inputs


@dataclass
class HandSilhouettes:
    """The fitted hands of SEQ_DIR, posed per frame, and the camera they project with."""

    K: Float[np.ndarray, "3 3"]
    """Intrinsics (pixels of images/)."""
    K_source: str
    """Where K came from."""
    vertices: dict[str, Float[np.ndarray, "T V 3"]]
    """Posed vertices per side (camera frame, metres)."""
    faces: dict[str, Int[np.ndarray, "F 3"]]
    """Triangles per side."""
    valid: dict[str, Bool[np.ndarray, " T"]]
    """Frames where the hand estimate was observed (not interpolated)."""
    model: str
    """Hand model name."""

    def silhouette(self, side: str, t: int, size: tuple[int, int]) -> Bool[np.ndarray, "H W"]:
        uv, _ = mt.project_points(self.K, self.vertices[side][t])
        return mt.rasterize_silhouette(uv, self.faces[side], size)


def _camera_and_model(seq_dir: Path, size: tuple[int, int]) -> tuple[np.ndarray, str, str | None]:
    """(K, where it came from, hand model name or None) of the current hands.npz: the align step's K while its
    outputs are untouched (align re-fits the hands under the SfM camera and sequence.json waits for build), else
    sequence.json's, else the hands step's record's."""
    align = load_record(seq_dir, "align")
    if align is not None and "K" in align.info and \
            output_fingerprint(seq_dir, align.outputs) == align.output_fingerprint:
        W, H = align.info.get("image_size") or size
        if (int(W), int(H)) == tuple(size):
            return np.asarray(align.info["K"], np.float64), "preprocess/align.json", align.info.get("hand_model")
    meta_path = seq_dir / SEQUENCE_JSON
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            K = np.asarray(meta["K"], np.float64)
            W, H = meta.get("image_size", size)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SequenceError(meta_path, "K", message=f"cannot be read ({e})",
                                fix="re-run `hold preprocess hands` (or `hold preprocess build`)") from None
        source, model = "sequence.json", meta.get("hand_model")
    else:
        rec = load_record(seq_dir, "hands")
        fields = (rec.info.get("sequence_fields") or {}) if rec is not None else {}
        if "K" not in fields:
            raise SequenceError(seq_dir / HANDS_NPZ, None,
                                message="has no camera: neither sequence.json nor the hands step's record "
                                        f"({HANDS_RECORD}) gives K, so the hands cannot be projected",
                                fix="re-run `hold preprocess hands SEQ_DIR ...`")
        K = np.asarray(fields["K"], np.float64)
        W, H = fields.get("image_size", size)
        source, model = HANDS_RECORD, fields.get("hand_model")
    if K.shape != (3, 3) or not np.isfinite(K).all():
        raise SequenceError(seq_dir / source, "K", found=f"shape {K.shape}", expected="a finite 3x3 matrix",
                            fix="re-run `hold preprocess hands SEQ_DIR ...`")
    if (int(W), int(H)) != tuple(size):
        raise SequenceError(seq_dir / source, "image_size", found=f"{W}x{H}", expected=f"{size[0]}x{size[1]} (images/)",
                            fix="re-run `hold preprocess hands` on the current frames")
    return K, source, model


def load_hand_silhouettes(
    seq_dir: Path, cfg: MaskEstimateConfig, T: int, size: tuple[int, int]
) -> HandSilhouettes | None:
    """The fitted hands of SEQ_DIR/hands.npz posed per frame, or None when the file does not exist."""
    path = seq_dir / HANDS_NPZ
    if not path.is_file():
        return None
    import torch  # the hand model is built only when there are hands (keeps `hold preprocess masks` light)

    from hold.hands import load_hand_model

    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise SequenceError(path, None, message=f"cannot be read ({e})", fix="re-run `hold preprocess hands`") from None
    sides = [s for s in HAND_SIDES if f"{s}/global_orient" in arrays]
    if not sides:
        raise SequenceError(path, "right/global_orient", message="holds no hand (no '<side>/global_orient' array)",
                            fix="re-run `hold preprocess hands`")
    K, K_source, model_name = _camera_and_model(seq_dir, size)
    model_name = cfg.hand_model or model_name or "anny"
    verts, faces, valid = {}, {}, {}
    for side in sides:
        p = {k: arrays.get(f"{side}/{k}") for k in ("global_orient", "hand_pose", "betas", "transl", "valid")}
        for k in ("global_orient", "hand_pose", "betas", "transl"):
            if p[k] is None:
                raise SequenceError(path, f"{side}/{k}", message="is missing", fix="re-run `hold preprocess hands`")
        if len(p["global_orient"]) != T or len(p["transl"]) != T:
            raise SequenceError(path, f"{side}/global_orient", found=f"{len(p['global_orient'])} frames",
                                expected=f"{T} (images/)", fix="re-run `hold preprocess hands` on the current frames")
        try:
            model = load_hand_model(model_name, side, cfg.mano_dir)
        except (ValueError, OSError) as e:
            raise SequenceError(path, None,
                                message=f"needs the hand model {model_name!r}, which cannot be loaded ({e})",
                                fix="pass --hand-model / --mano-dir") from None
        betas = np.asarray(p["betas"], np.float32)
        betas = np.broadcast_to(betas.reshape(1, -1) if betas.ndim == 1 else betas, (T, betas.shape[-1]))
        with torch.no_grad():
            out = model(torch.as_tensor(np.asarray(p["global_orient"], np.float32)),
                        torch.as_tensor(np.asarray(p["hand_pose"], np.float32)),
                        torch.as_tensor(np.ascontiguousarray(betas)),
                        torch.as_tensor(np.asarray(p["transl"], np.float32)))
        verts[side] = out.vertices.numpy().astype(np.float64)
        faces[side] = model.faces.numpy()
        valid[side] = np.ones(T, bool) if p["valid"] is None else np.asarray(p["valid"], bool)
    return HandSilhouettes(K=K, K_source=K_source, vertices=verts, faces=faces, valid=valid, model=model_name)


def read_first_mask(path: Path, size: tuple[int, int], threshold: int) -> Bool[np.ndarray, "H W"]:
    """The user's first-frame object mask at the frames' size (nearest-neighbour rescale of a clean rescale)."""
    if not path.is_file():
        raise SequenceError(path, "--first-mask", message="file not found", fix="check the path")
    values, _ = read_mask_values(path)
    mask, _ = binarize(values, threshold)
    s = image_size(path)
    if s != tuple(size):
        if not is_clean_rescale(s, size):
            raise SequenceError(path, "--first-mask", found=f"size {s[0]}x{s[1]}",
                                expected=f"{size[0]}x{size[1]} like the frames, or a rescale of it (same aspect ratio)",
                                fix="save the mask at the frames' (or the original video's) resolution")
        mask = resize_nearest(mask.astype(np.uint8), size).astype(bool)
    if mask.sum() == 0:
        raise SequenceError(path, "--first-mask", message="has no object pixels (all zero)",
                            fix="pass the object's mask in the first frame (nonzero = object)")
    return mask


def _check_config(cfg: MaskEstimateConfig, seq_dir: Path, size: tuple[int, int]) -> None:
    if cfg.box is not None and cfg.first_mask is not None:
        raise SequenceError(seq_dir, "--box", message="was given together with --first-mask",
                            fix="pass one of them: --box X0 Y0 X1 Y1 or --first-mask PNG")
    if cfg.box is not None:
        W, H = size
        x0, y0, x1, y1 = (float(v) for v in cfg.box)
        if not (0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H) or min(x1 - x0, y1 - y0) < 2:
            raise SequenceError(seq_dir, "--box", found=f"{x0:g} {y0:g} {x1:g} {y1:g}",
                                expected=f"X0 Y0 X1 Y1 with 0 <= X0 < X1 <= {W}, 0 <= Y0 < Y1 <= {H}, at least 2 px "
                                         "each way (pixels of images/)",
                                fix="give the object's box in the first frame of images/")
    for name, value, ok in (("--hand-band", cfg.hand_band_frac, cfg.hand_band_frac >= 0),
                            ("--ignore-band", cfg.boundary_band_px, cfg.boundary_band_px >= 0),
                            ("--max-area-change", cfg.max_area_change, cfg.max_area_change > 1),
                            ("lost_area_ratio", cfg.lost_area_ratio, 0 < cfg.lost_area_ratio < 1),
                            ("--threshold", cfg.threshold, 0 < cfg.threshold <= 255)):
        if not ok:
            raise SequenceError(seq_dir, name, found=str(value), expected="a value in range (see --help)",
                                fix=f"pass a valid {name} or leave the default")


# ----------------------------------------------------------------------------------------------
# Tracking


@dataclass
class _FrameResult:
    """The object estimate of one frame."""

    object: Bool[np.ndarray, "H W"]
    """Pixels decided object (before the hands and ignore bands are applied)."""
    low_confidence: Bool[np.ndarray, "H W"]
    """Pixels whose decision is uncertain -> 255."""
    status: str
    """'first mask' | 'box' | 'hand seed' | 'tracked' | 'rejected' | 'lost'."""
    note: str = ""


class ObjectTracker:
    """Frame-by-frame object mask: seed on frame 0, then flow-warped previous mask refined by GrabCut."""

    def __init__(self, cfg: MaskEstimateConfig, hand_band_px: float):
        self.cfg = cfg
        self.hand_band_px = hand_band_px
        self.prev_gray: np.ndarray | None = None
        self.prev_object: np.ndarray | None = None
        self.ref_area = 0

    def _grabcut(self, rgb, classes, seed) -> tuple[np.ndarray, np.ndarray]:
        fg, llr = mt.grabcut(rgb, classes, self.cfg.grabcut_iterations, self.cfg.grabcut_margin_px)
        fg = mt.keep_seeded_components(fg, seed) if fg.any() else fg
        probable = np.isin(classes, (mt.GC_PR_FGD, mt.GC_PR_BGD))
        return fg, probable & (np.abs(llr) < self.cfg.confidence_llr)

    def seed(self, rgb, hand, first_mask, box) -> _FrameResult:
        """Frame 0 (or a restart from the hand)."""
        cfg = self.cfg
        if first_mask is not None:
            obj, low, status = first_mask, np.zeros_like(hand), "first mask"
        elif box is not None:
            classes = mt.seed_from_box(box, (hand.shape[1], hand.shape[0]), hand)
            obj, low = self._grabcut(rgb, classes, classes == mt.GC_PR_FGD)
            status = "box"
        else:
            classes, enclosed = mt.seed_from_hand(rgb, hand, self.hand_band_px)
            if enclosed.sum() < cfg.min_area_px:
                return _FrameResult(np.zeros_like(hand), np.zeros_like(hand), "lost",
                                    "no pixel next to the hand has colours unlike the skin")
            obj, low = self._grabcut(rgb, classes, enclosed)
            status = "hand seed"
        if obj.sum() < cfg.min_area_px:
            return _FrameResult(np.zeros_like(hand), np.zeros_like(hand), "lost", f"{status}: no object found")
        self.ref_area = int(obj.sum())
        self.prev_object = obj
        return _FrameResult(obj, low, status)

    def step(self, rgb, hand) -> _FrameResult:
        """A later frame: propagate the previous mask and refine it."""
        cfg = self.cfg
        gray = mt.to_gray(rgb)
        prev_gray, self.prev_gray = self.prev_gray, gray
        if self.prev_object is None or prev_gray is None:
            return _FrameResult(np.zeros_like(hand), np.zeros_like(hand), "lost")
        flow = mt.backward_flow(gray, prev_gray, cfg.flow_window_px)
        warped = mt.warp_mask(self.prev_object, flow)
        area_w = int(warped.sum())
        if not self._area_ok(area_w):
            self.prev_object = None
            return _FrameResult(np.zeros_like(hand), np.zeros_like(hand), "lost",
                                f"warped area {area_w} px vs {self.ref_area} px in the first frame")
        d = mt.equivalent_diameter(warped)
        r_sure = max(cfg.min_radius_px, cfg.sure_frac * d)
        r_prob = max(cfg.min_radius_px, cfg.probable_frac * d)
        classes = mt.seed_from_mask(warped, hand, r_sure, r_prob)
        fg, low = self._grabcut(rgb, classes, classes == mt.GC_FGD)
        ratio = fg.sum() / max(1, area_w)
        if not (1.0 / cfg.max_area_change <= ratio <= cfg.max_area_change) or not self._area_ok(int(fg.sum())):
            # GrabCut jumped (colours of object and background alike): trust the flow, flag its whole band
            self.prev_object = warped
            return _FrameResult(warped, classes == mt.GC_PR_FGD, "rejected",
                                f"GrabCut area x{ratio:.2f} of the warped mask")
        self.prev_object = fg
        return _FrameResult(fg, low, "tracked")

    def _area_ok(self, area: int) -> bool:
        r = self.cfg.lost_area_ratio
        return area >= self.cfg.min_area_px and r * self.ref_area <= area <= self.ref_area / r

    def remember(self, rgb) -> None:
        self.prev_gray = mt.to_gray(rgb)


def compose_labels(
    obj: Bool[np.ndarray, "H W"], low: Bool[np.ndarray, "H W"], hands: dict[str, Bool[np.ndarray, "H W"]],
    boundary_band_px: float, hand_band_px: float, object_known: bool = True,
) -> UInt8[np.ndarray, "H W"]:
    """Label mask of one frame. The hands' silhouettes first (pixels of both hands and a band of `hand_band_px`
    around their outline -> 255: the fitted hand is approximate); then the object over them: the rasterised hand is
    amodal, and where GrabCut found the object's colours inside it the object is in front of the hand; then the
    object's low-confidence pixels and a band of `boundary_band_px` on its outline -> 255. An unknown object
    (tracking lost) makes every non-hand pixel 255."""
    labels = np.zeros(obj.shape, np.uint8) if object_known else np.full(obj.shape, IGNORE, np.uint8)
    any_hand = np.zeros(obj.shape, bool)
    for side, sil in hands.items():
        labels[sil] = LABELS[side]
        labels[sil & any_hand] = IGNORE
        any_hand |= sil
    labels[boundary_band(any_hand.astype(np.uint8), hand_band_px)] = IGNORE
    if object_known:
        labels[obj] = OBJECT
        labels[low] = IGNORE
        labels[boundary_band(obj.astype(np.uint8), boundary_band_px)] = IGNORE
    return labels


# ----------------------------------------------------------------------------------------------
# The step


def _options(cfg: MaskEstimateConfig) -> dict[str, Any]:
    opts = dataclasses.asdict(cfg)
    opts["first_mask"] = None if cfg.first_mask is None else str(Path(cfg.first_mask).resolve())
    opts["mano_dir"] = None if cfg.mano_dir is None else str(Path(cfg.mano_dir).resolve())
    opts["box"] = None if cfg.box is None else [float(v) for v in cfg.box]
    return {"mode": "estimate", **opts}


def _describe_runs(frames: list[int]) -> str:
    if not frames:
        return "none"
    runs, start = [], frames[0]
    for a, b in zip(frames, frames[1:] + [None]):
        if b != a + 1:
            runs.append(f"{start}" if start == a else f"{start}-{a}")
            if b is not None:
                start = b
    return ", ".join(runs[:10]) + (" ..." if len(runs) > 10 else "")


def run_mask_estimate(
    seq_dir: Path | str, cfg: MaskEstimateConfig | None = None, force: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Run the masks step with the built-in estimate; returns its record as a dict ('skipped': True when it was
    up to date)."""
    seq_dir = Path(seq_dir)
    cfg = cfg or MaskEstimateConfig()
    stems, size = frame_stems(seq_dir)
    T, (W, H) = len(stems), size
    _check_config(cfg, seq_dir, size)
    hands_path = seq_dir / HANDS_NPZ
    if not hands_path.is_file() and cfg.box is None and cfg.first_mask is None:
        raise SequenceError(hands_path, None, message="not found and neither --box nor --first-mask was given: the "
                                                      "mask estimate needs to know where the object is", fix=FIX_SEED)
    options = _options(cfg)
    inputs = [seq_dir / IMAGES_DIR, hands_path, seq_dir / SEQUENCE_JSON, seq_dir / HANDS_RECORD]
    if cfg.first_mask is not None:
        inputs.append(Path(cfg.first_mask))
    fp = fingerprint(inputs, options, root=seq_dir)
    if should_skip(seq_dir, STEP, fp, force):
        rec = load_record(seq_dir, STEP)
        return {**dataclasses.asdict(rec), "skipped": True}

    t0 = time.perf_counter()
    first_mask = None if cfg.first_mask is None else read_first_mask(Path(cfg.first_mask), size, cfg.threshold)
    hands = load_hand_silhouettes(seq_dir, cfg, T, size)
    hand_band_px = cfg.hand_band_frac * max(W, H)
    tracker = ObjectTracker(cfg, hand_band_px)
    t1 = time.perf_counter()

    status: list[str] = []
    notes: dict[int, str] = {}
    obj_px: list[int] = []
    ignore_px: list[int] = []
    hand_px: list[int] = []
    qa_idx = set(np.unique(np.linspace(0, T - 1, min(8, T)).round().astype(int)).tolist())
    qa_tiles: dict[int, np.ndarray] = {}
    t_hands = 0.0
    with staged_folder(seq_dir / MASKS_DIR) as tmp:
        for t in track(range(T), "masks: estimating", total=T, enabled=progress):
            rgb = read_rgb(seq_dir / IMAGES_DIR / f"{stems[t]}.png")
            th = time.perf_counter()
            sils = {} if hands is None else {s: hands.silhouette(s, t, size) for s in hands.vertices}
            t_hands += time.perf_counter() - th
            hand_any = np.zeros((H, W), bool)
            for s in sils.values():
                hand_any |= s
            if t == 0:
                res = tracker.seed(rgb, hand_any, first_mask, cfg.box)
                tracker.remember(rgb)
                if res.status == "lost":
                    what = ("the hand's enclosed region" if first_mask is None and cfg.box is None else
                            "--box" if cfg.box is not None else "--first-mask")
                    fix = FIX_SEED if hands is None else (
                        "hold reconstructs a hand together with an object it holds; if the video shows one, pass "
                        "--box X0 Y0 X1 Y1 (its box in the first frame, pixels of images/) or --first-mask PNG "
                        "(its mask in the first frame), or import masks made elsewhere (--labels / --object)")
                    raise SequenceError(seq_dir / IMAGES_DIR / f"{stems[0]}.png", None,
                                        message=f"has no object from {what} ({res.note})", fix=fix)
            else:
                res = tracker.step(rgb, hand_any)
                if res.status == "lost" and hands is not None and hand_any.any():
                    restart = tracker.seed(rgb, hand_any, None, None)  # the hand says where the object is
                    if restart.status != "lost":
                        res = dataclasses.replace(restart, status="hand seed", note=f"restarted ({res.note})")
            status.append(res.status)
            if res.note:
                notes[t] = res.note
            labels = compose_labels(res.object, res.low_confidence, sils, cfg.boundary_band_px, hand_band_px,
                                    object_known=res.status != "lost")
            counts = np.bincount(labels.ravel(), minlength=256)
            obj_px.append(int(counts[OBJECT]))
            ignore_px.append(int(counts[IGNORE]))
            hand_px.append(int(counts[LABELS["right"]] + counts[LABELS["left"]]))
            write_mask(tmp / f"{stems[t]}.png", labels)
            if t in qa_idx:
                qa_tiles[t] = overlay_labels(rgb, labels)
        remove_record(seq_dir, STEP)
    t2 = time.perf_counter()

    lost = [t for t, s in enumerate(status) if s == "lost"]
    rejected = [t for t, s in enumerate(status) if s == "rejected"]
    restarted = [t for t, s in enumerate(status) if s == "hand seed" and t > 0]
    warns = []
    if lost:
        first = lost[0]
        warns.append(f"object tracking lost in {len(lost)} of {T} frames ({_describe_runs(lost)}; frame {first}: "
                     f"{notes.get(first, 'area collapsed or exploded')}): their non-hand pixels are ignore (255). "
                     f"Fix: {FIX_LOST}")
    if rejected:
        warns.append(f"GrabCut was rejected in {len(rejected)} of {T} frames ({_describe_runs(rejected)}): its area "
                     f"jumped by more than x{cfg.max_area_change:g}; the flow-warped mask was used and its uncertain "
                     "band ignored")
    if restarted:
        warns.append(f"tracking restarted from the hand in frames {_describe_runs(restarted)}")
    for w in warns:
        print(f"hold preprocess masks: warning: {w}", file=sys.stderr)

    seed = status[0]
    seed_text = {"first mask": f"first-frame mask {cfg.first_mask}", "box": f"GrabCut in the box {list(cfg.box or [])}",
                 "hand seed": "GrabCut next to the fitted hand"}[seed]
    hand_text = (f"fitted {hands.model} hand mesh ({', '.join(hands.vertices)}) rasterised with K from {hands.K_source}"
                 if hands is not None else "no hands (no hands.npz)")
    description = (f"estimated: object from {seed_text}, tracked by optical flow + GrabCut; hands: {hand_text}; "
                   f"ignore: GrabCut low-confidence band, {cfg.boundary_band_px:g} px object outline, "
                   f"{hand_band_px:.1f} px hand outline")
    total = float(W * H)
    caps = [f"#{t} {status[t]} obj {100 * obj_px[t] / total:.1f}% ign {100 * ignore_px[t] / total:.1f}%"
            for t in sorted(qa_tiles)]
    hand_title = "hands from hands.npz" if hands is not None else "no hand"
    title = (f"masks ESTIMATED (not imported): {T} frames, object from {seed}, {hand_title}"
             f"; lost {len(lost)}, rejected {len(rejected)}; orange object, blue right, green left, grey ignore")
    write_image(seq_dir / QA_PATH, contact_sheet([qa_tiles[t] for t in sorted(qa_tiles)], caps, title))
    t3 = time.perf_counter()

    info: dict[str, Any] = {
        "source": description,
        "mode": "estimate",
        "seed": seed,
        "num_frames": T,
        "image_size": [W, H],
        "hands": None if hands is None else {"sides": list(hands.vertices), "model": hands.model,
                                             "K": hands.K.tolist(), "K_source": hands.K_source},
        "hand_band_px": hand_band_px,
        "frame_status": status,
        "frame_notes": {str(k): v for k, v in notes.items()},
        "lost_frames": lost,
        "rejected_frames": rejected,
        "object_px": obj_px,
        "ignore_px": ignore_px,
        "hand_px": hand_px,
        "label_fraction": {"object": float(np.mean(obj_px)) / total, "hand": float(np.mean(hand_px)) / total,
                           "ignore": float(np.mean(ignore_px)) / total},
        "frames_without_object": [t for t, n in enumerate(obj_px) if n == 0],
    }
    timings = {"load": t1 - t0, "hand_raster": t_hands, "estimate_write": t2 - t1, "qa": t3 - t2, "total": t3 - t0}
    rec = write_record(seq_dir, STEP, fp, options=options, inputs=inputs, outputs=[MASKS_DIR, QA_PATH], info=info,
                       estimated=["masks"], warnings=warns, timings=timings)
    print(f"hold preprocess masks: estimated {T} label masks {W}x{H} in {t3 - t0:.1f} s ({description}); object "
          f"{100 * info['label_fraction']['object']:.1f}%, ignore {100 * info['label_fraction']['ignore']:.1f}% of "
          f"pixels; {len(lost)} frames lost, {len(rejected)} rejected")
    return {**dataclasses.asdict(rec), "skipped": False}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The estimate's own options (shared with `hold preprocess masks --estimate`)."""
    d = MaskEstimateConfig()
    p.add_argument("--hand-band", type=float, default=d.hand_band_frac, metavar="FRAC",
                   help="ignore band around the fitted hand, fraction of the image's longer side (default %(default)s)")
    p.add_argument("--hand-model", choices=("anny", "mano"), default=None,
                   help="hand model of hands.npz (default: the one sequence.json / the hands step names)")
    p.add_argument("--mano-dir", type=Path, default=None, metavar="DIR", help="folder with MANO_RIGHT/LEFT.pkl")
    p.add_argument("--max-area-change", type=float, default=d.max_area_change,
                   help="reject a frame's GrabCut result whose area changes by more than this factor (default "
                        "%(default)s)")


def config_from_args(args: argparse.Namespace) -> MaskEstimateConfig:
    """MaskEstimateConfig from parsed options (this module's parser or `hold preprocess masks`)."""
    d = MaskEstimateConfig()
    band = getattr(args, "ignore_band", None)
    return MaskEstimateConfig(
        box=None if args.box is None else tuple(float(v) for v in args.box), first_mask=args.first_mask,
        threshold=args.threshold, hand_model=args.hand_model, mano_dir=args.mano_dir, hand_band_frac=args.hand_band,
        boundary_band_px=d.boundary_band_px if band is None else float(band), max_area_change=args.max_area_change)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hold preprocess masks SEQ_DIR --estimate",
        description="Estimate the label masks of SEQ_DIR without external masks: hands rasterised from the fitted "
                    "hand (hands.npz), the object by GrabCut seeded from --first-mask, --box or next to the hand, "
                    "tracked by optical flow.")
    p.add_argument("seq_dir", type=Path, metavar="SEQ_DIR", help="the sequence folder (with images/)")
    seed = p.add_mutually_exclusive_group()
    seed.add_argument("--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                      help="box around the object in the first frame (pixels of images/)")
    seed.add_argument("--first-mask", type=Path, metavar="PNG", help="the object's mask in the first frame")
    p.add_argument("--threshold", type=int, default=MaskEstimateConfig.threshold,
                   help="threshold of a non-binary --first-mask, 8-bit scale (default %(default)s)")
    p.add_argument("--ignore-band", type=float, default=None, metavar="PX",
                   help=f"ignore band on the object's outline (default {MaskEstimateConfig.boundary_band_px:g})")
    add_arguments(p)
    p.add_argument("--force", action="store_true", help="redo even if the masks are up to date")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_mask_estimate(args.seq_dir, config_from_args(args), force=args.force, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
