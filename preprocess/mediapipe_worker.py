"""MediaPipe hand landmarks of a folder of frames -> one .npz. Runs INSIDE a MediaPipe environment.

This script is started by preprocess/hand_detect.py with an interpreter that has mediapipe 0.10.21
(`mp.solutions.hands`, whose palm-detection and landmark models ship in the wheel and run offline).
That version pins numpy<2, so it lives in its own virtualenv: the script imports only the standard
library, numpy, OpenCV and mediapipe — never hold or torch.

    python mediapipe_worker.py --check
    python mediapipe_worker.py --images SEQ/images --out FILE.npz [--static-image-mode]
                               [--max-num-hands 2] [--model-complexity 1]
                               [--min-detection-confidence 0.5] [--min-tracking-confidence 0.5]

`--check` prints one JSON line (python, mediapipe and numpy versions) when the models load.
A run prints `progress I N` per frame on stdout and writes FILE.npz atomically (format below,
M = --max-num-hands, NaN / -1 where a slot holds no hand):

    format              'hold-mediapipe-hands-1'
    frame_names (T,)    the PNG names, sorted
    image_size (T, 2)   W, H in pixels
    landmarks_px (T, M, 21, 3)
                        u = x * W, v = y * H (MediaPipe's normalized image coordinates span the image
                        edges, so these are continuous pixel coordinates with pixel centres at +0.5),
                        and MediaPipe's relative depth z * W (same scale as u; smaller = nearer)
    world_landmarks (T, M, 21, 3)
                        metres, origin at the hand's centre, image-aligned axes (x right, y down,
                        z away from the camera)
    handedness (T, M)   MediaPipe's label: 0 'Left', 1 'Right', -1 no hand. MediaPipe assumes a
                        mirrored (selfie) image: on an unmirrored video its 'Left' is a right hand
    handedness_score (T, M), seconds (T,) per-frame time, init_seconds, mediapipe_version,
    static_image_mode, max_num_hands, model_complexity, min_detection_confidence,
    min_tracking_confidence
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

FORMAT = "hold-mediapipe-hands-1"
LABELS = ("Left", "Right")
"""MediaPipe's handedness labels, indexed as stored in `handedness`."""


def _fail(message: str, code: int = 2) -> int:
    print(f"mediapipe_worker: error: {message}", file=sys.stderr, flush=True)
    return code


def _check() -> int:
    import mediapipe as mp
    import numpy as np

    hands = mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=1)  # loads the bundled models
    hands.close()
    print(json.dumps({"python": sys.version.split()[0], "mediapipe": mp.__version__, "numpy": np.__version__}),
          flush=True)
    return 0


def _save_npz_atomic(path: str, arrays: dict) -> None:
    import numpy as np

    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def pack_output(names, size, landmarks_px, world, label, score, seconds, init_seconds: float, version: str,
                options: dict) -> dict:
    """The output arrays (the format in the module docstring) from per-frame results and the detector options."""
    import numpy as np

    return {
        "format": np.array(FORMAT), "frame_names": np.array(list(names)), "image_size": np.asarray(size, np.int32),
        "landmarks_px": np.asarray(landmarks_px, np.float32), "world_landmarks": np.asarray(world, np.float32),
        "handedness": np.asarray(label, np.int8), "handedness_score": np.asarray(score, np.float32),
        "seconds": np.asarray(seconds, np.float32), "init_seconds": np.array(init_seconds, np.float64),
        "mediapipe_version": np.array(version), "max_num_hands": np.array(np.shape(label)[1], np.int32),
        "static_image_mode": np.array(bool(options.get("static_image_mode", False))),
        "model_complexity": np.array(int(options.get("model_complexity", 1)), np.int32),
        "min_detection_confidence": np.array(float(options.get("min_detection_confidence", 0.5)), np.float32),
        "min_tracking_confidence": np.array(float(options.get("min_tracking_confidence", 0.5)), np.float32),
    }


