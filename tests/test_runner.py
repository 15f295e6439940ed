"""The stream runner: batched streams give the synchronous form's frames, in every output;
a consumer that does not read holds back only its own producer."""

import asyncio

import numpy as np
import pytest

from spacelive.checks.bench import speech_like
from spacelive.media.audio import pcm_s16le
from spacelive.media.audio_input import AudioSpec, InputError
from spacelive.media.video import EncodedFrame
from spacelive.motion.controls import EMOTIONS, ControlUpdate
from spacelive.stream.runner import Done, StreamRunner
from tests.conftest import stream_alone

SURPRISED = np.eye(len(EMOTIONS), dtype=np.float32)[EMOTIONS.index("surprised")]


def chunks(seconds: float, seed: int, rate: int = 16_000, ms: int = 20) -> list[bytes]:
    pcm = pcm_s16le(speech_like(seconds, rate, seed=seed))
    step = 2 * rate * ms // 1000
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def local(engine, avatar, pieces, output, seed, rate=16_000, control_at=None):
    return stream_alone(engine, avatar, pieces, None, seed, rate, output, control_at)


async def batched(runner, avatar, pieces, output, seed, rate=16_000, control_at=None):
    stream = await runner.open_stream(avatar, AudioSpec(sample_rate=rate), seed=seed, output=output)

    async def produce() -> None:
        for i, piece in enumerate(pieces):
            if control_at is not None and i == control_at[0]:
                stream.control(control_at[1])
            await stream.push_audio(piece)
        await stream.end()

    try:
        producer = asyncio.ensure_future(produce())
        items = [item async for item in stream]
        await producer
    finally:
        stream.close()
    return items[:-1], items[-1]


@pytest.fixture(scope="module")
def runner(tiny_models):
    from spacelive.stream.engine import Engine, EngineConfig

    r = StreamRunner(Engine(EngineConfig(models=tiny_models)), workers=2, max_unsent=4)
    yield r
    r.close()


def test_batched_streams_equal_the_synchronous_form_in_every_output(runner, avatar):
    change = (15, ControlUpdate(emotion=SURPRISED, blink=True))
    plans = [
        (chunks(1.2, seed=1), "h264", 0, 16_000, change),
        (chunks(0.9, seed=2, rate=24_000), "rgb", 1, 24_000, None),
        (chunks(1.0, seed=3), "keypoints", 2, 16_000, change),
    ]

    async def all_at_once():
        return await asyncio.gather(*(batched(runner, avatar, *plan) for plan in plans))

    results = asyncio.run(all_at_once())
    for plan, (frames, done) in zip(plans, results, strict=True):
        want, want_done = local(runner.engine, avatar, *plan)
        assert [f.frame_index for f in frames] == list(range(len(want)))
        assert [(f.kind, f.keyframe, f.data) for f in frames] == [
            (f.kind, f.keyframe, f.data) for f in want
        ]
        assert done.frames == want_done.frames == len(frames)
        assert done.audio_seconds == pytest.approx(want_done.audio_seconds)
        assert frames[10].pts == pytest.approx(10 / 30)
    rgb = results[1][0]
    assert all(f.kind == 3 for f in rgb) and rgb[5].rgb().shape == (512, 512, 3)
    assert runner.batch.rows > runner.batch.ticks  # the streams really shared ticks


def test_a_consumer_that_does_not_read_holds_back_only_its_producer(tiny_models, avatar):
    from spacelive.stream.engine import Engine, EngineConfig

    runner = StreamRunner(
        Engine(EngineConfig(models=tiny_models)), workers=1, max_unsent=2, max_pending=10
    )

    async def scenario():
        idle = await runner.open_stream(avatar)
        pieces = chunks(2.0, seed=4)
        pushing = asyncio.ensure_future(_push_all(idle, pieces))
        await asyncio.sleep(1.0)
        assert not pushing.done()  # 2 frames out, 10 rows waiting: it waits for its reader
        assert idle.lane.unsent == 2 and idle.lane.pending_rows >= 10
        # Another stream meanwhile runs to its end.
        frames, done = await batched(runner, avatar, chunks(0.5, seed=5), "h264", 0)
        assert done.frames == len(frames) == 15
        # Reading the first stream lets its producer finish, and nothing was lost.
        items = [item async for item in idle]
        await pushing
        idle.close()
        assert items[-1].frames == len(items) - 1 == 60
        assert [f.frame_index for f in items[:-1]] == list(range(60))

    try:
        asyncio.run(scenario())
    finally:
        runner.close()


async def _push_all(stream, pieces):
    for piece in pieces:
        await stream.push_audio(piece)
    await stream.end()


def test_bad_audio_and_ended_streams_are_refused(runner, avatar):
    async def scenario():
        with pytest.raises(InputError) as info:
            await runner.open_stream(avatar, AudioSpec(sample_rate=8_000))
        assert info.value.code == "unsupported_sample_rate"
        stream = await runner.open_stream(avatar)
        with pytest.raises(InputError, match="16-bit"):
            await stream.push_audio(b"\x00\x01\x02")
        stream.close()
        stream = await runner.open_stream(avatar)
        await stream.push_audio(chunks(0.1, seed=6)[0])
        await stream.end()
        with pytest.raises(RuntimeError, match="ended"):
            await stream.push_audio(b"\x00\x00")
        items = [item async for item in stream]
        stream.close()
        assert isinstance(items[-1], Done) and all(isinstance(i, EncodedFrame) for i in items[:-1])
        with pytest.raises(RuntimeError, match="closed"):
            stream.control(ControlUpdate(blink=True))

    asyncio.run(scenario())
