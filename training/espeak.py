"""espeak-ng's own voices, with exact phone timing from the library's phoneme events.

The command line only reports timing for mbrola voices, so this drives ``libespeak-ng``
through ctypes in synchronous mode: the synthesis callback receives the audio and a phoneme
event (IPA symbol, audio position) at the start of every phone, and an empty event at every
pause. The IPA symbols map to the ARPAbet phone that shapes the lips the same way.

One process-wide engine: libespeak-ng keeps global state and is not thread-safe, so calls
are serialized with a lock.
"""

import ctypes
import re
import threading
import unicodedata

import numpy as np

from spacelive.training.alignment import AlignmentError, Phone, merge_silences

LIBRARY = "libespeak-ng.so.1"
_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS, _INITIALIZE_PHONEME_IPA = 0x0001, 0x0002
_EVENT_END_OF_LIST, _EVENT_PHONEME = 0, 7
_PARAMETER_RATE, _PARAMETER_PITCH, _PARAMETER_RANGE = 1, 3, 4
DEFAULT_RATE_WPM = 175
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")

# IPA (espeak-ng, en/de/fr/es) -> ARPAbet. Length and stress marks are stripped first;
# non-English sounds map to the English phone with the same lip shape.
# fmt: off
_IPA = {
    "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "ɡ": "G", "g": "G", "f": "F", "v": "V",
    "θ": "TH", "ð": "DH", "s": "S", "z": "Z", "ʃ": "SH", "ʒ": "ZH", "h": "HH", "x": "HH",
    "χ": "HH", "ç": "SH", "tʃ": "CH", "dʒ": "JH", "ts": "S", "pf": "F", "m": "M", "n": "N",
    "ŋ": "NG", "ɲ": "N", "l": "L", "ʎ": "L", "ɫ": "L", "ɹ": "R", "r": "R", "ɾ": "DX",
    "ʁ": "R", "ʀ": "R", "w": "W", "ɥ": "W", "j": "Y", "ʝ": "Y", "β": "B", "ɣ": "G",
    "ʔ": "SIL", "ɐ": "AH", "i": "IY", "ɪ": "IH", "e": "EY", "ɛ": "EH", "æ": "AE",
    "a": "AA", "ɑ": "AA", "ɒ": "AA", "ʌ": "AH", "ɔ": "AO", "o": "OW", "ʊ": "UH", "u": "UW",
    "y": "UW", "ʏ": "UH", "ø": "UH", "œ": "AH", "ə": "AX", "ɜ": "ER", "ɚ": "ER",
    "ᵻ": "IH", "ɵ": "UH", "ɑ̃": "AA", "ɛ̃": "EH", "ɔ̃": "OW", "œ̃": "AH",
    "eɪ": "EY", "aɪ": "AY", "ɔɪ": "OY", "ɔø": "OY", "oʊ": "OW", "əʊ": "OW", "aʊ": "AW",
    "ʉ": "UW", "ʍ": "W", "ʌʉ": "OW", "əɹ": "ER", "ʌɹ": "ER",
    "ɪə": "IH", "eə": "EH", "ʊə": "UH", "ɛɹ": "EH", "ɑɹ": "AA", "ɔɹ": "AO", "ɪɹ": "IH",
    "ʊɹ": "UH", "aɪə": "AY", "aʊə": "AW", "iə": "IY", "əl": "L", "ɛɪ": "EY", "ɛə": "EH",
}
# fmt: on
_MARKS = "ːˑˈˌ‿̯̩̆-#"  # length, stress, linking, non-syllabic, syllabic
_CONTINUES = re.compile(r"^(\(\w+\)|\?\?|ʲ)$")
"""Events that are not a phone of their own (a language switch, an unknown mark,
palatalization): the previous phone goes on."""
SHORTEST_PAUSE_S = 0.08
"""espeak-ng marks short word-boundary pauses (about 40 ms) whose audio is still the
neighbouring phones; only longer empty events are silence."""


def ipa_to_arpabet(symbol: str) -> str:
    """One espeak-ng phoneme event (IPA) -> ARPAbet. Raises AlignmentError when unknown."""
    core = "".join(c for c in unicodedata.normalize("NFC", symbol) if c not in _MARKS)
    if core in _IPA:
        return _IPA[core]
    stripped = unicodedata.normalize("NFD", core)
    base = "".join(c for c in stripped if not unicodedata.combining(c))
    if base in _IPA:
        return _IPA[base]
    if base[:2] in _IPA:  # a diphthong or cluster espeak spells in one event: its onset
        return _IPA[base[:2]]
    if base[:1] in _IPA:
        return _IPA[base[:1]]
    raise AlignmentError(f"unknown espeak-ng phoneme {symbol!r}")


class _Id(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):  # espeak_EVENT in speak_lib.h
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _Id),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class _Engine:
    def __init__(self) -> None:
        self.lib = ctypes.CDLL(LIBRARY)
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA
        self.rate = self.lib.espeak_Initialize(_OUTPUT_SYNCHRONOUS, 0, None, options)
        if self.rate <= 0:
            raise RuntimeError("libespeak-ng failed to initialize (is espeak-ng-data installed?)")
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[int, str]] = []
        self._callback = _Callback(self._on_synth)  # kept alive as long as the engine
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lock = threading.Lock()

    def _on_synth(self, wav, count, events) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, (count,)).copy())
        i = 0
        while events[i].type != _EVENT_END_OF_LIST:
            if events[i].type == _EVENT_PHONEME:
                symbol = events[i].id.string.decode("utf-8", "replace")
                self.events.append((events[i].audio_position, symbol))
            i += 1
        return 0

    def speak(self, voice: str, text: str, rate_wpm: int, pitch: int) -> tuple[np.ndarray, list]:
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise RuntimeError(f"espeak-ng has no voice {voice!r}")
            self.lib.espeak_SetParameter(_PARAMETER_RATE, rate_wpm, 0)
            self.lib.espeak_SetParameter(_PARAMETER_PITCH, pitch, 0)
            self.chunks, self.events = [], []
            data = text.encode()
            if self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 0, None, None) != 0:
                raise RuntimeError(f"espeak-ng could not synthesize {text[:40]!r}")
            self.lib.espeak_Synchronize()
            chunks, events = self.chunks, self.events
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return audio.astype(np.float64) / 32768.0, events


_engine: _Engine | None = None
_engine_lock = threading.Lock()


def speak(
    voice: str, text: str, rate_wpm: int = DEFAULT_RATE_WPM, pitch: int = 50
) -> tuple[np.ndarray, int, list[Phone]]:
    """Synthesize ``text`` with an espeak-ng voice (e.g. ``en-us+f3``): (float samples,
    sample rate, alignment in ARPAbet). Pauses of SHORTEST_PAUSE_S or longer and the stretch
    before the first phone are silence; each phone ends where the next event begins."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Engine()
    samples, events = _engine.speak(voice, text, rate_wpm, pitch)
    duration = len(samples) / _engine.rate
    starts = [min(ms / 1000, duration) for ms, _ in events] + [duration]
    phones = [Phone("SIL", 0.0, starts[0])]
    for (_, symbol), start, end in zip(events, starts, starts[1:], strict=False):
        if _CONTINUES.match(symbol) or (not symbol and end - start < SHORTEST_PAUSE_S):
            phones[-1] = Phone(phones[-1].phoneme, phones[-1].start_s, end)
        else:
            phones.append(Phone(ipa_to_arpabet(symbol) if symbol else "SIL", start, end))
    return samples, _engine.rate, merge_silences(phones)
