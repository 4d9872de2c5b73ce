"""`hold preprocess hands SEQ_DIR`: import per-frame hand estimates, fit the hand model, reject outliers,
fill the gaps, write hands.npz (+ sequence.json when the folder has one) and a QA picture.

    hold preprocess hands SEQ_DIR (--keypoints FILE | --mano-params FILE --mano-dir DIR | --detect)
                          [--side right|left] [--hand-model anny|mano] [--focal PX] [--force]

Inputs (SEQ_DIR): `sequence.json` when it exists (T, image size, K, hand model of the other hand),
else `images/000000.png ...` (T and the image size; K from --focal, else f = 1.2 * max(W, H),
principal point at the image centre); the estimate file (formats: preprocess/hand_import.py).

Outputs (SEQ_DIR):
- `hands.npz`: `<side>/global_orient, hand_pose, betas, transl, valid, keypoints_2d` (the contract's
  layout, hold.data); the other hand's arrays are kept. `valid` is false where the frame had no
  detection or was rejected as an outlier; those frames are SLERP/lerp-filled and their
  keypoints_2d confidences are 0.
- `sequence.json` (only when it already exists): `hands` gains the side, `hand_model` and
  `sources.hands` are set; K and everything else are left alone.
- `qa/hands.png`: detections (green) and the fitted hand reprojected (blue) on sample frames;
  red border = outlier, orange = no detection (interpolated).
- `preprocess/hands.json`: the step record (preprocess.records). Its `info.sides.<side>` holds this
  side's input fingerprint, the camera (K and where it came from), the hash of its hands.npz arrays,
  which frames were detected / outliers / interpolated, reprojection errors and the fit's loss
  terms; `info.sequence_fields` (num_frames, image_size, K, hands, hand_model, sources) are what
  `hold preprocess build` puts into sequence.json when this step ran before one existed.

A finished side with unchanged inputs and intact outputs is skipped (`--force` redoes it).
Bad input stops with one message naming the file and the field, before anything is written.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from PIL import Image, ImageDraw, ImageFont

from hold.data.errors import ProblemLog, SequenceError
from hold.data.io import atomic_write_json, atomic_write_npz, read_meta, read_npz, write_image
from hold.data.schema import (
    FIX_HANDS, HAND_MODELS, HAND_SIDES, HANDS_NPZ, IMAGES_DIR, SEQUENCE_JSON, check_hand_arrays, check_meta, frame_name,
)
from hold.hands import KEYPOINT_PARENTS, HandModel, load_hand_model
from hold.progress import track
from preprocess.hand_fit import FitError, HandFitConfig, HandFitResult, HandParams, fit_hand
from preprocess.hand_import import HandEstimates, HandInputError, read_keypoints, read_mano_params
from preprocess.masks import frame_stems
from preprocess.records import StepRecord, fingerprint, load_record, remove_record, to_jsonable, write_record

STEP = "hands"
QA_PATH = "qa/hands.png"
DEFAULT_FOCAL_SCALE = 1.2
"""Default focal length as a multiple of the image's larger side (~45 degree field of view)."""
QA_TILES = 8
QA_TILE_SIDE = 320


@dataclass
class HandsConfig:
    """`hold preprocess hands`: where the estimates come from, the camera, the hand model and the fit."""

    keypoints: str | None = None
    """Generic per-frame 2D/3D keypoints (.json or .npz)."""
    mano_params: str | None = None
    """HaMeR-style per-frame MANO parameters (.npz); needs mano_dir."""
    mano_dir: str | None = None
    """Folder with the user's MANO_RIGHT.pkl / MANO_LEFT.pkl."""
    side: str = "right"
    """Which hand the estimates are of: 'right' or 'left'."""
    hand_model: str | None = None
    """'anny' or 'mano'; None = sequence.json's when it lists hands, else 'anny'."""
    focal: float | None = None
    """Focal length in pixels when there is no sequence.json (default 1.2 x the larger image side)."""
    pixel_offset: float = 0.0
    """Added to 2D keypoints (pixels): 0.5 for detectors whose pixel centres are at integers."""
    keypoints_normalized: bool = False
    """2D keypoints are in [0, 1] (scaled by the image width and height)."""
    keypoints_3d: str = "auto"
    """3D keypoints: 'auto' (the file says metric or not), 'metric', 'scale-free' or 'ignore'."""
    mano_mean_pose: bool = False
    """The MANO hand_pose is relative to MANO's mean pose (smplx flat_hand_mean=False)."""
    force: bool = False
    """Redo the step even when its record says it is up to date."""
    progress: bool = True
    """Show a progress bar."""
    fit: HandFitConfig = field(default_factory=HandFitConfig)
    """The fit (loss weights, steps, outlier rule)."""


