"""The sequence contract: save/load round trips, atomic writes, precise errors, ground truth layout."""
import hold  # noqa: F401

import json
import os

import numpy as np
import pytest
from PIL import Image

import hold.data.io as hio
from hold.data import (
    HandObjectTrajectory, Intrinsics, Problem, SequenceError, atomic_write_json, atomic_write_npz,
    load_sequence, load_trajectory, read_depth, save_sequence, save_trajectory, write_depth, write_image,
    write_mask,
)

T = 4


def _tmp_files(folder):
    return [p.name for p in folder.rglob("*.tmp")]


# ----------------------------------------------------------------------------------------------
# Round trips


def test_round_trip_every_field(tmp_path, seq):
    saved = save_sequence(seq, tmp_path / "b")
    assert saved.root == tmp_path / "b" and seq.root is None
    got = load_sequence(tmp_path / "b")
    assert got.root == tmp_path / "b"
    assert got.num_frames == T
    np.testing.assert_array_equal(got.intrinsics.K, seq.intrinsics.K)
    assert got.intrinsics.K.dtype == np.float64
    assert (got.intrinsics.width, got.intrinsics.height) == (16, 12)
    assert list(got.hands) == ["right", "left"]  # order of sequence.json "hands" is kept
    for side, want in seq.hands.items():
        have = got.hands[side]
        assert have.side == side
        for name in ("global_orient", "hand_pose", "betas", "transl", "keypoints_2d"):
            a = getattr(have, name)
            assert a.dtype == np.float32, name
            np.testing.assert_array_equal(a, getattr(want, name))
        assert have.valid.dtype == np.bool_
        np.testing.assert_array_equal(have.valid, want.valid)
    np.testing.assert_array_equal(got.object.T_cam_from_obj, seq.object.T_cam_from_obj)
    np.testing.assert_array_equal(got.object.points, seq.object.points)
    np.testing.assert_array_equal(got.object.valid, seq.object.valid)
    assert got.object.scale == pytest.approx(0.0734, rel=1e-7)  # stored as float32
    assert got.hand_model == "anny" and got.fps == 29.97
    assert got.sources == seq.sources and got.extra == seq.extra and got.frame_names == seq.frame_names
    meta = json.loads((tmp_path / "b" / "sequence.json").read_text())
    assert meta["schema_version"] == 1 and meta["has_object"] is True and meta["image_size"] == [16, 12]


def test_frames_round_trip_and_load_is_lazy(tmp_path, seq, factories, monkeypatch):
    images, masks = factories.frames()
    save_sequence(seq, tmp_path / "b", images=images, masks=masks)
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    got = load_sequence(tmp_path / "b")
    assert opened == []  # no frame is touched at load time
    for i in range(T):
        img, mask = got.load_image(i), got.load_mask(i)
        assert img.shape == (12, 16, 3) and img.dtype == np.uint8
        assert mask.shape == (12, 16) and mask.dtype == np.uint8
        np.testing.assert_array_equal(img, images[i])
        np.testing.assert_array_equal(mask, masks[i])
    assert len(opened) == 2 * T
    assert got.image_path(2) == tmp_path / "b" / "images" / "000002.png"
    assert got.has_masks
    with pytest.raises(IndexError):
        got.load_image(T)


def test_load_image_checks_mode_and_size(tmp_path, seq, factories):
    images, _ = factories.frames()
    got = save_sequence(seq, tmp_path / "b", images=images)
    Image.fromarray(np.zeros((12, 16, 4), np.uint8)).save(got.image_path(1))
    with pytest.raises(SequenceError, match=r"images/000001\.png: has mode 'RGBA', expected RGB"):
        got.load_image(1)
    Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(got.image_path(2))
    with pytest.raises(SequenceError, match=r"000002\.png: has size 7x5, expected 16x12"):
        got.load_image(2)
    with pytest.raises(SequenceError, match=r"masks/000000\.png: file not found"):
        got.load_mask(0)


def test_no_hands_no_object_round_trip_removes_stale_object(tmp_path, seq, factories):
    save_sequence(seq, tmp_path / "b")
    assert (tmp_path / "b" / "object.npz").exists()
    bare = factories.sequence(sides=(), with_object=False)
    save_sequence(bare, tmp_path / "b")
    assert not (tmp_path / "b" / "object.npz").exists()
    got = load_sequence(tmp_path / "b")
    assert got.hands == {} and got.object is None
    with np.load(tmp_path / "b" / "hands.npz") as z:
        assert z.files == []  # the stale hands are gone too


