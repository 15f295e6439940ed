"""The `spacelive` command."""

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from spacelive import __version__


def _configure_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler()
    if as_json:

        class JsonFormatter(logging.Formatter):
            def format(self, record: logging.LogRecord) -> str:
                return json.dumps(
                    {
                        "time": self.formatTime(record),
                        "level": record.levelname,
                        "logger": record.name,
                        "message": record.getMessage(),
                    }
                )

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def _engine_config(args):
    from spacelive.stream.engine import EngineConfig

    return EngineConfig(
        models=Path(args.models),
        backend=args.backend,
        threads=args.threads,
        renderer=args.renderer,
    )


def _cmd_serve(args) -> int:
    import uvicorn

    from spacelive.server.app import ServerConfig, create_app
    from spacelive.server.protocol import WEBSOCKET_MAX_BYTES

    config = ServerConfig(engine=_engine_config(args), max_sessions=args.max_sessions)
    if args.workers:
        config = dataclasses.replace(config, workers=args.workers)
    uvicorn.run(
        create_app(config),
        host=args.host,
        port=args.port,
        ws_max_size=WEBSOCKET_MAX_BYTES,
        log_config=None,
    )
    return 0


def _cmd_bench_latency(args) -> int:
    from spacelive.checks.bench import bench_latency

    models = Path(args.models) if args.models else None
    result = bench_latency(args.sessions, args.seconds, models, args.label, args.threads)
    print(json.dumps(result, indent=2))
    return 0 if not result["failed_sessions"] else 1


def _cmd_bench_throughput(args) -> int:
    from spacelive.checks.bench import bench_throughput

    models = Path(args.models) if args.models else None
    result = bench_throughput(args.max_sessions, args.seconds, models, args.label)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    return 0


def _cmd_bench_stages(args) -> int:
    from spacelive.checks.bench import bench_stages

    print(json.dumps(bench_stages(args.frames, args.label), indent=2))
    return 0


def _cmd_stream(args, output: str = "video") -> int:
    from spacelive.client.stream import run_stream

    stats = run_stream(
        args.url,
        Path(args.audio),
        Path(args.output),
        Path(args.image) if args.image else None,
        realtime=args.realtime,
        stats_path=Path(args.stats) if args.stats else None,
        controls=_controls(**vars(args)).model_dump(exclude_none=True, exclude_defaults=True),
        seed=args.seed,
        opus_bitrate=getattr(args, "opus", None),
        output=output,
    )
    print(json.dumps(stats, indent=2))
    return 0


def _cmd_render(args) -> int:
    from spacelive.stream.engine import Engine
    from spacelive.stream.offline import render_file

    t0 = time.perf_counter()
    frames = render_file(
        Engine(_engine_config(args)),
        Path(args.image),
        Path(args.audio),
        Path(args.output),
        _controls(**vars(args)).update(),
        seed=args.seed,
    )
    elapsed = time.perf_counter() - t0
    if args.contact_sheet:
        from PIL import Image

        from spacelive.checks.sheet import contact_sheet, decoded_frames

        Image.fromarray(contact_sheet(decoded_frames(frames))).save(args.contact_sheet)
    print(json.dumps({"frames": len(frames), "seconds": elapsed, "output": args.output}))
    return 0


