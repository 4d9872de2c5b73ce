"""Nodes: camera -> field-space mappings and the hand's canonical SDF after its pre-fit."""
import numpy as np
import pytest
import torch

from hold.config import resolve_config
from hold.synth.sequence import EstimateNoise, SynthConfig, generate
from recon.config import TrainConfig
from recon.train import build_model, resolve_preset


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    build = generate(SynthConfig(num_frames=3, width=48, height=40, seed=1, noise=EstimateNoise(drop_rate=0.0)),
                     tmp_path_factory.mktemp("nodes") / "b", progress=False)
    cfg = resolve_config(TrainConfig(), [resolve_preset("cpu_smoke")], ["model.hand.prior_bank_size=6000"])
    m, _ = build_model(build, cfg)
    m.prefit_hands(steps=150)
    return m


def test_posed_hand_surface_has_zero_canonical_sdf(model):
    """Inverse LBS + the pre-fitted canonical SDF of the posed hand-model mesh is ~0 on its surface."""
    hand = model.hands["right"]
    frames = torch.arange(3)
    hand.prepare(frames)
    with torch.no_grad():
        out = hand.posed(frames)
        g = torch.Generator().manual_seed(0)
        faces = out.faces[torch.randint(0, out.faces.shape[0], (600,), generator=g)]
        b = -torch.rand(600, 3, generator=g).log()
        b = b / b.sum(1, keepdim=True)
        x_cam = (out.vertices[:, faces] * b[None, :, :, None]).sum(2)  # (3, 600, 3) posed surface points
        x_field, scale, _, valid = hand.to_field(x_cam, frames)
        sdf_m = hand.sdf(x_field.reshape(-1, 3))[0].reshape(3, 600) * scale
    assert valid.all()
    assert sdf_m.abs().median() < 1.5e-3, f"median |sdf| {sdf_m.abs().median() * 1e3:.2f} mm"
    assert (sdf_m.abs() < 5e-3).float().mean() > 0.95


def test_samples_far_from_the_hand_get_no_hand_density(model):
    hand = model.hands["right"]
    frames = torch.arange(3)
    hand.prepare(frames)
    with torch.no_grad():
        verts = hand.posed(frames).vertices
        center = verts.mean(1, keepdim=True)
        reach = (verts - center).norm(dim=-1).max(1).values[:, None, None]
        d = torch.randn(3, 20, 3, generator=torch.Generator().manual_seed(0))
        far = center + d / d.norm(dim=-1, keepdim=True) * (reach + 0.03)  # >= 3 cm from every vertex
        _, _, _, valid = hand.to_field(far, frames)
        near = verts[:, :20] + 0.002  # 2-3 mm off the surface
        _, _, _, valid_near = hand.to_field(near, frames)
    assert not valid.any() and valid_near.all()


def test_object_field_space_round_trip(model):
    node = model.object
    frames = torch.tensor([0, 2])
    x_obj = torch.rand(2, 50, 3) - 0.5
    with torch.no_grad():
        T = node.T_cam_from_obj(frames)
        x_cam = torch.einsum("rij,rsj->rsi", T[:, :3, :3], x_obj * node.scale) + T[:, None, :3, 3]
        back, scale, _, valid = node.to_field(x_cam, frames)
    assert torch.allclose(back, x_obj, atol=1e-5) and valid.all()
    center, radius = node.bounding_sphere(frames)
    assert torch.allclose(center, T[:, :3, 3]) and torch.allclose(radius, node.scale.expand(2))


def test_neus_density_option_renders(tmp_path):
    build = generate(SynthConfig(num_frames=2, width=24, height=20, seed=2, noise=EstimateNoise(drop_rate=0.0)),
                     tmp_path / "b", progress=False)
    cfg = resolve_config(TrainConfig(), [resolve_preset("cpu_smoke")],
                         ["model.object.density=neus", "model.hand.density=neus", "model.hand.prior_bank_size=500"])
    m, sampler = build_model(build, cfg)
    from hold.rendering import NeusDensity

    assert isinstance(m.object.density, NeusDensity)
    terms = m.losses(sampler.batch(0, 0), 0)
    terms["loss"].backward()
    assert torch.isfinite(terms["loss"]) and m.object.density.log_inv_s.grad is not None


def test_render_image_covers_the_frame(model):
    out = model.render_image(0, downscale=4)
    h, w = (40 + 3) // 4, (48 + 3) // 4
    assert out["rgb"].shape == (h, w, 3) and out["semantics"].shape == (h, w, 4)
    assert (out["opacity"] >= 0).all() and (out["opacity"] <= 1 + 1e-5).all()
    assert np.allclose(out["semantics"].sum(-1), 1.0, atol=1e-4)  # background takes 1 - opacity
