import pytest
import torch

import hold  # noqa: F401  (import-order side effects)
from hold.rendering import (
    LABELS,
    LaplaceDensity,
    NodeSamples,
    alpha_to_density,
    composite,
    interval_deltas,
    laplace_density,
    merge_samples,
    neus_alpha,
    render_merged,
    render_single,
    stratified_samples,
)

F64 = torch.float64
KEYS = ("rgb", "opacity", "depth", "normal", "semantics")


def plane_node(z, label, R=8, S=128, beta=0.01, t_max=3.0, perturb=False, seed=0, rgb=None, density=None):
    """A node whose surface is the plane at ray distance z (sdf = z - t), with per-ray colours."""
    g = torch.Generator().manual_seed(seed)
    t = stratified_samples(torch.zeros(R), torch.full((R,), t_max), S, perturb=perturb, generator=g)
    sdf = z - t
    sigma = density(sdf) if density is not None else laplace_density(sdf, beta)
    if rgb is None:
        rgb = torch.rand(R, 1, 3, generator=g).expand(R, S, 3)
    normal = torch.tensor([0.0, 0.0, -1.0]).expand(R, S, 3)
    return NodeSamples(t=t, sigma=sigma, rgb=rgb, normal=normal, sdf=sdf, label=label,
                       valid=torch.ones(R, S, dtype=torch.bool))


def test_labels_match_the_sequence_masks():
    from hold.data.schema import LABELS as MASK_LABELS

    assert LABELS == {k: v for k, v in MASK_LABELS.items() if k != "ignore"}


def test_interval_deltas_policies():
    t = torch.tensor([[0.0, 0.5, 1.5, 1.75]])
    torch.testing.assert_close(interval_deltas(t, 1e10), torch.tensor([[0.5, 1.0, 0.25, 1e10]]))
    torch.testing.assert_close(interval_deltas(t, "repeat"), torch.tensor([[0.5, 1.0, 0.25, 0.25]]))
    with pytest.raises(ValueError, match="far_delta"):
        interval_deltas(t, "last")


