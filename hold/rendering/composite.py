"""Volume compositing of one or several nodes' samples along the same rays.

Each node samples its own bounding sphere; its samples' optical depths tau_i = sigma_i * delta_i
use the node's OWN intervals delta_i (t_{i+1} - t_i within the node, or given per sample). The
nodes' samples are then merged, sorted by t, and composited once with an exclusive cumulative sum
of tau (log-space transmittance, stable in fp32):

    T_i = exp(-sum_{j<i} tau_j),   alpha_i = 1 - exp(-tau_i),   w_i = T_i alpha_i.

Using each node's own intervals (instead of gaps between merged neighbours) makes density add up
where nodes overlap and makes an empty node (sigma = 0) an exact no-op, however its samples
interleave with the others'.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

LABELS: dict[str, int] = {"background": 0, "object": 1, "right": 2, "left": 3}
"""Semantic class ids, the same as the sequence build's mask values (hold.data.schema.LABELS)."""
N_CLASSES: int = 4
"""Number of semantic classes rendered."""

FarDelta = float | str
"""Length of a node's last interval: a number (metres; 1e10 makes the last sample opaque, as for a
background that must stop every ray) or "repeat" (the previous interval's length: bounded nodes)."""


def interval_deltas(t: Float[Tensor, "R S"], far_delta: FarDelta = 1e10) -> Float[Tensor, "R S"]:
    """delta_i = t_{i+1} - t_i (clamped >= 0), the last one from the far_delta policy."""
    if t.dim() != 2:
        raise ValueError(f"interval_deltas: argument 't' must have shape (R, S), found {tuple(t.shape)}.")
    d = (t[:, 1:] - t[:, :-1]).clamp_min(0.0)
    if far_delta == "repeat":
        last = d[:, -1:] if d.shape[1] > 0 else torch.zeros_like(t[:, :1])
    elif isinstance(far_delta, (int, float)) and not isinstance(far_delta, bool):
        last = torch.full_like(t[:, :1], float(far_delta))
    else:
        raise ValueError(f"interval_deltas: argument 'far_delta' must be a number (metres) or 'repeat', "
                         f"found {far_delta!r}.")
    return torch.cat([d, last], dim=1)


def weights_from_optical_depth(tau: Float[Tensor, "R S"]) -> tuple[Float[Tensor, "R S"], Float[Tensor, "R S"]]:
    """(weights w_i = T_i (1 - exp(-tau_i)), transmittance T_i = exp(-sum_{j<i} tau_j)) of samples
    sorted along each ray. Exclusive prefix sums are built by shifting (no cumsum - tau
    cancellation); 1 - exp(-tau) uses expm1 so tiny opacities keep their precision."""
    tau = tau.clamp_min(0.0)
    excl = torch.cat([torch.zeros_like(tau[:, :1]), torch.cumsum(tau, dim=1)[:, :-1]], dim=1)
    transmittance = torch.exp(-excl)
    return transmittance * -torch.expm1(-tau), transmittance


def composite(
    t: Float[Tensor, "R S"], sigma: Float[Tensor, "R S"], far_delta: FarDelta = 1e10
) -> tuple[Float[Tensor, "R S"], Float[Tensor, "R S"]]:
    """(weights, transmittance) of samples sorted by t with densities sigma: alpha_i =
    1 - exp(-sigma_i delta_i), delta_i = t_{i+1} - t_i, the last delta from far_delta."""
    if sigma.shape != t.shape:
        raise ValueError(f"composite: 'sigma' must have the shape of 't' {tuple(t.shape)}, found {tuple(sigma.shape)}.")
    return weights_from_optical_depth(sigma * interval_deltas(t, far_delta))


