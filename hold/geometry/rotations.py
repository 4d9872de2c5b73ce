"""SO(3) conversions, SLERP and gap filling: batched over any leading dims, float32/float64,
differentiable everywhere including exactly zero rotation (Taylor branches near 0).

Conventions
- Axis-angle `aa` (..., 3): unit axis times angle in radians (what MANO/smplx call "pose").
- Quaternions (..., 4) are scalar-LAST (x, y, z, w), as in roma and scipy. Functions that return
  quaternions return them normalized with w >= 0 (so they correspond to angles in [0, pi]).
- 6D rotations (..., 6) are the first two COLUMNS of R, column after column:
  d6 = (R[0,0], R[1,0], R[2,0], R[0,1], R[1,1], R[2,1]) (Zhou et al. 2019; pytorch3d uses rows).
"""
from __future__ import annotations

import roma
import torch
from jaxtyping import Bool, Float
from torch import Tensor

# ------------------------------------------------------------------------------------------ helpers


def _check_shape(x: Tensor, tail: tuple[int, ...], name: str, fn: str) -> None:
    """Raise one clear error when the trailing dims of `x` are not `tail`."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: argument '{name}' must be a torch.Tensor, found {type(x).__name__}.")
    if x.dim() < len(tail) or tuple(x.shape[x.dim() - len(tail):]) != tail:
        want = "(..., " + ", ".join(str(d) for d in tail) + ")"
        raise ValueError(
            f"{fn}: argument '{name}' must have shape {want}, found {tuple(x.shape)}; "
            f"reshape it so that its last {len(tail)} dim(s) are {tail}."
        )


def _small_angle_threshold(dtype: torch.dtype) -> float:
    """Angle below which the Taylor series (to 6th order) replace the closed forms.

    The closed forms (e.g. (theta - sin theta) / theta^3) lose ~eps/theta^2 relative precision,
    their autograd derivatives too; the 6th-order series is exact to < 1e-13 below 0.1 rad and
    to < 1e-21 below 0.01 rad, so the switch is invisible in both dtypes.
    """
    return 1e-2 if dtype == torch.float64 else 1e-1


def _safe_angle(theta2: Tensor) -> tuple[Tensor, Tensor]:
    """(small mask, theta) from a squared angle; theta is 1 where small so that the closed
    forms evaluated there (then discarded by torch.where) have finite values AND gradients."""
    thr = _small_angle_threshold(theta2.dtype)
    small = theta2 < thr * thr
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
    return small, theta


def _sin_over_x(theta2: Tensor, small: Tensor, theta: Tensor) -> Tensor:
    """sin(t) / t."""
    t2 = theta2
    taylor = 1.0 - t2 / 6.0 + t2 * t2 / 120.0 - t2 * t2 * t2 / 5040.0
    return torch.where(small, taylor, torch.sin(theta) / theta)


def _one_minus_cos_over_x2(theta2: Tensor, small: Tensor, theta: Tensor) -> Tensor:
    """(1 - cos t) / t^2, closed form written as 2 sin^2(t/2) / t^2 (no cancellation)."""
    t2 = theta2
    taylor = 0.5 - t2 / 24.0 + t2 * t2 / 720.0 - t2 * t2 * t2 / 40320.0
    return torch.where(small, taylor, 2.0 * torch.sin(0.5 * theta) ** 2 / (theta * theta))


def skew(v: Float[Tensor, "... 3"]) -> Float[Tensor, "... 3 3"]:
    """Cross-product matrix: skew(v) @ x == cross(v, x)."""
    _check_shape(v, (3,), "v", "skew")
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).unflatten(-1, (3, 3))


def _canonical_quaternion(q: Tensor) -> Tensor:
    """Normalize and flip to w >= 0 (q and -q are the same rotation)."""
    q = q / torch.linalg.norm(q, dim=-1, keepdim=True)
    sign = torch.where(q[..., 3:] < 0, -torch.ones_like(q[..., 3:]), torch.ones_like(q[..., 3:]))
    return q * sign


# ---------------------------------------------------------------------------------- conversions


def axis_angle_to_matrix(aa: Float[Tensor, "... 3"]) -> Float[Tensor, "... 3 3"]:
    """Rodrigues: R = I + sin(t)/t K + (1 - cos t)/t^2 K^2, K = skew(aa), t = |aa|."""
    _check_shape(aa, (3,), "aa", "axis_angle_to_matrix")
    theta2 = (aa * aa).sum(-1)
    small, theta = _safe_angle(theta2)
    a = _sin_over_x(theta2, small, theta)[..., None, None]
    b = _one_minus_cos_over_x2(theta2, small, theta)[..., None, None]
    K = skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device)
    return eye + a * K + b * (K @ K)


def axis_angle_to_quaternion(aa: Float[Tensor, "... 3"]) -> Float[Tensor, "... 4"]:
    """q = (sin(t/2) axis, cos(t/2)), scalar-last. |aa| <= pi gives w >= 0."""
    _check_shape(aa, (3,), "aa", "axis_angle_to_quaternion")
    theta2 = (aa * aa).sum(-1)
    small, theta = _safe_angle(theta2)
    t2 = theta2
    # sin(t/2)/t and cos(t/2) as series in t^2 near 0 (cos via theta would have a NaN grad at 0).
    s_taylor = 0.5 - t2 / 48.0 + t2 * t2 / 3840.0 - t2 * t2 * t2 / 645120.0
    c_taylor = 1.0 - t2 / 8.0 + t2 * t2 / 384.0 - t2 * t2 * t2 / 46080.0
    s = torch.where(small, s_taylor, torch.sin(0.5 * theta) / theta)
    c = torch.where(small, c_taylor, torch.cos(0.5 * theta))
    return torch.cat([aa * s[..., None], c[..., None]], dim=-1)


def quaternion_to_axis_angle(q: Float[Tensor, "... 4"]) -> Float[Tensor, "... 3"]:
    """Inverse of axis_angle_to_quaternion; q is normalized internally; output angle in [0, pi]."""
    _check_shape(q, (4,), "q", "quaternion_to_axis_angle")
    q = _canonical_quaternion(q)
    v, w = q[..., :3], q[..., 3]
    n2 = (v * v).sum(-1)  # = sin^2(t/2)
    small, n = _safe_angle(n2)
    # aa = v * 2 * atan2(|v|, w) / |v|; near 0: atan(x)/x = 1 - x^2/3 + x^4/5 - ... with x = |v|/w.
    x2 = n2 / (w * w)
    ratio_taylor = (1.0 - x2 / 3.0 + x2 * x2 / 5.0 - x2 * x2 * x2 / 7.0 + x2 * x2 * x2 * x2 / 9.0) / w
    ratio = torch.where(small, ratio_taylor, torch.atan2(n, w) / n)
    return v * (2.0 * ratio)[..., None]


def quaternion_to_matrix(q: Float[Tensor, "... 4"]) -> Float[Tensor, "... 3 3"]:
    """Rotation matrix of a scalar-last quaternion (normalized internally, so any nonzero q works)."""
    _check_shape(q, (4,), "q", "quaternion_to_matrix")
    x, y, z, w = q.unbind(-1)
    s = 2.0 / (q * q).sum(-1)
    xx, yy, zz = s * x * x, s * y * y, s * z * z
    xy, xz, yz = s * x * y, s * x * z, s * y * z
    wx, wy, wz = s * w * x, s * w * y, s * w * z
    return torch.stack(
        [1 - yy - zz, xy - wz, xz + wy,
         xy + wz, 1 - xx - zz, yz - wx,
         xz - wy, yz + wx, 1 - xx - yy],
        dim=-1,
    ).unflatten(-1, (3, 3))


def matrix_to_quaternion(R: Float[Tensor, "... 3 3"]) -> Float[Tensor, "... 4"]:
    """Unit quaternion (w >= 0) of a rotation matrix; Markley's method (roma): robust at any angle,
    including pi, and returns a unit quaternion even for slightly non-orthonormal R."""
    _check_shape(R, (3, 3), "R", "matrix_to_quaternion")
    return _canonical_quaternion(roma.rotmat_to_unitquat(R))


def matrix_to_axis_angle(R: Float[Tensor, "... 3 3"]) -> Float[Tensor, "... 3"]:
    """Axis-angle with angle in [0, pi]; via the quaternion, so it stays accurate near pi (where
    the usual (R - R^T)/(2 sin t) formula breaks down)."""
    _check_shape(R, (3, 3), "R", "matrix_to_axis_angle")
    return quaternion_to_axis_angle(matrix_to_quaternion(R))


def rotation_6d_to_matrix(d6: Float[Tensor, "... 6"]) -> Float[Tensor, "... 3 3"]:
    """Gram-Schmidt of the two 3-vectors in d6, which become the first two COLUMNS of R."""
    _check_shape(d6, (6,), "d6", "rotation_6d_to_matrix")
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / torch.linalg.norm(a1, dim=-1, keepdim=True)
    a2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = a2 / torch.linalg.norm(a2, dim=-1, keepdim=True)
    b3 = torch.linalg.cross(b1, b2)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rotation_6d(R: Float[Tensor, "... 3 3"]) -> Float[Tensor, "... 6"]:
    """First two columns of R, concatenated (see the module docstring)."""
    _check_shape(R, (3, 3), "R", "matrix_to_rotation_6d")
    return torch.cat([R[..., :, 0], R[..., :, 1]], dim=-1)


def quaternion_multiply(q0: Float[Tensor, "... 4"], q1: Float[Tensor, "... 4"]) -> Float[Tensor, "... 4"]:
    """Hamilton product q0 * q1 (scalar-last): the rotation of q1 followed by that of q0."""
    _check_shape(q0, (4,), "q0", "quaternion_multiply")
    _check_shape(q1, (4,), "q1", "quaternion_multiply")
    q0, q1 = torch.broadcast_tensors(q0, q1)
    v0, w0 = q0[..., :3], q0[..., 3:]
    v1, w1 = q1[..., :3], q1[..., 3:]
    v = w0 * v1 + w1 * v0 + torch.linalg.cross(v0, v1)
    w = w0 * w1 - (v0 * v1).sum(-1, keepdim=True)
    return torch.cat([v, w], dim=-1)


def quaternion_conjugate(q: Float[Tensor, "... 4"]) -> Float[Tensor, "... 4"]:
    """(-x, -y, -z, w): the inverse rotation for unit quaternions."""
    _check_shape(q, (4,), "q", "quaternion_conjugate")
    return torch.cat([-q[..., :3], q[..., 3:]], dim=-1)


# ------------------------------------------------------------------------------ interpolation


def slerp(q0: Float[Tensor, "... 4"], q1: Float[Tensor, "... 4"], t: Tensor | float) -> Float[Tensor, "... 4"]:
    """Shortest-path spherical linear interpolation of unit quaternions; q0, q1 and t broadcast.

    Computed as q0 * exp(t * log(conj(q0) * q1)) with the Taylor-safe log/exp above, so it is
    differentiable even for q0 == q1. t = 0 gives q0; t = 1 gives q1 up to sign (exactly q1 when
    q0 . q1 >= 0); t outside [0, 1] extrapolates. Antipodal inputs (180 deg apart) pick an arc.
    """
    _check_shape(q0, (4,), "q0", "slerp")
    _check_shape(q1, (4,), "q1", "slerp")
    t = torch.as_tensor(t, dtype=q0.dtype, device=q0.device)
    q0 = q0 / torch.linalg.norm(q0, dim=-1, keepdim=True)
    q_rel = quaternion_multiply(quaternion_conjugate(q0), q1)  # canonicalized (shortest) in the log
    aa_rel = quaternion_to_axis_angle(q_rel)
    return quaternion_multiply(q0, axis_angle_to_quaternion(t[..., None] * aa_rel))


def slerp_axis_angle(aa0: Float[Tensor, "... 3"], aa1: Float[Tensor, "... 3"], t: Tensor | float) -> Float[Tensor, "... 3"]:
    """slerp on axis-angle rotations; the result has angle in [0, pi]."""
    _check_shape(aa0, (3,), "aa0", "slerp_axis_angle")
    _check_shape(aa1, (3,), "aa1", "slerp_axis_angle")
    q = slerp(axis_angle_to_quaternion(aa0), axis_angle_to_quaternion(aa1), t)
    return quaternion_to_axis_angle(q)


def _gap_neighbours(valid: Tensor, T: int, device: torch.device, fn: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For each frame: the nearest valid frame at or before it, at or after it, and the
    interpolation fraction in [0, 1]; edges hold the first/last valid frame (fraction 0).
    Also returns `valid` as a tensor on `device`."""
    valid = torch.as_tensor(valid, device=device)
    if valid.dtype != torch.bool or valid.shape != (T,):
        raise ValueError(
            f"{fn}: argument 'valid' must be a bool tensor of shape ({T},) (one flag per frame of "
            f"the first input), found dtype {valid.dtype} and shape {tuple(valid.shape)}."
        )
    if not bool(valid.any()):
        raise ValueError(f"{fn}: no frame is valid (valid.any() is False): there is nothing to "
                         "interpolate from; drop the sequence or provide at least one valid frame.")
    idx = torch.arange(T, device=valid.device)
    prev = torch.cummax(torch.where(valid, idx, torch.full_like(idx, -1)), dim=0).values
    nxt = torch.flip(torch.cummin(torch.flip(torch.where(valid, idx, torch.full_like(idx, T)), [0]), dim=0).values, [0])
    # Before the first valid frame: hold it; after the last one: hold it.
    prev = torch.where(prev < 0, nxt, prev)
    nxt = torch.where(nxt >= T, prev, nxt)
    span = (nxt - prev).clamp_min(1)
    frac = (idx - prev).to(torch.float64) / span.to(torch.float64)
    return prev, nxt, frac, valid