@dataclass
class SequenceInfo:
    """What the step needs to know about SEQ_DIR."""

    root: Path
    """SEQ_DIR."""
    num_frames: int
    """T."""
    width: int
    """Image width W (pixels)."""
    height: int
    """Image height H (pixels)."""
    K: np.ndarray
    """(3, 3) intrinsics in pixels of the frames in images/."""
    K_source: str
    """Where K came from (sequence.json, --focal, the default)."""
    meta_raw: dict | None
    """sequence.json as parsed, None when the folder has none yet."""


# ----------------------------------------------------------------------------------------------
# Sequence folder


def read_sequence_info(root: Path, focal: float | None) -> SequenceInfo:
    """T, image size and K of SEQ_DIR: from sequence.json, else from images/ and --focal / the default."""
    if not root.is_dir():
        raise SequenceError(root, None, message="folder not found", fix="pass the sequence folder (SEQ_DIR) that "
                            "`hold preprocess frames` wrote")
    if (root / SEQUENCE_JSON).is_file():
        log = ProblemLog(fail_fast=True)
        meta = read_meta(root, log)
        raw = json.loads((root / SEQUENCE_JSON).read_text(encoding="utf-8"))
        W, H = meta.image_size
        if focal is not None:
            print(f"hold preprocess hands: note: --focal {focal} is ignored, K comes from {root / SEQUENCE_JSON}",
                  file=sys.stderr)
        return SequenceInfo(root, meta.num_frames, W, H, np.asarray(meta.K, dtype=np.float64), "sequence.json", raw)
    stems, (W, H) = frame_stems(root)  # no sequence.json: T and the size from images/
    if focal is not None:
        if not (focal > 0 and np.isfinite(focal)):
            raise ValueError(f"--focal {focal}: expected a positive focal length in pixels")
        f, source = float(focal), f"--focal {focal:g}"
    else:
        f, source = DEFAULT_FOCAL_SCALE * max(W, H), f"default f = {DEFAULT_FOCAL_SCALE} * max(W, H)"
    K = np.array([[f, 0.0, W / 2.0], [0.0, f, H / 2.0], [0.0, 0.0, 1.0]])
    return SequenceInfo(root, len(stems), W, H, K, source + ", principal point at the image centre", None)


def _resolve_hand_model(cfg: HandsConfig, info: SequenceInfo) -> str:
    meta = info.meta_raw or {}
    others = [s for s in meta.get("hands", []) if s != cfg.side]
    name = cfg.hand_model or (meta.get("hand_model") if meta.get("hands") else None) or "anny"
    if name not in HAND_MODELS:
        raise ValueError(f"--hand-model {name!r}: expected one of {list(HAND_MODELS)}")
    if others and meta.get("hand_model") != name:
        raise SequenceError(info.root / SEQUENCE_JSON, "hand_model", found=f"'{meta.get('hand_model')}' for the "
                            f"{others[0]} hand", expected=f"'{name}' (one hand model for all hands of a sequence)",
                            fix=f"fit this hand with --hand-model {meta.get('hand_model')}, or re-run the {others[0]} "
                            f"hand with --hand-model {name}")
    return name


# ----------------------------------------------------------------------------------------------
# Fingerprints and the step record (preprocess.records; one record for the step, one entry per side)


