"""The MediaPipe hand detector (preprocess.hand_detect + preprocess.mediapipe_worker).

The pure parts run in the main environment: MediaPipe's mirrored handedness, the worker's output
format, picking one hand per frame, the keypoints file read back by hand_import, and the error when
no interpreter has MediaPipe. The orchestration (subprocess, progress, record, skip, QA, the
no-hand error) runs against a fake interpreter that writes canned detections in the worker's own
format. The real worker runs on a few frames of the dex-retargeting video only when a MediaPipe
interpreter is configured ($HOLD_MEDIAPIPE_PYTHON); CI has none, so that test is skipped there.
"""
import importlib.util
import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hold.data.io import atomic_write_npz, write_image
from hold.geometry.camera import make_intrinsics, project
from hold.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from preprocess import mediapipe_worker
from preprocess.hand_detect import (
    ENV_VAR, KEYPOINTS_NPZ, QA_PATH, RAW_NPZ, HandDetectConfig, HandDetectError, RawDetections, find_mediapipe_python,
    keypoint_arrays, read_worker_output, run_detect, select_hand, side_of_label,
)
from preprocess.hand_import import read_keypoints

REPO = Path(__file__).resolve().parents[2]
DEX_VIDEO = REPO.parent / "shared" / "data" / "real" / "dex-retargeting-hand-video" / "human_hand_video.mp4"
W, H = 96, 64
LEFT, RIGHT = 0, 1  # MediaPipe's labels


def _raw(lm, label, score, world=None) -> RawDetections:
    T = lm.shape[0]
    world = np.zeros_like(lm) if world is None else world
    return RawDetections(frame_names=[f"{t:06d}.png" for t in range(T)], image_size=np.tile([W, H], (T, 1)),
                         landmarks_px=lm, world_landmarks=world, handedness=np.asarray(label),
                         handedness_score=np.asarray(score, float), seconds=np.full(T, 0.01), mediapipe_version="x")


def _hand(cx, cy, size=20.0, seed=0) -> np.ndarray:
    """21 landmarks (u, v, z) spread over a size x size box around (cx, cy)."""
    g = np.random.default_rng(seed)
    uv = g.uniform(-size / 2, size / 2, (21, 2)) + [cx, cy]
    uv[0], uv[1] = [cx - size / 2, cy - size / 2], [cx + size / 2, cy + size / 2]  # box diagonal = size * sqrt(2)
    return np.concatenate([uv, g.normal(0, 1, (21, 1))], -1)


def test_mediapipe_handedness_is_mirrored():
    # MediaPipe assumes a selfie (mirrored) image: its 'Left' is the right hand of an ordinary video
    assert side_of_label(LEFT) == "right" and side_of_label(RIGHT) == "left"
    assert side_of_label(LEFT, video_mirrored=True) == "left" and side_of_label(RIGHT, video_mirrored=True) == "right"
    assert side_of_label(-1) is None


def test_worker_output_round_trip_and_checks(tmp_path):
    T, M = 3, 2
    lm = np.full((T, M, 21, 3), np.nan)
    lm[0, 0], lm[2, 1] = _hand(40, 30), _hand(60, 20, seed=1)
    label = np.array([[LEFT, -1], [-1, -1], [LEFT, RIGHT]])  # slot (2, 0) has a label but no landmarks
    score = np.array([[0.9, np.nan], [np.nan, np.nan], [0.3, 0.8]])
    world = np.where(np.isfinite(lm), 0.01, np.nan)
    names = [f"{t:06d}.png" for t in range(T)]
    opts = {"static_image_mode": True, "model_complexity": 0, "min_detection_confidence": 0.4,
            "min_tracking_confidence": 0.6}
    path = tmp_path / "raw.npz"
    mediapipe_worker._save_npz_atomic(str(path), mediapipe_worker.pack_output(
        names, np.tile([W, H], (T, 1)), lm, world, label, score, [0.02, 0.03, 0.04], 0.5, "0.10.21", opts))
    raw = read_worker_output(path, names)
    assert raw.frame_names == names and raw.mediapipe_version == "0.10.21"
    assert np.allclose(raw.landmarks_px[0, 0], lm[0, 0], atol=1e-4) and np.isnan(raw.landmarks_px[1]).all()
    assert raw.handedness.tolist() == [[LEFT, -1], [-1, -1], [-1, RIGHT]]  # empty slot -> no hand
    assert raw.options["model_complexity"] == 0 and raw.options["static_image_mode"] is True
    assert raw.options["max_num_hands"] == 2 and raw.seconds.tolist() == pytest.approx([0.02, 0.03, 0.04])
    with pytest.raises(HandDetectError, match="frame_names.*re-run the detector"):
        read_worker_output(path, names[:2])
    arrays = dict(np.load(path))
    atomic_write_npz(tmp_path / "bad.npz", {**arrays, "handedness": arrays["handedness"][:2]})
    with pytest.raises(HandDetectError, match=r"field 'handedness' has shape \(2, 2\), expected \(3, 2\)"):
        read_worker_output(tmp_path / "bad.npz")
    (tmp_path / "cut.npz").write_bytes(path.read_bytes()[:200])
    with pytest.raises(HandDetectError, match="cut.npz: cannot be read as .npz"):
        read_worker_output(tmp_path / "cut.npz")


