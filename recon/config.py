"""Training configuration: one dataclass per component, YAML presets in configs/, key=value overrides."""
from __future__ import annotations

from dataclasses import dataclass, field

from hold.model import ModelConfig


@dataclass
class SamplerConfig:
    """How rays are drawn each step (HOLD biases rays to the masks and their boundaries)."""

    rays_per_batch: int = 2048
    """Rays per optimizer step."""
    frames_per_batch: int = 4
    """Frames the rays of one step come from."""
    foreground_fraction: float = 0.5
    """Share of rays inside the hand/object masks."""
    boundary_fraction: float = 0.25
    """Share of rays within `boundary_px` of a label boundary (the rest: uniform over the image)."""
    boundary_px: int = 3
    """Width of the boundary band (pixels)."""


@dataclass
class TrainConfig:
    """Stage `fit`: fields from scratch (hand SDF pre-fit), poses trainable at a lower learning rate."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The scene model."""
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    """Ray sampling."""
    max_steps: int = 20000
    """Optimizer steps."""
    lr: float = 1e-2
    """Network learning rate (Adam)."""
    lr_final_ratio: float = 0.1
    """Exponential decay of every learning rate down to lr * this at max_steps."""
    pose_lr_scale: float = 0.1
    """Per-frame poses train at lr * this (HOLD: 0.1)."""
    train_poses: bool = True
    """Optimize per-frame hand/object poses (False: keep the build's poses fixed)."""
    progressive_levels: int = 0
    """Coarse-to-fine: start with this many hash-grid levels and add one every `level_every` steps (0 = off)."""
    level_every: int = 500
    """Steps between unmasking two hash-grid levels."""
    seed: int = 0
    """Seed of ray sampling and stratified jitter (a resumed run repeats the same batches)."""
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu' or 'cuda'."""
    checkpoint_every: int = 500
    """Steps between checkpoints (for resume)."""
    log_every: int = 25
    """Steps between logged scalars."""
    mesh_resolution: int = 128
    """Marching-cubes resolution of the exported meshes (voxels per side)."""
    mano_dir: str | None = None
    """Folder with your MANO_*.pkl when the build uses MANO."""
