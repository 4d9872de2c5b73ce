"""`hold preprocess align SEQ_DIR`: put the hands and the SfM object into one metric camera frame.

    hold preprocess align SEQ_DIR [--mano-dir DIR] [--no-residual] [--iters N] [--force] [--quiet]

SfM is up to scale and its K is estimated; the hands step fitted metric hands under another K (a focal guess
unless given). This step (maths in preprocess/align_fit.py) re-fits the hand translations under the SfM K (h),
finds the object's metric scale (and small per-frame residual translations) so that it sits in the hand while
its SfM points keep reprojecting where they were (o), then refines both with temporal smoothness (ho).

Inputs (SEQ_DIR): hands.npz (hands step), object.npz (sfm step, SfM units), preprocess/sfm.json (its K; when
absent the K of sequence.json is used), preprocess/hands.json (the K the hands were fitted with).
Before the first alignment, hands.npz and object.npz are copied to preprocess/hands_unaligned.npz and
preprocess/object_unaligned.npz: every run starts from those (so a re-run with other options does not align
twice) until a hands / sfm re-run writes new files, which are then copied again.

Outputs: hands.npz (transl updated, everything else kept), object.npz (T_cam_from_obj with metric
translations, `scale` in metres per canonical unit), qa/align.png (hand keypoints and object points
reprojected, and a top view), preprocess/align.json (record: the K used, the scale, energies, timings).
`hold preprocess build` then writes that K into sequence.json.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from hold.data.errors import ProblemLog, SequenceError
from hold.data.io import atomic_write_json, atomic_write_npz, read_npz, write_image
from hold.data.schema import (
    HAND_SIDES, HANDS_NPZ, IMAGES_DIR, OBJECT_NPZ, SEQUENCE_JSON, check_hand_arrays, check_object_arrays, frame_name,
)
from hold.hands import KEYPOINT_PARENTS, load_hand_model
from hold.progress import track
from preprocess.align_fit import (
    AlignFitConfig, HandProblem, ObjectProblem, fit_hand_translation, fit_joint, fit_object, hand_points, subsample,
)
from preprocess.frames import contact_sheet
from preprocess.hand_fit import reprojection_errors, torch_threads
from preprocess.records import fingerprint, load_record, remove_record, should_skip, write_record
from preprocess.sfm import load_intrinsics, project_points

STEP = "align"
QA_PATH = "qa/align.png"
HANDS_UNALIGNED = "preprocess/hands_unaligned.npz"
OBJECT_UNALIGNED = "preprocess/object_unaligned.npz"
PENDING = "preprocess/align_pending.json"
"""Hashes of the outputs being written; lets a run after a crash mid-write recognize its own outputs."""
FIX_SFM = "run `hold preprocess sfm SEQ_DIR` first"
FIX_HANDS = "run `hold preprocess hands SEQ_DIR --keypoints FILE` first"


@dataclass
class AlignConfig:
    """The align step: which hand points take part, where MANO lives, the fit itself."""

    hand_points: int = 256
    """Hand model vertices (evenly subsampled) used as the hand surface by the contact terms."""
    mano_dir: str | None = None
    """Folder with MANO_RIGHT.pkl / MANO_LEFT.pkl when the hands are MANO (default: the hands step's)."""
    qa_frames: int = 6
    """Frames shown in qa/align.png."""
    threads: int = 1
    """torch CPU threads while fitting (the problems are small: more threads mostly add contention)."""
    fit: AlignFitConfig = field(default_factory=AlignFitConfig)
    """Weights, robust scales and iterations of the three sub-problems."""


def _say(msg: str) -> None:
    print(f"hold preprocess align: {msg}", file=sys.stderr)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Inputs


def _written_hashes(seq_dir: Path) -> dict[str, list[str]]:
    """Hashes of hands.npz / object.npz as this step wrote them (finished record and a pending write)."""
    out: dict[str, list[str]] = {HANDS_NPZ: [], OBJECT_NPZ: []}
    rec = load_record(seq_dir, STEP)
    sources = [rec.info.get("written", {})] if rec is not None else []
    with contextlib.suppress(OSError, ValueError):
        sources.append(json.loads((seq_dir / PENDING).read_text(encoding="utf-8")))
    for s in sources:
        for name in out:
            if s.get(name):
                out[name].append(s[name])
    return out


def resolve_inputs(seq_dir: Path) -> dict[str, Path]:
    """The unaligned hands/object files this run starts from (copied from SEQ_DIR when they are new)."""
    obj, hands = seq_dir / OBJECT_NPZ, seq_dir / HANDS_NPZ
    if not obj.is_file():
        raise SequenceError(obj, None, message="not found: there is no object track to align", fix=FIX_SFM)
    if not hands.is_file():
        raise SequenceError(hands, None, message="not found: the hands give the metric scale of the object",
                            fix=FIX_HANDS)
    written = _written_hashes(seq_dir)
    out = {}
    for name, copy in ((HANDS_NPZ, HANDS_UNALIGNED), (OBJECT_NPZ, OBJECT_UNALIGNED)):
        src, dst = seq_dir / name, seq_dir / copy
        own = _sha(src) in written[name]
        if dst.is_file() and own:
            out[name] = dst  # SEQ_DIR holds this step's own output: start again from the copy
            continue
        if own:
            _say(f"warning: {dst} is missing and {src} is this step's earlier output: aligning it again (nearly a "
                 f"no-op); re-run the step that makes {name} for a clean start")
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)
        out[name] = dst
    return out


