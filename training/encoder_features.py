"""The features a trained audio encoder gives a corpus: what PoseGen and (with a frozen
encoder) S2L learn from. They come from the model directory's ONNX graph, stepped exactly as a
stream steps it, so training hears what the server computes."""

import numpy as np

from spacelive.motion.runners import StageSet


def encode_audio(stages: StageSet, mfccs: list[np.ndarray], batch: int = 64) -> list[np.ndarray]:
    """The audio encoder's features (T, C) per utterance, stepped through its ONNX graph as a
    stream steps it (zero caches, lookahead flushed with zero frames). Utterances of similar
    length share a batch, so little is stepped past an utterance's end."""
    lookahead = int(stages.manifest["stages"]["audio_encoder"]["lookahead"])
    names = [n for n in stages.audio_encoder.input_names if n.startswith("cache_")]
    order = sorted(range(len(mfccs)), key=lambda i: len(mfccs[i]))
    out: list[np.ndarray] = [np.empty(0)] * len(mfccs)
    for first in range(0, len(order), batch):
        members = order[first : first + batch]
        group = [mfccs[i] for i in members]
        rows, longest = len(group), max(len(m) for m in group)
        caches = {
            n: np.zeros(stages.input_shape("audio_encoder", n, rows), np.float32) for n in names
        }
        counts = np.array([len(m) for m in group], np.int64)
        features: list[np.ndarray] = []
        for i in range(longest + lookahead):
            mfcc = np.stack([m[i] if i < len(m) else np.zeros(m.shape[1], m.dtype) for m in group])
            result = stages.audio_encoder.run(
                {
                    "mfcc": mfcc.astype(np.float32),
                    "frame_index": np.full(rows, i, np.int64),
                    "frame_count": counts,
                    **caches,
                }
            )
            caches = {n: result[f"new_{n}"] for n in names}
            if i >= lookahead:
                features.append(result["audio"])
        stacked = np.stack(features, axis=1)  # (rows, longest, C)
        for r, (u, m) in enumerate(zip(members, group, strict=True)):
            out[u] = stacked[r, : len(m)].copy()
    return out
