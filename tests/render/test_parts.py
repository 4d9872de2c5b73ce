"""render parts with known answers: quaternions, turntable framing, rasterizer labels/normals, mp4 encode."""
import math

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from hold.geometry.triangles import vertex_normals_np
from render.gltf_anim import AnimatedHand, AnimatedObject, animated_gltf, glb_bytes, quaternion_xyzw
from render.raster import CameraMesh, MeshRasterizer, normals_to_rgb
from render.turntable import bounding_sphere, framing_distance, turntable_intrinsics, turntable_poses
from hold.video import read_mp4, write_mp4
from tests.render.gltf_check import read_glb, validate_gltf


def test_quaternions_round_trip_and_stay_sign_continuous():
    R = Rotation.random(200, random_state=0).as_matrix()
    R[0] = Rotation.from_rotvec([math.pi, 0, 0]).as_matrix()  # 180 degrees: w = 0, the hard branch
    R[1] = Rotation.from_rotvec([0, 0, math.pi - 1e-7]).as_matrix()
    q = quaternion_xyzw(R)
    np.testing.assert_allclose(Rotation.from_quat(q).as_matrix(), R, atol=1e-9)
    ref = Rotation.from_matrix(R).as_quat()  # scipy is (x, y, z, w) too
    np.testing.assert_allclose(np.abs((q * ref).sum(1)), 1.0, atol=1e-9)
    small = Rotation.from_rotvec(np.linspace(0, 6 * math.pi, 50)[:, None] * [0, 1, 0]).as_matrix()
    qs = quaternion_xyzw(small)
    assert ((qs[1:] * qs[:-1]).sum(1) > 0).all()  # no flips along a smooth spin


def test_turntable_frames_a_sphere_exactly():
    size, fill = 64, 0.6
    K = turntable_intrinsics(size)
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.05)
    v = np.asarray(sphere.vertices) + [0.3, -0.1, 0.9]
    poses = turntable_poses(v, K, size, 4, fill)
    c, r = bounding_sphere(v)
    d = framing_distance(r, K, size, fill)
    for T in poses:  # centre on the optical axis, same distance at every angle
        np.testing.assert_allclose(T[:3, :3] @ c + T[:3, 3], [0, 0, d], atol=1e-12)
    with MeshRasterizer(K, size, size) as ras:
        labels, depth = ras.labels([CameraMesh((v @ poses[1][:3, :3].T + poses[1][:3, 3]).astype(np.float32),
                                               np.asarray(sphere.faces), label=1)])
    cols = np.nonzero((labels == 1).any(0))[0]
    width = cols.max() - cols.min() + 1
    assert abs(width - fill * size) <= 2  # 38.4 px wide
    assert abs((cols.max() + cols.min() + 1) / 2 - size / 2) <= 1
    assert depth[labels == 1].min() == pytest.approx(d - r, abs=2e-3)


def test_rasterizer_labels_depth_and_normals_of_a_plane():
    K = np.array([[50.0, 0, 20], [0, 50.0, 15], [0, 0, 1]])
    # a square facing the camera at z = 1, covering x, y in [-0.1, 0.1] -> pixels 15..25 x 10..20
    v = np.array([[-0.1, -0.1, 1], [0.1, -0.1, 1], [0.1, 0.1, 1], [-0.1, 0.1, 1]], np.float32)
    f = np.array([[0, 2, 1], [0, 3, 2]])  # wound so the normal points to the camera (-z)
    n = vertex_normals_np(v, f)
    np.testing.assert_allclose(n, [[0, 0, -1]] * 4, atol=1e-6)
    np.testing.assert_allclose(normals_to_rgb(n[:1]), [[0.5, 0.5, 1.0]])
    near = CameraMesh(v * [0.5, 0.5, 0.8], f, label=3)  # a smaller square in front
    with MeshRasterizer(K, 40, 30) as ras:
        labels, depth = ras.labels([CameraMesh(v, f, label=1), near])
        nmap = ras.normals([CameraMesh(v, f)])
    expect = np.zeros((30, 40), np.uint8)
    expect[10:20, 15:25] = 1
    expect[12:18, 17:23] = 3  # u = 20 +- 0.05 * 50 / 0.8 = [16.875, 23.125]: centres 17.5 .. 22.5 inside
    np.testing.assert_array_equal(labels, expect)
    np.testing.assert_allclose(depth[labels == 1], 1.0, atol=1e-4)
    np.testing.assert_allclose(depth[labels == 3], 0.8, atol=1e-4)
    inside = nmap[12:18, 17:23]
    assert np.abs(inside[..., :3].astype(int) - [128, 128, 255]).max() <= 2
    assert (nmap[0, 0] == 0).all()


def test_glb_of_a_static_scene_and_bad_inputs():
    verts = np.random.default_rng(0).normal(size=(2, 10, 3)).astype(np.float32)
    gltf, blob = animated_gltf(None, {"right": AnimatedHand(verts[:1], np.array([[0, 1, 2]]))})
    assert validate_gltf(gltf, blob) == [] and "animations" not in gltf  # one frame: nothing to animate
    back, blob2 = read_glb(glb_bytes(gltf, blob))
    assert back == gltf and blob2 == blob
    with pytest.raises(ValueError, match="same frame count"):
        animated_gltf(AnimatedObject(verts[0], np.array([[0, 1, 2]]), np.tile(np.eye(4), (3, 1, 1))),
                      {"right": AnimatedHand(verts, np.array([[0, 1, 2]]))})
    gltf, blob = animated_gltf(None, {"right": AnimatedHand(verts, np.array([[0, 1, 12]]))})
    assert any("indices" in p for p in validate_gltf(gltf, blob))


def test_mp4_pads_odd_sizes_and_keeps_frames(tmp_path):
    frames = [np.full((15, 21, 3), 40 * i, np.uint8) for i in range(5)]
    path = write_mp4(tmp_path / "v.mp4", frames, fps=7)
    back, fps = read_mp4(path)
    assert len(back) == 5 and back[0].shape == (16, 22, 3) and fps == 7.0
    for i in range(5):
        assert abs(float(back[i][:15, :21].mean()) - 40 * i) < 3
    assert not (tmp_path / "v.tmp.mp4").exists()