def test_select_hand_picks_the_side_then_follows_flipped_labels():
    T, M = 5, 2
    lm = np.full((T, M, 21, 3), np.nan)
    label = np.full((T, M), -1)
    score = np.full((T, M), np.nan)
    lm[0, 0], label[0, 0], score[0, 0] = _hand(30, 30), LEFT, 0.9  # the right hand
    lm[0, 1], label[0, 1], score[0, 1] = _hand(70, 30, seed=1), RIGHT, 0.95  # the left hand
    lm[1, 0], label[1, 0], score[1, 0] = _hand(31, 30, seed=2), LEFT, 0.7  # the same hand twice: best score wins
    lm[1, 1], label[1, 1], score[1, 1] = _hand(32, 31, seed=3), LEFT, 0.8
    lm[2, 0], label[2, 0], score[2, 0] = _hand(35, 32, seed=4), RIGHT, 0.6  # label flipped, near the last pick
    lm[3, 0], label[3, 0], score[3, 0] = _hand(80, 50, seed=5), RIGHT, 0.6  # the left hand, far away
    track = select_hand(_raw(lm, label, score), "right")
    assert track.side == "right"
    assert track.slot.tolist() == [0, 1, 0, -1, -1] and track.detected.tolist() == [True] * 3 + [False] * 2
    assert track.flipped.tolist() == [False, False, True, False, False]
    assert track.keypoints_2d[:3, 0, 2] == pytest.approx([0.9, 0.8, 0.4])  # P(right): score, score, 1 - score
    assert np.array_equal(track.keypoints_2d[1, :, :2], lm[1, 1, :, :2]) and not track.keypoints_2d[3:].any()
    left = select_hand(_raw(lm, label, score), "left")
    assert left.slot.tolist()[:4] == [1, -1, 0, 0] and left.flipped.tolist()[:4] == [False, False, False, False]
    # frame 1 holds only hands labelled right, ~40 px from frame 0's left hand (size 28 px): too far to be the
    # left hand with a flipped label, unless the allowed distance grows
    loose = select_hand(_raw(lm, label, score), "left", flip_max_distance=2.0)
    assert loose.slot[1] >= 0 and loose.flipped[1]
    assert loose.keypoints_2d[1, 0, 2] == pytest.approx(1 - score[1, loose.slot[1]])


def test_select_hand_auto_side_and_mirrored_video():
    T = 4
    lm = np.stack([_hand(30 + t, 30, seed=t) for t in range(T)])[:, None]
    label, score = np.full((T, 1), RIGHT), np.full((T, 1), 0.9)  # MediaPipe: 'Right' = a left hand
    assert select_hand(_raw(lm, label, score), "auto").side == "left"
    assert select_hand(_raw(lm, label, score), "auto", video_mirrored=True).side == "right"
    mirrored = select_hand(_raw(lm, label, score), "right", video_mirrored=True)
    assert mirrored.detected.all() and not mirrored.flipped.any()
    # an unmirrored video: the same labels are a left hand, so a right-hand track is empty from frame 0 on
    assert not select_hand(_raw(lm, label, score), "right").detected.any()