def interpolate_rotations(aa: Float[Tensor, "T *K 3"], valid: Bool[Tensor, "T"]) -> Float[Tensor, "T *K 3"]:
    """Fill invalid frames by SLERP between the nearest valid frames before and after (holding
    the edge value before the first / after the last valid frame). Valid frames are returned
    bit-exactly; values of invalid frames are ignored (they may be NaN). Raises ValueError when
    no frame is valid."""
    _check_shape(aa, (3,), "aa", "interpolate_rotations")
    T = aa.shape[0]
    prev, nxt, frac, valid = _gap_neighbours(valid, T, aa.device, "interpolate_rotations")
    q = axis_angle_to_quaternion(aa)
    frac = frac.to(aa.dtype).reshape((T,) + (1,) * (aa.dim() - 2))
    filled = quaternion_to_axis_angle(slerp(q[prev], q[nxt], frac))
    keep = valid.reshape((T,) + (1,) * (aa.dim() - 1))
    return torch.where(keep, aa, filled)


def interpolate_linear(x: Float[Tensor, "T ..."], valid: Bool[Tensor, "T"]) -> Float[Tensor, "T ..."]:
    """Same gap-filling rule as interpolate_rotations, with linear interpolation (translations)."""
    if not isinstance(x, Tensor) or x.dim() < 1:
        raise ValueError("interpolate_linear: argument 'x' must be a tensor of shape (T, ...), "
                         f"found {type(x).__name__} {tuple(getattr(x, 'shape', ()))}.")
    T = x.shape[0]
    prev, nxt, frac, valid = _gap_neighbours(valid, T, x.device, "interpolate_linear")
    frac = frac.to(x.dtype).reshape((T,) + (1,) * (x.dim() - 1))
    filled = torch.lerp(x[prev], x[nxt], frac)
    keep = valid.reshape((T,) + (1,) * (x.dim() - 1))
    return torch.where(keep, x, filled)


