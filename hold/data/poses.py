"""Pose folders: hands.npz + object.npz holding (refined) trajectories in exactly the build's layout.

A pose folder (e.g. RUN/refine) is the trajectory part of a sequence build and nothing else: the same
keys as BUILD/hands.npz and BUILD/object.npz (hold.data.schema), no sequence.json, no frames. A later
stage reads it back over the build it belongs to:

    save_poses("RUN/refine", refined_seq)              # writes RUN/refine/hands.npz, object.npz
    seq = with_poses_from(load_sequence(build), "RUN/refine")

The arrays are made and checked by the same code as a build's (hold.data.io.sequence_to_records and
hold.data.schema's check_* functions), so a pose folder is valid exactly when a build with these
trajectories would be.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hold.data.errors import ProblemLog, SequenceError
from hold.data.io import atomic_write_npz, hand_track, object_track, read_npz, sequence_to_records
from hold.data.schema import (
    HAND_SIDES, HANDS_NPZ, OBJECT_NPZ, HandTrack, Intrinsics, ObjectTrack, Sequence, check_hand_arrays,
    check_object_arrays,
)

FIX_POSES = "re-run the stage that wrote this pose folder (`hold refine FIT_RUN --out DIR`), or delete the folder"


def save_poses(
    folder: Path | str,
    seq: Sequence | None = None,
    *,
    hands: Mapping[str, HandTrack] | None = None,
    object: ObjectTrack | None = None,  # noqa: A002  (the contract's word)
) -> Path:
    """Write folder/hands.npz and folder/object.npz (atomically) from `seq`'s tracks; returns `folder`.

    `hands` / `object` replace `seq`'s tracks when given (and are all there is when `seq` is None).
    Everything is checked in memory first (SequenceError naming the file and field, nothing
    written). hands.npz is always written (empty when there is no hand, as in a build); a stale
    object.npz is removed when there is no object.
    """
    folder = Path(folder)
    if seq is None:
        if not hands and object is None:
            raise SequenceError(folder, None, message="got nothing to write (no sequence, no hands, no object)",
                                fix="pass a Sequence or hands=/object= tracks to save_poses")
        T = object.num_frames if object is not None else next(iter(hands.values())).num_frames
        # sequence_to_records needs a Sequence; the intrinsics only feed sequence.json, which is not written here
        seq = Sequence(root=None, num_frames=T, intrinsics=Intrinsics(K=np.eye(3), width=1, height=1))
    repl = {}
    if hands is not None:
        repl["hands"] = dict(hands)
    if object is not None:
        repl["object"] = object
    seq = dataclasses.replace(seq, **repl)
    _, hand_arrays, obj_arrays = sequence_to_records(seq, folder)
    log = ProblemLog(fail_fast=True)
    for side in seq.hands:
        check_hand_arrays(hand_arrays, side, seq.num_frames, folder / HANDS_NPZ, log)
    if seq.object is not None:
        check_object_arrays(obj_arrays, seq.num_frames, folder / OBJECT_NPZ, log)

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_npz(folder / HANDS_NPZ, hand_arrays)
    if seq.object is not None:
        atomic_write_npz(folder / OBJECT_NPZ, obj_arrays)
    elif (folder / OBJECT_NPZ).exists():
        (folder / OBJECT_NPZ).unlink()  # no object now: a stale object.npz would only mislead
    return folder


def with_poses_from(seq: Sequence, folder: Path | str) -> Sequence:
    """`seq` with its hand tracks and object track replaced by those in `folder` (a save_poses folder).

    The folder must hold the same hands (sides), the same frame count, the same finger-pose and shape
    sizes, and an object exactly when `seq` has one; otherwise SequenceError names the file and the
    field. The 2D keypoints stay `seq`'s: they are observations of the build, not poses.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SequenceError(folder, None, message="folder not found (expected a pose folder with hands.npz / "
                            "object.npz)", fix=FIX_POSES)
    T = seq.num_frames
    log = ProblemLog(fail_fast=True)
    hands: dict[str, HandTrack] = {}
    if seq.hands:
        path = folder / HANDS_NPZ
        arrays = read_npz(path, log, FIX_POSES, f"the sequence has hands {list(seq.hands)}")
        found = sorted({k.split("/", 1)[0] for k in arrays if "/" in k and k.split("/", 1)[0] in HAND_SIDES})
        if found != sorted(seq.hands):
            raise SequenceError(path, None, found=f"hands {found}", expected=f"hands {sorted(seq.hands)} (the "
                                f"sequence's)", fix="use the pose folder written for this sequence; " + FIX_POSES)
        for side, track in seq.hands.items():
            check_hand_arrays(arrays, side, T, path, log)
            p = f"{side}/"
            for name in ("hand_pose", "betas"):
                want, got = getattr(track, name).shape, arrays[p + name].shape
                if want != got:
                    raise SequenceError(path, p + name, found=f"shape {got}", expected=f"{want} like the "
                                        f"sequence's (same hand model {seq.hand_model!r})", fix=FIX_POSES)
            hands[side] = hand_track(arrays, side, track.keypoints_2d)
    obj = None
    path = folder / OBJECT_NPZ
    if seq.object is not None:
        arrays = read_npz(path, log, FIX_POSES, "the sequence has an object")
        check_object_arrays(arrays, T, path, log)
        obj = object_track(arrays)
    elif path.exists():
        raise SequenceError(path, None, message="exists but the sequence has no object (has_object is false)",
                            fix="use the pose folder written for this sequence; " + FIX_POSES)
    return dataclasses.replace(seq, hands=hands, object=obj)


__all__ = ["FIX_POSES", "save_poses", "with_poses_from"]
