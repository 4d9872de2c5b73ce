"""Offscreen rasterization of camera-frame triangle meshes with a pinhole K (pyrender, EGL; no display, no GPU).

Same conventions as hold.synth.render: the pyrender world frame is the OpenCV camera frame (x right,
y down, z forward, metres), the pyrender camera sits at the origin with pose diag(1,-1,-1,1), and
pixel (u, v) covers [u, u+1) x [v, v+1) with its centre at (u + 0.5, v + 0.5).

One renderer per image size; every pass takes the meshes of one frame (vertices already in the
camera frame) and returns arrays:
- `shaded`: lit, vertex-coloured (or one flat colour per mesh) RGBA, 4x MSAA anti-aliased;
- `normals`: camera-frame vertex normals as colours, unlit (FLAT), anti-aliased;
- `labels`: one label per pixel from the nearest surface (SEG: no MSAA, sampled at pixel centres)
  and that surface's depth.
"""
from __future__ import annotations

import os

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")  # headless; must precede the pyrender import

from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
import pyrender  # noqa: E402
from jaxtyping import Float, Int, UInt8  # noqa: E402

from hold.geometry.triangles import vertex_normals_np  # noqa: E402
from hold.synth.render import GL_FROM_CV, double_sided, look_along, release_offscreen_renderer  # noqa: E402


class OffscreenUnavailable(RuntimeError):
    """No offscreen OpenGL context could be created on this machine."""


@dataclass
class CameraMesh:
    """A triangle mesh in the camera frame, ready to rasterize."""

    vertices: Float[np.ndarray, "V 3"]
    """Vertex positions, camera frame (metres)."""
    faces: Int[np.ndarray, "F 3"]
    """Triangles (0-based indices into `vertices`)."""
    colors: UInt8[np.ndarray, "V 4"] | None = None
    """RGBA vertex colours (None: mid grey)."""
    label: int = 1
    """Label written where this mesh is the nearest surface (build mask values: 1 object, 2 right, 3 left)."""


def normals_to_rgb(n_cam: Float[np.ndarray, "... 3"]) -> Float[np.ndarray, "... 3"]:
    """The usual normal-map colours: (n_gl + 1) / 2 with n_gl = (x, -y, -z) of the OpenCV-frame normal
    (x right, y up, z towards the viewer), so a surface facing the camera is (0.5, 0.5, 1) light blue."""
    n = np.asarray(n_cam, dtype=np.float32)
    return (n * np.array([1.0, -1.0, -1.0], np.float32) + 1.0) * 0.5


def _primitive(vertices, normals, faces, rgba: Float[np.ndarray, "V 4"], roughness: float) -> pyrender.Primitive:
    """Two-sided primitive (hold.synth.render.double_sided), so open meshes (marching-cubes shells cut
    by the bounding box) show no holes whatever pyrender culls."""
    positions, normals, faces, rgba = double_sided(vertices, normals, faces, rgba)
    material = pyrender.MetallicRoughnessMaterial(baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0,
                                                  roughnessFactor=roughness, alphaMode="OPAQUE")
    return pyrender.Primitive(
        positions=positions.astype(np.float32), normals=normals.astype(np.float32),
        indices=faces.astype(np.int64), color_0=rgba.astype(np.float32),
        material=material, mode=pyrender.constants.GLTF.TRIANGLES,
    )


