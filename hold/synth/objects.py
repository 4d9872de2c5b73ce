"""Textured rigid objects for synthetic sequences: procedural shapes or a mesh file.

`make_object` returns a textured trimesh in the object's canonical metric frame (bounding-box centre
at the origin). Texture seams need duplicated vertices (one UV per vertex), so the textured mesh is
not watertight *as indexed*; `welded` gives the same surface with vertices merged by position,
which is watertight and outward-oriented for every procedural shape (for volume, `contains`, SDF).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from jaxtyping import Float, Int
from PIL import Image

from hold.synth.textures import procedural_texture

BUILTIN_SHAPES = ("box", "cylinder", "sphere", "ellipsoid")
# Proportions relative to the longest extent, drawn per seed from these ranges: never cubic, so
# the object's pose is unambiguous (up to the shape's own symmetries).
_BOX_RATIOS = ((0.55, 0.8), (0.35, 0.6))  # the two shorter box extents
_ELLIPSOID_RATIOS = ((0.55, 0.75), (0.45, 0.6))  # the two shorter ellipsoid axes
_CYLINDER_DIAMETER_RATIO = (0.45, 0.65)  # diameter / height; the axis (z) is the longest extent
# Two faces whose normals differ by more than this are a crease (flat shading across it).
_CREASE_COS = float(np.cos(np.deg2rad(45.0)))
_ATLAS_PAD = 0.03  # fraction of an atlas cell left empty on each side (mipmap bleeding)


@dataclass
class ObjectConfig:
    """Which object to make and how to texture it."""

    shape: str = "box"
    """'box' | 'cylinder' | 'sphere' | 'ellipsoid', or a path to a mesh file (OBJ/PLY/GLB/...)."""
    size_m: float = 0.08
    """Longest bounding-box extent of a procedural shape (metres); file meshes keep their own scale."""
    texture_size: int = 1024
    """Width of the procedural texture atlas (pixels); its height is 2/3 of that (3x2 cells)."""
    seed: int = 0
    """Seed of the proportions (procedural shapes) and of the procedural texture."""


def object_names() -> list[str]:
    """The built-in procedural shapes."""
    return list(BUILTIN_SHAPES)


# ----------------------------------------------------------------------------------------------
# Geometry (pure): welded, watertight, outward-oriented meshes centred at the origin.
# ----------------------------------------------------------------------------------------------


def _revolve(
    profile_rz: Float[np.ndarray, "P 2"], sections: int
) -> tuple[Float[np.ndarray, "V 3"], Int[np.ndarray, "F 3"]]:
    """Surface of revolution about z of a profile (r, z) whose first and last points lie on the axis."""
    inner = profile_rz[1:-1]
    theta = np.linspace(0.0, 2 * np.pi, sections, endpoint=False)
    rings = np.stack(
        [
            inner[:, :1] * np.cos(theta)[None],
            inner[:, :1] * np.sin(theta)[None],
            np.repeat(inner[:, 1:2], sections, axis=1),
        ],
        axis=-1,
    ).reshape(-1, 3)
    bottom, top = len(rings), len(rings) + 1
    vertices = np.concatenate([rings, [[0, 0, profile_rz[0, 1]]], [[0, 0, profile_rz[-1, 1]]]])
    j = np.arange(sections)
    jn = (j + 1) % sections
    faces = [np.stack([np.full(sections, bottom), jn, j], axis=1)]  # bottom fan
    for i in range(len(inner) - 1):
        a, b = i * sections + j, i * sections + jn
        c, d = (i + 1) * sections + j, (i + 1) * sections + jn
        faces += [np.stack([a, b, d], axis=1), np.stack([a, d, c], axis=1)]
    last = (len(inner) - 1) * sections
    faces.append(np.stack([last + j, last + jn, np.full(sections, top)], axis=1))  # top fan
    return vertices, np.concatenate(faces)


def _cylinder(
    radius: float, height: float, sections: int = 64, side_rings: int = 16, cap_rings: int = 6
) -> trimesh.Trimesh:
    """Closed cylinder about z with evenly tessellated caps (concentric rings, no slivers)."""
    cap_r = np.linspace(0.0, radius, cap_rings + 1)[1:]
    side_z = np.linspace(-height / 2, height / 2, side_rings + 1)[1:-1]
    profile = np.concatenate(
        [
            [[0.0, -height / 2]],
            np.stack([cap_r, np.full_like(cap_r, -height / 2)], 1),
            np.stack([np.full_like(side_z, radius), side_z], 1),
            np.stack([cap_r[::-1], np.full_like(cap_r, height / 2)], 1),
            [[0.0, height / 2]],
        ]
    )
    vertices, faces = _revolve(profile, sections)
    return trimesh.Trimesh(vertices, faces, process=False)


def _procedural_geometry(shape: str, size_m: float, rng: np.random.Generator) -> trimesh.Trimesh:
    """Welded watertight mesh of a built-in shape, longest extent exactly `size_m`, centred."""
    if shape == "box":
        mesh = trimesh.creation.box(extents=np.array([1.0, *(rng.uniform(*r) for r in _BOX_RATIOS)]))
        for _ in range(4):  # 12 * 4^4 = 3072 faces
            v, f = trimesh.remesh.subdivide(mesh.vertices, mesh.faces)
            mesh = trimesh.Trimesh(v, f, process=False)
    elif shape == "cylinder":
        mesh = _cylinder(radius=rng.uniform(*_CYLINDER_DIAMETER_RATIO) / 2, height=1.0)
    elif shape == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    elif shape == "ellipsoid":
        mesh = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
        mesh.apply_scale(np.array([1.0, *(rng.uniform(*r) for r in _ELLIPSOID_RATIOS)]))
    else:
        raise ValueError(f"unknown procedural shape {shape!r}; expected one of {BUILTIN_SHAPES}.")
    mesh.merge_vertices()
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    mesh.apply_scale(size_m / float(mesh.extents.max()))
    if mesh.volume < 0:  # construction is outward already; this keeps the invariant explicit
        mesh.invert()
    return mesh


# ----------------------------------------------------------------------------------------------
# Texturing (pure): cube-map projection into a 3x2 atlas, seam vertices duplicated.
# ----------------------------------------------------------------------------------------------


def cube_map_uv(
    vertices: Float[np.ndarray, "V 3"], faces: Int[np.ndarray, "F 3"]
) -> tuple[
    Float[np.ndarray, "U 3"], Int[np.ndarray, "F 3"], Float[np.ndarray, "U 2"], Int[np.ndarray, "U"], Int[np.ndarray, "U"]
]:
    """Cube-map UVs: faces grouped by dominant normal axis (+x,-x,+y,-y,+z,-z), one atlas cell each.

    Returns (vertices_uv, faces_uv, uv, welded_index, group): vertices duplicated once per group
    they appear in, `welded_index` maps each back to its input vertex. All groups share one
    metric scale (the longest extent), so texel density is uniform over the surface.
    """
    tri = vertices[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    axis = np.argmax(np.abs(normals), axis=1)
    negative = normals[np.arange(len(faces)), axis] < 0
    face_group = 2 * axis + negative

    keys = (faces * 6 + face_group[:, None]).reshape(-1)
    unique_keys, inverse = np.unique(keys, return_inverse=True)
    welded_index = unique_keys // 6
    group = unique_keys % 6
    faces_uv = inverse.reshape(-1, 3)
    vertices_uv = vertices[welded_index]

    lo = vertices.min(axis=0)
    scale = float((vertices.max(axis=0) - lo).max())
    # In-plane axes per projection axis; the mirrored side flips u so the texture reads naturally.
    plane_axes = np.array([[1, 2], [2, 0], [0, 1]])
    g_axis = group // 2
    a = vertices_uv[np.arange(len(group)), plane_axes[g_axis, 0]] - lo[plane_axes[g_axis, 0]]
    b = vertices_uv[np.arange(len(group)), plane_axes[g_axis, 1]] - lo[plane_axes[g_axis, 1]]
    u_local = a / scale
    v_local = b / scale
    u_local = np.where(group % 2 == 1, 1.0 - u_local, u_local)
    col = g_axis  # 3 columns: x, y, z
    row = group % 2  # 2 rows: positive, negative side
    inner = 1.0 - 2.0 * _ATLAS_PAD
    u = (col + _ATLAS_PAD + inner * u_local) / 3.0
    v = (row + _ATLAS_PAD + inner * v_local) / 2.0
    return vertices_uv, faces_uv, np.stack([u, v], axis=1), welded_index, group


def crease_vertex_normals(
    vertices: Float[np.ndarray, "V 3"],
    faces: Int[np.ndarray, "F 3"],
    welded_faces: Int[np.ndarray, "F 3"],
    welded_index: Int[np.ndarray, "V"],
    crease_cos: float = _CREASE_COS,
) -> Float[np.ndarray, "V 3"]:
    """Vertex normals that are smooth across UV seams but sharp across creases (box edges, caps).

    For a (possibly duplicated) vertex, average the area-weighted normals of all faces around its
    welded position whose normal is within the crease angle of the faces it belongs to itself.
    """
    tri = vertices[faces]
    area_normals = 0.5 * np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # (F,3)
    unit = area_normals / np.maximum(np.linalg.norm(area_normals, axis=1, keepdims=True), 1e-30)
    # Reference direction of each output vertex: its own incident faces.
    ref = np.zeros_like(vertices)
    np.add.at(ref, faces.reshape(-1), np.repeat(area_normals, 3, axis=0))
    ref /= np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-30)
    # Incidence welded vertex -> output vertices, as a padded table (each has <= 6 copies).
    order = np.argsort(welded_index, kind="stable")
    n_welded = int(welded_index.max()) + 1 if len(welded_index) else 0
    counts = np.bincount(welded_index, minlength=n_welded)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    normals = np.zeros_like(vertices)
    corner_w = welded_faces.reshape(-1)  # welded vertex of each face corner
    corner_n = np.repeat(area_normals, 3, axis=0)
    corner_unit = np.repeat(unit, 3, axis=0)
    for copy in range(int(counts.max()) if len(counts) else 0):
        has = counts[corner_w] > copy
        out = order[starts[corner_w[has]] + copy]
        keep = np.einsum("ij,ij->i", corner_unit[has], ref[out]) > crease_cos
        np.add.at(normals, out[keep], corner_n[has][keep])
    norm = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.where(norm > 1e-30, normals / np.maximum(norm, 1e-30), ref)


def texture_mesh(geometry: trimesh.Trimesh, texture: Image.Image) -> trimesh.Trimesh:
    """A cube-map-textured copy of a welded mesh (same surface; seam vertices duplicated)."""
    vertices_uv, faces_uv, uv, welded_index, _ = cube_map_uv(geometry.vertices, geometry.faces)
    normals = crease_vertex_normals(vertices_uv, faces_uv, geometry.faces, welded_index)
    visual = trimesh.visual.TextureVisuals(uv=uv, image=texture)
    return trimesh.Trimesh(vertices=vertices_uv, faces=faces_uv, vertex_normals=normals, visual=visual, process=False)


def welded(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Geometry-only copy with vertices merged by position (closes UV/normal seams), no visuals."""
    out = trimesh.Trimesh(np.asarray(mesh.vertices).copy(), np.asarray(mesh.faces).copy(), process=False)
    out.merge_vertices(merge_tex=True, merge_norm=True)
    out.remove_unreferenced_vertices()
    return out


