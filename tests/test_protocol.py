"""The wire format."""

import pytest

from spacelive.media.audio_input import AudioSpec
from spacelive.media.video import EncodedFrame
from spacelive.server.protocol import (
    Control,
    End,
    ProtocolError,
    Start,
    frame_message,
    parse_client_text,
    parse_frame_message,
)


def test_frame_message_round_trip():
    frame = EncodedFrame(123_456, True, b"\x00\x00\x00\x01\x65abc")
    message = frame_message(frame)
    assert message[:8] == bytes([1, 1, 0, 0]) + (123_456).to_bytes(4, "little")
    assert parse_frame_message(message) == frame
    keypoints = EncodedFrame(7, False, b"\x01\x02", kind=2)
    assert parse_frame_message(frame_message(keypoints)) == keypoints
    with pytest.raises(ProtocolError, match="kind 9"):
        parse_frame_message(bytes([9]) + bytes(7))


def test_client_messages_parse():
    start = parse_client_text(
        '{"type": "start", "avatar_id": "default", "audio": {"sample_rate": 48000},'
        ' "controls": {"emotion": {"happy": 0.7}}}'
    )
    assert isinstance(start, Start) and start.audio.sample_rate == 48_000
    assert start.controls.emotion_vector()[1] == 0.7
    assert isinstance(parse_client_text('{"type": "control", "emotion": {}}'), Control)
    assert isinstance(parse_client_text('{"type": "end"}'), End)
    control = parse_client_text(
        '{"type": "control", "blink": true, "gaze": [0.2, -0.1], "blinks_per_minute": 0}'
    )
    update = control.update()
    assert update.blink and update.gaze == (0.2, -0.1) and update.blinks_per_minute == 0
    assert update.emotion is None  # left out: unchanged
    opus = parse_client_text('{"type": "start", "audio": {"encoding": "opus", "pre_skip": 312}}')
    assert isinstance(opus, Start)
    assert opus.audio.spec() == AudioSpec("opus", 48_000, 1, "packets", 312)
    assert isinstance(start, Start) and start.audio.spec() == AudioSpec("pcm_s16le", 48_000)


@pytest.mark.parametrize(
    ("text", "code", "words"),
    [
        ("{not json", "invalid_json", "not valid JSON"),
        ('{"type": "dance"}', "unknown_message", "'dance'"),
        ("[1, 2]", "unknown_message", "list"),
        ('{"type": "start", "audio": {"sample_rate": 8000}}', "unsupported_sample_rate", "8000"),
        ('{"type": "start", "colour": "red"}', "invalid_message", "colour"),
        ('{"type": "control", "emotion": {"smug": 1}}', "invalid_message", "smug"),
        ('{"type": "control", "emotion": {"happy": 3}}', "invalid_message", "less than or equal"),
        ('{"type": "start", "audio": {"encoding": "mp3"}}', "invalid_message", "pcm_s16le"),
        ('{"type": "control", "gaze": [2, 0]}', "invalid_message", "less than or equal"),
        (
            '{"type": "start", "audio": {"encoding": "opus", "sample_rate": 16000}}',
            "invalid_message",
            "declare sample_rate 48000",
        ),
        ('{"type": "start", "audio": {"container": "ogg"}}', "invalid_message", "Opus audio only"),
        ('{"type": "start", "audio": {"channels": 2}}', "invalid_message", "mono"),
        (
            '{"type": "start", "audio": {"encoding": "opus", "container": "webm"}}',
            "invalid_message",
            "'packets' or 'ogg'",
        ),
        ('{"type": "control", "gaze": [0.1]}', "invalid_message", "gaze"),
        ('{"type": "control", "blinks_per_minute": -1}', "invalid_message", "greater than"),
    ],
)
def test_bad_messages_name_the_problem(text, code, words):
    with pytest.raises(ProtocolError) as info:
        parse_client_text(text)
    assert info.value.code == code
    assert words in info.value.message


def test_inline_portrait_must_be_base64():
    start = parse_client_text('{"type": "start", "portrait": "***"}')
    with pytest.raises(ProtocolError, match="base64"):
        start.portrait_bytes()


def test_gaze_trajectories_and_natural_gaze_parse_and_bad_ones_are_refused():
    control = parse_client_text(
        '{"type": "control", "saccades": true, "gaze_trajectory": '
        '[{"t": 0, "x": 0.1}, {"t": 1.5, "x": 0.4, "y": -0.2}]}'
    )
    update = control.update()
    assert update.saccades is True
    assert update.gaze_trajectory.times.tolist() == [0.0, 1.5]
    assert update.gaze_trajectory.points.tolist() == [[0.1, 0.0], [0.4, -0.2]]
    for bad, words in (
        ('[{"t": 1}, {"t": 0.5}]', "times must increase"),
        ('[{"t": 0, "x": 2}]', "less than or equal to 1"),
        ("[]", "at least 1"),
    ):
        with pytest.raises(ProtocolError) as error:
            parse_client_text(f'{{"type": "control", "gaze_trajectory": {bad}}}')
        assert words in error.value.message
