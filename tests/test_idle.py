"""The idle mouth: when a portrait with parted lips shows its own mouth."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from spacelive.checks.bench import speech_like
from spacelive.media.audio import offline_mfcc
from spacelive.motion.idle import (
    FLOOR_FRAMES,
    FLOOR_WARMUP_FRAMES,
    IDLE_AFTER_FRAMES,
    RELAX_FRAMES,
    WAKE_FRAMES,
    IdleMouth,
    audio_relaxation,
    relaxation_track,
)

LOUD, ROOM = -2.0, -8.5  # MFCC c0 of speech and of a quiet room (about -67 dBFS)
FIRST_IDLE = FLOOR_WARMUP_FRAMES - 1 + IDLE_AFTER_FRAMES + RELAX_FRAMES
"""The frame from which a stream of a noisy room alone shows the portrait's own lips: its
warm-up frames may count as speech."""


def _room(dbfs: float, seconds: float, seed: int = 0) -> np.ndarray:
    """White noise at ``dbfs`` (16 kHz float32)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(16_000 * seconds)) * 10 ** (dbfs / 20)).astype(np.float32)


def _energy(speaking: np.ndarray) -> np.ndarray:
    return np.where(speaking, LOUD, ROOM)


def test_idle_before_speech_closed_while_speaking_and_idle_again_after_a_second():
    speaking = np.zeros(120, bool)
    speaking[20:40] = True  # a word
    speaking[50:60] = True  # another, after a 10-frame pause
    idle = relaxation_track(speaking)
    assert idle[: 20 - WAKE_FRAMES].min() == 1  # her own mouth until just before the voice
    assert 0 < idle[20 - WAKE_FRAMES + 1] < 1 and idle[20] == 0  # closing ahead of it
    assert idle[20 : 60 + IDLE_AFTER_FRAMES].max() == 0  # the pause stays closed
    assert 0 < idle[60 + IDLE_AFTER_FRAMES + RELAX_FRAMES // 2] < 1  # parting again
    assert idle[60 + IDLE_AFTER_FRAMES + RELAX_FRAMES :].min() == 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=150), st.integers(WAKE_FRAMES, 8))
@example([True] * 150, WAKE_FRAMES)
def test_the_server_decides_as_the_teacher_does_from_the_same_frames(speaking, lookahead):
    """Stepped one frame at a time with ``lookahead`` frames heard ahead, the server's idle
    state gives each frame the relaxation the teacher gives it knowing the whole stream.
    Speech dips to the room's level at least once in every noise-floor window, as it does
    (the first window counts from the end of the warm-up)."""
    flags = np.array(speaking)
    flags[FLOOR_WARMUP_FRAMES - 1 :: FLOOR_FRAMES] = False
    np.testing.assert_array_equal(
        audio_relaxation(_energy(flags), lookahead), relaxation_track(flags)
    )


@pytest.mark.parametrize("dbfs", [-65, -55, -45])
def test_a_rooms_noise_is_learnt_as_its_floor_and_a_voice_over_it_is_speech(dbfs):
    """In a room's hiss alone the portrait shows its own lips once the stream has warmed up
    and a second has passed; a voice over the hiss closes them until a second after it."""
    hiss = _room(dbfs, 6.0)
    alone = audio_relaxation(offline_mfcc(hiss)[:, 0], 4)
    assert alone[FIRST_IDLE:].min() == 1
    voice = speech_like(1.0, seed=3) * 0.3
    voiced = hiss.copy()
    voiced[16_000 * 3 : 16_000 * 4] += voice
    idle = audio_relaxation(offline_mfcc(voiced)[:, 0], 4)
    speaking = slice(90 + 3, 120 - 3)  # the voice, its ramps aside
    assert idle[FIRST_IDLE : 90 - WAKE_FRAMES - 3].min() == 1 and idle[speaking].max() == 0
    assert idle[120 + IDLE_AFTER_FRAMES + RELAX_FRAMES + 3 :].min() == 1


@pytest.mark.parametrize("hiss_dbfs", [None, -60, -45])
def test_a_voice_from_the_first_frame_is_speech(hiss_dbfs):
    """A clip that starts mid-word (an offline render), clean or over a room's hiss, closes
    the lips at once."""
    audio = speech_like(1.0, seed=4) * 0.3
    if hiss_dbfs is not None:
        audio = audio + _room(hiss_dbfs, 1.0)
    idle = audio_relaxation(offline_mfcc(audio)[:, 0], 4)
    assert idle[:WAKE_FRAMES].max() < 1 and idle[WAKE_FRAMES:25].max() == 0


def test_too_little_lookahead_is_refused():
    with pytest.raises(ValueError, match="lookahead"):
        IdleMouth.start(WAKE_FRAMES - 1)


@pytest.mark.parametrize("seconds", [0.1, 1.0])
def test_digital_silence_first_delays_nothing(seconds):
    """A client's pre-roll or a muted start, then a room at -55 dBFS: the room is learnt from
    its own noise, as quickly as from a stream's first frame."""
    muted = int(30 * seconds)
    stream = np.concatenate([np.zeros(int(16_000 * seconds), np.float32), _room(-55, 6.0)])
    idle = audio_relaxation(offline_mfcc(stream)[:, 0], 4)
    assert idle[: muted - WAKE_FRAMES].min(initial=1) == 1  # idle while muted
    assert idle[muted + 1 + FIRST_IDLE :].min() == 1


def test_a_dropout_of_digital_silence_does_not_unlearn_the_room():
    """A room at -55 dBFS, a muted second, the room again: the portrait stays idle."""
    stream = np.concatenate([_room(-55, 4.0), np.zeros(16_000, np.float32), _room(-55, 3.0, 1)])
    idle = audio_relaxation(offline_mfcc(stream)[:, 0], 4)
    assert idle[FIRST_IDLE:].min() == 1
