"""A stream's audio front end: its messages, as its ``AudioSpec`` declares them, in; the MFCC
rows the motion loop steps on out.

It owns the decoder (PCM or Opus), the resampler to 16 kHz and the MFCC buffer, so a stream's
input shares nothing mutable with any other.
"""

import time

import numpy as np

from spacelive.media.audio import N_MFCC, MfccStreamer, Resampler, frame_count
from spacelive.media.audio_input import AudioSpec, InputError, open_input
from spacelive.media.timing import StageTimes


class AudioFront:
    """Audio messages -> MFCC rows (n, 40), in order, from one thread at a time."""

    def __init__(self, audio: AudioSpec, lookahead: int, times: StageTimes):
        """``lookahead``: the audio encoder's, in frames (``finish`` drives it out);
        ``times``: where the "mfcc" seconds go. Raises InputError for an audio format it
        cannot take."""
        self._input = open_input(audio)
        try:
            self._resampler = Resampler(self._input.sample_rate)
        except ValueError as exc:
            raise InputError("unsupported_sample_rate", str(exc)) from None
        self.sample_rate = self._input.sample_rate
        self._lookahead = lookahead
        self._mfcc = MfccStreamer()
        self._times = times
        self.samples_received = 0  # decoded
        self.samples_fed = 0  # given to the MFCC (a paced stream's include its silences)
        self.finished = False

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio fed to the MFCC so far."""
        return self.samples_fed / self.sample_rate

    def decode(self, data: bytes) -> np.ndarray:
        """One audio message -> its MFCC rows (n, 40), to be stepped in order."""
        return self.rows(self.samples(data))

    def samples(self, data: bytes) -> np.ndarray:
        """One audio message -> its samples (n,) float32 at the input's rate, not yet fed
        (a paced stream feeds them on its frame clock, ``rows``)."""
        if self.finished:
            raise RuntimeError("the stream's audio has ended")
        t0 = time.perf_counter()
        samples = self._input.decode(data)
        self.samples_received += samples.size
        self._times.add("mfcc", time.perf_counter() - t0)
        return samples

    def held(self) -> np.ndarray:
        """End of input: the samples the decoder still held (an Ogg stream's last page)."""
        held = self._input.finish()
        self.samples_received += held.size
        return held

    def rows(self, samples: np.ndarray) -> np.ndarray:
        """Samples (n,) float32 at the input's rate, in order -> the MFCC rows (m, 40) that
        became due."""
        t0 = time.perf_counter()
        self.samples_fed += samples.size
        mfcc = self._mfcc.push(self._resampler.push(samples))
        self._times.add("mfcc", time.perf_counter() - t0)
        return mfcc

    def finish(self, fed_held: bool = False) -> tuple[np.ndarray, int]:
        """End of stream: the last MFCC rows (n, 40) and the stream's frame count, which the
        motion state must know before they are stepped (it masks the lookahead past the end).

        The rows are the audio's tail (the decoder's held samples too, unless ``fed_held``:
        the caller took them with ``held`` and fed them itself), then zero rows that drive the
        encoder's lookahead out: stepping them all yields every remaining frame, ceil(seconds
        fed * 30) in total.
        """
        if self.finished:
            raise RuntimeError("the stream's audio has ended")
        self.finished = True
        tail = [] if fed_held else [self.rows(self.held())]
        t0 = time.perf_counter()
        total = frame_count(self.samples_fed, self.sample_rate)
        rows = [
            *tail,
            self._mfcc.push(self._resampler.finish()),
            self._mfcc.finish(total),
            np.zeros((self._lookahead, N_MFCC), np.float32),
        ]
        self._times.add("mfcc", time.perf_counter() - t0)
        return np.concatenate(rows), total