@dataclass
class NodeSamples:
    """One node's samples along R rays (camera frame, metres), sorted by t within the node."""

    t: Float[Tensor, "R S"]
    """Distance along the unit ray direction (metres)."""
    sigma: Float[Tensor, "R S"]
    """Volume density (1/metres)."""
    rgb: Float[Tensor, "R S 3"]
    """Colour in [0, 1]."""
    normal: Float[Tensor, "R S 3"]
    """Unit surface normal in the camera frame."""
    sdf: Float[Tensor, "R S"]
    """Signed distance (metres, negative inside)."""
    label: int
    """Semantic class id (LABELS: 0 background, 1 object, 2 right hand, 3 left hand)."""
    valid: Bool[Tensor, "R S"]
    """False for samples outside the node's bounds or on rays missing it: they get zero density."""
    delta: Float[Tensor, "R S"] | None = None
    """Interval length of each sample (metres); None: t_{i+1} - t_i, the last from far_delta."""

    def __post_init__(self) -> None:
        def bad(field: str, want: str, found) -> ValueError:
            return ValueError(f"NodeSamples: field '{field}' must have shape {want}, found {found}; "
                              f"all fields share the rays R and samples S of 't'.")

        if not isinstance(self.t, Tensor) or self.t.dim() != 2:
            raise bad("t", "(R, S)", tuple(self.t.shape) if isinstance(self.t, Tensor) else type(self.t).__name__)
        R, S = self.t.shape
        for name in ("sigma", "sdf", "valid") + (("delta",) if self.delta is not None else ()):
            x = getattr(self, name)
            if not isinstance(x, Tensor) or x.shape != (R, S):
                raise bad(name, f"({R}, {S})", tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__)
        for name in ("rgb", "normal"):
            x = getattr(self, name)
            if not isinstance(x, Tensor) or x.shape != (R, S, 3):
                raise bad(name, f"({R}, {S}, 3)", tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__)
        if self.valid.dtype != torch.bool:
            raise ValueError(f"NodeSamples: field 'valid' must be a bool tensor, found {self.valid.dtype}.")
        if isinstance(self.label, Tensor) or not isinstance(self.label, int) or isinstance(self.label, bool):
            raise ValueError(f"NodeSamples: field 'label' must be a Python int class id (LABELS), "
                             f"found {self.label!r}.")

    def optical_depth(self, far_delta: FarDelta = "repeat") -> Float[Tensor, "R S"]:
        """tau = sigma * delta over the node's own intervals, zero at invalid samples."""
        delta = self.delta.clamp_min(0.0) if self.delta is not None else interval_deltas(self.t, far_delta)
        # where, not a product: a NaN/inf density at an invalid sample must not leak into the render
        return torch.where(self.valid, self.sigma * delta, torch.zeros_like(self.sigma))


@dataclass
class MergedSamples:
    """All nodes' samples along the same rays, sorted by t."""

    t: Float[Tensor, "R S"]
    """Distance along the ray (metres), non-decreasing along S."""
    tau: Float[Tensor, "R S"]
    """Optical depth of each sample over its node's own interval (zero where invalid)."""
    rgb: Float[Tensor, "R S 3"]
    """Colour (zero where invalid)."""
    normal: Float[Tensor, "R S 3"]
    """Camera-frame normal (zero where invalid)."""
    sdf: Float[Tensor, "R S"]
    """Signed distance of the sample to its own node's surface (metres)."""
    valid: Bool[Tensor, "R S"]
    """Validity of each sample."""
    node_index: Int[Tensor, "R S"]
    """Index of the node (in the input list) each sample came from."""
    label: Int[Tensor, "R S"]
    """Semantic class id of each sample."""
    order: Int[Tensor, "R S"]
    """Position of each merged sample in the nodes' concatenation (merged = concat[order])."""
    sizes: list[int]
    """Samples per node S_k, in input order (the concatenation is split by these)."""


def _check_nodes(nodes: list[NodeSamples], fn: str) -> None:
    if not nodes:
        raise ValueError(f"{fn}: 'nodes' is empty; pass at least one NodeSamples.")
    R = nodes[0].t.shape[0]
    for k, n in enumerate(nodes):
        if not isinstance(n, NodeSamples):
            raise TypeError(f"{fn}: nodes[{k}] must be a NodeSamples, found {type(n).__name__}.")
        if n.t.shape[0] != R:
            raise ValueError(f"{fn}: all nodes must share the same rays; nodes[0] has R={R}, "
                             f"nodes[{k}] has R={n.t.shape[0]}.")


