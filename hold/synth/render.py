"""Offscreen rendering of synthetic frames (pyrender, EGL: no display, no GPU needed).

Everything is in the OpenCV camera frame (x right, y down, z forward). pyrender follows OpenGL
(camera looking down -z, y up), so its world is our camera frame and its camera sits at the
origin with pose diag(1, -1, -1): that camera looks down +z_cv with +y_cv down the image.
`pyrender.IntrinsicsCamera` measures cx, cy from the image's top-left corner in the same
continuous pixel coordinates as `hold.geometry.camera` (pixel centres at +0.5; checked by test).

Labels are exact per pixel: a depth-only render of each entity alone, the nearer surface wins —
the same visibility as the RGB render.

pyrender renders into a 4x multisampled framebuffer and resolves depth with NEAREST, i.e. from
one sample offset from the pixel centre by about (-0.125, +0.375) px on Mesa, while colour is
averaged. Ground truth must be sampled at pixel centres, so `_single_sample_framebuffers` makes
pyrender allocate ordinary (0-sample) renderbuffers: RGB, depth and labels are then all point
samples at the pixel centres (no anti-aliasing), matching `hold.geometry.camera` exactly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")  # must precede the first pyrender/OpenGL import

import numpy as np
import trimesh
from jaxtyping import Float, UInt8

from hold.synth.textures import background_image

LABEL_OBJECT, LABEL_RIGHT_HAND = 1, 2
_GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass
class RenderConfig:
    """Camera and lighting of the offscreen renderer."""

    width: int = 256
    """Image width (pixels)."""
    height: int = 256
    """Image height (pixels)."""
    K: np.ndarray = field(default_factory=lambda: np.array([[280.0, 0, 128], [0, 280.0, 128], [0, 0, 1]]))
    """OpenCV intrinsics (3x3, pixels)."""
    znear: float = 0.01
    """Near clipping plane (metres)."""
    zfar: float = 10.0
    """Far clipping plane (metres)."""
    ambient: float = 0.6
    """Ambient light intensity (0..1, grey)."""
    light_intensity: float = 3.0
    """Directional key light intensity (pyrender units)."""
    light_tilt_deg: float = 25.0
    """Key light direction: tilted from the viewing axis toward the upper left (degrees)."""
    background_seed: int = 0
    """Seed of the static backdrop image."""


def _single_sample_framebuffers() -> None:
    """Make pyrender's "multisample" renderbuffers single-sample (see the module docstring)."""
    import pyrender.renderer as pr

    if getattr(pr, "_hold_single_sample", False):
        return
    storage = pr.glRenderbufferStorageMultisample
    pr.glRenderbufferStorageMultisample = lambda target, samples, fmt, w, h: storage(target, 0, fmt, w, h)
    pr._hold_single_sample = True


def _matte(mesh):
    """Opaque, double-sided (no holes from back-face culling), non-metallic materials.

    Materials are adjusted after `from_trimesh`, which only keeps vertex colours and textures
    when it builds the material itself."""
    for prim in mesh.primitives:
        prim.material.alphaMode = "OPAQUE"
        prim.material.doubleSided = True
        prim.material.metallicFactor = 0.0
        prim.material.roughnessFactor = 0.8
    return mesh


