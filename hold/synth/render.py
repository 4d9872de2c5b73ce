"""Offscreen rendering of a textured object and a hand mesh from a static camera (pyrender, EGL).

Everything is in the OpenCV camera frame (x right, y down, z forward, metres). The pyrender world
frame *is* that frame: the pyrender camera sits at the origin with pose diag(1,-1,-1,1) (an
OpenGL camera looking down its -z is an OpenCV camera looking down +z), object poses are
`T_cam_from_obj` as given, and hand vertices are used as they come.

Pixel convention (checked by tests): pixel (u, v) covers [u, u+1) x [v, v+1), its centre is at
(u + 0.5, v + 0.5), and a camera point x projects to (K x)[:2] / (K x)[2] in those coordinates,
as in `hold.geometry.camera`.
`pyrender.IntrinsicsCamera` maps cx/cy that way already (rows are flipped to top-first on read).

Three passes per frame:
- colour (RGBA, 4x MSAA): shading and anti-aliased edges, alpha-composited over the backdrop;
- object alone and hand alone in pyrender's SEG mode: it rasterizes with multisampling off, so
  coverage and depth are sampled exactly at pixel centres (the depth resolved from a multisample
  buffer is taken at one sub-sample, ~0.4 px off-centre on Mesa). Labels come from those two
  depths (the nearer surface wins), so they are exact per pixel and consistent with visibility.
"""
from __future__ import annotations

import os

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")  # headless; must precede the pyrender import

from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402
import pyrender  # noqa: E402
import trimesh  # noqa: E402
from jaxtyping import Float, Int, UInt8  # noqa: E402
from PIL import Image  # noqa: E402

from hold.synth.objects import welded  # noqa: E402
from hold.synth.textures import background_image, skin_colors  # noqa: E402

LABEL_BACKGROUND, LABEL_OBJECT, LABEL_RIGHT_HAND = 0, 1, 2
GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])
"""OpenCV camera (x right, y down, z forward) expressed as an OpenGL camera pose in the same frame."""


@dataclass
class RenderConfig:
    """Camera, lights and backdrop of the synthetic renderer."""

    width: int = 320
    """Image width (pixels)."""
    height: int = 240
    """Image height (pixels)."""
    K: list[list[float]] | None = None
    """3x3 OpenCV intrinsics (pixels, centres at +0.5); None = focal `width`, centred principal point."""
    znear: float = 0.01
    """Near clipping plane (metres)."""
    zfar: float = 10.0
    """Far clipping plane (metres)."""
    ambient: float = 0.35
    """Ambient light level (0..1, multiplies the base colour)."""
    light_intensity: float = 2.2
    """Directional key light intensity (pyrender units; diffuse = colour / pi * intensity * cos)."""
    light_direction_cam: list[float] = field(default_factory=lambda: [0.35, 0.55, 1.0])
    """Direction the key light travels in the camera frame (here: from the upper left, forwards)."""
    background_seed: int = 0
    """Seed of the static backdrop image."""
    object_roughness: float = 0.65
    """PBR roughness of the object material (0 glossy .. 1 matte); metallic is 0."""
    hand_roughness: float = 0.75
    """PBR roughness of the hand material."""
    max_texture_size: int = 2048
    """Larger object textures are downscaled to this many pixels on their long side on upload."""

    def intrinsics(self) -> Float[np.ndarray, "3 3"]:
        """K as a (3,3) array (the default when `K` is None)."""
        if self.K is None:
            f = float(self.width)
            return np.array([[f, 0.0, self.width / 2.0], [0.0, f, self.height / 2.0], [0.0, 0.0, 1.0]])
        K = np.asarray(self.K, dtype=np.float64)
        if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(
                f"RenderConfig.K must be a finite 3x3 intrinsics matrix with fx, fy > 0, found {K.tolist()}."
            )
        if abs(K[0, 1]) > 1e-9 or np.abs(K[2] - [0, 0, 1]).max() > 1e-9:
            raise ValueError(
                f"RenderConfig.K: skew must be 0 and the last row [0, 0, 1], found {K.tolist()}; "
                "pass a plain pinhole K."
            )
        return K


def look_along(direction: Float[np.ndarray, "3"]) -> Float[np.ndarray, "4 4"]:
    """Pose whose -z axis points along `direction` (pyrender lights shine along their -z)."""
    z = -np.asarray(direction, dtype=np.float64)
    z /= np.linalg.norm(z)
    helper = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    return pose


