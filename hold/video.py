"""Image sequences to disk: PNG frames and an H.264 mp4 every browser and player opens (render, refine QA).

mp4: libx264, yuv420p (the pixel format players expect), which needs even width and height: odd
sizes are padded by one replicated row/column (never rescaled, so pixels stay where they were).
Both are written atomically (temp file + rename): an interrupted render never leaves a half file.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from jaxtyping import UInt8

from hold.data.io import write_image


def even_pad(image: UInt8[np.ndarray, "H W 3"]) -> UInt8[np.ndarray, "H2 W2 3"]:
    """Pad to even height and width by replicating the last row / column (yuv420p needs even sizes)."""
    H, W = image.shape[:2]
    return np.pad(image, ((0, H % 2), (0, W % 2), (0, 0)), mode="edge") if (H % 2 or W % 2) else image


def write_mp4(path: Path | str, frames: list[UInt8[np.ndarray, "H W 3"]], fps: float = 10.0, crf: int = 18) -> Path:
    """Encode RGB frames (all the same size) to an H.264 yuv420p mp4 at `fps` frames per second."""
    import imageio_ffmpeg

    path = Path(path)
    if not frames:
        raise ValueError(f"write_mp4('{path}'): no frames to encode; pass at least one (H, W, 3) uint8 image.")
    shape = frames[0].shape
    for i, f in enumerate(frames):
        if f.shape != shape or f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
            raise ValueError(f"write_mp4('{path}'): frame {i} is {f.shape} {f.dtype}, expected {shape} uint8 RGB "
                             f"like frame 0.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.mp4")  # ffmpeg picks the container from the suffix
    first = even_pad(frames[0])
    writer = imageio_ffmpeg.write_frames(
        str(tmp), size=(first.shape[1], first.shape[0]), fps=float(fps), codec="libx264", pix_fmt_out="yuv420p",
        macro_block_size=1, quality=None, output_params=["-crf", str(int(crf)), "-movflags", "+faststart"],
        ffmpeg_log_level="error",
    )
    writer.send(None)  # start ffmpeg
    try:
        for f in frames:
            writer.send(np.ascontiguousarray(even_pad(f)))
    finally:
        writer.close()
    os.replace(tmp, path)
    return path


def write_frames(folder: Path | str, frames: dict[int, UInt8[np.ndarray, "H W 3"]]) -> list[Path]:
    """PNG per frame, named by frame index (000042.png); returns the paths in index order."""
    folder = Path(folder)
    paths = []
    for i in sorted(frames):
        p = folder / f"{i:06d}.png"
        write_image(p, frames[i])
        paths.append(p)
    return paths


def read_mp4(path: Path | str) -> tuple[list[UInt8[np.ndarray, "H W 3"]], float]:
    """(decoded RGB frames, fps) of a video: what tests and QA use to check an encode."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    W, H = meta["size"]
    frames = [np.frombuffer(b, np.uint8).reshape(H, W, 3) for b in reader]
    return frames, float(meta["fps"])
