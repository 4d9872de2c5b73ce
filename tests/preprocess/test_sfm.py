"""`hold preprocess sfm`: on a synthetic hand + box sequence with its exact masks, SfM registers the frames and its
object track matches the ground truth after one similarity alignment (rotation < 2 deg, translation < 5 mm
median), the shared focal length is within 5 % of the true one, the canonical cloud reprojects onto the object,
object.npz validates, an unchanged step is skipped, the best fitting mapping run is kept; the centre folding
x_cam = T @ (scale x_obj) is exact, gaps are interpolated and flagged, and object-less, featureless or
non-rotating inputs stop with one clear message."""
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from hold.cli import main as hold_main
from hold.data.errors import SequenceError
from hold.data.io import write_mask
from hold.geometry.rotations import axis_angle_to_matrix
from hold.icp import umeyama_np
from preprocess.records import load_record
from preprocess.sfm import (
    FEW_KEYPOINTS, SfmConfig, colmap_mask, crop_box, explain_failure, load_intrinsics, main, mask_bbox,
    normalize_points, object_track, project_points, rotation_span_deg, run_sfm, select_points,
)
from preprocess.sfm_colmap import ColmapConfig

FRAMES, SIZE = 32, 512
"""The synthetic clip: the box spans ~110 px at 512x512; at 256x256 (~55 px, ~70 SIFT keypoints per frame) too
few features survive for a reliable reconstruction."""


