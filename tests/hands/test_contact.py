"""Contact zones (hold.hands.contact) on both backends: anny and a procedurally generated MANO."""
import pytest
import torch

from hold.hands import FINGERTIP_KEYPOINTS, load_hand_model
from hold.geometry.mesh_query import vertex_normals
from hold.hands.contact import (
    PALM_RADIUS_M, TIP_RADIUS_M, ZONE_NAMES, contact_zone_anchors, contact_zone_vertices, contact_zones,
    palm_surface_center,
)
from hold.hands.kinematics import palm_center, palm_normal
from hold.hands.testing import write_fake_mano_dir


@pytest.fixture(scope="module")
def mano_dir(tmp_path_factory):
    return write_fake_mano_dir(tmp_path_factory.mktemp("mano"))


@pytest.fixture(scope="module", params=[("anny", "right"), ("anny", "left"), ("mano", "right"), ("mano", "left")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def model(request, mano_dir):
    name, side = request.param
    return load_hand_model(name, side, mano_dir)


def test_zones_cover_fingertips_and_palm(model):
    zones = contact_zones(model)
    assert tuple(zones) == ZONE_NAMES
    with torch.no_grad():
        out = model(**model.zero_params(1))
    v, kp = out.vertices[0], out.keypoints[0]
    for name, tip in zip(ZONE_NAMES[:5], FINGERTIP_KEYPOINTS):
        assert zones[name].numel() >= 10, (name, zones[name].numel())
        assert (v[zones[name]] - kp[tip]).norm(dim=-1).max() <= TIP_RADIUS_M + 1e-6
    assert zones["palm"].numel() >= 5
    idx = contact_zone_vertices(model)
    assert idx.dtype == torch.long and torch.equal(idx, torch.unique(idx))
    assert idx.numel() < 0.25 * v.shape[0]  # zones, not the whole hand
    # every zone vertex is within 1.5 cm of a fingertip or of the palm's surface centre
    anchors = contact_zone_anchors(model)
    assert torch.allclose(anchors[:5], kp[list(FINGERTIP_KEYPOINTS)])
    d = torch.cdist(v[idx], anchors).min(dim=1).values
    assert d.max() <= max(TIP_RADIUS_M, PALM_RADIUS_M) + 1e-6 <= 0.015 + 1e-6
    # the palm anchor is on the palmar surface, in front of the palm-centre keypoint average
    n, c = palm_normal(kp, model.side), palm_center(kp)
    assert 0.005 < float((anchors[5] - c) @ n) < 0.03
    # normals face the palmar side for (almost) all zone vertices
    vn = vertex_normals(v, model.faces)
    assert float(((vn[idx] @ n) > 0).float().mean()) >= 0.8
    assert float(((vn[zones["palm"]] @ n) >= 0.5).float().mean()) == 1.0
    # the back of the hand is never a contact zone: no zone vertex among those behind the palm plane
    back = torch.nonzero(((v - c) @ n < -0.005) & ((v - c).norm(dim=-1) < 0.03)).flatten()
    assert back.numel() > 0 and not torch.isin(back, idx).any()


def test_cached_per_model(mano_dir):
    m = load_hand_model("anny", "right")
    a = contact_zone_vertices(m)
    assert contact_zones(m) is contact_zones(m)
    other = load_hand_model("mano", "right", mano_dir)
    b = contact_zone_vertices(other)
    assert a.max() < 1609 and b.max() < 778  # each model's own vertex indices


def test_vertex_normals_of_a_cube_point_outward():
    import itertools

    v = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)))
    # 12 triangles, counter-clockwise seen from outside
    f = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    n = vertex_normals(v, f)
    assert torch.all((n * v).sum(-1) > 0.5)  # each corner's normal points away from the centre
    assert torch.allclose(n.norm(dim=-1), torch.ones(8))


def test_palm_surface_center_on_a_slab():
    # a flat slab of vertices at z = +0.01 (palmar) and z = -0.01; palm normal +z; centre at the origin
    xy = torch.stack(torch.meshgrid(torch.linspace(-0.04, 0.04, 9), torch.linspace(-0.04, 0.04, 9), indexing="ij"), -1)
    xy = xy.reshape(-1, 2)
    v = torch.cat([torch.cat([xy, torch.full((81, 1), 0.01)], 1), torch.cat([xy, torch.full((81, 1), -0.01)], 1)])
    kp = torch.zeros(21, 3)
    kp[5] = torch.tensor([0.02, 0.0, 0.0])    # index mcp: (index - wrist) x (little - wrist) = +z for a right hand
    kp[17] = torch.tensor([0.0, 0.02, 0.0])   # little mcp
    kp[0] = torch.tensor([0.0, 0.0, 0.0])
    kp[9] = kp[13] = torch.tensor([0.0, 0.0, 0.0])
    # palm_center = mean of wrist, mcps = (0.004, 0.004, 0); the closest vertex on the palmar (+z) side is at (0,0,.01)
    p = palm_surface_center(v, kp, "right")
    assert torch.allclose(p, torch.tensor([0.0, 0.0, 0.01]))
