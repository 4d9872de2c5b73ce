"""HoldModel: the nodes, the compositing renderer and the losses (no Lightning here).

One training step = rays through pixel centres of a few frames -> every node samples along them
(coarse + SDF-guided importance samples in its bounding sphere) -> all samples merged by depth and
composited once, plus each node alone (amodal) -> losses.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from hold.data.schema import Sequence
from hold.geometry.camera import pixel_rays
from hold.hands import load_hand_model
from hold.losses import LossConfig, eikonal, linear_schedule, opacity_sparsity, rgb_l1, semantic_mse
from hold.nodes import BackgroundConfig, BackgroundNode, HandNode, HandNodeConfig, ObjectNode, ObjectNodeConfig
from hold.rendering import render_merged, render_single


@dataclass
class ModelConfig:
    """The scene model: nodes, losses, and the hand SDF pre-fit."""

    object: ObjectNodeConfig = field(default_factory=ObjectNodeConfig)
    """Object node."""
    hand: HandNodeConfig = field(default_factory=HandNodeConfig)
    """Hand node(s)."""
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    """Background image."""
    losses: LossConfig = field(default_factory=LossConfig)
    """Loss weights and schedules."""
    hand_prefit_steps: int = 200
    """Steps fitting the hand SDF to the hand-model mesh before training (replaces a downloaded init)."""
    hand_prefit_lr: float = 5e-3
    """Learning rate of the pre-fit."""
    mano_dir: str | None = None
    """Folder with MANO_*.pkl when the build's hand model is 'mano'."""


