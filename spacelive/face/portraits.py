"""The standard public-domain portraits the checks, tests and benchmarks run on."""

import io
from pathlib import Path

import numpy as np

from spacelive import ASSETS

PORTRAITS = ASSETS / "portraits"


def standard_portraits() -> dict[str, bytes]:
    """Public-domain portraits shipped in registry packages: scikit-image's and matplotlib's
    installed ones; Barack Obama from face_recognition 1.3.0's sdist and Ada Lovelace from
    matplotlib 3.3.4's, kept in the repo (see its README)."""
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    def png(rgb: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, "PNG")
        return buffer.getvalue()

    hopper = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return {
        "astronaut": png(skimage.data.astronaut()),  # NASA; mouth open, teeth showing
        "grace_hopper": hopper.read_bytes(),  # US Navy
        # White House photograph: mid-speech, mouth open, head turned ~18 deg
        "barack_obama": (PORTRAITS / "barack_obama.jpg").read_bytes(),
        "ada_lovelace": (PORTRAITS / "ada_lovelace.jpg").read_bytes(),  # a drawing, turned ~29 deg
    }
