"""`hold preprocess align` on a synthetic clip turned into SfM-like inputs: the object track in unknown units
(translation and size x 0.37, 0.5 deg rotation noise) and the emulated hand estimate with a 20 % depth error, made
under a focal guess 20 % too long while the SfM K is the true one (so only a fit under the SfM K recovers the GT).
After alignment the object scale, the object translations and the hand translations match the ground truth;
the unaligned inputs are kept so a re-run does not align twice; missing inputs stop with one clear message."""
import json
import shutil

import numpy as np
import pytest
import torch

from hold.data import SequenceError, load_sequence, load_trajectory, validate
from hold.geometry.rotations import axis_angle_to_matrix
from hold.synth.sequence import EstimateNoise, SynthConfig, generate
from preprocess.align import HANDS_UNALIGNED, OBJECT_UNALIGNED, AlignConfig, main, run_align
from preprocess.align_fit import AlignFitConfig, estimate_normals, fit_hand_translation, signed_surface_distance
from preprocess.hand_fit import solve_translation
from preprocess.records import load_record, write_record

T, SIZE, SFM_UNITS = 12, 128, 0.37
"""Frames, image side, SfM units per metre of the emulated reconstruction."""
DEPTH_ERROR = 1.2
"""The emulated hand estimate's translations are this factor too far (a focal-length mismatch)."""
FOCAL_GUESS = 1.2
"""The K the hands step used (sequence.json's, without a hands record) has this factor times the true focal."""


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A slow 12-frame clip (like consecutive video frames) with its GT, before any SfM-like conversion."""
    out = tmp_path_factory.mktemp("align") / "synth"
    noise = EstimateNoise(hand_rot_deg=2.0, hand_pose_rad=0.02, betas=0.1, keypoints_px=1.0, drop_rate=0.15)
    generate(SynthConfig(num_frames=T, width=SIZE, height=SIZE, seed=1, yaw_range_deg=60, pitch_amp_deg=10,
                         roll_amp_deg=5, transl_amp_m=0.01, noise=noise), out, progress=False)
    return out


def make_sfm_like(synth, dst):
    """Copy of the clip whose object.npz is in SfM units with small rotation noise, whose hands.npz has a wrong
    depth, with a fake sfm record holding the true K and a sequence.json holding the hands step's focal guess."""
    shutil.copytree(synth, dst)
    gt = load_trajectory(dst / "gt")
    seq = load_sequence(dst)
    rng = np.random.default_rng(3)
    T_gt = gt.object.T_cam_from_obj.astype(np.float64)
    noise = axis_angle_to_matrix(torch.as_tensor(rng.normal(size=(T, 3)) * np.radians(0.5) / np.sqrt(3))).numpy()
    T_sfm = T_gt.copy()
    T_sfm[:, :3, :3] = noise @ T_gt[:, :3, :3]
    T_sfm[:, :3, 3] *= SFM_UNITS
    np.savez(dst / "object.npz", T_cam_from_obj=T_sfm.astype(np.float32),
             scale=np.asarray(seq.object.scale * SFM_UNITS, np.float32), points=seq.object.points,
             valid=np.ones(T, bool))
    hands = dict(np.load(dst / "hands.npz"))
    hands["right/transl"] = (hands["right/transl"] * DEPTH_ERROR).astype(np.float32)
    np.savez(dst / "hands.npz", **hands)
    write_record(dst, "sfm", "fake", options={}, inputs=[], outputs=[],
                 info={"K": seq.intrinsics.K.tolist(), "image_size": [SIZE, SIZE]})
    meta = json.loads((dst / "sequence.json").read_text())
    meta["K"] = np.diag([FOCAL_GUESS, FOCAL_GUESS, 1.0]).dot(seq.intrinsics.K).tolist()
    (dst / "sequence.json").write_text(json.dumps(meta))
    return dst, gt, seq.object.scale


@pytest.fixture(scope="module")
def aligned(synth, tmp_path_factory):
    seq_dir, gt, true_scale = make_sfm_like(synth, tmp_path_factory.mktemp("aligned") / "seq")
    before = dict(np.load(seq_dir / "hands.npz"))
    info = run_align(seq_dir, progress=False)
    return seq_dir, gt, true_scale, before, info


def _errors(seq_dir, gt):
    seq = load_sequence(seq_dir)
    t_obj = np.linalg.norm(seq.object.T_cam_from_obj[:, :3, 3] - gt.object.T_cam_from_obj[:, :3, 3], axis=1)
    t_hand = np.linalg.norm(seq.hands["right"].transl - gt.hands["right"].params["transl"], axis=1)
    return seq, np.median(t_obj), np.median(t_hand)