def _side_digest(arrays: dict[str, np.ndarray], side: str) -> str:
    """Hash of one side's arrays in hands.npz (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256()
    for key in sorted(k for k in arrays if k.startswith(f"{side}/")):
        a = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{a.dtype}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def _options(cfg: HandsConfig, model_name: str) -> dict[str, Any]:
    opts = to_jsonable(cfg)
    for key in ("force", "progress"):
        opts.pop(key)
    opts["hand_model"] = model_name
    return opts


def _input_paths(cfg: HandsConfig, model_name: str) -> list[Path]:
    paths = [_estimate_file(cfg)]
    if cfg.mano_dir and (cfg.mano_params or model_name == "mano"):
        from hold.hands.mano_loader import find_mano_file

        for s in sorted({cfg.side, "right"}):  # the left model's correction reads the right one
            with contextlib.suppress(FileNotFoundError, ValueError):
                paths.append(find_mano_file(cfg.mano_dir, s))
    return paths


def _side_fingerprint(cfg: HandsConfig, info: SequenceInfo, model_name: str, options: dict[str, Any]) -> str:
    camera = {"num_frames": info.num_frames, "image_size": [info.width, info.height], "K": info.K.tolist()}
    return fingerprint(_input_paths(cfg, model_name), {**options, "sequence": camera}, root=info.root)


def _up_to_date(rec: StepRecord | None, cfg: HandsConfig, info: SequenceInfo, fp: str, model_name: str) -> bool:
    """This side finished with the same inputs and options, and its outputs are still what it wrote."""
    side = (rec.info.get("sides", {}) if rec is not None else {}).get(cfg.side)
    if not side or side.get("fingerprint") != fp:
        return False
    hands_path = info.root / HANDS_NPZ
    if not hands_path.is_file() or not (info.root / QA_PATH).is_file():
        return False
    arrays = read_npz(hands_path, ProblemLog(fail_fast=False), FIX_HANDS)
    if arrays is None or _side_digest(arrays, cfg.side) != side.get("hands_npz_sha256"):
        return False
    if info.meta_raw is not None:
        return cfg.side in info.meta_raw.get("hands", []) and info.meta_raw.get("hand_model") == model_name
    return True


# ----------------------------------------------------------------------------------------------
# Estimates and the fit


def _load_model(name: str, side: str, mano_dir: str | None) -> HandModel:
    return load_hand_model(name, side, mano_dir)


def import_estimates(cfg: HandsConfig, info: SequenceInfo, target: HandModel) -> HandEstimates:
    """Read the estimate file named in `cfg` for the frames of `info`."""
    size = (info.width, info.height)
    if cfg.keypoints:
        metric = {"auto": None, "metric": True, "scale-free": False, "ignore": None}[cfg.keypoints_3d]
        est = read_keypoints(cfg.keypoints, info.num_frames, size, cfg.pixel_offset, cfg.keypoints_normalized, metric,
                             cfg.side)
        if cfg.keypoints_3d == "ignore":
            est = dataclasses.replace(est, keypoints_3d=None, notes=[n for n in est.notes if "3D" not in n])
        return est
    if not cfg.mano_dir:
        raise ValueError("--mano-params needs --mano-dir DIR: the folder with your MANO_RIGHT.pkl / MANO_LEFT.pkl "
                         "(licence-gated, never shipped with hold) to evaluate the parameters")
    mano = target if target.name == "mano" else _load_model("mano", cfg.side, cfg.mano_dir)
    pose_mean = None
    if cfg.mano_mean_pose:
        from hold.hands.mano import load_mano

        pose_mean = {s: load_mano(cfg.mano_dir, s, flat_hand_mean=False).hand_mean.numpy().reshape(45)
                     for s in sorted({cfg.side, "right"})}
    return read_mano_params(cfg.mano_params, info.num_frames, size, info.K, mano, cfg.side, pose_mean)


def _estimate_file(cfg: HandsConfig) -> Path:
    return Path(cfg.keypoints or cfg.mano_params)


def run_fit(cfg: HandsConfig, info: SequenceInfo, model: HandModel, est: HandEstimates) -> HandFitResult:
    """Fit `model` to the estimates (progress bar over the optimizer steps)."""
    if not est.detected.any():
        src = _estimate_file(cfg)
        raise HandInputError(src, "keypoints_2d" if cfg.keypoints else "valid", message=(
            f"has no hand detected in any frame ({info.num_frames} frames, all empty / invalid)"),
            fix="check that the detector ran on this video's frames and found the hand (and --side)")
    T = info.num_frames
    init = init_valid = None
    if est.params is not None and model.name == "mano":
        p = est.params
        init = HandParams(*(torch.as_tensor(p[k]) for k in ("global_orient", "hand_pose", "betas", "transl")))
        init_valid = torch.as_tensor(est.detected)
    kp3d = has3d = None
    if est.keypoints_3d is not None:
        kp3d = torch.as_tensor(est.keypoints_3d, dtype=torch.float32)
        has3d = torch.as_tensor(np.isfinite(est.keypoints_3d[:, 0]).all(-1))  # root-relative: needs the wrist
    total = cfg.fit.steps + cfg.fit.refit_steps
    bar = iter(track(range(total), f"hands: fitting {cfg.side} hand ({model.name}, {T} frames)", total,
                     enabled=cfg.progress))

    def on_step(i: int, n: int) -> None:
        next(bar, None)

    try:
        result = fit_hand(model, torch.as_tensor(info.K, dtype=torch.float32), torch.as_tensor(est.keypoints_2d),
                          kp3d, has3d, est.keypoints_3d_metric, init, init_valid, cfg.fit, on_step)
    except FitError as e:
        raise HandInputError(_estimate_file(cfg), "keypoints_2d", message=str(e),
                             fix="check that the keypoints belong to these frames, in hold's keypoint order") from e
    for _ in bar:  # close the bar (the refit may not have run)
        pass
    if result.stats.get("warning"):
        est.notes.append(result.stats["warning"])
        print(f"hold preprocess hands: warning: {result.stats['warning']}", file=sys.stderr)
    return result


# ----------------------------------------------------------------------------------------------
# Outputs


def _side_arrays(side: str, result: HandFitResult, est: HandEstimates) -> dict[str, np.ndarray]:
    p = result.params
    kp2d = np.array(est.keypoints_2d, dtype=np.float32)
    kp2d[result.outlier.numpy()] = 0.0  # rejected detections must not be used downstream
    f32 = lambda x: np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)  # noqa: E731
    return {f"{side}/global_orient": f32(p.global_orient), f"{side}/hand_pose": f32(p.hand_pose),
            f"{side}/betas": f32(p.betas), f"{side}/transl": f32(p.transl),
            f"{side}/valid": result.valid.cpu().numpy().astype(bool), f"{side}/keypoints_2d": kp2d}


def write_outputs(cfg: HandsConfig, info: SequenceInfo, model_name: str, side_arrays: dict[str, np.ndarray],
                  source: str) -> tuple[str, bool]:
    """Write hands.npz (other sides kept) then sequence.json (if present); returns (side digest, json updated)."""
    root = info.root
    hands_path = root / HANDS_NPZ
    log = ProblemLog(fail_fast=True)
    check_hand_arrays(side_arrays, cfg.side, info.num_frames, hands_path, log)
    arrays: dict[str, np.ndarray] = {}
    if hands_path.is_file():
        old = read_npz(hands_path, log, f"delete {hands_path} (it is rewritten) or restore it")
        arrays = {k: v for k, v in old.items() if not k.startswith(f"{cfg.side}/")}
    arrays.update(side_arrays)
    new_meta = None
    if info.meta_raw is not None:
        new_meta = dict(info.meta_raw)
        sides = list(new_meta.get("hands", []))
        if cfg.side not in sides:
            sides.append(cfg.side)
        new_meta["hands"] = [s for s in HAND_SIDES if s in sides]
        new_meta["hand_model"] = model_name
        sources = dict(new_meta.get("sources") or {})
        sources["hands"] = source
        new_meta["sources"] = sources
        check_meta(new_meta, root / SEQUENCE_JSON, log)
    atomic_write_npz(hands_path, arrays)
    if new_meta is not None:
        atomic_write_json(root / SEQUENCE_JSON, new_meta, allow_nan=False)  # last: the commit point
    return _side_digest(arrays, cfg.side), new_meta is not None


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def draw_skeleton(draw: ImageDraw.ImageDraw, uv: Float[np.ndarray, "21 2"], conf: Float[np.ndarray, " 21"],
                  color: tuple, width: int, r: float) -> None:
    """The hand's bones and joints (those with confidence > 0), in `color`, on `draw`."""
    for k, parent in enumerate(KEYPOINT_PARENTS):
        if parent >= 0 and conf[k] > 0 and conf[parent] > 0:
            draw.line([tuple(uv[parent]), tuple(uv[k])], fill=color, width=width)
    for k in range(len(uv)):
        if conf[k] > 0:
            x, y = uv[k]
            draw.ellipse([x - r, y - r, x + r, y + r], fill=color)


