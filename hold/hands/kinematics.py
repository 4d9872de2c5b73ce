"""Backend-agnostic hand anatomy from the 21 keypoints: palm frame and finger flexion axes.

Used to build pose priors and to close fingers onto an object (grasp synthesis), identically for
every HandModel, because all backends share the keypoint order and the MANO-like convention that
`hand_pose` rotations are expressed in the rest frame's world-aligned axes.
"""
from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from hold.hands.base import HandModel


def palm_normal(keypoints: Float[Tensor, "... 21 3"], side: str) -> Float[Tensor, "... 3"]:
    """Unit normal pointing out of the palm (volar side).

    For a right hand (index_mcp - wrist) x (little_mcp - wrist) points out of the palm; mirroring
    reverses a cross product, hence the sign flip for a left hand.
    """
    wrist, index_mcp, little_mcp = keypoints[..., 0, :], keypoints[..., 5, :], keypoints[..., 17, :]
    n = torch.linalg.cross(index_mcp - wrist, little_mcp - wrist)
    n = n if side == "right" else -n
    return n / n.norm(dim=-1, keepdim=True)


def palm_center(keypoints: Float[Tensor, "... 21 3"]) -> Float[Tensor, "... 3"]:
    """Centre of the palm: mean of the wrist and the four finger MCP joints."""
    return keypoints[..., [0, 5, 9, 13, 17], :].mean(-2)


def flexion_axes(model: HandModel, rest_keypoints: Float[Tensor, "21 3"]) -> Float[Tensor, "15 3"]:
    """Per articulated joint (hand_pose order), the unit axis whose positive rotation curls the
    finger toward the palm: axis = bone_direction x volar_normal.

    A positive angle about a = d x n moves the bone direction d toward n (d' = d + θ a x d = d + θ n).
    """
    n = palm_normal(rest_keypoints, model.side)
    base = torch.as_tensor(model.pose_joint_keypoints, device=rest_keypoints.device)
    d = rest_keypoints[base + 1] - rest_keypoints[base]  # child keypoint is the next one along the finger
    d = d / d.norm(dim=-1, keepdim=True)
    a = torch.linalg.cross(d, n.expand_as(d))
    return a / a.norm(dim=-1, keepdim=True)


def rest_keypoints(model: HandModel, betas: Tensor | None = None) -> Float[Tensor, "21 3"]:
    """Keypoints of the model in its rest pose (zero pose, no translation)."""
    p = model.zero_params(1, device=model.faces.device)
    if betas is not None:
        p["betas"] = betas.reshape(1, -1).to(p["betas"])
    with torch.no_grad():
        return model(**p).keypoints[0]
