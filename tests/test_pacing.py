"""Real-time pacing and barge-in: a burst of audio plays out on the frame clock, with the idle
face between utterances; `clear` drops what is queued and says from which frame on."""

import asyncio
import json
import time

import numpy as np
import pytest
from websockets.sync.client import connect

from spacelive.checks.bench import speech_like
from spacelive.client.stream import Uplink, stream_audio
from spacelive.media.audio import pcm_s16le
from spacelive.media.audio_input import AudioSpec
from spacelive.media.video import EncodedFrame
from spacelive.server.protocol import WEBSOCKET_MAX_BYTES
from spacelive.stream.runner import Done, FrameAudio, StreamEvent, StreamRunner


@pytest.fixture(scope="module")
def runner(tiny_models):
    from spacelive.stream.engine import Engine, EngineConfig

    r = StreamRunner(Engine(EngineConfig(models=tiny_models)), workers=2)
    yield r
    r.close()


async def _collect(stream, on_frame=None):
    """Every item with its arrival time; ``on_frame(stream, frame)`` may act as frames come."""
    items, t0 = [], time.monotonic()
    async for item in stream:
        items.append((time.monotonic() - t0, item))
        if on_frame is not None and isinstance(item, EncodedFrame):
            await on_frame(stream, item)
    return items


def test_a_burst_plays_out_on_the_frame_clock(runner, avatar):
    async def scenario():
        stream = await runner.open_stream(avatar, pacing="realtime")
        await stream.push_audio(pcm_s16le(speech_like(1.5, seed=1)))  # all at once
        await stream.end()
        items = await _collect(stream)
        stream.close()
        return items

    items = asyncio.run(scenario())
    frames = [(t, i) for t, i in items if isinstance(i, EncodedFrame)]
    events = [i for _, i in items if isinstance(i, StreamEvent)]
    done = items[-1][1]
    assert isinstance(done, Done) and done.frames == len(frames)
    assert [f.frame_index for _, f in frames] == list(range(len(frames)))
    # 1.5 s of audio, plus the slots that passed before it was queued: paced, not a burst.
    assert len(frames) >= 45
    assert frames[-1][0] - frames[0][0] > 0.8 * (len(frames) - 1) / 30
    speaking = [e for e in events if e.kind == "speaking"]
    idle = [e for e in events if e.kind == "idle"]
    assert len(speaking) == 1 and len(idle) == 1 and speaking[0].frame < idle[0].frame
    order = [i for _, i in items]
    # Each event comes just before its frame; the idle at the end after the last frame.
    for event in speaking + idle:
        k = order.index(event)
        if event.frame < len(frames):
            after = order[k + 1]
            assert isinstance(after, EncodedFrame) and after.frame_index == event.frame
        else:
            assert event.frame == len(frames) and order[k - 1] is frames[-1][1]


def test_clear_drops_the_queue_and_the_stream_goes_on(runner, avatar):
    cleared_at: dict = {}

    async def on_frame(stream, frame):
        if frame.frame_index == 20:
            cleared_at["last"] = frame.frame_index
            cleared_at["k"] = stream.clear()
        if frame.frame_index == 50:
            await stream.push_audio(pcm_s16le(speech_like(0.3, seed=3)))  # plays normally
        if frame.frame_index == 70:
            await stream.end()

    async def scenario():
        stream = await runner.open_stream(avatar, pacing="realtime")
        await stream.push_audio(pcm_s16le(speech_like(6.0, seed=2)))
        items = await _collect(stream, on_frame)
        stream.close()
        return [i for _, i in items]

    order = asyncio.run(scenario())
    k = cleared_at["k"]
    assert cleared_at["last"] < k <= cleared_at["last"] + 10
    cleared = [i for i in order if isinstance(i, StreamEvent) and i.kind == "cleared"]
    assert [c.frame for c in cleared] == [k]
    # The answer comes at once: right after the frame that was being handled.
    position = order.index(cleared[0])
    assert order[position - 1].frame_index == cleared_at["last"]
    kinds = [(i.kind, i.frame) for i in order if isinstance(i, StreamEvent)]
    assert ("idle", k) in kinds
    speaking_again = [f for kind, f in kinds if kind == "speaking" and f > k]
    assert len(speaking_again) == 1 and speaking_again[0] > 50  # the audio after the clear
    frames = [i for i in order if isinstance(i, EncodedFrame)]
    assert [f.frame_index for f in frames] == list(range(len(frames)))
    assert order[-1].frames == len(frames) < 6 * 30  # the cleared 6 s never played


