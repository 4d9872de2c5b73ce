"""Pure, batched, differentiable torch geometry: SO(3)/SE(3), pinhole cameras and rays, LBS.

Conventions: quaternions scalar-last (x, y, z, w); 6D rotations = first two columns of R;
se3 twists xi = (rho translation part, phi axis-angle); OpenCV camera frame; pixel centres at
integer + 0.5; transforms `T_a_from_b` (4x4) applied as T_a_from_b @ x_b.
"""
from hold.geometry.camera import (
    image_rays,
    make_intrinsics,
    pixel_centers,
    pixel_rays,
    project,
    project_with_depth,
    scale_intrinsics,
    unproject,
)
from hold.geometry.lbs import (
    blend_transforms,
    forward_kinematics,
    inverse_lbs,
    inverse_lbs_with_weights,
    knn_skinning_weights,
    lbs,
)
from hold.geometry.rotations import (
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    interpolate_linear,
    interpolate_rotations,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rotation_6d,
    quaternion_conjugate,
    quaternion_multiply,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    rotation_6d_to_matrix,
    rotation_angle_between,
    skew,
    slerp,
    slerp_axis_angle,
)
from hold.geometry.se3 import (
    compose,
    invert_transform,
    make_transform,
    se3_exp,
    se3_log,
    transform_directions,
    transform_points,
    umeyama,
)

__all__ = [
    # rotations
    "axis_angle_to_matrix", "matrix_to_axis_angle", "axis_angle_to_quaternion", "quaternion_to_axis_angle",
    "quaternion_to_matrix", "matrix_to_quaternion", "rotation_6d_to_matrix", "matrix_to_rotation_6d",
    "quaternion_multiply", "quaternion_conjugate", "skew", "slerp", "slerp_axis_angle",
    "interpolate_rotations", "interpolate_linear", "rotation_angle_between",
    # se3
    "make_transform", "invert_transform", "compose", "transform_points", "transform_directions",
    "se3_exp", "se3_log", "umeyama",
    # camera
    "make_intrinsics", "project", "project_with_depth", "unproject", "pixel_centers", "pixel_rays",
    "image_rays", "scale_intrinsics",
    # lbs
    "forward_kinematics", "blend_transforms", "lbs", "knn_skinning_weights", "inverse_lbs",
    "inverse_lbs_with_weights",
]
