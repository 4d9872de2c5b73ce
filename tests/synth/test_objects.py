"""Synthetic objects, textures and the mesh SDF: geometry, sizes, normals, determinism, known distances."""
from pathlib import Path

import numpy as np
import pytest
import trimesh

from hold.synth.objects import ObjectConfig, make_object, object_names, welded
from hold.geometry.triangles import REGION_FACE, closest_point_on_triangles_np
from hold.synth.sdf import MeshSDF
from hold.synth.textures import background_image, procedural_texture, skin_colors

YCB = Path(__file__).resolve().parents[2].parent / "shared/data/real/ycb-pybullet-object-models"
BANANA = YCB / "YcbBanana" / "textured_simple_reoriented.obj"


def _saturation(rgb: np.ndarray) -> float:
    x = rgb.reshape(-1, 3).astype(float)
    return float(((x.max(1) - x.min(1)) / np.maximum(x.max(1), 1)).mean())


def _gradient_energy(rgb: np.ndarray) -> float:
    g = rgb.astype(float).mean(-1)
    return float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean())


# -- objects ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", object_names())
def test_builtin_objects_are_closed_textured_and_sized(shape):
    mesh = make_object(ObjectConfig(shape=shape, size_m=0.08, seed=1, texture_size=256))
    solid = welded(mesh)
    assert solid.is_watertight and solid.is_winding_consistent and solid.volume > 0  # closed, outward
    assert len(mesh.faces) >= 2000
    assert np.isclose(np.ptp(mesh.vertices, axis=0).max(), 0.08, rtol=1e-9)
    assert np.allclose(mesh.bounds.mean(0), 0.0, atol=1e-12)  # bounding-box centre at the origin
    assert np.isclose(mesh.area, solid.area)  # the textured copy is the same surface
    uv = mesh.visual.uv
    assert mesh.visual.kind == "texture" and mesh.visual.material.image.size == (256, 170)
    assert uv.shape == (len(mesh.vertices), 2) and uv.min() >= 0 and uv.max() <= 1
    # every face's UV triangle is non-degenerate (the texture is really mapped everywhere)
    t = uv[mesh.faces]
    uv_area = 0.5 * np.abs(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]))
    assert uv_area.min() > 0
    # convex shapes centred at the origin: every rendering normal points away from the centre
    assert (np.einsum("ij,ij->i", mesh.vertex_normals, mesh.vertices) > 0).all()


def test_normals_are_sharp_at_creases_and_smooth_across_uv_seams():
    box = make_object(ObjectConfig(shape="box", texture_size=128))
    n = np.asarray(box.vertex_normals)
    assert np.allclose(np.abs(n).max(1), 1.0)  # box: flat faces, one axis per vertex copy
    sphere = make_object(ObjectConfig(shape="sphere", texture_size=128))
    radial = sphere.vertices / np.linalg.norm(sphere.vertices, axis=1, keepdims=True)
    cos = np.einsum("ij,ij->i", sphere.vertex_normals, radial)
    assert cos.min() > np.cos(np.deg2rad(2.0))  # seam copies too (a one-sided normal is ~10 deg off)


def test_objects_are_deterministic_and_seeded():
    a = make_object(ObjectConfig(shape="box", seed=4, texture_size=96))
    b = make_object(ObjectConfig(shape="box", seed=4, texture_size=96))
    c = make_object(ObjectConfig(shape="box", seed=5, texture_size=96))
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.visual.uv, b.visual.uv)
    assert np.array_equal(np.asarray(a.visual.material.image), np.asarray(b.visual.material.image))
    assert not np.allclose(np.sort(a.extents), np.sort(c.extents))  # proportions follow the seed


def test_mesh_file_keeps_its_texture_and_size():
    if not BANANA.exists():
        pytest.skip("shared YCB data not present")
    mesh = make_object(ObjectConfig(shape=str(BANANA)))
    assert mesh.visual.kind == "texture" and mesh.visual.material.image is not None
    assert 0.15 < np.ptp(mesh.vertices, axis=0).max() < 0.25  # a banana is ~19 cm long (metric file)
    assert np.allclose(mesh.bounds.mean(0), 0.0, atol=1e-9)