def test_clear_with_nothing_queued_still_answers_in_order(runner, avatar):
    async def scenario():
        stream = await runner.open_stream(avatar, pacing="realtime")
        first = stream.clear()
        await asyncio.sleep(0.1)
        second = stream.clear()
        await stream.end()
        items = [item async for item in stream]
        stream.close()
        return (first, second), items

    answers, items = asyncio.run(scenario())
    assert [(i.kind, i.frame) for i in items[:2]] == [
        ("cleared", answers[0]),
        ("cleared", answers[1]),
    ]
    assert answers[0] < answers[1] and isinstance(items[-1], Done)


def test_asap_clear_drops_the_rows_not_yet_stepped(tiny_models, avatar):
    from spacelive.stream.engine import Engine, EngineConfig

    runner = StreamRunner(Engine(EngineConfig(models=tiny_models)), workers=1, max_unsent=2)

    async def scenario():
        stream = await runner.open_stream(avatar)
        await stream.push_audio(pcm_s16le(speech_like(3.0, seed=4)))  # 90 rows, 2 frames out
        await asyncio.sleep(0.5)
        first = stream.clear()
        await stream.end()
        items = [item async for item in stream]
        stream.close()
        return first, items

    try:
        first, items = asyncio.run(scenario())
    finally:
        runner.close()
    frames = [i for i in items if isinstance(i, EncodedFrame)]
    assert first < 90 and items[-1].frames == len(frames)
    assert [f.frame_index for f in frames] == list(range(len(frames)))


def test_the_websocket_speaks_pacing_and_clear(live_server):
    pcm = pcm_s16le(speech_like(3.0, seed=5))
    with connect(live_server.ws_url, max_size=WEBSOCKET_MAX_BYTES) as ws:
        ws.send(json.dumps({"type": "start", "pacing": "realtime"}))
        assert json.loads(ws.recv())["type"] == "ready"
        for i in range(0, len(pcm), 32_000):
            ws.send(pcm[i : i + 32_000])
        frames, events, cleared = 0, [], None
        while True:
            message = ws.recv(timeout=30)
            if isinstance(message, bytes):
                frames += 1
                if frames == 15:
                    ws.send(json.dumps({"type": "clear"}))
                if frames == 40:
                    ws.send(json.dumps({"type": "end"}))
                continue
            event = json.loads(message)
            if event["type"] == "cleared":
                cleared = event["frame"]
            if event["type"] in ("speaking", "idle", "cleared"):
                events.append((event["type"], event["frame"]))
            if event["type"] == "done":
                break
        assert event["frames"] == frames < 90
        assert cleared is not None and 14 < cleared <= 14 + 10
        assert ("idle", cleared) in events and events[0][0] == "speaking"


def test_audio_out_gives_each_frame_its_slot_of_the_audio(runner, avatar):
    """Asap and paced: after each frame, the audio it shows; together, the audio sent (paced:
    with the silences the clock filled in), and the frames are those of a stream without it."""
    pcm = pcm_s16le(speech_like(1.0, rate=24_000, seed=6))
    sent = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768

    async def run(pacing: str, audio_out: bool):
        spec = AudioSpec(sample_rate=24_000)
        stream = await runner.open_stream(avatar, spec, pacing=pacing, audio_out=audio_out)
        for i in range(0, len(pcm), 4800):
            await stream.push_audio(pcm[i : i + 4800])
        await stream.end()
        items = [item async for item in stream]
        stream.close()
        return items

    plain = asyncio.run(run("asap", False))
    items = asyncio.run(run("asap", True))
    frames = [i for i in items if isinstance(i, EncodedFrame)]
    audio = [i for i in items if isinstance(i, FrameAudio)]
    assert [f.data for f in frames] == [f.data for f in plain if isinstance(f, EncodedFrame)]
    for k, frame in enumerate(frames):  # each frame's audio right after it
        after = items[items.index(frame) + 1]
        assert isinstance(after, FrameAudio) and after.frame_index == frame.frame_index == k
    assert all(a.samples.size == 800 for a in audio[:-1]) and audio[0].sample_rate == 24_000
    np.testing.assert_allclose(np.concatenate([a.samples for a in audio]), sent, atol=1e-6)

    paced = asyncio.run(run("realtime", True))
    slots = [i.samples for i in paced if isinstance(i, FrameAudio)]
    assert len(slots) == sum(isinstance(i, EncodedFrame) for i in paced)
    assert all(s.size == 800 for s in slots)
    played = np.concatenate(slots)
    start = int(np.flatnonzero(played)[0])
    np.testing.assert_allclose(played[start : start + sent.size], sent, atol=1e-6)
    assert not played[start + sent.size :].any()  # then silence


