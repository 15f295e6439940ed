"""Measures: the render, mouth and control checks, A/V sync, contact sheets and benchmarks."""
