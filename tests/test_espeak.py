"""espeak-ng's own voices with phone timing from the library's events."""

import ctypes.util
import shutil

import numpy as np
import pytest

from spacelive.training.alignment import AlignmentError
from spacelive.training.espeak import ipa_to_arpabet, speak

pytestmark = pytest.mark.skipif(
    not (shutil.which("espeak-ng") or ctypes.util.find_library("espeak-ng")),
    reason="espeak-ng not installed",
)


@pytest.mark.parametrize(
    ("ipa", "arpabet"),
    [("p", "P"), ("ˈaɪ", "AY"), ("iː", "IY"), ("ɑ̃", "AA"), ("ɛ̃", "EH"), ("tʃ", "CH"), ("ʁ", "R")],
)
def test_ipa_maps_to_the_phone_with_the_same_lips(ipa, arpabet):
    assert ipa_to_arpabet(ipa) == arpabet


def test_an_unknown_symbol_is_an_alignment_error():
    with pytest.raises(AlignmentError, match="unknown espeak-ng phoneme"):
        ipa_to_arpabet("☃")


def test_phone_times_follow_the_audio():
    """Bilabial closures are quiet and open vowels loud, at the times the events report."""
    samples, rate, phones = speak("en-us+f2", "Papa, bob, mama, pop a bubble.")
    assert phones[0].start_s == 0.0 and phones[-1].end_s == pytest.approx(len(samples) / rate)
    assert all(a.end_s == b.start_s for a, b in zip(phones, phones[1:], strict=False))

    def contrast(shift_s):
        """RMS of open vowels over RMS of p/b, with the alignment moved by ``shift_s``."""

        def rms(names):
            parts = [
                samples[int((p.start_s + shift_s) * rate) : int((p.end_s + shift_s) * rate)]
                for p in phones
                if p.phoneme in names
            ]
            return np.sqrt(np.mean(np.concatenate(parts) ** 2))

        return rms({"AA", "AO", "AH"}) / rms({"P", "B"})

    assert contrast(0.0) > 2.5
    assert contrast(0.0) > max(contrast(-0.06), contrast(0.06))
    assert {"P", "B", "M", "AA"} <= {p.phoneme for p in phones}


def test_an_unknown_voice_is_refused():
    with pytest.raises(RuntimeError, match="no voice"):
        speak("xx-nonexistent", "hello")
