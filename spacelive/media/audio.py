"""Audio front end: resampling to 16 kHz and a streaming MFCC on the exact 30 fps clock.

MFCC semantics follow python_speech_features (pre-emphasis 0.97, rectangular 1024-sample
window, power spectrum / NFFT, 40 mel filters, log, orthonormal DCT-II, lifter 22, c0
replaced by log frame energy). Frame placement is ours: frame k is centred on sample
floor(k * 16000 / 30) of the 16 kHz signal, computed in integers so the clock never drifts,
and samples outside the signal are zero.
"""

import numpy as np
from python_speech_features.base import get_filterbanks, lifter
from scipy.fft import dct

from spacelive import FRAME_RATE, MODEL_SAMPLE_RATE

N_MFCC = 40
N_FILTERS = 40
NFFT = 1024
PREEMPHASIS = 0.97
CEPLIFTER = 22
SUPPORTED_SAMPLE_RATES = (16_000, 22_050, 24_000, 32_000, 44_100, 48_000)

_EPS = np.finfo(float).eps
_FILTERBANK = get_filterbanks(N_FILTERS, NFFT, MODEL_SAMPLE_RATE, 0, MODEL_SAMPLE_RATE / 2)


def frame_count(samples: int, sample_rate: int) -> int:
    """Frames for an audio of ``samples`` at ``sample_rate``: ceil(duration * 30), exactly."""
    return -(-samples * FRAME_RATE // sample_rate)


def window_start(frame_index: int) -> int:
    """First 16 kHz sample of frame k's FFT window (may be negative)."""
    return frame_index * MODEL_SAMPLE_RATE // FRAME_RATE - NFFT // 2


def samples_needed(frame_index: int, sample_rate: int = MODEL_SAMPLE_RATE) -> int:
    """Input samples (at ``sample_rate``) that must have arrived before MFCC frame k exists."""
    end16 = window_start(frame_index) + NFFT
    return -(-end16 * sample_rate // MODEL_SAMPLE_RATE)


def mfcc_of_windows(windows: np.ndarray) -> np.ndarray:
    """windows: (n, 1024) pre-emphasized samples -> (n, 40) float32 MFCC.

    Row i depends on row i alone and is computed without BLAS, so a frame's coefficients are
    bit-identical however many frames are computed together.
    """
    windows = np.asarray(windows, dtype=np.float64)
    power = np.abs(np.fft.rfft(windows, NFFT, axis=1)) ** 2 / NFFT
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, _EPS, energy)
    mel = np.einsum("nf,mf->nm", power, _FILTERBANK)
    mel = np.where(mel == 0, _EPS, mel)
    cepstra = dct(np.log(mel), type=2, axis=1, norm="ortho")[:, :N_MFCC]
    cepstra = lifter(cepstra, CEPLIFTER)
    cepstra[:, 0] = np.log(energy)
    return cepstra.astype(np.float32)


def preemphasize(signal: np.ndarray, previous: float = 0.0) -> np.ndarray:
    """y[n] = x[n] - 0.97 x[n-1], with x[-1] = ``previous``."""
    signal = np.asarray(signal, dtype=np.float64)
    shifted = np.concatenate([[previous], signal[:-1]])
    return signal - PREEMPHASIS * shifted


def offline_mfcc(signal: np.ndarray, frames: int | None = None) -> np.ndarray:
    """The reference: all MFCC frames of a whole 16 kHz signal (float in [-1, 1]).

    Returns (frames, 40), frames defaulting to ceil(len / 16000 * 30).
    """
    frames = frame_count(len(signal), MODEL_SAMPLE_RATE) if frames is None else frames
    emphasized = preemphasize(signal)
    pad = NFFT
    padded = np.concatenate([np.zeros(pad), emphasized, np.zeros(pad + NFFT)])
    starts = np.array([window_start(k) for k in range(frames)], dtype=np.int64) + pad
    if frames == 0:
        return np.zeros((0, N_MFCC), np.float32)
    idx = starts[:, None] + np.arange(NFFT)[None, :]
    return mfcc_of_windows(padded[idx])


class MfccStreamer:
    """Turns 16 kHz samples arriving in any chunking into MFCC frames, in order.

    ``push`` returns the frames whose windows are complete; ``finish`` returns the rest up to
    the stream's frame count, with zeros past the end of the signal. The frames equal
    ``offline_mfcc`` of the concatenated signal, bit for bit.
    """

    def __init__(self) -> None:
        # Pre-emphasized samples from sample index _buffer_start on; the signal is zero before 0.
        self._buffer = np.zeros(NFFT // 2, dtype=np.float64)
        self._buffer_start = -NFFT // 2
        self._received = 0
        self._last_sample = 0.0
        self._next_frame = 0

    @property
    def next_frame(self) -> int:
        return self._next_frame

    def push(self, samples: np.ndarray) -> np.ndarray:
        """samples: (n,) float at 16 kHz -> (k, 40) newly complete MFCC frames."""
        samples = np.asarray(samples, dtype=np.float64).reshape(-1)
        if samples.size:
            self._buffer = np.concatenate([self._buffer, preemphasize(samples, self._last_sample)])
            self._last_sample = float(samples[-1])
            self._received += samples.size
        ready = self._next_frame
        while window_start(ready) + NFFT <= self._received:
            ready += 1
        return self._emit(ready)

    def finish(self, total_frames: int) -> np.ndarray:
        """End of stream: the remaining frames up to ``total_frames``, zero-padded."""
        needed = window_start(max(total_frames - 1, 0)) + NFFT - self._buffer_start
        if needed > self._buffer.size:
            self._buffer = np.concatenate([self._buffer, np.zeros(needed - self._buffer.size)])
        return self._emit(max(total_frames, self._next_frame))

    def _emit(self, stop: int) -> np.ndarray:
        if stop <= self._next_frame:
            return np.zeros((0, N_MFCC), np.float32)
        offsets = np.array(
            [window_start(k) - self._buffer_start for k in range(self._next_frame, stop)]
        )
        windows = self._buffer[offsets[:, None] + np.arange(NFFT)[None, :]]
        self._next_frame = stop
        keep_from = window_start(stop) - self._buffer_start
        self._buffer = self._buffer[keep_from:]
        self._buffer_start += keep_from
        return mfcc_of_windows(windows)


class Resampler:
    """Streaming conversion of mono audio at ``sample_rate`` to 16 kHz float (PyAV/swresample).

    Input is re-blocked into fixed 20 ms blocks before it reaches swresample, so the output
    is identical however the caller chunks the input.
    """

    def __init__(self, sample_rate: int):
        if sample_rate not in SUPPORTED_SAMPLE_RATES:
            raise ValueError(
                f"sample_rate {sample_rate} is not supported; send one of "
                f"{', '.join(map(str, SUPPORTED_SAMPLE_RATES))} Hz"
            )
        self.sample_rate = sample_rate
        self._block = sample_rate // 50
        self._pending = np.zeros(0, dtype=np.float32)
        self._resampler = None
        if sample_rate != MODEL_SAMPLE_RATE:
            import av

            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=MODEL_SAMPLE_RATE)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """samples: (n,) float32 at the input rate -> (m,) float32 at 16 kHz."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._resampler is None:
            return samples
        self._pending = np.concatenate([self._pending, samples])
        usable = self._pending.size - self._pending.size % self._block
        out = self._run(self._pending[:usable]) if usable else np.zeros(0, np.float32)
        self._pending = self._pending[usable:]
        return out

    def finish(self) -> np.ndarray:
        """The remaining samples, with the resampler's tail flushed."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        out = [self._run(self._pending)] if self._pending.size else []
        self._pending = np.zeros(0, np.float32)
        out += [f.to_ndarray().reshape(-1) for f in self._resampler.resample(None)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _run(self, samples: np.ndarray) -> np.ndarray:
        import av

        if self._resampler is None:
            return samples
        out = []
        for start in range(0, samples.size, self._block):
            block = samples[start : start + self._block]
            frame = av.AudioFrame.from_ndarray(block[None, :], format="flt", layout="mono")
            frame.sample_rate = self.sample_rate
            out += [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def read_audio(path) -> tuple[np.ndarray, int]:
    """Any audio file PyAV can decode -> (mono float32 samples in [-1, 1], sample rate).

    Keeps the file's rate when the server accepts it; other rates are converted to 16 kHz.
    """
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path} has no audio stream")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        target = rate if rate in SUPPORTED_SAMPLE_RATES else MODEL_SAMPLE_RATE
        resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
        chunks = []
        for frame in container.decode(stream):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return samples.astype(np.float32), target


def read_speech(path) -> np.ndarray:
    """Any audio file -> mono float32 samples at the models' 16 kHz, resampled as a session
    resamples its stream."""
    samples, rate = read_audio(path)
    if rate == MODEL_SAMPLE_RATE:
        return samples
    resampler = Resampler(rate)
    return np.concatenate([resampler.push(samples), resampler.finish()])


def pcm_s16le(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] -> PCM s16le bytes (clipped)."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def write_wav(path, samples: np.ndarray, sample_rate: int) -> None:
    """Mono float samples -> 16-bit PCM WAV."""
    import wave

    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm_s16le(samples))
