"""Multiresolution hash encoding (instant-NGP) with tiny-cuda-nn's exact parameter layout and maths.

One flat `params` vector holds every level's table, so a checkpoint loads under either backend:
`implementation="torch"` (pure PyTorch, CPU or CUDA) or `"tcnn"` (tinycudann.Encoding, CUDA only).

What was verified, and where (NVlabs/tiny-cuda-nn, `include/tiny-cuda-nn/encodings/grid.h` in the
2022 version with everything inline, and the 2023+ version that moved the helpers to
`common_device.h` / `encodings/grid_interface.h`; both agree on all points below):

- Per-level scale (`grid_scale`): `scale_l = exp2f(l * log2(per_level_scale)) * base_resolution - 1`,
  all float32 (`std::log2` of the float `per_level_scale`, float multiply, `exp2f`).
- Grid resolution (`grid_resolution`): `res_l = (uint32)ceilf(scale_l) + 1` vertices per axis.
- Parameters per level (GridEncodingTemplated constructor, GridType::Hash):
  `params_in_level = min(next_multiple(min(res^3, 2^31 - 1), 8), 2^log2_hashmap_size)` entries;
  the level offsets are the running sum of those, `n_params = total_entries * n_features_per_level`.
- Dense vs hashed (`grid_index`): the dense stride product `res^3` is compared with the level's
  size; the level is hashed iff `size < res^3`, i.e. dense iff `res^3 <= params_in_level`.
  (The 2023+ code skips the stride product when res > 0x659 = 1625 and sets stride = 0xFFFFFFFF;
  same decision.)
- Index: dense `x + y*res + z*res^2` in uint32; hashed ("CoherentPrime", the default `hash`):
  `(x*1) ^ (y*2654435761) ^ (z*805459861)` in uint32 (products wrap mod 2^32); both then
  `% params_in_level`. Float index into the level: `index * n_features_per_level + feature`,
  so the flat layout is [level 0 entries | level 1 entries | ...], features innermost.
- Position (`pos_fract`): `pos = fmaf(scale, x, 0.5)`, `pos_grid = (uint32)(int)floorf(pos)`,
  `frac = pos - floor(pos)`. The +0.5 staggers the levels (paper, appendix A) and makes the "+1"
  corner wrap around in dense levels when x is near 1: the index then aliases, exactly as in tcnn.
  Older tcnn writes `x * scale + 0.5f`, which nvcc contracts to the same FMA.
- Interpolation ("Linear"): corner `c` (bit d of c = +1 along axis d) has weight
  `((w_0 * w_1) * w_2)` with `w_d = frac_d` or `1 - frac_d`, accumulated over c = 0..7.
- Initialisation (`initialize_params`): uniform(-1e-4, 1e-4) on every parameter.
- Disabled levels (`max_level`) output zeros and receive no gradient: `set_active_levels` here.

Known, documented differences from the CUDA kernel: tcnn accumulates the 8 corners with fused
multiply-adds (here a multiply then a sum), in fp16 when the module runs in half precision, and
evaluates `exp2f` on the device (<= 2 ulp from the host value used here). Outputs therefore agree
to fp16 tolerance, not bitwise; indices and parameter layout are identical.

CPU speed (see shared/notes/dependencies.md): weights for all levels in one batch of ops (few
autograd nodes for the eikonal double backward), indices level by level (dense or hashed), then
ONE gather fetches all L*8 corners and its backward is ONE `index_add_` (F.embedding's dense
backward costs ~300 ms of fixed overhead per call on CPU for a 2^19-row table). Measured on 2
cores, fwd+bwd: 43 ms for 4096 points and 0.5 s for 65536 (2^19 table); 27 ms / 0.31 s (2^16).
"""
from __future__ import annotations

import importlib
import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

PRIMES = (1, 2654435761, 805459861)  # tcnn coherent_prime_hash factors for x, y, z
_MASK32 = 0xFFFFFFFF
_MAX_PARAMS = 2**31 - 1  # tcnn: std::numeric_limits<uint32_t>::max() / 2