def _rotation_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    cos = (np.trace(np.einsum("tji,tjk->tik", Ra, Rb), axis1=1, axis2=2) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def pose_errors_camera_centres(T_pred, scale, T_gt):
    """(rotation deg, translation m) per frame after ONE similarity (Umeyama) between the camera centres in the
    predicted canonical frame and in the GT object frame (the usual SfM trajectory alignment)."""
    R, t = T_pred[:, :3, :3], T_pred[:, :3, 3]
    Rg, tg = T_gt[:, :3, :3], T_gt[:, :3, 3]
    C_pred = np.einsum("tji,tj->ti", R, -t) / scale  # camera centre in canonical units
    C_gt = np.einsum("tji,tj->ti", Rg, -tg)
    s, Ra, ta = umeyama_np(C_pred, C_gt)  # x_gt = s Ra x_canonical + ta
    R_hat = R @ Ra.T  # R_gt(t) ~ R(t) Ra^T
    t_hat = (s / scale) * t - np.einsum("tij,j->ti", R_hat, ta)
    return _rotation_deg(R_hat, Rg), np.linalg.norm(t_hat - tg, axis=1)


def pose_errors_object_centres(T_pred, T_gt):
    """The same with the similarity fitted to the object instead: its rotation Q to the rotations (chordal mean,
    R_gt(t) ~ R(t) Q), then its scale k and offset b to the object's trajectory in the camera frame
    (t_gt(t) ~ k t(t) + R(t) b, linear least squares). For a static camera this weighs what the images see
    directly (where the object is) rather than camera positions 0.4 m away from it."""
    R, t = T_pred[:, :3, :3], T_pred[:, :3, 3]
    Rg, tg = T_gt[:, :3, :3], T_gt[:, :3, 3]
    U, _, Vt = np.linalg.svd(np.einsum("tji,tjk->ik", R, Rg))
    Q = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    A = np.concatenate([t.reshape(-1, 1), R.reshape(-1, 3)], axis=1)  # rows: k t_i + (R b)_i
    sol = np.linalg.lstsq(A, tg.reshape(-1), rcond=None)[0]
    return _rotation_deg(R @ Q, Rg), np.linalg.norm((A @ sol).reshape(-1, 3) - tg, axis=1)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A 32-frame 512x512 hand + box clip (exact masks), and the sfm step run on it through the CLI."""
    from hold.synth.sequence import SynthConfig, generate

    seq = tmp_path_factory.mktemp("sfm") / "seq"
    generate(SynthConfig(num_frames=FRAMES, width=SIZE, height=SIZE, seed=0), seq, progress=False)
    gt = {k: v for k, v in np.load(seq / "gt" / "object.npz").items()}
    (seq / "object.npz").unlink()  # synth writes the GT track there; the step must write its own
    t0 = time.perf_counter()
    assert main([str(seq), "--quiet"]) == 0
    return seq, gt, time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------
# Pure maths


def test_object_track_folds_the_centre_in_exactly():
    rng = np.random.default_rng(0)
    T = 6
    R = axis_angle_to_matrix(__import__("torch").as_tensor(rng.normal(size=(T, 3)))).numpy()
    cam_from_world = np.tile(np.eye(4), (T, 1, 1))
    cam_from_world[:, :3, :3] = R
    cam_from_world[:, :3, 3] = rng.normal(size=(T, 3)) + [0, 0, 5]
    X = rng.normal(size=(50, 3)) * 0.7 + [0.3, -2.0, 1.0]  # SfM points, world = object SfM frame
    c, r, x_obj = normalize_points(X)
    T_obj = object_track(cam_from_world, np.ones(T, bool), c)
    x_cam_sfm = np.einsum("tij,nj->tni", R, X) + cam_from_world[:, None, :3, 3]
    x_cam = np.einsum("tij,nj->tni", T_obj[:, :3, :3], r * x_obj) + T_obj[:, None, :3, 3]
    np.testing.assert_allclose(x_cam, x_cam_sfm, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(x_obj, axis=1).max(), 1.0)
    np.testing.assert_allclose(c, 0.5 * (X.min(0) + X.max(0)))
    # projecting through the folded track is projecting the SfM points
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    uv, front = project_points(K, T_obj[2], r, x_obj)
    p = x_cam_sfm[2] @ K.T
    np.testing.assert_allclose(uv[front], (p[:, :2] / p[:, 2:])[front], atol=1e-9)


def test_object_track_interpolates_unregistered_frames():
    import torch

    axis = np.array([0.0, 1.0, 0.0])
    angles = np.radians([0.0, 99.0, 20.0, 99.0, 99.0, 50.0, 99.0])  # 99: garbage where not registered
    registered = np.array([True, False, True, False, False, True, False])
    T = len(angles)
    cam_from_world = np.tile(np.eye(4), (T, 1, 1))
    cam_from_world[:, :3, :3] = axis_angle_to_matrix(torch.as_tensor(angles[:, None] * axis)).numpy()
    cam_from_world[:, :3, 3] = np.stack([np.arange(T) * 0.1, np.zeros(T), np.full(T, 3.0)], 1)
    cam_from_world[~registered, :3, 3] = 42.0
    centre = np.zeros(3)
    track = object_track(cam_from_world, registered, centre)
    yaw = np.degrees(np.arctan2(track[:, 0, 2], track[:, 0, 0]))
    np.testing.assert_allclose(yaw, [0, 10, 20, 30, 40, 50, 50], atol=1e-9)  # SLERP inside, hold at the end
    np.testing.assert_allclose(track[:, 0, 3], [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5], atol=1e-12)
    np.testing.assert_array_equal(track[registered], cam_from_world[registered])
    with pytest.raises(ValueError, match="no frame is registered"):
        object_track(cam_from_world, np.zeros(T, bool), centre)


def test_point_selection_drops_short_tracks_large_errors_and_far_outliers():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1000, 3))
    err = np.full(1000, 0.5)
    tracks = np.full(1000, 4)
    X[:5] = 100.0  # gross outliers
    err[10:20] = 5.0
    tracks[20:30] = 2
    keep = select_points(X, err, tracks, min_track_length=3, max_error_px=2.0, keep_percentile=98.0)
    assert not keep[:5].any() and not keep[10:30].any()
    good = np.r_[5:10, 30:1000]
    assert 0.97 * len(good) <= keep[good].sum() <= 0.99 * len(good)  # ~98 % of the good points stay


def test_colmap_mask_keeps_object_pixels_away_from_hand_and_background():
    labels = np.zeros((40, 60), np.uint8)
    labels[10:30, 10:50] = 1  # object
    labels[10:30, 30:50] = 2  # a hand over its right half
    labels[12, 12] = 255  # an ignore pixel inside it
    keep = colmap_mask(labels, hand_margin_px=3.0, edge_margin_px=1.0)
    assert not keep[labels != 1].any()
    assert not keep[:, 27:].any() and keep[11:29, 26].all()  # > 3 px from the hand (cols 30..) only
    assert not keep[10, :].any() and not keep[29, :].any() and not keep[:, 10].any()  # silhouette edge dropped
    assert keep[20, 11] and keep[28, 20]  # 2 px from the background stays
    assert not keep[12, 9:16].any() and not keep[9:16, 12].any() and keep[12, 16]  # around the ignore pixel
    assert mask_bbox(keep) == (11, 11, 27, 29)
    assert mask_bbox(colmap_mask(np.zeros((5, 5), np.uint8), 3, 1)) is None
    # the object touching the image border: the border is neither hand nor background
    border = np.ones((20, 20), np.uint8)
    assert colmap_mask(border, 3.0, 1.0).all()
    assert crop_box([(10, 5, 20, 15), None, (30, 8, 40, 12)], 4, 42, 16) == (6, 1, 42, 16)
    assert crop_box([None], 4, 42, 16) == (0, 0, 42, 16)


def test_rotation_span():
    import torch

    yaw = np.radians([0.0, 30.0, -45.0, 10.0])
    R = axis_angle_to_matrix(torch.as_tensor(yaw[:, None] * [0.0, 0.0, 1.0])).numpy()
    assert rotation_span_deg(R) == pytest.approx(75.0)
    many = axis_angle_to_matrix(torch.as_tensor(np.linspace(0, 2.0, 1000)[:, None] * [1.0, 0.0, 0.0])).numpy()
    assert rotation_span_deg(many) == pytest.approx(np.degrees(2.0), abs=1e-6)  # subsampled, ends kept


def test_failure_explanations_name_the_cause_with_numbers():
    few = explain_failure(3, 20, 0.5, np.full(20, 40), 30, 20)
    assert "3 of 20 frames" in few and "mean 40" in few and "too few features" in few
    apart = explain_failure(3, 20, 0.5, np.full(20, 400), 5, 20)
    assert "do not match each other" in apart
    still = explain_failure(3, 20, 0.5, np.full(20, FEW_KEYPOINTS * 4), 150, 20)
    assert "too little rotation" in still


# ----------------------------------------------------------------------------------------------
# The step on a synthetic sequence


def test_sfm_registers_and_matches_ground_truth(synth):
    seq, gt, elapsed = synth
    z = np.load(seq / "object.npz")
    T_pred, scale, valid = z["T_cam_from_obj"].astype(np.float64), float(z["scale"]), z["valid"]
    T_gt = gt["T_cam_from_obj"].astype(np.float64)
    assert valid.sum() >= 0.9 * FRAMES
    rot, trans = pose_errors_camera_centres(T_pred[valid], scale, T_gt[valid])
    rot2, trans2 = pose_errors_object_centres(T_pred[valid], T_gt[valid])
    rec = load_record(seq, "sfm")
    f, f_gt = rec.info["K"][0][0], gt["K"][0, 0]
    print(f"\nsfm on {FRAMES} frames {SIZE}x{SIZE}: {valid.sum()}/{FRAMES} registered in {elapsed:.1f} s "
          f"(timings {rec.timings}); camera-centre alignment: rotation median {np.median(rot):.2f} max "
          f"{rot.max():.2f} deg, translation median {1e3 * np.median(trans):.2f} max {1e3 * trans.max():.2f} mm; "
          f"object-centre alignment: rotation median {np.median(rot2):.2f} deg, translation median "
          f"{1e3 * np.median(trans2):.2f} mm; focal {f:.1f} px vs {f_gt:.1f} px ({100 * (f / f_gt - 1):+.1f} %)")
    assert np.median(rot) < 2.0 and np.median(trans) < 0.005
    assert np.median(rot2) < 2.0 and np.median(trans2) < 0.005
    assert abs(f / f_gt - 1) < 0.05
    np.testing.assert_allclose(rec.info["K"][0][2], gt["K"][0, 2])  # principal point back in images/ pixels
    np.testing.assert_allclose(rec.info["K"][1][2], gt["K"][1, 2])
    np.testing.assert_allclose(load_intrinsics(seq), rec.info["K"])


def test_canonical_cloud_is_in_the_unit_sphere_and_reprojects_onto_the_object(synth):
    seq, _, _ = synth
    z = np.load(seq / "object.npz")
    pts = z["points"].astype(np.float64)
    assert len(pts) >= 200 and np.linalg.norm(pts, axis=1).max() <= 1.0 + 1e-5
    K = load_intrinsics(seq)
    on_object = []
    for t in np.flatnonzero(z["valid"]):
        labels = np.asarray(Image.open(seq / "masks" / f"{t:06d}.png"))
        uv, front = project_points(K, z["T_cam_from_obj"][t].astype(np.float64), float(z["scale"]), pts)
        assert front.all()
        ij = np.floor(uv).astype(int)  # pixel (i, j) covers [i, i+1): centres at +0.5
        inside = (ij[:, 0] >= 0) & (ij[:, 0] < SIZE) & (ij[:, 1] >= 0) & (ij[:, 1] < SIZE)
        lab = labels[ij[inside, 1], ij[inside, 0]]
        on_object.append(np.mean((lab == 1) | (lab == 2)) * inside.mean())  # the hand may hide the back
    assert np.mean(on_object) > 0.97


def test_outputs_validate_and_the_record_says_what_was_estimated(synth):
    seq, _, _ = synth
    assert hold_main(["validate", str(seq)]) == 0
    rec = load_record(seq, "sfm")
    assert set(rec.outputs) == {"object.npz", "qa/sfm.png"} and (seq / "qa" / "sfm.png").is_file()
    assert rec.estimated == ["object", "intrinsics"]
    info = rec.info
    assert info["num_registered"] == sum(info["registered"]) and info["matcher"] == "exhaustive"
    runs = info["mapping_runs"]  # auto: one global + 3 incremental runs, the best fitting kept
    assert [r["mapper"] for r in runs] == ["global"] + ["incremental"] * 3 and sum(r["kept"] for r in runs) == 1
    kept = next(r for r in runs if r["kept"])
    assert kept["mapper"] == info["mapper"] and kept["reprojection_error_px"] == info["mean_reprojection_error_px"]
    assert kept["reprojection_error_px"] == min(r["reprojection_error_px"] for r in runs
                                                 if r["registered"] >= 0.95 * info["num_registered"])
    assert info["num_points"] == len(np.load(seq / "object.npz")["points"])
    assert 0 < info["mean_reprojection_error_px"] < 1.0 and min(info["keypoints_per_frame"]) > 0
    assert {"extract", "match", "map", "total"} <= set(rec.timings)
    with Image.open(seq / "qa" / "sfm.png") as im:
        assert im.mode == "RGB" and im.size[0] >= 512


def test_unchanged_step_is_skipped(synth, capsys):
    seq, _, _ = synth
    before = (seq / "object.npz").stat().st_mtime_ns
    t0 = time.perf_counter()
    assert run_sfm(seq, SfmConfig(), progress=False) is None
    assert time.perf_counter() - t0 < 1.0
    assert "up to date" in capsys.readouterr().err
    assert (seq / "object.npz").stat().st_mtime_ns == before


def test_sequential_incremental_and_interpolated_gaps(synth, tmp_path):
    """Sequential matching + the incremental mapper, with the object hidden in frames 7 and 8 (their masks say
    background): those two cannot register and get poses interpolated from frames 6 and 9, flagged invalid."""
    seq, gt, _ = synth
    copy = tmp_path / "seq"
    for sub in ("images", "masks"):
        shutil.copytree(seq / sub, copy / sub)
    hidden = [7, 8]
    for t in hidden:
        labels = np.asarray(Image.open(copy / "masks" / f"{t:06d}.png")).copy()
        labels[labels == 1] = 0
        write_mask(copy / "masks" / f"{t:06d}.png", labels)
    cfg = SfmConfig(matcher="sequential", colmap=ColmapConfig(mapper="incremental", overlap=8, num_starts=2))
    rec = run_sfm(copy, cfg, progress=False)
    z = np.load(copy / "object.npz")
    valid = z["valid"]
    assert rec.info["matcher"] == "sequential" and rec.info["mapper"] == "incremental"
    assert len(rec.info["mapping_runs"]) == 2 and rec.info["unregistered_frames"] == hidden
    assert valid.sum() == FRAMES - 2 and not valid[hidden].any()
    assert any("did not register" in w for w in rec.warnings)
    rot, _ = pose_errors_object_centres(z["T_cam_from_obj"].astype(np.float64), gt["T_cam_from_obj"].astype(np.float64))
    print(f"\nsequential + incremental: {valid.sum()}/{FRAMES} registered, rotation median {np.median(rot[valid]):.2f} "
          f"deg, interpolated frames {rot[hidden].round(2).tolist()} deg, {rec.timings['total']:.1f} s")
    assert np.median(rot[valid]) < 5.0
    assert rot[hidden].max() < np.median(rot[valid]) + 3.0  # SLERP over a 3-frame gap of a smooth motion


def test_too_little_rotation_stops(synth, tmp_path):
    seq, gt, _ = synth
    copy = tmp_path / "seq"
    for sub in ("images", "masks"):
        (copy / sub).mkdir(parents=True)
        for t in range(4):  # 4 consecutive frames: the object turns by ~20 degrees only
            shutil.copy(seq / sub / f"{10 + t:06d}.png", copy / sub / f"{t:06d}.png")
    span_gt = rotation_span_deg(gt["T_cam_from_obj"][10:14, :3, :3])
    with pytest.raises(SequenceError, match="too little rotation") as err:
        run_sfm(copy, SfmConfig(min_rotation_deg=45.0), progress=False)
    span = float(str(err.value).split("turns by only ")[1].split(" degrees")[0])
    assert abs(span - span_gt) < 2.0 and not (copy / "object.npz").exists()


# ----------------------------------------------------------------------------------------------
# Bad input: one clear message, nothing written


def _tiny_seq(root, labels_fn, T=6, size=(64, 48), textured=False):
    rng = np.random.default_rng(0)
    W, H = size
    for t in range(T):
        rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8) if textured else np.full((H, W, 3), 128, np.uint8)
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(root / "images" / f"{t:06d}.png")
        write_mask(root / "masks" / f"{t:06d}.png", labels_fn(H, W))
    return root


def test_masks_without_object_stop_with_a_clear_message(tmp_path):
    def no_object(H, W):
        labels = np.zeros((H, W), np.uint8)
        labels[10:30, 10:30] = 2  # a hand, but no object
        return labels

    seq = _tiny_seq(tmp_path / "seq", no_object)
    with pytest.raises(SequenceError, match=r"no object pixels.*labelled object \(1\) in any of the 6 masks"):
        run_sfm(seq, progress=False)
    assert not (seq / "object.npz").exists() and load_record(seq, "sfm") is None
    assert hold_main(["preprocess", "sfm", str(seq), "--quiet"]) == 1  # the CLI prints it, no traceback


def test_featureless_object_stops_and_says_how_many_registered(tmp_path, capsys):
    def flat_object(H, W):
        labels = np.zeros((H, W), np.uint8)
        labels[8:40, 8:56] = 1
        return labels

    seq = _tiny_seq(tmp_path / "seq", flat_object)
    (seq / "object.npz").write_bytes(b"previous")  # an earlier result must survive the failure
    with pytest.raises(SequenceError) as err:
        run_sfm(seq, progress=False)
    msg = str(err.value)
    assert "registered only 0 of 6 frames" in msg and "keypoints inside the object masks: mean 0" in msg
    assert "too few features on the object" in msg and "Fix:" in msg
    assert (seq / "object.npz").read_bytes() == b"previous"


def test_missing_masks_and_short_clips_are_named(tmp_path):
    seq = _tiny_seq(tmp_path / "seq", lambda H, W: np.ones((H, W), np.uint8))
    shutil.rmtree(seq / "masks")
    with pytest.raises(SequenceError, match=r"masks: folder not found.*hold preprocess masks"):
        run_sfm(seq, progress=False)
    short = _tiny_seq(tmp_path / "short", lambda H, W: np.ones((H, W), np.uint8), T=2)
    with pytest.raises(SequenceError, match=r"2 frame\(s\), expected at least 3 frames"):
        run_sfm(short, progress=False)
    with pytest.raises(SequenceError, match="--min-registered"):
        run_sfm(short, SfmConfig(min_registered=1.5), progress=False)