# ----------------------------------------------------------------------------------------------
# Orchestration
# ----------------------------------------------------------------------------------------------


def _load_mesh_file(path: Path, cfg: ObjectConfig) -> trimesh.Trimesh:
    """Load a mesh file keeping its texture / vertex colours; clear errors for bad files."""
    if not path.is_file():
        raise FileNotFoundError(
            f"ObjectConfig.shape: mesh file {str(path)!r} does not exist. Fix: pass an existing "
            f"OBJ/PLY/GLB/STL path, or one of the built-in shapes {list(BUILTIN_SHAPES)}."
        )
    try:
        mesh = trimesh.load(str(path), force="mesh")
    except Exception as err:  # trimesh raises many types for unreadable input
        raise ValueError(
            f"ObjectConfig.shape: could not read {str(path)!r} as a mesh ({type(err).__name__}: {err}). "
            f"Fix: pass a valid triangle-mesh file (OBJ/PLY/GLB/STL/OFF)."
        ) from err
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        found = type(mesh).__name__ if not isinstance(mesh, trimesh.Trimesh) else "a mesh with 0 faces"
        raise ValueError(
            f"ObjectConfig.shape: {str(path)!r} is not a triangle mesh (found {found}). "
            f"Fix: pass a file containing triangle faces (e.g. export the object as OBJ or GLB)."
        )
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    welded_mesh = welded(mesh)
    visual = mesh.visual
    material = getattr(visual, "material", None)
    has_texture = visual.kind == "texture" and getattr(visual, "uv", None) is not None and (
        getattr(material, "image", None) is not None or getattr(material, "baseColorTexture", None) is not None)
    if not has_texture and visual.kind not in ("vertex", "face"):
        # No appearance at all: give it the procedural texture (SfM needs something to match).
        mesh = texture_mesh(welded_mesh, Image.fromarray(_atlas(cfg.texture_size, cfg.seed)))
    if not welded_mesh.is_watertight:
        warnings.warn(
            f"object mesh {str(path)!r} is not watertight ({len(welded_mesh.faces)} faces after welding): "
            f"kept as is; MeshSDF still works (sign from surface normals), but volume/contains do not.",
            stacklevel=3,
        )
    return mesh