def _texture_array(image, max_size: int) -> UInt8[np.ndarray, "H W 3"] | None:
    """A PIL image / array as top-first RGB uint8, downscaled to `max_size` on its long side."""
    if image is None:
        return None
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    pil = pil.convert("RGB")
    if max(pil.size) > max_size:
        s = max_size / max(pil.size)
        pil = pil.resize((max(1, round(pil.width * s)), max(1, round(pil.height * s))), Image.LANCZOS)
    return np.asarray(pil, dtype=np.uint8)


def double_sided(
    positions: Float[np.ndarray, "V 3"], normals: Float[np.ndarray, "V 3"], faces: Int[np.ndarray, "F 3"], *extra
):
    """Append a reversed copy of every face with flipped normals: no backface culling can hole it.

    pyrender's SEG/depth passes always cull back faces (whatever the material says), so an open or
    inconsistently wound mesh is made two-sided geometrically instead. `extra` per-vertex arrays
    (colours, uvs) are duplicated alongside.
    """
    n = len(positions)
    out_faces = np.concatenate([faces, faces[:, ::-1] + n])
    return (np.concatenate([positions, positions]), np.concatenate([normals, -normals]), out_faces,
            *[None if e is None else np.concatenate([e, e]) for e in extra])


class SynthRenderer:
    """Renders RGB, depth, exact labels and the amodal object mask; reuse it across frames."""

    def __init__(self, cfg: RenderConfig | None = None):
        self.cfg = cfg or RenderConfig()
        c = self.cfg
        if int(c.width) < 1 or int(c.height) < 1:
            raise ValueError(f"RenderConfig.width/height must be >= 1 pixel, found {c.width}x{c.height}.")
        if not 0 < c.znear < c.zfar:
            raise ValueError(f"RenderConfig: need 0 < znear < zfar (metres), found znear={c.znear}, zfar={c.zfar}.")
        self.K = c.intrinsics()
        self.width, self.height = int(c.width), int(c.height)
        self.background = background_image(self.width, self.height, c.background_seed)
        """(H,W,3) uint8 static backdrop the colour pass is composited over."""

        self._scene = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[c.ambient] * 3)
        camera = pyrender.IntrinsicsCamera(
            fx=self.K[0, 0], fy=self.K[1, 1], cx=self.K[0, 2], cy=self.K[1, 2], znear=c.znear, zfar=c.zfar
        )
        self._scene.add(camera, pose=GL_FROM_CV)
        light = pyrender.DirectionalLight(color=np.ones(3), intensity=c.light_intensity)
        self._scene.add(light, pose=look_along(np.asarray(c.light_direction_cam, dtype=np.float64)))
        self._renderer = pyrender.OffscreenRenderer(self.width, self.height)
        self._object_node: pyrender.Node | None = None
        self._object_source: trimesh.Trimesh | None = None
        self._hand_node: pyrender.Node | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Free this renderer's GL resources and context (idempotent; also run on garbage collection).

        pyrender's own teardown (`OffscreenRenderer.delete`, and its `__del__`s) calls eglTerminate
        on the EGL display that every context of the process shares, which breaks any other
        renderer still open. On EGL, only this renderer's context is destroyed and pyrender's
        teardown is disarmed; the display itself is released at process exit.
        """
        renderer, self._renderer = getattr(self, "_renderer", None), None
        release_offscreen_renderer(renderer)

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: modules may already be gone
            pass

    def __enter__(self) -> SynthRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- scene building ----------------------------------------------------------------------------

    def _object_mesh(self, mesh: trimesh.Trimesh) -> pyrender.Mesh:
        """pyrender mesh of a textured / vertex-coloured / plain trimesh (built once per object)."""
        positions = np.asarray(mesh.vertices, dtype=np.float32)
        normals = np.asarray(mesh.vertex_normals, dtype=np.float32)
        faces = np.asarray(mesh.faces, dtype=np.int64)
        uv = colors = texture = None
        base = [0.6, 0.6, 0.6, 1.0]
        visual = mesh.visual
        if visual.kind == "texture" and getattr(visual, "uv", None) is not None:
            material = visual.material
            image = getattr(material, "image", None)  # SimpleMaterial
            if image is None:
                image = getattr(material, "baseColorTexture", None)  # PBRMaterial (GLB)
            texture = _texture_array(image, int(self.cfg.max_texture_size))
            if texture is not None:
                uv = np.asarray(visual.uv, dtype=np.float32)
                base = [1.0, 1.0, 1.0, 1.0]  # the texture carries the colour
            else:
                colors = np.asarray(visual.to_color().vertex_colors, dtype=np.float32) / 255.0
        elif visual.kind in ("vertex", "face"):
            colors = np.asarray(visual.vertex_colors, dtype=np.float32) / 255.0
        if not welded(mesh).is_watertight:
            positions, normals, faces, uv, colors = double_sided(positions, normals, faces, uv, colors)
        material = pyrender.MetallicRoughnessMaterial(
            baseColorFactor=base,
            metallicFactor=0.0,
            roughnessFactor=float(self.cfg.object_roughness),
            alphaMode="OPAQUE",
            baseColorTexture=None if texture is None else pyrender.Texture(source=texture, source_channels="RGB"),
        )
        primitive = pyrender.Primitive(
            positions=positions, normals=normals, indices=faces, texcoord_0=uv, color_0=colors,
            material=material, mode=pyrender.constants.GLTF.TRIANGLES,
        )
        return pyrender.Mesh(primitives=[primitive])

    def _hand_mesh(
        self, vertices: Float[np.ndarray, "V 3"], faces: Int[np.ndarray, "F 3"], colors: UInt8[np.ndarray, "V C"]
    ) -> pyrender.Mesh:
        """Two-sided pyrender mesh of a posed hand with per-vertex colours (rebuilt every frame)."""
        tm = trimesh.Trimesh(vertices, faces, process=False)
        normals = np.asarray(tm.vertex_normals, dtype=np.float32)
        rgba = np.asarray(colors, dtype=np.float32) / 255.0
        if rgba.shape[1] == 3:
            rgba = np.concatenate([rgba, np.ones((len(rgba), 1), np.float32)], axis=1)
        positions, normals, faces2, rgba = double_sided(vertices.astype(np.float32), normals, faces, rgba)
        material = pyrender.MetallicRoughnessMaterial(
            baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0,
            roughnessFactor=float(self.cfg.hand_roughness), alphaMode="OPAQUE",
        )
        primitive = pyrender.Primitive(
            positions=positions, normals=normals, indices=faces2, color_0=rgba, material=material,
            mode=pyrender.constants.GLTF.TRIANGLES,
        )
        return pyrender.Mesh(primitives=[primitive])

    def _set_object(self, mesh: trimesh.Trimesh | None, T_cam_from_obj) -> None:
        if mesh is None:
            if self._object_node is not None:
                self._object_node.mesh.is_visible = False
            return
        if not isinstance(mesh, trimesh.Trimesh):
            raise TypeError(f"render: object_mesh must be a trimesh.Trimesh, found {type(mesh).__name__}.")
        if T_cam_from_obj is None:
            raise ValueError("render: T_cam_from_obj (4,4) is required when object_mesh is given.")
        T = np.asarray(T_cam_from_obj, dtype=np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all() or np.abs(T[3] - [0, 0, 0, 1]).max() > 1e-6:
            raise ValueError(
                f"render: T_cam_from_obj must be a finite (4,4) rigid transform with last row [0,0,0,1], "
                f"found shape {T.shape}."
            )
        if mesh is not self._object_source:  # new object: upload geometry + texture once
            if self._object_node is not None:
                self._scene.remove_node(self._object_node)
            self._object_node = self._scene.add(self._object_mesh(mesh), pose=T)
            self._object_source = mesh
        self._scene.set_pose(self._object_node, T)
        self._object_node.mesh.is_visible = True

    def _set_hand(self, vertices, faces, colors) -> None:
        if self._hand_node is not None:
            self._scene.remove_node(self._hand_node)
            self._hand_node = None
        if vertices is None:
            return
        v = np.asarray(vertices, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != 3 or not np.isfinite(v).all():
            raise ValueError(f"render: hand_vertices_cam must be finite (V,3) metres, found shape {v.shape}.")
        if faces is None:
            raise ValueError("render: hand_faces (F,3) is required when hand_vertices_cam is given.")
        f = np.asarray(faces)
        if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer) or f.min() < 0 or f.max() >= len(v):
            raise ValueError(
                f"render: hand_faces must be (F,3) integer indices into {len(v)} vertices, "
                f"found shape {f.shape}, dtype {f.dtype}."
            )
        c = skin_colors(len(v), seed=0) if colors is None else np.asarray(colors)
        if c.shape not in ((len(v), 4), (len(v), 3)) or c.dtype != np.uint8:
            raise ValueError(
                f"render: hand_colors must be uint8 (V,4) or (V,3) with V={len(v)}, found {c.shape} {c.dtype}."
            )
        self._hand_node = self._scene.add(self._hand_mesh(v, f.astype(np.int64), c))

    # -- rendering ---------------------------------------------------------------------------------

    def _entity_depth(self, node: pyrender.Node | None) -> Float[np.ndarray, "H W"]:
        """Depth (metres, 0 = empty) of one node alone, sampled at pixel centres (SEG mode)."""
        if node is None or not node.mesh.is_visible:
            return np.zeros((self.height, self.width), np.float32)
        flags = pyrender.RenderFlags.SEG
        _, depth = self._renderer.render(self._scene, flags=flags, seg_node_map={node: (255, 255, 255)})
        return np.asarray(depth, dtype=np.float32)

    def render(
        self,
        object_mesh: trimesh.Trimesh | None,
        T_cam_from_obj: Float[np.ndarray, "4 4"] | None,
        hand_vertices_cam: Float[np.ndarray, "V 3"] | None = None,
        hand_faces: Int[np.ndarray, "F 3"] | None = None,
        hand_colors: UInt8[np.ndarray, "V 4"] | None = None,
    ) -> dict[str, np.ndarray]:
        """Render one frame. Pass the same `object_mesh` instance every frame: it is uploaded once
        (a different instance replaces it; editing the cached one in place is not picked up).

        Returns rgb (H,W,3) uint8 over the backdrop, depth (H,W) float32 metres (0 = nothing),
        labels (H,W) uint8 (0 background, 1 object, 2 right hand), object_amodal (H,W) bool (the
        object's silhouette ignoring the hand), object_depth / hand_depth (H,W) float32 amodal
        per-entity depths.
        """
        if self._renderer is None:
            raise RuntimeError("SynthRenderer.render called after close(); create a new renderer.")
        self._set_object(object_mesh, T_cam_from_obj)
        self._set_hand(hand_vertices_cam, hand_faces, hand_colors)
        object_node = self._object_node if object_mesh is not None else None

        depth_obj = self._entity_depth(object_node)
        depth_hand = self._entity_depth(self._hand_node)
        labels, depth = compose_labels(depth_obj, depth_hand)

        if object_node is None and self._hand_node is None:
            rgb = self.background.copy()
        else:
            color, _ = self._renderer.render(self._scene, flags=pyrender.RenderFlags.RGBA)
            rgb = composite(color, self.background)
        return {
            "rgb": rgb,
            "depth": depth,
            "labels": labels,
            "object_amodal": depth_obj > 0,
            "object_depth": depth_obj,
            "hand_depth": depth_hand,
        }


def compose_labels(
    depth_object: Float[np.ndarray, "H W"], depth_hand: Float[np.ndarray, "H W"]
) -> tuple[UInt8[np.ndarray, "H W"], Float[np.ndarray, "H W"]]:
    """Per-pixel labels and visible depth from per-entity depths (0 = empty): the nearer one wins."""
    has_obj = depth_object > 0
    has_hand = depth_hand > 0
    hand_wins = has_hand & (~has_obj | (depth_hand < depth_object))
    labels = np.zeros(depth_object.shape, np.uint8)
    labels[has_obj] = LABEL_OBJECT
    labels[hand_wins] = LABEL_RIGHT_HAND
    depth = np.where(hand_wins, depth_hand, np.where(has_obj, depth_object, 0.0)).astype(np.float32)
    return labels, depth


def composite(rgba: UInt8[np.ndarray, "H W 4"], background: UInt8[np.ndarray, "H W 3"],
              opacity: float = 1.0) -> UInt8[np.ndarray, "H W 3"]:
    """Premultiplied RGBA (cleared to transparent black, MSAA-resolved) over an opaque backdrop, the RGBA
    layer scaled by `opacity` (0..1)."""
    color = rgba[..., :3].astype(np.float32) * opacity
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0 * opacity
    out = color + (1.0 - alpha) * background.astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def release_offscreen_renderer(renderer) -> None:
    """Free one pyrender OffscreenRenderer's GL context without terminating the shared EGL display.

    pyrender's own teardown (`OffscreenRenderer.delete`, and its `__del__`s) calls eglTerminate on
    the EGL display that every context of the process shares, which breaks any other renderer still
    open. On EGL, only this renderer's context is destroyed and pyrender's teardown is disarmed; the
    display itself is released at process exit. Other platforms use pyrender's teardown.
    """
    if renderer is None:
        return
    platform = renderer._platform
    if not hasattr(platform, "_egl_display"):  # other platforms: pyrender's teardown is fine
        renderer.delete()
        return
    from OpenGL import EGL
    from OpenGL.error import GLError

    try:
        platform.make_current()
        renderer._renderer.delete()
        EGL.eglMakeCurrent(platform._egl_display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT)
        EGL.eglDestroyContext(platform._egl_display, platform._egl_context)
    except (AssertionError, GLError):
        pass  # the display was already terminated elsewhere: nothing of ours is left to free
    platform._egl_context = platform._egl_display = None  # delete_context() now does nothing
    renderer._platform = None  # and OffscreenRenderer.delete() stops before touching EGL
