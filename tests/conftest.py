"""Shared fixtures. `import hold` first: it guards the pycolmap/zlib import-order trap."""
import hold  # noqa: F401
import pytest
import torch

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def anny_right():
    from hold.hands import load_hand_model

    return load_hand_model("anny", "right")


@pytest.fixture(scope="session")
def anny_left():
    from hold.hands import load_hand_model

    return load_hand_model("anny", "left")


def natural_pose(model, batch: int, seed: int = 0, max_flex_deg: float = 40.0) -> torch.Tensor:
    """Plausible finger poses: flexion in [0, max_flex] about each joint's axis plus small noise."""
    from hold.hands.kinematics import flexion_axes, rest_keypoints

    g = torch.Generator().manual_seed(seed)
    axes = flexion_axes(model, rest_keypoints(model))
    flex = torch.rand(batch, 15, 1, generator=g) * torch.deg2rad(torch.tensor(max_flex_deg))
    return (flex * axes + 0.05 * torch.randn(batch, 15, 3, generator=g)).reshape(batch, 45)
