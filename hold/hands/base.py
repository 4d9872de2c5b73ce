"""The one hand-model interface every backend implements (DESIGN.md "Hand models")."""
from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

# The 21 keypoints, common order: wrist, then thumb, index, middle, ring, little; each base -> tip.
KEYPOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "little_mcp", "little_pip", "little_dip", "little_tip",
)
NUM_KEYPOINTS = 21
FINGERTIP_KEYPOINTS: tuple[int, ...] = (4, 8, 12, 16, 20)
# Parent of each keypoint in the 21-keypoint skeleton (for drawing and bone lengths).
KEYPOINT_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)


@dataclass
class HandOutput:
    """Posed hand, everything in the caller's frame (camera frame when `transl` is camera-frame)."""

    vertices: Float[Tensor, "B V 3"]
    """Posed surface vertices (metres)."""
    keypoints: Float[Tensor, "B 21 3"]
    """The 21 keypoints in KEYPOINT_NAMES order (metres)."""
    bone_transforms: Float[Tensor, "B J 4 4"]
    """Skinning transforms A_j (posed-from-rest, translation included): LBS of `rest_vertices`
    with `skinning_weights` and these gives `vertices` (exactly for anny; MANO adds pose
    correctives before skinning, which inverse LBS ignores as HOLD does)."""
    faces: Int[Tensor, "F 3"]
    """Triangle indices, counter-clockwise seen from outside."""
    skinning_weights: Float[Tensor, "V J"]
    """LBS weights, rows sum to 1."""
    rest_vertices: Float[Tensor, "B V 3"]
    """Shaped (betas applied) vertices in the rest pose = the hand's canonical space."""
    joints: Float[Tensor, "B J 3"]
    """Posed positions of the backend's own J bone heads (metres)."""


class HandModel(nn.Module, abc.ABC):
    """A parametric hand: (global_orient, hand_pose, betas, transl) -> posed mesh + keypoints.

    Conventions shared by all backends:
    - `global_orient` (B,3) axis-angle rotates the hand about its wrist joint, then `transl` (B,3)
      is added: posed = R (x - j_wrist) + j_wrist + transl, as in MANO/smplx.
    - `hand_pose` (B,P) is per-finger-joint axis-angle (P = 45: 15 joints x 3); the frame each
      rotation is expressed in is the backend's (documented on the backend).
    - `betas` (B,NB) shape coefficients with a standard-normal prior (0 = mean hand).
    """

    name: str
    side: str  # "right" | "left"
    num_pose_params: int
    num_betas: int
    num_joints: int
    pose_joint_bones: tuple[int, ...]
    """Bone index driven by each of the 15 hand_pose joints (hand_pose order; 3 per finger, base->tip)."""
    pose_joint_keypoints: tuple[int, ...]
    """Keypoint index at each of the 15 hand_pose joints (its child keypoint is the next index)."""

    @abc.abstractmethod
    def forward(
        self,
        global_orient: Float[Tensor, "B 3"],
        hand_pose: Float[Tensor, "B P"],
        betas: Float[Tensor, "B NB"] | None = None,
        transl: Float[Tensor, "B 3"] | None = None,
    ) -> HandOutput:
        """Pose and shape the hand; see the class docstring for conventions."""

    @property
    def faces(self) -> Int[Tensor, "F 3"]:
        return self.faces_buf

    def zero_params(self, batch: int = 1, device=None, dtype=torch.float32) -> dict[str, Tensor]:
        """Mean hand, rest pose, at the origin: a dict to `**` into forward."""
        z = lambda *s: torch.zeros(*s, device=device, dtype=dtype)  # noqa: E731
        return dict(global_orient=z(batch, 3), hand_pose=z(batch, self.num_pose_params),
                    betas=z(batch, self.num_betas), transl=z(batch, 3))