def _load_arrays(path: Path, fix: str) -> dict[str, np.ndarray]:
    return read_npz(path, ProblemLog(fail_fast=True), fix)


def _sequence_json(seq_dir: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((seq_dir / SEQUENCE_JSON).read_text(encoding="utf-8"))
    return None


def _image_size(seq_dir: Path) -> tuple[int, int] | None:
    with contextlib.suppress(OSError):
        with Image.open(seq_dir / IMAGES_DIR / f"{frame_name(0)}.png") as im:
            return im.size
    return None


def cameras(seq_dir: Path, sides: list[str]) -> tuple[np.ndarray, str, dict[str, np.ndarray]]:
    """(K for the alignment, where it came from, K each hand was fitted with)."""
    meta = _sequence_json(seq_dir)
    K = load_intrinsics(seq_dir)
    source = "preprocess/sfm.json (SfM estimate)"
    if K is None:
        if meta is None or "K" not in meta:
            raise SequenceError(seq_dir / "preprocess" / "sfm.json", "K", message="not found, and there is no "
                                "sequence.json K either: the intrinsics of the SfM object are unknown", fix=FIX_SFM)
        K, source = np.asarray(meta["K"], np.float64), "sequence.json (no sfm record)"
        _say("warning: no preprocess/sfm.json: using the K of sequence.json for the object")
    hands_rec = load_record(seq_dir, "hands")
    K_hands = {}
    for side in sides:
        cam = ((hands_rec.info.get("sides", {}).get(side) or {}).get("camera") if hands_rec is not None else None)
        if cam is not None:
            K_hands[side] = np.asarray(cam["K"], np.float64)
        elif meta is not None and "K" in meta:
            K_hands[side] = np.asarray(meta["K"], np.float64)
        else:
            K_hands[side] = K
    return np.asarray(K, np.float64), source, K_hands


def _hand_sides(arrays: dict[str, np.ndarray], seq_dir: Path) -> list[str]:
    sides = [s for s in HAND_SIDES if f"{s}/transl" in arrays]
    if not sides:
        raise SequenceError(seq_dir / HANDS_NPZ, None, found=f"keys {sorted(arrays)}",
                            expected="'right/...' or 'left/...' hand arrays", fix=FIX_HANDS)
    return sides


def _hand_model_name(seq_dir: Path) -> tuple[str, str | None]:
    rec = load_record(seq_dir, "hands")
    meta = _sequence_json(seq_dir) or {}
    name = meta.get("hand_model") if meta.get("hands") else None
    mano_dir = None
    if rec is not None:
        name = rec.info.get("sequence_fields", {}).get("hand_model", name)
        mano_dir = rec.options.get("mano_dir")
    return name or "anny", mano_dir


# ----------------------------------------------------------------------------------------------
# QA picture


def _project(K: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sfm.project_points of camera-frame points of any batch shape (..., 3): (uv, in front)."""
    uv, front = project_points(K, np.eye(4), 1.0, x.reshape(-1, 3))
    return uv.reshape(*x.shape[:-1], 2), front.reshape(x.shape[:-1])


def _dot(draw: ImageDraw.ImageDraw, u: float, v: float, r: float, colour: tuple) -> None:
    draw.ellipse((u - r, v - r, u + r, v + r), fill=colour)


def write_qa(seq_dir: Path, K: np.ndarray, frames: list[int], kp_cam: dict[str, np.ndarray],
             kp2d: dict[str, np.ndarray], obj_cam: np.ndarray, title: str) -> None:
    """Per frame: the image with detections (green), aligned hand keypoints (blue) and object points (orange)
    reprojected; next to it a top view (x right, depth up) of the hand keypoints and the object points."""
    tiles, caps = [], []
    for t in frames:
        try:
            with Image.open(seq_dir / IMAGES_DIR / f"{frame_name(t)}.png") as im:
                img = im.convert("RGB")
        except OSError:  # a QA picture never stops the step: draw on grey
            size = _image_size(seq_dir) or (256, 256)
            img = Image.new("RGB", size, (90, 90, 90))
        W, H = img.size
        r = max(1.0, max(W, H) / 200)
        draw = ImageDraw.Draw(img)
        uv, front = _project(K, obj_cam[t])
        for (u, v), ok in zip(uv, front):
            if ok:
                _dot(draw, u, v, r * 0.6, (255, 150, 40))
        for side, kp in kp_cam.items():
            det = kp2d[side][t]
            for (u, v, c) in det:
                if c > 0:
                    _dot(draw, u, v, r, (40, 220, 60))
            uvh, _ = _project(K, kp[t])
            for k, parent in enumerate(KEYPOINT_PARENTS):
                if parent >= 0:
                    draw.line([tuple(uvh[parent]), tuple(uvh[k])], fill=(40, 120, 255), width=max(1, int(r / 2)))
        top = Image.new("RGB", (W, H), (30, 30, 30))
        d2 = ImageDraw.Draw(top)
        centre = obj_cam[t].mean(0)
        extent = 1.6 * max(np.abs(obj_cam[t] - centre).max(), 1e-6)
        for side, kp in kp_cam.items():
            extent = max(extent, 1.2 * np.abs(kp[t][:, [0, 2]] - centre[[0, 2]]).max())

        def to_px(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return (W / 2 + (p[..., 0] - centre[0]) / extent * W / 2,
                    H / 2 - (p[..., 2] - centre[2]) / extent * H / 2)

        ox, oz = to_px(obj_cam[t])
        for x, z in zip(ox, oz):
            _dot(d2, x, z, r * 0.6, (255, 150, 40))
        for kp in kp_cam.values():
            hx, hz = to_px(kp[t])
            for k, parent in enumerate(KEYPOINT_PARENTS):
                if parent >= 0:
                    d2.line([(hx[parent], hz[parent]), (hx[k], hz[k])], fill=(40, 120, 255), width=max(1, int(r / 2)))
        d2.text((3, H - 12), "top view (depth up)", fill=(200, 200, 200))
        pair = Image.new("RGB", (2 * W, H))
        pair.paste(img, (0, 0))
        pair.paste(top, (W, 0))
        tiles.append(np.asarray(pair))
        caps.append(f"#{t} object depth {centre[2]:.3f} m")
    write_image(seq_dir / QA_PATH, contact_sheet(tiles, caps, title, columns=2, tile_width=512))


# ----------------------------------------------------------------------------------------------
# The step


def _options(cfg: AlignConfig) -> dict[str, Any]:
    opts = dataclasses.asdict(cfg)
    opts.pop("threads")
    opts.pop("qa_frames")
    return opts


def run_align(seq_dir: str | Path, cfg: AlignConfig | None = None, force: bool = False,
              progress: bool = True) -> dict[str, Any]:
    """Run the align step on SEQ_DIR; returns its record's info ('skipped': True when it was up to date)."""
    seq_dir = Path(seq_dir)
    cfg = cfg or AlignConfig()
    inputs = resolve_inputs(seq_dir)
    hands_in = _load_arrays(inputs[HANDS_NPZ], FIX_HANDS)
    obj_in = _load_arrays(inputs[OBJECT_NPZ], FIX_SFM)
    sides = _hand_sides(hands_in, seq_dir)
    K, K_source, K_hands = cameras(seq_dir, sides)
    model_name, rec_mano_dir = _hand_model_name(seq_dir)
    mano_dir = cfg.mano_dir or rec_mano_dir
    records = [seq_dir / "preprocess" / f"{s}.json" for s in ("sfm", "hands") if (seq_dir / "preprocess" /
                                                                                   f"{s}.json").is_file()]
    fp_inputs = [inputs[HANDS_NPZ], inputs[OBJECT_NPZ], *records]
    options = _options(cfg)
    fp = fingerprint(fp_inputs, {**options, "K": K.tolist(), "hand_model": model_name}, root=seq_dir)
    if should_skip(seq_dir, STEP, fp, force):
        rec = load_record(seq_dir, STEP)
        return {**rec.info, "skipped": True}

    t0 = time.perf_counter()
    T = int(obj_in["T_cam_from_obj"].shape[0]) if "T_cam_from_obj" in obj_in else 0
    log = ProblemLog(fail_fast=True)
    check_object_arrays(obj_in, T, seq_dir / OBJECT_NPZ, log)
    for side in sides:
        check_hand_arrays(hands_in, side, T, seq_dir / HANDS_NPZ, log)
    obj_valid = obj_in["valid"].astype(bool)
    with torch_threads(cfg.threads):
        result = _fit(seq_dir, cfg, hands_in, obj_in, sides, K, K_hands, model_name, mano_dir, obj_valid, T,
                      progress)
    t1 = time.perf_counter()

    # Outputs: the pending hashes first (a crash mid-write still recognizes them), then the files, QA, record.
    hands_out = dict(hands_in)
    for side in sides:
        hands_out[f"{side}/transl"] = result["transl"][side].astype(np.float32)
    alpha = result["alpha"]
    T_out = obj_in["T_cam_from_obj"].astype(np.float64).copy()
    T_out[:, :3, 3] = alpha * T_out[:, :3, 3] + result["delta"]
    obj_out = {"T_cam_from_obj": T_out.astype(np.float32),
               "scale": np.asarray(alpha * float(obj_in["scale"]), np.float32),
               "points": obj_in["points"], "valid": obj_in["valid"]}
    check_object_arrays(obj_out, T, seq_dir / OBJECT_NPZ, log)
    for side in sides:
        check_hand_arrays(hands_out, side, T, seq_dir / HANDS_NPZ, log)
    remove_record(seq_dir, STEP)
    tmp_dir = seq_dir / "preprocess"
    tmp_h, tmp_o = tmp_dir / ".align_hands.npz", tmp_dir / ".align_object.npz"
    atomic_write_npz(tmp_h, hands_out)
    atomic_write_npz(tmp_o, obj_out)
    written = {HANDS_NPZ: _sha(tmp_h), OBJECT_NPZ: _sha(tmp_o)}
    atomic_write_json(seq_dir / PENDING, written)
    tmp_h.replace(seq_dir / HANDS_NPZ)
    tmp_o.replace(seq_dir / OBJECT_NPZ)

    obj_cam = np.einsum("tij,nj->tni", T_out[:, :3, :3], float(obj_out["scale"]) * obj_in["points"][
        subsample(len(obj_in["points"]), 400).numpy()].astype(np.float64)) + T_out[:, None, :3, 3]
    qa_idx = sorted(set(np.linspace(0, T - 1, min(cfg.qa_frames, T)).round().astype(int).tolist()))
    title = (f"align: object scale {float(obj_out['scale']) * 100:.2f} cm radius (x{alpha:.4g} of SfM), "
             f"hand reprojection {result['stats']['hand_reprojection_px_after']:.1f} px; green detections, "
             f"blue hand, orange object")
    write_qa(seq_dir, K, qa_idx, result["kp_cam"], {s: hands_in[f"{s}/keypoints_2d"] if f"{s}/keypoints_2d" in
                                                     hands_in else np.zeros((T, 21, 3)) for s in sides},
             obj_cam, title)
    t2 = time.perf_counter()
    info = {
        "K": K.tolist(),
        "K_source": K_source,
        "K_hands": {s: k.tolist() for s, k in K_hands.items()},
        "image_size": list(_image_size(seq_dir) or ()),
        "num_frames": T,
        "hands": sides,
        "hand_model": model_name,
        "alpha": alpha,
        "scale_m": float(obj_out["scale"]),
        "scale_sfm": float(obj_in["scale"]),
        **result["stats"],
        "written": written,
        "inputs_unaligned": [HANDS_UNALIGNED, OBJECT_UNALIGNED],
        "units": "metres (object scale from the hand model's size through hand-object contact)",
    }
    warns = result["warnings"]
    for w in warns:
        _say(f"warning: {w}")
    rec = write_record(seq_dir, STEP, fp, options=options, inputs=fp_inputs, outputs=[HANDS_NPZ, OBJECT_NPZ, QA_PATH],
                       info=info, estimated=["object/scale", "hands/transl", "intrinsics"], warnings=warns,
                       timings={"fit": t1 - t0, **result["timings"], "write_qa": t2 - t1, "total": t2 - t0})
    with contextlib.suppress(FileNotFoundError):
        (seq_dir / PENDING).unlink()
    print(f"hold preprocess align: object scale {float(obj_out['scale']):.4f} m per canonical unit "
          f"(SfM x {alpha:.4g}), "
          f"hand reprojection {info['hand_reprojection_px_before']:.1f} -> {info['hand_reprojection_px_after']:.1f} px "
          f"under the SfM K; wrote {seq_dir / HANDS_NPZ}, {seq_dir / OBJECT_NPZ}, {seq_dir / QA_PATH} "
          f"in {t2 - t0:.1f} s")
    return rec.info


def _fit(seq_dir: Path, cfg: AlignConfig, hands_in: dict, obj_in: dict, sides: list[str], K: np.ndarray,
         K_hands: dict[str, np.ndarray], model_name: str, mano_dir: str | None, obj_valid: np.ndarray, T: int,
         progress: bool) -> dict[str, Any]:
    """(h), (o), (ho); returns translations, alpha, delta, keypoints in the camera frame, stats, warnings."""
    Kt = torch.as_tensor(K, dtype=torch.float64)
    warnings: list[str] = []
    timings: dict[str, float] = {}
    bar = iter(track(range(3), "align: hands (h), object (o), joint (ho)", 3, enabled=progress))
    t0 = time.perf_counter()
    problems, transl, det_any, before = [], [], np.zeros(T, bool), []
    for side in sides:
        model = load_hand_model(model_name, side, mano_dir)
        p = {k: torch.as_tensor(hands_in[f"{side}/{k}"], dtype=torch.float32)
             for k in ("global_orient", "hand_pose", "betas", "transl")}
        with torch.no_grad():
            out = model(p["global_orient"], p["hand_pose"], p["betas"][None].expand(T, -1), torch.zeros(T, 3))
        kp_local = out.keypoints.double()
        surf = out.vertices[:, subsample(out.vertices.shape[1], cfg.hand_points)].double()
        kp2d = hands_in.get(f"{side}/keypoints_2d")
        valid = hands_in[f"{side}/valid"].astype(bool)
        if kp2d is None:
            # No detections stored: the fitted hand's own projection under the hands step's K is the target.
            uv, _ = _project(K_hands[side], (kp_local + p["transl"].double()[:, None]).numpy())
            kp2d = np.concatenate([uv, valid[:, None, None].repeat(21, 1).astype(np.float64)], -1)
            warnings.append(f"hands.npz has no {side}/keypoints_2d: the {side} hand was re-fitted to its own "
                            "projection under the hands step's K")
        kp2d_t = torch.as_tensor(kp2d, dtype=torch.float64)
        init = p["transl"].double()
        before.append(reprojection_errors(Kt, kp_local + init[:, None], kp2d_t))
        tr, det = fit_hand_translation(kp_local, kp2d_t, Kt, init, cfg.fit)
        problems.append(HandProblem(kp_local, surf, kp2d_t))
        transl.append(tr)
        det_any |= det.numpy() & valid
    timings["hands_h"] = time.perf_counter() - t0
    next(bar, None)
    frames = torch.as_tensor(obj_valid & det_any)
    if not frames.any():
        raise SequenceError(seq_dir / OBJECT_NPZ, "valid", message=(
            f"and the hands share no observed frame: the object is registered in {int(obj_valid.sum())} of {T} "
            f"frames, a hand is detected in {int(det_any.sum())}, none in both"),
            fix="check the hands and sfm steps' outputs (qa/hands.png, qa/sfm.png); the alignment needs frames "
                "where both are observed")
    problem = ObjectProblem(R=torch.as_tensor(obj_in["T_cam_from_obj"][:, :3, :3]),
                            t_sfm=torch.as_tensor(obj_in["T_cam_from_obj"][:, :3, 3]),
                            s_sfm=float(obj_in["scale"]), x_obj=torch.as_tensor(obj_in["points"]), K=Kt,
                            frames=frames, max_points=cfg.fit.max_points)
    t1 = time.perf_counter()
    try:
        fit_o = fit_object(problem, hand_points(problems, transl), cfg.fit)
    except ValueError as e:
        raise SequenceError(seq_dir / OBJECT_NPZ, "T_cam_from_obj", message=str(e), fix=FIX_SFM) from e
    timings["object_o"] = time.perf_counter() - t1
    next(bar, None)
    t2 = time.perf_counter()
    transl_ho, fit_ho = fit_joint(problems, transl, problem, fit_o, cfg.fit)
    timings["joint_ho"] = time.perf_counter() - t2
    next(bar, None)
    for _ in bar:
        pass
    after = [reprojection_errors(Kt, h.kp_local + t[:, None], h.keypoints_2d) for h, t in zip(problems, transl_ho)]
    if not math.isfinite(fit_ho.alpha) or fit_ho.alpha <= 0:
        raise SequenceError(seq_dir / OBJECT_NPZ, "scale", found=f"a fitted SfM-to-metres factor {fit_ho.alpha}",
                            expected="a finite positive factor", fix="check qa/sfm.png and qa/hands.png")
    ratio = fit_ho.alpha / fit_o.alpha_init
    if not 0.5 < ratio < 2.0:
        warnings.append(f"the fitted scale is {ratio:.2f} x the depth-ratio guess: the hand may not hold the object "
                        "in many frames; check qa/align.png")

    def nanmean(x: list[torch.Tensor]) -> float:
        v = torch.cat([a[torch.isfinite(a)] for a in x])
        return float(v.mean()) if v.numel() else float("nan")

    delta_mm = fit_ho.delta.norm(dim=-1).numpy() * 1000
    stats = {
        "frames_used": int(frames.sum()),
        "object_registered_frames": int(obj_valid.sum()),
        "hand_detected_frames": int(det_any.sum()),
        "alpha_depth_ratio": fit_o.alpha_init,
        "alpha_search": fit_o.alpha_search,
        "alpha_object_fit": fit_o.alpha,
        "residual_translation_mm": {"median": float(np.median(delta_mm)), "max": float(delta_mm.max())},
        "hand_reprojection_px_before": nanmean(before),
        "hand_reprojection_px_after": nanmean(after),
        "hand_translation_change_mm": {s: float(np.median(np.linalg.norm(
            t.numpy() - hands_in[f"{s}/transl"], axis=-1)) * 1000) for s, t in zip(sides, transl_ho)},
        "energy_o": fit_o.terms,
        "energy_ho": fit_ho.terms,
    }
    kp_cam = {s: (h.kp_local + t[:, None]).numpy() for s, h, t in zip(sides, problems, transl_ho)}
    return {"transl": {s: t.numpy() for s, t in zip(sides, transl_ho)}, "alpha": fit_ho.alpha,
            "delta": fit_ho.delta.numpy(), "kp_cam": kp_cam, "stats": stats, "warnings": warnings,
            "timings": timings}


def build_parser() -> argparse.ArgumentParser:
    d, f = AlignConfig(), AlignFitConfig()
    p = argparse.ArgumentParser(
        prog="hold preprocess align",
        description="Metric hand-object alignment: hand translations under the SfM intrinsics, the object's metric "
                    "scale from hand contact, then a joint refinement with temporal smoothness.")
    p.add_argument("seq_dir", type=Path, metavar="SEQ_DIR", help="the sequence folder (hands.npz, object.npz)")
    p.add_argument("--mano-dir", default=None, help="MANO_RIGHT/LEFT.pkl folder when the hands are MANO")
    p.add_argument("--hand-points", type=int, default=d.hand_points,
                   help="hand vertices used as the hand surface (default %(default)s)")
    p.add_argument("--no-residual", action="store_true",
                   help="fit the object scale only, no per-frame residual translation")
    p.add_argument("--contact-offset", type=float, default=f.contact_offset_m, metavar="M",
                   help="gap between touching hand points and the object points, metres (default %(default)s)")
    p.add_argument("--smooth-scale", type=float, default=f.smooth_scale_m, metavar="M",
                   help="acceleration per frame^2 that costs one unit in the joint fit, metres (default %(default)s)")
    p.add_argument("--iters", type=int, default=None, help="L-BFGS iterations of the object and joint fits")
    p.add_argument("--force", action="store_true", help="redo even if the step is up to date")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    fit = AlignFitConfig(residual_translation=not args.no_residual, contact_offset_m=args.contact_offset,
                         smooth_scale_m=args.smooth_scale)
    if args.iters is not None:
        fit = dataclasses.replace(fit, object_iters=args.iters, joint_iters=args.iters)
    cfg = AlignConfig(hand_points=args.hand_points, mano_dir=args.mano_dir, fit=fit)
    run_align(args.seq_dir, cfg, force=args.force, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
