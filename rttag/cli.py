"""Command line: ``rttag listen | tag | devices | export | train | data | eval | bench``.

stdout carries only events (JSON Lines); logs and notes go to stderr. Errors a user can
cause end in one ``rttag: error: …`` line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import signal
import sys
from pathlib import Path

from . import __version__
from .errors import RttagError

log = logging.getLogger("rttag")

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_WAV = PACKAGE_DIR / "assets" / "demo.wav"
EXIT_SIGPIPE = 141


def _model_file(text: str) -> str:
    """The ``model`` key / ``--model``: an ONNX file, or the bare name of a shipped model when no
    such file exists (``--model context-cnn`` runs ``models/context-cnn.onnx``)."""
    from .runtime import shipped_model_path

    if text.endswith(".onnx") or "/" in text or Path(text).exists():
        return text
    shipped = shipped_model_path(text)
    return str(shipped) if shipped.is_file() else text


def db_range(flag: str, text: str) -> tuple[float, float]:
    """A ``LOW,HIGH`` option in dB (``rttag train --reverb-db / --mix-db``, ``rttag data build
    --train-ebr-db``) → (low, high)."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise RttagError(f"{flag} {text}: expected LOW,HIGH in dB, such as -12,-3") from None
    if low > high:
        raise RttagError(f"{flag} {text}: LOW is above HIGH")
    return low, high