def test_keypoints_file_round_trips_into_hand_import(tmp_path):
    T = 4
    lm = np.stack([_hand(40 + 3 * t, 30, seed=t) for t in range(T)])[:, None]
    world = np.random.default_rng(0).normal(0, 0.03, (T, 1, 21, 3))
    label, score = np.full((T, 1), LEFT), np.array([[0.9], [0.8], [0.7], [0.6]])
    label[2] = -1
    lm[2] = np.nan
    track = select_hand(_raw(lm, label, score, world), "right")
    path = tmp_path / "hand_keypoints.npz"
    atomic_write_npz(path, keypoint_arrays(track, source="test"))
    est = read_keypoints(path, T, (W, H))  # hold's reader, no offset / normalization options needed
    assert est.detected.tolist() == [True, True, False, True]
    assert np.allclose(est.keypoints_2d[:, :, :2], np.nan_to_num(lm[:, 0, :, :2]) * est.detected[:, None, None],
                       atol=1e-4)
    assert np.allclose(est.keypoints_2d[:, 0, 2], [0.9, 0.8, 0.0, 0.6], atol=1e-6)
    assert not est.keypoints_3d_metric and np.allclose(est.keypoints_3d[[0, 1, 3]], world[[0, 1, 3], 0], atol=1e-6)
    assert np.isnan(est.keypoints_3d[2]).all()
    z = np.load(path)
    assert str(z["side"]) == "right" and z["valid"].tolist() == [True, True, False, True]
    no3d = keypoint_arrays(track, world_landmarks=False)
    assert "keypoints_3d" not in no3d
    atomic_write_npz(path, no3d)
    assert read_keypoints(path, T, (W, H)).keypoints_3d is None


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is not None, reason="this interpreter has mediapipe")
def test_no_mediapipe_interpreter_is_one_clear_error(tmp_path):
    with pytest.raises(HandDetectError) as e:
        find_mediapipe_python(None, env={})
    msg = str(e.value)
    assert "no Python with MediaPipe" in msg and ENV_VAR in msg and "--mediapipe-python" in msg
    assert "python3.11 -m venv ~/.hold-mediapipe" in msg and 'pip install --no-deps "mediapipe==0.10.21"' in msg
    assert '"numpy<2"' in msg and "--keypoints FILE" in msg
    with pytest.raises(HandDetectError, match=rf"--mediapipe-python {sys.executable}: .*cannot import .*mediapipe"):
        find_mediapipe_python(sys.executable, env={})
    with pytest.raises(HandDetectError, match=rf"\${ENV_VAR} {tmp_path}/nope: .*cannot run it"):
        find_mediapipe_python(None, env={ENV_VAR: str(tmp_path / "nope")})


# ----------------------------------------------------------------------------------------------
# The step, against a fake MediaPipe interpreter that replays canned detections in the worker's format

FAKE = """#!{python}
import json, os, sys
sys.path.insert(0, {worker_dir!r})
import numpy as np
import mediapipe_worker as w

args = sys.argv[2:]  # sys.argv[1] is the real worker's path
if "--check" in args:
    print(json.dumps({{"python": "fake", "mediapipe": "0.10.21", "numpy": np.__version__}}))
    sys.exit(0)
spec = dict(np.load(os.environ["HOLD_FAKE_DETECTIONS"]))
if "fail" in spec:
    print("some MediaPipe log line", file=sys.stderr)
    print("mediapipe_worker: error: " + str(spec["fail"]), file=sys.stderr)
    sys.exit(3)
images, out = args[args.index("--images") + 1], args[args.index("--out") + 1]
names = sorted(n for n in os.listdir(images) if n.endswith(".png"))
for i in range(len(names)):
    print(f"progress {{i + 1}} {{len(names)}}", flush=True)
T = len(names)
w._save_npz_atomic(out, w.pack_output(names, np.tile([{W}, {H}], (T, 1)), spec["lm"], spec["world"], spec["label"],
                                      spec["score"], np.full(T, 0.01), 0.1, "0.10.21", {{}}))
"""


@pytest.fixture()
def fake_python(tmp_path, monkeypatch):
    path = tmp_path / "fake-python"
    path.write_text(FAKE.format(python=sys.executable, worker_dir=str(REPO / "preprocess"), W=W, H=H))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    spec = tmp_path / "detections.npz"
    monkeypatch.setenv("HOLD_FAKE_DETECTIONS", str(spec))
    monkeypatch.delenv(ENV_VAR, raising=False)

    def set_detections(**arrays):
        np.savez(spec, **arrays)

    return str(path), set_detections