def test_scale_and_translations_match_ground_truth(aligned):
    seq_dir, gt, true_scale, before, info = aligned
    seq, obj_err, hand_err = _errors(seq_dir, gt)
    hand_err_before = np.median(np.linalg.norm(before["right/transl"] - gt.hands["right"].params["transl"], axis=1))
    scale_err = seq.object.scale / true_scale - 1
    print(f"\nalign on synth ({T} frames {SIZE}^2): scale error {100 * scale_err:+.2f} %, median object translation "
          f"error {1000 * obj_err:.1f} mm, median hand translation error {1000 * hand_err_before:.1f} -> "
          f"{1000 * hand_err:.1f} mm, hand reprojection {info['hand_reprojection_px_before']:.1f} -> "
          f"{info['hand_reprojection_px_after']:.1f} px; fit {info.get('alpha'):.4f} (true {1 / SFM_UNITS:.4f})")
    assert abs(scale_err) < 0.05
    assert obj_err < 0.005
    assert hand_err < 0.5 * hand_err_before
    assert info["hand_reprojection_px_after"] < info["hand_reprojection_px_before"]
    # rotations, points and everything but the hand translations are untouched
    obj_in = np.load(seq_dir / OBJECT_UNALIGNED)
    np.testing.assert_allclose(seq.object.T_cam_from_obj[:, :3, :3], obj_in["T_cam_from_obj"][:, :3, :3], atol=1e-6)
    np.testing.assert_array_equal(seq.object.points, obj_in["points"])
    after = np.load(seq_dir / "hands.npz")
    for k in before:
        if k != "right/transl":
            np.testing.assert_array_equal(after[k], before[k])


def test_outputs_record_qa_and_contract(aligned):
    seq_dir, _, _, before, info = aligned
    assert [p for p in validate(seq_dir) if p.severity == "error"] == []
    rec = load_record(seq_dir, "align")
    assert rec.outputs == ["hands.npz", "object.npz", "qa/align.png"]
    K_sfm, K_guess = load_record(seq_dir, "sfm").info["K"], load_sequence(seq_dir).intrinsics.K
    assert rec.info["K"] == K_sfm and "sfm.json" in rec.info["K_source"]
    assert rec.info["K_hands"]["right"] == K_guess.tolist()
    assert K_guess[0, 0] == pytest.approx(FOCAL_GUESS * K_sfm[0][0])  # the fit could not pass under the hands' K
    assert set(rec.inputs) >= {HANDS_UNALIGNED, OBJECT_UNALIGNED, "preprocess/sfm.json"}
    np.testing.assert_array_equal(np.load(seq_dir / HANDS_UNALIGNED)["right/transl"], before["right/transl"])
    assert not (seq_dir / "preprocess" / "align_pending.json").exists()
    from PIL import Image

    with Image.open(seq_dir / "qa" / "align.png") as im:
        assert im.mode == "RGB" and im.size[0] == 2 * 512


def test_rerun_is_skipped_and_force_starts_from_the_unaligned_inputs(aligned, capsys):
    seq_dir = aligned[0]
    scale = float(np.load(seq_dir / "object.npz")["scale"])
    assert run_align(seq_dir, progress=False)["skipped"] is True
    assert "up to date" in capsys.readouterr().err
    cfg = AlignConfig(fit=AlignFitConfig(object_iters=20, joint_iters=20))
    run_align(seq_dir, cfg, force=True, progress=False)  # other options: must not align the aligned files again
    assert float(np.load(seq_dir / "object.npz")["scale"]) == pytest.approx(scale, rel=0.03)
    assert float(np.load(seq_dir / OBJECT_UNALIGNED)["scale"]) == pytest.approx(scale * SFM_UNITS, rel=0.05)


def test_missing_inputs_and_no_overlap_are_one_clear_error(synth, tmp_path):
    seq_dir, _, _ = make_sfm_like(synth, tmp_path / "seq")
    (seq_dir / "object.npz").rename(tmp_path / "object.npz")
    with pytest.raises(SequenceError, match=r"object\.npz.*not found.*hold preprocess sfm"):
        main([str(seq_dir), "--quiet"])
    (tmp_path / "object.npz").rename(seq_dir / "object.npz")
    (seq_dir / "hands.npz").rename(tmp_path / "hands.npz")
    with pytest.raises(SequenceError, match=r"hands\.npz.*not found.*hold preprocess hands"):
        main([str(seq_dir), "--quiet"])
    shutil.move(tmp_path / "hands.npz", seq_dir / "hands.npz")
    obj = dict(np.load(seq_dir / "object.npz"))
    obj["valid"][:] = False
    np.savez(seq_dir / "object.npz", **obj)
    before = (seq_dir / "hands.npz").read_bytes()
    with pytest.raises(SequenceError, match="share no observed frame"):
        run_align(seq_dir, progress=False)
    assert (seq_dir / "hands.npz").read_bytes() == before and load_record(seq_dir, "align") is None


