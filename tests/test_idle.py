"""The idle mouth: when a portrait with parted lips shows its own mouth."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacelive.idle import (
    IDLE_AFTER_FRAMES,
    RELAX_FRAMES,
    WAKE_FRAMES,
    IdleMouth,
    audio_relaxation,
    relaxation_track,
)

LOUD, QUIET = -2.0, -36.0  # MFCC c0 of speech and of digital silence


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
    state gives each frame the relaxation the teacher gives it knowing the whole stream."""
    flags = np.array(speaking)
    np.testing.assert_array_equal(
        audio_relaxation(_energy(flags), lookahead), relaxation_track(flags)
    )


def test_speech_is_judged_against_the_rooms_noise_floor():
    """A room's hiss (-65 dBFS) is learnt as its floor within two seconds; from then on
    the hiss is silence and a voice over it is speech."""
    rng = np.random.default_rng(0)
    hiss = -8.0 + 0.3 * rng.standard_normal(300)
    first = audio_relaxation(hiss, 4)
    learnt = int(np.flatnonzero(first < 1).max(initial=-1)) + 1
    assert learnt <= 60 + IDLE_AFTER_FRAMES + RELAX_FRAMES and first[learnt:].min() == 1
    voiced = hiss.copy()
    voiced[200:230] = -2.0
    idle = audio_relaxation(voiced, 4)
    assert idle[learnt : 200 - WAKE_FRAMES].min() == 1 and idle[200:230].max() == 0


def test_a_failed_step_changes_nothing():
    before = IdleMouth.start(4)
    after = before.heard(LOUD)
    assert before == IdleMouth.start(4) and after != before


def test_too_little_lookahead_is_refused():
    with pytest.raises(ValueError, match="lookahead"):
        IdleMouth.start(WAKE_FRAMES - 1)


def test_a_dropout_of_digital_silence_does_not_sink_the_floor():
    """A muted track (c0 -36) for a second, then a room at -65 dBFS: the room is learnt as
    quickly as from the start, and the portrait goes idle."""
    rng = np.random.default_rng(1)
    stream = np.concatenate([np.full(30, QUIET), -8.0 + 0.3 * rng.standard_normal(300)])
    idle = audio_relaxation(stream, 4)
    assert idle[30 + 60 + IDLE_AFTER_FRAMES + RELAX_FRAMES :].min() == 1