def _model_hand(T):
    """Keypoints of the embedded hand model turning in front of a W x H camera (projected, and root-relative 3D)."""
    from hold.hands import load_hand_model

    model = load_hand_model("anny", "right")
    s = torch.linspace(0, 1, T)
    turn = torch.stack([0.2 * s, 0.6 * s - 0.3, torch.zeros(T)], -1)
    go = matrix_to_axis_angle(axis_angle_to_matrix(turn) @ axis_angle_to_matrix(torch.tensor([np.pi, 0.0, 0.0])))
    transl = torch.stack([0.01 * s, 0.0 * s, 0.35 + 0.02 * s], -1)
    with torch.no_grad():
        kp3 = model(go, torch.zeros(T, 45), torch.zeros(T, 10), transl).keypoints
    K = make_intrinsics(1.2 * W, 1.2 * W, W / 2, H / 2)  # hands' default camera without sequence.json
    uv = project(K, kp3).numpy()
    return np.concatenate([uv, np.zeros((T, 21, 1))], -1), (kp3 - kp3[:, :1]).numpy()


def _sequence(root, T):
    for t in range(T):
        img = np.full((H, W, 3), 40 + 20 * t, np.uint8)
        write_image(root / "images" / f"{t:06d}.png", img)
    return root


def test_run_detect_with_a_fake_interpreter(tmp_path, fake_python, capsys):
    python, set_detections = fake_python
    T = 4
    seq = _sequence(tmp_path / "seq", T)
    uv, xyz = _model_hand(T)
    lm = np.full((T, 2, 21, 3), np.nan)
    lm[:, 0] = uv
    lm[1, 1] = uv[1] + [30, 0, 0]  # a second (left) hand in frame 1
    label = np.array([[LEFT, -1], [LEFT, RIGHT], [-1, -1], [LEFT, -1]])
    lm[2] = np.nan  # frame 2: no hand
    set_detections(lm=lm, world=np.stack([xyz, xyz], 1), label=label, score=np.where(label >= 0, 0.9, np.nan))
    cfg = HandDetectConfig(mediapipe_python=python, progress=False)
    info = run_detect(seq, cfg)
    assert info["detected"] == 3 and info["detection_rate"] == 0.75 and info["not_detected_frames"] == [2]
    assert info["frames_with_two_or_more_hands"] == 1 and info["mediapipe_labels"] == {"Left": 3, "Right": 1}
    assert info["mediapipe"]["interpreter_source"] == "--mediapipe-python"
    est = read_keypoints(seq / KEYPOINTS_NPZ, T, (W, H))
    assert est.detected.tolist() == [True, True, False, True]
    assert np.allclose(est.keypoints_2d[[0, 1, 3], :, :2], uv[[0, 1, 3], :, :2], atol=1e-3)
    assert (seq / RAW_NPZ).is_file() and not list((seq / "preprocess").glob(".hand_detect-*"))
    from PIL import Image

    with Image.open(seq / QA_PATH) as im:
        assert im.size[0] == 4 * W and im.size[1] > H  # 4 tiles in a row + header
    rec = json.loads((seq / "preprocess" / "hand_detect.json").read_text())
    assert rec["outputs"] == [KEYPOINTS_NPZ, RAW_NPZ, QA_PATH] and rec["info"]["side"] == "right"
    capsys.readouterr()
    assert run_detect(seq, cfg)["skipped"] is True  # unchanged: skipped
    assert "up to date" in capsys.readouterr().err
    assert "skipped" not in run_detect(seq, HandDetectConfig(mediapipe_python=python, progress=False,
                                                             static_image_mode=True))  # options changed: redone

    # nothing of the right side anywhere: one clear error, the earlier outputs untouched
    before = (seq / KEYPOINTS_NPZ).read_bytes()
    set_detections(lm=lm, world=lm, label=np.where(label >= 0, RIGHT, -1), score=np.full((T, 2), 0.9))
    with pytest.raises(HandDetectError, match=rf"no hand detected in {seq}/images: MediaPipe found no right hand in "
                       r"any of the 4 frames \(it found hands of the other side in 3 frames\).*--side auto"):
        run_detect(seq, HandDetectConfig(mediapipe_python=python, progress=False, force=True))
    assert (seq / KEYPOINTS_NPZ).read_bytes() == before and not list((seq / "preprocess").glob(".hand_detect-*"))

    set_detections(fail=np.array(f"{seq}/images/000001.png: cannot be read as an image"))
    with pytest.raises(HandDetectError, match=r"worker .* failed with exit status 3: .*000001.png: cannot be read"):
        run_detect(seq, HandDetectConfig(mediapipe_python=python, progress=False, force=True))
    with pytest.raises(HandDetectError, match="empty_seq: folder not found"):
        run_detect(tmp_path / "empty_seq", HandDetectConfig(mediapipe_python=python, progress=False))
    (tmp_path / "empty_seq").mkdir()
    with pytest.raises(HandDetectError, match="images: has no frames.*hold preprocess frames"):
        run_detect(tmp_path / "empty_seq", HandDetectConfig(mediapipe_python=python, progress=False))


