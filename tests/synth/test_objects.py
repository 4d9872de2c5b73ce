"""Synthetic objects and the sample-based SDF: geometry, textures, sizes, distances with known answers."""
from pathlib import Path

import numpy as np
import pytest
import trimesh

from hold.synth.objects import ObjectConfig, make_object, object_names, welded
from hold.synth.sdf import MeshSDF
from hold.synth.textures import procedural_texture

YCB = Path(__file__).resolve().parents[2].parent / "shared/data/real/ycb-pybullet-object-models"


@pytest.mark.parametrize("shape", object_names())
def test_builtin_objects_are_closed_textured_and_sized(shape):
    mesh = make_object(ObjectConfig(shape=shape, size_m=0.08, seed=1, texture_size=256))
    solid = welded(mesh)
    assert solid.is_watertight and solid.volume > 0  # closed, normals outward
    assert np.isclose(np.ptp(mesh.vertices, axis=0).max(), 0.08, rtol=1e-3)
    assert np.allclose(mesh.bounds.mean(0), 0.0, atol=1e-9)  # bounding-box centre at the origin
    uv = mesh.visual.uv
    assert uv.shape == (len(mesh.vertices), 2) and uv.min() >= 0 and uv.max() <= 1


def test_texture_is_deterministic_and_feature_rich():
    a, b, c = procedural_texture(256, 0), procedural_texture(256, 0), procedural_texture(256, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    cv2 = pytest.importorskip("cv2")
    keypoints = cv2.SIFT_create().detect(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), None)
    assert len(keypoints) >= 100


def test_mesh_file_keeps_its_texture_and_size():
    path = YCB / "YcbBanana" / "textured_simple_reoriented.obj"
    if not path.exists():
        pytest.skip("shared YCB data not present")
    mesh = make_object(ObjectConfig(shape=str(path)))
    assert mesh.visual.kind == "texture" and mesh.visual.material.image is not None
    assert 0.15 < np.ptp(mesh.vertices, axis=0).max() < 0.25  # a banana is ~19 cm long
    assert np.allclose(mesh.bounds.mean(0), 0.0, atol=1e-9)


def test_missing_mesh_file_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.obj.*built-in shape"):
        make_object(ObjectConfig(shape=str(tmp_path / "nothing.obj")))
    (tmp_path / "junk.obj").write_text("this is not a mesh")
    with pytest.raises(ValueError, match="junk.obj"):
        make_object(ObjectConfig(shape=str(tmp_path / "junk.obj")))


def test_sdf_of_a_sphere_matches_the_analytic_distance():
    r = 0.04
    sdf = MeshSDF(trimesh.creation.icosphere(subdivisions=5, radius=r))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 3))
    x = x / np.linalg.norm(x, axis=1, keepdims=True) * rng.uniform(r - 0.03, r + 0.05, (5000, 1))
    err = np.abs(sdf(x) - (np.linalg.norm(x, axis=1) - r))
    assert err.max() < 1e-3  # within the sample spacing + icosphere faceting


def test_sdf_sign_of_a_box():
    sdf = MeshSDF(trimesh.creation.box(extents=(0.1, 0.06, 0.04)))
    inside = np.array([[0, 0, 0], [0.04, 0.02, 0.01], [-0.045, -0.025, -0.015]])
    outside = np.array([[0.06, 0, 0], [0, 0.04, 0], [0.051, 0.031, 0.021], [0, 0, -0.03]])
    assert (sdf(inside) < 0).all() and (sdf(outside) > 0).all()
    assert np.isclose(sdf(np.array([[0.0, 0.0, 0.05]]))[0], 0.03, atol=5e-4)
