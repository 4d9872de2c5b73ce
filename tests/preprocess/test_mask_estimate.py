"""`hold preprocess masks --estimate`: the rasteriser puts triangles on the right pixel centres, flow warping carries
a mask with the image, the hand silhouette from the true hand parameters matches the rendered hand label, the object
tracked from a first-frame mask matches the true object mask, the record says 'estimated', and missing seeds / bad
options stop with one message leaving the previous masks intact. The real apple video is checked when
../shared is present."""
import math
import shutil

import numpy as np
import pytest
from PIL import Image
from scipy.stats import multivariate_normal

from hold.data.errors import SequenceError
from preprocess import mask_track as mt
from preprocess.mask_estimate import MaskEstimateConfig, compose_labels, load_hand_silhouettes, run_mask_estimate
from preprocess.masks import boundary_band
from preprocess.masks import main as masks_main
from preprocess.records import load_record

from . import SHARED_REAL

T, W, H = 8, 160, 120
APPLE = SHARED_REAL / "cotracker-apple-video"


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """A slow-turning synthetic clip (4 degrees of yaw per frame, like a real video at ~10 fps)."""
    from hold.synth.sequence import SynthConfig, generate

    out = tmp_path_factory.mktemp("mask_est") / "build"
    generate(SynthConfig(num_frames=T, width=W, height=H, seed=3, yaw_range_deg=32.0, pitch_amp_deg=8.0,
                         roll_amp_deg=4.0, transl_amp_m=0.01), out, progress=False)
    return out


@pytest.fixture(scope="module")
def truth(build):
    return [np.asarray(Image.open(p)) for p in sorted((build / "masks").glob("*.png"))]


def _seq(tmp_path, build):
    seq = tmp_path / "seq"
    shutil.copytree(build / "images", seq / "images")
    return seq


def _written(seq):
    return [np.asarray(Image.open(p)) for p in sorted((seq / "masks").glob("*.png"))]


def _save_mask(path, mask):
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return path


def _gt_hands(build, seq):
    """hands.npz with the TRUE hand parameters (the estimate's inputs without noise) + the camera."""
    gt = np.load(build / "gt" / "hands.npz")
    np.savez(seq / "hands.npz", **{f"right/{k}": gt[f"right/{k}"] for k in ("global_orient", "hand_pose", "betas",
                                                                               "transl")},
             **{"right/valid": np.ones(T, bool)})
    shutil.copy(build / "sequence.json", seq / "sequence.json")


# ----------------------------------------------------------------------------------------------
# Pure maths


def test_rasterize_pixel_centres():
    # square [2, 6) x [3, 7) as two triangles: exactly the pixels whose centres (u + 0.5, v + 0.5) are inside
    uv = np.array([[2.0, 3.0], [6.0, 3.0], [6.0, 7.0], [2.0, 7.0]])
    sil = mt.rasterize_silhouette(uv, np.array([[0, 1, 2], [0, 2, 3]]), (10, 9))
    expected = np.zeros((9, 10), bool)
    expected[3:7, 2:6] = True
    assert (sil == expected).all()
    # shifted by 0.4 px the centres 2.5 .. 5.5 stay inside, 6.5 does not: the same pixels
    assert (mt.rasterize_silhouette(uv + 0.4, np.array([[0, 1, 2], [0, 2, 3]]), (10, 9)) == expected).all()
    # a vertex behind the camera drops its triangles; projection puts (0, 0, 1) at the principal point
    K = np.array([[100.0, 0, 5], [0, 100, 4], [0, 0, 1]])
    uv2, z = mt.project_points(K, np.array([[0.0, 0, 1], [0.01, 0.02, 2], [0, 0, -1]]))
    assert np.allclose(uv2[:2], [[5, 4], [5.5, 5]]) and np.isnan(uv2[2]).all() and z.tolist() == [1, 2, -1]
    assert not mt.rasterize_silhouette(np.array([[0, 0], [9, 0], [np.nan, np.nan]]), np.array([[0, 1, 2]]),
                                       (10, 9)).any()
    # zero-area triangles (collinear, or a repeated vertex) cover nothing
    flat = np.array([[1.0, 1.0], [7.0, 7.0], [4.0, 4.0], [8.0, 2.0]])
    assert not mt.rasterize_silhouette(flat, np.array([[0, 1, 2], [0, 3, 3]]), (10, 9)).any()


