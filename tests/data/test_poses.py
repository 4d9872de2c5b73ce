"""Pose folders (hold.data.poses): round trip through the build's layout, and clear errors on a mismatch."""
import hold  # noqa: F401  (zlib import-order guard, see hold/__init__.py)

import dataclasses

import numpy as np
import pytest

from hold.data import SequenceError, load_sequence
from hold.data.poses import save_poses, with_poses_from
from tests.data.conftest import make_sequence


def _perturbed(seq, seed: int = 5):
    """`seq` with every pose changed (new values), keypoints untouched."""
    other = make_sequence(seed=seed)
    hands = {s: dataclasses.replace(other.hands[s], keypoints_2d=seq.hands[s].keypoints_2d) for s in seq.hands}
    return dataclasses.replace(seq, hands=hands, object=other.object)


def test_round_trip_same_keys_as_build(build, tmp_path):
    base = load_sequence(build.root)
    refined = _perturbed(base)
    out = save_poses(tmp_path / "refine", refined)
    assert out == tmp_path / "refine"
    # exactly the build's keys and dtypes
    for name in ("hands.npz", "object.npz"):
        with np.load(build.root / name) as a, np.load(out / name) as b:
            assert sorted(a.files) == sorted(b.files)
            for k in a.files:
                assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
    back = with_poses_from(base, out)
    for s in base.hands:
        for name in ("global_orient", "hand_pose", "betas", "transl", "valid"):
            np.testing.assert_array_equal(getattr(back.hands[s], name), getattr(refined.hands[s], name))
            assert not np.array_equal(getattr(back.hands[s], name), getattr(base.hands[s], name)) or name == "valid"
        np.testing.assert_array_equal(back.hands[s].keypoints_2d, base.hands[s].keypoints_2d)
    np.testing.assert_array_equal(back.object.T_cam_from_obj, refined.object.T_cam_from_obj)
    assert back.object.scale == pytest.approx(refined.object.scale)
    np.testing.assert_array_equal(back.object.points, refined.object.points)
    # everything else is the build's
    assert back.root == base.root and back.num_frames == base.num_frames and back.fps == base.fps
    np.testing.assert_array_equal(back.intrinsics.K, base.intrinsics.K)
    # leaves no temp files
    assert sorted(p.name for p in out.iterdir()) == ["hands.npz", "object.npz"]


def test_tracks_only_and_overwrite(tmp_path):
    seq = make_sequence(seed=1)
    save_poses(tmp_path, hands=seq.hands, object=seq.object)
    back = with_poses_from(make_sequence(seed=2), tmp_path)
    np.testing.assert_array_equal(back.hands["left"].transl, seq.hands["left"].transl)
    np.testing.assert_array_equal(back.object.T_cam_from_obj, seq.object.T_cam_from_obj)
    # overwriting with a sequence without an object removes the stale object.npz
    save_poses(tmp_path, make_sequence(seed=3, with_object=False))
    assert not (tmp_path / "object.npz").exists()


def test_bad_track_is_refused_before_writing(tmp_path):
    seq = make_sequence()
    bad = seq.object.T_cam_from_obj.copy()
    bad[1, :3, :3] *= 2.0  # scale folded into the matrix: not rigid
    with pytest.raises(SequenceError, match=r"object\.npz.*T_cam_from_obj.*not rigid"):
        save_poses(tmp_path / "p", dataclasses.replace(seq, object=dataclasses.replace(seq.object, T_cam_from_obj=bad)))
    assert not (tmp_path / "p").exists()


def test_mismatch_errors_name_file_and_field(tmp_path):
    seq = make_sequence()
    save_poses(tmp_path / "right_only", make_sequence(sides=("right",)))
    with pytest.raises(SequenceError, match=r"hands\.npz.*hands \['right'\].*expected hands \['left', 'right'\]"):
        with_poses_from(seq, tmp_path / "right_only")

    short = make_sequence()
    short = dataclasses.replace(short, num_frames=3, hands={
        s: dataclasses.replace(h, global_orient=h.global_orient[:3], hand_pose=h.hand_pose[:3], transl=h.transl[:3],
                               valid=h.valid[:3], keypoints_2d=None) for s, h in short.hands.items()},
        object=dataclasses.replace(short.object, T_cam_from_obj=short.object.T_cam_from_obj[:3],
                                   valid=short.object.valid[:3]))
    save_poses(tmp_path / "short", short)
    with pytest.raises(SequenceError, match=r"hands\.npz: field 'right/global_orient' has shape \(3, 3\)"):
        with_poses_from(seq, tmp_path / "short")

    with pytest.raises(SequenceError, match=r"object\.npz.*file not found"):
        save_poses(tmp_path / "no_obj", make_sequence(with_object=False))
        with_poses_from(seq, tmp_path / "no_obj")
    save_poses(tmp_path / "full", seq)
    with pytest.raises(SequenceError, match=r"object\.npz.*has no object"):
        with_poses_from(make_sequence(with_object=False), tmp_path / "full")
    with pytest.raises(SequenceError, match=r"missing.*folder not found"):
        with_poses_from(seq, tmp_path / "missing")