def test_the_websocket_sends_each_frames_audio(live_server):
    samples = speech_like(1.0, seed=7)
    result = asyncio.run(
        stream_audio(live_server.ws_url, Uplink.pcm(samples, 16_000), audio_out=True)
    )
    assert [k for k, _ in result.audio_out] == [f.frame_index for f in result.frames]
    pcm = np.concatenate([a for _, a in result.audio_out])
    assert np.array_equal(pcm, np.frombuffer(pcm_s16le(samples), "<i2"))


def test_a_paced_stream_whose_frames_are_not_taken_fails_alone(tiny_models, avatar):
    """The clock does not wait for a consumer that stopped reading: once its rows pile up
    beyond ``max_pending``, the stream fails with a message saying so."""
    from spacelive.stream.engine import Engine, EngineConfig
    from spacelive.stream.runner import StreamFailed

    runner = StreamRunner(
        Engine(EngineConfig(models=tiny_models)), workers=1, max_unsent=4, max_pending=10
    )

    async def scenario():
        stream = await runner.open_stream(avatar, pacing="realtime")
        await stream.push_audio(pcm_s16le(speech_like(3.0, seed=8)))
        await asyncio.sleep(1.5)  # 45 ticks: 4 frames out, 10 rows waiting, then it fails
        with pytest.raises(StreamFailed, match="no frame was taken"):
            async for _ in stream:
                pass
        stream.close()

    try:
        asyncio.run(scenario())
    finally:
        runner.close()


def test_the_websocket_sends_the_audio_as_opus(live_server):
    """audio_out "opus": 20 ms packets that decode, after `ready.audio_out.pre_skip`, to the
    audio sent (at 48 kHz), on the frames' clock."""
    import av

    from spacelive.server.protocol import FRAME_HEADER, KIND_OPUS

    samples = speech_like(1.5, rate=24_000, seed=9)
    pcm = pcm_s16le(samples)
    with connect(live_server.ws_url, max_size=WEBSOCKET_MAX_BYTES) as ws:
        start = {"type": "start", "audio": {"sample_rate": 24_000}, "audio_out": "opus"}
        ws.send(json.dumps(start))
        ready = json.loads(ws.recv())
        assert ready["audio_out"]["encoding"] == "opus" and ready["audio_out"]["packet_ms"] == 20
        for i in range(0, len(pcm), 9600):
            ws.send(pcm[i : i + 9600])
        ws.send(json.dumps({"type": "end"}))
        frames, packets = 0, []
        while True:
            message = ws.recv(timeout=30)
            if isinstance(message, bytes):
                kind, _, _, index = FRAME_HEADER.unpack_from(message)
                if kind == KIND_OPUS:
                    assert index == len(packets)
                    packets.append(message[FRAME_HEADER.size :])
                else:
                    frames += 1
                continue
            if json.loads(message)["type"] == "done":
                break
    assert frames == 45 and len(packets) in (75, 76)  # 1.5 s: 45 frames, 75 packets (+ tail)
    codec = av.CodecContext.create("libopus", "r")
    pictures = [f for p in packets for f in codec.decode(av.Packet(p))]
    decoded = np.concatenate(  # the decoder gives interleaved s16; its first channel
        [f.to_ndarray().reshape(-1, len(f.layout.channels))[:, 0] for f in pictures]
    )[ready["audio_out"]["pre_skip"] :]
    sent = np.interp(np.arange(72_000) / 48_000, np.arange(36_000) / 24_000, samples)
    got = decoded[:72_000].astype(np.float64) / 32768
    assert np.corrcoef(got, sent)[0, 1] > 0.95  # in step: no lag beyond the pre-skip
