"""LightningModule around HoldModel: batches drawn by step, two learning rates, coarse-to-fine levels."""
from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from hold.model import HoldModel
from recon.config import TrainConfig
from recon.data import RaySampler


class StepIndices(IterableDataset):
    """Yields the integers forever: the batch itself is drawn from the global step in training_step."""

    def __iter__(self):
        i = 0
        while True:
            yield i
            i += 1


class HoldModule(pl.LightningModule):
    def __init__(self, model: HoldModel, sampler: RaySampler, cfg: TrainConfig):
        super().__init__()
        self.model, self.sampler, self.cfg = model, sampler, cfg
        self.last_terms: dict[str, float] = {}

    def train_dataloader(self):
        return DataLoader(StepIndices(), batch_size=None, num_workers=0)

    def _set_levels(self, step: int) -> None:
        if self.cfg.progressive_levels > 0:
            levels = self.cfg.progressive_levels + step // max(self.cfg.level_every, 1)
            for node in self.model.field_nodes:
                node.sdf.set_progress(levels)

    def training_step(self, _index, _batch_idx):
        step = int(self.global_step)
        torch.manual_seed(self.cfg.seed * 1_000_003 + step)  # stratified jitter: same on resume
        self._set_levels(step)
        batch = {k: v.to(self.device) for k, v in self.sampler.batch(step, self.cfg.seed).items()}
        terms = self.model.losses(batch, step)
        self.last_terms = {k: float(v.detach()) for k, v in terms.items()}
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, on_step=True, prog_bar=False)
        self.log("loss", terms["loss"].detach(), prog_bar=True)
        self.log("psnr", terms["psnr"], prog_bar=True)
        return terms["loss"]

    def configure_optimizers(self):
        groups = [{"params": self.model.network_parameters(), "lr": self.cfg.lr}]
        if self.cfg.train_poses:
            groups.append({"params": self.model.pose_parameters(), "lr": self.cfg.lr * self.cfg.pose_lr_scale})
        else:
            for p in self.model.pose_parameters():
                p.requires_grad_(False)
        opt = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
        gamma = self.cfg.lr_final_ratio ** (1.0 / max(self.cfg.max_steps, 1))
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class AtomicCheckpoint(pl.Callback):
    """Every `every` steps (and at the end) write checkpoints/last.ckpt atomically (temp + rename),
    so a kill never leaves a truncated checkpoint."""

    def __init__(self, path: Path, every: int):
        self.path, self.every = Path(path), every

    def _save(self, trainer) -> None:
        tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}")
        trainer.save_checkpoint(str(tmp))
        os.replace(tmp, self.path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % self.every == 0:
            self._save(trainer)

    def on_train_end(self, trainer, pl_module):
        self._save(trainer)
