"""The idle mouth: when a portrait with parted lips shows its own mouth."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacelive.audio import offline_mfcc
from spacelive.bench import speech_like
from spacelive.idle import (
    FLOOR_FRAMES,
    FLOOR_WARMUP_FRAMES,
    IDLE_AFTER_FRAMES,
    RELAX_FRAMES,
    WAKE_FRAMES,
    IdleMouth,
    audio_relaxation,
    relaxation_track,
)

LOUD, QUIET = -2.0, -36.0  # MFCC c0 of speech and of digital silence
FIRST_IDLE = FLOOR_WARMUP_FRAMES + IDLE_AFTER_FRAMES + RELAX_FRAMES
"""The frame from which a stream of a room's noise alone shows the portrait's own lips."""


def _room(dbfs: float, seconds: float, seed: int = 0) -> np.ndarray:
    """White noise at ``dbfs`` (16 kHz float32)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(16_000 * seconds)) * 10 ** (dbfs / 20)).astype(np.float32)


def _energy(speaking: np.ndarray) -> np.ndarray:
    return np.where(speaking, LOUD, QUIET)


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
def test_the_server_decides_as_the_teacher_does_from_the_same_frames(speaking, lookahead):
    """Stepped one frame at a time with ``lookahead`` frames heard ahead, the server's idle
    state gives each frame the relaxation the teacher gives it knowing the whole stream.
    Speech dips (here: to silence) at least once in every noise-floor window, as it does."""
    flags = np.array(speaking)
    flags[FLOOR_FRAMES - 1 :: FLOOR_FRAMES] = False
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


def test_a_voice_from_the_first_frame_is_speech():
    """A clip that starts mid-word (an offline render) closes the lips at once."""
    idle = audio_relaxation(offline_mfcc(speech_like(1.0, seed=4) * 0.3)[:, 0], 4)
    assert idle[:WAKE_FRAMES].max() < 1 and idle[WAKE_FRAMES:25].max() == 0


def test_a_failed_step_changes_nothing():
    before = IdleMouth.start(4)
    after = before.heard(LOUD)
    assert before == IdleMouth.start(4) and after != before


def test_too_little_lookahead_is_refused():
    with pytest.raises(ValueError, match="lookahead"):
        IdleMouth.start(WAKE_FRAMES - 1)


def test_a_dropout_of_digital_silence_does_not_sink_the_floor():
    """A muted track for a second, then a room at -60 dBFS: the room is learnt as quickly as
    from the start, and the portrait goes idle."""
    stream = np.concatenate([np.zeros(16_000, np.float32), _room(-60, 6.0)])
    idle = audio_relaxation(offline_mfcc(stream)[:, 0], 4)
    assert idle[30 + FLOOR_FRAMES + IDLE_AFTER_FRAMES + RELAX_FRAMES :].min() == 1