def test_hand_translation_is_exact_without_noise():
    g = torch.Generator().manual_seed(0)
    kp_local = torch.randn(5, 21, 3, generator=g, dtype=torch.float64) * 0.04
    t_true = torch.tensor([0.05, -0.02, 0.45], dtype=torch.float64) + 0.01 * torch.randn(5, 3, generator=g,
                                                                                          dtype=torch.float64)
    K = torch.tensor([[300.0, 0, 128], [0, 310, 120], [0, 0, 1]], dtype=torch.float64)
    x = kp_local + t_true[:, None]
    uv = (x @ K.T)[..., :2] / x[..., 2:]
    kp2d = torch.cat([uv, torch.ones(5, 21, 1, dtype=torch.float64)], -1)
    # the closed form is the start L-BFGS refines: within ~1 mm of the truth (its weak pull to a prior 13 cm too
    # far); the refined translations below are exact
    assert torch.allclose(solve_translation(K, kp_local, kp2d, t_true * 1.3), t_true, atol=3e-3)
    kp2d[2, :, 2] = 0  # frame 2 undetected: lerped between its neighbours
    t, det = fit_hand_translation(kp_local, kp2d, K, t_true * 1.3, AlignFitConfig())
    assert det.tolist() == [True, True, False, True, True]
    assert torch.allclose(t[det], t_true[det], atol=1e-7)
    assert torch.allclose(t[2], 0.5 * (t_true[1] + t_true[3]), atol=1e-7)


def test_point_to_plane_distance_is_signed():
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(2000, 3, generator=g, dtype=torch.float64), dim=-1)  # unit sphere
    n = estimate_normals(x)
    assert ((n * x).sum(-1) > 0.99).all()  # outward, radial
    q = torch.tensor([[[0.0, 0.0, 1.05], [0.0, 0.97, 0.0], [-0.5, 0.0, 0.0]]], dtype=torch.float64)
    sd = signed_surface_distance(q, x[None], n[None])
    np.testing.assert_allclose(sd[0].numpy(), [0.05, -0.03, -0.5], atol=0.02)


def test_beyond_the_edge_of_a_patch_counts_as_outside():
    g = torch.linspace(0, 1, 21, dtype=torch.float64)
    patch = torch.stack([*torch.meshgrid(g, g, indexing="ij"), torch.zeros(21, 21, dtype=torch.float64)], -1)
    patch = patch.reshape(1, -1, 3)
    normals = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(patch)
    q = torch.tensor([[[0.5, 0.5, -0.02], [1.5, 0.5, -0.1]]], dtype=torch.float64)  # under the patch / past its edge
    np.testing.assert_allclose(signed_surface_distance(q, patch, normals)[0].numpy(), [-0.02, -0.1], atol=1e-12)
    sd = signed_surface_distance(q, patch, normals, max_lateral=0.1)[0].numpy()
    np.testing.assert_allclose(sd, [-0.02, np.hypot(0.5, 0.1)], atol=1e-12)


def test_a_second_hand_far_from_the_object_does_not_move_it(synth, tmp_path):
    """Two hands, one holding the object and one 25 cm away (no keypoints: re-fitted to its own projection): the
    hand-object terms use the hand nearest the object, so the scale is as good as with the holding hand alone
    (the centroid of both hands would sit ~12 cm from the object and drag it)."""
    seq_dir, gt, true_scale = make_sfm_like(synth, tmp_path / "seq")
    hands = dict(np.load(seq_dir / "hands.npz"))
    for k in [k for k in hands if k.startswith("right/") and k != "right/keypoints_2d"]:
        hands["left/" + k[len("right/"):]] = hands[k].copy()
    hands["left/transl"] = hands["left/transl"] + np.array([0.25, 0.0, 0.0], np.float32)
    np.savez(seq_dir / "hands.npz", **hands)
    meta = json.loads((seq_dir / "sequence.json").read_text())
    meta["hands"] = ["right", "left"]
    (seq_dir / "sequence.json").write_text(json.dumps(meta))
    run_align(seq_dir, progress=False)
    scale_err = load_sequence(seq_dir).object.scale / true_scale - 1
    print(f"\nalign with a second hand 25 cm away: scale error {100 * scale_err:+.2f} %")
    assert abs(scale_err) < 0.05


def test_masks_estimate_projects_aligned_hands_with_the_align_camera(aligned):
    """After align (and before build rewrites sequence.json) hands.npz holds translations fitted under the SfM K:
    `masks --estimate` must project them with that K, not with sequence.json's focal guess."""
    from preprocess.mask_estimate import _camera_and_model

    seq_dir = aligned[0]
    K_sfm = np.asarray(load_record(seq_dir, "sfm").info["K"])
    K, source, _ = _camera_and_model(seq_dir, (SIZE, SIZE))
    assert source == "preprocess/align.json" and np.allclose(K, K_sfm)
    assert not np.allclose(K, json.loads((seq_dir / "sequence.json").read_text())["K"])  # the guess
