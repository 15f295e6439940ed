"""Alignments and the face-motion teacher."""

import shutil
import subprocess

import numpy as np
import pytest

from spacelive.face.landmarks import closed_mouth
from spacelive.training.alignment import (
    AlignmentError,
    Phone,
    parse_flite,
    parse_pho,
    parse_tsv,
)
from spacelive.training.teacher import articulation, landmark_targets

PHO = "p_h\t94\ni\t45\t 0 232 80 215\n_\t55\n\nb\t65\nO\t55\nr=\t42\n; comment\n"


def test_pho_is_read_into_arpabet_with_exact_timing():
    phones = parse_pho(PHO)
    assert [p.phoneme for p in phones] == ["P", "IY", "SIL", "B", "AO", "ER"]
    assert phones[1] == Phone("IY", 0.094, pytest.approx(0.139))
    assert phones[-1].end_s == pytest.approx(0.356)


def test_flite_psdur_is_read():
    phones = parse_flite("pau:0.220 p:0.334 iy:0.454 t:0.513 pau:0.700")
    assert [p.phoneme for p in phones] == ["SIL", "P", "IY", "T", "SIL"]
    assert phones[2].start_s == pytest.approx(0.334) and phones[2].end_s == pytest.approx(0.454)


def test_tsv_with_header_stress_and_silence_names():
    phones = parse_tsv(
        "phoneme\tstart_s\tend_s\nsil\t0\t0.2\nAA1\t0.2\t0.4\nsp\t0.4\t0.5\npau\t0.5\t0.6\n"
    )
    assert [p.phoneme for p in phones] == ["SIL", "AA", "SIL"]
    assert phones[-1].start_s == 0.4 and phones[-1].end_s == 0.6


@pytest.mark.parametrize(
    ("parser", "text", "message"),
    [
        (parse_pho, "p\tlong\n", "line 1: expected 'phoneme duration_ms'"),
        (parse_pho, "qq\t40\n", "unknown mbrola phoneme 'qq'"),
        (parse_flite, "p:0.3 iy:0.2", "backwards"),
        (parse_tsv, "AA\t0.5\t0.2\n", "ends before it starts"),
        (parse_tsv, "XX\t0\t1\n", "unknown phoneme 'XX'"),
    ],
)
def test_bad_alignments_are_named(parser, text, message):
    with pytest.raises(AlignmentError, match=message):
        parser(text)


def _phones(*items):
    out, t = [], 0.0
    for name, duration in items:
        out.append(Phone(name, t, t + duration))
        t += duration
    return out


def _at(phones, name, landmarks, which=0):
    phone = [p for p in phones if p.phoneme == name][which]
    return landmarks[int(round((phone.start_s + phone.end_s) / 2 * 30))]


@pytest.fixture(scope="module")
def identity(avatar):
    return closed_mouth(avatar.landmarks0)  # the astronaut smiles with her teeth showing


def gap(frame):
    return float(frame[66, 1] - frame[62, 1])


def test_mouth_shapes_make_phonetic_sense(identity):
    phones = _phones(
        ("SIL", 0.3),
        ("B", 0.08),
        ("AA", 0.2),
        ("M", 0.08),
        ("IY", 0.15),
        ("F", 0.1),
        ("UW", 0.2),
        ("SIL", 0.3),
    )
    frames = landmark_targets(phones, identity)
    assert len(frames) == int(np.ceil(phones[-1].end_s * 30))
    rest = identity
    assert abs(gap(_at(phones, "SIL", frames))) < 0.005  # silence rests closed
    assert abs(gap(_at(phones, "B", frames))) < 0.01  # bilabials close the lips
    assert abs(gap(_at(phones, "M", frames))) < 0.01
    assert gap(_at(phones, "AA", frames)) > 0.2  # open vowels drop the jaw
    assert gap(_at(phones, "AA", frames)) > 2 * gap(_at(phones, "IY", frames))
    uw = _at(phones, "UW", frames)  # rounded vowels protrude and narrow
    assert uw[48:68, 2].mean() > rest[48:68, 2].mean() + 0.05
    assert uw[54, 0] - uw[48, 0] < rest[54, 0] - rest[48, 0] - 0.02
    f = _at(phones, "F", frames)  # lower lip under the upper teeth: up, back, not closed
    assert 0.005 < gap(f) < 0.05
    assert f[57, 2] < rest[57, 2]


def test_lips_anticipate_rounding(identity):
    phones = _phones(("SIL", 0.3), ("T", 0.1), ("UW", 0.25), ("SIL", 0.3))
    protrude = articulation(phones)["protrude"]
    uw_start = int(0.4 * 30)
    assert protrude[uw_start - 2] > 0.1  # rounding starts before the vowel
    assert protrude[int(0.2 * 30)] < 0.05  # but not in the silence well before


def test_emotion_moves_the_mouth_corners(identity):
    phones = _phones(("SIL", 0.5))
    happy = landmark_targets(phones, identity, np.eye(8)[1])
    sad = landmark_targets(phones, identity, np.eye(8)[2])
    assert happy[0, 48, 1] < sad[0, 48, 1]  # corners up (y down is positive)


