"""The offscreen renderer: pixel-exact geometry (hold.geometry.camera conventions), exact labels
checked against an independent ray caster, occlusion, lighting, compositing, texture detail."""
import numpy as np
import pytest
import torch
import trimesh

from hold.geometry.camera import project
from hold.synth.objects import ObjectConfig, make_object
from hold.synth.render import RenderConfig, SynthRenderer, compose_labels
from hold.synth.textures import skin_colors

W, H = 160, 120
K = np.array([[220.0, 0, 81.3], [0, 210.0, 58.6], [0, 0, 1]])  # fractional principal point, fx != fy


@pytest.fixture(scope="module")
def renderer():
    with SynthRenderer(RenderConfig(width=W, height=H, K=K.tolist(), background_seed=5)) as r:
        yield r


def _pose(t, axis=(1.0, 1.0, 0.0), deg=0.0):
    T = trimesh.transformations.rotation_matrix(np.deg2rad(deg), axis)
    T[:3, 3] = t
    return T


def _rays(w=W, h=H, k=K):
    """Unit directions through every pixel centre (row-major), camera frame."""
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    d = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def _raycast_depth(mesh_cam: trimesh.Trimesh) -> np.ndarray:
    """z-depth through pixel centres with trimesh/embree rays (inf where missed)."""
    d = _rays()
    loc, ray, _ = mesh_cam.ray.intersects_location(np.zeros_like(d), d, multiple_hits=False)
    z = np.full(len(d), np.inf)
    z[ray] = loc[:, 2]
    return z.reshape(H, W)


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_sphere_centroid_radius_and_depth_are_pixel_exact(renderer):
    r = 0.02
    sphere = make_object(ObjectConfig(shape="sphere", size_m=2 * r, texture_size=128))
    r_mesh = float(np.linalg.norm(sphere.vertices, axis=1).max())
    c = np.array([0.013, -0.011, 0.35])
    out = renderer.render(sphere, _pose(c), None, None, None)
    mask = out["labels"] == 1
    assert set(np.unique(out["labels"])) == {0, 1} and np.array_equal(out["object_amodal"], mask)

    v, u = np.nonzero(mask)
    centroid = np.array([u.mean() + 0.5, v.mean() + 0.5])  # pixel centres at +0.5
    uv = project(torch.as_tensor(K), torch.as_tensor(c[None]))[0].numpy()
    assert np.abs(centroid - uv).max() < 0.25, (centroid, uv)

    # silhouette = an ellipse (off-axis perspective); compare its area-equivalent radius
    dist = np.linalg.norm(c)
    sin_a = r_mesh / dist
    cos_t = c[2] / dist
    area = np.pi * sin_a**2 * np.sqrt(1 - sin_a**2) / (cos_t**2 - sin_a**2) ** 1.5 * K[0, 0] * K[1, 1]
    assert abs(np.sqrt(mask.sum() / np.pi) - np.sqrt(area / np.pi)) < 1.0
    # and pixel by pixel: the exact ray-sphere test through pixel centres (faceting only differs)
    d = _rays()
    b = d @ c
    disc = (b**2 - (c @ c - r_mesh**2) >= 0).reshape(H, W)
    assert (mask ^ disc).sum() <= 0.01 * disc.sum()

    px = np.floor(uv).astype(int)
    assert abs(out["depth"][px[1], px[0]] - (c[2] - r_mesh)) < 1e-3
    assert (out["depth"][~mask] == 0).all() and out["depth"].dtype == np.float32


def test_labels_and_depth_match_an_independent_raycast(renderer):
    box = make_object(ObjectConfig(shape="box", size_m=0.08, seed=3, texture_size=128))
    T = _pose([0.005, 0.004, 0.32], axis=(0.3, 1.0, 0.2), deg=35)
    hand = trimesh.creation.box(extents=(0.03, 0.025, 0.02))  # a hand-like occluder in front
    hand_v = np.asarray(hand.vertices) + [0.0213, 0.0117, 0.2637]  # edges off pixel centres (no ties)
    out = renderer.render(box, T, hand_v, np.asarray(hand.faces), skin_colors(len(hand_v), 0))

    z_obj = _raycast_depth(box.copy().apply_transform(T))
    z_hand = _raycast_depth(trimesh.Trimesh(hand_v, hand.faces, process=False))
    ref_labels, ref_depth = compose_labels(np.nan_to_num(z_obj, posinf=0.0), np.nan_to_num(z_hand, posinf=0.0))
    for label in (1, 2):
        a, b = out["labels"] == label, ref_labels == label
        assert b.sum() > 300 and _iou(a, b) > 0.99, (label, _iou(a, b))
    both = (out["labels"] > 0) & (out["labels"] == ref_labels)
    assert np.median(np.abs(out["depth"][both] - ref_depth[both])) < 1e-4
    assert _iou(out["object_amodal"], np.isfinite(z_obj)) > 0.99

    # the occluder really hides object pixels, which stay in the amodal mask
    hidden = out["object_amodal"] & (out["labels"] == 2)
    assert hidden.sum() > 100
    assert (out["hand_depth"][hidden] < out["object_depth"][hidden]).all()


