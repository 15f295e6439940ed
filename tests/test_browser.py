"""The web page in a real browser: Debian's chromium (headless), a fake microphone playing
synthesized speech, driven by Selenium through Debian's chromedriver, against a live server
with the bundled models. Checks the canvas, the fps readout, the emotion control, and the A/V
sync of what the page shows and plays (recorded in the page).

Saves the page (browser.png) and its readouts (browser.json) in pytest's temporary folder, or
with SPACELIVE_SAVE_RESULTS=1 in benchmarks/results (where a run of the suite would otherwise
rewrite two committed files)."""

import base64
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from spacelive import MODEL_SAMPLE_RATE
from spacelive.checks.sync import recording_offset
from spacelive.face.analysis import FaceAnalyzer
from spacelive.media.audio import write_wav
from spacelive.stream.engine import DEFAULT_MODELS
from tests.conftest import LiveServer

BENCHMARK_RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SYNC_RECORDINGS, SYNC_SECONDS = 3, 10
"""The page's A/V sync is measured on this many recordings of this many seconds each."""


def _speech(path: Path) -> None:
    """About 12 s of held-out-voice sentences with short pauses (the fake microphone loops)."""
    from spacelive.training.corpus import SentenceMaker, Voice, synthesize

    rng = np.random.default_rng(99)
    sentences, pieces = SentenceMaker(), []
    while sum(len(p) for p in pieces) < 12 * MODEL_SAMPLE_RATE:
        samples, _ = synthesize(Voice("flite", "slt", "en"), sentences.sentence("en", rng), rng)
        pieces += [samples, np.zeros(MODEL_SAMPLE_RATE // 3, np.float32)]
    write_wav(path, np.concatenate(pieces), MODEL_SAMPLE_RATE)


@pytest.fixture
def browser(tmp_path):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists() and shutil.which("flite")):
        if os.environ.get("CI"):
            pytest.fail("CI must have chromium, chromium-driver and flite (dev.sh installs them)")
        pytest.skip("needs Debian's chromium, chromium-driver and flite")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    wav = tmp_path / "speech.wav"
    _speech(wav)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _stats(driver) -> dict:
    return driver.execute_script("return window.spacelive.stats")


def _mean_thumbnail(driver, seconds: float) -> np.ndarray:
    shots, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        shots.append(driver.execute_script("return window.spacelive.thumbnail()"))
        time.sleep(0.1)
    return np.mean(np.array(shots, np.float64), axis=0)


def _wait(driver, what, predicate, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = _stats(driver)
        if stats.get("error"):
            pytest.fail(f"the page shows an error while waiting for {what}: {stats['error']}")
        if predicate(stats):
            return stats
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}: {_stats(driver)}")


def test_browser_page_animates_the_portrait_and_follows_the_controls(browser, tmp_path):
    save = os.environ.get("SPACELIVE_SAVE_RESULTS") == "1"
    results = BENCHMARK_RESULTS if save else tmp_path
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    with LiveServer(DEFAULT_MODELS) as server:
        browser.get(server.http_url + "/")
        browser.find_element(By.ID, "start").click()
        _wait(browser, "60 frames on the canvas", lambda s: s["frames"] >= 60)

        # Decoded frames reach the canvas and change over time.
        first = np.array(browser.execute_script("return window.spacelive.thumbnail()"))
        time.sleep(0.7)
        later = np.array(browser.execute_script("return window.spacelive.thumbnail()"))
        assert first.mean() > 20, "the canvas is (nearly) black"
        assert np.abs(later - first).mean() > 0.2, "the picture does not change"

        # The fps readout, sampled over 4 s once the stream has settled.
        readouts = []
        for _ in range(8):
            time.sleep(0.5)
            readouts.append(_stats(browser))
        fps = float(np.median([r["fps"] for r in readouts]))

        # A/V sync as a viewer gets it: the canvas and the delayed voice, recorded in the
        # page on one clock; lips re-detected on its frames against the voice's energy. Each
        # recording is measured alone: every one must be in sync, not just their average.
        browser.set_script_timeout(60)
        analyzer = FaceAnalyzer()
        syncs = []
        for _ in range(SYNC_RECORDINGS):
            webm = browser.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                f"window.spacelive.record({SYNC_SECONDS})"
                ".then(done, (e) => done('error: ' + e.message));"
            )
            assert not webm.startswith("error"), webm
            syncs.append(recording_offset(base64.b64decode(webm), analyzer))

        # The emotion control changes the picture: with the head still and no blinks,
        # alternating neutral and surprised windows differ more than windows of one emotion.
        Select(browser.find_element(By.ID, "pose")).select_by_value("fixed")
        time.sleep(1.0)  # the pose blends over 6 frames, after the stream's latency
        browser.execute_script(
            "const b = document.getElementById('blinks'); b.value = 0;"
            "b.dispatchEvent(new Event('input'));"
            "const i = document.getElementById('intensity'); i.value = 1;"
            "i.dispatchEvent(new Event('input'));"
        )
        emotion = Select(browser.find_element(By.ID, "emotion"))
        windows: dict[str, list[np.ndarray]] = {"neutral": [], "surprised": []}
        for name in ("neutral", "surprised") * 3:
            emotion.select_by_visible_text(name)
            time.sleep(0.5)  # the change ramps over 6 frames
            windows[name].append(_mean_thumbnail(browser, 1.0))
        results.mkdir(parents=True, exist_ok=True)
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(results / "browser.png"))
        final = _stats(browser)

    # Per pixel, the change from neutral to surprised averaged over the three alternations
    # (what is consistent adds up) against neighbouring windows of one emotion, averaged alike.
    n, s = windows["neutral"], windows["surprised"]
    effect = float(np.abs(np.mean([s[i] - n[i] for i in range(3)], axis=0)).mean())
    same = [n[1] - n[0], n[2] - n[1], s[1] - s[0]]
    noise = float(np.abs(np.mean(same, axis=0)).mean())
    report = {
        "test": "test_browser_page_animates_the_portrait_and_follows_the_controls",
        "fps_median": fps,
        "fps_readouts": [r["fps"] for r in readouts],
        "latency_ms_readouts": [r["latency_ms"] for r in readouts],
        "sync_ms_readouts": [r["sync_ms"] for r in readouts],
        "video_kbps_readouts": [r["kbps"] for r in readouts],
        "page_av_sync": syncs,
        "emotion_effect": effect,
        "neutral_noise": noise,
        "frames": final["frames"],
    }
    (results / "browser.json").write_text(json.dumps(report, indent=2) + "\n")
    assert fps >= 25, report
    assert effect > 2 * noise, report
    # Within one frame (33 ms) in every recording: lips and voice on the same 30 fps frame.
    assert all(abs(sync["offset_frames"]) <= 1 for sync in syncs), report
