"""The `mano` backend on procedurally generated MANO pickles (never a real, licence-gated file):
chumpy-free loading, error messages, agreement with smplx, skinning transforms, left hand."""
import importlib.util
import pickle
from collections import Counter

import numpy as np
import pytest
import smplx
import torch

from hold.hands import load_hand_model
from hold.hands.mano import KEYPOINT_SOURCES, TIP_VERTEX_IDS, ManoHand, load_mano
from hold.hands.mano_loader import REQUIRED_SHAPES, ManoFileError, find_mano_file, load_mano_pickle
from hold.hands.testing import (PARENTS, TIP_VERTICES, WRIST_WORLD, fake_mano_arrays, write_fake_mano_dir,
                                write_fake_mano_pickle)

MIRROR = torch.tensor([-1.0, 1.0, 1.0])
AA_MIRROR = torch.tensor([1.0, -1.0, -1.0])  # M R(w) M = R((w_x, -w_y, -w_z)) for M = diag(-1, 1, 1)


@pytest.fixture(scope="module")
def mano_dir(tmp_path_factory):
    return write_fake_mano_dir(tmp_path_factory.mktemp("mano"))


@pytest.fixture(scope="module")
def right(mano_dir):
    return load_mano(mano_dir, "right")


@pytest.fixture(scope="module")
def left(mano_dir):
    return load_mano(mano_dir, "left")


def _params(B, seed=0, pose_scale=0.4):
    g = torch.Generator().manual_seed(seed)
    return dict(global_orient=torch.randn(B, 3, generator=g), hand_pose=pose_scale * torch.randn(B, 45, generator=g),
                betas=torch.randn(B, 10, generator=g), transl=0.3 * torch.randn(B, 3, generator=g))


def _smplx_mano(arrays, is_rhand, flat_hand_mean):
    return smplx.MANO("unused", data_struct=smplx.utils.Struct(**arrays), is_rhand=is_rhand, use_pca=False,
                      flat_hand_mean=flat_hand_mean)


def _signed_volume(v, f):
    """Volume enclosed by the mesh with its wrist opening capped (positive = faces point outward)."""
    edges = Counter(tuple(sorted(e)) for e in np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]).tolist())
    c = v[np.unique([e for e, n in edges.items() if n == 1])].mean(0)
    a, b, d = v[f[:, 0]] - c, v[f[:, 1]] - c, v[f[:, 2]] - c
    return np.einsum("ij,ij->i", a, np.cross(b, d)).sum() / 6.0


# ----------------------------------------------------------------------------- loader


def test_chumpy_pickle_needs_the_stub_unpickler(tmp_path):
    if importlib.util.find_spec("chumpy") is not None:
        pytest.skip("chumpy is importable here, so a plain pickle.load would not fail")
    path = write_fake_mano_pickle(tmp_path / "MANO_RIGHT.pkl")
    with open(path, "rb") as fh, pytest.raises(ModuleNotFoundError, match="chumpy"):
        pickle.load(fh, encoding="latin1")
    d = load_mano_pickle(path)
    ref = fake_mano_arrays("right")
    for key in ("v_template", "shapedirs", "posedirs", "weights", "J", "hands_components", "hands_mean"):
        assert isinstance(d[key], np.ndarray) and d[key].dtype == np.float64
        np.testing.assert_array_equal(d[key], ref[key])
    np.testing.assert_array_equal(d["J_regressor"], ref["J_regressor"].toarray())  # sparse -> dense
    assert d["kintree_table"].dtype == np.int64 and d["kintree_table"][0].tolist() == list(PARENTS)
    assert ref["kintree_table"][0, 0] == 4294967295  # what the file stores for the root
    assert d["f"].dtype == np.int64 and (d["f"] == ref["f"]).all()
    assert d["bs_style"] == "lbs" and d["hands_coeffs"].shape == (1554, 45)
    # the same content without chumpy objects loads identically
    plain = load_mano_pickle(write_fake_mano_pickle(tmp_path / "plain.pkl", with_chumpy=False))
    np.testing.assert_array_equal(plain["shapedirs"], d["shapedirs"])