class HoldModel(nn.Module):
    def __init__(self, seq: Sequence, cfg: ModelConfig, background_init: np.ndarray | None = None):
        super().__init__()
        self.cfg = cfg
        self.num_frames = seq.num_frames
        self.register_buffer("K", torch.as_tensor(seq.intrinsics.K, dtype=torch.float32))
        self.image_size = (seq.intrinsics.width, seq.intrinsics.height)
        self.hands = nn.ModuleDict()
        for side, track in seq.hands.items():
            model = load_hand_model(seq.hand_model, side, cfg.mano_dir)
            self.hands[side] = HandNode(cfg.hand, model, track.global_orient, track.hand_pose, track.betas, track.transl)
        self.object = (ObjectNode(cfg.object, seq.object.T_cam_from_obj, seq.object.scale)
                       if seq.object is not None else None)
        self.background = BackgroundNode(seq.intrinsics.height, seq.intrinsics.width, background_init)

    @property
    def field_nodes(self) -> list:
        return [*self.hands.values()] + ([self.object] if self.object is not None else [])

    def pose_parameters(self) -> list[nn.Parameter]:
        """Per-frame poses (and object scale): trained at a fraction of the network learning rate."""
        params = [p for h in self.hands.values() for p in (h.global_orient, h.hand_pose, h.transl)]
        if self.object is not None:
            params += [self.object.pose_delta, self.object.log_scale]
        return params

    def named_network_parameters(self) -> dict[str, nn.Parameter]:
        """Network weights (fields, appearance codes, background) by name: every parameter but the poses."""
        pose_ids = {id(p) for p in self.pose_parameters()}
        return {name: p for name, p in self.named_parameters() if id(p) not in pose_ids}

    def network_parameters(self) -> list[nn.Parameter]:
        return list(self.named_network_parameters().values())

    # --- rendering -------------------------------------------------------------------------------
    def render(self, frame: Int[Tensor, "R"], pixel: Int[Tensor, "R 2"], with_grad: bool = False,
               perturb: bool = False) -> dict:
        """Render rays through the centres of `pixel` (x, y) in frames `frame`."""
        uv = pixel.to(self.K) + 0.5
        origins, dirs = pixel_rays(self.K, uv)
        frames = torch.unique(frame)
        outputs = []
        for node in self.field_nodes:
            node.prepare(frames)
            outputs.append(node.sample(origins, dirs, frame, with_grad=with_grad, perturb=perturb))
        bg = self.background(pixel)
        out = render_merged([o.samples for o in outputs], n_classes=4, background_rgb=bg)
        out["amodal_opacity"] = [render_single(o.samples)["opacity"] for o in outputs]
        out["node_outputs"] = outputs
        return out

    @torch.no_grad()
    def render_image(self, frame: int, chunk: int = 4096, downscale: int = 1) -> dict[str, np.ndarray]:
        """Full image of frame `frame` (rgb, opacity, depth, semantics), for QA and tests."""
        W, H = self.image_size
        ys, xs = torch.meshgrid(torch.arange(0, H, downscale), torch.arange(0, W, downscale), indexing="ij")
        pix = torch.stack([xs, ys], -1).reshape(-1, 2).to(self.K.device)
        parts = {"rgb": [], "opacity": [], "depth": [], "semantics": []}
        for p in pix.split(chunk):
            f = torch.full((p.shape[0],), frame, dtype=torch.long, device=p.device)
            o = self.render(f, p)
            for k in parts:
                parts[k].append(o[k])
        h, w = ys.shape
        return {k: torch.cat(v).reshape(h, w, -1).squeeze(-1).cpu().numpy() for k, v in parts.items()}

    # --- losses --------------------------------------------------------------------------------
    def losses(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        """All loss terms for one batch (frame (R,), pixel (R,2), rgb (R,3), label (R,)) and their sum."""
        c = self.cfg.losses
        out = self.render(batch["frame"], batch["pixel"], with_grad=True, perturb=True)
        terms: dict[str, Tensor] = {}
        terms["rgb"] = rgb_l1(out["rgb"], batch["rgb"])
        terms["mask"] = semantic_mse(out["semantics"], batch["label"])
        grads = []
        for node, no in zip(self.field_nodes, out["node_outputs"]):
            grads.append(no.grad_field[no.samples.valid])
            if c.eikonal_random_points > 0:
                x = torch.rand(c.eikonal_random_points, 3, device=self.K.device) * 2 - 1
                grads.append(node.sdf.sdf_and_gradient(x, create_graph=True)[2])
        terms["eikonal"] = eikonal(torch.cat(grads))
        terms["sparsity"] = torch.stack([opacity_sparsity(op, batch["label"], n.label)
                                         for n, op in zip(self.field_nodes, out["amodal_opacity"])]).mean()
        if self.hands:
            terms["hand_prior"] = torch.stack([h.prior_loss(c.hand_prior_points, c.hand_prior_clamp_m)
                                               for h in self.hands.values()]).mean()
        w = {"rgb": c.rgb, "mask": linear_schedule(step, c.mask_start, c.mask_end, c.mask_decay_steps),
             "eikonal": c.eikonal, "hand_prior": c.hand_prior,
             "sparsity": linear_schedule(step, c.sparsity_start, c.sparsity_end, c.sparsity_ramp_steps)}
        terms["loss"] = sum(w[k] * v for k, v in terms.items())
        with torch.no_grad():
            mse = ((out["rgb"] - batch["rgb"]) ** 2).mean()
            terms["psnr"] = -10 * torch.log10(mse.clamp_min(1e-10))
        return terms

    def prefit_hands(self, steps: int | None = None) -> list[float]:
        """Fit each hand SDF to its hand-model mesh (clamped SDF L1 + eikonal): seconds, no download."""
        steps = self.cfg.hand_prefit_steps if steps is None else steps
        history = []
        for hand in self.hands.values():
            opt = torch.optim.Adam(hand.sdf.parameters(), lr=self.cfg.hand_prefit_lr)
            g = torch.Generator(device=self.K.device).manual_seed(0)
            for _ in range(steps):
                loss = hand.prior_loss(4096, clamp_m=0.02, generator=g)
                x = torch.rand(1024, 3, device=self.K.device, generator=g) * 2 - 1
                loss = loss + 0.01 * eikonal(hand.sdf.sdf_and_gradient(x, create_graph=True)[2])
                opt.zero_grad()
                loss.backward()
                opt.step()
                history.append(float(loss.detach()))
        return history
