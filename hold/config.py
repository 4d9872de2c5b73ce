"""Typed configs: dataclasses + OmegaConf YAML presets + `key=value` command-line overrides."""
from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from omegaconf import OmegaConf

C = TypeVar("C")

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
"""The YAML presets shipped with the repository (configs/)."""


def resolve_preset(name: str | Path) -> Path:
    """A YAML path, or the name of a preset in configs/ (e.g. `cpu_smoke`, `reconstruct_cpu`, `demo`)."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    preset = REPO_CONFIGS / f"{name}.yaml"
    if preset.exists():
        return preset
    known = sorted(q.stem for q in REPO_CONFIGS.glob("*.yaml"))
    raise FileNotFoundError(f"config {str(name)!r} is neither a YAML file nor a preset; presets: {known}")


def resolve_config(default: C, yaml_files: list[str | Path] = (), overrides: list[str] = ()) -> C:
    """Merge YAML presets then `a.b=value` overrides into a copy of the dataclass `default`.

    Unknown keys and wrong types raise an error naming the key (OmegaConf structured-config checks).
    """
    base = OmegaConf.structured(default)
    layers = [OmegaConf.load(str(p)) for p in yaml_files]
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ValueError(f"config overrides must look like key=value (e.g. noise.hand_rot_deg=3), got {bad}")
    try:
        merged = OmegaConf.merge(base, *layers, OmegaConf.from_dotlist(list(overrides)))
    except Exception as e:  # omegaconf's errors name the key; keep them, drop the traceback
        raise ValueError(f"invalid config override: {e}") from None
    return OmegaConf.to_object(merged)


def to_yaml(cfg) -> str:
    """The fully resolved config as YAML (saved next to every output)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
