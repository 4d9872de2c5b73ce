"""`hold preprocess hands` on hold.synth sequences: the fitted hand against ground truth, dropped and outlier
frames flagged and re-filled, the contract and the record written, resumability, clear errors, and the
HaMeR-style MANO import on the procedural MANO pickle."""
import json
import math
import shutil

import numpy as np
import pytest
import torch

from hold.data import SequenceError, load_sequence, load_trajectory, validate
from hold.data.io import write_image
from hold.geometry.camera import project
from hold.geometry.rotations import axis_angle_to_matrix, interpolate_linear, interpolate_rotations
from hold.hands import load_hand_model
from hold.hands.testing import write_fake_mano_dir
from hold.metrics import mpjpe, mpjpe_per_frame
from hold.synth.sequence import EstimateNoise, SynthConfig, generate
from preprocess.hand_fit import HandFitConfig
from preprocess.hand_import import HandInputError, read_keypoints, read_mano_params
from preprocess.hands import HandsConfig, main, run_hands

T = 24


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A rendered synthetic sequence whose hands.npz holds GT 2D keypoints + 2 px noise, 20 % frames dropped."""
    out = tmp_path_factory.mktemp("synth") / "seq"
    noise = EstimateNoise(keypoints_px=2.0, drop_rate=0.2)
    generate(SynthConfig(num_frames=T, width=256, height=256, seed=0, noise=noise), out, progress=False)
    return out


def _detections(seq_dir):
    return np.load(seq_dir / "hands.npz")["right/keypoints_2d"].astype(np.float64)


def _write_json(path, kp2d):
    frames = [None if kp[:, 2].max() == 0 else {"keypoints_2d": kp.round(3).tolist()} for kp in kp2d]
    path.write_text(json.dumps(frames))
    return path


def _copy(synth, tmp_path):
    dst = tmp_path / "seq"
    shutil.copytree(synth, dst)
    return dst


@pytest.fixture(scope="module")
def fitted(synth, tmp_path_factory):
    """The step run once on a copy of the synthetic sequence, with the detections as a JSON file."""
    seq = tmp_path_factory.mktemp("fitted") / "seq"
    shutil.copytree(synth, seq)
    kp2d = _detections(synth)
    keypoints = _write_json(seq.parent / "detections.json", kp2d)
    info = run_hands(seq, HandsConfig(keypoints=str(keypoints), progress=False))
    return seq, kp2d, keypoints, info


def test_fit_matches_ground_truth(fitted):
    seq_dir, kp2d, _, info = fitted
    seq = load_sequence(seq_dir)
    track = seq.hands["right"]
    gt = load_trajectory(seq_dir / "gt").hands["right"]
    model = load_hand_model("anny", "right")
    with torch.no_grad():
        kp = model(*(torch.as_tensor(x) for x in (track.global_orient, track.hand_pose)),
                   torch.as_tensor(track.betas)[None].expand(T, -1), torch.as_tensor(track.transl)).keypoints
    valid = track.valid
    err_valid = mpjpe(kp.numpy(), gt.keypoints, valid=valid)
    err_all = mpjpe(kp.numpy(), gt.keypoints)
    uv = project(torch.as_tensor(seq.intrinsics.K, dtype=torch.float32), kp).numpy()
    reproj = np.linalg.norm(uv - kp2d[..., :2], axis=-1).mean(-1)[valid]
    print(f"\nhands step on synth (2 px noise, 20 % dropped): MPJPE {err_valid:.1f} mm on valid frames, "
          f"{err_all:.1f} mm on all; reprojection {reproj.mean():.2f} px (max {reproj.max():.2f})")
    assert err_valid < 15.0 and err_all < 15.0
    assert reproj.mean() < 4.0
    assert info["reprojection_px"]["mean_valid"] == pytest.approx(reproj.mean(), abs=0.05)


def test_dropped_frames_are_flagged_and_interpolated(fitted):
    seq_dir, kp2d, _, info = fitted
    track = load_sequence(seq_dir).hands["right"]
    dropped = kp2d[..., 2].max(-1) == 0
    assert 0 < dropped.sum() < T
    assert np.array_equal(track.valid, ~dropped)  # no outlier among the clean frames
    assert info["not_detected_frames"] == np.flatnonzero(dropped).tolist() == info["interpolated_frames"]
    v = torch.as_tensor(track.valid)
    go, hp, tr = (torch.as_tensor(x, dtype=torch.float64)
                  for x in (track.global_orient, track.hand_pose, track.transl))
    # invalid frames hold exactly the SLERP / lerp of their valid neighbours
    assert torch.allclose(interpolate_rotations(go[:, None], v)[:, 0], go, atol=1e-5)
    assert torch.allclose(interpolate_rotations(hp.reshape(T, 15, 3), v).reshape(T, 45), hp, atol=1e-5)
    assert torch.allclose(interpolate_linear(tr, v), tr, atol=1e-6)
    assert (track.keypoints_2d[dropped, :, 2] == 0).all() and (track.keypoints_2d[~dropped, :, 2] == 1).all()


def test_contract_record_and_qa(fitted):
    seq_dir, _, keypoints, info = fitted
    assert [p for p in validate(seq_dir) if p.severity == "error"] == []
    meta = json.loads((seq_dir / "sequence.json").read_text())
    assert meta["hands"] == ["right"] and meta["hand_model"] == "anny"
    assert meta["sources"]["hands"].startswith("hold preprocess hands: keypoints detections.json")
    assert meta["has_object"] is True  # the rest of sequence.json is untouched
    rec = json.loads((seq_dir / "preprocess" / "hands.json").read_text())
    assert rec["step"] == "hands" and rec["outputs"] == ["hands.npz", "qa/hands.png"]
    side = rec["info"]["sides"]["right"]
    assert side["camera"]["source"] == "sequence.json" and side["detected"] == int((~np.isin(
        np.arange(T), info["not_detected_frames"])).sum())
    assert rec["info"]["sequence_fields"]["hands"] == ["right"]
    assert set(rec["timings"]) >= {"import_s", "init_s", "fit_s", "write_s", "total_s"}
    from PIL import Image

    with Image.open(seq_dir / "qa" / "hands.png") as im:
        assert im.mode == "RGB" and im.size[0] == 4 * 256 and im.size[1] > 2 * 256


def test_rerun_is_skipped_and_changes_redo_it(fitted, tmp_path, capsys):
    seq_dir = _copy(fitted[0], tmp_path)  # a moved sequence folder keeps its record valid
    keypoints = fitted[2]
    npz = seq_dir / "hands.npz"
    before = npz.stat().st_mtime_ns
    again = run_hands(seq_dir, HandsConfig(keypoints=str(keypoints), progress=False))
    assert again["skipped"] and npz.stat().st_mtime_ns == before
    assert "up to date" in capsys.readouterr().err
    quick = HandFitConfig(steps=60, refit_steps=0, init_hypotheses=16, init_steps=20)
    redo = run_hands(seq_dir, HandsConfig(keypoints=str(keypoints), progress=False, fit=quick))  # options changed
    assert "skipped" not in redo and npz.stat().st_mtime_ns != before


def test_injected_outlier_frame_is_flagged(synth, tmp_path):
    seq_dir = _copy(synth, tmp_path)
    kp2d = _detections(synth)
    detected = np.flatnonzero(kp2d[..., 2].max(-1) > 0)
    bad = int(detected[len(detected) // 2])
    kp2d[bad, :, 0] += 80.0  # the detector jumped 80 px on one frame
    path = tmp_path / "kp.npz"
    np.savez(path, keypoints_2d=kp2d, valid=kp2d[..., 2].max(-1) > 0)
    info = run_hands(seq_dir, HandsConfig(keypoints=str(path), progress=False))
    track = load_sequence(seq_dir).hands["right"]
    assert info["outlier_frames"] == [bad] and not track.valid[bad]
    assert track.valid[detected[detected != bad]].all()
    assert (track.keypoints_2d[bad, :, 2] == 0).all()  # the rejected detection is not passed on
    gt = load_trajectory(seq_dir / "gt").hands["right"]
    model = load_hand_model("anny", "right")
    with torch.no_grad():
        kp = model(torch.as_tensor(track.global_orient), torch.as_tensor(track.hand_pose),
                   torch.as_tensor(track.betas)[None].expand(T, -1), torch.as_tensor(track.transl)).keypoints
    assert mpjpe_per_frame(kp.numpy(), gt.keypoints)[bad] < 20.0  # re-filled from its neighbours
    assert info["reprojection_px"]["mean_valid"] < 4.0


def test_no_detection_at_all_is_one_clear_error_and_nothing_changes(synth, tmp_path):
    seq_dir = _copy(synth, tmp_path)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps([None] * T))
    before = {p: p.read_bytes() for p in (seq_dir / "hands.npz", seq_dir / "sequence.json")}
    with pytest.raises(HandInputError, match="empty.json.*no hand detected in any frame.*Fix:"):
        run_hands(seq_dir, HandsConfig(keypoints=str(empty), progress=False))
    assert all(p.read_bytes() == b for p, b in before.items())
    assert not (seq_dir / "preprocess" / "hands.json").exists() and not (seq_dir / "qa" / "hands.png").exists()


def test_keypoint_file_errors_name_file_field_and_fix(tmp_path):
    kp = np.zeros((T, 21, 3))
    kp[:, :, :2], kp[:, :, 2] = 100.0, 1.0
    short = _write_json(tmp_path / "short.json", kp[:-1])
    with pytest.raises(HandInputError, match=r"short.json: .*23 frames, expected 24.*Fix:"):
        read_keypoints(short, T, (256, 256))
    bad_shape = tmp_path / "shape.json"
    bad_shape.write_text(json.dumps([{"keypoints_2d": [[1, 2, 1]] * 20}] + [None] * (T - 1)))
    with pytest.raises(HandInputError, match=r"'frames\[0\].keypoints_2d' has shape \(20, 3\), expected \(21, 2\)"):
        read_keypoints(bad_shape, T, (256, 256))
    norm = kp.copy()
    norm[..., :2] = 0.4
    with pytest.raises(HandInputError, match="normalized.*--keypoints-normalized"):
        read_keypoints(_write_json(tmp_path / "norm.json", norm), T, (256, 256))
    est = read_keypoints(_write_json(tmp_path / "norm2.json", norm), T, (256, 128), normalized=True, pixel_offset=0.5)
    assert np.allclose(est.keypoints_2d[0, 0], [0.4 * 256 + 0.5, 0.4 * 128 + 0.5, 1.0])
    conf = kp.copy()
    conf[3, 4, 2] = 7.0
    with pytest.raises(HandInputError, match=r"confidences outside \[0, 1\].*frames \[3\]"):
        read_keypoints(_write_json(tmp_path / "conf.json", conf), T, (256, 256))
    twod = tmp_path / "uv.npz"
    np.savez(twod, keypoints_2d=np.where(np.arange(T)[:, None, None] == 5, np.nan, kp[..., :2]))
    est = read_keypoints(twod, T, (256, 256))
    assert est.detected.tolist() == [t != 5 for t in range(T)] and (est.keypoints_2d[~est.detected] == 0).all()
    hold_layout = tmp_path / "hands.npz"  # hold's own hands.npz layout: `<side>/keypoints_2d`, `<side>/valid`
    np.savez(hold_layout, **{"left/keypoints_2d": kp, "left/valid": np.arange(T) != 2})
    est = read_keypoints(hold_layout, T, (256, 256), side="left")
    assert est.detected.tolist() == [t != 2 for t in range(T)] and np.allclose(est.keypoints_2d[0], kp[0])


# ----------------------------------------------------------------------------------------------
# HaMeR-style MANO parameters (procedural MANO pickle)


def _mano_ground_truth(model, n):
    """n frames of a turning, curled MANO hand 0.5 m in front of the default camera of a 320x240 clip."""
    from hold.geometry.rotations import matrix_to_axis_angle
    from preprocess.hand_fit import KeypointKinematics, joint_prior

    rest, _ = KeypointKinematics(model).rest(torch.zeros(10))
    axes = joint_prior(model, rest, (0.25, 0.3, 0.2)).axes[:, 0]
    curl = torch.linspace(0.2, 1.0, 15)[:, None]
    hand_pose = (curl * axes).reshape(1, 45).repeat(n, 1)
    s = torch.linspace(0, 1, n)
    turn = torch.stack([0.2 * s, math.pi / 3 * s, 0.1 * s], -1)
    go = matrix_to_axis_angle(axis_angle_to_matrix(turn) @ axis_angle_to_matrix(torch.tensor([0.0, 0.0, -math.pi / 2])))
    betas = torch.linspace(-0.5, 0.5, 10)
    transl = torch.stack([0.1 + 0.02 * s, 0.02 * s, 0.5 + 0.02 * s], -1)
    with torch.no_grad():
        kp = model(go, hand_pose, betas[None].expand(n, -1), transl).keypoints
    return go, hand_pose, betas, transl, kp


@pytest.fixture(scope="module")
def mano_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("mano_case")
    mano_dir = write_fake_mano_dir(root / "mano")
    seq = root / "seq"  # frames only: no sequence.json yet (the step runs before `build`)
    n, W, H = 8, 320, 240
    for i in range(n):
        write_image(seq / "images" / f"{i:06d}.png", np.full((H, W, 3), 90, np.uint8))
    model = load_hand_model("mano", "right", mano_dir)
    go, hp, betas, transl, kp = _mano_ground_truth(model, n)
    R = axis_angle_to_matrix(torch.cat([go[:, None], hp.reshape(n, 15, 3)], 1)).numpy()
    valid = np.ones(n, bool)
    valid[5] = False
    params = root / "hamer.npz"  # rotation matrices, per-frame betas, cam_t: as HaMeR returns them
    np.savez(params, global_orient=R[:, :1], hand_pose=R[:, 1:], betas=np.tile(betas.numpy(), (n, 1)),
             cam_t=transl.numpy(), valid=valid)
    return seq, mano_dir, params, kp, valid


def test_mano_params_import_fits_mano_exactly(mano_case):
    seq, mano_dir, params, kp_gt, valid = mano_case
    info = run_hands(seq, HandsConfig(mano_params=str(params), mano_dir=str(mano_dir), hand_model="mano",
                                      progress=False))
    assert not (seq / "sequence.json").exists()  # nothing to update yet: the record carries the fields
    z = np.load(seq / "hands.npz")
    assert np.array_equal(z["right/valid"], valid)
    model = load_hand_model("mano", "right", mano_dir)
    with torch.no_grad():
        kp = model(torch.as_tensor(z["right/global_orient"]), torch.as_tensor(z["right/hand_pose"]),
                   torch.as_tensor(z["right/betas"])[None].expand(8, -1), torch.as_tensor(z["right/transl"])).keypoints
    err = np.linalg.norm(kp.numpy() - kp_gt.numpy(), axis=-1).mean(-1) * 1000  # absolute, camera frame (mm)
    print(f"\nMANO import -> mano fit: mean absolute keypoint error {err[valid].mean():.2f} mm")
    assert err[valid].max() < 2.0 and info["init_methods"]["given"] == 7
    assert err[5] < 10.0  # the invalid frame is interpolated between its neighbours
    rec = json.loads((seq / "preprocess" / "hands.json").read_text())
    fields = rec["info"]["sequence_fields"]
    assert fields["hand_model"] == "mano" and fields["hands"] == ["right"] and fields["num_frames"] == 8
    assert fields["K"] == [[384.0, 0.0, 160.0], [0.0, 384.0, 120.0], [0.0, 0.0, 1.0]]  # 1.2 * max(W, H)
    assert "default f = 1.2" in rec["info"]["sides"]["right"]["camera"]["source"]


def test_mano_params_drive_an_anny_fit(mano_case):
    seq, mano_dir, params, kp_gt, valid = mano_case
    info = run_hands(seq, HandsConfig(mano_params=str(params), mano_dir=str(mano_dir), hand_model="anny",
                                      progress=False, force=True))
    z = np.load(seq / "hands.npz")
    model = load_hand_model("anny", "right")
    with torch.no_grad():
        kp = model(torch.as_tensor(z["right/global_orient"]), torch.as_tensor(z["right/hand_pose"]),
                   torch.as_tensor(z["right/betas"])[None].expand(8, -1), torch.as_tensor(z["right/transl"])).keypoints
    err = mpjpe(kp.numpy(), kp_gt.numpy(), valid=valid)
    print(f"\nMANO import -> anny fit (another skeleton): MPJPE {err:.1f} mm, "
          f"reprojection {info['reprojection_px']['mean_valid']:.2f} px")
    assert err < 15.0 and info["reprojection_px"]["mean_valid"] < 4.0 and info["init_methods"]["3d"] == 7


def test_left_hand_from_mirrored_hamer_parameters(mano_case):
    """HaMeR predicts a left hand with the right-hand model on the mirrored image; importing it as the left
    hand must give the mirror image of that right hand (then moved by cam_t)."""
    _, mano_dir, _, _, _ = mano_case
    right = load_hand_model("mano", "right", mano_dir)
    left = load_hand_model("mano", "left", mano_dir)
    n = 3
    go, hp, betas, transl, _ = _mano_ground_truth(right, n)
    path = mano_dir.parent / "left.npz"
    np.savez(path, global_orient=go.numpy(), hand_pose=hp.numpy(), betas=betas.numpy(), cam_t=transl.numpy(),
             is_right=np.zeros(n))
    est = read_mano_params(path, n, (320, 240), np.array([[384.0, 0, 160], [0, 384.0, 120], [0, 0, 1]]), left, "left")
    with torch.no_grad():
        kp_r = right(go, hp, betas[None].expand(n, -1), torch.zeros(n, 3)).keypoints.numpy()
    expected = kp_r * np.array([-1.0, 1.0, 1.0]) + transl.numpy()[:, None]
    assert np.abs(est.keypoints_3d - expected).max() < 1e-5
    assert any("mirrored" in note for note in est.notes)
    est_r = read_mano_params(path, n, (320, 240), np.eye(3), right, "right")  # is_right = 0: not this hand
    assert not est_r.detected.any()


def test_cli_checks_its_arguments(mano_case, capsys):
    seq, mano_dir, params, _, _ = mano_case
    with pytest.raises(ValueError, match="--mano-params needs --mano-dir"):
        main([str(seq), "--mano-params", str(params), "--quiet", "--force"])
    with pytest.raises(SystemExit):
        main([str(seq)])  # one of --keypoints / --mano-params is required
    assert "one of the arguments --keypoints --mano-params is required" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="nope.json: file not found"):
        main([str(seq), "--keypoints", str(seq / "nope.json")])


def test_second_hand_is_added_and_hand_models_must_agree(fitted, tmp_path):
    seq_dir = _copy(fitted[0], tmp_path)
    quick = HandFitConfig(steps=40, refit_steps=0, init_hypotheses=8, init_steps=10)
    with pytest.raises(SequenceError, match="hand_model.*'anny' for the right hand.*one hand model for all hands"):
        run_hands(seq_dir, HandsConfig(keypoints=str(fitted[2]), side="left", hand_model="mano",
                                       mano_dir=str(tmp_path), progress=False, fit=quick))
    right_before = {k: v for k, v in np.load(seq_dir / "hands.npz").items() if k.startswith("right/")}
    run_hands(seq_dir, HandsConfig(keypoints=str(fitted[2]), side="left", progress=False, fit=quick))
    z = np.load(seq_dir / "hands.npz")
    assert all(np.array_equal(z[k], v) for k, v in right_before.items())  # the other hand is kept as it was
    assert {"left/global_orient", "left/valid", "left/keypoints_2d"} <= set(z.files)
    meta = json.loads((seq_dir / "sequence.json").read_text())
    assert meta["hands"] == ["right", "left"]
    rec = json.loads((seq_dir / "preprocess" / "hands.json").read_text())
    assert set(rec["info"]["sides"]) == {"right", "left"}
    assert rec["info"]["sequence_fields"]["hands"] == ["right", "left"]
    assert load_sequence(seq_dir).hands["left"].num_frames == T
