"""The 21 model keypoints as forward kinematics of the keypoint skeleton: ~100x cheaper than the mesh."""
from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from hold.geometry.rotations import axis_angle_to_matrix
from hold.hands.base import HandModel

NUM_FINGERS = 5
FINGER_BASES = (1, 5, 9, 13, 17)
"""First keypoint of each finger (thumb, index, middle, ring, little); its 4 keypoints follow."""


class KeypointKinematics:
    """The model's 21 keypoints as forward kinematics of the keypoint skeleton.

    Every backend follows MANO's convention: a `hand_pose` joint rotates its descendants about the
    joint's rest position, relative to its parent, in the rest frame's axes; keypoints are joint
    positions plus fingertips rigid with the distal bone. So posing the 21 rest keypoints along the
    five finger chains reproduces the model's keypoints without posing its mesh.
    """

    def __init__(self, model: HandModel):
        self.model = model
        param = next(iter(model.buffers()), None)
        self.device = param.device if param is not None else torch.device("cpu")
        offset = getattr(model, "hand_mean", None)  # MANO with flat_hand_mean=False adds its mean pose
        self.pose_offset = (torch.zeros(model.num_pose_params, device=self.device) if offset is None
                            else offset.detach().reshape(-1).float())
        joint_of_kp = [-1] * 21
        for j, k in enumerate(model.pose_joint_keypoints):
            joint_of_kp[k] = j
        chains = []
        for b in FINGER_BASES:
            js = [joint_of_kp[b + i] for i in range(3)]
            if min(js) < 0 or model.num_pose_params != 45:
                raise ValueError(f"hand model {model.name!r}: keypoints {b}..{b + 2} are not all articulated "
                                 f"joints; the keypoint fit needs 3 joints per finger (45 pose parameters)")
            chains.append(js)
        self.chains = chains
        self._basis: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
        self._chain_index = torch.tensor(chains, dtype=torch.long, device=self.device)
        self._finger_kp = torch.tensor([[b + i for i in range(4)] for b in FINGER_BASES], device=self.device)

    def _rest_from_model(self, betas: Float[Tensor, " NB"]) -> tuple[Float[Tensor, "21 3"], Float[Tensor, " 3"]]:
        z = torch.zeros(1, 3, dtype=betas.dtype, device=betas.device)
        out = self.model(z, -self.pose_offset.to(betas)[None], betas[None], z)
        return out.keypoints[0], out.joints[0, 0]

    def rest(self, betas: Float[Tensor, " NB"]) -> tuple[Float[Tensor, "21 3"], Float[Tensor, " 3"]]:
        """Rest-pose keypoints and root joint (the global rotation's pivot) for shape `betas`.

        Both are affine in betas for every backend (blend shapes, a joint regressor, no pose
        correctives at the rest pose), so they are tabulated once from NB + 1 model evaluations;
        `check` verifies the affinity on a random shape.
        """
        if self._basis is None:
            with torch.no_grad():
                nb = self.model.num_betas
                zero = torch.zeros(nb, device=self.device)
                kp0, root0 = self._rest_from_model(zero)
                eye = torch.eye(nb, device=self.device)
                cols = [self._rest_from_model(eye[i]) for i in range(nb)]
                dkp = torch.stack([c[0] - kp0 for c in cols], -1)  # (21, 3, NB)
                droot = torch.stack([c[1] - root0 for c in cols], -1)  # (3, NB)
            self._basis = (kp0, dkp, root0, droot)
        kp0, dkp, root0, droot = (x.to(betas) for x in self._basis)
        return kp0 + dkp @ betas, root0 + droot @ betas

    def pose(
        self,
        rest: Float[Tensor, "21 3"],
        root: Float[Tensor, " 3"],
        R: Float[Tensor, "T 3 3"],
        hand_pose: Float[Tensor, "T 45"],
        transl: Float[Tensor, "T 3"],
    ) -> Float[Tensor, "T 21 3"]:
        """Camera-frame keypoints: posed = R (x - root) + root + transl, fingers by FK."""
        T = hand_pose.shape[0]
        Rj = axis_angle_to_matrix((hand_pose + self.pose_offset.to(hand_pose)).reshape(T, 15, 3))
        Rf = Rj[:, self._chain_index]  # (T, 5 fingers, 3 joints, 3, 3)
        finger = rest[self._finger_kp]  # (5, 4, 3): the 4 keypoints of each finger
        bones = finger[:, 1:] - finger[:, :-1]  # (5, 3, 3)
        G = Rf[:, :, 0]
        p = finger[:, 0].expand(T, 5, 3)
        pts = [p]
        for i in range(3):  # one level of all five fingers at a time
            if i > 0:
                G = G @ Rf[:, :, i]
            p = p + (G @ bones[:, i, :, None])[..., 0]
            pts.append(p)
        local = torch.cat([rest[0].expand(T, 1, 3), torch.stack(pts, 2).reshape(T, 20, 3)], 1)
        return (local - root) @ R.transpose(-1, -2) + root + transl[:, None]

    def check(self, tolerance_m: float, seed: int = 0) -> float:
        """Max deviation (metres) from the real model on random natural poses."""
        g = torch.Generator().manual_seed(seed)
        B = 4
        go = (torch.randn(B, 3, generator=g) * 0.8).to(self.device)
        hp = (torch.randn(B, 45, generator=g) * 0.3).to(self.device)
        betas = (torch.randn(self.model.num_betas, generator=g) * 0.5).to(self.device)
        tr = (torch.randn(B, 3, generator=g) * 0.1).to(self.device)
        with torch.no_grad():
            ref = self.model(go, hp, betas[None].expand(B, -1), tr).keypoints
            rest, root = self.rest(betas)
            kp = self.pose(rest, root, axis_angle_to_matrix(go), hp, tr)
        return float((kp - ref).norm(dim=-1).max())
