"""NeRF positional encoding, in the layout IDR / HOLD use for their 8x256 SDF MLPs.

gamma(x) = [x, sin(2^0 x), cos(2^0 x), sin(2^1 x), cos(2^1 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)]
(each term 3-wide, no factor pi, frequencies 2^0 .. 2^(L-1); the leading x only if include_input).
"""
from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn


class FrequencyEncoding(nn.Module):
    """x (N, D) -> (N, D * (include_input + 2 * n_frequencies)); no parameters."""

    def __init__(self, n_frequencies: int = 6, include_input: bool = True, in_dim: int = 3) -> None:
        super().__init__()
        if n_frequencies < 0 or in_dim < 1:
            raise ValueError(f"FrequencyEncoding: need n_frequencies >= 0 and in_dim >= 1, found "
                             f"{n_frequencies} and {in_dim}.")
        self.n_frequencies, self.include_input, self.in_dim = n_frequencies, include_input, in_dim
        self.register_buffer("freqs", 2.0 ** torch.arange(n_frequencies, dtype=torch.float32), persistent=False)

    @property
    def output_dim(self) -> int:
        return self.in_dim * (int(self.include_input) + 2 * self.n_frequencies)

    def forward(self, x: Float[Tensor, "N D"]) -> Float[Tensor, "N K"]:
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"FrequencyEncoding.forward: expected (..., {self.in_dim}) inputs, found {tuple(x.shape)}.")
        parts = [x] if self.include_input else []
        if self.n_frequencies:
            xf = x[..., None, :] * self.freqs.to(x.dtype)[:, None]  # (..., L, D)
            # Per frequency: sin block then cos block, as IDR's embedder concatenates them.
            parts.append(torch.stack([xf.sin(), xf.cos()], dim=-2).flatten(-3))
        if not parts:
            return x.new_zeros(*x.shape[:-1], 0)
        return torch.cat(parts, dim=-1)
