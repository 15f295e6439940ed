// The spacelive page: microphone -> /v1/stream -> WebCodecs VideoDecoder -> canvas, with the
// voice played back delayed to match the face. No build step; the protocol is docs/protocol.md.
//
// window.spacelive exposes the readouts (stats) and a thumbnail of the canvas for automation.

const FRAME_RATE = 30;
const SUPPORTED_RATES = [16000, 22050, 24000, 32000, 44100, 48000];
const $ = (id) => document.getElementById(id);

const page = {
  stats: { frames: 0, fps: 0, latency_ms: null, kbps: 0, sync_ms: null, state: "idle", error: null },
  thumbnail() {  // 32 x 32 grey levels of the canvas, row-major
    const small = document.createElement("canvas");
    small.width = small.height = 32;
    const g = small.getContext("2d");
    g.drawImage($("video"), 0, 0, 32, 32);
    const rgba = g.getImageData(0, 0, 32, 32).data;
    const out = [];
    for (let i = 0; i < rgba.length; i += 4) out.push((rgba[i] + rgba[i + 1] + rgba[i + 2]) / 3);
    return out;
  },
  // Records `seconds` of what a viewer gets, the canvas and the delayed voice on one clock
  // (MediaRecorder, WebM), and resolves to it as base64: for measuring A/V sync in the page.
  async record(seconds) {
    if (!audio) throw new Error("start a stream first");
    const tap = audio.context.createMediaStreamDestination();
    audio.playback.connect(tap);  // before the volume control: recorded even when muted
    const tracks = [...$("video").captureStream(FRAME_RATE).getVideoTracks(), ...tap.stream.getAudioTracks()];
    const recorder = new MediaRecorder(new MediaStream(tracks), { mimeType: "video/webm;codecs=vp8,opus" });
    const parts = [];
    recorder.ondataavailable = (event) => parts.push(event.data);
    const stopped = new Promise((resolve) => { recorder.onstop = resolve; });
    recorder.start();
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    recorder.stop();
    await stopped;
    audio.playback.disconnect(tap);
    tracks.forEach((t) => t.stop());
    const bytes = new Uint8Array(await new Blob(parts, { type: "video/webm" }).arrayBuffer());
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(text);
  },
};
window.spacelive = page;

let audio = null;        // {context, mic, capture, playback, rate, t0}
let session = null;      // the current stream
let avatarId = "default";
let wanted = false;      // the user pressed Start (reconnect while true)
let retryTimer = null;

function show(message, isError = false) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("error", isError);
  page.stats.error = isError ? message : null;
}

function unsupported() {
  if (!window.isSecureContext) return "the microphone needs a secure page: open it over https or on localhost";
  const missing = [];
  if (!("VideoDecoder" in window)) missing.push("WebCodecs VideoDecoder");
  if (!("AudioWorkletNode" in window)) missing.push("AudioWorklet");
  if (!navigator.mediaDevices?.getUserMedia) missing.push("getUserMedia");
  if (!("AudioEncoder" in window)) $("uplink").querySelector('option[value="opus"]').disabled = true;
  return missing.length ? `this browser lacks ${missing.join(", ")}; use a current Chrome, Edge or Safari` : null;
}

// ---- controls -----------------------------------------------------------------------------

const gaze = [0, 0];

function emotionControl() {
  const name = $("emotion").value;
  return name === "neutral" ? {} : { [name]: Number($("intensity").value) };
}

function allControls() {
  return {
    emotion: emotionControl(),
    blinks_per_minute: Number($("blinks").value),
    gaze: [...gaze],
    saccades: $("saccades").checked,
    pose: { mode: $("pose").value },
  };
}

function sendControl(fields) {
  if (session?.started && !session.userStopped && session.ws.readyState === WebSocket.OPEN) {
    session.ws.send(JSON.stringify({ type: "control", ...fields }));
  }
}

