"""The offscreen renderer follows hold.geometry.camera exactly (pixel centres at +0.5)."""
import numpy as np
import torch
import trimesh

from hold.geometry.camera import project
from hold.synth.render import RenderConfig, SynthRenderer

W, H = 160, 120
K = np.array([[220.0, 0, 81.3], [0, 210.0, 58.6], [0, 0, 1]])


def _analytic_disc(center, radius):
    """Pixels whose centre ray hits the sphere (exact ray-sphere test)."""
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    b = d @ center
    return b**2 - (center @ center - radius**2) >= 0


def test_sphere_silhouette_depth_and_centre_are_pixel_exact():
    r = 0.04
    sphere = trimesh.creation.icosphere(subdivisions=6, radius=r)
    sphere.visual.vertex_colors = [200, 120, 60, 255]
    center = np.array([0.015, -0.01, 0.4])
    T = np.eye(4)
    T[:3, 3] = center
    with SynthRenderer(RenderConfig(width=W, height=H, K=K)) as renderer:
        out = renderer.render(sphere, T, None, None, None)
    mask = out["labels"] == 1
    expected = _analytic_disc(center, r)
    assert (mask ^ expected).sum() <= 0.005 * expected.sum()  # faceting only
    uv = project(torch.as_tensor(K), torch.as_tensor(center[None]))[0].numpy()
    px = np.floor(uv).astype(int)
    assert abs(out["depth"][px[1], px[0]] - (center[2] - r)) < 1e-3
    assert out["object_amodal"].sum() == mask.sum()
    assert (out["rgb"][mask].astype(int) - out["rgb"][~mask].mean(0)).std() > 0  # the object is drawn


def test_nearer_hand_occludes_the_object():
    box = trimesh.creation.box(extents=(0.08, 0.08, 0.02))
    box.visual.vertex_colors = [0, 128, 255, 255]
    T = np.eye(4)
    T[:3, 3] = [0, 0, 0.5]
    occluder = trimesh.creation.box(extents=(0.03, 0.03, 0.01))
    v = np.asarray(occluder.vertices) + [0.0, 0.0, 0.35]
    with SynthRenderer(RenderConfig(width=W, height=H, K=K)) as renderer:
        out = renderer.render(box, T, v, np.asarray(occluder.faces), None)
        alone = renderer.render(box, T, None, None, None)
    hand = out["labels"] == 2
    assert hand.sum() > 100
    assert (alone["labels"][hand] == 1).all()  # the hand covers object pixels ...
    assert out["object_amodal"][hand].all()  # ... which stay in the amodal object mask
    assert np.allclose(out["depth"][hand], 0.345, atol=1e-3)
