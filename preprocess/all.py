"""`hold preprocess all INPUT --out SEQ_DIR`: every preprocessing step in order, video -> sequence build.

    frames -> hands -> masks -> sfm -> align -> build

Each step keeps its own options, given here with the step's name as a prefix: `--frames.stride 2`,
`--hands.keypoints FILE`, `--masks.dir DIR`, `--sfm.matcher exhaustive`, `--align.<option>` (the options of
`hold preprocess STEP --help`, listed by `hold preprocess all --help`). Two steps have a built-in fallback:

- hands: `--hands.keypoints FILE` / `--hands.mano-params FILE` import estimates made elsewhere; without them the
  MediaPipe detector (preprocess/hand_detect.py) writes SEQ_DIR/hand_keypoints.npz first and the hand model is
  fitted to that.
- masks: `--masks.dir DIR` imports label masks (or, when DIR holds `object/` [`right/`, `left/`] subfolders,
  per-entity binary masks); `--masks.labels/--masks.object/--masks.right/--masks.left` name them explicitly.
  Without them the masks are estimated (preprocess/mask_estimate.py: the fitted hand's silhouette + GrabCut).

Hands come before masks because the mask fallback starts from the fitted hand. Every step skips itself when
its record says it is up to date (preprocess/records.py), so re-running `all` after a failure resumes where it
stopped; `--force STEP ...` (or `--force` alone: every step) redoes steps. A repeated complete run with nothing
changed is skipped as a whole (`pipeline_fingerprint`): step by step it would not be, since align rewrites
hands.npz and object.npz and build writes the sequence.json whose K the hands step reads, so after any change
the hands fit and SfM run again too.
Bad input stops the pipeline with one message naming the step; the outputs of the steps before it stay as
they are. One line per step says what runs and the ETA of the whole pipeline; the run ends with a summary of
the outputs, also written to SEQ_DIR/preprocess/all.json.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import json
import sys
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from hold.data.io import atomic_write_json
from hold.data.schema import HANDS_NPZ, IMAGES_DIR, MASKS_DIR, OBJECT_NPZ, SEQUENCE_JSON
from preprocess.align import AlignConfig, run_align
from preprocess.build import run_build
from preprocess.frames import FramesConfig, expected_count, extract_frames, open_source, output_size, resolve_frame
from preprocess.hand_detect import KEYPOINTS_NPZ, HandDetectConfig, run_detect
from preprocess.hand_fit import HandFitConfig
from preprocess.hands import HandsConfig, run_hands
from preprocess.mask_estimate import MaskEstimateConfig, run_mask_estimate
from preprocess.masks import MasksConfig, import_masks
from preprocess.records import RECORD_DIR, fingerprint, load_record, record_path, to_jsonable
from preprocess.sfm import SfmConfig, run_sfm
from preprocess.sfm_colmap import ColmapConfig

PIPELINE = ("frames", "hands", "masks", "sfm", "align", "build")
"""The steps, in the order they run."""
SUMMARY_JSON = f"{RECORD_DIR}/all.json"
"""What the last `all` run did, per step (status, seconds) and the outputs it left."""
MIN_FRAMES = 8
"""Fewest frames the pipeline works on: SfM needs the object from several overlapping views, the hand fit and the
alignment smooth over time (the frames step alone accepts 3)."""
ENTITY_DIRS = ("object", "right", "left")
"""Subfolders of --masks.dir that mark per-entity binary masks (SAM-Track / SAM2 style)."""

# Rough cost of each step, seconds = fixed + per_frame * T + per_mpx * T * megapixels, from `all` runs on hold.synth
# clips (32 and 60 frames, 512 px) on the 2-core project machine. Only the ETA uses it, rescaled by the steps
# measured so far (remaining_seconds).
PRIOR_COST: dict[str, tuple[float, float, float]] = {
    "frames": (0.3, 0.0, 0.1),
    "hand_detect": (2.0, 0.04, 0.0),
    "hands": (2.0, 0.17, 0.0),
    "masks": (0.2, 0.0, 0.1),
    "mask_estimate": (1.0, 0.05, 1.0),
    "sfm": (2.0, 0.15, 2.0),
    "align": (2.0, 0.3, 0.0),
    "build": (0.2, 0.0, 0.01),
}


class StepFailed(ValueError):
    """A step stopped on bad input; the message names the step and carries the step's own message."""

    def __init__(self, step: str, cause: BaseException):
        self.step = step
        """The step that stopped."""
        super().__init__(f"hold preprocess all: step '{step}' stopped (the outputs of the steps before it are kept): "
                         f"{cause}")


