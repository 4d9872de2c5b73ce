"""Read and write triangle meshes (PLY / OBJ / GLB by suffix) with optional RGBA vertex colours.

Writes are atomic (temp file in the same folder + os.replace, via `hold.data.io.atomic_write_bytes`):
an interrupted export never leaves a half-written mesh and keeps any previous file. Vertices are
stored as float32 (PLY and GLB are exact for float32 input; OBJ text keeps 8 decimals).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from jaxtyping import Float, Int, UInt8

from hold.data.io import atomic_write_bytes

MESH_FORMATS = {".ply": "ply", ".obj": "obj", ".glb": "glb"}
"""Supported suffixes (case-insensitive) and the trimesh file type each maps to."""


def _format(path: Path, func: str) -> str:
    fmt = MESH_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{func}: '{path}' has suffix '{path.suffix}', expected one of "
                         f"{sorted(MESH_FORMATS)}; rename the file.")
    return fmt


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensors without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_colors(colors, V: int, path: Path) -> UInt8[np.ndarray, "V 4"]:
    c = _numpy(colors)
    if c.ndim != 2 or c.shape[0] != V or c.shape[1] not in (3, 4):
        raise ValueError(f"write_mesh('{path}'): 'vertex_colors' must have shape (V={V}, 3) or (V, 4), "
                         f"found {c.shape}.")
    if c.dtype != np.uint8:
        if not np.issubdtype(c.dtype, np.floating) or not np.isfinite(c).all() or c.min() < 0 or c.max() > 1:
            raise ValueError(f"write_mesh('{path}'): 'vertex_colors' must be uint8 in [0, 255] or floats in "
                             f"[0, 1], found dtype {c.dtype}; convert with (rgb * 255).round().astype(np.uint8).")
        c = np.round(c * 255.0).astype(np.uint8)
    if c.shape[1] == 3:
        c = np.concatenate([c, np.full((V, 1), 255, dtype=np.uint8)], axis=1)
    return c


def write_mesh(
    path: Path | str,
    vertices: Float[np.ndarray, "V 3"],
    faces: Int[np.ndarray, "F 3"],
    vertex_colors: UInt8[np.ndarray, "V C"] | Float[np.ndarray, "V C"] | None = None,
) -> Path:
    """Write a triangle mesh atomically as PLY, OBJ or GLB (chosen by the suffix of `path`).

    `vertex_colors` (optional): RGB or RGBA, uint8 or floats in [0, 1]. Parent folders are
    created. An empty mesh (V = F = 0) is written as a valid empty file. Returns the path.
    """
    import trimesh  # heavy import, only when a mesh is written

    path = Path(path)
    fmt = _format(path, "write_mesh")
    v = _numpy(vertices)
    f = _numpy(faces)
    if v.ndim != 2 or v.shape[1] != 3 or not np.issubdtype(v.dtype, np.number) or not np.isfinite(v).all():
        raise ValueError(f"write_mesh('{path}'): 'vertices' must be finite numbers of shape (V, 3), "
                         f"found shape {v.shape} dtype {v.dtype}.")
    f = f.reshape(-1, 3) if f.size == 0 else f
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"write_mesh('{path}'): 'faces' must be integers of shape (F, 3), "
                         f"found shape {f.shape} dtype {f.dtype}.")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"write_mesh('{path}'): 'faces' index vertices {f.min()}..{f.max()} but there are "
                         f"{len(v)} vertices; faces must be 0-based indices into 'vertices'.")
    colors = None if vertex_colors is None else _check_colors(vertex_colors, len(v), path)

    if len(v) == 0 and fmt == "obj":  # trimesh cannot export an empty OBJ; an OBJ with no elements is valid
        data: bytes | str = "# empty mesh\n"
    else:
        mesh = trimesh.Trimesh(v.astype(np.float32), f.astype(np.int64), vertex_colors=colors, process=False)
        data = mesh.export(file_type=fmt)  # explicit type: the temp file's suffix is '.tmp'
    atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)
    return path


def read_mesh(
    path: Path | str,
) -> tuple[Float[np.ndarray, "V 3"], Int[np.ndarray, "F 3"], UInt8[np.ndarray, "V 4"] | None]:
    """Read a PLY / OBJ / GLB mesh as (vertices float32, faces int64, RGBA uint8 vertex colours or None).

    Vertices are not merged, dropped or reordered (process=False, maintain_order=True); a GLB
    scene is flattened into one mesh with its node transforms applied. Textured meshes get
    per-vertex colours sampled from the texture; meshes without colours return None.
    """
    import trimesh  # heavy import, only when a mesh is read

    path = Path(path)
    fmt = _format(path, "read_mesh")
    if not path.is_file():
        raise FileNotFoundError(f"read_mesh: '{path}' does not exist; check the path (meshes are written by "
                                f"`hold export`).")
    try:
        # maintain_order: the OBJ loader otherwise drops vertices no face references.
        mesh = trimesh.load(path, file_type=fmt, process=False, force="mesh", maintain_order=True)
    except Exception as e:  # trimesh raises many types on malformed files
        raise ValueError(f"read_mesh: '{path}' cannot be read as a {fmt.upper()} mesh "
                         f"({type(e).__name__}: {e}); re-export it.") from e
    vertices = np.asarray(mesh.vertices, dtype=np.float32).reshape(-1, 3)
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    colors = None
    kind = getattr(mesh.visual, "kind", None) if len(vertices) else None
    if kind == "texture":
        try:
            colors = np.asarray(mesh.visual.to_color().vertex_colors, dtype=np.uint8)
        except Exception:  # a texture without an image or UVs: no usable colours
            colors = None
    elif kind == "vertex":
        colors = np.asarray(mesh.visual.vertex_colors, dtype=np.uint8)
    if colors is not None and colors.shape != (len(vertices), 4):
        colors = None
    return vertices, faces, colors