@dataclass
class HashGridConfig:
    """Multiresolution hash grid (instant-NGP / tiny-cuda-nn "HashGrid")."""

    n_levels: int = 16
    """Number of resolution levels L."""
    n_features_per_level: int = 2
    """Features per level F (tcnn allows 1, 2, 4, 8); output width is L * F."""
    log2_hashmap_size: int = 19
    """log2 of the entries per hashed level T (2^19 default; use <= 16 on CPU)."""
    base_resolution: int = 16
    """Grid vertices per axis at the coarsest level."""
    per_level_scale: float | None = None
    """Resolution growth factor between levels; None = derived so the finest level has max_resolution."""
    max_resolution: int = 2048
    """Vertices per axis at the finest level when per_level_scale is None."""
    implementation: Literal["auto", "torch", "tcnn"] = "auto"
    """"tcnn" = tinycudann (CUDA only), "torch" = pure PyTorch, "auto" = tcnn if it imports and the input is on CUDA."""
    init_scale: float = 1e-4
    """Table initialised uniform(-init_scale, init_scale) (tcnn uses 1e-4)."""

    def __post_init__(self) -> None:
        if self.implementation not in ("auto", "torch", "tcnn"):
            raise ValueError(f"HashGridConfig.implementation must be 'auto', 'torch' or 'tcnn', found "
                             f"{self.implementation!r}.")
        if self.n_features_per_level not in (1, 2, 4, 8):
            raise ValueError(f"HashGridConfig.n_features_per_level must be 1, 2, 4 or 8 (tcnn's choices), found "
                             f"{self.n_features_per_level}.")
        if self.n_levels < 1 or self.base_resolution < 1:
            raise ValueError(f"HashGridConfig: n_levels and base_resolution must be >= 1, found "
                             f"{self.n_levels} and {self.base_resolution}.")
        if not 3 <= self.log2_hashmap_size <= 30:
            raise ValueError(f"HashGridConfig.log2_hashmap_size must be in [3, 30], found {self.log2_hashmap_size}.")
        if self.per_level_scale is None and self.max_resolution < self.base_resolution:
            raise ValueError(f"HashGridConfig.max_resolution ({self.max_resolution}) must be >= base_resolution "
                             f"({self.base_resolution}) or set per_level_scale explicitly.")

    def resolved_per_level_scale(self) -> float:
        """per_level_scale, derived from max_resolution when unset: b^(L-1) * base = max_resolution."""
        if self.per_level_scale is not None:
            return float(self.per_level_scale)
        if self.n_levels == 1:
            return 1.0
        return math.exp((math.log(self.max_resolution) - math.log(self.base_resolution)) / (self.n_levels - 1))

    def tcnn_config(self) -> dict[str, Any]:
        """The equivalent tinycudann encoding JSON."""
        return {
            "otype": "HashGrid",
            "type": "Hash",
            "n_levels": self.n_levels,
            "n_features_per_level": self.n_features_per_level,
            "log2_hashmap_size": self.log2_hashmap_size,
            "base_resolution": self.base_resolution,
            "per_level_scale": self.resolved_per_level_scale(),
            "interpolation": "Linear",
            "hash": "CoherentPrime",
        }


@dataclass(frozen=True)
class GridLevel:
    """Layout of one level, as tcnn computes it on the host."""

    scale: float
    """scale_l (an exact float32 value): positions are x * scale + 0.5 in grid units."""
    resolution: int
    """Vertices per axis, ceil(scale) + 1."""
    size: int
    """Table entries of this level (params_in_level)."""
    offset: int
    """First entry of this level in the concatenated table."""
    hashed: bool
    """True when the level is hashed (res^3 > size), False when densely indexed."""


def level_scale_f32(level: int, per_level_scale: float, base_resolution: int) -> float:
    """tcnn's grid_scale in float32: exp2f(level * log2f(per_level_scale)) * base_resolution - 1."""
    f32 = np.float32
    log2_scale = f32(math.log2(float(f32(per_level_scale))))
    exponent = f32(f32(level) * log2_scale)
    return float(f32(f32(2.0 ** float(exponent)) * f32(base_resolution)) - f32(1.0))


