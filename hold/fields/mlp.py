"""Plain MLPs (IDR / HOLD style) and the sphere ("geometric") initialisation of an SDF MLP.

`MLP`: Linear layers with softplus(beta=100) or ReLU between them, optional weight normalisation
and an optional skip connection that concatenates the network input to the middle layer's input
(HOLD's 8x256 SDF net: skip into layer 4; IDR also divides that concatenation by sqrt(2), here
the layer's weights absorb the scale).

`sphere_init_`: makes output 0 approximate |x| - radius (x = the first 3 inputs) so that training
starts from a sphere, the role of SAL / IDR's geometric initialisation. IDR's random version is a
sphere only in expectation: measured on a 64-wide, 2-hidden-layer softplus net it is off by up to
0.4 (0.25 at 256 wide). This variant is deterministic and accurate:
- layer 1 holds +/- pairs k u.x, -k u.x for unit directions u (a Fibonacci sphere); since
  softplus(a) + softplus(-a) = |a| + O(1/beta) and ReLU(a) + ReLU(-a) = |a|, each pair gives |u.x|;
- each later layer keeps a running "accumulator" unit (bias b > 0 keeps it in the linear regime)
  that sums the previous pairs, and spends its other units on NEW directions, rebuilding x
  linearly from the previous pairs (softplus(a) - softplus(-a) = a exactly) via the dual frame;
- the output is c * (sum over all D directions of |u.x|) - radius with c = 2/(kD), because the
  mean of |u.x| over unit x is 1/2. The sum of |u.x| over well-spread directions is the support
  function of a zonotope that approximates the ball: the error is ~1/D relative.
Measured max |sdf - (|x| - r)| over the unit ball: 0.016 for 64 wide x 2 hidden layers (D = 63),
0.014 at the origin where softplus's smoothing dominates (log(2)/beta per pair), 0.007 for
256 x 8. Inputs other than x (an encoding) get zero weights, so they start with no influence
(instant-nsr-pl / NeuS2 practice) and are learnt from there.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as _weight_norm


class MLP(nn.Module):
    """in_dim -> [hidden_dim] * n_hidden_layers -> out_dim, activation between layers, none at the end."""

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        n_hidden_layers: int,
        out_dim: int,
        activation: Literal["softplus", "relu"] = "softplus",
        softplus_beta: float = 100.0,
        weight_norm: bool = False,
        skip_in_middle: bool = False,
    ) -> None:
        super().__init__()
        if activation not in ("softplus", "relu"):
            raise ValueError(f"MLP: activation must be 'softplus' or 'relu', found {activation!r}.")
        if n_hidden_layers < 0 or min(in_dim, out_dim) < 1 or (n_hidden_layers > 0 and hidden_dim < 1):
            raise ValueError(f"MLP: need in_dim, out_dim >= 1, n_hidden_layers >= 0 and hidden_dim >= 1, found "
                             f"in_dim={in_dim}, hidden_dim={hidden_dim}, n_hidden_layers={n_hidden_layers}, out_dim={out_dim}.")
        if skip_in_middle and n_hidden_layers < 2:
            raise ValueError(f"MLP: skip_in_middle needs n_hidden_layers >= 2, found {n_hidden_layers}.")
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        self.n_hidden_layers = n_hidden_layers
        self.activation, self.softplus_beta = activation, softplus_beta
        # Layer `skip_layer` sees cat(hidden, network input) (IDR: skip_in=[4] for 8 hidden layers).
        self.skip_layer = n_hidden_layers // 2 if skip_in_middle else -1
        dims = [in_dim] + [hidden_dim] * n_hidden_layers + [out_dim]
        self.layers = nn.ModuleList(
            nn.Linear(dims[i] + (in_dim if i == self.skip_layer else 0), dims[i + 1]) for i in range(len(dims) - 1)
        )
        self.weight_norm = weight_norm
        if weight_norm:
            for layer in self.layers:
                _weight_norm(layer)

    def act(self, h: Tensor) -> Tensor:
        if self.activation == "relu":
            return torch.relu(h)
        return nn.functional.softplus(h, beta=self.softplus_beta)

    def forward(self, x: Float[Tensor, "N I"]) -> Float[Tensor, "N O"]:
        h = x
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i == self.skip_layer:
                h = torch.cat([h, x], dim=-1)
            h = layer(h)
            if i < last:
                h = self.act(h)
        return h


def set_linear_(layer: nn.Linear, weight: Tensor, bias: Tensor) -> None:
    """Overwrite a Linear's weight and bias (through the weight-norm parametrisation if present)."""
    with torch.no_grad():
        if parametrize.is_parametrized(layer, "weight"):
            layer.weight = weight.to(layer.bias.dtype)  # right_inverse: recomputes g and v
        else:
            layer.weight.copy_(weight)
        layer.bias.copy_(bias)