class MeshRasterizer:
    """Renders lists of camera-frame meshes at one image size and intrinsics; reuse it across frames."""

    def __init__(self, K: Float[np.ndarray, "3 3"], width: int, height: int, ambient: float = 0.4,
                 light_intensity: float = 2.5, light_direction_cam: tuple[float, float, float] = (0.3, 0.5, 1.0),
                 roughness: float = 0.7, znear: float = 0.005, zfar: float = 20.0):
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f"MeshRasterizer: K must be a finite 3x3 pinhole matrix with fx, fy > 0, "
                             f"found {K.tolist()}.")
        if int(width) < 1 or int(height) < 1:
            raise ValueError(f"MeshRasterizer: image size must be >= 1 pixel, found {width}x{height}.")
        self.K, self.width, self.height, self.roughness = K, int(width), int(height), float(roughness)
        self._scene = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[ambient] * 3)
        cam = pyrender.IntrinsicsCamera(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2], znear=znear, zfar=zfar)
        self._scene.add(cam, pose=GL_FROM_CV)
        self._scene.add(pyrender.DirectionalLight(color=np.ones(3), intensity=light_intensity),
                        pose=look_along(np.asarray(light_direction_cam, dtype=np.float64)))
        try:
            self._renderer = pyrender.OffscreenRenderer(self.width, self.height)
        except Exception as e:  # no EGL / OSMesa library, or no usable device
            raise OffscreenUnavailable(
                f"offscreen OpenGL could not start with PYOPENGL_PLATFORM={os.environ.get('PYOPENGL_PLATFORM')!r} "
                f"({type(e).__name__}: {e}). Fix: install Mesa's EGL (apt install libegl1 libgl1-mesa-dri) or "
                f"OSMesa (apt install libosmesa6, then PYOPENGL_PLATFORM=osmesa).") from None
        self._nodes: list[pyrender.Node] = []

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Free this renderer's GL context (idempotent).

        pyrender's own teardown calls eglTerminate on the EGL display every context of the process
        shares (which breaks any other open renderer, e.g. hold.synth's); on EGL only this context is
        destroyed and pyrender's teardown is disarmed, as hold.synth.render does.
        """
        renderer, self._renderer = getattr(self, "_renderer", None), None
        release_offscreen_renderer(renderer)

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def __enter__(self) -> MeshRasterizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- passes ------------------------------------------------------------------------------------
    def _set(self, meshes: list[CameraMesh], colors: list[Float[np.ndarray, "V 4"]],
             normals: list[Float[np.ndarray, "V 3"]]) -> list[pyrender.Node]:
        if self._renderer is None:
            raise RuntimeError("MeshRasterizer used after close(); create a new one.")
        for node in self._nodes:
            self._scene.remove_node(node)
        self._nodes = []
        for m, c, n in zip(meshes, colors, normals):
            if len(m.faces) == 0:
                continue
            prim = _primitive(np.asarray(m.vertices, np.float32), n, np.asarray(m.faces), c, self.roughness)
            self._nodes.append(self._scene.add(pyrender.Mesh(primitives=[prim])))
        return self._nodes

    def _render(self, flags, **kw) -> tuple[np.ndarray, np.ndarray]:
        if not self._nodes:  # nothing to draw: an empty image (pyrender needs no call)
            return (np.zeros((self.height, self.width, 4), np.uint8), np.zeros((self.height, self.width), np.float32))
        color, depth = self._renderer.render(self._scene, flags=flags, **kw)
        return np.asarray(color), np.asarray(depth, dtype=np.float32)

    def shaded(self, meshes: list[CameraMesh],
               flat_colors: list[tuple[float, float, float]] | None = None) -> UInt8[np.ndarray, "H W 4"]:
        """Lit render, premultiplied RGBA over transparent black: vertex colours, or one colour per mesh."""
        self._set_shaded(meshes, flat_colors)
        return self._render(pyrender.RenderFlags.RGBA)[0]

    def shaded_views(self, meshes: list[CameraMesh],
                     T_cam_from_src: list[Float[np.ndarray, "4 4"]]) -> list[UInt8[np.ndarray, "H W 4"]]:
        """`shaded` of the same meshes moved rigidly by each transform (turntables): the geometry is
        uploaded once and only the node poses change, so a view costs one draw."""
        nodes = self._set_shaded(meshes, None)
        views = []
        for T in T_cam_from_src:
            for node in nodes:
                self._scene.set_pose(node, np.asarray(T, dtype=np.float64))
            views.append(self._render(pyrender.RenderFlags.RGBA)[0])
        return views

    def _set_shaded(self, meshes: list[CameraMesh], flat_colors) -> list[pyrender.Node]:
        normals = [vertex_normals_np(m.vertices, m.faces) for m in meshes]
        colors = []
        for i, m in enumerate(meshes):
            if flat_colors is not None:
                c = np.broadcast_to(np.array([*flat_colors[i], 1.0], np.float32), (len(m.vertices), 4))
            elif m.colors is not None:
                c = np.asarray(m.colors, np.float32) / 255.0
            else:
                c = np.full((len(m.vertices), 4), 0.6, np.float32)
            colors.append(np.concatenate([c[:, :3], np.ones((len(c), 1), np.float32)], axis=1))
        return self._set(meshes, colors, normals)

    def normals(self, meshes: list[CameraMesh]) -> UInt8[np.ndarray, "H W 4"]:
        """Camera-frame normals of the nearest surface as normal-map colours (normals_to_rgb), premultiplied RGBA."""
        normals = [vertex_normals_np(m.vertices, m.faces) for m in meshes]
        colors = [np.concatenate([normals_to_rgb(n), np.ones((len(n), 1), np.float32)], axis=1) for n in normals]
        self._set(meshes, colors, normals)
        # FLAT draws colour_0 unlit; the reversed (back) copies carry the same colours, and a back
        # face is only ever seen from inside an open shell, where the flipped normal is what faces us
        return self._render(pyrender.RenderFlags.RGBA | pyrender.RenderFlags.FLAT)[0]

    def labels(self, meshes: list[CameraMesh]) -> tuple[UInt8[np.ndarray, "H W"], Float[np.ndarray, "H W"]]:
        """(label of the nearest surface per pixel (0 = none), its depth in metres (0 = none)), at pixel centres."""
        normals = [vertex_normals_np(m.vertices, m.faces) for m in meshes]
        colors = [np.ones((len(m.vertices), 4), np.float32) for m in meshes]
        nodes = self._set(meshes, colors, normals)
        drawn = [m for m in meshes if len(m.faces)]
        seg = {node: (m.label,) * 3 for node, m in zip(nodes, drawn)}
        color, depth = self._render(pyrender.RenderFlags.SEG, seg_node_map=seg)
        return color[..., 0].astype(np.uint8), depth
