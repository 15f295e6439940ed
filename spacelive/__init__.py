"""spacelive: real-time speech-driven portrait animation (SPACE) served over websockets."""

from pathlib import Path

__version__ = "0.1.0"

ASSETS = Path(__file__).resolve().parent / "assets"
"""The bundled models, portraits and graphs, installed with the package."""

FRAME_RATE = 30
"""Video frames per second; frame k shows audio time k / FRAME_RATE seconds."""

MODEL_SAMPLE_RATE = 16_000
"""Sample rate of the audio the MFCC front end sees."""

FRAME_SIZE = 512
"""Output frames are FRAME_SIZE x FRAME_SIZE RGB."""