def test_morphology_and_bands():
    m = np.zeros((21, 21), bool)
    m[10, 10] = True
    assert mt.dilate(m, 3).sum() == 29  # lattice points within radius 3 (centre to centre)
    assert mt.erode(mt.dilate(m, 3), 3).sum() == 1
    half = np.zeros((6, 8), bool)
    half[:, :4] = True
    band = boundary_band(half.astype(np.uint8), 2)
    assert band.any(axis=0).tolist() == [False, False, True, True, True, True, False, False]
    for flat in (np.ones((6, 8), np.uint8), np.zeros((6, 8), np.uint8)):  # one label only: no boundary
        assert not boundary_band(flat, 2).any()
    assert math.isclose(mt.equivalent_diameter(np.ones((10, 10), bool)), 2 * math.sqrt(100 / math.pi))
    two = np.zeros((10, 10), bool)
    two[1:3, 1:3] = True
    two[6:9, 6:9] = True
    seed = np.zeros_like(two)
    seed[7, 7] = True
    kept = mt.keep_seeded_components(two, seed)
    assert kept.sum() == 9 and kept[7, 7] and not kept[1, 1]


def test_gmm_log_likelihood_matches_scipy():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(3, 3))
    cov = A @ A.T + np.eye(3) * 4
    model = np.zeros((1, 65))
    model[0, 0], model[0, 1] = 0.3, 0.7
    model[0, 5:11] = [10, 20, 30, 100, 90, 80]
    model[0, 20:29] = (cov - np.eye(3) * 1e-3).ravel()  # OpenCV adds 1e-3 to the diagonal
    model[0, 29:38] = (np.eye(3) * 25 - np.eye(3) * 1e-3).ravel()
    x = rng.uniform(0, 120, (50, 3))
    ref = np.log(0.3 * multivariate_normal([10, 20, 30], cov).pdf(x) + 0.7 * multivariate_normal([100, 90, 80],
                                                                                               np.eye(3) * 25).pdf(x))
    assert np.allclose(mt.gmm_log_likelihood(model, x), ref, atol=1e-6)


def test_flow_warp_follows_a_shift():
    rng = np.random.default_rng(1)
    tex = (rng.uniform(0, 255, (20, 25)) > 128).astype(np.uint8) * 255
    big = np.asarray(Image.fromarray(tex).resize((100, 80), Image.Resampling.BILINEAR))
    prev = np.zeros((80, 100), np.uint8)
    prev[:] = big
    cur = np.roll(np.roll(prev, 3, axis=1), 2, axis=0)  # content moved by (+3, +2) px
    mask = np.zeros((80, 100), bool)
    mask[25:55, 30:70] = True
    warped = mt.warp_mask(mask, mt.backward_flow(cur, prev))
    moved = np.roll(np.roll(mask, 3, axis=1), 2, axis=0)
    assert mt.iou(warped, moved) > 0.9 and mt.iou(mask, moved) < 0.8


