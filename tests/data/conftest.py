"""Tiny synthetic builds for the contract tests (T=4 frames of 16x12 px), made with our own writers."""
import hold  # noqa: F401  (zlib import-order guard, see hold/__init__.py)

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hold.data import (
    HandObjectTrajectory, HandTrack, HandTrajectory, Intrinsics, ObjectTrack, ObjectTrajectory, Sequence,
    save_sequence, save_trajectory, write_depth,
)

T, W, H = 4, 16, 12
P, B = 45, 10


def random_rigid(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random proper rigid transforms (T,4,4) float32, the object ~0.6 m in front of the camera."""
    M = np.tile(np.eye(4), (n, 1, 1))
    M[:, :3, :3] = Rotation.random(n, random_state=rng).as_matrix()
    M[:, :3, 3] = rng.normal(scale=0.05, size=(n, 3)) + [0.0, 0.0, 0.6]
    return M.astype(np.float32)


def random_ball(rng: np.random.Generator, n: int) -> np.ndarray:
    """n points uniform in the unit ball (N,3) float32."""
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return (d * rng.uniform(size=(n, 1)) ** (1 / 3)).astype(np.float32)


def make_sequence(seed: int = 0, sides=("right", "left"), with_object: bool = True) -> Sequence:
    rng = np.random.default_rng(seed)
    K = np.array([[20.0, 0.0, W / 2], [0.0, 21.5, H / 2], [0.0, 0.0, 1.0]])
    hands = {}
    for s in sides:
        kp = rng.uniform(0, 1, size=(T, 21, 3)).astype(np.float32)
        kp[..., 0] *= W
        kp[..., 1] *= H
        hands[s] = HandTrack(
            side=s,
            global_orient=rng.normal(size=(T, 3)).astype(np.float32),
            hand_pose=rng.normal(scale=0.3, size=(T, P)).astype(np.float32),
            betas=rng.normal(size=(B,)).astype(np.float32),
            transl=(rng.normal(scale=0.05, size=(T, 3)) + [0, 0, 0.5]).astype(np.float32),
            valid=rng.uniform(size=T) > 0.3,
            keypoints_2d=kp,
        )
    obj = None
    if with_object:
        obj = ObjectTrack(T_cam_from_obj=random_rigid(rng, T), scale=0.0734, points=random_ball(rng, 50),
                          valid=np.array([True, True, False, True]))
    return Sequence(
        root=None, num_frames=T, intrinsics=Intrinsics(K=K, width=W, height=H), hands=hands, hand_model="anny",
        object=obj, fps=29.97, sources={"images": "unit test", "hands": "random"}, extra={"note": [1, 2.5, "x"]},
        frame_names=[f"frame_{i:03d}.jpg" for i in range(T)],
    )


def make_frames(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed + 100)
    images = [rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8) for _ in range(T)]
    masks = [rng.choice(np.array([0, 1, 2, 3, 255], dtype=np.uint8), size=(H, W)) for _ in range(T)]
    return images, masks


def octahedron(radius: float = 0.04) -> tuple[np.ndarray, np.ndarray]:
    v = radius * np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float32)
    f = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    return v, f


def make_trajectory(seed: int = 0, sides=("right", "left"), with_object: bool = True) -> HandObjectTrajectory:
    rng = np.random.default_rng(seed + 200)
    hands = {}
    for s in sides:
        V = 30
        hands[s] = HandTrajectory(
            side=s,
            keypoints=rng.normal(scale=0.05, size=(T, 21, 3)).astype(np.float32),
            vertices=rng.normal(scale=0.05, size=(T, V, 3)).astype(np.float32),
            faces=rng.integers(0, V, size=(40, 3)),
            params={"global_orient": rng.normal(size=(T, 3)).astype(np.float32),
                    "hand_pose": rng.normal(size=(T, P)).astype(np.float32),
                    "betas": rng.normal(size=(B,)).astype(np.float32),
                    "transl": rng.normal(size=(T, 3)).astype(np.float32)},
        )
    obj = None
    if with_object:
        v, f = octahedron()
        K = np.array([[20.0, 0.0, W / 2], [0.0, 21.5, H / 2], [0.0, 0.0, 1.0]])
        obj = ObjectTrajectory(vertices=v, faces=f, T_cam_from_obj=random_rigid(rng, T), K=K)
    return HandObjectTrajectory(hands=hands, object=obj, num_frames=T, hand_model="anny")


@pytest.fixture
def seq() -> Sequence:
    """An in-memory two-hand + object sequence (not saved)."""
    return make_sequence()


@pytest.fixture
def build(tmp_path: Path) -> SimpleNamespace:
    """A complete valid build on disk: images, masks, hands, object, gt/ with depth."""
    root = tmp_path / "build"
    images, masks = make_frames()
    seq = save_sequence(make_sequence(), root, images=images, masks=masks)
    traj = make_trajectory()
    save_trajectory(traj, root / "gt")
    depth_rng = np.random.default_rng(7)
    for i in range(T):
        write_depth(root / "gt" / "depth" / f"{i:06d}.png", depth_rng.uniform(0.3, 1.0, size=(H, W)))
    return SimpleNamespace(root=root, seq=seq, images=images, masks=masks, traj=traj)


@pytest.fixture
def edit_npz():
    """edit_npz(path, fn): rewrite an .npz with fn(dict of arrays) applied (fn mutates the dict)."""

    def edit(path: Path, fn) -> None:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        fn(arrays)
        np.savez(path, **arrays)

    return edit


@pytest.fixture
def edit_json():
    """edit_json(path, fn): rewrite a JSON file with fn(dict) applied (fn mutates the dict)."""

    def edit(path: Path, fn) -> None:
        meta = json.loads(path.read_text())
        fn(meta)
        path.write_text(json.dumps(meta))

    return edit


@pytest.fixture
def factories() -> SimpleNamespace:
    """The builders above, for tests that need variants."""
    return SimpleNamespace(sequence=make_sequence, frames=make_frames, trajectory=make_trajectory,
                           rigid=random_rigid, ball=random_ball, T=T, W=W, H=H)