def test_composite_matches_product_form_and_weights_sum_at_most_one():
    g = torch.Generator().manual_seed(0)
    # reference: w_i = prod_{j<i} (1 - alpha_j) * alpha_i, in float64
    t = torch.sort(torch.rand(16, 24, generator=g, dtype=F64) * 4, dim=1)[0]
    sigma = torch.rand(16, 24, generator=g, dtype=F64) * 5
    w, T = composite(t, sigma)
    alpha = 1 - torch.exp(-sigma * interval_deltas(t, 1e10))
    T_ref = torch.cumprod(torch.cat([torch.ones(16, 1, dtype=F64), 1 - alpha[:, :-1]], dim=1), dim=1)
    torch.testing.assert_close(T, T_ref, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(w, T_ref * alpha, rtol=1e-10, atol=1e-14)
    # random fp32 inputs spanning 12 orders of magnitude of density, repeated t, huge last delta
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        t = torch.sort(torch.rand(512, 96, generator=g) * 10, dim=1)[0]
        t[:, 10:14] = t[:, 10:11]
        sigma = torch.exp(torch.randn(512, 96, generator=g) * 6) * (torch.rand(512, 96, generator=g) > 0.3)
        w, T = composite(t, sigma)
        assert torch.isfinite(w).all() and (w >= 0).all() and ((T >= 0) & (T <= 1)).all()
        assert w.sum(dim=1).max() <= 1 + 1e-6


def test_planar_surface_depth_and_opacity():
    beta = 0.01
    density = LaplaceDensity(beta_init=beta, beta_min=1e-4)
    for z in (0.7, 1.3, 2.2):
        out = render_single(plane_node(z, LABELS["object"], S=256, beta=beta, density=density))
        assert (out["opacity"] > 0.999).all()
        assert ((out["depth"] - z).abs() < beta).all()
        assert (out["semantics"][:, LABELS["object"]] > 0.999).all()
        torch.testing.assert_close(out["normal"], torch.tensor([0.0, 0.0, -1.0]).expand(8, 3), atol=1e-3, rtol=0)


def test_neus_plane_renders_at_the_plane():
    # NeuS alpha -> density with each section's own length -> composite: depth at the plane
    R, S, z = 4, 128, 1.37
    edges = torch.linspace(0.0, 3.0, S + 1).expand(R, S + 1)
    mid, dists = 0.5 * (edges[:, 1:] + edges[:, :-1]), edges[:, 1:] - edges[:, :-1]
    cos = -torch.ones(R, S)  # ray along +z, plane normal towards the camera
    alpha = neus_alpha(z - mid, cos, dists, inv_s=300.0)
    node = NodeSamples(t=mid, sigma=alpha_to_density(alpha, dists), rgb=torch.rand(R, S, 3),
                       normal=torch.tensor([0.0, 0.0, -1.0]).expand(R, S, 3), sdf=z - mid, label=1,
                       valid=torch.ones(R, S, dtype=torch.bool), delta=dists)
    out = render_single(node)
    # with delta = section length the NeuS alphas are composited exactly
    T = torch.cumprod(torch.cat([torch.ones(R, 1), 1 - alpha[:, :-1]], dim=1), dim=1)
    torch.testing.assert_close(out["weights"][0], T * alpha, rtol=1e-5, atol=1e-6)
    assert (out["opacity"] > 0.999).all()
    assert ((out["depth"] - z).abs() < 0.01).all()


@pytest.mark.parametrize("empty_first", [False, True])
def test_an_empty_node_is_an_exact_no_op(empty_first):
    R, S = 16, 64
    full = plane_node(1.1, LABELS["object"], R=R, S=S, beta=0.02, perturb=True, seed=1)
    g = torch.Generator().manual_seed(2)
    # empty node: its samples interleave with the full node's, garbage colour/normal,
    # some samples invalid with NaN density (they must be masked, not multiplied)
    t_e = torch.sort(torch.rand(R, 48, generator=g) * 3, dim=1)[0]
    valid = torch.rand(R, 48, generator=g) > 0.2
    sigma_e = torch.where(valid, torch.zeros(R, 48), torch.full((R, 48), float("nan")))
    empty = NodeSamples(t=t_e, sigma=sigma_e, rgb=torch.rand(R, 48, 3, generator=g) * 100,
                        normal=torch.randn(R, 48, 3, generator=g), sdf=torch.randn(R, 48, generator=g),
                        label=LABELS["right"], valid=valid)
    bg = torch.rand(R, 3, generator=g)
    single = render_single(full, background_rgb=bg)
    both = render_merged([empty, full] if empty_first else [full, empty], background_rgb=bg)
    m = merge_samples([full, empty])
    assert (m.node_index == 1).any(dim=1).all() and (m.node_index[:, 1:] != m.node_index[:, :-1]).sum() > R * 4
    for k in KEYS:
        torch.testing.assert_close(both[k], single[k], rtol=0, atol=1e-6)
    w_full, w_empty = (both["weights"][1], both["weights"][0]) if empty_first else both["weights"]
    torch.testing.assert_close(w_full, single["weights"][0], rtol=0, atol=1e-6)
    assert torch.equal(w_empty, torch.zeros(R, 48))


def test_nearer_surface_wins_depth_and_semantics():
    beta = 0.015  # 1.3 samples per beta (3 m / 224), jittered differently in the two nodes
    near = plane_node(1.0, LABELS["object"], S=224, beta=beta, perturb=True, seed=3)
    far = plane_node(2.0, LABELS["right"], S=224, beta=beta, perturb=True, seed=4)
    for nodes in ([near, far], [far, near]):
        out = render_merged(nodes)
        assert (out["semantics"][:, LABELS["object"]] > 0.95).all()
        assert ((out["depth"] - 1.0).abs() < beta).all()
        torch.testing.assert_close(out["semantics"].sum(dim=1), torch.ones(8), rtol=0, atol=1e-6)
        torch.testing.assert_close(out["rgb"], near.rgb[:, 0], rtol=0, atol=0.05)
        # per-node weights in each node's own order add up to the opacity
        torch.testing.assert_close(sum(w.sum(dim=1) for w in out["weights"]), out["opacity"])
    # amodal: the far node alone shows its own surface
    amodal = render_single(far)
    assert ((amodal["depth"] - 2.0).abs() < beta).all() and (amodal["semantics"][:, LABELS["right"]] > 0.99).all()


def test_rays_that_hit_nothing_show_the_background():
    node = plane_node(1.0, LABELS["object"], R=4, S=16)
    node.valid = torch.zeros(4, 16, dtype=torch.bool)
    bg = torch.tensor([[0.1, 0.2, 0.3]]).expand(4, 3)
    out = render_single(node, background_rgb=bg)
    torch.testing.assert_close(out["rgb"], bg)
    assert torch.equal(out["opacity"], torch.zeros(4)) and torch.equal(out["depth"], torch.zeros(4))
    assert torch.equal(out["semantics"], torch.tensor([[1.0, 0, 0, 0]]).expand(4, 4))


def test_merge_keeps_each_sample_with_its_node():
    a = plane_node(1.0, LABELS["object"], R=4, S=8, perturb=True, seed=5)
    b = plane_node(1.5, LABELS["left"], R=4, S=5, perturb=True, seed=6)
    m = merge_samples([a, b])
    assert m.t.shape == (4, 13) and (m.t[:, 1:] >= m.t[:, :-1]).all()
    assert torch.equal(m.label, torch.where(m.node_index == 0, LABELS["object"], LABELS["left"]))
    concat_t = torch.cat([a.t, b.t], dim=1)
    assert torch.equal(torch.take_along_dim(concat_t, m.order, dim=1), m.t)
    concat_sdf = torch.cat([a.sdf, b.sdf], dim=1)
    assert torch.equal(torch.take_along_dim(concat_sdf, m.order, dim=1), m.sdf)


def test_gradients_reach_density_colour_and_beta():
    density = LaplaceDensity(beta_init=0.02, beta_min=1e-4)
    R, S = 6, 48
    t = stratified_samples(torch.zeros(R), torch.full((R,), 2.0), S, perturb=False)
    sdf = (0.9 - t).requires_grad_(True)
    rgb = torch.rand(R, S, 3, generator=torch.Generator().manual_seed(7)).requires_grad_(True)
    node = NodeSamples(t=t, sigma=density(sdf), rgb=rgb, normal=torch.zeros(R, S, 3), sdf=sdf, label=1,
                       valid=torch.ones(R, S, dtype=torch.bool))
    out = render_merged([node, plane_node(1.5, 2, R=R, S=S)])
    (out["rgb"] - 0.5).abs().mean().backward()
    for p in (sdf, rgb, density.raw_beta):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    # and they are the right gradients: finite-difference check in float64
    g = torch.Generator().manual_seed(8)
    t2 = torch.sort(torch.rand(2, 5, generator=g, dtype=F64), dim=1)[0]
    t3 = torch.sort(torch.rand(2, 4, generator=g, dtype=F64), dim=1)[0]
    sig2, sig3 = (torch.rand(2, k, generator=g, dtype=F64).requires_grad_(True) for k in (5, 4))
    c2, c3 = (torch.rand(2, k, 3, generator=g, dtype=F64).requires_grad_(True) for k in (5, 4))

    def f(sig2, sig3, c2, c3):
        nodes = [NodeSamples(t2, sig2, c2, c2, t2, 1, torch.ones(2, 5, dtype=torch.bool)),
                 NodeSamples(t3, sig3, c3, c3, t3, 2, torch.ones(2, 4, dtype=torch.bool))]
        out = render_merged(nodes)
        return out["rgb"], out["depth"], out["semantics"]

    assert torch.autograd.gradcheck(f, (sig2, sig3, c2, c3))


def test_bad_inputs_name_the_field():
    node = plane_node(1.0, 1, R=4, S=8)
    with pytest.raises(ValueError, match="'rgb'"):
        NodeSamples(t=node.t, sigma=node.sigma, rgb=node.rgb[:, :, :2], normal=node.normal, sdf=node.sdf,
                    label=1, valid=node.valid)
    with pytest.raises(ValueError, match="'valid'"):
        NodeSamples(t=node.t, sigma=node.sigma, rgb=node.rgb, normal=node.normal, sdf=node.sdf, label=1,
                    valid=node.valid.float())
    with pytest.raises(ValueError, match="label"):
        render_single(plane_node(1.0, 7, R=4, S=8))
    with pytest.raises(ValueError, match="same rays"):
        render_merged([node, plane_node(1.0, 1, R=3, S=8)])


def render_analytic_sphere(device, beta=0.002):
    """Pixel rays -> bounding sphere -> SDF-guided samples -> Laplace density -> render, for a
    sphere of radius 0.1 m 1 m in front of the camera (no learned parts: a pipeline check)."""
    from hold.geometry import make_intrinsics, pixel_centers, pixel_rays
    from hold.rendering import ray_points, ray_sphere_intersect, sdf_guided_samples

    K = make_intrinsics(60.0, 60.0, 12.0, 12.0, device=device)
    o, d = pixel_rays(K, pixel_centers(24, 24, device=device).reshape(-1, 2))
    c, r = torch.tensor([0.0, 0.0, 1.0], device=device), 0.1

    def sdf_fn(t):
        return (ray_points(o, d, t) - c).norm(dim=-1) - r

    t_near, t_far, hit = ray_sphere_intersect(o, d, c, 1.5 * r)
    t = sdf_guided_samples(t_near, t_far, sdf_fn, 24, 24, beta, perturb=False)
    sdf = sdf_fn(t)
    x = ray_points(o, d, t)
    node = NodeSamples(t=t, sigma=laplace_density(sdf, beta), rgb=torch.ones_like(x) * 0.8,
                       normal=(x - c) / (x - c).norm(dim=-1, keepdim=True), sdf=sdf, label=LABELS["object"],
                       valid=hit[:, None].expand_as(t))
    out = render_single(node, background_rgb=torch.zeros_like(o))
    t_surface, _, on_sphere = ray_sphere_intersect(o, d, c, r)
    clear_miss = ~ray_sphere_intersect(o, d, c, r + 10 * beta)[2]  # beyond the density's soft edge
    return out, t_surface, on_sphere, clear_miss


def test_end_to_end_sphere_render():
    out, t_surface, on_sphere, clear_miss = render_analytic_sphere("cpu")
    inner = on_sphere & (t_surface < 0.93)  # away from the silhouette, where rays graze
    assert inner.sum() >= 50 and clear_miss.sum() > 100
    assert (out["opacity"][inner] > 0.99).all() and (out["opacity"][clear_miss] < 0.01).all()
    assert ((out["depth"][inner] - t_surface[inner]).abs() < 0.002).all()
    torch.testing.assert_close(out["rgb"][inner], torch.full((int(inner.sum()), 3), 0.8), atol=0.01, rtol=0)
    assert (out["semantics"][inner, LABELS["object"]] > 0.99).all()
    assert (out["semantics"][clear_miss, LABELS["background"]] > 0.99).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_render_matches_cpu():
    cpu = render_analytic_sphere("cpu")[0]
    gpu = render_analytic_sphere("cuda")[0]
    for k in KEYS:
        torch.testing.assert_close(gpu[k].cpu(), cpu[k], atol=1e-3, rtol=0)
