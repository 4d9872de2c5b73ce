"""Hand fitting maths (preprocess.hand_fit): keypoint kinematics equal the models, robust losses, the
closed-form translation, Viterbi, the outlier rule, SLERP re-filling, and fits of rendered-free sequences
with known answers (2D only, 2D + scale-free 3D, no detection at all)."""
import math

import numpy as np
import pytest
import torch

from hold.geometry.camera import make_intrinsics, project
from hold.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle, rotation_angle_between
from hold.hands import load_hand_model
from hold.hands.testing import write_fake_mano_dir
from hold.metrics import mpjpe
from preprocess.hand_fit import (
    FitError, HandFitConfig, HandParams, KeypointKinematics, fill_invalid, fit_hand, flag_outliers, gmof, huber,
    impulse_frames, joint_prior, natural_pose, pose_prior, solve_translation, viterbi,
)


@pytest.fixture(scope="module")
def fake_mano_dir(tmp_path_factory):
    return write_fake_mano_dir(tmp_path_factory.mktemp("mano"))


@pytest.mark.parametrize("name,side", [("anny", "right"), ("anny", "left"), ("mano", "right"), ("mano", "left")])
def test_keypoint_kinematics_equal_the_model(name, side, fake_mano_dir):
    model = load_hand_model(name, side, fake_mano_dir)
    kin = KeypointKinematics(model)
    assert kin.check(1e-4, seed=3) < 1e-6  # metres: the surrogate is exact, shape included
    g = torch.Generator().manual_seed(1)
    betas = torch.randn(model.num_betas, generator=g)
    rest, root = kin.rest(betas)
    ref = model(torch.zeros(1, 3), -kin.pose_offset[None], betas[None], torch.zeros(1, 3))
    assert torch.allclose(rest, ref.keypoints[0], atol=1e-6) and torch.allclose(root, ref.joints[0, 0], atol=1e-6)


def test_robust_losses_known_values():
    s = 0.1
    r2 = torch.tensor([0.0, s * s, 4 * s * s, 1e6])
    assert torch.allclose(gmof(r2, s), torch.tensor([0.0, 0.5, 0.8, 1.0]), atol=1e-6)  # r2 / (r2 + s^2)
    h = huber(r2, s)
    assert torch.allclose(h[:2], r2[:2] / s**2)  # quadratic inside
    assert math.isclose(float(h[2]), (2 * s * 2 * s - s * s) / s**2, rel_tol=1e-6)  # linear outside: 3
    near = huber(torch.tensor([(s * (1 - 1e-4)) ** 2, (s * (1 + 1e-4)) ** 2]), s)
    assert abs(float(near[1] - near[0])) < 1e-3  # continuous at the scale


def test_solve_translation_recovers_the_exact_translation():
    g = torch.Generator().manual_seed(0)
    K = make_intrinsics(500.0, 480.0, 320.0, 240.0)
    P = torch.randn(5, 21, 3, generator=g) * 0.05  # hand-sized point sets, rotated arbitrarily
    t_true = torch.tensor([[0.05, -0.02, 0.5], [-0.1, 0.05, 0.8], [0.0, 0.0, 0.3], [0.2, 0.1, 1.2], [0.0, 0.1, 0.6]])
    uv = project(K, P + t_true[:, None])
    kp2d = torch.cat([uv, torch.ones(5, 21, 1)], -1)
    t = solve_translation(K, P, kp2d, t_prior=t_true + torch.tensor([0.05, -0.05, 0.2]), prior_weight=1e-9)
    assert torch.allclose(t, t_true, atol=1e-4)


