"""Media: PCM and Opus in, MFCC, H.264 out, and the per-stage timers."""