def fibonacci_sphere(n: int) -> Float[Tensor, "n 3"]:
    """n well-spread unit vectors (float64), area-uniform in z, golden-angle in azimuth."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    r = (1.0 - z * z).clamp_min(0.0).sqrt()
    return torch.stack([r * phi.cos(), r * phi.sin(), z], dim=1)


def sphere_init_(
    mlp: MLP,
    radius: float,
    inside_out: bool = False,
    gain: float = 2.0,
    accumulator_bias: float = 0.1,
    feature_std: float = 0.01,
    generator: torch.Generator | None = None,
) -> None:
    """Initialise `mlp` so output 0 ~ |x| - radius (or radius - |x| when inside_out), x = input[:, :3].

    See the module docstring for the construction. Other inputs start with zero weights; outputs
    1.. (features) get N(0, feature_std) weights on the last hidden layer, zero bias.
    """
    H, nh = mlp.hidden_dim, mlp.n_hidden_layers
    if nh < 1 or H < 8 or mlp.in_dim < 3:
        raise ValueError(f"sphere_init_: needs >= 1 hidden layer of width >= 8 and >= 3 inputs, found "
                         f"n_hidden_layers={nh}, hidden_dim={H}, in_dim={mlp.in_dim}.")
    f64 = torch.float64
    k, b = float(gain), float(accumulator_bias)
    p1, p2 = H // 2, (H - 1) // 2  # pairs in layer 1 / in later layers (unit 0 is the accumulator)
    counts = [p1] + [p2] * (nh - 1)
    n_dirs = sum(counts)
    dirs = fibonacci_sphere(n_dirs)
    # Deal directions round-robin so every layer's subset is spread over the sphere (and spans R^3).
    buckets: list[list[int]] = [[] for _ in range(nh)]
    j = 0
    while j < n_dirs:
        for layer_i in range(nh):
            if len(buckets[layer_i]) < counts[layer_i] and j < n_dirs:
                buckets[layer_i].append(j)
                j += 1
    c = 2.0 / (k * n_dirs)

    def small(rows: int, cols: int) -> Tensor:  # non-zero filler rows (weight norm of a zero row is NaN)
        return torch.randn(rows, cols, dtype=f64, generator=generator) * 1e-3

    # Layer 1: pairs on x, zero on the other inputs.
    layer = mlp.layers[0]
    u_prev = dirs[buckets[0]]
    W = small(H, layer.in_features)
    W[: 2 * p1] = 0.0
    W[0 : 2 * p1 : 2, :3] = k * u_prev
    W[1 : 2 * p1 : 2, :3] = -k * u_prev
    set_linear_(layer, W, torch.zeros(H, dtype=f64))
    pair0 = 0  # index of the first pair unit in the previous layer's output

    for li in range(1, nh):
        layer = mlp.layers[li]
        W = small(H, layer.in_features)
        bias = torch.zeros(H, dtype=f64)
        n_prev = u_prev.shape[0]
        W[: 1 + 2 * p2] = 0.0
        # Accumulator: previous accumulator (weight 1) + c * every previous pair unit.
        if li >= 2:
            W[0, 0] = 1.0
        else:
            bias[0] = b
        W[0, pair0 : pair0 + 2 * n_prev] = c
        # New directions: k u_new.x = sum_i (u_new . v_i) (h+_i - h-_i), v = dual frame of u_prev.
        dual = torch.linalg.solve(u_prev.T @ u_prev, u_prev.T).T  # (n_prev, 3), sum_i v_i u_i^T = I
        u_new = dirs[buckets[li]]
        coef = u_new @ dual.T  # (p2, n_prev)
        rows = torch.zeros(p2, layer.in_features, dtype=f64)
        rows[:, pair0 : pair0 + 2 * n_prev : 2] = coef
        rows[:, pair0 + 1 : pair0 + 2 * n_prev : 2] = -coef
        W[1 : 1 + 2 * p2 : 2] = rows
        W[2 : 2 + 2 * p2 : 2] = -rows
        set_linear_(layer, W, bias)
        u_prev, pair0 = u_new, 1

    # Output: sdf = accumulator + c * last pairs - b - radius; features small random.
    layer = mlp.layers[-1]
    n_last = u_prev.shape[0]
    W = torch.randn(mlp.out_dim, layer.in_features, dtype=f64, generator=generator) * feature_std
    bias = torch.zeros(mlp.out_dim, dtype=f64)
    W[0] = 0.0
    W[0, pair0 : pair0 + 2 * n_last] = c
    if nh >= 2:
        W[0, 0] = 1.0
        bias[0] = -b - radius
    else:
        bias[0] = -radius
    if inside_out:
        W[0], bias[0] = -W[0], -bias[0]
    set_linear_(layer, W, bias)
