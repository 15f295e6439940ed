// Audio worklets of the spacelive page.
//
// "capture": the microphone's samples in blocks of `chunk` frames, each posted with the
// audio-clock time of its first sample.
// "delayed-playback": plays the captured samples `delay` seconds late (set from the page as
// the measured audio->frame latency), so that the voice lines up with the face. Changes of
// the delay are followed by playing up to 2% faster or slower, without clicks (more than
// 120 ms off, it jumps). It posts which
// captured sample it is playing, for the page's sync readout.

class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.chunk = options.processorOptions.chunk;
    this.buffer = new Float32Array(this.chunk);
    this.filled = 0;
    this.firstTime = null;
    this.index = 0;  // samples captured
  }
  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const channel = input[0];
    for (let i = 0; i < channel.length; i++) {
      if (this.filled === 0) this.firstTime = currentTime + i / sampleRate;
      this.buffer[this.filled++] = channel[i];
      if (this.filled === this.chunk) {
        this.port.postMessage({ samples: this.buffer, time: this.firstTime, index: this.index });
        this.index += this.chunk;
        this.buffer = new Float32Array(this.chunk);
        this.filled = 0;
      }
    }
    return true;
  }
}

class DelayedPlayback extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ring = new Float32Array(sampleRate * 8);  // 8 s
    this.written = 0;  // samples received (capture index of the next one)
    this.read = -1;  // capture index being played (fractional); -1 until a delay is known
    this.delay = 0;  // samples
    this.anchorIndex = 0;  // a captured sample and the audio-clock time it was captured at
    this.anchorTime = 0;
    this.blocks = 0;
    this.port.onmessage = (event) => {
      const m = event.data;
      if (m.reset) { this.read = -1; return; }
      if (m.samples) {
        for (let i = 0; i < m.samples.length; i++) {
          this.ring[(m.index + i) % this.ring.length] = m.samples[i];
        }
        this.written = Math.max(this.written, m.index + m.samples.length);
        this.anchorIndex = m.index;
        this.anchorTime = m.time;
      }
      if (m.delay !== undefined) {
        if (!Number.isFinite(m.delay)) return;
        const most = this.ring.length - 2 * sampleRate;
        this.delay = Math.min(Math.max(0, Math.round(m.delay * sampleRate)), most);
        if (this.read < 0) this.read = Math.max(0, this.live(0) - this.delay);
      }
    };
  }
  live(offset) {  // the capture index being captured now (+ offset samples)
    return this.anchorIndex + (currentTime - this.anchorTime) * sampleRate + offset;
  }
  process(_, outputs) {
    const out = outputs[0][0];
    if (this.read < 0) { out.fill(0); return true; }
    const L = this.ring.length;
    for (let i = 0; i < out.length; i++) {
      // Off the wanted delay by e: play faster or slower in proportion (1% per 10 ms, at
      // most 2%: a second to settle, no audible pitch change), interpolated.
      const error = (this.live(i) - this.read - this.delay) / sampleRate;
      if (Math.abs(error) > 0.12) this.read += error * sampleRate;  // far off: jump there
      const step = 1 + Math.max(-0.02, Math.min(0.02, error));
      const at = Math.floor(this.read);
      if (at + 1 >= this.written) { out[i] = 0; continue; }  // underrun: wait for samples
      const f = this.read - at, a = this.ring[at % L], b = this.ring[(at + 1) % L];
      out[i] = a + (b - a) * f;
      this.read += step;
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (++this.blocks % 8 === 0) {
      this.port.postMessage({ playing: this.read, time: currentTime + out.length / sampleRate });
    }
    return true;
  }
}

registerProcessor("capture", Capture);
registerProcessor("delayed-playback", DelayedPlayback);