def test_compose_labels_order():
    obj = np.zeros((12, 12), bool)
    obj[2:8, 2:8] = True
    right = np.zeros_like(obj)
    right[5:11, 5:11] = True
    left = np.zeros_like(obj)
    left[9:12, 0:7] = True
    low = np.zeros_like(obj)
    low[3, 3] = True
    lab = compose_labels(obj, low, {"right": right, "left": left}, boundary_band_px=0, hand_band_px=0)
    assert lab[6, 6] == 1  # object in front of the (amodal) hand
    assert lab[9, 9] == 2 and lab[11, 1] == 3 and lab[10, 5] == 255  # both hands -> ignore
    assert lab[3, 3] == 255 and lab[0, 0] == 0
    lost = compose_labels(obj, low, {"right": right}, 0, 0, object_known=False)
    assert lost[0, 0] == 255 and lost[9, 9] == 2 and not (lost == 1).any()


# ----------------------------------------------------------------------------------------------
# The step on synthetic data


def test_hand_silhouette_from_true_parameters(tmp_path, build, truth):
    seq = _seq(tmp_path, build)
    _gt_hands(build, seq)
    hands = load_hand_silhouettes(seq, MaskEstimateConfig(), T, (W, H))
    assert hands.K_source == "sequence.json" and list(hands.vertices) == ["right"]
    ious = []
    for t, lab in enumerate(truth):
        sil = hands.silhouette("right", t, (W, H))
        visible = lab != 1  # the raster is amodal: where the object hides the hand the truth says object
        ious.append(mt.iou(sil, lab == 2, visible))
    assert min(ious) > 0.9, ious


def test_first_mask_tracking_matches_truth(tmp_path, build, truth):
    seq = _seq(tmp_path, build)
    _gt_hands(build, seq)
    first = _save_mask(tmp_path / "first.png", truth[0] == 1)
    rec = run_mask_estimate(seq, MaskEstimateConfig(first_mask=first), progress=False)
    est = _written(seq)
    assert len(est) == T and all(e.shape == (H, W) for e in est)
    assert set(np.unique(np.concatenate([e.ravel() for e in est]))) <= {0, 1, 2, 255}
    iou_decided = [mt.iou(e == 1, t == 1, e != 255) for e, t in zip(est, truth)]  # over pixels it labelled
    iou_all = [mt.iou(e == 1, t == 1) for e, t in zip(est, truth)]  # ignore counted as 'not object'
    hand_iou = [mt.iou(e == 2, t == 2, e != 255) for e, t in zip(est, truth)]
    assert np.median(iou_decided) > 0.7 and np.median(iou_all) > 0.7, (iou_decided, iou_all)
    assert np.median(hand_iou) > 0.9, hand_iou
    ignored_obj = [((e == 255) & (t == 1)).sum() / (t == 1).sum() for e, t in zip(est, truth)]
    assert max(ignored_obj) < 0.5, ignored_obj  # ignore is a band, not a way out

    disk_rec = load_record(seq, "masks")
    assert disk_rec.estimated == ["masks"] and rec["estimated"] == ["masks"] and not rec["skipped"]
    assert disk_rec.info["seed"] == "first mask" and disk_rec.info["hands"]["sides"] == ["right"]
    assert disk_rec.info["frame_status"][0] == "first mask" and not disk_rec.info["lost_frames"]
    assert (seq / "qa" / "masks.png").is_file()
    again = run_mask_estimate(seq, MaskEstimateConfig(first_mask=first), progress=False)
    assert again["skipped"]  # resumable: unchanged inputs are not redone


def test_hand_seed_with_emulated_estimates(tmp_path, build, truth):
    # the synth's own noisy hands.npz (5 deg, 1 cm, shape noise): the object is found next to the hand and tracked
    seq = _seq(tmp_path, build)
    shutil.copy(build / "hands.npz", seq / "hands.npz")
    shutil.copy(build / "sequence.json", seq / "sequence.json")
    rec = run_mask_estimate(seq, progress=False)
    assert rec["info"]["seed"] == "hand seed" and rec["info"]["lost_frames"] == []
    est = _written(seq)
    ious = [mt.iou(e == 1, t == 1, e != 255) for e, t in zip(est, truth)]
    assert np.median(ious) > 0.7, ious


