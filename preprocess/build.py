"""`hold preprocess build SEQ_DIR`: write (or complete) sequence.json from the step records and validate the build.

    hold preprocess build SEQ_DIR [--force]

Every field comes from the record of the step that made it (preprocess/<step>.json):
- frames: num_frames and image_size (checked against images/), fps, the source video;
- masks: which masks were imported and which estimated;
- hands: the hands present and the hand model (`info.sequence_fields`);
- align: K (the SfM intrinsics the hands and the object were aligned under; scaled to the size of images/ if
  the record's image size differs), the metric object (has_object).
`sources` names the provenance of every artefact (images, masks, hands, object, intrinsics): step, tool, options,
when it finished, whether it was estimated. A sequence.json already there is completed: its `extra` is kept,
everything the records say is rewritten. The build is then validated (hold.data.validate, masks required); an
invalid build stops with the validator's report and the previous sequence.json is restored.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from hold.data.errors import ProblemLog, SequenceError
from hold.data.io import atomic_write_bytes, atomic_write_json
from hold.data.schema import (
    HAND_SIDES, HANDS_NPZ, IMAGES_DIR, MASKS_DIR, OBJECT_NPZ, SCHEMA_VERSION, SEQUENCE_JSON, check_meta,
    check_schema_version,
)
from hold.data.validate import format_report, validate
from preprocess.frames import scale_intrinsics
from preprocess.masks import frame_stems
from preprocess.records import (
    StepRecord, fingerprint, load_record, record_path, remove_record, should_skip, write_record,
)

STEP = "build"
REQUIRED_STEPS: tuple[str, ...] = ("frames", "masks", "hands", "align")
"""Steps whose records the build needs (align implies sfm; sfm's record is used when present)."""
FIXES = {
    "frames": "run `hold preprocess frames VIDEO --out SEQ_DIR`",
    "masks": "run `hold preprocess masks SEQ_DIR ...` (import SAM/SAM2 masks, or let it estimate them)",
    "hands": "run `hold preprocess hands SEQ_DIR --keypoints FILE` (or --mano-params)",
    "sfm": "run `hold preprocess sfm SEQ_DIR`",
    "align": "run `hold preprocess align SEQ_DIR` (after `hold preprocess sfm SEQ_DIR`)",
}


class BuildError(ValueError):
    """The build does not validate; the message is hold.data.validate's report."""


def _say(msg: str) -> None:
    print(f"hold preprocess build: {msg}", file=sys.stderr)


def required_records(seq_dir: Path) -> dict[str, StepRecord]:
    """The records of REQUIRED_STEPS (and sfm when present); one clear error naming the first missing step."""
    recs: dict[str, StepRecord] = {}
    for step in REQUIRED_STEPS:
        rec = load_record(seq_dir, step)
        if rec is None:
            raise SequenceError(record_path(seq_dir, step), None,
                                message=f"not found: the `{step}` step has not run on {seq_dir} (or did not finish)",
                                fix=FIXES[step] + ", then `hold preprocess build SEQ_DIR` again")
        recs[step] = rec
    sfm = load_record(seq_dir, "sfm")
    if sfm is not None:
        recs["sfm"] = sfm
    return recs


def _source(rec: StepRecord, tool: str, **extra: Any) -> dict[str, Any]:
    """Provenance of one artefact: the step, the tool, its options, when it finished."""
    return {"step": rec.step, "tool": tool, "options": rec.options, "finished": rec.finished,
            "hold_version": rec.hold_version, "record": f"preprocess/{rec.step}.json", **extra}


def _K(recs: dict[str, StepRecord], size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """K of the aligned hands and object, in pixels of images/ (scaled when the record's image size differs)."""
    info = recs["align"].info
    K = np.asarray(info["K"], dtype=np.float64)
    rec_size = info.get("image_size") or (recs["sfm"].info.get("image_size") if "sfm" in recs else None)
    note = info.get("K_source", "align")
    if rec_size and tuple(rec_size) != tuple(size):
        K = scale_intrinsics(K, (size[0] / rec_size[0], size[1] / rec_size[1]))
        note += f", scaled from {rec_size[0]}x{rec_size[1]} to {size[0]}x{size[1]}"
    return K, note


def sequence_fields(seq_dir: Path, recs: dict[str, StepRecord], old: dict[str, Any] | None) -> dict[str, Any]:
    """sequence.json from the records (old: the sequence.json there, whose extra and frame_names are kept)."""
    stems, size = frame_stems(seq_dir)
    T = len(stems)
    frames, masks, hands, align = recs["frames"].info, recs["masks"].info, recs["hands"].info, recs["align"].info
    for step, n in (("frames", frames.get("num_frames")), ("align", align.get("num_frames"))):
        if n is not None and n != T:
            raise SequenceError(record_path(seq_dir, step), "num_frames", found=f"{n} frames",
                                expected=f"{T} like images/ (the frames were re-extracted since?)",
                                fix=f"re-run the steps after frames ({FIXES[step]})")
    K, K_note = _K(recs, size)
    hand_fields = hands.get("sequence_fields", {})
    sides = [s for s in HAND_SIDES if s in (align.get("hands") or hand_fields.get("hands") or [])]
    hand_model = hand_fields.get("hand_model") or align.get("hand_model") or (old or {}).get("hand_model") or "anny"
    src_info = frames.get("source") or {}
    sources = {
        "images": _source(recs["frames"], f"hold preprocess frames ({src_info.get('backend', '?')})",
                          input=src_info.get("path"), kind=src_info.get("kind"), stride=frames.get("stride"),
                          resize_xy=frames.get("scale_xy")),
        "masks": _source(recs["masks"], str(masks.get("source", "hold preprocess masks")),
                         estimated="masks" in recs["masks"].estimated),
        "hands": _source(recs["hands"], str(hand_fields.get("sources", {}).get("hands", "hold preprocess hands")),
                         estimated=True, sides=sides, aligned_by="preprocess/align.json"),
        "object": _source(recs["align"], "SfM (pycolmap) poses and points, metric scale by hand-object alignment",
                          estimated=True, sfm=_source(recs["sfm"], "pycolmap") if "sfm" in recs else None,
                          scale_m=align.get("scale_m")),
        "intrinsics": _source(recs["align"], K_note, estimated=True),
    }
    extra = dict((old or {}).get("extra") or {})
    extra["preprocess"] = {step: rec.finished for step, rec in recs.items()}
    meta: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "num_frames": T,
        "image_size": [int(size[0]), int(size[1])],
        "K": K.tolist(),
        "hands": sides,
        "hand_model": hand_model,
        "has_object": True,
        "fps": frames.get("fps", (old or {}).get("fps")),
        "sources": sources,
        "extra": extra,
    }
    if old and isinstance(old.get("frame_names"), list) and len(old["frame_names"]) == T:
        meta["frame_names"] = old["frame_names"]
    return meta


def run_build(seq_dir: str | Path, force: bool = False) -> Path:
    """Write and validate SEQ_DIR/sequence.json; returns SEQ_DIR (the build folder)."""
    seq_dir = Path(seq_dir)
    if not seq_dir.is_dir():
        raise SequenceError(seq_dir, None, message="folder not found", fix=FIXES["frames"])
    recs = required_records(seq_dir)
    inputs = [record_path(seq_dir, s) for s in recs] + [seq_dir / IMAGES_DIR, seq_dir / MASKS_DIR,
                                                       seq_dir / HANDS_NPZ, seq_dir / OBJECT_NPZ]
    fp = fingerprint(inputs, {"schema_version": SCHEMA_VERSION}, root=seq_dir)
    if should_skip(seq_dir, STEP, fp, force):
        return seq_dir
    t0 = time.perf_counter()
    path = seq_dir / SEQUENCE_JSON
    old_bytes = path.read_bytes() if path.is_file() else None
    old = None
    if old_bytes is not None:
        with contextlib.suppress(ValueError):
            old = json.loads(old_bytes.decode("utf-8"))
    meta = sequence_fields(seq_dir, recs, old if isinstance(old, dict) else None)
    log = ProblemLog(fail_fast=True)
    check_schema_version(meta, path, log)
    check_meta(meta, path, log)  # a bad field raises here, before anything is written
    remove_record(seq_dir, STEP)
    atomic_write_json(path, meta, allow_nan=False)
    problems = validate(seq_dir, require_masks=True)
    if any(p.severity == "error" for p in problems):
        if old_bytes is not None:
            atomic_write_bytes(path, old_bytes)
        else:
            path.unlink()
        raise BuildError(format_report(problems, seq_dir))
    warns = [str(p) for p in problems]
    for w in warns:
        _say(f"warning: {w}")
    t1 = time.perf_counter()
    write_record(seq_dir, STEP, fp, options={"schema_version": SCHEMA_VERSION}, inputs=inputs,
                 outputs=[SEQUENCE_JSON], info={"sequence": {k: v for k, v in meta.items() if k != "sources"},
                                                "steps": sorted(recs)},
                 warnings=warns, timings={"total": t1 - t0})
    print(format_report(problems, seq_dir))
    return seq_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hold preprocess build",
                                description="Write SEQ_DIR/sequence.json from the preprocessing records (K, hands, "
                                            "provenance of every artefact) and validate the build.")
    p.add_argument("seq_dir", type=Path, metavar="SEQ_DIR", help="the sequence folder")
    p.add_argument("--force", action="store_true", help="rewrite sequence.json even if it is up to date")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_build(args.seq_dir, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
