"""SDF field: sphere initialisation, analytic vs finite-difference normals, eikonal gradients."""
import pytest
import torch

import hold  # noqa: F401  (import-order side effects)
from hold.fields import HashGridConfig, SDFField, SDFFieldConfig

SMALL_GRID = HashGridConfig(n_levels=8, log2_hashmap_size=12, base_resolution=8, max_resolution=256)


def ball_points(n, seed=0, radius=1.0):
    """Uniform in the ball of `radius`, plus the origin and points on the unit sphere."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    x = d * radius * torch.rand(n, 1, generator=g) ** (1 / 3)
    return torch.cat([x, torch.zeros(1, 3), d[:16]])


def field(encoding, **kw):
    torch.manual_seed(0)
    return SDFField(SDFFieldConfig(encoding=encoding, hash_grid=SMALL_GRID, **kw))


@pytest.mark.parametrize("encoding", ["hashgrid", "frequency"])
def test_geometric_init_is_a_sphere(encoding):
    x = ball_points(4096)
    f = field(encoding, init_radius=0.5)
    sdf, feat = f(x)
    assert sdf.shape == (x.shape[0],) and feat.shape == (x.shape[0], 15)
    err = (sdf - (x.norm(dim=1) - 0.5)).abs()
    assert err.max().item() < 0.02  # measured 0.016 (quadrature of 63 directions) for 64 x 2
    inside_out = field(encoding, init_radius=0.3, inside_out=True)
    assert (inside_out(x)[0] - (0.3 - x.norm(dim=1))).abs().max().item() < 0.02
    assert feat.std() > 1e-3  # features vary (the colour field gets information)


def test_hold_mlp_baseline_shape_is_a_sphere_too():
    """HOLD's 8 x 256 weight-normalised MLP with a skip into layer 4 and 6 PE frequencies."""
    cfg = SDFFieldConfig(encoding="frequency", n_frequencies=6, hidden_dim=256, n_hidden_layers=8, feature_dim=256,
                         weight_norm=True, skip_connection=True)
    f = SDFField(cfg)
    assert f.mlp.layers[0].in_features == 3 + 36 and f.mlp.layers[4].in_features == 256 + 39
    x = ball_points(2048, seed=1)
    sdf, feat = f(x)
    assert feat.shape == (x.shape[0], 256)
    assert (sdf - (x.norm(dim=1) - 0.5)).abs().max().item() < 0.02
    assert torch.isfinite(feat).all()


@pytest.mark.parametrize("encoding", ["hashgrid", "frequency"])
def test_analytic_and_finite_difference_normals_agree(encoding):
    x = ball_points(2048, seed=2)
    f = field(encoding)
    f_fd = field(encoding, normals="finite_difference", fd_eps=1e-3)
    f_fd.load_state_dict(f.state_dict())
    sdf_a, feat_a, g_a = f.sdf_and_gradient(x, create_graph=False)
    sdf_f, feat_f, g_f = f_fd.sdf_and_gradient(x)
    assert torch.equal(sdf_a, sdf_f) and torch.equal(feat_a, feat_f)
    far = x.norm(dim=1) > 0.1  # softplus smooths |x| within ~0.03 of the origin
    rel = (g_a - g_f).norm(dim=1) / g_a.norm(dim=1)
    assert rel[far].max().item() < 1e-2
    norm = g_a.norm(dim=1)[far]
    assert (norm - 1).abs().max().item() < 0.03  # measured within 2.2 %
    cos = torch.nn.functional.cosine_similarity(g_a[far], x[far], dim=1)
    assert cos.min().item() > 0.98  # the gradient of |x| is x / |x|


def test_eikonal_gradient_reaches_the_hash_grid():
    """create_graph=True: the eikonal loss trains the grid table once the encoder weights move."""
    f = field("hashgrid")
    with torch.no_grad():
        f.encoding.params.uniform_(-0.1, 0.1)
        f.mlp.layers[0].weight[:, 3:].normal_(0, 0.1)
    x = ball_points(512, seed=3)
    _, _, grad = f.sdf_and_gradient(x, create_graph=True)
    assert grad.requires_grad
    ((grad.norm(dim=1) - 1) ** 2).mean().backward()
    g_table = f.encoding.params.grad
    assert g_table is not None and torch.isfinite(g_table).all() and g_table.abs().max() > 1e-4
    # create_graph=False: the gradient is a constant, but sdf still trains (graph retained).
    f.zero_grad()
    sdf, _, grad = f.sdf_and_gradient(x, create_graph=False)
    assert not grad.requires_grad
    sdf.square().mean().backward()
    assert f.mlp.layers[-1].weight.grad.abs().max() > 0


def test_gradient_flows_to_upstream_points_and_no_grad_detaches():
    """x_field may depend on poses (node deformers): sdf must stay differentiable w.r.t. them."""
    f = field("hashgrid")
    base = ball_points(64, seed=4) * 0.8
    t = torch.zeros(3, requires_grad=True)  # a translation "pose"
    sdf, _, grad = f.sdf_and_gradient(base + t, create_graph=True)
    sdf.sum().backward()
    assert torch.allclose(t.grad, grad.detach().sum(0), atol=1e-4)  # d sum(sdf) / dt = sum of gradients
    with torch.no_grad():
        sdf_ng, feat_ng, grad_ng = f.sdf_and_gradient(base)
    assert not (sdf_ng.requires_grad or feat_ng.requires_grad or grad_ng.requires_grad)
    assert torch.allclose(grad_ng, grad.detach(), atol=1e-6)


@pytest.mark.parametrize("normals", ["analytic", "finite_difference"])
def test_points_far_outside_stay_finite(normals):
    f = field("hashgrid", normals=normals)
    x = torch.tensor([[3.0, 0.0, 0.0], [-10.0, 10.0, 10.0], [0.0, -1.5, 0.2], [1e3, 0.0, 0.0]])
    sdf, feat, grad = f.sdf_and_gradient(x)
    assert torch.isfinite(sdf).all() and torch.isfinite(feat).all() and torch.isfinite(grad).all()
    assert abs(sdf[0].item() - 2.5) < 0.1  # the sphere SDF continues outside the unit ball


def test_set_progress_forwards_to_the_grid_and_state_dict_round_trips():
    f = field("hashgrid")
    f.set_progress(3)
    assert f.encoding.active_levels == 3
    x = ball_points(100, seed=5)
    enc = f.encode(x)
    assert torch.equal(enc[:, 6:], torch.zeros_like(enc[:, 6:])) and enc[:, :6].abs().max() > 0
    f.set_progress(100)  # clamped to all levels
    assert f.encoding.active_levels == SMALL_GRID.n_levels
    field("frequency").set_progress(2)  # no levels: accepted, no effect
    g = SDFField(SDFFieldConfig(encoding="hashgrid", hash_grid=SMALL_GRID, geometric_init=False))
    assert not torch.equal(g(x)[0], f(x)[0])
    g.load_state_dict(f.state_dict())
    assert torch.equal(g(x)[0], f(x)[0])


def test_bad_config_and_input_errors():
    with pytest.raises(ValueError, match="encoding"):
        SDFFieldConfig(encoding="grid")
    with pytest.raises(ValueError, match="normals"):
        SDFFieldConfig(normals="fd")
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        field("frequency")(torch.zeros(4, 2))
