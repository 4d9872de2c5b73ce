"""Turntables: a mesh group spun about the vertical axis through its centre, seen by a framing camera.

Pure maths (numpy). The group is first moved into its own turntable camera frame (OpenCV: x right,
y down, z forward): centred on the optical axis at the distance where its bounding sphere fills
`fill` of the image's half-size, then turned about the camera's y axis (vertical on screen).
"""
from __future__ import annotations

import math

import numpy as np
from jaxtyping import Float


def turntable_intrinsics(size: int, focal_scale: float = 1.2) -> Float[np.ndarray, "3 3"]:
    """Square `size` x `size` camera, focal = focal_scale * size pixels, centred principal point."""
    f = focal_scale * size
    return np.array([[f, 0.0, size / 2.0], [0.0, f, size / 2.0], [0.0, 0.0, 1.0]])


def bounding_sphere(points: Float[np.ndarray, "N 3"]) -> tuple[Float[np.ndarray, "3"], float]:
    """(centre, radius) enclosing all points: centre of the bounding box, radius to the farthest point."""
    p = np.asarray(points, dtype=np.float64)
    c = 0.5 * (p.min(0) + p.max(0))
    return c, float(np.linalg.norm(p - c, axis=1).max()) if len(p) else 0.0


def framing_distance(radius: float, K: Float[np.ndarray, "3 3"], size: int, fill: float = 0.8) -> float:
    """Distance (metres) at which a sphere of `radius` spans `fill` of the half image (exact for a
    sphere on the optical axis: its silhouette half-angle is asin(r / d))."""
    half_angle = math.atan(fill * (size / 2.0) / float(K[0, 0]))
    return max(radius, 1e-6) / math.sin(half_angle)


def yaw(angle: float) -> Float[np.ndarray, "3 3"]:
    """Rotation by `angle` radians about the camera's y axis."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def turntable_poses(points: Float[np.ndarray, "N 3"], K: Float[np.ndarray, "3 3"], size: int, num_views: int,
                    fill: float = 0.8) -> list[Float[np.ndarray, "4 4"]]:
    """`num_views` transforms T_view_from_src (src = the frame `points` are in), one full turn.

    View k: x_view = R_y(2 pi k / N) (x_src - c) + [0, 0, d], c and d from the points' bounding sphere,
    so the group stays centred and fully in view at every angle.
    """
    if num_views < 1:
        raise ValueError(f"turntable: num_views must be >= 1, found {num_views}.")
    c, r = bounding_sphere(points)
    d = framing_distance(r, K, size, fill)
    poses = []
    for k in range(num_views):
        R = yaw(2.0 * math.pi * k / num_views)
        T = np.eye(4)
        T[:3, :3] = R
        T[:3, 3] = np.array([0.0, 0.0, d]) - R @ c
        poses.append(T)
    return poses

