"""Hash grid: tcnn's layout and maths, exactness against the slow reference, checkpoints, masking."""
import io
import warnings

import pytest
import torch

import hold  # noqa: F401  (import-order side effects)
from hold.fields import HashGridConfig, HashGridEncoding, grid_levels, reference_hash_grid, tcnn_available
from hold.fields.hash_grid import PRIMES, hash_grid_torch

# 4 levels, table 2^10 = 1024 entries, base 3, per_level_scale 4 (log2 and exp2 exact in float32):
#   scale_l = 4^l * 3 - 1  = 2, 11, 47, 191
#   res_l   = ceil(scale)+1 = 3, 12, 48, 192
#   res^3                   = 27, 1728, 110592, 7077888
#   size = min(next_multiple(res^3, 8), 1024) = 32 (dense, 27 padded to 32), 1024, 1024, 1024 (hashed)
#   offsets = 0, 32, 1056, 2080; entries = 3104; n_params = 3104 * 2 = 6208
SMALL = HashGridConfig(n_levels=4, n_features_per_level=2, log2_hashmap_size=10, base_resolution=3, per_level_scale=4.0)
SMALL_LAYOUT = [(2.0, 3, 32, 0, False), (11.0, 12, 1024, 32, True), (47.0, 48, 1024, 1056, True), (191.0, 192, 1024, 2080, True)]
SMALL_N_PARAMS = 6208

# 16 levels, table 2^16 = 65536, base 16, max 2048 -> per_level_scale b = 2^(7/15) = 1.3819...:
#   l=0: 16 - 1 = 15            -> res 16, 4096   -> dense, 4096
#   l=1: 16 b - 1   = 21.11     -> res 23, 12167  -> dense, padded 12168
#   l=2: 16 b^2 - 1 = 29.55     -> res 31, 29791  -> dense, padded 29792
#   l=3: 16 b^3 - 1 = 41.22     -> res 43, 79507 > 65536 -> hashed, 65536 (and every finer level)
#   offsets 0, 4096, 16264, 46056, 46056 + 65536 k; entries = 46056 + 13 * 65536 = 898024
#   n_params = 898024 * 2 = 1796048
L16 = HashGridConfig(log2_hashmap_size=16)
L16_FIRST = [(16, 4096, 0, False), (23, 12168, 4096, False), (31, 29792, 16264, False), (43, 65536, 46056, True)]
L16_N_PARAMS = 1796048

# instant-NGP default (2^19): dense up to res^3 <= 524288: levels 0-4 (res 16, 23, 31, 43, 59; 59^3 = 205379
# padded 205384), hashed from level 5 (res 81, 531441 > 524288). entries = 330952 + 11 * 524288 = 6098120,
# n_params = 12196240 (the figure tcnn reports for this config).
DEFAULT_N_PARAMS = 12196240


def random_points(n, seed=0):
    """Random points in [0,1]^3 plus corner cases: the cube corners, exact vertices, x = 1 (dense
    wrap-around), and a few slightly outside (tcnn's uint32 wrap)."""
    g = torch.Generator().manual_seed(seed)
    special = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25],
                            [0.9999999, 1.0, 0.0], [-0.01, 0.5, 1.02], [1e-7, 0.3, 0.7]])
    return torch.cat([special, torch.rand(n, 3, generator=g)])


def grid_with_params(cfg, seed=0, scale=1.0):
    torch.manual_seed(seed)
    enc = HashGridEncoding(cfg)
    with torch.no_grad():
        enc.params.uniform_(-scale, scale)  # O(1) values: any wrong index would show
    return enc


def test_layout_small_config_by_hand():
    levels = grid_levels(SMALL)
    assert [(lv.scale, lv.resolution, lv.size, lv.offset, lv.hashed) for lv in levels] == SMALL_LAYOUT
    enc = HashGridEncoding(SMALL)
    assert enc.n_params == SMALL_N_PARAMS and enc.params.shape == (SMALL_N_PARAMS,)
    assert enc.output_dim == 8
    assert enc.params.abs().max() <= 1e-4 and enc.params.std() > 3e-5  # tcnn's uniform(-1e-4, 1e-4)


def test_layout_16_levels_by_hand():
    levels = grid_levels(L16)
    assert [(lv.resolution, lv.size, lv.offset, lv.hashed) for lv in levels[:4]] == L16_FIRST
    assert all(lv.hashed and lv.size == 65536 for lv in levels[3:])
    assert [lv.offset for lv in levels[4:]] == [46056 + 65536 * k for k in range(1, 13)]
    assert HashGridEncoding(L16).n_params == L16_N_PARAMS
    assert abs(L16.resolved_per_level_scale() - 2 ** (7 / 15)) < 1e-12
    default = grid_levels(HashGridConfig())
    assert [lv.hashed for lv in default] == [False] * 5 + [True] * 11
    assert (default[-1].offset + default[-1].size) * 2 == DEFAULT_N_PARAMS