class SynthRenderer:
    """Reusable offscreen renderer: object mesh uploaded once, hand mesh replaced per frame."""

    def __init__(self, cfg: RenderConfig):
        import pyrender

        _single_sample_framebuffers()
        self._pr = pyrender
        self.cfg = cfg
        K = np.asarray(cfg.K, dtype=np.float64)
        self.scene = pyrender.Scene(bg_color=[0, 0, 0, 0], ambient_light=[cfg.ambient] * 3)
        cam = pyrender.IntrinsicsCamera(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2], znear=cfg.znear, zfar=cfg.zfar)
        self.scene.add(cam, pose=_GL_FROM_CV)
        a = np.deg2rad(cfg.light_tilt_deg)
        tilt = trimesh.transformations.rotation_matrix(a, [1, 1, 0])
        self.scene.add(pyrender.DirectionalLight(color=np.ones(3), intensity=cfg.light_intensity), pose=tilt @ _GL_FROM_CV)
        self.renderer = pyrender.OffscreenRenderer(cfg.width, cfg.height)
        self.background = background_image(cfg.width, cfg.height, cfg.background_seed)
        self._object_key: int | None = None
        self._object_node = None
        self._hand_node = None

    def _set_object(self, mesh: trimesh.Trimesh | None, T_cam_from_obj: np.ndarray | None) -> None:
        if mesh is None:
            if self._object_node is not None:
                self._object_node.mesh.is_visible = False
            return
        if self._object_key != id(mesh):  # upload geometry and texture once per object
            if self._object_node is not None:
                self.scene.remove_node(self._object_node)
            self._object_node = self.scene.add(_matte(self._pr.Mesh.from_trimesh(mesh, smooth=False)))
            self._object_key = id(mesh)
        self._object_node.mesh.is_visible = True
        self.scene.set_pose(self._object_node, np.asarray(T_cam_from_obj, dtype=np.float64))

    def _set_hand(self, vertices, faces, colors) -> None:
        if self._hand_node is not None:
            self.scene.remove_node(self._hand_node)
            self._hand_node = None
        if vertices is None:
            return
        tm = trimesh.Trimesh(np.asarray(vertices, dtype=np.float64), np.asarray(faces), process=False,
                             vertex_colors=colors)
        self._hand_node = self.scene.add(_matte(self._pr.Mesh.from_trimesh(tm, smooth=True)))

    def _depth_of(self, node) -> np.ndarray:
        others = [n for n in (self._object_node, self._hand_node) if n is not None and n is not node]
        saved = [n.mesh.is_visible for n in others]
        for n in others:
            n.mesh.is_visible = False
        depth = self.renderer.render(self.scene, flags=self._pr.RenderFlags.DEPTH_ONLY)
        for n, s in zip(others, saved):
            n.mesh.is_visible = s
        return depth

    def render(
        self,
        object_mesh: trimesh.Trimesh | None,
        T_cam_from_obj: Float[np.ndarray, "4 4"] | None,
        hand_vertices_cam: Float[np.ndarray, "V 3"] | None,
        hand_faces: np.ndarray | None,
        hand_colors: UInt8[np.ndarray, "V 4"] | None,
    ) -> dict[str, np.ndarray]:
        """One frame: rgb (H,W,3) uint8 over the backdrop, depth (H,W) metres (0 = none),
        labels (H,W) uint8 (0 background, 1 object, 2 right hand), object_amodal (H,W) bool."""
        if hand_vertices_cam is not None and hand_colors is None:
            hand_colors = np.tile(np.array([[224, 172, 140, 255]], np.uint8), (len(hand_vertices_cam), 1))
        self._set_object(object_mesh, T_cam_from_obj)
        self._set_hand(hand_vertices_cam, hand_faces, hand_colors)
        rgb, depth = self.renderer.render(self.scene)
        H, W = depth.shape
        inf = np.full((H, W), np.inf, np.float32)
        d_obj = self._depth_of(self._object_node) if object_mesh is not None else inf
        d_hand = self._depth_of(self._hand_node) if hand_vertices_cam is not None else inf
        d_obj = np.where(d_obj > 0, d_obj, np.inf)
        d_hand = np.where(d_hand > 0, d_hand, np.inf)
        labels = np.zeros((H, W), np.uint8)
        labels[np.isfinite(d_obj) & (d_obj <= d_hand)] = LABEL_OBJECT
        labels[np.isfinite(d_hand) & (d_hand < d_obj)] = LABEL_RIGHT_HAND
        fg = labels > 0
        out_rgb = np.where(fg[..., None], rgb[..., :3], self.background)
        return dict(rgb=np.ascontiguousarray(out_rgb, dtype=np.uint8),
                    depth=np.where(fg, np.minimum(d_obj, d_hand), 0).astype(np.float32),
                    labels=labels, object_amodal=np.isfinite(d_obj))

    def close(self) -> None:
        self.renderer.delete()

    def __enter__(self) -> "SynthRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
