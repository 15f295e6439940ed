"""Phoneme alignments: mbrola .pho, flite -psdur output and TSV, all read into ARPAbet phones.

The teacher only needs how each phone shapes the mouth, so the SAMPA-style symbols of the
mbrola voices (American and British English, German, French, Spanish) map to the nearest
ARPAbet phone; silences become ``SIL``.
"""

import re
from dataclasses import dataclass
from pathlib import Path

# fmt: off
ARPABET = (
    "AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW",
    "AX", "B", "CH", "D", "DH", "DX", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R",
    "S", "SH", "T", "TH", "V", "W", "Y", "Z", "ZH", "SIL",
)
# fmt: on
SILENCES = {"SIL", "SP", "PAU", "SILENCE", "_", "H#"}
FORMATS = ("pho", "flite", "tsv")

# SAMPA (mbrola us*/en1/de1/fr1/es1) -> ARPAbet. Non-English sounds map to the English phone
# that shapes the lips the same way.
# fmt: off
_SAMPA = {
    "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "g": "G", "f": "F", "v": "V",
    "T": "TH", "D": "DH", "s": "S", "z": "Z", "S": "SH", "Z": "ZH", "h": "HH", "x": "HH",
    "C": "SH", "tS": "CH", "dZ": "JH", "ts": "S", "pf": "F", "m": "M", "n": "N", "N": "NG",
    "J": "N", "l": "L", "L": "L", "r": "R", "R": "R", "rr": "R", "4": "DX", "w": "W",
    "H": "W", "j": "Y", "jj": "Y", "B": "B", "G": "G", "?": "SIL",
    "i": "IY", "i:": "IY", "I": "IH", "e": "EY", "e:": "EY", "E": "EH", "E:": "EH",
    "{": "AE", "a": "AA", "a:": "AA", "A": "AA", "A:": "AA", "Q": "AA", "V": "AH",
    "O": "AO", "O:": "AO", "o": "OW", "o:": "OW", "U": "UH", "u": "UW", "u:": "UW",
    "y": "UW", "y:": "UW", "Y": "UH", "2": "UH", "2:": "UH", "9": "AH", "@": "AX",
    "6": "AX", "3": "ER", "3:": "ER", "r=": "ER", "l=": "L", "n=": "N", "m=": "M",
    "eI": "EY", "aI": "AY", "OI": "OY", "OY": "OY", "@U": "OW", "aU": "AW", "oU": "OW",
    "I@": "IH", "e@": "EH", "U@": "UH", "o/": "OW", "e~": "EH", "a~": "AA", "o~": "OW",
    "9~": "AH", "AI": "AY", "EI": "EY", "O2": "AO", "5": "L", "l/": "L", "l#": "L",
    "e/": "EH", "_": "SIL", "R2": "R", "l^": "L", "UR": "UH", "E2": "EH", "J^": "N",
    "ny": "N", "s2": "S", "oI": "OY", "eU": "OW", "i@": "IH",
}
# fmt: on


class AlignmentError(ValueError):
    """An alignment that cannot be read; the message names the line and the problem."""


@dataclass(frozen=True, slots=True)
class Phone:
    phoneme: str  # ARPAbet, no stress digit; "SIL" for silence
    start_s: float
    end_s: float


def _arpabet(symbol: str, where: str) -> str:
    symbol = symbol.strip()
    upper = re.sub(r"[0-2]$", "", symbol.upper())
    if upper in SILENCES:
        return "SIL"
    if upper in ARPABET:
        return upper
    raise AlignmentError(f"{where}: unknown phoneme {symbol!r}; use ARPAbet (CMU) symbols")


def _sampa(symbol: str, where: str) -> str:
    base = symbol.removesuffix("_h")  # aspiration does not change the lips
    plain = base.rstrip("~:*")  # nasal, long and stressed variants
    # ... and a vowel with a glottal onset ("?I"): the lips shape the vowel.
    vowel = plain[1:] if plain.startswith("?") and len(plain) > 1 else plain
    for candidate in (base, plain, plain.lower(), vowel):
        if candidate in _SAMPA:
            return _SAMPA[candidate]
    raise AlignmentError(f"{where}: unknown mbrola phoneme {symbol!r}")


def parse_pho(text: str) -> list[Phone]:
    """mbrola .pho: one ``phoneme duration_ms [pitch points]`` per line; ';' comments."""
    phones, t = [], 0.0
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split(";", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        try:
            duration = float(fields[1]) / 1000
        except (IndexError, ValueError):
            raise AlignmentError(
                f"line {number}: expected 'phoneme duration_ms', got {line!r}"
            ) from None
        if duration < 0:
            raise AlignmentError(f"line {number}: negative duration")
        phones.append(Phone(_sampa(fields[0], f"line {number}"), t, t + duration))
        t += duration
    return merge_silences(phones)


def parse_flite(text: str) -> list[Phone]:
    """flite ``-psdur`` output: ``phone:end_time`` items (seconds), whitespace separated."""
    phones, t = [], 0.0
    for item in text.split():
        name, _, end = item.rpartition(":")
        try:
            end_s = float(end)
        except ValueError:
            raise AlignmentError(f"expected 'phone:end_seconds', got {item!r}") from None
        if not name or end_s < t:
            raise AlignmentError(f"{item!r}: missing phone or time going backwards")
        phones.append(Phone(_arpabet(name, repr(item)), t, end_s))
        t = end_s
    return merge_silences(phones)


def parse_tsv(text: str) -> list[Phone]:
    """TSV with columns ``phoneme start_s end_s`` (a header line is allowed)."""
    phones = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if number == 1 and fields[0].lower() in ("phoneme", "phone"):
            continue
        try:
            start, end = float(fields[1]), float(fields[2])
        except (IndexError, ValueError):
            raise AlignmentError(
                f"line {number}: expected 'phoneme start_s end_s', got {line!r}"
            ) from None
        if end < start:
            raise AlignmentError(f"line {number}: ends before it starts")
        phones.append(Phone(_arpabet(fields[0], f"line {number}"), start, end))
    return merge_silences(sorted(phones, key=lambda p: p.start_s))


def merge_silences(phones: list[Phone]) -> list[Phone]:
    """Drop empty phones and join neighbouring silences."""
    out: list[Phone] = []
    for phone in phones:
        if phone.end_s <= phone.start_s:
            continue
        if out and phone.phoneme == "SIL" and out[-1].phoneme == "SIL":
            out[-1] = Phone("SIL", out[-1].start_s, phone.end_s)
        else:
            out.append(phone)
    return out


def read_alignment(path: Path, format: str) -> list[Phone]:
    """Read an alignment file in one of FORMATS."""
    parsers = {"pho": parse_pho, "flite": parse_flite, "tsv": parse_tsv}
    if format not in parsers:
        raise AlignmentError(
            f"unknown alignment format {format!r}; use one of {', '.join(FORMATS)}"
        )
    return parsers[format](Path(path).read_text())
