"""`python -m preprocess.hand_detect SEQ_DIR`: built-in 2D hand keypoints with MediaPipe -> SEQ_DIR/hand_keypoints.npz.

    python -m preprocess.hand_detect SEQ_DIR [--side right|left|auto] [--mediapipe-python PATH]
                                     [--static-image-mode] [--video-mirrored] [--force]
    hold preprocess hands SEQ_DIR --detect ...   (runs this first, then fits the hand to its keypoints)

MediaPipe 0.10.21 is the last release whose wheel bundles the hand models (they run offline), and it
pins numpy<2, which the main environment cannot have. So it runs in its own virtualenv: this module
starts preprocess/mediapipe_worker.py with an interpreter that has it — `--mediapipe-python PATH`,
else $HOLD_MEDIAPIPE_PYTHON, else the current interpreter when it imports mediapipe's
`solutions.hands` — and reads back the worker's .npz (its format: preprocess/mediapipe_worker.py).
docs/mediapipe.md says how to make that environment.

Inputs: SEQ_DIR/images/000000.png ... (`hold preprocess frames`).
Outputs (SEQ_DIR):
- `hand_keypoints.npz`: one hand's per-frame keypoints in the format preprocess/hand_import.py reads
  (`hold preprocess hands SEQ_DIR --keypoints SEQ_DIR/hand_keypoints.npz`): `keypoints_2d` (T,21,3)
  pixels (centres at +0.5) + confidence, NaN where no hand; `valid` (T,); `keypoints_3d` (T,21,3)
  MediaPipe's world landmarks (camera-aligned axes, used up to scale: `keypoints_3d_metric` False);
  `handedness_flipped` (T,); `side`, `source`.
- `preprocess/mediapipe_hands.npz`: the worker's raw output (every hand, MediaPipe's labels).
- `qa/hand_detect.png`: the picked hand (green) and other detections (grey) on sample frames.
- `preprocess/hand_detect.json`: the step record (detection rate, handedness, ms per frame).

Handedness: MediaPipe's classifier assumes a mirrored (selfie) image, so on an ordinary video its
'Left' is the person's right hand (checked on a right-hand video); `--video-mirrored` takes its
labels as they are. A hand labelled as the other side is still taken when it sits where the picked
hand was in the previous detected frame (the label flips on fists and side views).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Bool, Float, Int
from PIL import Image, ImageDraw

from hold.data.errors import SequenceError
from hold.data.io import atomic_write_npz, write_image
from hold.data.schema import IMAGES_DIR
from hold.progress import track
from preprocess.frames import contact_sheet
from preprocess.hands import draw_skeleton, qa_frames
from preprocess.masks import frame_stems
from preprocess.records import fingerprint, load_record, remove_record, should_skip, to_jsonable, write_record

STEP = "hand_detect"
KEYPOINTS_NPZ = "hand_keypoints.npz"
RAW_NPZ = "preprocess/mediapipe_hands.npz"
QA_PATH = "qa/hand_detect.png"
WORKER = Path(__file__).with_name("mediapipe_worker.py")
ENV_VAR = "HOLD_MEDIAPIPE_PYTHON"
WORKER_FORMAT = "hold-mediapipe-hands-1"
MEDIAPIPE_LABELS = ("Left", "Right")
"""MediaPipe's handedness labels as the worker stores them (0, 1)."""
INSTALL_COMMANDS = (
    "python3.11 -m venv ~/.hold-mediapipe",
    '~/.hold-mediapipe/bin/pip install --no-deps "mediapipe==0.10.21" && ~/.hold-mediapipe/bin/pip install '
    'absl-py attrs flatbuffers "numpy<2" "protobuf<5" opencv-contrib-python matplotlib sentencepiece',
)
"""The environment MediaPipe needs (Python 3.9-3.12; --no-deps skips jax/jaxlib, which the hand solution never
imports: 0.5 GB instead of 1 GB). A plain `pip install "mediapipe==0.10.21" "numpy<2"` works too."""
QA_TILES = 8
QA_TILE_SIDE = 320


class HandDetectError(ValueError):
    """The detector cannot run or found nothing; the message names the file or option and the fix."""


