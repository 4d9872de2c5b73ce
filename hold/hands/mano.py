"""The `mano` hand backend: smplx's MANO layer on the user's own MANO_RIGHT/LEFT.pkl.

The model is built by `smplx.MANO` (which prepares the tensors: posedirs as (135, 2334), parents,
float buffers) and evaluated with smplx's own lbs helpers (blend_shapes, vertices2joints,
batch_rodrigues, pose-corrective blend shapes), but forward kinematics is ours so that the
per-bone skinning transforms A (the `bone_transforms` HOLD's inverse LBS needs) come out; the
vertices equal `smplx.MANO(...)(betas, global_orient, hand_pose, transl).vertices`.

Parametrization (smplx's): `global_orient` rotates about the wrist joint, then `transl` is added;
`hand_pose` (45) = 15 joints x axis-angle in smplx's joint order (index 1-3, middle 4-6,
little 7-9, ring 10-12, thumb 13-15), each relative to its parent; in the rest pose all frames are
world-aligned, so the axes are the rest frame's axes (as for the `anny` backend). With
`flat_hand_mean=True` (default) hand_pose = 0 is the flat hand; with False it is an offset from
MANO's mean pose `hands_mean` (what smplx does by default).

MANO data is licence-gated, so the model arrays are non-persistent buffers: they are never
written into a checkpoint's state_dict.

Left hand: MANO_LEFT.pkl is loaded as is (is_rhand=False), with one correction. In the official
release its `shapedirs` equal the right hand's instead of being mirrored (smplx issue #48), so the
same betas give differently shaped left and right hands; the community fix negates their x
component (`shapedirs[:, 0, :] *= -1`). `ManoConfig.fix_left_shapedirs` ("auto") applies it when
MANO_RIGHT.pkl sits beside the left file and the two x components agree (i.e. the file has the
defect), and leaves already-corrected files alone.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import smplx
import torch
import torch.nn.functional as F
from jaxtyping import Float
from smplx.lbs import batch_rodrigues, blend_shapes, vertices2joints
from smplx.vertex_ids import vertex_ids as SMPLX_VERTEX_IDS
from torch import Tensor

from hold.geometry.lbs import forward_kinematics
from hold.hands.base import HandModel, HandOutput
from hold.hands.mano_loader import find_mano_file, load_mano_pickle, mano_file_name

NUM_JOINTS = 16
# smplx's fingertip vertices, appended to the 16 joints as "joints" 16..20 in this order.
TIP_VERTEX_IDS: tuple[int, ...] = tuple(
    SMPLX_VERTEX_IDS["mano"][k] for k in ("thumb", "index", "middle", "ring", "pinky"))
# For each of the 21 common keypoints (base.KEYPOINT_NAMES), its index in cat(joints[16], tips[5]).
KEYPOINT_SOURCES: tuple[int, ...] = (
    0,
    13, 14, 15, 16,  # thumb
    1, 2, 3, 17,  # index
    4, 5, 6, 18,  # middle
    10, 11, 12, 19,  # ring
    7, 8, 9, 20,  # little
)


@dataclass
class ManoConfig:
    """How the MANO backend interprets the user's MANO files."""

    flat_hand_mean: bool = True
    """True: hand_pose = 0 is the flat open hand. False: hand_pose is added to MANO's mean pose
    (`hands_mean`, slightly curled), smplx's default; match whatever produced your poses."""
    fix_left_shapedirs: Literal["auto", "always", "never"] = "auto"
    """Left hand only: negate the x component of shapedirs (official MANO_LEFT.pkl defect, smplx
    issue #48). auto = when MANO_RIGHT.pkl is beside it and shows the defect; always; never."""

    def __post_init__(self):
        if self.fix_left_shapedirs not in ("auto", "always", "never"):
            raise ValueError(f"ManoConfig.fix_left_shapedirs must be 'auto', 'always' or 'never', "
                             f"got {self.fix_left_shapedirs!r}")