@dataclass
class AllConfig:
    """`hold preprocess all`: the options of every step, which steps to redo, where to stop."""

    frames: FramesConfig = field(default_factory=FramesConfig)
    """Frame extraction (stride, max side, range)."""
    hands: HandsConfig = field(default_factory=HandsConfig)
    """Hand import + fit; with neither `keypoints` nor `mano_params` the MediaPipe detector supplies keypoints."""
    hand_detect: HandDetectConfig | None = None
    """The MediaPipe detector; None: its defaults. Its `side` is always `hands.side` (the hand the fit is of)."""
    masks: MasksConfig | None = None
    """Mask import; None: the masks are estimated (preprocess.mask_estimate)."""
    mask_estimate: MaskEstimateConfig | None = None
    """The built-in mask estimate (when `masks` is None); None: its defaults."""
    sfm: SfmConfig = field(default_factory=SfmConfig)
    """Object SfM."""
    align: AlignConfig | None = None
    """Hand-object alignment; None: its defaults."""
    force: tuple[str, ...] = ()
    """Steps to redo even when up to date (names from PIPELINE)."""
    until: str = "build"
    """Last step to run (the later ones are left alone)."""

    def steps(self) -> tuple[str, ...]:
        """The steps this run covers, in order."""
        if self.until not in PIPELINE:
            raise ValueError(f"--until {self.until!r}: expected one of {', '.join(PIPELINE)}")
        return PIPELINE[: PIPELINE.index(self.until) + 1]


# ----------------------------------------------------------------------------------------------
# Pure helpers


def step_cost(step: str, num_frames: int, megapixels: float) -> float:
    """Prior seconds of a (sub)step for `num_frames` frames of `megapixels` each (see PRIOR_COST)."""
    fixed, per_frame, per_mpx = PRIOR_COST[step]
    return fixed + num_frames * (per_frame + per_mpx * megapixels)


def remaining_seconds(prior_done: float, actual_done: float, prior_left: float, prior_weight: float = 10.0) -> float:
    """ETA of the rest: its prior cost rescaled by how the finished steps compared with theirs. The factor
    (actual + w) / (prior + w) counts the prior as `prior_weight` seconds of evidence, so one short step that ran
    fast or slow does not swing the estimate, and it is clamped to [0.25, 4]."""
    if actual_done <= 0:
        return prior_left
    factor = (actual_done + prior_weight) / max(prior_done + prior_weight, 1e-9)
    return prior_left * min(4.0, max(0.25, factor))