def test_pose_updates_move_the_cached_object(renderer):
    mesh = make_object(ObjectConfig(shape="ellipsoid", size_m=0.06, seed=1, texture_size=128))
    a = renderer.render(mesh, _pose([0.0, 0.0, 0.4]), None, None, None)
    node = renderer._object_node
    shift = np.array([0.02, -0.01, 0.0])
    b = renderer.render(mesh, _pose([0.0, 0.0, 0.4] + shift), None, None, None)
    assert renderer._object_node is node  # geometry and texture uploaded once
    ca = np.argwhere(a["labels"] == 1).mean(0)[::-1]
    cb = np.argwhere(b["labels"] == 1).mean(0)[::-1]
    expected = np.array([K[0, 0], K[1, 1]]) * shift[:2] / 0.4  # pure translation parallel to the image
    assert np.abs((cb - ca) - expected).max() < 0.25


def test_hand_holes_cannot_come_from_backface_culling(renderer):
    hand = trimesh.creation.icosphere(subdivisions=3, radius=0.03)
    v = np.asarray(hand.vertices) + [0.0, 0.0, 0.3]
    right = renderer.render(None, None, v, np.asarray(hand.faces), None)
    flipped = renderer.render(None, None, v, np.asarray(hand.faces)[:, ::-1], None)  # inward winding
    assert (right["labels"] == 2).sum() > 1000
    assert np.array_equal(right["labels"], flipped["labels"])
    assert np.allclose(right["depth"], flipped["depth"], atol=1e-6)


def test_the_key_light_shades_by_surface_orientation(renderer):
    hand = trimesh.creation.icosphere(subdivisions=4, radius=0.04)
    v = np.asarray(hand.vertices) + [0.0, 0.0, 0.35]
    grey = np.full((len(v), 4), 180, np.uint8)
    out = renderer.render(None, None, v, np.asarray(hand.faces), grey)
    lum = out["rgb"].astype(float).mean(-1)
    mask = out["labels"] == 2
    rows, cols = np.nonzero(mask)
    cv, cu = rows.mean(), cols.mean()
    # the light travels towards +x, +y (down-right): surfaces facing up-left are lit
    lit = mask & (np.arange(H)[:, None] < cv) & (np.arange(W)[None] < cu)
    shade = mask & (np.arange(H)[:, None] > cv) & (np.arange(W)[None] > cu)
    assert lum[lit].mean() > lum[shade].mean() + 20


def test_rgb_is_composited_over_the_static_backdrop(renderer):
    empty = renderer.render(None, None, None, None, None)
    assert np.array_equal(empty["rgb"], renderer.background)
    assert not empty["labels"].any() and not empty["depth"].any() and not empty["object_amodal"].any()
    mesh = make_object(ObjectConfig(shape="cylinder", size_m=0.07, seed=2, texture_size=128))
    out = renderer.render(mesh, _pose([0.0, 0.0, 0.3], deg=50), None, None, None)
    fg = out["labels"] > 0
    grown = fg.copy()  # anti-aliased edges may tint the 1-pixel ring around the silhouette
    for axis in (0, 1):
        for s in (1, -1):
            grown |= np.roll(fg, s, axis=axis)
    assert np.array_equal(out["rgb"][~grown], renderer.background[~grown])
    assert np.abs(out["rgb"][fg].astype(int) - renderer.background[fg]).mean() > 20


def test_rendered_textured_box_gives_many_sift_features():
    cv2 = pytest.importorskip("cv2")
    K2 = np.array([[256.0, 0, 128], [0, 256.0, 128], [0, 0, 1]])
    box = make_object(ObjectConfig(shape="box", size_m=0.08, seed=0, texture_size=512))
    with SynthRenderer(RenderConfig(width=256, height=256, K=K2)) as r:
        out = r.render(box, _pose([0.0, 0.0, 0.17], axis=(1.0, 0.5, 0.0), deg=30), None, None, None)
    inner = cv2.erode((out["labels"] == 1).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    keypoints = cv2.SIFT_create().detect(cv2.cvtColor(out["rgb"], cv2.COLOR_RGB2GRAY), None)
    on_object = [k for k in keypoints if inner[int(k.pt[1]), int(k.pt[0])]]
    assert len(on_object) >= 100


def test_bad_inputs_are_reported(renderer):
    mesh = make_object(ObjectConfig(shape="sphere", size_m=0.04, texture_size=64))
    with pytest.raises(ValueError, match="T_cam_from_obj"):
        renderer.render(mesh, np.eye(3), None, None, None)
    with pytest.raises(ValueError, match="hand_faces"):
        renderer.render(None, None, np.zeros((4, 3)), np.array([[0, 1, 7]]), None)
    with pytest.raises(ValueError, match="hand_colors"):
        renderer.render(None, None, np.zeros((4, 3)), np.array([[0, 1, 2]]), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="RenderConfig.K"):
        RenderConfig(K=[[1.0, 0.0], [0.0, 1.0]]).intrinsics()