def _skin(
    x_rest: Float[Tensor, "B V 3"], weights: Float[Tensor, "V J"], A: Float[Tensor, "B J 4 4"]
) -> Float[Tensor, "B V 3"]:
    """Linear blend skinning: x = (sum_j w_j A_j) x_rest."""
    T = torch.einsum("vj,bjxy->bvxy", weights, A[:, :, :3, :])
    return (T[..., :3] @ x_rest[..., None])[..., 0] + T[..., 3]


class ManoHand(HandModel):
    """MANO through smplx: 778 vertices, 1538 faces, 16 joints, 45 pose and 10 shape parameters."""

    name = "mano"
    num_pose_params = 45
    num_betas = 10
    num_joints = NUM_JOINTS

    def __init__(self, arrays: dict[str, Any], side: str = "right", config: ManoConfig | None = None,
                 model_path: str | Path = "mano"):
        """`arrays`: the MANO file's content (see `mano_loader.load_mano_pickle`), any left-hand
        correction already applied; `model_path` is only what smplx prints in its repr."""
        super().__init__()
        if side not in ("right", "left"):
            raise ValueError(f"ManoHand: side must be 'right' or 'left', got {side!r}")
        self.side = side
        self.config = config or ManoConfig()
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a note about 10 betas
            layer = smplx.MANO(str(model_path), data_struct=smplx.utils.Struct(**arrays), is_rhand=side == "right",
                               use_pca=False, flat_hand_mean=self.config.flat_hand_mean,
                               create_global_orient=False, create_hand_pose=False, create_betas=False,
                               create_transl=False, create_body_pose=False)
        for name, value in (("v_template", layer.v_template), ("shapedirs", layer.shapedirs),
                            ("posedirs", layer.posedirs), ("J_regressor", layer.J_regressor),
                            ("lbs_weights", layer.lbs_weights), ("hand_mean", layer.hand_mean),
                            ("faces_buf", layer.faces_tensor),
                            ("tip_vertices", torch.tensor(TIP_VERTEX_IDS, dtype=torch.long))):
            self.register_buffer(name, value.clone(), persistent=False)
        self.parents: list[int] = [int(p) for p in layer.parents]
        # Keypoint at the base of each articulated joint (hand_pose order), for priors / flexion axes.
        self.pose_joint_keypoints: tuple[int, ...] = tuple(KEYPOINT_SOURCES.index(j) for j in range(1, NUM_JOINTS))
        self.pose_joint_bones: tuple[int, ...] = tuple(range(1, NUM_JOINTS))  # hand_pose joint i drives bone i+1

    def forward(
        self,
        global_orient: Float[Tensor, "B 3"],
        hand_pose: Float[Tensor, "B 45"],
        betas: Float[Tensor, "B 10"] | Float[Tensor, "10"] | None = None,
        transl: Float[Tensor, "B 3"] | None = None,
    ) -> HandOutput:
        B = global_orient.shape[0]
        dtype, device = global_orient.dtype, global_orient.device
        if global_orient.shape != (B, 3) or hand_pose.shape != (B, self.num_pose_params):
            raise ValueError(f"ManoHand: global_orient must be (B, 3) and hand_pose (B, 45) (15 joints x "
                             f"axis-angle), got {tuple(global_orient.shape)} and {tuple(hand_pose.shape)}")
        if betas is None:
            betas = torch.zeros(B, self.num_betas, dtype=dtype, device=device)
        if betas.shape[-1] != self.num_betas or betas.dim() not in (1, 2):
            raise ValueError(f"ManoHand: betas must be ({self.num_betas},) or (B, {self.num_betas}), "
                             f"got {tuple(betas.shape)}")
        betas = betas.to(dtype).reshape(-1, self.num_betas)
        if betas.shape[0] not in (1, B):
            raise ValueError(f"ManoHand: betas has {betas.shape[0]} rows for a batch of {B}; pass (10,), (1, 10) "
                             f"or (B, 10)")
        betas = betas.expand(B, -1)
        transl = torch.zeros(B, 3, dtype=dtype, device=device) if transl is None else transl.to(dtype)
        v_template, shapedirs, posedirs, J_regressor, weights = (
            b.to(dtype) for b in (self.v_template, self.shapedirs, self.posedirs, self.J_regressor, self.lbs_weights))

        v_shaped = v_template + blend_shapes(betas, shapedirs)  # (B, V, 3) rest pose = canonical space
        joints_rest = vertices2joints(J_regressor, v_shaped)  # (B, 16, 3)
        full_pose = torch.cat([global_orient, hand_pose + self.hand_mean.to(dtype)], dim=1)
        rot = batch_rodrigues(full_pose.reshape(-1, 3)).reshape(B, NUM_JOINTS, 3, 3)
        eye = torch.eye(3, dtype=dtype, device=device)
        pose_feature = (rot[:, 1:] - eye).reshape(B, -1)
        v_posed = v_shaped + (pose_feature @ posedirs).reshape(B, -1, 3)  # pose-corrective blend shapes

        G, A = forward_kinematics(rot, joints_rest, self.parents)
        A = A + F.pad(transl[:, None, :, None], (3, 0, 0, 1))  # transl into every A_j's last column
        vertices = _skin(v_posed, weights, A)
        joints = G[..., :3, 3] + transl[:, None]
        keypoints = torch.cat([joints, vertices[:, self.tip_vertices]], dim=1)[:, list(KEYPOINT_SOURCES)]
        return HandOutput(vertices=vertices, keypoints=keypoints, bone_transforms=A, faces=self.faces_buf,
                          skinning_weights=weights, rest_vertices=v_shaped, joints=joints)