def _cmd_eval_controls(args) -> int:
    from spacelive.checks.control_checks import evaluate, held_out_speech
    from spacelive.face.analysis import FaceAnalyzer
    from spacelive.face.portraits import standard_portraits
    from spacelive.media.audio import read_speech
    from spacelive.stream.engine import Engine

    speech = read_speech(Path(args.audio)) if args.audio else held_out_speech()
    portraits = standard_portraits()
    data = (
        portraits[args.portrait] if args.portrait in portraits else Path(args.portrait).read_bytes()
    )
    # The reference-pose check transfers another standard portrait's head motion.
    actor = "astronaut" if args.portrait == "grace_hopper" else "grace_hopper"
    analyzer = FaceAnalyzer()
    report = evaluate(
        Engine(_engine_config(args)).motion,
        analyzer.analyze(data),
        analyzer.analyze(portraits[actor]),
        speech,
        blink_minutes=args.blink_minutes,
        analyzer=analyzer,
    )
    for check, result in report["checks"].items():
        figures = ", ".join(f"{k}={v:.4g}" for k, v in result["figures"].items())
        figures = figures or result["detail"].get("error", "")
        print(f"{check:10s} {'pass' if result['passed'] else 'FAIL'}  {figures}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float) + "\n")
    return 0 if report["passed"] else 1


def _cmd_eval_render(args) -> int:
    from PIL import Image

    from spacelive.checks.render_checks import evaluate
    from spacelive.face.portraits import standard_portraits
    from spacelive.stream.engine import Engine

    portraits = standard_portraits()
    if args.portrait:
        portraits = {
            p: (portraits[p] if p in portraits else Path(p).read_bytes()) for p in args.portrait
        }
    from spacelive.checks.control_checks import held_out_speech
    from spacelive.media.audio import read_speech

    speech = read_speech(Path(args.audio)) if args.audio else held_out_speech(args.seconds)
    motion = Engine(_engine_config(args)).motion
    out = evaluate(portraits, motion, speech)
    report = out["report"]
    for portrait, checks in report["portraits"].items():
        for check, result in checks.items():
            figures = ", ".join(f"{k}={v:.3f}" for k, v in result["figures"].items())
            figures = figures or result["detail"].get("error", "")
            print(f"{portrait:14s} {check:6s} {'pass' if result['passed'] else 'FAIL'}  {figures}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float) + "\n")
    if args.sheets:
        folder = Path(args.sheets)
        folder.mkdir(parents=True, exist_ok=True)
        for portrait, sheet in out["sheets"].items():
            Image.fromarray(sheet).save(folder / f"render_checks_{Path(portrait).stem}.png")
        for portrait, sheet in out["mouth_sheets"].items():
            Image.fromarray(sheet).save(folder / f"mouth_{Path(portrait).stem}.jpg", quality=90)
    print("all checks passed" if report["passed"] else "some checks FAILED")
    return 0 if report["passed"] else 1


def _cmd_data_synth(args) -> int:
    from spacelive.training.corpus import synthesize_corpus

    out = Path(args.out)
    summary = synthesize_corpus(out, args.hours, args.seed, args.shard_minutes)
    summary["recipe"] = (
        "espeak-ng -> mbrola (all voices but us3), flite (kal16, awb, rms) and espeak-ng's own "
        "voices (en-us, en, de, fr, es; variants f1-f5, m1-m7); Debian word lists; tempo and "
        "pitch 0.8-1.25; 1-3 sentences with 0.1-1 s gaps, 30% with one 2-6 s pause; speed "
        "0.87-1.15 (60%); EQ, reverb, noise, loudness"
    )
    (out / "corpus.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


_TRAINER_OPTIONS = ("steps", "batch", "seed", "lr_peak", "warmup", "window", "self_feed")


def _trainer_config(args, config_class, width: str, extra: tuple[str, ...] = ()):
    """The recipe is the config class's; options given on the command line override it."""
    names = (*_TRAINER_OPTIONS, *extra)
    given = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    return config_class(width=width, **given)


def _init_from(args) -> Path | None:
    return Path(args.init_from) if args.init_from else None


def _add_trainer_options(parser, stage: str, self_feed: str, hears_encoder: bool) -> None:
    """The options every trainer takes; defaults (None) are its config class's."""
    parser.add_argument("--data", required=True, help="corpus folder from `spacelive data synth`")
    if hears_encoder:
        from spacelive.stream.engine import DEFAULT_MODELS

        parser.add_argument(
            "--models", default=str(DEFAULT_MODELS), help="model directory whose encoder to hear"
        )
    parser.add_argument("--out", default=f"runs/{stage}", help="checkpoints, log.csv, loss.png")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--lr-peak", type=float)
    parser.add_argument("--warmup", type=int, help="learning-rate warm-up steps")
    parser.add_argument("--window", type=int, help="frames per training sequence")
    parser.add_argument("--self-feed", type=float, help=self_feed)
    parser.add_argument(
        "--init-from",
        help="start from this checkpoint's weights (fine-tune); for s2l also a model directory, "
        "whose shipped S2L is recovered from its graph",
    )


def _cmd_train_s2l(args) -> int:
    from spacelive.training.train_s2l import TrainConfig, train

    extra = ("mouth_weight", "gap_weight", "closure_weight", "velocity_weight")
    config = _trainer_config(args, TrainConfig, args.width, extra)
    encoder = Path(args.encoder_from) if args.encoder_from else None
    summary = train(
        Path(args.data), Path(args.out), config, init_from=_init_from(args), encoder_models=encoder
    )
    print(json.dumps(summary))
    return 0


def _cmd_train_posegen(args) -> int:
    from spacelive.motion.runners import load_stages
    from spacelive.training.train_posegen import PoseTrainConfig, train

    stages = load_stages(Path(args.models))
    extra = ("kl_weight", "free_nats", "prior_weight")
    config = _trainer_config(args, PoseTrainConfig, stages.manifest["width"], extra)
    summary = train(Path(args.data), stages, Path(args.out), config, init_from=_init_from(args))
    print(json.dumps(summary))
    return 0


def _cmd_client_render_keypoints(args) -> int:
    return _cmd_stream(args, output="keypoints")


def _cmd_train_basis(args) -> int:
    from spacelive.face.analysis import FaceAnalyzer
    from spacelive.face.portraits import standard_portraits
    from spacelive.stream.engine import Engine, EngineConfig
    from spacelive.training.motion_basis import corpus_mfccs, fit_basis

    motion = Engine(EngineConfig(models=Path(args.models))).motion
    analyzer = FaceAnalyzer()
    avatars = [analyzer.analyze(data) for data in standard_portraits().values()]
    mfccs = corpus_mfccs(Path(args.data), args.utterances)
    summary = fit_basis(motion, avatars, mfccs, Path(args.models), args.components)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_train_closure(args) -> int:
    from spacelive.training.train_closure import ClosureTrainConfig, train

    excluded = tuple(v for v in (args.exclude_voices or "").split(",") if v)
    config = ClosureTrainConfig(steps=args.steps, seed=args.seed, exclude_voices=excluded)
    print(json.dumps(train(Path(args.data), Path(args.models), config), indent=2))
    return 0


def _cmd_train_baseline(args) -> int:
    from spacelive.training.lipsync_eval import BASELINE_PATH, fit_energy_baseline

    fit = fit_energy_baseline(Path(args.data))
    fit["fitted_on"] = args.recipe or fit["fitted_on"]
    BASELINE_PATH.write_text(json.dumps(fit, indent=2) + "\n")
    print(json.dumps(fit, indent=2))
    return 0


def _cmd_teach(args) -> int:
    from spacelive.face.analysis import FaceAnalyzer
    from spacelive.stream.engine import DEFAULT_PORTRAIT
    from spacelive.training.alignment import read_alignment
    from spacelive.training.teacher import articulation, landmark_targets

    phones = read_alignment(Path(args.alignment), args.format)
    if not phones:
        raise SystemExit(f"{args.alignment} holds no phones")
    identity = FaceAnalyzer().analyze(Path(args.identity or DEFAULT_PORTRAIT).read_bytes())
    emotion = _emotion_vector(args.emotion)
    landmarks = landmark_targets(phones, identity.landmarks0, emotion)
    np.savez_compressed(
        args.output,
        landmarks=landmarks,
        articulation=articulation(phones).values.astype(np.float32),
        emotion=np.asarray(emotion, np.float32),
        phonemes=np.array([p.phoneme for p in phones]),
        starts=np.array([p.start_s for p in phones]),
        ends=np.array([p.end_s for p in phones]),
        frame_rate=30,
    )
    print(json.dumps({"frames": len(landmarks), "phones": len(phones), "output": args.output}))
    return 0


def _emotion_vector(text: str | None) -> list[float]:
    """'happy=0.7,surprised=0.3' -> the 8 intensities (validated like the wire format)."""
    return _controls(emotion=text).emotion_vector()


def _controls(
    emotion=None,
    blinks_per_minute=None,
    gaze=None,
    mouth_scale=None,
    pose=None,
    saccades=False,
    **_,
):
    """Command-line controls -> the wire format's `controls`, validated the same way.
    emotion: 'happy=0.7,surprised=0.3'; gaze: 'X,Y'; pose: generated, fixed, or a pose-track
    JSON or video file to transfer."""
    from pydantic import ValidationError

    from spacelive.server.protocol import Controls

    fields: dict = {
        "blinks_per_minute": blinks_per_minute,
        "mouth_scale": mouth_scale,
        "saccades": saccades or None,
    }
    if emotion is not None:
        pairs = {}
        for item in filter(None, emotion.split(",")):
            name, _, value = item.partition("=")
            try:
                pairs[name.strip()] = float(value or 1.0)
            except ValueError:
                raise SystemExit(f"--emotion: {item!r} is not name=intensity") from None
        fields["emotion"] = pairs
    if gaze is not None:
        try:
            x, y = (float(v) for v in gaze.split(","))
        except ValueError:
            raise SystemExit(f"--gaze: {gaze!r} is not X,Y") from None
        fields["gaze"] = (x, y)
    if pose in ("generated", "fixed"):
        fields["pose"] = {"mode": pose}
    elif pose is not None:
        fields["pose"] = {"mode": "reference", "track": _pose_track_json(Path(pose))}
    try:
        return Controls(**fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SystemExit(f"controls: {problems}") from None


def _pose_track_json(path: Path) -> dict:
    """--pose PATH: a pose-track JSON file as it is, or a video's head motion extracted."""
    from spacelive.motion.pose import PoseTrackError, track_from_video

    if not path.is_file():
        raise SystemExit(f"--pose: {path} is neither generated, fixed nor an existing file")
    if path.suffix.lower() == ".json":
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SystemExit(f"--pose: {path} is not valid JSON: {exc}") from None
    try:
        return track_from_video(path).to_json()
    except PoseTrackError as exc:
        raise SystemExit(f"--pose: {exc}") from None


def _add_stream_options(parser) -> None:
    """What every streaming client command takes: where, what to send, where to write."""
    parser.add_argument("url", help="websocket address, e.g. ws://127.0.0.1:8000/v1/stream")
    parser.add_argument("--image", help="portrait (default: the server's default avatar)")
    parser.add_argument("--audio", required=True)
    parser.add_argument("-o", "--output", required=True, help="MP4 to write")
    parser.add_argument("--realtime", action="store_true", help="pace the audio in real time")
    parser.add_argument("--stats", help="write latency, fps and bitrate statistics JSON here")
    _add_control_options(parser)


def _add_control_options(parser) -> None:
    parser.add_argument("--emotion", help="e.g. happy=0.7,surprised=0.3 (each in [0, 1])")
    parser.add_argument(
        "--blinks-per-minute", type=float, help="blink rate, 0 disables (default 15)"
    )
    parser.add_argument("--gaze", help="iris offset X,Y in half eye widths, e.g. 0.3,-0.1")
    parser.add_argument(
        "--saccades", action="store_true", help="natural gaze: small random saccades on top"
    )
    parser.add_argument("--mouth-scale", type=float, help="1 (default) .. 2: exaggerate the mouth")
    parser.add_argument(
        "--pose",
        help="head pose: generated (default, PoseGen), fixed (the portrait's), or a pose-track "
        "JSON or video file whose head motion to transfer",
    )
    parser.add_argument("--seed", type=int, default=0, help="same seed, same generated motion")


def _cmd_eval_lipsync(args) -> int:
    from spacelive.face.analysis import FaceAnalyzer
    from spacelive.media.audio import read_speech
    from spacelive.stream.engine import DEFAULT_PORTRAIT, Engine
    from spacelive.training.alignment import read_alignment
    from spacelive.training.lipsync_eval import evaluate

    samples = read_speech(Path(args.audio))
    phones = read_alignment(Path(args.alignment), args.format)
    avatar = FaceAnalyzer().analyze(Path(args.identity or DEFAULT_PORTRAIT).read_bytes())
    result = evaluate(Engine(_engine_config(args)).motion, avatar, samples, phones)
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


def _cmd_eval_phonetic(args) -> int:
    from spacelive.face.analysis import FaceAnalyzer
    from spacelive.media.audio import read_speech
    from spacelive.render.renderer import WarpRenderer
    from spacelive.stream.engine import DEFAULT_PORTRAIT, Engine
    from spacelive.training.alignment import read_alignment
    from spacelive.training.phonetic_eval import pool, score_track, track

    samples = read_speech(Path(args.audio))
    phones = read_alignment(Path(args.alignment), args.format)
    analyzer = FaceAnalyzer()
    avatar = analyzer.analyze(Path(args.image or DEFAULT_PORTRAIT).read_bytes())
    motion = Engine(_engine_config(args)).motion
    counts = score_track(track(motion, avatar, samples, WarpRenderer(), analyzer), phones)
    text = json.dumps({source: pool(c) for source, c in counts.items()}, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


def _cmd_export(args) -> int:
    if args.backend == "tensorrt":
        from spacelive.export.tensorrt import build_engines
        from spacelive.stream.engine import DEFAULT_MODELS

        plans = build_engines(Path(args.models) if args.models else DEFAULT_MODELS)
        print(json.dumps({stage: str(plan) for stage, plan in plans.items()}, indent=2))
        return 0
    if not args.output:
        raise SystemExit("spacelive export: -o/--output is required with --backend onnx")
    from spacelive.export.stages import (
        build_stages,
        export_stages,
        load_posegen_checkpoint,
        load_s2l_checkpoint,
        randomize,
        replace_stage,
        zero,
    )
    from spacelive.motion.runners import ModelError

    stages = build_stages(args.width, seed=args.seed)
    provenance = json.loads(Path(args.provenance).read_text()) if args.provenance else {}
    output = Path(args.output)
    if args.posegen_checkpoint and not args.s2l_checkpoint:
        # PoseGen alone goes into an existing model directory beside its audio encoder.
        if not (output / "manifest.json").is_file():
            raise ModelError(
                f"{output} has no manifest.json: --posegen-checkpoint alone replaces PoseGen in "
                "a model directory (give --s2l-checkpoint too to export a new one)"
            )
        loaded = load_posegen_checkpoint(zero(stages), Path(args.posegen_checkpoint))
        trained = {"trained": True, **loaded, **provenance}
        manifest = replace_stage(output, "posegen", stages, trained)
        print(json.dumps({n: s["file"] for n, s in manifest["stages"].items()}))
        return 0
    zeroed = "untrained: every weight zero (a placeholder until trained)"
    training: str | dict = "untrained"
    placeholders: frozenset[str] = frozenset()
    if args.s2l_checkpoint:
        stages = zero(stages)
        loaded = load_s2l_checkpoint(stages, Path(args.s2l_checkpoint))
        if "encoder" in loaded:  # S2L trained on a frozen encoder: it joins that encoder
            if args.posegen_checkpoint:
                raise ModelError(
                    f"{args.s2l_checkpoint} was trained on a frozen audio encoder: export it "
                    "alone into the model directory that holds that encoder"
                )
            return _export_s2l_beside_encoder(output, stages, loaded, provenance, args.quantize)
        trained = {
            "trained": True,
            "step": loaded["step"],
            "config": loaded["config"],
            **provenance,
        }
        training = {"audio_encoder": trained, "s2l": trained, "posegen": zeroed}
        placeholders = frozenset({"posegen"})
        if args.posegen_checkpoint:
            pose = load_posegen_checkpoint(stages, Path(args.posegen_checkpoint))
            training["posegen"] = {"trained": True, **pose}
            placeholders = frozenset()
    elif args.init == "zeros":
        stages = zero(stages)
        training = zeroed
        placeholders = frozenset({"audio_encoder", "s2l", "posegen"})
    elif args.init == "random":
        stages = randomize(stages, args.seed)
        training = f"untrained: random weights (seed {args.seed}), for tests and benchmarks"
    manifest = export_stages(stages, output, training, placeholders)
    if args.quantize:
        from spacelive.export.stages import quantize_int8

        to_quantize = tuple(n for n in manifest["stages"] if n not in placeholders)
        quantize_int8(output, to_quantize)
        manifest = json.loads((output / "manifest.json").read_text())
    print(json.dumps({n: s["file"] for n, s in manifest["stages"].items()}))
    return 0


def _export_s2l_beside_encoder(
    output: Path, stages, loaded: dict, provenance: dict, quantize: bool
):
    """Replace S2L in the model directory ``output``, which must hold the very encoder the
    checkpoint was trained on."""
    from spacelive.export.stages import quantize_int8, replace_stage
    from spacelive.motion.runners import ModelError

    manifest_path = output / "manifest.json"
    if not manifest_path.is_file():
        raise ModelError(
            f"{output} has no manifest.json: an S2L trained on a frozen encoder goes into the "
            "model directory that holds that encoder"
        )
    held = json.loads(manifest_path.read_text())["stages"]["audio_encoder"]["sha256"]
    if held != loaded["encoder"]["sha256"]:
        raise ModelError(
            f"{output}'s audio encoder (sha256 {held[:12]}) is not the one this S2L was trained "
            f"on ({loaded['encoder']['file']}, sha256 {loaded['encoder']['sha256'][:12]})"
        )
    trained = {"trained": True, **loaded, **provenance}
    manifest = replace_stage(output, "s2l", stages, trained)
    if quantize:
        quantize_int8(output, ("s2l",))
        manifest = json.loads(manifest_path.read_text())
    print(json.dumps({n: s["file"] for n, s in manifest["stages"].items()}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from spacelive.stream.engine import DEFAULT_MODELS

    parser = argparse.ArgumentParser(prog="spacelive", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    sub = parser.add_subparsers(dest="command", required=True)

    def engine_options(p):
        p.add_argument(
            "--models", default=str(DEFAULT_MODELS), help="directory from `spacelive export`"
        )
        p.add_argument("--backend", default="cpu", choices=["cpu", "cuda", "tensorrt"])
        p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per stage call")
        p.add_argument(
            "--renderer",
            default="numpy",
            choices=["numpy", "onnx"],
            help="numpy: OpenCV on the CPU (fastest there); onnx: its ONNX twin on --backend "
            "(for GPU hosts)",
        )

    serve = sub.add_parser("serve", help="run the websocket server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-sessions", type=int, default=8)
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="render processes (default: one per core; never more than --max-sessions)",
    )
    engine_options(serve)
    serve.set_defaults(run=_cmd_serve)

    stream = sub.add_parser("stream", help="stream a WAV to a server and record the result")
    _add_stream_options(stream)
    stream.add_argument(
        "--opus", type=int, metavar="BITS_PER_S", help="send Opus packets at this bitrate, not PCM"
    )
    stream.set_defaults(run=_cmd_stream)

    client = sub.add_parser("client", help="reference clients")
    client_sub = client.add_subparsers(dest="client", required=True)
    keypoints = client_sub.add_parser(
        "render-keypoints", help="stream a WAV in keypoint mode and render the video locally"
    )
    _add_stream_options(keypoints)
    keypoints.set_defaults(run=_cmd_client_render_keypoints)

    render = sub.add_parser("render", help="render offline, without a server")
    render.add_argument("image")
    render.add_argument("audio")
    render.add_argument("-o", "--output", required=True)
    _add_control_options(render)
    render.add_argument("--contact-sheet", help="also write a PNG grid of frames across the clip")
    engine_options(render)
    render.set_defaults(run=_cmd_render)

    data = sub.add_parser("data", help="training data")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    synth = data_sub.add_parser("synth", help="synthesize the speech corpus (training voices only)")
    synth.add_argument("--hours", type=float, required=True)
    synth.add_argument("--out", required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--shard-minutes", type=float, default=10.0)
    synth.set_defaults(run=_cmd_data_synth)

    train = sub.add_parser("train", help="train a stage (needs the train extra)")
    train_sub = train.add_subparsers(dest="stage", required=True)
    s2l = train_sub.add_parser("s2l", help="Speech2Landmarks on a synthetic corpus")
    _add_trainer_options(s2l, "s2l", "share of batches fed the model's own output", False)
    s2l.add_argument("--width", default="realtime", choices=["paper", "realtime", "tiny"])
    s2l.add_argument("--mouth-weight", type=float, help="loss weight of the mouth points")
    s2l.add_argument("--gap-weight", type=float, help="loss weight of the inner-lip gap")
    s2l.add_argument("--velocity-weight", type=float, help="weight of the velocity loss")
    s2l.add_argument(
        "--closure-weight", type=float, help="weight of a hinge on a gap the teacher closes"
    )
    s2l.add_argument(
        "--encoder-from",
        help="a model directory whose trained audio encoder S2L hears, frozen "
        "(default: train an encoder jointly from MFCC)",
    )
    s2l.set_defaults(run=_cmd_train_s2l)
    posegen = train_sub.add_parser(
        "posegen", help="PoseGen (head motion) on a synthetic corpus, hearing a trained encoder"
    )
    _add_trainer_options(
        posegen, "posegen", "share of batches fed the decoder's own previous poses", True
    )
    posegen.add_argument("--kl-weight", type=float, help="beta of the KL term")
    posegen.add_argument("--free-nats", type=float, help="KL per latent dimension not penalized")
    posegen.add_argument(
        "--prior-weight", type=float, help="weight of the prior-sample motion statistics loss"
    )
    posegen.set_defaults(run=_cmd_train_posegen)
    closure = train_sub.add_parser(
        "closure", help="the closure head (are the lips sealed?) on the bundled audio encoder"
    )
    closure.add_argument("--data", required=True, help="corpus folder from `spacelive data synth`")
    closure.add_argument("--models", default=str(DEFAULT_MODELS), help="model directory (written)")
    closure.add_argument("--steps", type=int, default=10_000)
    closure.add_argument("--seed", type=int, default=0)
    closure.add_argument(
        "--exclude-voices", help="engine:name,... training voices to leave out (for selection)"
    )
    closure.set_defaults(run=_cmd_train_closure)
    basis = train_sub.add_parser(
        "basis", help="fit the keypoint stream's motion basis to a model directory's S2L"
    )
    basis.add_argument("--data", required=True, help="corpus folder from `spacelive data synth`")
    basis.add_argument("--models", default=str(DEFAULT_MODELS), help="model directory (written)")
    basis.add_argument("--utterances", type=int, default=200)
    basis.add_argument("--components", type=int, default=40)
    basis.set_defaults(run=_cmd_train_basis)
    baseline = train_sub.add_parser(
        "baseline", help="fit the lip-sync evaluation's energy baseline on a training corpus"
    )
    baseline.add_argument("--data", required=True, help="corpus folder from `spacelive data synth`")
    baseline.add_argument("--recipe", help="how the corpus was made, recorded with the fit")
    baseline.set_defaults(run=_cmd_train_baseline)

    teach = sub.add_parser("teach", help="phoneme alignment -> per-frame landmark targets")
    teach.add_argument("--alignment", required=True)
    teach.add_argument("--format", required=True, choices=["pho", "flite", "tsv"])
    teach.add_argument("-o", "--output", required=True, help="targets .npz")
    teach.add_argument("--identity", help="portrait whose face shape to use (default: bundled)")
    teach.add_argument("--emotion", help="e.g. happy=0.7,surprised=0.3")
    teach.set_defaults(run=_cmd_teach)

    evaluation = sub.add_parser("eval", help="objective evaluations")
    eval_sub = evaluation.add_subparsers(dest="evaluation", required=True)
    eval_render = eval_sub.add_parser(
        "render", help="renderer checks with an independent detector; exits 1 if one fails"
    )
    eval_render.add_argument("--json", help="write every figure here")
    eval_render.add_argument("--sheets", help="folder for a contact sheet per portrait")
    eval_render.add_argument(
        "--portrait",
        action="append",
        help="astronaut, grace_hopper, barack_obama, ada_lovelace or an image path "
        "(repeatable; default: all)",
    )
    eval_render.add_argument(
        "--audio", help="speech for the mouth measures (default: held-out synthetic voices)"
    )
    eval_render.add_argument(
        "--seconds", type=float, default=8.0, help="length of the default held-out speech"
    )
    engine_options(eval_render)
    eval_render.set_defaults(run=_cmd_eval_render)

    eval_controls = eval_sub.add_parser(
        "controls", help="re-detect emotion, blinks and live control changes on rendered frames"
    )
    eval_controls.add_argument("--portrait", default="astronaut", help="standard name or a file")
    eval_controls.add_argument(
        "--audio", help="speech to drive it (default: held-out synthetic voices)"
    )
    eval_controls.add_argument("--blink-minutes", type=float, default=2.0)
    eval_controls.add_argument("--json", help="write every figure here")
    engine_options(eval_controls)
    eval_controls.set_defaults(run=_cmd_eval_controls)

    eval_lipsync = eval_sub.add_parser(
        "lipsync", help="streamed S2L against the teacher's targets, and the energy baseline"
    )
    eval_lipsync.add_argument("--audio", required=True)
    eval_lipsync.add_argument("--alignment", required=True)
    eval_lipsync.add_argument("--format", required=True, choices=["pho", "flite", "tsv"])
    eval_lipsync.add_argument("--json", help="write the metrics here")
    eval_lipsync.add_argument("--identity", help="portrait whose face shape to use")
    engine_options(eval_lipsync)
    eval_lipsync.set_defaults(run=_cmd_eval_lipsync)

    eval_phonetic = eval_sub.add_parser(
        "phonetic",
        help="do the lips meet on p, b, m (and stay open on open vowels)? on the model's "
        "landmarks and re-detected on the rendered frames",
    )
    eval_phonetic.add_argument("--audio", required=True)
    eval_phonetic.add_argument("--alignment", required=True)
    eval_phonetic.add_argument("--format", required=True, choices=["pho", "flite", "tsv"])
    eval_phonetic.add_argument("--image", help="portrait to render (default: the bundled one)")
    eval_phonetic.add_argument("--json", help="write the figures here")
    engine_options(eval_phonetic)
    eval_phonetic.set_defaults(run=_cmd_eval_phonetic)

    bench = sub.add_parser("bench", help="benchmarks (JSON + PNG under benchmarks/results/)")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    latency = bench_sub.add_parser(
        "latency", help="N real-time websocket clients in their own processes"
    )
    latency.add_argument("--sessions", type=int, default=1)
    latency.add_argument("--threads", type=int, default=1, help="the server's ORT threads")
    throughput = bench_sub.add_parser(
        "throughput", help="the most sessions that each hold 30 fps, p99 <= 300 ms, no drops"
    )
    throughput.add_argument("--max-sessions", type=int, default=8)
    for parser_ in (latency, throughput):
        parser_.add_argument("--seconds", type=float, default=60.0)
        parser_.add_argument("--models", help="model directory (default: the bundled ones)")
        parser_.add_argument("--label", default="default")
    latency.set_defaults(run=_cmd_bench_latency)
    throughput.set_defaults(run=_cmd_bench_throughput)
    stages = bench_sub.add_parser(
        "stages", help="ms per frame per stage, ONNX Runtime vs torch eager (needs torch)"
    )
    stages.add_argument("--frames", type=int, default=300)
    stages.add_argument("--label", default="default")
    stages.set_defaults(run=_cmd_bench_stages)

    export = sub.add_parser("export", help="export the stages to ONNX (needs the train extra)")
    export.add_argument("--width", default="realtime", choices=["paper", "realtime", "tiny"])
    export.add_argument(
        "--init",
        default="fresh",
        choices=["fresh", "zeros", "random"],
        help="fresh: initialised, heads at zero; zeros: all-zero placeholder; "
        "random: random weights everywhere (tests, benchmarks)",
    )
    export.add_argument("--seed", type=int, default=0)
    export.add_argument(
        "--s2l-checkpoint",
        help="a `spacelive train s2l` checkpoint to export "
        "(audio encoder + S2L; the other stages stay placeholders)",
    )
    export.add_argument(
        "--posegen-checkpoint",
        help="a `spacelive train posegen` checkpoint: with --s2l-checkpoint, exported beside it; "
        "alone, it replaces PoseGen in the existing model directory -o",
    )
    export.add_argument("--provenance", help="JSON with data recipe and metrics for the manifest")
    export.add_argument(
        "--quantize",
        action="store_true",
        help="dynamic int8 weights for the trained stages (smaller, CPU-faster)",
    )
    export.add_argument(
        "--backend",
        default="onnx",
        choices=["onnx", "tensorrt"],
        help="onnx: write the step graphs to -o; tensorrt: build TensorRT engines (fp16, a "
        "batch profile, cached per GPU and TensorRT version) for the graphs in --models",
    )
    export.add_argument("--models", help="with --backend tensorrt: the model directory")
    export.add_argument("-o", "--output", help="the model directory to write (--backend onnx)")
    export.set_defaults(run=_cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level, args.log_json)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, RuntimeError) as exc:
        # Bad input (an alignment, a portrait, a model directory): its message, no traceback.
        # The modules are imported here only if they raised, so this costs nothing otherwise.
        from spacelive.export.tensorrt import TensorRTError
        from spacelive.face.analysis import PortraitError
        from spacelive.motion.runners import ModelError
        from spacelive.training.alignment import AlignmentError

        if not isinstance(exc, (AlignmentError, PortraitError, ModelError, TensorRTError)):
            raise
        print(f"spacelive {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