@dataclass
class HandDetectConfig:
    """Built-in hand detection: which hand, which MediaPipe interpreter and its options."""

    side: str = "right"
    """Which hand to keep: 'right', 'left', or 'auto' (the side seen in the most frames)."""
    mediapipe_python: str | None = None
    """Python interpreter with mediapipe 0.10.21; None = $HOLD_MEDIAPIPE_PYTHON, else the current one."""
    video_mirrored: bool = False
    """The frames are mirrored (a selfie video): MediaPipe's handedness labels are then the true sides."""
    static_image_mode: bool = False
    """Detect the palm on every frame instead of tracking the hand from the previous frame."""
    max_num_hands: int = 2
    """Hands MediaPipe looks for per frame (the side then picks one)."""
    model_complexity: int = 1
    """MediaPipe's landmark model: 0 lite, 1 full."""
    min_detection_confidence: float = 0.5
    """Palm-detection score (0..1) for a hand to count."""
    min_tracking_confidence: float = 0.5
    """Landmark-tracking score (0..1) below which the palm is detected again."""
    flip_max_distance: float = 0.5
    """A hand labelled as the other side is kept when its 2D centroid is within this fraction of the
    previous pick's hand size (bounding-box diagonal) from the previous pick."""
    world_landmarks: bool = True
    """Write MediaPipe's 3D world landmarks as scale-free keypoints_3d (the fit then matches their shape too)."""
    force: bool = False
    """Redo the step even when its record says it is up to date."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class MediaPipePython:
    """An interpreter that runs the worker."""

    path: str
    """Executable."""
    source: str
    """Where it came from ('--mediapipe-python', '$HOLD_MEDIAPIPE_PYTHON', 'current interpreter')."""
    versions: dict[str, str] = field(default_factory=dict)
    """python, mediapipe and numpy versions it reported."""


@dataclass
class RawDetections:
    """The worker's output: every hand MediaPipe found (M slots per frame; NaN / -1 where empty)."""

    frame_names: list[str]
    """PNG names, in frame order."""
    image_size: Int[np.ndarray, "T 2"]
    """W, H per frame (pixels)."""
    landmarks_px: Float[np.ndarray, "T M 21 3"]
    """u, v pixels (centres at +0.5) and MediaPipe's relative depth (same scale as u)."""
    world_landmarks: Float[np.ndarray, "T M 21 3"]
    """Metres, origin at the hand's centre, image-aligned axes (x right, y down, z away)."""
    handedness: Int[np.ndarray, "T M"]
    """MediaPipe's label: 0 'Left', 1 'Right', -1 no hand (it assumes a mirrored image)."""
    handedness_score: Float[np.ndarray, "T M"]
    """Confidence of that label (0..1)."""
    seconds: Float[np.ndarray, " T"]
    """MediaPipe's processing time per frame (seconds)."""
    mediapipe_version: str
    """Version that ran."""
    options: dict[str, Any] = field(default_factory=dict)
    """The detector options the worker ran with, and its model load time."""


@dataclass
class HandTrack:
    """One hand's detections over the frames, in hold's keypoint order (MediaPipe's is the same)."""

    side: str
    """'right' or 'left'."""
    keypoints_2d: Float[np.ndarray, "T 21 3"]
    """u, v pixels (centres at +0.5) and confidence; 0 where not detected."""
    keypoints_3d: Float[np.ndarray, "T 21 3"]
    """World landmarks (metres, camera-aligned axes, hand-centred); NaN where not detected."""
    detected: Bool[np.ndarray, " T"]
    """Frames where the hand was found."""
    slot: Int[np.ndarray, " T"]
    """Which of MediaPipe's hands was picked (-1: none)."""
    flipped: Bool[np.ndarray, " T"]
    """Picked by position although MediaPipe labelled it as the other side."""


# ----------------------------------------------------------------------------------------------
# Pure parts: handedness, the worker's output, picking one hand


def side_of_label(label: int, video_mirrored: bool = False) -> str | None:
    """The true side of a hand MediaPipe labels `label` (0 'Left', 1 'Right'; else None).

    MediaPipe's classifier assumes a mirrored (selfie) image: on an unmirrored video its 'Left' is a
    right hand.
    """
    if label not in (0, 1):
        return None
    said = ("left", "right")[label]
    if video_mirrored:
        return said
    return "right" if said == "left" else "left"


def _err(path: Path, fld: str | None, message: str, fix: str) -> HandDetectError:
    """SequenceError's 'path: field ... Fix: ...' text as a HandDetectError (its other messages are free-form)."""
    return HandDetectError(str(SequenceError(path, fld, message=message, fix=fix)))