def format_seconds(seconds: float) -> str:
    """'0:42', '3:05', '1:02:09'."""
    s = int(round(max(0.0, seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def masks_from_dir(folder: Path, ignore_band: int = 0, threshold: int = MasksConfig.threshold) -> MasksConfig:
    """The import of `--masks.dir`: per-entity binary masks when it has object/ (right/, left/) subfolders, else
    label masks."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found (--masks.dir). Fix: pass the folder of label masks "
                                f"(one PNG per frame), or of object/ [right/ left/] mask subfolders")
    subs = {name: folder / name for name in ENTITY_DIRS if (folder / name).is_dir()}
    if subs:
        if "object" not in subs:
            raise ValueError(f"{folder}: has {'/'.join(sorted(subs))}/ subfolders but no object/ (--masks.dir). "
                             f"Fix: add the object's masks as {folder / 'object'}/ (SfM needs the object)")
        return MasksConfig(object=subs["object"], right=subs.get("right"), left=subs.get("left"),
                           ignore_band=ignore_band, threshold=threshold)
    return MasksConfig(labels=folder, ignore_band=ignore_band, threshold=threshold)


def _uses_detector(cfg: AllConfig) -> bool:
    return not (cfg.hands.keypoints or cfg.hands.mano_params)


# ----------------------------------------------------------------------------------------------
# Running the steps


@dataclass
class StepReport:
    """What one step of the pipeline did."""

    step: str
    """Step name (PIPELINE)."""
    status: str = "pending"
    """'done', 'skipped' (up to date) or 'pending' (not reached)."""
    seconds: float = 0.0
    """Wall time, seconds (small when skipped)."""
    detail: str = ""
    """How it ran (e.g. 'keypoints from FILE', 'masks estimated')."""
    parts: dict[str, str] = field(default_factory=dict)
    """Status of each sub-step (e.g. hand_detect + hands)."""


def _record_stamp(seq_dir: Path, step: str) -> int | None:
    """mtime (ns) of a step's record, None when there is none: an unchanged stamp after a call = skipped."""
    path = record_path(seq_dir, step)
    return path.stat().st_mtime_ns if path.is_file() else None


def _call(seq_dir: Path, record: str, fn: Callable[[], Any]) -> str:
    """Run one (sub)step; 'skipped' when it left its record untouched, else 'done'."""
    before = _record_stamp(seq_dir, record)
    fn()
    after = _record_stamp(seq_dir, record)
    return "skipped" if before is not None and after == before else "done"


def _frames_estimate(source: Path, cfg: FramesConfig) -> tuple[int, float] | None:
    """(frames, megapixels per frame) the frames step will write, from the input's header; None if unknown."""
    try:
        src = open_source(source, cfg.fps, cfg.backend)
        try:
            info = src.info
            if not info.declared_frames:
                return None
            start = resolve_frame(cfg.start, info.fps, "--start", source)
            end = None if cfg.end is None else resolve_frame(cfg.end, info.fps, "--end", source)
            W, H = output_size(info.width, info.height, cfg.max_side)
            return expected_count(info.declared_frames, start, end, cfg.stride), W * H / 1e6
        finally:
            src.close()
    except Exception:  # noqa: BLE001 - only an ETA; the frames step reports a bad input properly
        return None


def _sub_steps(step: str, cfg: AllConfig) -> list[str]:
    """The PRIOR_COST entries a step runs."""
    if step == "hands":
        return (["hand_detect"] if _uses_detector(cfg) else []) + ["hands"]
    if step == "masks":
        return ["mask_estimate"] if cfg.masks is None else ["masks"]
    return [step]


class _Pipeline:
    """Runs the steps in order, printing one line per step with the pipeline's ETA."""

    def __init__(self, source: Path, seq_dir: Path, cfg: AllConfig, progress: bool):
        self.source, self.seq_dir, self.cfg, self.progress = source, seq_dir, cfg, progress
        self.steps = cfg.steps()
        self.reports = {s: StepReport(s) for s in self.steps}
        self.shape: tuple[int, float] | None = _frames_estimate(source, cfg.frames)
        self.prior_done = self.actual_done = 0.0
        self.t0 = time.perf_counter()

    def forced(self, step: str) -> bool:
        return step in self.cfg.force

    def _prior(self, step: str) -> float | None:
        if self.shape is None:
            return None
        return sum(step_cost(s, *self.shape) for s in _sub_steps(step, self.cfg))

    def _say(self, text: str) -> None:
        print(f"hold preprocess all: {text}", file=sys.stderr, flush=True)

    def announce(self, k: int, step: str, what: str) -> None:
        left = [self._prior(s) for s in self.steps[k:]]
        eta = "ETA unknown"
        if all(p is not None for p in left):
            eta = f"pipeline ETA ~{format_seconds(remaining_seconds(self.prior_done, self.actual_done, sum(left)))}"
        elapsed = format_seconds(time.perf_counter() - self.t0)
        self._say(f"[{k + 1}/{len(self.steps)}] {step}: {what} (elapsed {elapsed}, {eta})")

    def finish(self, step: str, status: str, seconds: float) -> None:
        rep = self.reports[step]
        rep.status, rep.seconds = status, seconds
        prior = self._prior(step)
        if status == "done" and prior is not None:  # skipped steps say nothing about this machine's speed
            self.prior_done += prior
            self.actual_done += seconds
        if step == "frames":  # from now on the real frame count and size
            rec = load_record(self.seq_dir, "frames")
            if rec is not None:
                W, H = rec.info["image_size"]
                self.shape = (int(rec.info["num_frames"]), W * H / 1e6)
                self._check_length(rec.info)

    def _check_length(self, info: Mapping[str, Any]) -> None:
        T = int(info["num_frames"])
        if T < MIN_FRAMES:
            cfg = self.cfg.frames
            raise StepFailed("frames", ValueError(
                f"{self.source}: has {T} frames with --frames.stride {cfg.stride} --frames.start {cfg.start} "
                f"--frames.end {cfg.end} ({info.get('source_num_frames')} input frames), expected at least "
                f"{MIN_FRAMES} for the whole pipeline (SfM needs the object from several views). Fix: lower "
                f"--frames.stride, widen --frames.start/--frames.end, or film a longer clip"))

    def run(self) -> dict[str, StepReport]:
        for k, step in enumerate(self.steps):
            what, fn = getattr(self, f"_plan_{step}")()
            self.announce(k, step, what)
            self.reports[step].detail = what
            t = time.perf_counter()
            try:
                status = fn()
            except StepFailed:
                raise
            except (ValueError, FileNotFoundError) as e:  # bad input: one message, named after the step
                raise StepFailed(step, e) from e
            self.finish(step, status, time.perf_counter() - t)
        return self.reports

    # One `_plan_<step>` per step: (what it will do, in words; the call that does it -> 'done' | 'skipped').

    def _plan_frames(self) -> tuple[str, Callable[[], str]]:
        cfg = self.cfg.frames
        what = f"extracting frames of {self.source.name} (stride {cfg.stride}, max side {cfg.max_side or 'kept'})"
        return what, lambda: _call(self.seq_dir, "frames", lambda: extract_frames(
            self.source, self.seq_dir, cfg, force=self.forced("frames"), progress=self.progress))

    def _plan_hands(self) -> tuple[str, Callable[[], str]]:
        cfg = dataclasses.replace(self.cfg.hands, force=self.forced("hands"), progress=self.progress)
        rep = self.reports["hands"]
        if not _uses_detector(self.cfg):
            src = cfg.keypoints or cfg.mano_params
            return f"fitting the {cfg.side} hand to {Path(src).name}", lambda: _call(
                self.seq_dir, "hands", lambda: run_hands(self.seq_dir, cfg))

        # The detector picks the hand the fit is of: another side would fit a right hand's keypoints as a left hand.
        detect = dataclasses.replace(self.cfg.hand_detect or HandDetectConfig(), side=cfg.side, force=cfg.force,
                                     progress=self.progress)

        def detect_then_fit() -> str:
            rep.parts["hand_detect"] = _call(self.seq_dir, "hand_detect", lambda: run_detect(self.seq_dir, detect))
            keypoints = self.seq_dir / KEYPOINTS_NPZ
            if not keypoints.is_file():
                raise FileNotFoundError(f"{keypoints}: not found after the MediaPipe detector ran (it writes its "
                                        f"keypoints there). Fix: run `hold preprocess hands SEQ_DIR --detect` to see "
                                        f"what the detector says, or pass --hands.keypoints FILE")
            fit = dataclasses.replace(cfg, keypoints=str(keypoints))
            rep.parts["hands"] = _call(self.seq_dir, "hands", lambda: run_hands(self.seq_dir, fit))
            return "skipped" if set(rep.parts.values()) == {"skipped"} else "done"

        return f"detecting the hand (MediaPipe), then fitting the {cfg.side} hand", detect_then_fit

    def _plan_masks(self) -> tuple[str, Callable[[], str]]:
        force = self.forced("masks")
        if self.cfg.masks is not None:
            srcs = ", ".join(f"{k} {v}" for k, v in self.cfg.masks.sources().items())
            return f"importing masks ({srcs})", lambda: _call(self.seq_dir, "masks", lambda: import_masks(
                self.seq_dir, self.cfg.masks, force=force, progress=self.progress))

        return "estimating masks (fitted hand silhouette + GrabCut object)", lambda: _call(
            self.seq_dir, "masks", lambda: run_mask_estimate(self.seq_dir, self.cfg.mask_estimate, force=force,
                                                             progress=self.progress))

    def _plan_sfm(self) -> tuple[str, Callable[[], str]]:
        return f"object SfM ({self.cfg.sfm.matcher} matching)", lambda: _call(self.seq_dir, "sfm", lambda: run_sfm(
            self.seq_dir, self.cfg.sfm, force=self.forced("sfm"), progress=self.progress))

    def _plan_align(self) -> tuple[str, Callable[[], str]]:
        return "hand-object alignment (metric scale, SfM intrinsics)", lambda: _call(
            self.seq_dir, "align", lambda: run_align(self.seq_dir, self.cfg.align, force=self.forced("align"),
                                                     progress=self.progress))

    def _plan_build(self) -> tuple[str, Callable[[], str]]:
        return "writing and validating sequence.json", lambda: _call(
            self.seq_dir, "build", lambda: run_build(self.seq_dir, force=self.forced("build")))


# ----------------------------------------------------------------------------------------------
# Summary


def _count(folder: Path, pattern: str = "*.png") -> int:
    return sum(1 for _ in folder.glob(pattern)) if folder.is_dir() else 0


def summarize(seq_dir: Path, reports: Mapping[str, StepReport], seconds: float) -> dict[str, Any]:
    """The outputs in SEQ_DIR and what each step did (JSON types)."""
    out: dict[str, Any] = {
        "seq_dir": str(seq_dir),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "steps": {s: {"status": r.status, "seconds": round(r.seconds, 3), "detail": r.detail, **(
            {"parts": r.parts} if r.parts else {})} for s, r in reports.items()},
        "frames": _count(seq_dir / IMAGES_DIR),
        "masks": _count(seq_dir / MASKS_DIR),
        "qa": sorted(p.relative_to(seq_dir).as_posix() for p in (seq_dir / "qa").glob("*.png")),
        "sequence_json": (seq_dir / SEQUENCE_JSON).is_file(),
    }
    rec = load_record(seq_dir, "masks")
    if rec is not None:
        out["masks_estimated"] = "masks" in rec.estimated
    if (seq_dir / HANDS_NPZ).is_file():
        with np.load(seq_dir / HANDS_NPZ) as z:
            out["hands"] = {k.split("/")[0]: int(z[k].sum()) for k in z.files if k.endswith("/valid")}
    if (seq_dir / OBJECT_NPZ).is_file():
        with np.load(seq_dir / OBJECT_NPZ) as z:
            out["object"] = {"registered": int(z["valid"].sum()), "points": int(len(z["points"])),
                             "scale": float(z["scale"])}
    return out


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as lines for a person."""
    T = summary["frames"]
    lines = [f"hold preprocess all: finished in {format_seconds(summary['seconds'])} -> {summary['seq_dir']}"]
    for step, s in summary["steps"].items():
        lines.append(f"  {step:<7} {s['status']:<8} {s['seconds']:7.1f} s  {s['detail']}")
    lines.append(f"  images/  {T} frames")
    if summary["masks"]:
        how = {True: " (estimated)", False: " (imported)"}.get(summary.get("masks_estimated"), "")
        lines.append(f"  masks/   {summary['masks']} label masks{how}")
    for side, n in summary.get("hands", {}).items():
        lines.append(f"  {HANDS_NPZ} {side} hand observed in {n}/{T} frames (the rest interpolated)")
    if "object" in summary:
        o = summary["object"]
        lines.append(f"  {OBJECT_NPZ} {o['registered']}/{T} frames registered by SfM, {o['points']} canonical points, "
                     f"scale {o['scale']:.4g}")
    if summary["sequence_json"]:
        lines.append(f"  {SEQUENCE_JSON} written")
    if summary["qa"]:
        lines.append(f"  QA pictures: {', '.join(summary['qa'])}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Entry points


def run_all(source: Path, seq_dir: Path, cfg: AllConfig, progress: bool = True) -> Path:
    """Run the pipeline on `source` (a video or an image folder) into `seq_dir`; returns `seq_dir`.

    Stops with StepFailed (a ValueError with one clear message) naming the step when a step rejects its input.
    """
    source, seq_dir = Path(source), Path(seq_dir)
    bad = sorted(set(cfg.force) - set(PIPELINE))
    if bad:
        raise ValueError(f"--force {' '.join(bad)}: unknown step(s); expected some of {', '.join(PIPELINE)}")
    if not source.exists():
        raise FileNotFoundError(f"{source}: not found (INPUT). Fix: pass a video file (mp4/mov/avi/mkv) or a folder "
                                f"of png/jpg frames")
    t0 = time.perf_counter()
    previous = _load_summary(seq_dir)
    if not cfg.force and previous is not None and previous.get("fingerprint") == pipeline_fingerprint(
            source, seq_dir, cfg):
        print(f"hold preprocess all: up to date (same input, options and outputs as the run of "
              f"{previous.get('finished')}), every step skipped; pass --force to redo steps", file=sys.stderr)
        reports = {s: StepReport(s, "skipped", detail=previous["steps"][s]["detail"]) for s in cfg.steps()}
    else:
        (seq_dir / SUMMARY_JSON).unlink(missing_ok=True)  # until this run completes there is no complete run
        reports = _Pipeline(source, seq_dir, cfg, progress).run()
    summary = summarize(seq_dir, reports, time.perf_counter() - t0)
    summary["fingerprint"] = pipeline_fingerprint(source, seq_dir, cfg)
    atomic_write_json(seq_dir / SUMMARY_JSON, to_jsonable(summary), allow_nan=False)
    print(format_summary(summary))
    return seq_dir


def _load_summary(seq_dir: Path) -> dict[str, Any] | None:
    """SEQ_DIR/preprocess/all.json of the last complete run, or None."""
    try:
        return json.loads((seq_dir / SUMMARY_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _option_paths(options: Any) -> list[Path]:
    """Files and folders named in the options (keypoint files, mask folders, ...): inputs of the pipeline too."""
    if isinstance(options, Mapping):
        return [p for v in options.values() for p in _option_paths(v)]
    if isinstance(options, list):
        return [p for v in options for p in _option_paths(v)]
    if isinstance(options, str) and ("/" in options or Path(options).suffix) and Path(options).exists():
        return [Path(options)]
    return []


def pipeline_fingerprint(source: Path, seq_dir: Path, cfg: AllConfig) -> str:
    """Fingerprint of a whole run: the input, the files the options name, the options, and everything in SEQ_DIR
    (but this summary and SfM's work folder). The steps' own records make each step skip itself; this one lets a
    repeated `all` skip at once even where a later step rewrote an earlier one's output (align rewrites hands.npz,
    build writes the sequence.json whose K the hands step would read)."""
    options = to_jsonable(dataclasses.replace(cfg, force=()))
    outputs: list[Path] = []
    if seq_dir.is_dir():
        outputs = sorted(p for p in seq_dir.iterdir() if not p.name.startswith(".") and p.name != RECORD_DIR)
        records = seq_dir / RECORD_DIR
        if records.is_dir():
            outputs += sorted(p for p in records.iterdir() if not p.name.startswith(".")
                              and p.name not in (Path(SUMMARY_JSON).name, "sfm_work"))
    return fingerprint([source, *_option_paths(options), *outputs], {"options": options}, root=seq_dir)


# --- command line: the steps' own options, prefixed with the step name


STEP_PARSERS: dict[str, tuple[str, ...]] = {
    "frames": ("frames",),
    "hands": ("hands", "hand_detect"),
    "masks": ("masks", "mask_estimate"),
    "sfm": ("sfm",),
    "align": ("align",),
}
"""Modules whose `build_parser()` options become `--<step>.<option>` options of `all` (build has none)."""
OWN_OPTIONS = {"help", "force", "quiet", "out", "seq_dir", "input", "detect", "estimate"}
"""Step options `all` does not forward: it decides these itself (positionals, --force, --quiet, fallbacks)."""


def _step_parser(module: str) -> argparse.ArgumentParser:
    return importlib.import_module(f"preprocess.{module}").build_parser()


def _forward_options(parser: argparse.ArgumentParser) -> None:
    """Add a copy of every step option as `--<step>.<option>` (dest '<step>.<dest>') in one group per step."""
    seen: set[str] = set()
    for step, modules in STEP_PARSERS.items():
        group = None
        for module in modules:
            sub = _step_parser(module)
            for action in sub._actions:  # argparse has no public API to copy options between parsers
                longs = [s for s in action.option_strings if s.startswith("--")]
                if not longs or action.dest in OWN_OPTIONS:
                    continue
                strings = [f"--{step}.{s[2:]}" for s in longs if f"--{step}.{s[2:]}" not in seen]
                if not strings:
                    continue
                if group is None:
                    group = parser.add_argument_group(
                        f"{step} options", f"options of `hold preprocess {step}` (see its --help), prefixed")
                new = copy.copy(action)
                new.option_strings, new.dest, new.required = strings, f"{step}.{action.dest}", False
                if new.metavar is None and new.nargs != 0:  # not 'FRAMES.STRIDE'
                    new.metavar = action.dest.upper()
                group._add_action(new)
                seen.update(strings)
            if step == "masks" and module == "masks":
                group = group or parser.add_argument_group("masks options")
                group.add_argument("--masks.dir", dest="masks.dir", type=Path, metavar="DIR",
                                   help="masks made elsewhere: label masks, or object/ [right/ left/] subfolders of "
                                        "binary masks (SAM-Track / SAM2); without it the masks are estimated")
                seen.add("--masks.dir")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hold preprocess all",
        usage="hold preprocess all INPUT --out SEQ_DIR [--force [STEP ...]] [--until STEP] [--quiet] "
              "[--<step>.<option> ...]",
        description="Run every preprocessing step in order (frames -> hands -> masks -> sfm -> align -> build) on a "
                    "video, into a sequence build. Finished steps with unchanged inputs are skipped. Each step's "
                    "options are given with its name as a prefix, e.g. --frames.stride 2 --hands.keypoints FILE "
                    "--masks.dir DIR --sfm.matcher exhaustive.",
        epilog="Without --hands.keypoints/--hands.mano-params the hand is detected with MediaPipe; without "
               "--masks.dir/--masks.labels/--masks.object the masks are estimated. See docs/preprocess.md.")
    p.add_argument("input", type=Path, metavar="INPUT", help="a video (mp4/mov/avi/mkv) or a folder of png/jpg frames")
    p.add_argument("--out", type=Path, required=True, metavar="SEQ_DIR", help="the sequence folder to write")
    p.add_argument("--force", nargs="*", metavar="STEP", default=None,
                   help="redo these steps even when up to date (no STEP: all of them)")
    p.add_argument("--until", default="build", choices=PIPELINE, help="stop after this step (default: build)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (the per-step lines stay)")
    _forward_options(p)
    return p


def _given(ns: argparse.Namespace, step: str) -> dict[str, Any]:
    """The '<step>.<dest>' values of the namespace, keyed by dest."""
    return {k[len(step) + 1:]: v for k, v in vars(ns).items() if k.startswith(f"{step}.")}


OPTION_FIELDS: dict[str, dict[str, tuple[tuple[str, ...], Callable[[Any], Any]]]] = {
    "align": {"no_residual": (("fit.residual_translation",), lambda v: not v),
              "contact_offset": (("fit.contact_offset_m",), float),
              "smooth_scale": (("fit.smooth_scale_m",), float),
              "iters": (("fit.object_iters", "fit.joint_iters"), int)},
}
"""Options of a step module (without `config_from_args`) whose config field has another name: dest -> (dotted
field paths, conversion). Options named like their field (or `no_<field>` flags) need no entry."""


def _fill_dataclass(cls: type, values: Mapping[str, Any], aliases: Mapping[str, tuple] | None = None
                    ) -> tuple[Any, set[str]]:
    """(an instance of the config dataclass `cls` with its fields set from the option values, the options used).

    A field takes the option of the same name, the `no_<name>` flag negated, or an option `aliases` maps onto its
    dotted path (e.g. 'fit.contact_offset_m'); nested dataclass fields too."""
    by_path: dict[str, tuple[str, Any]] = {}
    for key, (paths, convert) in (aliases or {}).items():
        if key in values and values[key] is not None:
            by_path.update({path: (key, convert(values[key])) for path in paths})
    used: set[str] = set()

    def make(c: type, prefix: str) -> Any:
        kwargs = {}
        hints = typing.get_type_hints(c)
        for f in dataclasses.fields(c):
            path = prefix + f.name
            if dataclasses.is_dataclass(hints.get(f.name)):
                kwargs[f.name] = make(hints[f.name], path + ".")
            elif path in by_path:
                key, kwargs[f.name] = by_path[path]
                used.add(key)
            elif f.name in values:
                kwargs[f.name] = values[f.name]
                used.add(f.name)
            elif isinstance(values.get(f"no_{f.name}"), bool):  # --no-world-landmarks -> world_landmarks=False
                kwargs[f.name] = not values[f"no_{f.name}"]
                used.add(f"no_{f.name}")
        return c(**kwargs)

    return make(cls, ""), used


def module_config(module: str, cls: type, values: Mapping[str, Any]) -> Any:
    """The config (`cls`) of step module preprocess.<module> from the options given (keyed by its argparse dests).

    The module's own `config_from_args` maps them when it has one (on a namespace of its parser's defaults with
    `values` on top); else they fill the fields of `cls` (see `_fill_dataclass`, OPTION_FIELDS), and an option of
    the module that no field takes is an error rather than silently ignored. None when no option was given (the
    step then uses its defaults).
    """
    if not values:  # None: the step's own defaults
        return None
    mod = importlib.import_module(f"preprocess.{module}")
    parser = mod.build_parser()
    convert = getattr(mod, "config_from_args", None)
    if convert is not None:
        ns = argparse.Namespace(**{a.dest: a.default for a in parser._actions if a.dest != "help"})
        for k, v in values.items():
            if hasattr(ns, k):
                setattr(ns, k, v)
        return convert(ns)
    cfg, used = _fill_dataclass(cls, values, OPTION_FIELDS.get(module))
    lost = sorted((set(values) & {a.dest for a in parser._actions}) - used)
    if lost:
        raise ValueError(f"option {lost[0]!r} of preprocess/{module}.py has no field in {cls.__name__} that "
                         f"`hold preprocess all` can set. Fix: run that step alone (`hold preprocess ...`) with it")
    return cfg


def _defaults(parser: argparse.ArgumentParser, step: str) -> dict[str, Any]:
    return {a.dest[len(step) + 1:]: a.default for a in parser._actions if a.dest.startswith(f"{step}.")}


def _changed(values: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The options given on the command line (different from `all`'s defaults): the others keep each module's own
    defaults (two steps may share an option name with different defaults)."""
    return {k: v for k, v in values.items() if v != defaults.get(k)}


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> AllConfig:
    """AllConfig from the parsed command line (each step's options mapped like the step's own `main` does)."""
    fr = _given(args, "frames")
    frames = FramesConfig(
        stride=fr.get("stride", FramesConfig.stride), max_side=fr.get("max_side", FramesConfig.max_side),
        start=str(fr.get("start", FramesConfig.start)), end=None if fr.get("end") is None else str(fr["end"]),
        fps=fr.get("fps"), backend=fr.get("backend", FramesConfig.backend))

    h = _given(args, "hands")
    fit = HandFitConfig() if h.get("steps") is None else HandFitConfig(steps=h["steps"])
    hand_keys = {f.name for f in dataclasses.fields(HandsConfig)} - {"fit", "force", "progress"}
    hands = HandsConfig(**{k: v for k, v in h.items() if k in hand_keys}, fit=fit)
    hand_detect = None
    if not (hands.keypoints or hands.mano_params):
        hand_detect = module_config("hand_detect", HandDetectConfig, _changed(h, _defaults(parser, "hands")))

    m = _given(args, "masks")
    band = m.get("ignore_band") or 0  # None: the import's default 0 (the estimate has its own)
    threshold = m.get("threshold", MasksConfig.threshold)
    explicit = {k: m.get(k) for k in ("labels", "object", "right", "left") if m.get(k) is not None}
    if m.get("dir") is not None and explicit:
        raise ValueError(f"--masks.dir was given together with --masks.{next(iter(explicit))}. Fix: pass one of them")
    masks: MasksConfig | None = None
    if m.get("dir") is not None:
        masks = masks_from_dir(m["dir"], band, threshold)
    elif explicit:
        masks = MasksConfig(**explicit, ignore_band=band, threshold=threshold)
    mask_estimate = None
    if masks is None:
        mask_estimate = module_config("mask_estimate", MaskEstimateConfig, _changed(m, _defaults(parser, "masks")))

    s = _given(args, "sfm")
    d, c = SfmConfig(), ColmapConfig()
    colmap = ColmapConfig(mapper=s.get("mapper", c.mapper), overlap=s.get("overlap", c.overlap),
                          max_features=s.get("max_features", c.max_features),
                          camera_model=s.get("camera_model", c.camera_model),
                          num_threads=s.get("threads", c.num_threads),
                          seed=s.get("seed", c.seed), num_starts=s.get("starts", c.num_starts))
    sfm = SfmConfig(matcher=s.get("matcher", d.matcher), min_registered=s.get("min_registered", d.min_registered),
                    min_rotation_deg=s.get("min_rotation", d.min_rotation_deg), focal_px=s.get("focal"),
                    hand_margin_px=s.get("hand_margin", d.hand_margin_px),
                    edge_margin_px=s.get("edge_margin", d.edge_margin_px),
                    min_track_length=s.get("min_track_length", d.min_track_length),
                    keep_work=bool(s.get("keep_work", False)), colmap=colmap)

    a = _given(args, "align")
    align = module_config("align", AlignConfig, _changed(a, _defaults(parser, "align")))

    force = PIPELINE if args.force is not None and not args.force else tuple(args.force or ())
    return AllConfig(frames=frames, hands=hands, hand_detect=hand_detect, masks=masks, mask_estimate=mask_estimate,
                     sfm=sfm, align=align, force=force, until=args.until)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(args, parser)
    run_all(args.input, args.out, cfg, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError) as e:  # as `hold preprocess all` does: one message, no traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