function wireControls() {
  $("emotion").addEventListener("change", () => sendControl({ emotion: emotionControl() }));
  $("intensity").addEventListener("input", () => {
    $("intensity-value").textContent = Number($("intensity").value).toFixed(2);
    sendControl({ emotion: emotionControl() });
  });
  $("blinks").addEventListener("input", () => {
    $("blinks-value").textContent = $("blinks").value;
    sendControl({ blinks_per_minute: Number($("blinks").value) });
  });
  $("blink-now").addEventListener("click", () => sendControl({ blink: true }));
  $("saccades").addEventListener("change", () => sendControl({ saccades: $("saccades").checked }));
  $("pose").addEventListener("change", () => sendControl({ pose: { mode: $("pose").value } }));
  const pad = $("gaze-pad");
  let dragging = false, lastSent = 0;
  const move = (event) => {
    const box = pad.getBoundingClientRect();
    gaze[0] = Math.max(-1, Math.min(1, ((event.clientX - box.left) / box.width) * 2 - 1));
    gaze[1] = Math.max(-1, Math.min(1, ((event.clientY - box.top) / box.height) * 2 - 1));
    placeGazeDot();
    if (performance.now() - lastSent > 50) {  // at most 20 controls a second
      lastSent = performance.now();
      sendControl({ gaze: [...gaze] });
    }
  };
  pad.addEventListener("pointerdown", (e) => { dragging = true; pad.setPointerCapture(e.pointerId); move(e); });
  pad.addEventListener("pointermove", (e) => dragging && move(e));
  pad.addEventListener("pointerup", (e) => {
    if (!dragging) return;
    dragging = false;
    move(e);
    sendControl({ gaze: [...gaze] });
  });
  pad.addEventListener("pointercancel", () => { dragging = false; });
  pad.addEventListener("dblclick", () => { gaze[0] = gaze[1] = 0; placeGazeDot(); sendControl({ gaze: [0, 0] }); });
}

function placeGazeDot() {
  const pad = $("gaze-pad"), dot = $("gaze-dot");
  dot.style.left = `${((gaze[0] + 1) / 2) * pad.clientWidth - 7}px`;
  dot.style.top = `${((gaze[1] + 1) / 2) * pad.clientHeight - 7}px`;
}

async function uploadPortrait(file) {
  show(`uploading ${file.name}...`);
  const response = await fetch("/v1/avatars", { method: "POST", body: file });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    show(`portrait refused: ${body.error?.message ?? response.statusText}`, true);
    return null;
  }
  $("portrait-preview").src = `/v1/avatars/${body.avatar_id}/image`;
  show("portrait ready; press Start");
  return body.avatar_id;
}

// ---- audio --------------------------------------------------------------------------------