def merge_samples(nodes: list[NodeSamples], far_delta: FarDelta = "repeat") -> MergedSamples:
    """Concatenate the nodes' samples along S and sort by t (stable: ties keep node order).
    far_delta is the last-interval policy of nodes without their own `delta`."""
    _check_nodes(nodes, "merge_samples")
    R = nodes[0].t.shape[0]
    sizes = [n.t.shape[1] for n in nodes]
    t = torch.cat([n.t for n in nodes], dim=1)
    t_sorted, order = torch.sort(t, dim=1, stable=True)

    def take(x: Tensor) -> Tensor:
        idx = order if x.dim() == 2 else order[..., None]
        return torch.take_along_dim(x, idx, dim=1)

    valid = torch.cat([n.valid for n in nodes], dim=1)
    vmask = valid[..., None]
    rgb = torch.cat([n.rgb for n in nodes], dim=1)
    normal = torch.cat([n.normal for n in nodes], dim=1)
    node_index = torch.cat([torch.full((R, s), k, dtype=torch.long, device=t.device) for k, s in enumerate(sizes)], 1)
    label = torch.cat([torch.full((R, s), n.label, dtype=torch.long, device=t.device) for n, s in zip(nodes, sizes)], 1)
    return MergedSamples(
        t=t_sorted,
        tau=take(torch.cat([n.optical_depth(far_delta) for n in nodes], dim=1)),
        rgb=take(torch.where(vmask, rgb, torch.zeros_like(rgb))),
        normal=take(torch.where(vmask, normal, torch.zeros_like(normal))),
        sdf=take(torch.cat([n.sdf for n in nodes], dim=1)),
        valid=take(valid),
        node_index=take(node_index),
        label=take(label),
        order=order,
        sizes=sizes,
    )


def render_merged(
    nodes: list[NodeSamples],
    n_classes: int = N_CLASSES,
    background_rgb: Float[Tensor, "R 3"] | None = None,
    far_delta: FarDelta = "repeat",
) -> dict[str, Tensor | list[Tensor]]:
    """Composite all nodes' samples at once. Returns a dict:

    - rgb (R,3): sum w c, plus (1 - opacity) * background_rgb when given;
    - opacity (R,): sum w;
    - depth (R,): sum w t / opacity where opacity > 0, else 0 (distance along the ray, metres,
      not camera z);
    - normal (R,3): sum w n (camera frame, not renormalized);
    - semantics (R, n_classes): per-class sum of weights, class 0 (background) also gets 1 - opacity;
    - weights: list of (R, S_k) per node, in each node's own sample order (for per-node losses).
    """
    _check_nodes(nodes, "render_merged")
    for k, n in enumerate(nodes):
        if not 0 <= n.label < n_classes:
            raise ValueError(f"render_merged: nodes[{k}].label = {n.label} is not a class id in [0, {n_classes}); "
                             f"use LABELS {LABELS} or raise n_classes.")
    m = merge_samples(nodes, far_delta)
    w, _ = weights_from_optical_depth(m.tau)
    opacity = w.sum(dim=1)
    rgb = (w[..., None] * m.rgb).sum(dim=1)
    if background_rgb is not None:
        if background_rgb.shape != rgb.shape:
            raise ValueError(f"render_merged: 'background_rgb' must have shape {tuple(rgb.shape)}, "
                             f"found {tuple(background_rgb.shape)}.")
        rgb = rgb + (1.0 - opacity)[..., None] * background_rgb
    depth_sum = (w * m.t).sum(dim=1)
    seen = opacity > 0
    safe_opacity = torch.where(seen, opacity, torch.ones_like(opacity))  # no 0/0, not even in gradients
    depth = torch.where(seen, depth_sum / safe_opacity, torch.zeros_like(opacity))
    normal = (w[..., None] * m.normal).sum(dim=1)

    # back to each node's own sample order: concat[order] = merged  =>  concat = scatter(merged)
    w_concat = torch.zeros_like(w).scatter(1, m.order, w)
    weights = list(torch.split(w_concat, m.sizes, dim=1))
    per_class = [torch.zeros_like(opacity) for _ in range(n_classes)]
    for n, wk in zip(nodes, weights):
        per_class[n.label] = per_class[n.label] + wk.sum(dim=1)
    bg = LABELS["background"]
    per_class[bg] = per_class[bg] + (1.0 - opacity).clamp_min(0.0)
    semantics = torch.stack(per_class, dim=1)
    return {"rgb": rgb, "opacity": opacity, "depth": depth, "normal": normal, "semantics": semantics,
            "weights": weights}


def render_single(
    node: NodeSamples,
    n_classes: int = N_CLASSES,
    background_rgb: Float[Tensor, "R 3"] | None = None,
    far_delta: FarDelta = "repeat",
) -> dict[str, Tensor | list[Tensor]]:
    """The amodal render of one node alone (same outputs as render_merged)."""
    return render_merged([node], n_classes, background_rgb, far_delta)
