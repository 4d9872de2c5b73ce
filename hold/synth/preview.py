"""A contact sheet of a sequence build: frames on top, label masks blended over them below."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hold.data import load_sequence
from hold.data.io import write_image

# label -> overlay colour (object orange, right hand blue, left hand green, ignore grey)
LABEL_COLORS = {1: (255, 110, 0), 2: (0, 150, 255), 3: (40, 200, 60), 255: (128, 128, 128)}


def overlay_labels(rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend label colours over an RGB frame."""
    out = rgb.astype(np.float32)
    for label, color in LABEL_COLORS.items():
        sel = labels == label
        out[sel] = (1 - alpha) * out[sel] + alpha * np.asarray(color, np.float32)
    return out.astype(np.uint8)


def contact_sheet(build: Path, out: Path, num_frames: int = 6) -> Path:
    """Write `out` (PNG): `num_frames` evenly spaced frames and their label overlays."""
    seq = load_sequence(build)
    idx = np.linspace(0, seq.num_frames - 1, min(num_frames, seq.num_frames)).round().astype(int)
    frames = [seq.load_image(i) for i in idx]
    rows = [np.concatenate(frames, 1)]
    if seq.has_masks:
        rows.append(np.concatenate([overlay_labels(f, seq.load_mask(i)) for f, i in zip(frames, idx)], 1))
    write_image(out, np.concatenate(rows, 0))
    return out