def test_hands_detect_flag_runs_the_detector_then_the_fit(tmp_path, fake_python, monkeypatch):
    from preprocess.hands import main as hands_main

    python, set_detections = fake_python
    T = 4
    seq = _sequence(tmp_path / "seq", T)
    uv, xyz = _model_hand(T)
    set_detections(lm=uv[:, None], world=xyz[:, None], label=np.full((T, 1), LEFT), score=np.full((T, 1), 0.95))
    monkeypatch.setenv(ENV_VAR, python)  # found through the environment variable this time
    assert hands_main([str(seq), "--detect", "--steps", "80", "--quiet"]) == 0
    rec = json.loads((seq / "preprocess" / "hands.json").read_text())["info"]["sides"]["right"]
    assert rec["source"].startswith("hold preprocess hands: keypoints hand_keypoints.npz")
    assert rec["detected"] == T and rec["reprojection_px"]["mean_valid"] < 1.0  # exact model keypoints
    det = json.loads((seq / "preprocess" / "hand_detect.json").read_text())
    assert det["info"]["mediapipe"]["interpreter_source"] == f"${ENV_VAR}"


# ----------------------------------------------------------------------------------------------
# The real MediaPipe (only where an interpreter with it is configured)


def _mediapipe_python() -> str | None:
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    return sys.executable if importlib.util.find_spec("mediapipe") is not None else None


@pytest.mark.skipif(_mediapipe_python() is None, reason=f"no MediaPipe interpreter (set ${ENV_VAR})")
@pytest.mark.skipif(not DEX_VIDEO.is_file(), reason="shared dex-retargeting video not present")
def test_real_mediapipe_finds_the_right_hand_on_dex_frames(tmp_path):
    from preprocess.frames import main as frames_main

    seq = tmp_path / "dex"
    assert frames_main([str(DEX_VIDEO), "--out", str(seq), "--end", "40", "--stride", "10", "--max-side", "320",
                        "--quiet"]) == 0
    info = run_detect(seq, HandDetectConfig(progress=False))
    assert info["frames"] == 4 and info["detected"] == 4 and not info["handedness_flipped_frames"]
    assert info["mediapipe"]["mediapipe"] == "0.10.21"
    raw = read_worker_output(seq / RAW_NPZ)
    # a right hand on an unmirrored video: MediaPipe (which assumes a selfie) calls it 'Left'
    picked = raw.handedness[np.arange(4), select_hand(raw, "right").slot]
    assert (picked == LEFT).all()
    est = read_keypoints(seq / KEYPOINTS_NPZ, 4, (320, 180))
    uv = est.keypoints_2d[..., :2]
    assert (uv[..., 0] > 0).all() and (uv[..., 0] < 320).all() and (uv[..., 1] > 0).all() and (uv[..., 1] < 180).all()
    size = np.linalg.norm(uv.max(1) - uv.min(1), axis=-1)
    assert (size > 40).all() and (size < 200).all()  # the hand spans ~60-110 px at 320x180
    tips_above_wrist = uv[:, [8, 12, 16], 1].mean(1) < uv[:, 0, 1]  # fingers up, wrist below
    assert tips_above_wrist.all()