def test_untextured_open_mesh_file_gets_a_texture_and_a_warning(tmp_path):
    box = trimesh.creation.box(extents=(0.05, 0.04, 0.03))
    open_box = trimesh.Trimesh(box.vertices + 1.0, box.faces[2:], process=False)  # two faces removed
    path = tmp_path / "open.ply"
    open_box.export(path)
    with pytest.warns(UserWarning, match="open.ply.*not watertight"):
        mesh = make_object(ObjectConfig(shape=str(path), texture_size=96))
    assert mesh.visual.kind == "texture"
    assert np.allclose(mesh.bounds.mean(0), 0.0, atol=1e-12)  # recentred, size kept
    assert np.allclose(np.sort(mesh.extents), [0.03, 0.04, 0.05])


def test_bad_shapes_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.obj.*built-in shape"):
        make_object(ObjectConfig(shape=str(tmp_path / "nothing.obj")))
    (tmp_path / "junk.obj").write_text("this is not a mesh")
    with pytest.raises(ValueError, match="junk.obj.*Fix"):
        make_object(ObjectConfig(shape=str(tmp_path / "junk.obj")))
    with pytest.raises(ValueError, match="unknown shape 'cube'"):
        make_object(ObjectConfig(shape="cube"))


# -- textures -----------------------------------------------------------------------------------


def test_texture_is_deterministic_and_feature_rich():
    a, b, c = procedural_texture(256, 0), procedural_texture(256, 0), procedural_texture(256, 1)
    assert a.shape == (256, 256, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # contrast and variety without OpenCV: strong gradients, many distinct colours, full range
    assert _gradient_energy(a) > 4.5  # the smooth value-noise base alone scores ~2.5
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 5000
    assert a.min() < 30 and a.max() > 225
    try:
        import cv2
    except ImportError:
        return
    keypoints = cv2.SIFT_create().detect(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), None)
    assert len(keypoints) >= 100


def test_background_is_calmer_than_objects_and_deterministic():
    bg = background_image(200, 150, seed=3)
    assert bg.shape == (150, 200, 3) and bg.dtype == np.uint8
    assert np.array_equal(bg, background_image(200, 150, seed=3))
    assert not np.array_equal(bg, background_image(200, 150, seed=4))
    tex = procedural_texture(256, 0)
    assert bg.mean() < tex.mean()  # darker
    assert _saturation(bg) < 0.6 * _saturation(tex)  # less saturated
    assert 0.2 < _gradient_energy(bg) < 0.25 * _gradient_energy(tex)  # some texture, much calmer


def test_skin_colors_are_skin_like_with_subtle_variation():
    c = skin_colors(500, seed=2)
    assert c.shape == (500, 4) and c.dtype == np.uint8 and (c[:, 3] == 255).all()
    assert np.array_equal(c, skin_colors(500, seed=2))
    mean = c[:, :3].mean(0)
    assert mean[0] > mean[1] > mean[2]  # warm: R > G > B
    spread = c[:, :3].astype(float).std(0)
    assert (spread > 1.0).all() and (spread < 15.0).all()


# -- signed distance ----------------------------------------------------------------------------


def _shell_points(rng, half_extent, n):
    return rng.uniform(-half_extent, half_extent, (n, 3))


def test_sdf_of_a_sphere_matches_the_analytic_distance():
    r = 0.04
    mesh = make_object(ObjectConfig(shape="sphere", size_m=2 * r, texture_size=96))  # seams duplicated
    r_mesh = np.linalg.norm(mesh.vertices, axis=1).mean()
    sdf = MeshSDF(mesh)
    rng = np.random.default_rng(0)
    x = _shell_points(rng, r + 0.05, 40000)
    true = np.linalg.norm(x, axis=1) - r_mesh
    x, true = x[np.abs(true) < 0.05], true[np.abs(true) < 0.05]  # within 5 cm of the surface, centre included
    d, closest, normal = sdf.query(x)
    assert np.abs(d - true).max() < 2e-4  # exact triangles: only the icosphere's faceting remains
    assert np.abs(np.linalg.norm(closest, axis=1) - r_mesh).max() < 2e-4  # closest points lie on it
    radial = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert np.einsum("ij,ij->i", normal, radial).min() > 0.99
    assert np.allclose(sdf.closest(x), closest) and np.allclose(sdf(x), d)