def qa_frames(T: int, detected: np.ndarray, outlier: np.ndarray, n: int = QA_TILES) -> list[int]:
    """Frames to show: every outlier and undetected frame (up to a third of the tiles each), the rest evenly spaced."""
    special = list(np.flatnonzero(outlier)[: max(1, n // 3)]) + list(np.flatnonzero(~detected)[: max(1, n // 4)])
    rest = [int(i) for i in np.linspace(0, T - 1, min(T, n)).round()]
    picked = sorted(set(int(i) for i in special))
    for i in rest:
        if len(picked) >= min(n, T):
            break
        if i not in picked:
            picked.append(i)
    return sorted(picked)[:n]


def write_qa(path: Path, info: SequenceInfo, est: HandEstimates, result: HandFitResult) -> Path:
    """Contact sheet: per sample frame the detections (green) and the fitted keypoints (blue)."""
    T = info.num_frames
    detected, outlier = result.detected.numpy(), result.outlier.numpy()
    frames = qa_frames(T, detected, outlier)
    scale = min(1.0, QA_TILE_SIDE / max(info.width, info.height))
    tw, th = max(1, round(info.width * scale)), max(1, round(info.height * scale))
    cols = min(4, len(frames))
    rows = (len(frames) + cols - 1) // cols
    header = 22
    sheet = Image.new("RGB", (cols * tw, header + rows * th), (20, 20, 20))
    font = _font()
    d = ImageDraw.Draw(sheet)
    d.text((4, 4), "green: detections   blue: fitted hand   red border: outlier   orange: no detection "
           "(interpolated)", fill=(230, 230, 230), font=font)
    fit_uv = result.keypoints_2d.numpy()
    err = result.reproj_px.numpy()
    for n, t in enumerate(frames):
        img_path = info.root / IMAGES_DIR / f"{frame_name(t)}.png"
        try:
            with Image.open(img_path) as im:
                tile = im.convert("RGB").resize((tw, th), Image.BILINEAR)
        except OSError:
            tile = Image.new("RGB", (tw, th), (90, 90, 90))
        draw = ImageDraw.Draw(tile)
        if detected[t]:
            kp = est.keypoints_2d[t]
            draw_skeleton(draw, kp[:, :2] * scale, kp[:, 2], (40, 220, 60), 1, 3.0)
        draw_skeleton(draw, fit_uv[t] * scale, np.ones(21), (40, 120, 255), 2, 1.5)
        if outlier[t]:
            label, border = f"#{t} outlier {err[t]:.0f}px", (230, 40, 40)
        elif not detected[t]:
            label, border = f"#{t} no detection", (255, 150, 0)
        else:
            label, border = f"#{t} {err[t]:.1f}px", None
        if border is not None:
            draw.rectangle([0, 0, tw - 1, th - 1], outline=border, width=4)
        draw.text((6, 5), label, fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0))
        sheet.paste(tile, ((n % cols) * tw, header + (n // cols) * th))
    write_image(path, np.asarray(sheet))
    return path


# ----------------------------------------------------------------------------------------------
# The step


def _summary(result: HandFitResult, est: HandEstimates) -> dict[str, Any]:
    det, out, val = result.detected.numpy(), result.outlier.numpy(), result.valid.numpy()
    err = result.reproj_px.numpy()
    methods: dict[str, int] = {}
    for m in result.init_method:
        methods[m] = methods.get(m, 0) + 1
    stats = dict(result.stats)
    return {
        "frames": int(len(det)),
        "detected": int(det.sum()),
        "not_detected_frames": np.flatnonzero(~det).tolist(),
        "outlier_frames": np.flatnonzero(out).tolist(),
        "interpolated_frames": np.flatnonzero(~val).tolist(),
        "outlier_threshold_px": float(result.threshold_px),
        "reprojection_px": {"mean_valid": float(np.nanmean(err[val])), "median_valid": float(np.nanmedian(err[val])),
                            "max_valid": float(np.nanmax(err[val]))},
        "betas": result.params.betas.tolist(),
        "init_methods": methods,
        "fit": {k: v for k, v in stats.items() if k not in ("init_s", "fit_s")},
        "notes": list(est.notes),
    }


def run_hands(seq_dir: str | Path, cfg: HandsConfig) -> dict[str, Any]:
    """Run the step on SEQ_DIR; returns this side's record (with 'skipped': True when up to date)."""
    t0 = time.perf_counter()
    root = Path(seq_dir)
    if cfg.side not in HAND_SIDES:
        raise ValueError(f"--side {cfg.side!r}: expected 'right' or 'left'")
    if bool(cfg.keypoints) == bool(cfg.mano_params):
        raise ValueError("pass exactly one of --keypoints FILE and --mano-params FILE")
    if cfg.keypoints_3d not in ("auto", "metric", "scale-free", "ignore"):
        raise ValueError(f"--keypoints-3d {cfg.keypoints_3d!r}: expected auto, metric, scale-free or ignore")
    est_file = _estimate_file(cfg)
    if not est_file.is_file():
        flag = "--keypoints" if cfg.keypoints else "--mano-params"
        raise FileNotFoundError(f"{est_file}: file not found ({flag}). Fix: pass the file your hand estimator wrote.")
    info = read_sequence_info(root, cfg.focal)
    model_name = _resolve_hand_model(cfg, info)
    if model_name == "mano" and not cfg.mano_dir:
        raise ValueError("--hand-model mano needs --mano-dir DIR (your MANO_RIGHT.pkl / MANO_LEFT.pkl), or use the "
                         "embedded default --hand-model anny")
    options = _options(cfg, model_name)
    fp = _side_fingerprint(cfg, info, model_name, options)
    record = load_record(root, STEP)
    if not cfg.force and _up_to_date(record, cfg, info, fp, model_name):
        print(f"hold preprocess hands: the {cfg.side} hand is up to date (same inputs and options as the run of "
              f"{record.finished}), skipped; pass --force to redo it", file=sys.stderr)
        return {**record.info["sides"][cfg.side], "skipped": True}

    model = _load_model(model_name, cfg.side, cfg.mano_dir)
    est = import_estimates(cfg, info, model)
    t_import = time.perf_counter()
    result = run_fit(cfg, info, model, est)
    t_fit = time.perf_counter()

    source = (f"hold preprocess hands: {est.source}, {model_name} fit ({int(result.valid.sum())}/{info.num_frames} "
              f"frames observed, the rest interpolated)")
    others = {s: v for s, v in (record.info.get("sides", {}) if record is not None else {}).items() if s != cfg.side}
    remove_record(root, STEP)  # an interrupted write must not look finished
    digest, json_updated = write_outputs(cfg, info, model_name, _side_arrays(cfg.side, result, est), source)
    write_qa(root / QA_PATH, info, est, result)
    t_write = time.perf_counter()

    meta = info.meta_raw or {}
    sides = [s for s in HAND_SIDES if s in set(meta.get("hands", [])) | set(others) | {cfg.side}]
    side_info = {
        "fingerprint": fp,
        "source": source,
        "hands_npz_sha256": digest,
        "sequence_json_updated": json_updated,
        "camera": {"K": info.K.tolist(), "source": info.K_source, "image_size": [info.width, info.height]},
        **_summary(result, est),
    }
    timings = {"import_s": t_import - t0, "init_s": result.stats["init_s"], "fit_s": result.stats["fit_s"],
               "write_s": t_write - t_fit, "total_s": t_write - t0}
    info_out = {
        "sides": {**others, cfg.side: side_info},
        "sequence_fields": {"num_frames": info.num_frames, "image_size": [info.width, info.height],
                            "K": info.K.tolist(), "hands": sides, "hand_model": model_name,
                            "sources": {"hands": source}},
    }
    write_record(root, STEP, fp, options=options, inputs=_input_paths(cfg, model_name),
                 outputs=[HANDS_NPZ, QA_PATH], info=info_out, estimated=[f"hands/{cfg.side}"], warnings=est.notes,
                 timings=timings)
    s = side_info
    n_out, n_miss = len(s["outlier_frames"]), len(s["not_detected_frames"])
    print(f"hold preprocess hands: {cfg.side} hand ({model_name}) fitted on {s['detected'] - n_out}/{info.num_frames} "
          f"frames ({n_out} outlier{'s' * (n_out != 1)}, {n_miss} without detection; both re-filled by "
          f"interpolation); mean reprojection error {s['reprojection_px']['mean_valid']:.1f} px; wrote "
          f"{root / HANDS_NPZ}, {root / QA_PATH}")
    return side_info


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hold preprocess hands",
        description="Import per-frame hand estimates, fit the hand model to them (2D reprojection + 3D shape + "
                    "pose prior + temporal smoothness), reject outlier frames and SLERP-fill the gaps.")
    p.add_argument("seq_dir", type=Path, help="the sequence folder (images/, optional sequence.json)")
    src = p.add_mutually_exclusive_group()  # one is required: checked in main (--detect is the third way)
    src.add_argument("--keypoints", help="per-frame 21 2D (and optional 3D) keypoints, .json or .npz")
    src.add_argument("--mano-params", help="HaMeR-style per-frame MANO parameters, .npz (needs --mano-dir)")
    src.add_argument("--detect", action="store_true",
                     help="detect the keypoints with the built-in MediaPipe detector first (preprocess/hand_detect.py: "
                          "writes SEQ_DIR/hand_keypoints.npz; needs a MediaPipe environment, docs/mediapipe.md)")
    from preprocess.hand_detect import add_detector_options

    add_detector_options(p.add_argument_group("detector (with --detect)"))
    p.add_argument("--mano-dir", help="folder with your MANO_RIGHT.pkl / MANO_LEFT.pkl")
    p.add_argument("--side", choices=HAND_SIDES, default="right", help="which hand the estimates are of")
    p.add_argument("--hand-model", choices=HAND_MODELS, default=None,
                   help="hand model to fit (default: sequence.json's, else anny)")
    p.add_argument("--focal", type=float, default=None,
                   help="focal length in pixels when there is no sequence.json (default 1.2 x max(W, H))")
    p.add_argument("--pixel-offset", type=float, default=0.0,
                   help="added to 2D keypoints: 0.5 for detectors with pixel centres at integers")
    p.add_argument("--keypoints-normalized", action="store_true", help="2D keypoints are in [0, 1]")
    p.add_argument("--keypoints-3d", choices=("auto", "metric", "scale-free", "ignore"), default="auto",
                   help="how to use 3D keypoints (auto: as the file says)")
    p.add_argument("--mano-mean-pose", action="store_true",
                   help="the MANO hand_pose is relative to MANO's mean pose (smplx flat_hand_mean=False)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps of the fit")
    p.add_argument("--force", action="store_true", help="redo even when up to date")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.keypoints or args.mano_params or args.detect):
        parser.error("one of the arguments --keypoints --mano-params is required (or --detect: the built-in MediaPipe "
                     "detector)")
    fit = HandFitConfig() if args.steps is None else HandFitConfig(steps=args.steps)
    keypoints = args.keypoints
    if args.detect:  # the detector's own step (resumable, its own record), then fit what it wrote
        from preprocess.hand_detect import KEYPOINTS_NPZ, HandDetectConfig, run_detect

        run_detect(args.seq_dir, HandDetectConfig(side=args.side, mediapipe_python=args.mediapipe_python,
                                                  video_mirrored=args.video_mirrored,
                                                  static_image_mode=args.static_image_mode, force=args.force,
                                                  progress=not args.quiet))
        keypoints = str(args.seq_dir / KEYPOINTS_NPZ)
    cfg = HandsConfig(keypoints=keypoints, mano_params=args.mano_params, mano_dir=args.mano_dir, side=args.side,
                      hand_model=args.hand_model, focal=args.focal, pixel_offset=args.pixel_offset,
                      keypoints_normalized=args.keypoints_normalized, keypoints_3d=args.keypoints_3d,
                      mano_mean_pose=args.mano_mean_pose, force=args.force, progress=not args.quiet, fit=fit)
    run_hands(args.seq_dir, cfg)
    return 0