def test_rewrite_with_fewer_frames_removes_stale_frames(tmp_path, seq, factories):
    images, masks = factories.frames()
    save_sequence(seq, tmp_path / "b", images=images, masks=masks)
    (tmp_path / "b" / "images" / "000007.png").write_bytes((tmp_path / "b" / "images" / "000000.png").read_bytes())
    save_sequence(seq, tmp_path / "b", images=images)
    assert sorted(p.name for p in (tmp_path / "b" / "images").iterdir()) == [f"{i:06d}.png" for i in range(T)]


def test_similarity_and_intrinsics_helpers(seq):
    o = seq.object
    S = o.similarity_cam_from_obj()
    x_obj = o.points[:5].astype(np.float64)
    want = x_obj * o.scale @ o.T_cam_from_obj[1, :3, :3].T.astype(np.float64) + o.T_cam_from_obj[1, :3, 3]
    np.testing.assert_allclose(x_obj @ S[1, :3, :3].T + S[1, :3, 3], want, atol=1e-7)
    k = Intrinsics(K=np.array([[500.0, 0, 320.5], [0, 510.0, 240.5], [0, 0, 1]]), width=640, height=480)
    assert (k.fx, k.fy, k.cx, k.cy, k.image_size) == (500.0, 510.0, 320.5, 240.5, (640, 480))


# ----------------------------------------------------------------------------------------------
# Atomicity


