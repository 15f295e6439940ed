"""Contact sheets: labelled frames in a grid, for people to look at."""

import numpy as np


def contact_sheet(frames: dict[str, np.ndarray], columns: int = 6, size: int = 256) -> np.ndarray:
    """Labelled frames in a grid: (rows * size, columns * size, 3) uint8."""
    from PIL import Image, ImageDraw

    tiles = []
    for label, frame in frames.items():
        tile = Image.fromarray(frame).resize((size, size), Image.Resampling.LANCZOS)
        draw = ImageDraw.Draw(tile)
        draw.rectangle((0, 0, size, 16), fill=(0, 0, 0))
        draw.text((4, 2), label, fill=(255, 255, 255))
        tiles.append(np.asarray(tile))
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i : i + columns], axis=1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def decode(frames, wanted: set[int]) -> dict[int, np.ndarray]:
    """Decode encoded H.264 frames in order; keep the RGB pictures of the ``wanted`` indices."""
    import av

    decoder = av.CodecContext.create("h264", "r")
    out = {}
    for f in frames:
        for picture in decoder.decode(av.Packet(f.data)):
            if f.frame_index in wanted:
                out[f.frame_index] = picture.to_ndarray(format="rgb24")
    return out


def decoded_frames(frames, picks: int = 12) -> dict[str, np.ndarray]:
    """``picks`` evenly spaced decoded frames, labelled by time."""
    from spacelive import FRAME_RATE

    wanted = set(np.linspace(0, len(frames) - 1, min(picks, len(frames))).round().astype(int))
    return {f"frame {k}  {k / FRAME_RATE:.2f} s": rgb for k, rgb in decode(frames, wanted).items()}