# ------------------------------------------------------------------------------------ distance


def rotation_angle_between(R0: Float[Tensor, "... 3 3"], R1: Float[Tensor, "... 3 3"]) -> Float[Tensor, "..."]:
    """Geodesic angle (radians, in [0, pi]) of R0^T R1, as atan2(sin, cos) of its trace and skew
    part: accurate near 0 and near pi (acos of the trace is not), gradient 0 (not NaN) at R0 == R1."""
    _check_shape(R0, (3, 3), "R0", "rotation_angle_between")
    _check_shape(R1, (3, 3), "R1", "rotation_angle_between")
    Rr = R0.transpose(-1, -2) @ R1
    cos = 0.5 * (Rr[..., 0, 0] + Rr[..., 1, 1] + Rr[..., 2, 2] - 1.0)
    vee = torch.stack([Rr[..., 2, 1] - Rr[..., 1, 2], Rr[..., 0, 2] - Rr[..., 2, 0], Rr[..., 1, 0] - Rr[..., 0, 1]], -1)
    s2 = 0.25 * (vee * vee).sum(-1)
    pos = s2 > 0
    sin = torch.where(pos, torch.sqrt(torch.where(pos, s2, torch.ones_like(s2))), torch.zeros_like(s2))
    return torch.atan2(sin, cos)