def read_worker_output(path: str | Path, frame_names: list[str] | None = None) -> RawDetections:
    """Parse and check the worker's .npz; `frame_names` (if given) must be the frames it saw, in order."""
    path = Path(path)
    fix = "re-run the detector (its worker wrote an unexpected file; see preprocess/mediapipe_worker.py)"
    try:
        with np.load(path, allow_pickle=False) as z:
            raw = {k: z[k] for k in z.files}
    except Exception as e:  # missing, truncated, not a zip
        raise _err(path, None, f"cannot be read as .npz ({type(e).__name__}: {e})", fix) from e
    if str(raw.get("format", "")) != WORKER_FORMAT:
        raise _err(path, "format", f"is {str(raw.get('format'))!r}, expected {WORKER_FORMAT!r}", fix)
    for key in ("frame_names", "image_size", "landmarks_px", "world_landmarks", "handedness", "handedness_score",
                "seconds"):
        if key not in raw:
            raise _err(path, key, "is missing", fix)
    names = [str(n) for n in raw["frame_names"]]
    T = len(names)
    lm = np.asarray(raw["landmarks_px"], np.float64)
    if lm.ndim != 4 or lm.shape[0] != T or lm.shape[2:] != (21, 3):
        raise _err(path, "landmarks_px", f"has shape {lm.shape}, expected ({T}, M, 21, 3)", fix)
    M = lm.shape[1]
    shapes = {"image_size": (T, 2), "world_landmarks": (T, M, 21, 3), "handedness": (T, M),
              "handedness_score": (T, M), "seconds": (T,)}
    for key, shape in shapes.items():
        if raw[key].shape != shape:
            raise _err(path, key, f"has shape {raw[key].shape}, expected {shape}", fix)
    if frame_names is not None and names != list(frame_names):
        raise _err(path, "frame_names", f"lists {T} frames ({names[:2]}...), expected the {len(frame_names)} frames "
                   f"of images/ ({list(frame_names)[:2]}...)", "re-run the detector on this sequence (--force)")
    label = np.asarray(raw["handedness"]).astype(np.int64)
    empty = ~np.isfinite(lm).all((-1, -2))
    label[empty] = -1  # a slot without landmarks holds no hand, whatever its label
    opts = {k: raw[k].item() for k in ("static_image_mode", "max_num_hands", "model_complexity",
                                        "min_detection_confidence", "min_tracking_confidence", "init_seconds")
            if k in raw}
    return RawDetections(frame_names=names, image_size=np.asarray(raw["image_size"], np.int64), landmarks_px=lm,
                         world_landmarks=np.asarray(raw["world_landmarks"], np.float64), handedness=label,
                         handedness_score=np.asarray(raw["handedness_score"], np.float64),
                         seconds=np.asarray(raw["seconds"], np.float64),
                         mediapipe_version=str(raw.get("mediapipe_version", "unknown")), options=opts)


def _size_px(uv: Float[np.ndarray, "21 2"]) -> float:
    return float(np.linalg.norm(uv.max(0) - uv.min(0)))


def majority_side(raw: RawDetections, video_mirrored: bool = False) -> str:
    """The side present in the most frames ('right' on a tie)."""
    counts = {}
    for s in ("right", "left"):
        counts[s] = sum(any(side_of_label(int(lab), video_mirrored) == s for lab in row) for row in raw.handedness)
    return "left" if counts["left"] > counts["right"] else "right"