def test_cli_box_seed_without_hands(tmp_path, build, truth):
    seq = _seq(tmp_path, build)
    ys, xs = np.nonzero(truth[0] == 1)
    box = [xs.min() - 3, ys.min() - 3, xs.max() + 4, ys.max() + 4]
    assert masks_main([str(seq), "--estimate", "--box", *map(str, box), "--quiet"]) == 0
    rec = load_record(seq, "masks")
    assert rec.estimated == ["masks"] and rec.info["seed"] == "box" and rec.info["hands"] is None
    first = _written(seq)[0]
    # GrabCut in a box also holding the (unlabelled) hand: the object is found, not the whole box
    assert mt.iou(first == 1, truth[0] == 1, first != 255) > 0.5
    assert (first == 1).sum() < 0.8 * (box[2] - box[0]) * (box[3] - box[1])


def test_bad_inputs_give_one_message(tmp_path, build, truth):
    seq = _seq(tmp_path, build)
    with pytest.raises(SequenceError, match=r"hands\.npz.*not found.*--box.*--first-mask.*hold preprocess hands"):
        run_mask_estimate(seq, progress=False)
    assert not (seq / "masks").exists()
    first = _save_mask(tmp_path / "first.png", truth[0] == 1)
    run_mask_estimate(seq, MaskEstimateConfig(first_mask=first), progress=False)
    before = {p.name: p.read_bytes() for p in (seq / "masks").iterdir()}
    empty = _save_mask(tmp_path / "empty.png", np.zeros((H, W), bool))
    with pytest.raises(SequenceError, match=r"empty\.png.*--first-mask.*no object pixels"):
        run_mask_estimate(seq, MaskEstimateConfig(first_mask=empty), progress=False)
    odd = _save_mask(tmp_path / "odd.png", np.ones((50, 50), bool))
    with pytest.raises(SequenceError, match=r"odd\.png.*size 50x50.*160x120"):
        run_mask_estimate(seq, MaskEstimateConfig(first_mask=odd), progress=False)
    with pytest.raises(SequenceError, match=r"--box.*0 <= X0 < X1 <= 160"):
        run_mask_estimate(seq, MaskEstimateConfig(box=(10, 10, 200, 50)), progress=False)
    with pytest.raises(SequenceError, match=r"--first-mask.*file not found"):
        run_mask_estimate(seq, MaskEstimateConfig(first_mask=tmp_path / "nope.png"), progress=False)
    assert {p.name: p.read_bytes() for p in (seq / "masks").iterdir()} == before  # earlier outputs intact
    with pytest.raises(SystemExit):  # --box without --estimate is a usage error
        masks_main([str(seq), "--box", "1", "1", "5", "5"])
    with pytest.raises(SystemExit):  # --estimate excludes importing
        masks_main([str(seq), "--estimate", "--object", str(tmp_path)])


# ----------------------------------------------------------------------------------------------
# Real footage


@pytest.mark.skipif(not (APPLE / "apple.mp4").is_file(), reason="../shared real data not present")
def test_real_apple_first_mask_tracked(tmp_path):
    from preprocess.frames import main as frames_main

    seq = tmp_path / "apple"
    assert frames_main([str(APPLE / "apple.mp4"), "--out", str(seq), "--end", "10", "--max-side", "256",
                        "--quiet"]) == 0
    run_mask_estimate(seq, MaskEstimateConfig(first_mask=APPLE / "apple_mask.png"), progress=False)
    rec = load_record(seq, "masks")
    est = _written(seq)
    assert len(est) == 10 and rec.info["lost_frames"] == [] and rec.info["frame_status"][1:] == ["tracked"] * 9
    a0, a9 = (est[0] == 1).sum(), (est[-1] == 1).sum()
    assert 0.5 < a9 / a0 < 2.0
    # the camera moves slowly around a still apple: after 1 s the apple is still mostly where it was
    assert mt.iou(est[-1] == 1, est[0] == 1) > 0.6
