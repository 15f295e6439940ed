"""For people to look at: a held-out voice rendered through the server's engine, with frames
at the centres of bilabials (lips shut), open vowels (jaw open) and silence (closed).

    python benchmarks/lipsync_sheet.py [--models DIR] [--text "..."]

Writes benchmarks/results/lipsync_sheet.png and lipsync_unseen.mp4 is not kept (only the
sheet, to keep the repository small).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from spacelive.checks.bench import RESULTS
from spacelive.checks.sheet import contact_sheet, decode
from spacelive.stream.engine import DEFAULT_MODELS, DEFAULT_PORTRAIT, Engine, EngineConfig
from spacelive.stream.offline import render_frames
from spacelive.training.corpus import Voice, synthesize

SHOW = {
    "P": "lips shut",
    "B": "lips shut",
    "M": "lips shut",
    "AA": "open",
    "AE": "open",
    "AO": "open",
    "AY": "open",
    "UW": "round",
    "OW": "round",
    "F": "lip to teeth",
    "V": "lip to teeth",
    "SIL": "silence",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=str(DEFAULT_MODELS))
    parser.add_argument("--text", default="Bob bought a map, and we moved five big boxes home.")
    args = parser.parse_args()
    samples, phones = synthesize(Voice("mbrola", "us3", "en"), args.text, np.random.default_rng(0))
    engine = Engine(EngineConfig(models=Path(args.models)))
    frames = render_frames(engine, DEFAULT_PORTRAIT.read_bytes(), samples, 16_000)
    pictures = decode(frames, {f.frame_index for f in frames})
    chosen, seen = {}, set()
    for phone in phones:
        if phone.phoneme in SHOW and (phone.phoneme, SHOW[phone.phoneme]) not in seen | {None}:
            k = int(round((phone.start_s + phone.end_s) / 2 * 30))
            if k in pictures and len(chosen) < 12:
                label = f"{phone.phoneme} ({SHOW[phone.phoneme]}) {k / 30:.2f}s"
                chosen[label] = pictures[k][128:448, 96:416]
                seen.add((phone.phoneme, SHOW[phone.phoneme]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    Image.fromarray(contact_sheet(chosen, columns=4)).save(RESULTS / "lipsync_sheet.png")
    print(f"wrote {RESULTS / 'lipsync_sheet.png'}: {list(chosen)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