@pytest.mark.parametrize("tessellated", [False, True])
def test_sdf_of_a_box_has_the_right_sign_and_distance(tessellated):
    half = np.array([0.05, 0.03, 0.02])
    box = trimesh.creation.box(extents=2 * half)  # 12 big triangles
    if tessellated:
        box = trimesh.Trimesh(*trimesh.remesh.subdivide_to_size(box.vertices, box.faces, 0.005))
    sdf = MeshSDF(box)
    rng = np.random.default_rng(1)
    x = _shell_points(rng, half + 0.03, 30000)
    q = np.abs(x) - half
    true = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0)  # analytic box SDF
    d = sdf(x)
    assert (np.sign(d) == np.sign(true))[np.abs(true) > 1e-5].all()  # edges and corners included
    assert np.abs(d - true).max() < 2 * sdf.spacing
    # hand-picked points: inside near a corner, outside beyond a corner, beyond a face
    inside = np.array([[0, 0, 0], [0.049, 0.029, 0.019], [-0.045, -0.025, -0.015]])
    outside = np.array([[0.06, 0, 0], [0.051, 0.031, 0.021], [0, 0, -0.03]])
    assert (sdf(inside) < 0).all() and (sdf(outside) > 0).all()
    assert np.isclose(sdf(np.array([[0.0, 0.0, 0.05]]))[0], 0.03, atol=1e-6)


def test_sdf_of_a_torus_is_right_on_a_non_convex_shape():
    R, r = 0.04, 0.012
    sdf = MeshSDF(trimesh.creation.torus(major_radius=R, minor_radius=r, major_sections=96, minor_sections=48))
    rng = np.random.default_rng(2)
    x = _shell_points(rng, np.array([R + r + 0.02, R + r + 0.02, r + 0.02]), 20000)
    x = np.concatenate([x, [[0.0, 0.0, 0.0], [0.0, 0.0, 0.01]]])  # the hole's centre: every ring point equidistant
    true = np.hypot(np.linalg.norm(x[:, :2], axis=1) - R, x[:, 2]) - r
    d = sdf(x)
    assert (np.sign(d) == np.sign(true))[np.abs(true) > 1e-4].all()
    assert np.abs(d - true).max() < 5e-4  # faceting of a 96 x 48 torus is ~0.1 mm


def test_sdf_of_an_open_mesh_stays_usable():
    box = trimesh.creation.box(extents=(0.06, 0.06, 0.06))
    open_box = trimesh.Trimesh(box.vertices, box.faces[box.face_normals[:, 2] < 0.5])  # no lid
    sdf = MeshSDF(open_box)
    assert not sdf.watertight
    d = sdf(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -0.05], [0.05, 0.0, 0.0]]))
    assert np.allclose(d, [-0.03, 0.02, 0.02], atol=1e-6)


def test_closest_point_on_triangles_matches_brute_force():
    rng = np.random.default_rng(3)
    tri = rng.normal(size=(300, 3, 3))
    p = rng.normal(size=(300, 3)) * 2
    foot, region = closest_point_on_triangles_np(tri, p)
    on_boundary = region != REGION_FACE
    # brute force over a dense barycentric grid of each triangle (including its edges)
    g = np.linspace(0, 1, 61)
    a, b = np.meshgrid(g, g)
    keep = a + b <= 1
    bary = np.stack([1 - a[keep] - b[keep], a[keep], b[keep]], 1)  # (S,3)
    samples = np.einsum("sk,nkc->nsc", bary, tri)
    brute = np.linalg.norm(samples - p[:, None], axis=-1).min(1)
    exact = np.linalg.norm(foot - p, axis=1)
    assert (exact <= brute + 1e-12).all() and np.abs(exact - brute).max() < 0.05
    assert on_boundary.any() and not on_boundary.all()