@pytest.mark.skipif(
    not shutil.which("espeak-ng") or not shutil.which("mbrola"),
    reason="espeak-ng and mbrola are not installed",
)
def test_real_espeak_mbrola_timing(identity, tmp_path):
    pho = subprocess.run(
        ["espeak-ng", "-v", "mb-us1", "-q", "--pho", "Bob saw a fish"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    phones = parse_pho(pho)
    assert phones[0].phoneme == "B" and phones[-1].phoneme == "SIL"
    frames = landmark_targets(phones, identity)
    assert abs(gap(_at(phones, "B", frames))) < 0.01
    # A 64 ms vowel between two closures: the jaw cannot open fully, but still ten times the
    # closed gap.
    assert gap(_at(phones, "AA", frames)) > 0.1


def test_teach_command_writes_targets(tmp_path):
    from spacelive.cli import main

    alignment = tmp_path / "a.tsv"
    alignment.write_text("sil\t0\t0.3\nM\t0.3\t0.4\nAA1\t0.4\t0.6\nsil\t0.6\t1.0\n")
    out = tmp_path / "targets.npz"
    assert (
        main(
            [
                "teach",
                "--alignment",
                str(alignment),
                "--format",
                "tsv",
                "-o",
                str(out),
                "--emotion",
                "happy=0.5",
            ]
        )
        == 0
    )
    targets = np.load(out)
    assert targets["landmarks"].shape == (30, 110, 3)
    assert list(targets["phonemes"]) == ["SIL", "M", "AA", "SIL"]
    assert targets["emotion"][1] == 0.5


def test_silence_rests_closed_and_an_idle_portrait_gets_its_own_mouth_back(avatar):
    """The astronaut smiles with her teeth showing: her own mouth before the first word, lips
    closed between words, and her own mouth again after a second and a half of silence."""
    phones = _phones(("SIL", 0.5), ("AA", 0.2), ("SIL", 0.4), ("AA", 0.2), ("SIL", 2.0))
    frames = landmark_targets(phones, avatar.landmarks0)
    np.testing.assert_allclose(frames[0], avatar.landmarks0, atol=1e-4)
    assert gap(frames[0]) > 0.1  # her smile shows teeth at rest
    pause = frames[int(30 * 0.8) : int(30 * 1.05)]  # between the two vowels
    assert max(gap(f) for f in pause) < 0.02
    np.testing.assert_allclose(frames[-1], avatar.landmarks0, atol=1e-4)


def test_the_cli_reports_a_bad_alignment_without_a_traceback(tmp_path, capsys):
    from spacelive.cli import main

    bad = tmp_path / "utt.tsv"
    bad.write_text("phoneme\tstart_s\tend_s\nAA\t0.0\t0.2\nQQ\t0.2\t0.3\n")
    code = main(["teach", "--alignment", str(bad), "--format", "tsv", "-o", str(tmp_path / "t")])
    assert code == 2
    assert "line 3: unknown phoneme 'QQ'" in capsys.readouterr().err
    assert not (tmp_path / "t.npz").exists()


@pytest.mark.parametrize(
    "symbol, arpabet",
    [
        ("?I", "IH"),
        ("i*", "IY"),
        ("a~", "AA"),
        ("R2", "R"),
        ("l^", "L"),
        ("t_h", "T"),
        ("E:", "EH"),
    ],
)
def test_voice_specific_mbrola_symbols_map_by_their_lips(symbol, arpabet):
    """Glottal onsets, stress marks, nasal and long variants and the symbols of the German,
    Spanish and Latin American mbrola voices."""
    (phone,) = [p for p in parse_pho(f"{symbol} 80\n") if p.phoneme != "SIL"]
    assert phone.phoneme == arpabet


def test_the_mouth_moves_like_lips_not_like_a_phone_strip(identity):
    """Articulator inertia: the inner-lip gap of running speech changes smoothly from frame to
    frame (one-frame autocorrelation about 0.88 on speech, 0.75 for the bare dominance
    blend), yet every bilabial still closes."""
    rng = np.random.default_rng(3)
    names = ["AA", "IY", "UW", "EH", "T", "S", "K", "N", "L", "R", "P", "B", "M", "F"]
    phones = _phones(
        ("SIL", 0.3), *((str(rng.choice(names)), float(rng.uniform(0.04, 0.14))) for _ in range(80))
    )
    frames = landmark_targets(phones, identity)
    g = frames[:, 66, 1] - frames[:, 62, 1]
    assert np.corrcoef(g[1:], g[:-1])[0, 1] > 0.8
    for phone in phones:
        if phone.phoneme in ("P", "B", "M") and phone.end_s - phone.start_s >= 0.06:
            centre = frames[int(round((phone.start_s + phone.end_s) / 2 * 30))]
            assert abs(gap(centre)) < 0.01