@pytest.mark.parametrize("key", sorted(REQUIRED_SHAPES))
def test_missing_key_is_named(tmp_path, key):
    path = write_fake_mano_pickle(tmp_path / "MANO_RIGHT.pkl", drop_keys=(key,))
    with pytest.raises(ManoFileError) as err:
        load_mano_pickle(path)
    msg = str(err.value)
    assert f"'{key}'" in msg and str(path) in msg and str(REQUIRED_SHAPES[key]) in msg
    assert "--mano-dir" in msg and "MANO_RIGHT.pkl/MANO_LEFT.pkl" in msg
    assert err.value.key == key


@pytest.mark.parametrize("key,bad,expected,found", [
    ("shapedirs", np.zeros((778, 3, 300)), "(778, 3, 10)", "(778, 3, 300)"),  # wrapped in chumpy.Ch
    ("f", np.zeros((1538, 4), dtype=np.uint32), "(1538, 3)", "(1538, 4)"),
    ("hands_mean", np.zeros(48), "(45,)", "(48,)"),
    ("f", np.full((1538, 3), 900, dtype=np.uint32), "[0, 778)", "[900, 900]"),
])
def test_malformed_array_is_named(tmp_path, key, bad, expected, found):
    path = write_fake_mano_pickle(tmp_path / "MANO_RIGHT.pkl", override={key: bad})
    with pytest.raises(ManoFileError) as err:
        load_mano_pickle(path)
    msg = str(err.value)
    assert f"'{key}'" in msg and expected in msg and found in msg and str(path) in msg and "--mano-dir" in msg