def test_failed_replace_keeps_previous_sequence_json(tmp_path, seq, monkeypatch):
    root = tmp_path / "b"
    save_sequence(seq, root)
    before = (root / "sequence.json").read_bytes()
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith("sequence.json"):
            raise OSError("disk full (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    seq.fps = 12.0
    with pytest.raises(OSError, match="simulated"):
        save_sequence(seq, root)
    monkeypatch.undo()
    assert (root / "sequence.json").read_bytes() == before
    assert _tmp_files(root) == []
    assert load_sequence(root).fps == 29.97


def test_writer_crash_midway_leaves_npz_intact(tmp_path, seq, monkeypatch):
    root = tmp_path / "b"
    save_sequence(seq, root)
    before = {n: (root / n).read_bytes() for n in ("hands.npz", "object.npz", "sequence.json")}

    def savez(f, **arrays):  # writes half a file, then dies
        f.write(b"PK\x03\x04 partial")
        raise RuntimeError("killed mid-write (simulated)")

    monkeypatch.setattr(hio.np, "savez", savez)
    old_transl = seq.hands["right"].transl.copy()
    seq.hands["right"].transl = old_transl + 1.0
    with pytest.raises(RuntimeError, match="simulated"):
        save_sequence(seq, root)
    monkeypatch.undo()
    assert {n: (root / n).read_bytes() for n in before} == before
    assert _tmp_files(root) == []
    np.testing.assert_array_equal(load_sequence(root).hands["right"].transl, old_transl)


def test_bad_sequence_is_rejected_before_anything_is_written(tmp_path, seq):
    root = tmp_path / "b"
    save_sequence(seq, root)
    before = {p.name: p.read_bytes() for p in root.iterdir()}
    seq.hands["right"].transl = seq.hands["right"].transl[:3]
    with pytest.raises(SequenceError) as e:
        save_sequence(seq, root)
    assert "hands.npz: field 'right/transl' has shape (3, 3), expected (4, 3)" in str(e.value)
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before


def test_short_image_iterable_never_commits(tmp_path, seq, factories):
    images, _ = factories.frames()
    with pytest.raises(SequenceError, match=r"images: has 3 frames, expected 4 \(T=4"):
        save_sequence(seq, tmp_path / "b", images=iter(images[:3]))
    assert not (tmp_path / "b" / "sequence.json").exists()
    with pytest.raises(SequenceError, match=r"000001\.png: has an array of shape \(12, 15, 3\)"):
        save_sequence(seq, tmp_path / "c", images=[images[0], images[1][:, :15]])


def test_non_json_extra_is_rejected(tmp_path, seq):
    seq.extra = {"bad": object()}
    with pytest.raises(SequenceError, match=r"sequence\.json: field 'extra' is not JSON-serializable"):
        save_sequence(seq, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_atomic_helpers(tmp_path):
    atomic_write_json(tmp_path / "x" / "a.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "x" / "a.json").read_text()) == {"a": [1, 2]}
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "x" / "a.json", {"a": float("nan")}, allow_nan=False)
    assert json.loads((tmp_path / "x" / "a.json").read_text()) == {"a": [1, 2]}
    atomic_write_npz(tmp_path / "x" / "a.npz", {"s/k": np.arange(3)})
    with np.load(tmp_path / "x" / "a.npz") as z:
        np.testing.assert_array_equal(z["s/k"], [0, 1, 2])
    assert _tmp_files(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# Precise load errors


def _set_shape(a):
    a["right/global_orient"] = a["right/global_orient"][:3]


def _nan(a):
    a["left/transl"][2, 1] = np.nan


def _int_valid(a):
    a["valid"] = a["valid"].astype(np.int64)


LOAD_ERRORS = [
    ("hands.npz", _set_shape,
     "hands.npz: field 'right/global_orient' has shape (3, 3), expected (4, 3) (T=4 from sequence.json num_frames)."
     " Fix: re-run `hold preprocess hands`"),
    ("hands.npz", _nan, "hands.npz: field 'left/transl' contains NaN/inf at frame 2 (1 of 4)"),
    ("hands.npz", lambda a: a.pop("left/betas"), "hands.npz: field 'left/betas' is missing"),
    ("hands.npz", lambda a: [a.pop(k) for k in list(a) if k.startswith("left/")],
     "hands.npz: field 'left' is missing: sequence.json lists hand 'left'"),
    ("object.npz", _int_valid, "object.npz: field 'valid' has dtype int64, expected bool"),
    ("object.npz", lambda a: a.__setitem__("scale", np.float32(-1)), "object.npz: field 'scale' is -1.0"),
    ("sequence.json", lambda m: m.pop("num_frames"), "sequence.json: field 'num_frames' is missing"),
    ("sequence.json", lambda m: m.__setitem__("hands", ["right", "middle"]), "sequence.json: field 'hands' is"),
    ("sequence.json", lambda m: m.__setitem__("schema_version", 2),
     "sequence.json: field 'schema_version' is 2: written by a newer hold (schema 2 > 1). Fix: upgrade hold"),
    ("sequence.json", lambda m: m.__setitem__("schema_version", 0),
     "sequence.json: field 'schema_version' is 0: this build uses the old schema version 0"),
]


@pytest.mark.parametrize("name,mutate,expected", LOAD_ERRORS)
def test_load_error_names_file_and_field(tmp_path, seq, edit_npz, edit_json, name, mutate, expected):
    root = tmp_path / "b"
    save_sequence(seq, root)
    (edit_json if name.endswith(".json") else edit_npz)(root / name, mutate)
    with pytest.raises(SequenceError) as e:
        load_sequence(root)
    assert str(e.value).startswith(str(root / name)), str(e.value)
    assert str(root / expected) in str(e.value) or expected in str(e.value), str(e.value)
    assert isinstance(e.value, ValueError) and e.value.path == root / name


def test_load_error_details(tmp_path, seq, edit_json):
    root = tmp_path / "b"
    with pytest.raises(SequenceError, match="folder not found"):
        load_sequence(root)
    save_sequence(seq, root)
    (root / "object.npz").unlink()
    with pytest.raises(SequenceError, match=r"object\.npz: file not found \(sequence\.json has_object is true\)"):
        load_sequence(root)
    (root / "sequence.json").write_text('{"schema_version": 1,\n "num_frames": 4,,}')
    with pytest.raises(SequenceError, match=r"sequence\.json: is not valid JSON: .* at line 2 column"):
        load_sequence(root)
    (root / "sequence.json").unlink()
    with pytest.raises(SequenceError, match=r"sequence\.json: file not found"):
        load_sequence(root)
    with pytest.raises(SequenceError, match=r"did you mean .*/b/build"):
        (root / "build").mkdir()
        save_sequence(seq, root / "build")
        load_sequence(root)
    edit_json(root / "build" / "sequence.json", lambda m: m.__setitem__("schema_version", 0))
    with pytest.raises(SequenceError, match="it must be rebuilt"):
        load_sequence(root / "build")


def test_check_false_skips_value_checks_only(tmp_path, seq, edit_npz):
    root = tmp_path / "b"
    save_sequence(seq, root)
    edit_npz(root / "hands.npz", _nan)
    with pytest.raises(SequenceError):
        load_sequence(root)
    assert np.isnan(load_sequence(root, check=False).hands["left"].transl[2, 1])
    edit_npz(root / "hands.npz", _set_shape)
    with pytest.raises(SequenceError, match="has shape"):
        load_sequence(root, check=False)


def test_non_rigid_and_outside_sphere_rejected_on_load(tmp_path, seq, edit_npz):
    root = tmp_path / "b"
    save_sequence(seq, root)
    edit_npz(root / "object.npz", lambda a: a["T_cam_from_obj"].__setitem__((1, 0, 0), 2.0))
    with pytest.raises(SequenceError, match=r"field 'T_cam_from_obj' is not rigid at frame 1 \(1 of 4\)"):
        load_sequence(root)
    save_sequence(seq, root)
    edit_npz(root / "object.npz", lambda a: a["points"].__setitem__((3, 0), 1.5))
    with pytest.raises(SequenceError, match=r"field 'points' has 1 of 50 points outside the unit sphere"):
        load_sequence(root)


def test_float64_arrays_warn_and_load_as_float32(tmp_path, seq, edit_npz):
    root = tmp_path / "b"
    save_sequence(seq, root)
    edit_npz(root / "hands.npz", lambda a: a.__setitem__("right/transl", a["right/transl"].astype(np.float64)))
    got = load_sequence(root)
    assert got.hands["right"].transl.dtype == np.float32
    np.testing.assert_array_equal(got.hands["right"].transl, seq.hands["right"].transl)


def test_error_message_format_and_problem():
    e = SequenceError("/data/clip/build/hands.npz", "right/global_orient", found="shape (29, 3)",
                      expected="(30, 3) (T=30 from sequence.json num_frames)",
                      fix="re-run `hold preprocess hands`")
    assert str(e) == ("/data/clip/build/hands.npz: field 'right/global_orient' has shape (29, 3), expected (30, 3) "
                      "(T=30 from sequence.json num_frames). Fix: re-run `hold preprocess hands`")
    p = e.problem
    assert isinstance(p, Problem) and p.severity == "error" and p.field == "right/global_orient"
    assert str(p) == str(e) == str(p.to_error())
    assert (e.expected, e.found) == ("(30, 3) (T=30 from sequence.json num_frames)", "shape (29, 3)")


# ----------------------------------------------------------------------------------------------
# Frame writers


def test_depth_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    d = rng.uniform(0.2, 6.5, size=(12, 16))
    d[0, 0], d[0, 1], d[0, 2], d[0, 3] = 0.0, np.nan, np.inf, 1e-6
    write_depth(tmp_path / "d.png", d)
    got = read_depth(tmp_path / "d.png")
    assert got.dtype == np.float32 and got.shape == (12, 16)
    assert got[0, 0] == 0 and got[0, 1] == 0 and got[0, 2] == 0
    assert got[0, 3] == pytest.approx(1e-4)  # a surface never rounds to "no surface"
    np.testing.assert_allclose(got.ravel()[4:], d.ravel()[4:], atol=0.5e-4 + 1e-6)
    raw = np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * 300
    write_depth(tmp_path / "r.png", raw)
    with Image.open(tmp_path / "r.png") as im:
        assert im.mode == "I;16"
        np.testing.assert_array_equal(np.array(im), raw)
    with pytest.raises(SequenceError, match=r"d\.png: has depth up to 7 m, expected at most 6.5535 m"):
        write_depth(tmp_path / "d.png", np.full((2, 2), 7.0))
    np.testing.assert_allclose(read_depth(tmp_path / "d.png")[5], d[5], atol=0.5e-4 + 1e-6)  # untouched


def test_image_and_mask_writers_reject_bad_arrays(tmp_path):
    with pytest.raises(SequenceError, match=r"a\.png: has an array of shape \(4, 4, 3\) dtype float64"):
        write_image(tmp_path / "a.png", np.zeros((4, 4, 3)))
    with pytest.raises(SequenceError, match=r"m\.png: has label values \[7\], expected values in \[0, 1, 2, 3, 255\]"):
        write_mask(tmp_path / "m.png", np.array([[0, 7], [255, 3]], np.uint8))
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------------
# Ground truth / prediction layout


def _assert_traj_equal(a: HandObjectTrajectory, b: HandObjectTrajectory):
    assert a.num_frames == b.num_frames and a.hand_model == b.hand_model
    assert list(a.hands) == list(b.hands)
    for s in a.hands:
        ha, hb = a.hands[s], b.hands[s]
        assert ha.side == hb.side == s
        np.testing.assert_array_equal(ha.keypoints, hb.keypoints)
        np.testing.assert_array_equal(ha.vertices, hb.vertices)
        np.testing.assert_array_equal(ha.faces, hb.faces)
        assert sorted(ha.params) == sorted(hb.params)
        for k in ha.params:
            np.testing.assert_array_equal(ha.params[k], hb.params[k])
    assert (a.object is None) == (b.object is None)
    if a.object is not None:
        np.testing.assert_array_equal(a.object.vertices, b.object.vertices)
        np.testing.assert_array_equal(a.object.faces, b.object.faces)
        np.testing.assert_array_equal(a.object.T_cam_from_obj, b.object.T_cam_from_obj)
        np.testing.assert_array_equal(a.object.K, b.object.K)


def test_trajectory_round_trip(tmp_path, factories):
    traj = factories.trajectory()
    save_trajectory(traj, tmp_path / "pred")
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["hands.npz", "object.npz", "object_mesh.ply"]
    got = load_trajectory(tmp_path / "pred")
    _assert_traj_equal(got, traj)
    assert got.hands["right"].faces.dtype == np.int64 and got.object.vertices.dtype == np.float32
    # Posing the canonical mesh: a known vertex lands where T_cam_from_obj sends it.
    Tt = traj.object.T_cam_from_obj[2].astype(np.float64)
    np.testing.assert_allclose(got.object.vertices_cam(2)[4], Tt[:3, :3] @ [0, 0, 0.04] + Tt[:3, 3], atol=1e-6)
    # Re-saving without the object removes the object files; hands alone load fine.
    traj.object = None
    save_trajectory(traj, tmp_path / "pred")
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["hands.npz"]
    _assert_traj_equal(load_trajectory(tmp_path / "pred"), traj)


def test_trajectory_from_build_and_errors(build, tmp_path, factories, edit_npz):
    _assert_traj_equal(load_trajectory(build.root), build.traj)  # a build folder means its gt/
    _assert_traj_equal(load_trajectory(build.root / "gt"), build.traj)
    save_trajectory(build.traj, tmp_path / "run" / "pred")
    _assert_traj_equal(load_trajectory(tmp_path / "run"), build.traj)  # a run folder means its pred/
    bare = save_sequence(factories.sequence(), tmp_path / "nogt")
    with pytest.raises(SequenceError, match="is a sequence build without a gt/ folder"):
        load_trajectory(bare.root)
    edit_npz(build.root / "gt" / "object.npz", lambda a: a.__setitem__("T_cam_from_obj", a["T_cam_from_obj"][:3]))
    with pytest.raises(SequenceError, match=r"gt/object\.npz: field 'T_cam_from_obj' has shape \(3, 4, 4\), expected "
                                            r"\(4, 4, 4\) \(T=4, the frame count of this folder\)"):
        load_trajectory(build.root)
    save_trajectory(build.traj, build.root / "gt")
    (build.root / "gt" / "object_mesh.ply").unlink()
    with pytest.raises(SequenceError, match=r"object_mesh\.ply: file not found"):
        load_trajectory(build.root)


def test_save_trajectory_rejects_bad_input(tmp_path, factories):
    traj = factories.trajectory()
    traj.object.T_cam_from_obj = traj.object.T_cam_from_obj.copy()
    traj.object.T_cam_from_obj[0, :3, :3] *= 0.5  # a scaled pose is not metric-rigid
    with pytest.raises(SequenceError, match=r"object\.npz: field 'T_cam_from_obj' is not rigid at frame 0"):
        save_trajectory(traj, tmp_path / "p")
    traj = factories.trajectory()
    traj.hands["left"].faces = traj.hands["left"].faces + 100
    with pytest.raises(SequenceError, match=r"field 'left/faces' indexes vertices .*, expected 0\.\.29"):
        save_trajectory(traj, tmp_path / "p")
    assert not (tmp_path / "p").exists()