def select_hand(raw: RawDetections, side: str, video_mirrored: bool = False, flip_max_distance: float = 0.5
                ) -> HandTrack:
    """Pick one hand per frame: the best-scored hand of `side`, else (label flipped) the hand nearest
    to the previous pick when within `flip_max_distance` x its size. Confidence = MediaPipe's
    probability of `side` (its score, or 1 - score for a flipped label, floored at 0.01)."""
    if side == "auto":
        side = majority_side(raw, video_mirrored)
    if side not in ("right", "left"):
        raise ValueError(f"side {side!r}: expected 'right', 'left' or 'auto'")
    T, M = raw.handedness.shape
    kp2 = np.zeros((T, 21, 3))
    kp3 = np.full((T, 21, 3), np.nan)
    slot = np.full(T, -1, np.int64)
    flipped = np.zeros(T, bool)
    prev: np.ndarray | None = None  # 2D keypoints of the last pick
    for t in range(T):
        hands = [m for m in range(M) if raw.handedness[t, m] >= 0]
        same = [m for m in hands if side_of_label(int(raw.handedness[t, m]), video_mirrored) == side]
        pick, conf = -1, 0.0
        if same:
            pick = max(same, key=lambda m: raw.handedness_score[t, m])
            conf = raw.handedness_score[t, pick]
        elif hands and prev is not None:
            centre = prev.mean(0)
            dist = [float(np.linalg.norm(raw.landmarks_px[t, m, :, :2].mean(0) - centre)) for m in hands]
            m = hands[int(np.argmin(dist))]
            if min(dist) <= flip_max_distance * _size_px(prev):
                pick, conf = m, 1.0 - raw.handedness_score[t, m]
                flipped[t] = True
        if pick < 0:
            continue
        slot[t] = pick
        kp2[t, :, :2] = raw.landmarks_px[t, pick, :, :2]
        kp2[t, :, 2] = float(np.clip(np.nan_to_num(conf, nan=1.0), 0.01, 1.0))
        kp3[t] = raw.world_landmarks[t, pick]
        prev = kp2[t, :, :2]
    return HandTrack(side=side, keypoints_2d=kp2, keypoints_3d=kp3, detected=slot >= 0, slot=slot, flipped=flipped)


def keypoint_arrays(track: HandTrack, world_landmarks: bool = True, source: str = "") -> dict[str, np.ndarray]:
    """`track` in the keypoints .npz layout preprocess/hand_import.py reads (NaN where no hand)."""
    kp2 = np.where(track.detected[:, None, None], track.keypoints_2d, np.nan).astype(np.float32)
    out = {"keypoints_2d": kp2, "valid": track.detected.copy(), "handedness_flipped": track.flipped.copy(),
           "side": np.array(track.side), "source": np.array(source)}
    if world_landmarks:
        out["keypoints_3d"] = np.where(track.detected[:, None, None], track.keypoints_3d, np.nan).astype(np.float32)
        out["keypoints_3d_metric"] = np.array(False)  # MediaPipe's hand size is a generic one
    return out


# ----------------------------------------------------------------------------------------------
# Finding the MediaPipe interpreter and running the worker


def install_hint() -> str:
    return ("create it with\n  " + "\n  ".join(INSTALL_COMMANDS) + f"\nthen pass --mediapipe-python "
            f"~/.hold-mediapipe/bin/python or `export {ENV_VAR}=~/.hold-mediapipe/bin/python` (docs/mediapipe.md)")


def _worker_env() -> dict[str, str]:
    """The caller's environment minus what would leak the main environment's packages into the worker's."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def probe_mediapipe(python: str, timeout_s: float = 120.0) -> dict[str, str] | str:
    """Versions reported by `python mediapipe_worker.py --check`, or why it failed (a string)."""
    try:
        proc = subprocess.run([python, str(WORKER), "--check"], capture_output=True, text=True, timeout=timeout_s,
                              env=_worker_env())
    except (OSError, subprocess.SubprocessError) as e:
        return f"cannot run it ({type(e).__name__}: {e})"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and lines:
        try:
            return {str(k): str(v) for k, v in json.loads(lines[-1]).items()}
        except ValueError:
            pass
    errs = [ln for ln in proc.stderr.splitlines() if "mediapipe_worker: error" in ln] or proc.stderr.splitlines()[-1:]
    return errs[-1].replace("mediapipe_worker: error: ", "") if errs else f"exit status {proc.returncode}"


def find_mediapipe_python(explicit: str | None = None, env: dict[str, str] | None = None) -> MediaPipePython:
    """`explicit` (--mediapipe-python), else $HOLD_MEDIAPIPE_PYTHON, else the current interpreter when it has
    mediapipe's `solutions.hands`; raises HandDetectError with the install commands otherwise."""
    env = os.environ if env is None else env
    for value, source in ((explicit, "--mediapipe-python"), (env.get(ENV_VAR), f"${ENV_VAR}")):
        if not value:
            continue
        path = os.path.expanduser(value)
        res = probe_mediapipe(path)
        if isinstance(res, str):
            raise HandDetectError(f"{source} {value}: this interpreter cannot run MediaPipe's hand solution: {res}. "
                                  f"Fix: point {source} at a Python with mediapipe==0.10.21, or {install_hint()}")
        return MediaPipePython(path, source, res)
    if importlib.util.find_spec("mediapipe") is not None:
        res = probe_mediapipe(sys.executable)
        if not isinstance(res, str):
            return MediaPipePython(sys.executable, "current interpreter", res)
        why = f"the current interpreter has mediapipe but it does not work ({res})"
    else:
        why = f"the current interpreter ({sys.executable}) has no mediapipe"
    raise HandDetectError(f"no Python with MediaPipe's hand models found: {why}, and neither --mediapipe-python nor "
                          f"${ENV_VAR} is set. MediaPipe 0.10.21 (the last release that bundles the hand models) pins "
                          f"numpy<2, so it needs its own environment. Fix: {install_hint()}; or pass keypoints from "
                          f"another detector with `hold preprocess hands SEQ_DIR --keypoints FILE`")