def _device_arg(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def _add_stream_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("streaming (each overrides the config key named in brackets)")
    g.add_argument("--config", help="YAML config file (default: $RTTAG_CONFIG or ~/.config/rttag/config.yaml)")
    g.add_argument("--model",
                   help="ONNX model file, or a shipped model's name: crnn, context-cnn, frame-mlp [model]; "
                        "default: the shipped crnn")
    g.add_argument("--providers", choices=("auto", "cpu", "cuda"), help="execution provider [providers]")
    g.add_argument("--threads", type=int, help="onnxruntime threads [threads]")
    g.add_argument("--block-size", type=int, help="samples per read block [block_size]")
    g.add_argument("--frames-per-call", type=int, help="frames per model call, T [frames_per_call]")
    g.add_argument("--ring-seconds", type=float, help="ring buffer capacity in s [ring_seconds]")
    g.add_argument("--stream", help="stream name in events [stream]")
    g.add_argument("--state-reset", type=float, dest="state_reset_s", help="zero model state every S s, 0 = never [state_reset_s]")
    g.add_argument("--on-threshold", type=float, help="on threshold for every class [smoother.on_threshold]")
    g.add_argument("--off-threshold", type=float, help="off threshold for every class [smoother.off_threshold]")
    g.add_argument("--min-on", type=float, dest="min_on_s", help="minimum event duration, s [smoother.min_on_s]")
    g.add_argument("--min-off", type=float, dest="min_off_s", help="minimum gap between events, s [smoother.min_off_s]")
    g.add_argument("--onset-lag", type=float, dest="onset_lag_s", help="back-date onsets by s [smoother.onset_lag_s]")
    g.add_argument("--offset-lag", type=float, dest="offset_lag_s",
                   help="back-date offsets by s [smoother.offset_lag_s]")
    g.add_argument("--offset-excess", type=float, dest="offset_excess_db",
                   help="end events where the sound's level above the background falls under this many dB, "
                   "0 = by --offset-lag only [smoother.offset_excess_db]")
    g.add_argument("--dominance", type=float, dest="dominance",
                   help="start an event only while its probability is at least this times every other class's, "
                   "0 = off [smoother.dominance]")
    g.add_argument("--no-smoother", action="store_true", help="raw per-frame thresholding [smoother.enabled: false]")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rttag", description="Real-time audio tagging: JSON Lines on/off events on stdout.")
    parser.add_argument("--version", action="version", version=f"rttag {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("listen", help="tag a live input device until stopped")
    p.add_argument("--device", type=_device_arg, help="input device index or name [device]; default: system default input")
    _add_stream_options(p)

    p = sub.add_parser("tag", help="tag recordings through the same streaming path")
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files; '-' reads WAV or raw s16le from stdin")
    p.add_argument("--realtime", action="store_true", help="pace input at real time")
    p.add_argument("--raw-rate", type=int, default=16000, help="sample rate of raw s16le mono on stdin (Hz)")
    _add_stream_options(p)

    sub.add_parser("devices", help="list input devices")

    for name, module, help_ in (("export", "rttag.train.export", "PyTorch checkpoint → ONNX (+ parity check)"),
                                ("train", "rttag.train.train", "train a model on a built dataset"),
                                ("eval", "rttag.evaluate", "evaluate models against the reference on a split"),
                                ("tune", "rttag.tune", "tune the smoother per class on validation, into the model's metadata"),
                                ("bench", "rttag.bench", "measure speed and memory of models side by side")):
        p = sub.add_parser(name, help=help_, add_help=False)  # the module's own parser answers --help
        p.set_defaults(module=module, deferred=True)
    p = sub.add_parser("data", help="dataset commands")
    dsub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    for name, module, help_ in (("build", "rttag.dataset.build", "fetch sources and mix the dataset"),
                                ("demo", "rttag.dataset.demo", "make the bundled demo clip"),
                                ("degrade", "rttag.dataset.degrade",
                                 "copy a split with every file heard through a fixed room or microphone condition"),
                                ("others", "rttag.dataset.others",
                                 "write recordings of none of the labels, played one by one, to count false events on")):
        d = dsub.add_parser(name, help=help_, add_help=False)
        d.set_defaults(module=module, deferred=True)
    return parser


def _resolve_config(args):
    from . import config as cfg
    from .smoother import FIELDS as SMOOTHER_FIELDS

    conf = cfg.load(args.config)
    flags = {k: getattr(args, k) for k in ("model", "providers", "threads", "block_size", "frames_per_call",
                                            "ring_seconds", "stream", "state_reset_s") if getattr(args, k, None) is not None}
    if getattr(args, "device", None) is not None:
        flags["device"] = args.device
    sm = {k: getattr(args, k) for k in SMOOTHER_FIELDS
          if getattr(args, k, None) is not None}
    if args.no_smoother:
        sm["enabled"] = False
    if sm:
        flags["smoother"] = sm
    return cfg.apply(conf, flags, "command line")


def _run_streams(args, sources_factory) -> int:
    from .events import JsonlSink, SinkClosed
    from .model_config import load_model, smoother_params
    from .pipeline import Pipeline
    from .runtime import shipped_model_path

    conf = _resolve_config(args)
    if conf.model:
        conf = dataclasses.replace(conf, model=_model_file(conf.model))
    model = load_model(conf, shipped_model_path())
    sink = JsonlSink()
    pipeline = Pipeline(model, smoother_params(conf, model.info), sink.write, block_size=conf.block_size,
                        frames_per_call=conf.frames_per_call, ring_seconds=conf.ring_seconds,
                        state_reset_s=conf.state_reset_s)

    def stop(signum, _frame):
        log.info("signal %d: stopping", signum)
        pipeline.stop_requested.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for source in sources_factory(conf, model.info.frontend.sample_rate):
            for note in source.notes():
                log.warning("%s", note)
            pipeline.run(source, stream=conf.stream)
            if pipeline.stop_requested.is_set():
                break
    except SinkClosed:
        return EXIT_SIGPIPE
    return 0


def cmd_listen(args) -> int:
    from .capture import FileSource, MicSource, default_input_device

    def sources(conf, sr):
        if conf.device is None and default_input_device() is None:
            log.warning("no input device found; streaming the bundled demo recording %s in real time instead", DEMO_WAV)
            yield FileSource(str(DEMO_WAV), sr, conf.block_size, realtime=True)
            return
        yield MicSource(conf.device, sr, conf.block_size)

    return _run_streams(args, sources)


def cmd_tag(args) -> int:
    from .capture import FileSource, StdinSource

    def sources(conf, sr):
        for path in args.files:
            if path == "-":
                yield StdinSource(sr, conf.block_size, args.raw_rate, realtime=args.realtime)
            else:
                yield FileSource(path, sr, conf.block_size, realtime=args.realtime)

    return _run_streams(args, sources)


def cmd_devices(args) -> int:
    from .capture import list_input_devices

    devices = list_input_devices()
    if not devices:
        print("no input devices", file=sys.stderr)
        return 1
    for d in devices:
        mark = "*" if d["default"] else " "
        print(f"{mark} {d['index']:3d}  {d['name']}  ({d['channels']} ch, {d['default_samplerate']:.0f} Hz)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    level = logging.INFO - 10 * args.verbose + 10 * args.quiet
    logging.basicConfig(level=max(logging.DEBUG, min(logging.CRITICAL, level)), stream=sys.stderr,
                        format="rttag: %(message)s")
    try:
        if getattr(args, "deferred", False):
            try:
                module = importlib.import_module(args.module)
            except ImportError as exc:
                raise RttagError(f"'{args.command}' needs extra packages ({exc.name} is missing); "
                                 "install with: pip install 'rttag[train]'") from None
            sub = argparse.ArgumentParser(prog=f"rttag {args.command}" + (f" {args.data_command}" if args.command == "data" else ""))
            module.add_arguments(sub)
            return module.run(sub.parse_args(rest))
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return {"listen": cmd_listen, "tag": cmd_tag, "devices": cmd_devices}[args.command](args)
    except RttagError as exc:
        print(f"rttag: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
