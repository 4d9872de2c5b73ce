"""Hand models behind one interface (`HandModel`): `anny` (default, embedded) and `mano` (user's files)."""
from __future__ import annotations

from pathlib import Path

from hold.hands.base import FINGERTIP_KEYPOINTS, KEYPOINT_NAMES, KEYPOINT_PARENTS, HandModel, HandOutput

HAND_MODELS = ("anny", "mano")


def load_hand_model(name: str = "anny", side: str = "right", mano_dir: str | Path | None = None) -> HandModel:
    """Build a hand model by name. `mano` needs `mano_dir`: the folder with your MANO_RIGHT/LEFT.pkl."""
    if name == "anny":
        from hold.hands.anny import AnnyHand

        return AnnyHand(side=side)
    if name == "mano":
        if mano_dir is None:
            raise ValueError("hand model 'mano' needs --mano-dir: the folder holding the MANO_RIGHT.pkl / "
                             "MANO_LEFT.pkl you downloaded from the MANO website (it is licence-gated and "
                             "never shipped with hold). Or use the embedded default: --hand-model anny.")
        from hold.hands.mano import load_mano

        return load_mano(mano_dir, side=side)
    raise ValueError(f"unknown hand model {name!r}; choose one of {HAND_MODELS}")


__all__ = ["HandModel", "HandOutput", "KEYPOINT_NAMES", "KEYPOINT_PARENTS", "FINGERTIP_KEYPOINTS",
           "HAND_MODELS", "load_hand_model"]