def _worker_args(cfg: HandDetectConfig, images: Path, out: Path) -> list[str]:
    args = [str(WORKER), "--images", str(images), "--out", str(out), "--max-num-hands", str(cfg.max_num_hands),
            "--model-complexity", str(cfg.model_complexity), "--min-detection-confidence",
            str(cfg.min_detection_confidence), "--min-tracking-confidence", str(cfg.min_tracking_confidence)]
    return args + (["--static-image-mode"] if cfg.static_image_mode else [])


def run_worker(python: MediaPipePython, cfg: HandDetectConfig, images: Path, out: Path, num_frames: int) -> float:
    """Run the worker (progress bar from its `progress I N` lines); returns its wall time in seconds."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as err:  # a file, not a pipe: MediaPipe's logging cannot block it
        proc = subprocess.Popen([python.path, *_worker_args(cfg, images, out)], stdout=subprocess.PIPE, stderr=err,
                                text=True, env=_worker_env())

        def frames() -> Iterator[int]:
            for line in proc.stdout:
                if line.startswith("progress "):
                    yield int(line.split()[1])

        try:
            for _ in track(frames(), f"hand_detect: MediaPipe on {num_frames} frames", num_frames,
                           enabled=cfg.progress):
                pass
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if code != 0:
            err.seek(0)
            lines = err.read().splitlines()
            mine = [ln for ln in lines if "mediapipe_worker: error" in ln]
            detail = mine[-1] if mine else "\n".join(lines[-5:])
            raise HandDetectError(f"{images}: the MediaPipe worker ({python.path}) failed with exit status {code}: "
                                  f"{detail}. Fix: re-run `hold preprocess frames` if a frame is unreadable, or check "
                                  f"the MediaPipe environment ({install_hint()})")
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------
# QA picture


def write_qa(path: Path, images: Path, raw: RawDetections, track: HandTrack) -> None:
    """Contact sheet: the picked hand (green; yellow when its label was flipped), other hands (grey);
    orange border = no hand."""
    T = len(raw.frame_names)
    frames = qa_frames(T, track.detected, track.flipped, QA_TILES)
    W, H = (int(x) for x in raw.image_size[0])
    scale = min(1.0, QA_TILE_SIDE / max(W, H))
    tw, th = max(1, round(W * scale)), max(1, round(H * scale))
    tiles, captions = [], []
    for t in frames:
        try:
            with Image.open(images / raw.frame_names[t]) as im:
                tile = im.convert("RGB").resize((tw, th), Image.BILINEAR)
        except OSError:
            tile = Image.new("RGB", (tw, th), (90, 90, 90))
        draw = ImageDraw.Draw(tile)
        for m in range(raw.handedness.shape[1]):
            if raw.handedness[t, m] >= 0 and m != track.slot[t]:
                draw_skeleton(draw, raw.landmarks_px[t, m, :, :2] * scale, np.ones(21), (150, 150, 150), 1, 1.5)
        if track.detected[t]:
            color = (250, 220, 40) if track.flipped[t] else (40, 220, 60)
            draw_skeleton(draw, track.keypoints_2d[t, :, :2] * scale, np.ones(21), color, 2, 2.0)
            captions.append(f"#{t} {track.side} p={track.keypoints_2d[t, 0, 2]:.2f}"
                            + (" flipped" if track.flipped[t] else ""))
        else:
            draw.rectangle([0, 0, tw - 1, th - 1], outline=(255, 150, 0), width=4)
            captions.append(f"#{t} no {track.side} hand")
        tiles.append(np.asarray(tile))
    title = (f"hand_detect: MediaPipe {raw.mediapipe_version}, {track.side} hand in {int(track.detected.sum())}/{T} "
             f"frames   green: picked   yellow: label flipped   grey: other hands   orange border: none")
    write_image(path, contact_sheet(tiles, captions, title, tile_width=tw))


# ----------------------------------------------------------------------------------------------
# The step


def _frame_names(root: Path) -> list[str]:
    """PNG names of SEQ_DIR/images (masks.frame_stems), its errors as HandDetectError."""
    if not root.is_dir():
        raise HandDetectError(f"{root}: folder not found. Fix: pass the sequence folder that `hold preprocess frames` "
                              f"wrote")
    try:
        stems, _ = frame_stems(root)
    except SequenceError as e:
        raise HandDetectError(str(e)) from None
    return [f"{s}.png" for s in stems]


def _check_config(cfg: HandDetectConfig) -> None:
    if cfg.side not in ("right", "left", "auto"):
        raise ValueError(f"--side {cfg.side!r}: expected right, left or auto")
    if cfg.max_num_hands < 1:
        raise ValueError(f"--max-num-hands {cfg.max_num_hands}: expected at least 1")
    if cfg.model_complexity not in (0, 1):
        raise ValueError(f"--model-complexity {cfg.model_complexity}: expected 0 (lite) or 1 (full)")
    for name in ("min_detection_confidence", "min_tracking_confidence"):
        v = getattr(cfg, name)
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')} {v}: expected a value in [0, 1]")


def _options(cfg: HandDetectConfig) -> dict[str, Any]:
    opts = to_jsonable(cfg)
    for key in ("force", "progress", "mediapipe_python"):  # how it runs, not what it computes
        opts.pop(key)
    return opts


def run_detect(seq_dir: str | Path, cfg: HandDetectConfig) -> dict[str, Any]:
    """Run the step on SEQ_DIR; returns its record's info (with 'skipped': True when up to date)."""
    t0 = time.perf_counter()
    root = Path(seq_dir)
    _check_config(cfg)
    names = _frame_names(root)
    images = root / IMAGES_DIR
    T = len(names)
    options = _options(cfg)
    fp = fingerprint([images, WORKER], options, root=root)
    if should_skip(root, STEP, fp, cfg.force):
        return {**load_record(root, STEP).info, "skipped": True}

    python = find_mediapipe_python(cfg.mediapipe_python)
    (root / "preprocess").mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".hand_detect-", suffix=".npz", dir=root / "preprocess")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        worker_s = run_worker(python, cfg, images, tmp, T)
        raw = read_worker_output(tmp, names)
        track = select_hand(raw, cfg.side, cfg.video_mirrored, cfg.flip_max_distance)
        n_hands = int((raw.handedness >= 0).any(1).sum())
        if not track.detected.any():
            other = f" (it found hands of the other side in {n_hands} frames)" if n_hands else ""
            raise HandDetectError(
                f"no hand detected in {images}: MediaPipe found no {track.side} hand in any of the {T} frames{other}. "
                f"Fix: check that the frames show the hand (qa/frames.png); try --side auto, --video-mirrored (a "
                f"selfie video), --static-image-mode or a lower --min-detection-confidence; or pass keypoints from "
                f"another detector with `hold preprocess hands {root} --keypoints FILE`")
        remove_record(root, STEP)  # an interrupted write must not look finished
        mode = "static images" if cfg.static_image_mode else "video tracking"
        source = f"MediaPipe {raw.mediapipe_version} hand landmarks ({mode}, model complexity {cfg.model_complexity})"
        atomic_write_npz(root / KEYPOINTS_NPZ, keypoint_arrays(track, cfg.world_landmarks, source))
        os.replace(tmp, root / RAW_NPZ)
    finally:
        tmp.unlink(missing_ok=True)
    write_qa(root / QA_PATH, images, raw, track)

    det = track.detected
    ms = 1000.0 * raw.seconds
    labels = {lab: int((raw.handedness == i).sum()) for i, lab in enumerate(MEDIAPIPE_LABELS)}
    info = {
        "side": track.side,
        "frames": T,
        "detected": int(det.sum()),
        "detection_rate": float(det.mean()),
        "not_detected_frames": np.flatnonzero(~det).tolist(),
        "handedness_flipped_frames": np.flatnonzero(track.flipped).tolist(),
        "frames_with_any_hand": n_hands,
        "frames_with_two_or_more_hands": int(((raw.handedness >= 0).sum(1) >= 2).sum()),
        "mediapipe_labels": labels,
        "video_mirrored": cfg.video_mirrored,
        "mean_confidence": float(track.keypoints_2d[det, 0, 2].mean()),
        "ms_per_frame": {"mean": float(ms.mean()), "median": float(np.median(ms)), "max": float(ms.max())},
        "mediapipe": {**python.versions, "interpreter": python.path, "interpreter_source": python.source,
                      **{k: v for k, v in raw.options.items()}},
        "source": source,
    }
    notes = []
    if det.mean() < 0.5:
        notes.append(f"the {track.side} hand was found in only {int(det.sum())}/{T} frames; the fit interpolates the "
                     f"rest")
    if track.flipped.any():
        notes.append(f"{int(track.flipped.sum())} frames had MediaPipe's handedness label flipped and were kept by "
                     f"position")
    timings = {"worker_s": worker_s, "mediapipe_s": float(raw.seconds.sum()), "total_s": time.perf_counter() - t0}
    write_record(root, STEP, fp, options=options, inputs=[images, WORKER], outputs=[KEYPOINTS_NPZ, RAW_NPZ, QA_PATH],
                 info=info, estimated=["hand_keypoints"], warnings=notes, timings=timings)
    for note in notes:
        print(f"hold preprocess hand_detect: warning: {note}", file=sys.stderr)
    print(f"hold preprocess hand_detect: {track.side} hand found in {int(det.sum())}/{T} frames "
          f"({100 * det.mean():.0f} %), MediaPipe {ms.mean():.0f} ms/frame; wrote {root / KEYPOINTS_NPZ}, "
          f"{root / QA_PATH}", file=sys.stderr)
    return info