def test_missing_or_unreadable_file(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_mano_pickle(tmp_path / "MANO_RIGHT.pkl")
    assert str(tmp_path / "MANO_RIGHT.pkl") in str(err.value) and "--mano-dir" in str(err.value)
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(ManoFileError, match="junk.pkl.*does not unpickle"):
        load_mano_pickle(tmp_path / "junk.pkl")
    with pytest.raises(FileNotFoundError, match="MANO_LEFT.pkl.*--mano-dir"):
        find_mano_file(tmp_path, "left")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        find_mano_file(tmp_path / "nowhere", "right")
    with pytest.raises(ValueError, match="--mano-dir"):
        load_hand_model("mano", "right", mano_dir=None)


def test_find_mano_file_layouts(tmp_path):
    for sub in (".", "mano", "models", "mano_v1_2/models"):
        root = tmp_path / sub.replace("/", "_").replace(".", "flat")
        write_fake_mano_pickle((root / sub / "MANO_LEFT.pkl"), side="left", with_chumpy=False)
        assert find_mano_file(root, "left") == root / sub / "MANO_LEFT.pkl"
    right_file = write_fake_mano_pickle(tmp_path / "f" / "MANO_RIGHT.pkl", with_chumpy=False)
    assert find_mano_file(right_file, "right") == right_file
    with pytest.raises(ValueError, match="MANO_RIGHT.pkl.*left hand"):
        find_mano_file(right_file, "left")


# ----------------------------------------------------------------------------- the fake model


def test_fake_model_is_a_plausible_hand():
    d = fake_mano_arrays("right")
    v, f = d["v_template"], d["f"].astype(np.int64)
    assert v.shape == (778, 3) and f.shape == (1538, 3) and f.min() >= 0 and f.max() < 778
    assert len(np.unique(f)) == 778  # every vertex is used
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    assert area.min() > 1e-6  # no degenerate triangle (1 mm^2)
    # a manifold, consistently oriented surface whose only opening is a 16-edge loop at the wrist
    directed = Counter(map(tuple, np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]).tolist()))
    assert max(directed.values()) == 1
    undirected = Counter(tuple(sorted(e)) for e in directed)
    assert set(undirected.values()) == {1, 2} and sum(n == 1 for n in undirected.values()) == 16
    boundary = np.unique([e for e, n in undirected.items() if n == 1])
    J = d["J_regressor"].toarray() @ v
    np.testing.assert_allclose(v[boundary].mean(0), J[0], atol=1e-12)  # wrist joint = opening centre
    np.testing.assert_allclose(J[0], WRIST_WORLD, atol=1e-12)
    assert 2e-4 < _signed_volume(v, f) < 6e-4  # outward faces; a hand is ~0.3-0.4 litre
    W, Jr = d["weights"], d["J_regressor"].toarray()
    np.testing.assert_allclose(W.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(Jr.sum(1), 1.0, atol=1e-12)
    assert W.min() >= 0 and Jr.min() >= 0
    # smplx's tip vertices are the extremes of their fingers, 15-22 cm from the wrist for the middle
    for name, tip in TIP_VERTICES.items():
        distal = {"thumb": 15, "index": 3, "middle": 6, "ring": 12, "little": 9}[name]
        owned = np.flatnonzero(W[:, distal] > 0.5)
        axis = (v[tip] - J[distal]) / np.linalg.norm(v[tip] - J[distal])
        assert tip in owned and np.argmax((v[owned] - J[distal]) @ axis) == np.flatnonzero(owned == tip)[0]
    assert 0.15 < np.linalg.norm(v[TIP_VERTICES["middle"]] - J[0]) < 0.22


# ----------------------------------------------------------------------------- ManoHand


@pytest.mark.parametrize("flat_hand_mean", [True, False])
def test_matches_smplx(mano_dir, flat_hand_mean):
    arrays = load_mano_pickle(mano_dir / "MANO_RIGHT.pkl")
    hand = ManoHand(arrays, "right", config=None) if flat_hand_mean else load_mano(mano_dir, flat_hand_mean=False)
    ref = _smplx_mano(arrays, True, flat_hand_mean)
    p = _params(4)
    out = hand(**p)
    expect = ref(betas=p["betas"], global_orient=p["global_orient"], hand_pose=p["hand_pose"], transl=p["transl"])
    assert out.vertices.shape == (4, 778, 3) and out.joints.shape == (4, 16, 3)
    torch.testing.assert_close(out.vertices, expect.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.joints, expect.joints, atol=1e-5, rtol=0)
    assert (out.vertices - out.vertices.mean(1, keepdim=True)).abs().max() > 0.02  # not trivially small


def test_outputs_and_keypoints(right):
    p = _params(3, seed=1)
    out = right(**p)
    assert out.keypoints.shape == (3, 21, 3) and out.bone_transforms.shape == (3, 16, 4, 4)
    assert out.faces.dtype == torch.int64 and out.faces.shape == (1538, 3)
    assert out.skinning_weights.shape == (778, 16) and out.rest_vertices.shape == (3, 778, 3)
    torch.testing.assert_close(out.keypoints[:, 0], out.joints[:, 0])
    # names -> smplx joints / tip vertices
    joint_of = {1: 13, 2: 14, 3: 15, 5: 1, 6: 2, 7: 3, 9: 4, 10: 5, 11: 6, 13: 10, 14: 11, 15: 12, 17: 7, 18: 8, 19: 9}
    for kp, j in joint_of.items():
        torch.testing.assert_close(out.keypoints[:, kp], out.joints[:, j])
    tips = [TIP_VERTICES[n] for n in ("thumb", "index", "middle", "ring", "little")]
    assert list(TIP_VERTEX_IDS) == tips and len(KEYPOINT_SOURCES) == 21
    torch.testing.assert_close(out.keypoints[:, [4, 8, 12, 16, 20]], out.vertices[:, tips])
    # betas as (10,), (1, 10) and (B, 10) agree; None = mean shape
    b = p["betas"][0]
    one = right(p["global_orient"], p["hand_pose"], b, p["transl"]).vertices
    batched = right(p["global_orient"], p["hand_pose"], b[None].expand(3, 10), p["transl"]).vertices
    torch.testing.assert_close(one, batched)
    torch.testing.assert_close(one, right(p["global_orient"], p["hand_pose"], b[None], p["transl"]).vertices)
    torch.testing.assert_close(right(p["global_orient"], p["hand_pose"]).vertices,
                               right(p["global_orient"], p["hand_pose"], torch.zeros(10)).vertices)
    with pytest.raises(ValueError, match="betas"):
        right(p["global_orient"], p["hand_pose"], torch.zeros(3, 16))
    # MANO data never lands in a checkpoint (licence): all buffers are non-persistent
    assert len(right.state_dict()) == 0


def test_front_door_builds_mano(mano_dir):
    hand = load_hand_model("mano", "left", mano_dir=mano_dir)
    assert isinstance(hand, ManoHand) and hand.side == "left" and hand.name == "mano"


def test_global_orient_pivots_about_the_wrist(right):
    p = right.zero_params(1)
    rest = right(**p)
    p["global_orient"], p["transl"] = torch.tensor([[0.3, -1.2, 0.7]]), torch.tensor([[0.1, -0.2, 0.5]])
    out = right(**p)
    R = smplx.lbs.batch_rodrigues(p["global_orient"])[0]
    wrist = rest.joints[0, 0]
    torch.testing.assert_close(out.vertices[0], (rest.vertices[0] - wrist) @ R.T + wrist + p["transl"][0],
                               atol=1e-6, rtol=0)
    assert (wrist - torch.as_tensor(WRIST_WORLD, dtype=torch.float32)).norm() < 1e-6


def test_bone_transforms_skin_the_rest_vertices(mano_dir, right):
    """LBS of rest_vertices with bone_transforms reproduces the vertices exactly when the model
    has no pose correctives, and up to the (small) correctives otherwise."""
    arrays = load_mano_pickle(mano_dir / "MANO_RIGHT.pkl")
    arrays["posedirs"] = np.zeros_like(arrays["posedirs"])
    no_correctives = ManoHand(arrays, "right")
    p = _params(4, seed=2)
    for hand, tol in ((no_correctives, 1e-5), (right, None)):
        out = hand(**p)
        T = torch.einsum("vj,bjxy->bvxy", out.skinning_weights, out.bone_transforms)
        skinned = (T[..., :3, :3] @ out.rest_vertices[..., None])[..., 0] + T[..., :3, 3]
        err = (skinned - out.vertices).norm(dim=-1).max()
        if tol is not None:
            assert err < tol
        else:
            assert 1e-4 < err < 1e-2  # the correctives move vertices by under a centimetre
        torch.testing.assert_close(out.bone_transforms[..., 3, :], torch.tensor([0.0, 0, 0, 1]).expand(4, 16, 4))
        # the transforms also carry the rest joints to the posed joints
        rest_j = torch.einsum("jv,bvc->bjc", hand.J_regressor, out.rest_vertices)
        moved = (out.bone_transforms[..., :3, :3] @ rest_j[..., None])[..., 0] + out.bone_transforms[..., :3, 3]
        torch.testing.assert_close(moved, out.joints, atol=1e-6, rtol=0)


def test_gradients_reach_every_parameter(right):
    p = {k: v.clone().requires_grad_(True) for k, v in _params(2, seed=4).items()}
    out = right(**p)
    (out.vertices.square().sum() + out.keypoints.sum()).backward()
    for name, value in p.items():
        assert value.grad is not None and torch.isfinite(value.grad).all(), name
        assert (value.grad.abs().sum(-1) > 0).all(), name


def test_left_hand_loads_and_mirrors_the_right(mano_dir, right, left):
    assert left.side == "left" and left.num_joints == 16
    raw_left = load_mano_pickle(mano_dir / "MANO_LEFT.pkl")
    # the fake left file has the official release's unmirrored shapedirs; auto mode corrected them
    np.testing.assert_allclose(left.shapedirs[:, 0].numpy(), -raw_left["shapedirs"][:, 0], rtol=1e-6)
    p = _params(3, seed=5)
    pl = dict(global_orient=p["global_orient"] * AA_MIRROR, betas=p["betas"], transl=p["transl"] * MIRROR,
              hand_pose=(p["hand_pose"].reshape(3, 15, 3) * AA_MIRROR).reshape(3, 45))
    out_r, out_l = right(**p), left(**pl)
    torch.testing.assert_close(out_l.vertices, out_r.vertices * MIRROR, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_l.keypoints, out_r.keypoints * MIRROR, atol=1e-5, rtol=0)
    assert _signed_volume(out_l.rest_vertices[0].numpy(), out_l.faces.numpy()) > 0  # still outward
    # agrees with smplx's left MANO on the corrected arrays
    fixed = dict(raw_left, shapedirs=left.shapedirs.double().numpy())
    ref = _smplx_mano(fixed, False, True)(betas=pl["betas"], global_orient=pl["global_orient"],
                                         hand_pose=pl["hand_pose"], transl=pl["transl"])
    torch.testing.assert_close(out_l.vertices, ref.vertices, atol=1e-5, rtol=0)
    # without the correction the same betas give a differently shaped (non-mirrored) hand
    uncorrected = load_mano(mano_dir, "left", fix_left_shapedirs="never")(**pl)
    assert (uncorrected.vertices - out_r.vertices * MIRROR).norm(dim=-1).max() > 1e-3


def test_left_correction_modes(tmp_path):
    write_fake_mano_pickle(tmp_path / "MANO_LEFT.pkl", side="left", with_chumpy=False)
    raw_x = load_mano_pickle(tmp_path / "MANO_LEFT.pkl")["shapedirs"][:, 0]
    with pytest.warns(UserWarning, match="MANO_RIGHT.pkl"):
        alone = load_mano(tmp_path, "left")  # cannot tell without the right file: used as is
    np.testing.assert_allclose(alone.shapedirs[:, 0].numpy(), raw_x, rtol=1e-6)
    np.testing.assert_allclose(load_mano(tmp_path, "left", fix_left_shapedirs="always").shapedirs[:, 0].numpy(),
                               -raw_x, rtol=1e-6)
    # an already corrected left file next to the right one is left alone
    write_fake_mano_pickle(tmp_path / "MANO_RIGHT.pkl", with_chumpy=False)
    write_fake_mano_pickle(tmp_path / "MANO_LEFT.pkl", side="left", with_chumpy=False, left_shapedirs_bug=False)
    good = load_mano(tmp_path, "left")
    np.testing.assert_allclose(good.shapedirs[:, 0].numpy(), -raw_x, rtol=1e-6)
    with pytest.raises(ValueError, match="fix_left_shapedirs"):
        load_mano(tmp_path, "left", fix_left_shapedirs="sometimes")


def test_flexion_curls_fingertips_toward_the_palm(right, left):
    """The shared anatomy helpers (palm normal, flexion axes) work on MANO's keypoints and joint order."""
    from hold.hands.kinematics import flexion_axes, palm_normal, rest_keypoints

    for model in (right, left):
        kp = rest_keypoints(model)
        pose = (flexion_axes(model, kp) * torch.deg2rad(torch.tensor(30.0))).reshape(1, 45)
        out = model(torch.zeros(1, 3), pose)
        toward = (out.keypoints[0, [4, 8, 12, 16, 20]] - kp[[4, 8, 12, 16, 20]]) @ palm_normal(kp, model.side)
        assert (toward > 0.01).all(), toward
