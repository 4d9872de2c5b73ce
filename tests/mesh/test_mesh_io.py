import os

import numpy as np
import pytest
import torch

import hold  # noqa: F401  (import-order side effects)
from hold.mesh import MeshConfig, color_vertices, extract_mesh
from hold.mesh_io import read_mesh, write_mesh


def random_mesh(seed=0, V=60, F=100):
    rng = np.random.default_rng(seed)
    v = (rng.normal(size=(V, 3)) * [0.3, 1.7, 0.05] + [0.1, -2.0, 3.0]).astype(np.float32)
    f = rng.integers(0, V, size=(F, 3)).astype(np.int64)
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    c = rng.integers(0, 256, size=(V, 4)).astype(np.uint8)
    c[:, 3] = 255
    return v, f, c


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_round_trip(tmp_path, suffix):
    v, f, c = random_mesh()
    path = write_mesh(tmp_path / "a" / "b" / f"mesh{suffix}", v, f, c)  # parent folders created
    assert path.is_file() and not leftovers(path.parent)
    v2, f2, c2 = read_mesh(path)
    assert v2.dtype == np.float32 and f2.dtype == np.int64
    assert v2.shape == v.shape and np.abs(v2 - v).max() < 1e-6  # order and count kept (no merging)
    np.testing.assert_array_equal(f2, f)
    assert c2 is not None and c2.dtype == np.uint8
    np.testing.assert_array_equal(c2, c)
    # Without colours: no colours come back.
    write_mesh(path, v, f)
    v3, f3, c3 = read_mesh(path)
    assert c3 is None and np.abs(v3 - v).max() < 1e-6 and (f3 == f).all()


def test_color_inputs_rgb_and_float(tmp_path):
    v, f, c = random_mesh(1)
    write_mesh(tmp_path / "rgb.ply", v, f, c[:, :3])
    np.testing.assert_array_equal(read_mesh(tmp_path / "rgb.ply")[2], c)  # alpha filled with 255
    write_mesh(tmp_path / "float.ply", torch.from_numpy(v), torch.from_numpy(f), c[:, :3] / 255.0)
    np.testing.assert_array_equal(read_mesh(tmp_path / "float.ply")[2], c)


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_empty_mesh(tmp_path, suffix):
    path = write_mesh(tmp_path / f"empty{suffix}", np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64))
    v, f, c = read_mesh(path)
    assert v.shape == (0, 3) and f.shape == (0, 3) and c is None


def test_interrupted_write_keeps_existing_file(tmp_path, monkeypatch):
    v, f, c = random_mesh(2)
    path = write_mesh(tmp_path / "m.ply", v, f, c)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(os, "replace", fail)
    v_new, f_new, _ = random_mesh(3, V=80)
    with pytest.raises(OSError, match="simulated"):
        write_mesh(path, v_new, f_new)
    monkeypatch.undo()
    assert path.read_bytes() == before and not leftovers(tmp_path)
    v2, f2, c2 = read_mesh(path)
    assert np.abs(v2 - v).max() < 1e-6 and (f2 == f).all() and (c2 == c).all()


def test_bad_inputs(tmp_path):
    v, f, c = random_mesh()
    with pytest.raises(ValueError, match="suffix '.stl'"):
        write_mesh(tmp_path / "m.stl", v, f)
    with pytest.raises(ValueError, match="'faces' index vertices"):
        write_mesh(tmp_path / "m.ply", v, f + len(v))
    with pytest.raises(ValueError, match="'vertices' must be finite"):
        write_mesh(tmp_path / "m.ply", np.full_like(v, np.nan), f)
    with pytest.raises(ValueError, match="'vertex_colors' must have shape"):
        write_mesh(tmp_path / "m.ply", v, f, c[:-1])
    with pytest.raises(ValueError, match="uint8 in \\[0, 255\\] or floats"):
        write_mesh(tmp_path / "m.ply", v, f, c.astype(np.float32))  # floats > 1: wrong scale
    assert not any(tmp_path.iterdir())  # nothing written by a refused call
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_mesh(tmp_path / "missing.obj")
    (tmp_path / "junk.glb").write_bytes(b"not a glb")
    with pytest.raises(ValueError, match="cannot be read as a GLB"):
        read_mesh(tmp_path / "junk.glb")


def test_extract_color_write_read(tmp_path):
    def sdf(x):
        return x.norm(dim=-1) - 0.3

    v, f = extract_mesh(sdf, (-0.5,) * 3, (0.5,) * 3, MeshConfig(resolution=20))
    rgba = color_vertices(lambda x: (x + 0.5).clamp(0, 1), v)
    for suffix in (".ply", ".glb"):
        v2, f2, c2 = read_mesh(write_mesh(tmp_path / f"sphere{suffix}", v, f, rgba))
        np.testing.assert_array_equal(v2, v)
        np.testing.assert_array_equal(f2, f)
        np.testing.assert_array_equal(c2, rgba)