def add_detector_options(p: argparse.ArgumentParser) -> None:
    """The options `hold preprocess hands --detect` shares with this step."""
    p.add_argument("--mediapipe-python", default=None,
                   help=f"Python with mediapipe==0.10.21 (default: ${ENV_VAR}, else this interpreter)")
    p.add_argument("--video-mirrored", action="store_true",
                   help="the frames are mirrored (selfie video): take MediaPipe's handedness labels as they are")
    p.add_argument("--static-image-mode", action="store_true",
                   help="detect the palm on every frame instead of tracking between frames")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m preprocess.hand_detect",
        description="Detect 21 2D hand keypoints per frame with MediaPipe (run in its own environment) and write "
                    "SEQ_DIR/hand_keypoints.npz for `hold preprocess hands SEQ_DIR --keypoints ...`.")
    p.add_argument("seq_dir", type=Path, help="the sequence folder (images/ from `hold preprocess frames`)")
    p.add_argument("--side", choices=("right", "left", "auto"), default="right", help="which hand to keep")
    add_detector_options(p)
    p.add_argument("--max-num-hands", type=int, default=2, help="hands MediaPipe looks for per frame")
    p.add_argument("--model-complexity", type=int, choices=(0, 1), default=1, help="0 lite, 1 full landmark model")
    p.add_argument("--min-detection-confidence", type=float, default=0.5)
    p.add_argument("--min-tracking-confidence", type=float, default=0.5)
    p.add_argument("--no-world-landmarks", action="store_true", help="do not write MediaPipe's 3D landmarks")
    p.add_argument("--force", action="store_true", help="redo even when up to date")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = HandDetectConfig(side=args.side, mediapipe_python=args.mediapipe_python, video_mirrored=args.video_mirrored,
                           static_image_mode=args.static_image_mode, max_num_hands=args.max_num_hands,
                           model_complexity=args.model_complexity,
                           min_detection_confidence=args.min_detection_confidence,
                           min_tracking_confidence=args.min_tracking_confidence,
                           world_landmarks=not args.no_world_landmarks, force=args.force, progress=not args.quiet)
    run_detect(args.seq_dir, cfg)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError) as e:
        print(f"hand_detect: error: {e}", file=sys.stderr)
        sys.exit(1)
