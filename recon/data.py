"""Deterministic ray batches from a sequence build, biased to the masks and their boundaries.

A batch depends only on (seed, step), so a run resumed from a checkpoint sees exactly the batches
it would have seen; that is what makes resume reproduce the same loss at the same step.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import maximum_filter, minimum_filter

from hold.data.schema import Sequence
from recon.config import SamplerConfig


class RaySampler:
    """Holds the frames in memory (uint8) and draws batches of (frame, pixel, rgb, label)."""

    def __init__(self, seq: Sequence, cfg: SamplerConfig):
        self.cfg = cfg
        self.T = seq.num_frames
        self.W, self.H = seq.intrinsics.width, seq.intrinsics.height
        self.images = np.stack([seq.load_image(t) for t in range(self.T)])
        if seq.has_masks:
            self.labels = np.stack([seq.load_mask(t) for t in range(self.T)])
        else:
            self.labels = np.full((self.T, self.H, self.W), 255, np.uint8)
        self.fg, self.boundary = [], []
        size = 2 * cfg.boundary_px + 1
        for lab in self.labels:
            known = np.where(lab == 255, 0, lab)
            self.fg.append(np.flatnonzero((known > 0).reshape(-1)))
            edge = maximum_filter(known, size) != minimum_filter(known, size)
            self.boundary.append(np.flatnonzero(edge.reshape(-1)))

    def batch(self, step: int, seed: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([seed, step])
        c = self.cfg
        frames = rng.choice(self.T, size=min(c.frames_per_batch, self.T), replace=False)
        per = np.full(len(frames), c.rays_per_batch // len(frames))
        per[: c.rays_per_batch - per.sum()] += 1
        fr, idx = [], []
        for f, n in zip(frames, per):
            n_fg = int(round(n * c.foreground_fraction)) if len(self.fg[f]) else 0
            n_b = int(round(n * c.boundary_fraction)) if len(self.boundary[f]) else 0
            picks = [rng.integers(0, self.W * self.H, n - n_fg - n_b)]
            if n_fg:
                picks.append(rng.choice(self.fg[f], n_fg))
            if n_b:
                picks.append(rng.choice(self.boundary[f], n_b))
            p = np.concatenate(picks)
            idx.append(p)
            fr.append(np.full(len(p), f))
        frame, flat = np.concatenate(fr), np.concatenate(idx)
        y, x = np.divmod(flat, self.W)
        return {
            "frame": torch.as_tensor(frame, dtype=torch.long),
            "pixel": torch.as_tensor(np.stack([x, y], 1), dtype=torch.long),
            "rgb": torch.as_tensor(self.images[frame, y, x], dtype=torch.float32) / 255.0,
            "label": torch.as_tensor(self.labels[frame, y, x], dtype=torch.long),
        }
