"""`hold render`: a trained run -> videos, turntables, per-frame meshes and an animated GLB (see render.cli)."""
