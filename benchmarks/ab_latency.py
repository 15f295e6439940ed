"""Old against new in one run: `spacelive bench latency` alternating between an earlier commit
and this checkout, on the same machine, so that its day-to-day speed cancels out.

    python benchmarks/ab_latency.py --old ef4c161 [--sessions 1 4] [--rounds 2] [--seconds 30]

The old commit is checked out into a temporary worktree and installed (no dependencies) into
a temporary directory that leads ``PYTHONPATH`` for its runs; both use this venv's packages.
Writes benchmarks/results/ab_latency.json: per round, sessions and side, the latency
percentiles, the slowest session's fps, dropped frames and the server's CPU.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def run_latency(sessions: int, seconds: float, pythonpath: str | None) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    with tempfile.TemporaryDirectory() as cwd:  # never import the checkout by its folder
        command = [sys.executable, "-m", "spacelive.cli", "--log-level", "warning", "bench"]
        command += ["latency", "--sessions", str(sessions), "--seconds", str(seconds)]
        command += ["--label", f"ab-{'old' if pythonpath else 'new'}-{sessions}"]
        out = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    for leftover in RESULTS.glob(f"latency_ab-new-{sessions}.*"):  # `bench` writes its own
        leftover.unlink()
    return {
        "latency_ms": {k: round(v, 1) for k, v in report["latency_ms"].items()},
        "fps_min": round(report["fps_min"], 2),
        "dropped_frames": report["dropped_frames"],
        "server_cpu_cores": round(report["server_cpu_cores"], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="the commit to compare against")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tree, site = Path(tmp) / "tree", Path(tmp) / "site"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", str(tree), args.old])
        try:
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
                + ["--no-build-isolation", "--target", str(site), str(tree)],
                check=True,
                capture_output=True,
            )
            runs = []
            for round_ in range(1, args.rounds + 1):
                for sessions in args.sessions:
                    for side, path in (("old", str(site)), ("new", None)):
                        result = run_latency(sessions, args.seconds, path)
                        runs.append({"round": round_, "sessions": sessions, "side": side, **result})
                        print(json.dumps(runs[-1]), file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)])
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    report = {"benchmark": "ab_latency", "old": args.old, "new": head, "seconds": args.seconds}
    report["runs"] = runs
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ab_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