def _atlas(width: int, seed: int) -> np.ndarray:
    """The 3x2-cell texture atlas: `width` wide, 2/3 as high."""
    return procedural_texture(int(width), seed)[: (2 * int(width)) // 3]


def make_object(cfg: ObjectConfig) -> trimesh.Trimesh:
    """The textured object mesh in its canonical metric frame, bounding-box centre at the origin.

    Procedural shapes: a few thousand faces, longest extent `cfg.size_m`, proportions drawn from
    `cfg.seed`, cube-map textured with `procedural_texture`; `welded(mesh)` is watertight with
    positive volume. Mesh files: loaded with their own texture or vertex colours (the procedural
    texture if they have neither) and their own metric scale, recentred.
    """
    if cfg.shape in BUILTIN_SHAPES:
        if not cfg.size_m > 0:
            raise ValueError(f"ObjectConfig.size_m must be > 0 metres, found {cfg.size_m}; e.g. 0.08.")
        if int(cfg.texture_size) < 48:
            raise ValueError(f"ObjectConfig.texture_size must be >= 48 pixels, found {cfg.texture_size}; e.g. 1024.")
        geometry = _procedural_geometry(cfg.shape, float(cfg.size_m), np.random.default_rng(cfg.seed))
        return texture_mesh(geometry, Image.fromarray(_atlas(cfg.texture_size, cfg.seed)))
    path = Path(cfg.shape).expanduser()
    if path.suffix == "" and not path.exists():
        raise ValueError(
            f"ObjectConfig.shape: unknown shape {cfg.shape!r}. Expected one of {list(BUILTIN_SHAPES)} or a "
            f"path to a mesh file (OBJ/PLY/GLB/...)."
        )
    return _load_mesh_file(path, cfg)
