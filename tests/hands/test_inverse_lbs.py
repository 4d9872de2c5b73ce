"""Issue contract, for both backends: inverse LBS of forward-LBS'd surface points returns the
canonical points to < 1 mm (posed mesh = LBS of the rest mesh, i.e. without MANO's correctives,
which HOLD's canonical mapping ignores too)."""
import pytest
import torch

from hold.geometry.lbs import inverse_lbs, lbs
from hold.hands import load_hand_model
from hold.hands.testing import write_fake_mano_dir
from tests.conftest import natural_pose


@pytest.fixture(scope="module", params=["anny", "mano"])
def model(request, tmp_path_factory):
    if request.param == "anny":
        return load_hand_model("anny")
    return load_hand_model("mano", mano_dir=write_fake_mano_dir(tmp_path_factory.mktemp("mano")))


def test_surface_points_round_trip_below_1mm(model):
    g = torch.Generator().manual_seed(7)
    B, N = 3, 4000
    out = model(global_orient=torch.randn(B, 3, generator=g), hand_pose=natural_pose(model, B, seed=7),
                betas=torch.randn(B, model.num_betas, generator=g), transl=0.2 * torch.randn(B, 3, generator=g))
    faces = out.faces[torch.randint(0, out.faces.shape[0], (N,), generator=g)]
    bary = torch.distributions.Dirichlet(torch.ones(3)).sample((N,))
    x_rest = (out.rest_vertices[:, faces] * bary[None, :, :, None]).sum(2)  # canonical surface points
    w = (out.skinning_weights[faces] * bary[:, :, None]).sum(1)  # their own skinning weights
    x_posed = lbs(x_rest, w, out.bone_transforms)  # forward LBS
    verts_posed = lbs(out.rest_vertices, out.skinning_weights, out.bone_transforms)
    x_back, dist = inverse_lbs(x_posed, verts_posed, out.skinning_weights, out.bone_transforms, faces=out.faces)
    err = (x_back - x_rest).norm(dim=-1)
    assert err.max() < 1e-3, f"{model.name}: max {err.max() * 1e3:.3f} mm"
    assert err.mean() < 1e-4
