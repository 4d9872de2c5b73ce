"""Colour field: range, conditioning on the appearance code / normal / view direction, errors."""
import pytest
import torch

import hold  # noqa: F401  (import-order side effects)
from hold.fields import ColorField, ColorFieldConfig


def inputs(n=256, feature_dim=15, seed=0):
    g = torch.Generator().manual_seed(seed)
    normal = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)
    return torch.randn(n, feature_dim, generator=g), normal


def test_output_in_unit_range_even_for_extreme_inputs():
    torch.manual_seed(0)
    cf = ColorField(15)
    feat, normal = inputs()
    rgb = cf(feat, normal, appearance=torch.randn(256, 8))
    assert rgb.shape == (256, 3) and rgb.min() >= 0 and rgb.max() <= 1 and rgb.std() > 1e-3
    big = cf(feat * 1e4, normal, appearance=torch.full((256, 8), 1e4))
    assert torch.isfinite(big).all() and big.min() >= 0 and big.max() <= 1


def test_depends_on_the_appearance_code_and_trains_it():
    torch.manual_seed(1)
    cf = ColorField(15, ColorFieldConfig(appearance_dim=8))
    feat, normal = inputs(seed=1)
    codes = torch.nn.Embedding(2, 8)  # per-frame codes live in the nodes; two frames here
    with torch.no_grad():
        codes.weight.normal_(0, 1)
    rgb0 = cf(feat, normal, appearance=codes(torch.zeros(256, dtype=torch.long)))
    rgb1 = cf(feat, normal, appearance=codes(torch.ones(256, dtype=torch.long)))
    assert (rgb0 - rgb1).abs().max() > 1e-3
    (rgb0 - 0.5).square().mean().backward()
    assert codes.weight.grad[0].abs().max() > 0 and torch.equal(codes.weight.grad[1], torch.zeros(8))
    zero = cf(feat, normal, appearance=torch.zeros(256, 8))
    assert torch.equal(cf(feat, normal), zero)  # None = the zero code


def test_normal_and_view_dir_conditioning():
    torch.manual_seed(2)
    cf = ColorField(15, ColorFieldConfig(use_normal=True, use_view_dir=True, appearance_dim=0))
    feat, normal = inputs(seed=2)
    view = torch.nn.functional.normalize(torch.randn(256, 3), dim=1)
    base = cf(feat, normal, view)
    assert (cf(feat, -normal, view) - base).abs().max() > 1e-3
    assert (cf(feat, normal, -view) - base).abs().max() > 1e-3
    plain = ColorField(15, ColorFieldConfig(use_normal=False, appearance_dim=0))
    assert plain.mlp.layers[0].in_features == 15
    assert torch.equal(plain(feat), plain(feat, normal=None))


def test_missing_or_misshaped_inputs_name_the_argument():
    cf = ColorField(15)
    feat, normal = inputs(8)
    with pytest.raises(ValueError, match="'normal' is required"):
        cf(feat)
    with pytest.raises(ValueError, match=r"'appearance' must have shape \(8, 8\)"):
        cf(feat, normal, appearance=torch.zeros(8, 4))
    with pytest.raises(ValueError, match="'feature'"):
        cf(torch.zeros(8, 16), normal)
    with pytest.raises(ValueError, match="'view_dir' is required"):
        ColorField(15, ColorFieldConfig(use_view_dir=True))(feat, normal)
