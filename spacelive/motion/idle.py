"""The idle mouth: the portrait's own lips while it listens, closed lips between words.

Speech is taught and spoken around the portrait with its lips closed: the teacher's silence
rests closed, so the pauses between words shut the lips as p, b and m do. A portrait whose
lips are parted at rest (a smile with the teeth showing) gets its own mouth back while it is
idle: before its first word, and once it has been silent for ``IDLE_AFTER_FRAMES``.

``relaxation`` is the share of the portrait's own parting shown in a frame: 1 idle, 0 while
speaking. The teacher computes it from the phones' timing (``relaxation_track``); the server
from the audio it hears (``IdleMouth``, one per session), by the same rule.
"""

import math
from dataclasses import dataclass

import numpy as np

from spacelive.face.landmarks import closed_mouth

IDLE_AFTER_FRAMES = 30
"""Silent frames (1 s) after speech before the lips start to part again: pauses between
words and phrases keep them closed."""
RELAX_FRAMES = 15
"""Frames the lips take to part again (0.5 s)."""
WAKE_FRAMES = 3
"""Frames the lips take to close before the first speaking frame (100 ms). The server sees
that far ahead through the audio encoder's lookahead."""
SPEECH_ABOVE_FLOOR = 1.0
"""A frame is speech when its MFCC c0 (log energy: 2.3 per 10 dB) is this far above the
stream's noise floor: 4.3 dB."""
FLOOR_FRAMES = 60
"""The noise floor is the quietest frame of the last 2 s heard (minimum statistics): a room's
noise fills the window at once, and speech dips to the room's level between words and in stop
closures far more often than every 2 s."""
FLOOR_WARMUP_FRAMES = 10
"""Until the window holds this many frames (1/3 s), a stream is judged against
``FLOOR_LOWEST``, so that a voice from the first frame is speech rather than the floor."""
FLOOR_LOWEST = -9.0
"""The floor while a stream warms up, and the lowest it goes: the c0 of white noise at
-69 dBFS."""
DIGITAL_SILENCE = -20.0
"""c0 of a frame of (near) digital silence: a muted input, a client's pre-roll, the gaps of a
synthesized voice (zeros read -36; white noise at -80 dBFS, -11.5). Such a frame is not speech
and does not count for the floor, nor does the frame after it (or a stream's first), whose
window reaches back into the silence: a room is learnt from its own noise alone."""
_FAR = 1 << 30


def _ease(x: np.ndarray | float) -> np.ndarray:
    """Smoothstep of x clipped to [0, 1]: ramps start and end at rest."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def relaxation(frames_since_speech, frames_to_speech) -> np.ndarray:
    """The share of the portrait's own parting shown, from the distances (frames, scalars or
    arrays) to the last speaking frame at or before a frame and to the next at or after it
    (``_FAR``: none)."""
    after = _ease((np.asarray(frames_since_speech) - IDLE_AFTER_FRAMES) / RELAX_FRAMES)
    before = _ease(np.asarray(frames_to_speech) / WAKE_FRAMES)
    return np.minimum(after, before)


def relaxation_track(speaking: np.ndarray) -> np.ndarray:
    """(T,) relaxation of every frame of a stream whose speaking frames (T,) bool are known."""
    speaking = np.asarray(speaking, bool)
    index = np.arange(len(speaking))
    last = np.maximum.accumulate(np.where(speaking, index, -_FAR))
    following = np.minimum.accumulate(np.where(speaking, index, _FAR)[::-1])[::-1]
    return relaxation(index - last, following - index).astype(np.float32)


@dataclass(frozen=True, slots=True)
class IdleMouth:
    """One stream's idle-mouth state, stepped once per MFCC frame.

    ``ahead`` holds whether each frame from the due one (``ahead[0]``, the frame the motion
    loop emits this step) to the newest heard is speech (lookahead + 1 flags). ``heard``
    returns the state after one more frame, so that a failed step writes nothing.
    """

    ahead: tuple[bool, ...]
    due: int  # index of the frame ``ahead[0]`` describes: the one this step emits, once >= 0
    last_speech: int = -_FAR  # index of the last due frame that was speech
    recent: tuple[float, ...] = ()  # c0 of the last FLOOR_FRAMES frames counted for the floor
    after_silence: bool = True  # the last frame heard was digital silence (or none was heard)

    @classmethod
    def start(cls, lookahead: int) -> "IdleMouth":
        if lookahead < WAKE_FRAMES:
            raise ValueError(
                f"the lips need {WAKE_FRAMES} frames of lookahead to close before speech; "
                f"the audio encoder has {lookahead}"
            )
        return cls(ahead=(False,) * (lookahead + 1), due=-lookahead - 1)

    def heard(self, log_energy: float | None) -> "IdleMouth":
        """The state after one more MFCC frame: its c0, or None past the end of the stream."""
        recent, after_silence = self.recent, self.after_silence
        speech = False
        if log_energy is not None and math.isfinite(log_energy):
            silent = log_energy < DIGITAL_SILENCE
            if not (silent or after_silence):
                recent = (*recent[-FLOOR_FRAMES + 1 :], float(log_energy))
            warm = len(recent) >= FLOOR_WARMUP_FRAMES
            floor = max(FLOOR_LOWEST, min(recent)) if warm else FLOOR_LOWEST
            speech = not silent and log_energy > floor + SPEECH_ABOVE_FLOOR
            after_silence = silent
        ahead = (*self.ahead[1:], speech)
        due = self.due + 1
        last = due if ahead[0] and due >= 0 else self.last_speech
        return IdleMouth(ahead, due, last, recent, after_silence)

    @property
    def relaxation(self) -> float:
        """The relaxation of the due frame ``ahead[0]``."""
        upcoming = next((i for i, s in enumerate(self.ahead) if s), _FAR)
        return float(relaxation(self.due - self.last_speech, upcoming))


def audio_relaxation(log_energy: np.ndarray, lookahead: int) -> np.ndarray:
    """(T,) relaxation of every frame of a whole stream as the server steps it, from its MFCC
    c0 (T,) and the audio encoder's lookahead."""
    idle = IdleMouth.start(lookahead)
    out = []
    for value in [*np.asarray(log_energy, np.float64), *[None] * lookahead]:
        idle = idle.heard(value)
        if idle.due >= 0:
            out.append(idle.relaxation)
    return np.array(out, np.float32)


def mouth_parting(landmarks0: np.ndarray) -> np.ndarray:
    """(110, 3) the portrait's own rest minus that rest with its lips closed (zero for a
    closed mouth)."""
    rest = np.asarray(landmarks0, np.float64)
    return (rest - closed_mouth(rest)).astype(np.float32)
