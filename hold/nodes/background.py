"""The background: the camera is static, so one learnable image (logits) seen by every frame,
initialized from the per-pixel median of the pixels labelled background."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn


@dataclass
class BackgroundConfig:
    """Static background image."""

    init_from_frames: int = 16
    """Frames used for the median initialization (evenly spaced)."""


class BackgroundNode(nn.Module):
    def __init__(self, height: int, width: int, init_rgb: np.ndarray | None = None):
        super().__init__()
        init = torch.full((height, width, 3), 0.5) if init_rgb is None else torch.as_tensor(init_rgb, dtype=torch.float32)
        self.logits = nn.Parameter(torch.logit(init.clamp(0.02, 0.98)))

    @staticmethod
    def median_init(frames: list[np.ndarray], masks: list[np.ndarray] | None) -> np.ndarray:
        """(H,W,3) in [0,1]: median over frames of the background pixels (all pixels where no mask
        says background; the overall median colour where a pixel is never background)."""
        stack = np.stack(frames).astype(np.float32) / 255.0
        if masks is None:
            return np.median(stack, 0)
        bg = np.stack(masks) == 0
        data = np.where(bg[..., None], stack, np.nan)
        with warnings.catch_warnings():  # pixels never seen as background are all-NaN: filled below
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(data, 0) if bg.any() else np.full(stack.shape[1:], np.nan)
        fallback = np.median(stack[bg], 0) if bg.any() else np.median(stack.reshape(-1, 3), 0)
        return np.where(np.isnan(med), fallback, med)

    def forward(self, pixel: Int[Tensor, "R 2"]) -> Float[Tensor, "R 3"]:
        """Background colour at integer pixel coordinates (x, y)."""
        return torch.sigmoid(self.logits[pixel[:, 1], pixel[:, 0]])
