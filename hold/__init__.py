"""hold: hand + unknown rigid object reconstruction from one RGB video.

`import hold` is light: no Lightning, no pycolmap, no GPU. Subpackages are imported explicitly.
"""
# pycolmap >= 4.1 ships its own zlib symbols; if it is imported before anything that loads the
# system zlib, the next PNG save / np.savez_compressed aborts the interpreter. Every entry point
# (CLI, apps, tests) imports `hold` first, so loading zlib here handles the trap once, centrally.
import zlib  # noqa: F401  (import order matters, see above)

import PIL.Image  # noqa: F401  (same reason: PIL's PNG encoder binds the system zlib now)

__version__ = "0.1.0"