def grid_levels(cfg: HashGridConfig) -> list[GridLevel]:
    """Per-level scale, resolution, table size, offset and dense/hashed flag (tcnn's formulas)."""
    pls, hashmap_size = cfg.resolved_per_level_scale(), 2**cfg.log2_hashmap_size
    levels, offset = [], 0
    for lvl in range(cfg.n_levels):
        scale = level_scale_f32(lvl, pls, cfg.base_resolution)
        res = int(math.ceil(scale)) + 1
        dense_params = min(res**3, _MAX_PARAMS)
        size = min(-(-dense_params // 8) * 8, hashmap_size)
        levels.append(GridLevel(scale=scale, resolution=res, size=size, offset=offset, hashed=size < res**3))
        offset += size
    return levels


# ------------------------------------------------------------------------------------- torch path


class _GatherRows(torch.autograd.Function):
    """table[idx] with a one-shot index_add_ backward (fast on CPU, atomics on CUDA)."""

    @staticmethod
    def forward(ctx, table: Tensor, idx: Tensor) -> Tensor:  # table (E, F), idx (...,) int64
        ctx.save_for_backward(idx)
        ctx.n_rows = table.shape[0]
        return table.index_select(0, idx.reshape(-1)).view(*idx.shape, table.shape[1])

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (idx,) = ctx.saved_tensors
        n_feat = grad_out.shape[-1]
        grad_table = torch.zeros(ctx.n_rows, n_feat, dtype=grad_out.dtype, device=grad_out.device)
        # In place on a fresh zeros tensor: still recorded by autograd under create_graph=True.
        grad_table.index_add_(0, idx.reshape(-1), grad_out.reshape(-1, n_feat))
        return grad_table, None


def _level_indices(pos_grid: Int[Tensor, "N 3"], lvl: GridLevel, corner_bits: Int[Tensor, "2"]) -> Int[Tensor, "N 8"]:
    """Entry index (within the level) of the 8 corners, corner c = x_bit + 2 y_bit + 4 z_bit."""
    c = (pos_grid[:, :, None] + corner_bits) & _MASK32  # (N, 3, 2) uint32 coordinates
    cx, cy, cz = c[:, 0], c[:, 1], c[:, 2]
    if lvl.hashed:
        # int64 products may overflow; their low 32 bits (all that uint32 keeps) are still right.
        idx = (cx * PRIMES[0])[:, None, None, :] ^ (cy * PRIMES[1])[:, None, :, None] ^ (cz * PRIMES[2])[:, :, None, None]
    else:
        r = lvl.resolution
        idx = cx[:, None, None, :] + (cy * r)[:, None, :, None] + (cz * (r * r))[:, :, None, None]
    idx = idx.reshape(-1, 8)
    if lvl.size & (lvl.size - 1) == 0:  # power of two: the modulo is a mask (and implies & 2^32-1)
        return idx & (lvl.size - 1)
    return (idx & _MASK32) % lvl.size


def _trilinear_weights(frac: Float[Tensor, "N L 3"]) -> Float[Tensor, "N L 8"]:
    """Trilinear weights ((w_x * w_y) * w_z) in tcnn's multiplication order, corner c = x + 2y + 4z."""
    w = torch.stack([1.0 - frac, frac], dim=-1)  # (N, L, 3, 2)
    wx, wy, wz = w[..., 0, :], w[..., 1, :], w[..., 2, :]
    return ((wx[..., None, None, :] * wy[..., None, :, None]) * wz[..., :, None, None]).flatten(-3)


def hash_grid_torch(
    x: Float[Tensor, "N 3"], params: Float[Tensor, "P"], levels: list[GridLevel], n_features: int
) -> Float[Tensor, "N K"]:
    """Encode x (grid units [0, 1]) with the given levels; returns (N, len(levels) * F), float32."""
    n, n_levels = x.shape[0], len(levels)
    table = params.view(-1, n_features)
    # x * scale + 0.5 in double, rounded once to float: exactly fmaf's result (x and scale are
    # floats, so the product is exact in double). All levels at once: few autograd nodes, which
    # matters for the double backward of the eikonal loss.
    scales = torch.tensor([lvl.scale for lvl in levels], dtype=torch.float64, device=x.device)
    pos = (x.to(torch.float64)[:, None, :] * scales[:, None] + 0.5).to(torch.float32)  # (N, L, 3)
    pos_floor = torch.floor(pos)
    weights = _trilinear_weights(pos - pos_floor)  # (N, L, 8), differentiable w.r.t. x
    pos_grid = pos_floor.detach().to(torch.int64) & _MASK32  # (uint32)(int)floorf(pos)
    corner_bits = torch.tensor([0, 1], dtype=torch.int64, device=x.device)
    idx = torch.stack(
        [_level_indices(pos_grid[:, i], lvl, corner_bits) + lvl.offset for i, lvl in enumerate(levels)], dim=1
    )  # (N, L, 8) rows of the (entries, F) table
    corner_feats = _GatherRows.apply(table, idx).unbind(2)  # 8 x (N, L, F)
    corner_weights = weights[..., None].unbind(2)  # 8 x (N, L, 1)
    # Accumulate corner by corner, in tcnn's order (bitwise equal to the reference; a .sum(dim)
    # reduces in an unspecified order and differs in the last bit).
    out = corner_feats[0] * corner_weights[0]
    for c in range(1, 8):
        out = out + corner_feats[c] * corner_weights[c]
    return out.reshape(n, n_levels * n_features)


def reference_hash_grid(x: Float[Tensor, "N 3"], params: Float[Tensor, "P"], cfg: HashGridConfig) -> Float[Tensor, "N K"]:
    """Deliberately slow reference: one Python loop per point, level and corner, straight from
    tcnn's formulas (float32 scalar maths via numpy, uint32 via Python ints). Differentiable
    w.r.t. params (the corner values are gathered from params with autograd). Tests only."""
    f32 = np.float32
    F, L = cfg.n_features_per_level, cfg.n_levels
    log2_pls = f32(math.log2(float(f32(cfg.resolved_per_level_scale()))))
    offset = 0
    layout = []
    for lvl in range(L):
        scale = f32(f32(f32(2.0 ** float(f32(f32(lvl) * log2_pls)))) * f32(cfg.base_resolution)) - f32(1.0)
        res = int(math.ceil(float(scale))) + 1
        size = min(((min(res**3, _MAX_PARAMS) + 7) // 8) * 8, 2**cfg.log2_hashmap_size)
        layout.append((scale, res, size, offset))
        offset += size

    xs = x.detach().to(torch.float32).cpu().numpy()
    n = xs.shape[0]
    flat_index = np.zeros((n, L, 8, F), dtype=np.int64)
    weight = np.zeros((n, L, 8), dtype=np.float32)
    for i in range(n):
        for lvl, (scale, res, size, off) in enumerate(layout):
            grid, frac = [], []
            for d in range(3):
                pos = f32(float(xs[i, d]) * float(scale) + 0.5)  # fused multiply-add, rounded once
                fl = math.floor(float(pos))
                grid.append(fl & _MASK32)
                frac.append(f32(pos - f32(fl)))
            for c in range(8):
                w = f32(1.0)
                local = []
                for d in range(3):
                    bit = (c >> d) & 1
                    w = f32(w * (frac[d] if bit else f32(1.0) - frac[d]))
                    local.append((grid[d] + bit) & _MASK32)
                stride, index = 1, 0
                for d in range(3):
                    index = (index + local[d] * stride) & _MASK32
                    stride *= res
                if size < stride:  # hashed level
                    index = 0
                    for d in range(3):
                        index ^= (local[d] * PRIMES[d]) & _MASK32
                index %= size
                weight[i, lvl, c] = w
                flat_index[i, lvl, c] = (off + index) * F + np.arange(F)
    values = params[torch.from_numpy(flat_index).to(params.device)]  # (N, L, 8, F)
    w_t = torch.from_numpy(weight).to(params.device)
    out = torch.zeros(n, L, F, dtype=params.dtype, device=params.device)
    for c in range(8):
        out = out + w_t[:, :, c, None] * values[:, :, c]
    return out.reshape(n, L * F)


# ------------------------------------------------------------------------------------- tcnn path

_TCNN: dict[str, Any] = {}
_WARNED_TORCH_ON_CUDA = False


def _import_tcnn() -> Any:
    """tinycudann, or a clear ImportError (it is built from source; not on PyPI)."""
    if "module" not in _TCNN:
        try:
            _TCNN["module"] = importlib.import_module("tinycudann")
        except Exception as exc:  # ImportError, or EnvironmentError when no CUDA device is visible
            _TCNN["error"] = exc
            _TCNN["module"] = None
    if _TCNN["module"] is None:
        raise ImportError(
            f"HashGridEncoding(implementation='tcnn'): tinycudann could not be imported ({_TCNN['error']!r}). "
            "Build it from source (pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch) "
            "or set implementation='torch' (or 'auto')."
        )
    return _TCNN["module"]


def tcnn_available() -> bool:
    """True when tinycudann imports (needs a CUDA device)."""
    try:
        _import_tcnn()
        return True
    except ImportError:
        return False


# ------------------------------------------------------------------------------------- module


class HashGridEncoding(nn.Module):
    """x in [0, 1]^3 -> (N, L * F) features; one flat `params` table shared by both backends."""

    def __init__(self, cfg: HashGridConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or HashGridConfig()
        self.levels = grid_levels(cfg)
        self.n_features = cfg.n_features_per_level
        self.n_params = (self.levels[-1].offset + self.levels[-1].size) * self.n_features
        self.params = nn.Parameter(torch.empty(self.n_params).uniform_(-cfg.init_scale, cfg.init_scale))
        self.active_levels = cfg.n_levels
        # Not persistent: the state dict is exactly {"params"}, like tcnn's.
        self.register_buffer("level_mask", torch.ones(self.output_dim), persistent=False)
        self.__dict__["_tcnn_encoding"] = None  # tinycudann.Encoding, built on the first CUDA forward
        self._tcnn_device: torch.device | None = None
        if cfg.implementation == "tcnn":
            _import_tcnn()

    @property
    def output_dim(self) -> int:
        return self.cfg.n_levels * self.cfg.n_features_per_level

    def set_active_levels(self, k: int) -> None:
        """Coarse-to-fine: levels >= k output zeros (and so get no gradient); k = n_levels = all."""
        if not 0 <= int(k) <= self.cfg.n_levels:
            raise ValueError(f"HashGridEncoding.set_active_levels: k must be in [0, {self.cfg.n_levels}], found {k}.")
        self.active_levels = int(k)
        self.level_mask.zero_()
        self.level_mask[: self.active_levels * self.n_features] = 1.0

    def uses_tcnn(self, device: torch.device) -> bool:
        """Which backend forward() takes for inputs on `device`."""
        impl = self.cfg.implementation
        if impl == "tcnn":
            return True
        return impl == "auto" and device.type == "cuda" and tcnn_available()

    def forward(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, "N K"]:
        if x.ndim != 2 or x.shape[1] != 3:
            raise ValueError(f"HashGridEncoding.forward: expected x of shape (N, 3) in [0, 1], found {tuple(x.shape)}.")
        if self.uses_tcnn(x.device):
            return self._forward_tcnn(x)
        if x.device.type == "cuda":
            global _WARNED_TORCH_ON_CUDA
            if not _WARNED_TORCH_ON_CUDA:
                _WARNED_TORCH_ON_CUDA = True
                warnings.warn("HashGridEncoding: using the pure-PyTorch hash grid on a CUDA device (tinycudann is "
                              "not importable or implementation='torch'); this is several times slower.", stacklevel=2)
        x = x.to(torch.float32)
        active = self.levels[: self.active_levels]
        n = x.shape[0]
        if not active or n == 0:
            return x.new_zeros(n, self.output_dim)
        out = hash_grid_torch(x, self.params, active, self.n_features)
        if self.active_levels < self.cfg.n_levels:  # masked levels: zeros, no gradient
            out = torch.cat([out, out.new_zeros(n, self.output_dim - out.shape[1])], dim=1)
        return out

    def _forward_tcnn(self, x: Tensor) -> Tensor:
        if x.device.type != "cuda":
            raise ValueError(f"HashGridEncoding(implementation='tcnn'): inputs must be on a CUDA device, found "
                             f"{x.device}; move the model and data to CUDA or use implementation='torch'.")
        enc = self._tcnn_encoding
        if enc is None or self._tcnn_device != x.device:  # the native module lives on one GPU
            tcnn = _import_tcnn()
            with torch.cuda.device(x.device):
                enc = tcnn.Encoding(3, self.cfg.tcnn_config())
            n_native = int(enc.native_tcnn_module.n_params())
            if n_native != self.n_params:
                raise RuntimeError(f"HashGridEncoding: tinycudann reports {n_native} parameters, the torch layout has "
                                   f"{self.n_params}; this tinycudann version changed the grid layout.")
            self.__dict__["_tcnn_encoding"] = enc  # plain attribute: not a submodule, not in the state dict
            self._tcnn_device = x.device
        if enc.params is not self.params:
            enc.params = self.params  # tcnn reads its `params` attribute; make it ours (same tensor)
        out = enc(x.to(torch.float32).contiguous()).to(torch.float32)
        if self.active_levels < self.cfg.n_levels:
            out = out * self.level_mask
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_tcnn_encoding"], state["_tcnn_device"] = None, None  # native module: rebuilt lazily
        return state

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"levels={c.n_levels}, features={c.n_features_per_level}, log2_T={c.log2_hashmap_size}, "
                f"base={c.base_resolution}, per_level_scale={c.resolved_per_level_scale():.5f}, "
                f"n_params={self.n_params}, implementation={c.implementation}")