def left_shapedirs_defective(left: dict[str, Any], right: dict[str, Any]) -> bool:
    """True when the left model's shapedirs x component equals the right model's (the official
    MANO_LEFT.pkl defect) rather than its negation (a corrected file)."""
    xl, xr = np.asarray(left["shapedirs"])[:, 0], np.asarray(right["shapedirs"])[:, 0]
    return bool(np.linalg.norm(xl - xr) < np.linalg.norm(xl + xr))


def flip_shapedirs_x(arrays: dict[str, Any]) -> dict[str, Any]:
    """A copy of `arrays` with shapedirs[:, 0, :] negated (the left-hand correction)."""
    out = dict(arrays)
    out["shapedirs"] = np.asarray(arrays["shapedirs"]).copy()
    out["shapedirs"][:, 0, :] *= -1.0
    return out


def load_mano(mano_dir: str | Path, side: str = "right", **config: Any) -> ManoHand:
    """Load the user's MANO model for `side` from `mano_dir` (see `find_mano_file` for the layouts
    accepted); keyword arguments are `ManoConfig` fields."""
    cfg = ManoConfig(**config)
    path = find_mano_file(mano_dir, side)
    arrays = load_mano_pickle(path)
    if side == "left" and cfg.fix_left_shapedirs != "never":
        flip = cfg.fix_left_shapedirs == "always"
        if cfg.fix_left_shapedirs == "auto":
            right_path = path.with_name(mano_file_name("right"))
            if right_path.is_file():
                flip = left_shapedirs_defective(arrays, load_mano_pickle(right_path))
            else:
                warnings.warn(f"{path}: no MANO_RIGHT.pkl beside it, so hold cannot tell whether this left model "
                              f"has the official release's unmirrored shapedirs (smplx issue #48); using it as is. "
                              f"Fix: put MANO_RIGHT.pkl in the same folder, or pass fix_left_shapedirs='always' "
                              f"/ 'never'.", stacklevel=2)
        if flip:
            arrays = flip_shapedirs_x(arrays)
    return ManoHand(arrays, side=side, config=cfg, model_path=path.parent)
