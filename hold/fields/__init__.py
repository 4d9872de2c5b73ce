"""Encodings (hash grid: tcnn | torch, frequency) and neural fields (SDF, colour) in field space."""
from hold.fields.color_field import ColorField, ColorFieldConfig
from hold.fields.frequency import FrequencyEncoding
from hold.fields.hash_grid import (
    GridLevel,
    HashGridConfig,
    HashGridEncoding,
    grid_levels,
    reference_hash_grid,
    tcnn_available,
)
from hold.fields.mlp import MLP, sphere_init_
from hold.fields.sdf_field import SDFField, SDFFieldConfig

__all__ = [
    "MLP",
    "ColorField",
    "ColorFieldConfig",
    "FrequencyEncoding",
    "GridLevel",
    "HashGridConfig",
    "HashGridEncoding",
    "SDFField",
    "SDFFieldConfig",
    "grid_levels",
    "reference_hash_grid",
    "sphere_init_",
    "tcnn_available",
]