def test_known_answers_at_grid_vertices():
    """Points exactly on a level's vertices read one entry: check the index formulas by hand."""
    enc = HashGridEncoding(SMALL)
    with torch.no_grad():
        enc.params.copy_(torch.arange(SMALL_N_PARAMS, dtype=torch.float32) / 1000.0)  # distinct values
    p = enc.params.detach()

    def entry(offset, index):  # (feature 0, feature 1) of an entry: features innermost
        return torch.stack([p[(offset + index) * 2], p[(offset + index) * 2 + 1]])

    def h(x, y, z, size):  # coherent prime hash in uint32
        return ((x * 1) ^ ((y * 2654435761) & 0xFFFFFFFF) ^ ((z * 805459861) & 0xFFFFFFFF)) % size

    assert PRIMES == (1, 2654435761, 805459861)
    out = enc(torch.tensor([[0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]))
    # x = 0.5: level 1 pos = 11 * 0.5 + 0.5 = 6 -> vertex (6,6,6); level 2: 24; level 3: 96 (all hashed).
    assert torch.equal(out[0, 2:4], entry(32, h(6, 6, 6, 1024)))
    assert h(6, 6, 6, 1024) == 862  # (6 ^ 3041712678 ^ 537791870) mod 1024, worked out by hand
    assert torch.equal(out[0, 4:6], entry(1056, h(24, 24, 24, 1024)))
    assert torch.equal(out[0, 6:8], entry(2080, h(96, 96, 96, 1024)))
    # x = 0.25: level 0 (dense, res 3) pos = 2 * 0.25 + 0.5 = 1 -> vertex (1,1,1) -> 1 + 1*3 + 1*9 = 13.
    assert torch.equal(out[1, 0:2], entry(0, 13))
    # x = 1: level 0 pos = 2.5 -> cell (2,2,2), frac 0.5: the +1 corners sit at coordinate 3 = res and
    # wrap like tcnn's: (x + 3 y + 9 z) mod 32 for x, y, z in {2, 3}.
    corners = [(x + 3 * y + 9 * z) % 32 for z in (2, 3) for y in (2, 3) for x in (2, 3)]
    expected = torch.stack([entry(0, i) for i in corners]).mean(0)
    assert torch.allclose(enc(torch.ones(1, 3))[0, 0:2], expected, atol=1e-7, rtol=0)


@pytest.mark.parametrize("cfg,n", [(SMALL, 200), (L16, 40)], ids=["4-levels", "16-levels"])
def test_torch_grid_equals_reference_exactly(cfg, n):
    enc = grid_with_params(cfg)
    x = random_points(n)
    out, ref = enc(x), reference_hash_grid(x, enc.params, cfg)
    assert out.shape == ref.shape == (x.shape[0], cfg.n_levels * cfg.n_features_per_level)
    assert (out - ref).abs().max().item() < 1e-7  # bitwise equal in practice (0.0)
    assert ref.abs().max() > 0.1  # O(1) outputs: a wrong index would not hide under the tolerance


@pytest.mark.parametrize("cfg,n", [(SMALL, 200), (L16, 40)], ids=["4-levels", "16-levels"])
def test_param_gradient_equals_reference(cfg, n):
    enc = grid_with_params(cfg, seed=1)
    x = random_points(n, seed=1)
    w = torch.randn(x.shape[0], enc.output_dim, generator=torch.Generator().manual_seed(2))
    (g_torch,) = torch.autograd.grad((enc(x) * w).sum(), enc.params)
    (g_ref,) = torch.autograd.grad((reference_hash_grid(x, enc.params, cfg) * w).sum(), enc.params)
    assert g_ref.abs().max() > 0.5 and (g_ref != 0).sum() > 100
    assert (g_torch - g_ref).abs().max().item() < 1e-6


def test_input_gradient_is_the_trilinear_slope():
    """d(encoding)/dx (used by analytic normals) equals central differences inside the cells."""
    cfg = HashGridConfig(n_levels=2, log2_hashmap_size=8, base_resolution=4, per_level_scale=2.0)
    enc = grid_with_params(cfg, seed=3)
    # pos = 3x + 0.5 and 7x + 0.5: x away from every cell face of both levels for a +-1e-3 step.
    x = torch.tensor([[0.21, 0.37, 0.52], [0.63, 0.44, 0.08], [0.32, 0.91, 0.75]]).requires_grad_(True)
    v = torch.randn(enc.output_dim, generator=torch.Generator().manual_seed(0))
    (g,) = torch.autograd.grad((enc(x) @ v).sum(), x)
    eps = 1e-3
    fd = torch.stack([((enc(x.detach() + eps * e) - enc(x.detach() - eps * e)) @ v) / (2 * eps) for e in torch.eye(3)], 1)
    assert torch.allclose(g, fd, atol=2e-3, rtol=1e-3) and g.abs().max() > 1.0


def test_second_order_gradient_to_params():
    """The eikonal loss needs d/dparams of d(enc)/dx (double backward through the gather).
    L(p) = |d(enc . v)/dx|^2 is exactly quadratic in p, so central differences with a large step
    are exact up to rounding: compare directional derivatives."""
    cfg = HashGridConfig(n_levels=2, n_features_per_level=2, log2_hashmap_size=6, base_resolution=3, per_level_scale=3.0)
    levels = grid_levels(cfg)
    n_params = (levels[-1].offset + levels[-1].size) * 2
    g = torch.Generator().manual_seed(0)
    params = (torch.rand(n_params, generator=g) - 0.5).requires_grad_(True)
    x = torch.rand(6, 3, generator=g)
    v = torch.randn(4, generator=g)

    def eikonal_like(p):
        xr = x.clone().requires_grad_(True)
        y = hash_grid_torch(xr, p, levels, 2) @ v
        (gx,) = torch.autograd.grad(y.sum(), xr, create_graph=True)
        return gx.square().sum()

    (grad,) = torch.autograd.grad(eikonal_like(params), params)
    assert (grad != 0).sum() > 20
    step = 0.1
    p0 = params.detach()
    for _ in range(6):
        d = torch.randn(n_params, generator=g)
        numeric = (eikonal_like(p0 + step * d) - eikonal_like(p0 - step * d)).item() / (2 * step)
        assert abs(numeric - (grad @ d).item()) < 1e-3 * max(1.0, abs(numeric))


def test_state_dict_round_trip():
    src = grid_with_params(SMALL, seed=4)
    assert list(src.state_dict()) == ["params"]  # same single key as tinycudann.Encoding
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    buf.seek(0)
    dst = HashGridEncoding(HashGridConfig(**{**SMALL.__dict__, "implementation": "auto"}))
    x = random_points(50)
    assert not torch.equal(dst(x), src(x))
    dst.load_state_dict(torch.load(buf))
    assert torch.equal(dst(x), src(x))


def test_set_active_levels_zeroes_the_right_slice():
    enc = grid_with_params(SMALL, seed=5)
    x = random_points(100)
    full = enc(x).detach()
    enc.set_active_levels(2)
    out = enc(x)
    assert torch.equal(out[:, :4], full[:, :4])  # levels 0, 1 (2 features each) untouched
    assert torch.equal(out[:, 4:], torch.zeros_like(out[:, 4:])) and full[:, 4:].abs().min() > 0
    (grad,) = torch.autograd.grad(out.sum(), enc.params)
    first_masked = SMALL_LAYOUT[2][3] * 2  # offset of level 2, in floats
    assert grad[:first_masked].abs().sum() > 0 and torch.equal(grad[first_masked:], torch.zeros_like(grad[first_masked:]))
    enc.set_active_levels(0)
    assert torch.equal(enc(x), torch.zeros_like(full))
    enc.set_active_levels(4)
    assert torch.equal(enc(x), full)
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        enc.set_active_levels(5)


def test_bad_input_and_missing_tcnn_errors():
    enc = HashGridEncoding(SMALL)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        enc(torch.rand(10, 2))
    with pytest.raises(ValueError, match="implementation"):
        HashGridConfig(implementation="cuda")
    if not tcnn_available():
        with pytest.raises(ImportError, match="implementation='torch'"):
            HashGridEncoding(HashGridConfig(**{**SMALL.__dict__, "implementation": "tcnn"}))
        assert not enc.uses_tcnn(torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_path_on_cuda_matches_cpu_and_warns_once():
    import hold.fields.hash_grid as hg

    enc = grid_with_params(HashGridConfig(**{**L16.__dict__, "implementation": "torch"}), seed=6)
    x = random_points(4096)
    cpu = enc(x)
    hg._WARNED_TORCH_ON_CUDA = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        enc_cuda = enc.cuda()
        gpu = enc_cuda(x.cuda())
        enc_cuda(x.cuda())
    assert sum("pure-PyTorch" in str(w.message) for w in caught) == 1
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-6, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and tcnn_available()), reason="needs CUDA and tinycudann")
def test_tcnn_and_torch_agree_and_share_checkpoints():
    torch_enc = grid_with_params(HashGridConfig(**{**L16.__dict__, "implementation": "torch"}), seed=7).cuda()
    tcnn_enc = HashGridEncoding(HashGridConfig(**{**L16.__dict__, "implementation": "tcnn"})).cuda()
    tcnn_enc.load_state_dict(torch_enc.state_dict())
    x = random_points(4096).clamp(0, 1).cuda()
    a, b = torch_enc(x), tcnn_enc(x)
    assert (a - b).abs().max().item() < 5e-3  # fp16 tolerance on O(1) outputs
    w = torch.randn_like(a)
    (ga,) = torch.autograd.grad((a * w).sum(), torch_enc.params)
    (gb,) = torch.autograd.grad((b * w).sum(), tcnn_enc.params)
    assert torch.allclose(ga, gb, atol=5e-2, rtol=1e-2)
    torch_enc.load_state_dict(tcnn_enc.state_dict())  # and back