def detect(args: argparse.Namespace) -> int:
    import cv2
    import mediapipe as mp
    import numpy as np

    if not os.path.isdir(args.images):
        return _fail(f"{args.images}: folder not found")
    names = sorted(n for n in os.listdir(args.images) if n.lower().endswith(".png") and not n.startswith("."))
    if not names:
        return _fail(f"{args.images}: has no .png frames")
    T, M = len(names), args.max_num_hands
    lm = np.full((T, M, 21, 3), np.nan, np.float32)
    world = np.full((T, M, 21, 3), np.nan, np.float32)
    label = np.full((T, M), -1, np.int8)
    score = np.full((T, M), np.nan, np.float32)
    size = np.zeros((T, 2), np.int32)
    seconds = np.zeros(T, np.float32)
    t0 = time.perf_counter()
    hands = mp.solutions.hands.Hands(
        static_image_mode=args.static_image_mode, max_num_hands=M, model_complexity=args.model_complexity,
        min_detection_confidence=args.min_detection_confidence, min_tracking_confidence=args.min_tracking_confidence)
    init_seconds = time.perf_counter() - t0
    try:
        for t, name in enumerate(names):
            path = os.path.join(args.images, name)
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                return _fail(f"{path}: cannot be read as an image", 3)
            H, W = bgr.shape[:2]
            size[t] = W, H
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
            t1 = time.perf_counter()
            res = hands.process(rgb)
            seconds[t] = time.perf_counter() - t1
            found = res.multi_hand_landmarks or []
            for m, marks in enumerate(found[:M]):
                lm[t, m] = [(p.x * W, p.y * H, p.z * W) for p in marks.landmark]
                cls = res.multi_handedness[m].classification[0]
                label[t, m] = LABELS.index(cls.label) if cls.label in LABELS else -1
                score[t, m] = cls.score
                if res.multi_hand_world_landmarks and m < len(res.multi_hand_world_landmarks):
                    world[t, m] = [(p.x, p.y, p.z) for p in res.multi_hand_world_landmarks[m].landmark]
            print(f"progress {t + 1} {T}", flush=True)
    finally:
        hands.close()
    options = {k: getattr(args, k) for k in ("static_image_mode", "model_complexity", "min_detection_confidence",
                                            "min_tracking_confidence")}
    _save_npz_atomic(args.out, pack_output(names, size, lm, world, label, score, seconds, init_seconds, mp.__version__,
                                           options))
    print("done", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mediapipe_worker", description="MediaPipe hand landmarks of PNG frames")
    p.add_argument("--check", action="store_true", help="print versions once the hand models load, then exit")
    p.add_argument("--images", help="folder of frames (*.png, processed in name order)")
    p.add_argument("--out", help="output .npz")
    p.add_argument("--static-image-mode", action="store_true", help="detect on every frame (no tracking)")
    p.add_argument("--max-num-hands", type=int, default=2)
    p.add_argument("--model-complexity", type=int, choices=(0, 1), default=1)
    p.add_argument("--min-detection-confidence", type=float, default=0.5)
    p.add_argument("--min-tracking-confidence", type=float, default=0.5)
    args = p.parse_args(argv)
    try:
        if args.check:
            return _check()
        if not args.images or not args.out:
            return _fail("pass --images DIR and --out FILE.npz (or --check)")
        if args.max_num_hands < 1:
            return _fail(f"--max-num-hands {args.max_num_hands}: expected at least 1")
        return detect(args)
    except ImportError as e:
        return _fail(f"{sys.executable} cannot import MediaPipe's hand solution ({type(e).__name__}: {e})", 4)
    except AttributeError as e:  # mediapipe >= 0.10.3x: no mp.solutions
        return _fail(f"{sys.executable}: this mediapipe has no legacy `solutions.hands` ({e}); "
                     "install mediapipe==0.10.21", 4)


if __name__ == "__main__":
    sys.exit(main())