async function openAudio() {
  let mic;
  try {
    mic = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (err) {
    if (err.name === "NotAllowedError" || err.name === "SecurityError") {
      throw new Error("microphone access was denied: allow it for this page (the icon in the address bar) and press Start again");
    }
    if (err.name === "NotFoundError") throw new Error("no microphone was found: plug one in and press Start again");
    if (err.name === "NotReadableError") throw new Error("the microphone is in use by another application");
    throw new Error(`the microphone could not be opened (${err.name}: ${err.message})`);
  }
  let context = null;
  try {
    context = new AudioContext();
    if (!SUPPORTED_RATES.includes(context.sampleRate)) {
      await context.close();
      context = new AudioContext({ sampleRate: 48000 });
    }
    await context.audioWorklet.addModule("/static/worklets.js");
  } catch (err) {
    mic.getTracks().forEach((t) => t.stop());
    context?.close();
    throw new Error(`audio could not be set up (${err.message})`);
  }
  const rate = context.sampleRate;
  const source = context.createMediaStreamSource(mic);
  const capture = new AudioWorkletNode(context, "capture", {
    processorOptions: { chunk: rate / 50 }, channelCount: 1, channelCountMode: "explicit",
  });
  const silent = context.createGain();
  silent.gain.value = 0;
  source.connect(capture).connect(silent).connect(context.destination);
  const playback = new AudioWorkletNode(context, "delayed-playback", { outputChannelCount: [2] });
  const volume = context.createGain();
  volume.gain.value = $("playback").checked ? 1 : 0;
  $("playback").addEventListener("change", () => { volume.gain.value = $("playback").checked ? 1 : 0; });
  playback.connect(volume).connect(context.destination);
  const a = { context, mic, capture, playback, rate, playing: null };
  playback.port.onmessage = (event) => { a.playing = event.data; };
  capture.port.onmessage = (event) => onCaptured(a, event.data);
  await context.resume();
  return a;
}

function onCaptured(a, { samples, time, index }) {
  a.playback.port.postMessage({ samples, index, time });
  const s = session;
  if (!s?.ready || s.userStopped || s.ws.readyState !== WebSocket.OPEN) return;
  if (s.firstIndex === null) {  // this stream's audio starts here
    s.firstIndex = index;
    s.t0 = time;
  }
  if (s.opus) {
    if (s.opus.state !== "configured") return;
    const data = new AudioData({
      format: "f32", sampleRate: a.rate, numberOfFrames: samples.length, numberOfChannels: 1,
      timestamp: Math.round(((index - s.firstIndex) / a.rate) * 1e6), data: samples,
    });
    try { s.opus.encode(data); } finally { data.close(); }
  } else {
    const pcm = new Int16Array(samples.length);
    for (let i = 0; i < samples.length; i++) pcm[i] = Math.max(-32768, Math.min(32767, Math.round(samples[i] * 32767)));
    s.ws.send(pcm.buffer);
  }
}

async function opusEncoder(rate, ws) {
  const config = { codec: "opus", sampleRate: rate, numberOfChannels: 1, bitrate: 24000 };
  if (!("AudioEncoder" in window) || !(await AudioEncoder.isConfigSupported(config)).supported) return null;
  const encoder = new AudioEncoder({
    output: (chunk) => {
      const data = new ArrayBuffer(chunk.byteLength);
      chunk.copyTo(data);
      if (ws.readyState === WebSocket.OPEN) ws.send(data);
    },
    error: (err) => { show(`Opus encoder failed: ${err.message}`, true); ws.close(); },
  });
  encoder.configure(config);
  return encoder;
}

// ---- the stream ---------------------------------------------------------------------------

async function connect(retries = 0) {
  clearTimeout(retryTimer);
  page.stats.latency_ms = page.stats.sync_ms = null;
  const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/v1/stream`;
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const useOpus = $("uplink").value === "opus";
  const s = {
    ws, ready: false, decoder: null, opus: null, firstIndex: null, t0: null, useOpus,
    shown: [], bytes: [], latency: null, userStopped: false, started: false, retries,
    needKey: false,
  };
  session = s;
  page.stats.state = "connecting";
  show("connecting...");
  ws.onopen = async () => {
    let audioFormat = { encoding: "pcm_s16le", sample_rate: audio.rate, channels: 1 };
    if (useOpus) {
      s.opus = await opusEncoder(audio.rate, ws);
      if (s.opus) audioFormat = { encoding: "opus", container: "packets", pre_skip: 0 };
      else show("this browser cannot encode Opus; sending PCM");
    }
    if (s.userStopped || session !== s || ws.readyState !== WebSocket.OPEN) {
      s.opus?.close();
      ws.close(1000);
      return;
    }
    ws.send(JSON.stringify({
      type: "start", avatar_id: avatarId, audio: audioFormat, controls: allControls(),
      seed: Math.max(0, Math.floor(Number($("seed").value) || 0)),
    }));
    s.started = true;
  };
  ws.onmessage = (event) => {
    if (typeof event.data === "string") onEvent(s, JSON.parse(event.data));
    else onFrame(s, event.data);
  };
  ws.onclose = (event) => {
    const decoder = s.decoder;
    if (decoder?.state === "configured") decoder.flush().catch(() => {}).finally(() => decoder.close());
    if (s.opus && s.opus.state !== "closed") s.opus.close();
    if (session !== s) return;
    page.stats.state = "closed";
    if (!wanted || s.userStopped) return;
    if (s.fatal || s.retries >= 10) {  // a refusal that retrying would not fix
      wanted = false;
      $("start").disabled = false;
      $("stop").disabled = true;
      return;
    }
    const wait = s.retryAfter ?? 2000;
    show(`connection lost${event.code ? ` (close ${event.code})` : ""}; reconnecting in ${wait / 1000} s...`, true);
    retryTimer = setTimeout(() => connect(s.retries + 1), wait);
  };
}

function onEvent(s, event) {
  if (event.type === "ready") {
    s.ready = true;
    s.codec = event.video.codec_string;
    s.decoder = newDecoder(s);
    page.stats.state = "streaming";
    show(`streaming (session ${event.session_id}); speak`);
  } else if (event.type === "error") {
    const retryable = ["server_busy", "internal_error"].includes(event.code);
    s.fatal = !retryable;
    s.retryAfter = event.code === "server_busy" ? 5000 : 2000;
    show(`server error ${event.code}: ${event.message}`, true);
  }
}

function newDecoder(s) {
  const decoder = new VideoDecoder({
    output: (frame) => onDecoded(s, frame),
    error: (err) => {  // start again at the next keyframe (an IDR comes every 60 frames)
      show(`a video frame could not be decoded (${err.message}); resuming at the next keyframe`, true);
      if (session === s && s.ws.readyState === WebSocket.OPEN) {
        s.decoder = newDecoder(s);
        s.needKey = true;
      }
    },
  });
  decoder.configure({ codec: s.codec, optimizeForLatency: true });
  return decoder;
}

function onFrame(s, buffer) {
  const view = new DataView(buffer);
  if (view.byteLength < 8 || view.getUint8(0) !== 1 || !s.decoder) return;
  const keyframe = (view.getUint8(1) & 1) === 1;
  const index = view.getUint32(4, true);
  s.bytes.push([performance.now(), buffer.byteLength]);
  if (s.decoder.state !== "configured") return;
  if (s.needKey && !keyframe) return;
  s.needKey = false;
  s.decoder.decode(new EncodedVideoChunk({
    type: keyframe ? "key" : "delta",
    timestamp: Math.round((index * 1e6) / FRAME_RATE),
    data: new Uint8Array(buffer, 8),
  }));
}

function onDecoded(s, frame) {
  const index = Math.round((frame.timestamp * FRAME_RATE) / 1e6);
  try {
    if (session !== s) return;
    $("video").getContext("2d").drawImage(frame, 0, 0, 512, 512);
  } finally {
    frame.close();
  }
  if (session !== s) return;
  if (page.stats.error && !s.needKey && s.ready) show("streaming; speak");
  const now = performance.now();
  s.shown.push(now);
  page.stats.frames += 1;
  if (s.t0 === null) return;
  // Frame k shows audio time k/30 of the stream, captured at t0 + k/30 on the audio clock.
  const latency = audio.context.currentTime - (s.t0 + index / FRAME_RATE);
  s.latency = s.latency === null ? latency : 0.9 * s.latency + 0.1 * latency;
  // The voice is heard outputLatency after it is played: play it that much earlier.
  const outputLatency = audio.context.outputLatency || audio.context.baseLatency || 0;
  audio.playback.port.postMessage({ delay: s.latency - outputLatency });
  page.stats.latency_ms = Math.round(s.latency * 1000);
  const p = audio.playing;
  if (p) {  // the captured sample being heard now, from the player's last report
    const played = p.playing + (audio.context.currentTime - p.time) * audio.rate;
    const heard = played - outputLatency * audio.rate - s.firstIndex;
    page.stats.sync_ms = Math.round((index / FRAME_RATE - heard / audio.rate) * 1000);
  }
}

function refreshReadouts() {
  const s = session;
  if (s) {
    const now = performance.now();
    s.shown = s.shown.filter((t) => now - t < 1000);
    s.bytes = s.bytes.filter(([t]) => now - t < 1000);
    page.stats.fps = s.shown.length;
    page.stats.kbps = Math.round(s.bytes.reduce((sum, [, n]) => sum + n, 0) * 8 / 1000);
  }
  $("fps").textContent = page.stats.fps;
  $("kbps").textContent = page.stats.kbps;
  $("latency").textContent = page.stats.latency_ms ?? "–";
  $("sync").textContent = page.stats.sync_ms ?? "–";
}

async function start() {
  const problem = unsupported();
  if (problem) { show(problem, true); return; }
  $("start").disabled = true;
  try {
    if (document.querySelector('input[name="portrait"]:checked').value === "upload") {
      const file = $("portrait-file").files[0];
      if (!file) { show("choose a portrait file to upload, or pick the default", true); $("start").disabled = false; return; }
      const id = await uploadPortrait(file);
      if (!id) { $("start").disabled = false; return; }
      avatarId = id;
    } else {
      avatarId = "default";
      $("portrait-preview").src = "/v1/avatars/default/image";
    }
    audio ??= await openAudio();
    await audio.context.resume();
  } catch (err) {
    show(err.message, true);
    $("start").disabled = false;
    return;
  }
  wanted = true;
  $("stop").disabled = false;
  connect();
}

async function stop() {
  wanted = false;
  clearTimeout(retryTimer);
  const s = session;
  $("start").disabled = true;
  $("stop").disabled = true;
  if (s) {
    s.userStopped = true;
    if (s.ws.readyState === WebSocket.OPEN && s.started) {
      await s.opus?.flush().catch(() => {});  // the packets still in the encoder
      s.ws.send(JSON.stringify({ type: "end" }));
    } else if (s.ws.readyState === WebSocket.CONNECTING || s.ws.readyState === WebSocket.OPEN) {
      s.ws.close(1000);
    }
    // Let the last frames arrive before Start may open the next stream.
    if (s.ws.readyState !== WebSocket.CLOSED) {
      await new Promise((resolve) => {
        s.ws.addEventListener("close", resolve, { once: true });
        setTimeout(resolve, 3000);
      });
    }
  }
  audio?.playback.port.postMessage({ reset: true });
  await audio?.context.suspend();
  $("start").disabled = false;
  show("stopped");
}

wireControls();
placeGazeDot();
$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
$("portrait-file").addEventListener("change", () => {
  document.querySelector('input[name="portrait"][value="upload"]').checked = true;
});
setInterval(refreshReadouts, 500);
const problem = unsupported();
if (problem) show(problem, true);