def test_viterbi_equals_brute_force():
    g = torch.Generator().manual_seed(2)
    N, H = 4, 3
    unary, pair = torch.rand(N, H, generator=g), torch.rand(N - 1, H, H, generator=g)
    best, arg = float("inf"), None
    for code in range(H**N):
        path = [(code // H**i) % H for i in range(N)]
        cost = sum(float(unary[i, path[i]]) for i in range(N)) + sum(float(pair[i, path[i], path[i + 1]])
                                                                       for i in range(N - 1))
        if cost < best:
            best, arg = cost, path
    assert viterbi(unary, pair).tolist() == arg


def test_outlier_rule_is_max_of_factor_median_and_min_px():
    det = torch.ones(5, dtype=torch.bool)
    out, thr = flag_outliers(torch.tensor([10.0, 11.0, 12.0, 11.5, 40.0]), det)
    assert thr == pytest.approx(34.5) and out.tolist() == [False, False, False, False, True]
    out, thr = flag_outliers(torch.tensor([1.0, 1.0, 1.0, 1.0, 14.0]), det)  # 3x median = 3 px < 15 px floor
    assert thr == 15.0 and not out.any()
    det[4] = False  # undetected frames are not outliers (and not in the median)
    out, _ = flag_outliers(torch.tensor([1.0, 1.0, 1.0, 1.0, float("nan")]), det)
    assert not out.any()


def test_fill_invalid_slerps_rotations_and_lerps_translations():
    T = 5
    go = torch.zeros(T, 3)
    go[4, 2] = math.pi / 2  # frame 0: identity, frame 4: 90 deg about z
    hp = torch.zeros(T, 45)
    hp[4, 3] = 1.0
    transl = torch.zeros(T, 3)
    transl[4] = torch.tensor([0.4, 0.0, 0.8])
    go[1:4], hp[1:4], transl[1:4] = 7.0, -3.0, 99.0  # garbage in the invalid frames
    valid = torch.tensor([True, False, False, False, True])
    p = fill_invalid(HandParams(go, hp, torch.zeros(10), transl), valid)
    assert torch.equal(p.global_orient[[0, 4]], go[[0, 4]])  # valid frames untouched
    assert torch.allclose(p.global_orient[2], torch.tensor([0.0, 0.0, math.pi / 4]), atol=1e-6)  # half way
    assert torch.allclose(p.hand_pose[1, 3], torch.tensor(0.25), atol=1e-6)
    assert torch.allclose(p.transl[3], torch.tensor([0.3, 0.0, 0.6]), atol=1e-6)


def test_pose_prior_is_zero_at_the_natural_pose_and_hates_hyperextension(anny_right):
    kin = KeypointKinematics(anny_right)
    rest, _ = kin.rest(torch.zeros(10))
    prior = joint_prior(anny_right, rest, (0.25, 0.3, 0.2))
    nat = natural_pose(prior).reshape(1, 45)
    assert float(pose_prior(nat, prior)) < 1e-10
    axes = prior.axes[:, 0]
    j = 7  # a middle joint of a long finger (model order): same angle, flexing vs hyper-extending
    bend = torch.zeros(1, 15, 3)
    bend[0, j] = 0.6 * axes[j]
    flexed = pose_prior(nat + bend.reshape(1, 45), prior)
    hyper = pose_prior(nat - bend.reshape(1, 45), prior)
    assert float(hyper) > 5 * float(flexed)


def test_impulse_check_flags_a_jump_not_smooth_motion():
    T = 12
    base = torch.rand(21, 2, generator=torch.Generator().manual_seed(0)) * 100
    kp = torch.zeros(T, 21, 3)
    kp[..., :2] = base + torch.arange(T, dtype=torch.float32)[:, None, None] * 6.0  # 6 px / frame drift
    kp[..., 2] = 1.0
    det = torch.ones(T, dtype=torch.bool)
    assert not impulse_frames(kp, det).any()
    kp[0, :, 0] += 80.0  # an edge frame jumps
    kp[7, :, 1] -= 80.0
    assert impulse_frames(kp, det).nonzero().flatten().tolist() == [0, 7]


# ----------------------------------------------------------------------------------------------
# Fits with known answers (no rendering: keypoints projected from a posed model)


def _ground_truth(model, T=16, seed=0):
    """A hand turning 90 degrees in front of a 320x240 camera with a fixed curled grasp."""
    g = torch.Generator().manual_seed(seed)
    kin = KeypointKinematics(model)
    rest, _ = kin.rest(torch.zeros(10))
    axes = joint_prior(model, rest, (0.25, 0.3, 0.2)).axes[:, 0]
    curls = torch.rand(15, 1, generator=g) * 1.2
    hand_pose = (curls * axes).reshape(1, 45).repeat(T, 1)
    s = torch.linspace(0, 1, T)
    turn = torch.stack([0.3 * torch.sin(6 * s), math.pi / 2 * s - 0.7, torch.zeros(T)], -1)  # 90 deg yaw + wobble
    upright = torch.tensor([math.pi, 0.0, 0.0])  # the rest hand's fingers point down the image (+y): flip them up
    go = matrix_to_axis_angle(axis_angle_to_matrix(turn) @ axis_angle_to_matrix(upright))
    betas = torch.randn(10, generator=g) * 0.3
    transl = torch.stack([0.03 * torch.sin(3 * s), 0.02 * s, 0.45 + 0.05 * s], -1)
    with torch.no_grad():
        kp3 = model(go, hand_pose, betas[None].expand(T, -1), transl).keypoints
    K = make_intrinsics(380.0, 380.0, 160.0, 120.0)
    return K, kp3, HandParams(go, hand_pose, betas, transl)


def test_fit_2d_keypoints_recovers_the_hand(anny_right):
    K, kp3, gt = _ground_truth(anny_right)
    T = kp3.shape[0]
    g = torch.Generator().manual_seed(5)
    uv = project(K, kp3) + torch.randn(T, 21, 2, generator=g) * 1.0
    kp2d = torch.cat([uv, torch.ones(T, 21, 1)], -1)
    kp2d[[3, 9]] = 0.0  # two frames without detection
    res = fit_hand(anny_right, K, kp2d, cfg=HandFitConfig(steps=250))
    assert res.detected.tolist() == [t not in (3, 9) for t in range(T)]
    assert res.valid.tolist() == res.detected.tolist() and not res.outlier.any()
    err = mpjpe(res.keypoints.numpy(), kp3.numpy(), valid=res.valid.numpy())
    reproj = float(res.reproj_px[res.valid].mean())
    print(f"2D-only fit: root-relative MPJPE {err:.1f} mm, reprojection {reproj:.2f} px")
    assert err < 15.0
    assert float(res.reproj_px[res.valid].mean()) < 2.5  # noise is 1 px per axis
    ang = rotation_angle_between(axis_angle_to_matrix(res.params.global_orient), axis_angle_to_matrix(gt.global_orient))
    assert float(ang.max()) < math.radians(12)


def test_fit_with_scale_free_3d_and_no_detection_error(anny_right):
    K, kp3, gt = _ground_truth(anny_right, T=10, seed=1)
    T = kp3.shape[0]
    kp2d = torch.cat([project(K, kp3), torch.ones(T, 21, 1)], -1)
    kp3_scaled = (kp3 - kp3[:, :1]) * 7.0 + 1.0  # 3D known only up to scale and offset
    res = fit_hand(anny_right, K, kp2d, kp3_scaled, metric_3d=False, cfg=HandFitConfig(steps=200, refit_steps=0))
    assert set(res.init_method) == {"3d"}
    pred = (res.keypoints - res.keypoints[:, :1]).numpy()
    true = (kp3 - kp3[:, :1]).numpy()
    scale = (pred * true).sum() / (pred * pred).sum()  # the hand's size is unobservable without metric input
    err_shape = np.linalg.norm(scale * pred - true, axis=-1).mean() * 1000
    err = mpjpe(res.keypoints.numpy(), kp3.numpy())
    print(f"2D + scale-free 3D fit: root-relative MPJPE {err:.1f} mm, {err_shape:.2f} mm after scale alignment")
    assert err_shape < 2.0 and err < 15.0
    metric = fit_hand(anny_right, K, kp2d, kp3, metric_3d=True, cfg=HandFitConfig(steps=200, refit_steps=0))
    assert mpjpe(metric.keypoints.numpy(), kp3.numpy()) < 1.0  # metric 3D fixes the size too (betas)
    with pytest.raises(FitError, match="no hand detected in any frame"):
        fit_hand(anny_right, K, torch.zeros(T, 21, 3))


def test_keypoints_of_something_else_are_refused(anny_right):
    K, kp3, _ = _ground_truth(anny_right, T=6, seed=2)
    kp2d = torch.cat([project(K, kp3), torch.ones(6, 21, 1)], -1)
    shuffled = torch.randperm(21, generator=torch.Generator().manual_seed(0))
    quick = HandFitConfig(steps=100, refit_steps=0, init_hypotheses=16, init_steps=20)
    with pytest.raises(FitError, match="does not fit the keypoints.*hold's order"):
        fit_hand(anny_right, K, kp2d[:, shuffled], cfg=quick)
    tip_first = [0] + [b + 3 - i for b in (1, 5, 9, 13, 17) for i in range(4)]  # e.g. InterHand's order
    res = fit_hand(anny_right, K, kp2d[:, tip_first], cfg=quick)
    assert res.stats["warning"] and "keypoint order" in res.stats["warning"]
    assert fit_hand(anny_right, K, kp2d, cfg=quick).stats["warning"] is None
