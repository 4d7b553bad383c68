"""``rttag bench``: speed and memory of models side by side, measured in one run.

Each model is measured in its own subprocess (so peak memory is its own) on the same audio,
through the same streaming path as ``rttag tag``:

* ``load_ms``      — onnxruntime session creation (ms);
* ``call_us``      — one model call with T=1 (median and 99th percentile, µs);
* ``batch16_fps``  — frames per second with 16 streams stacked on the batch axis, T=1;
* ``cpu_ms_per_s`` — CPU time of the whole pipeline (frontend + model + smoother) per second
  of audio, and its parts; ``rtf`` = wall time / audio time;
* ``peak_rss_mb``  — peak resident memory of the subprocess.

The external peer silero-vad (speech only; its ONNX file from the ``silero-vad`` package)
is measured the same way where it is installed: per call of 512 samples (32 ms, so 3.2
rttag frames) and CPU per second of audio.

Figures depend on the machine and its load; compare the ratios printed beside them, which
come from the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .errors import RttagError

DEMO_WAV = Path(__file__).resolve().parent / "assets" / "demo.wav"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="crnn,frame-mlp,context-cnn,silero-vad",
                        help="comma list of names in models/, paths to .onnx files, or silero-vad (the peer)")
    parser.add_argument("--audio", default=str(DEMO_WAV), help="audio file, repeated to --seconds")
    parser.add_argument("--seconds", type=float, default=120.0, help="seconds of audio per model")
    parser.add_argument("--calls", type=int, default=2000, help="timed single-frame calls per model")
    parser.add_argument("--providers", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--json", help="write every figure to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)


def _cpu() -> float:
    return time.process_time()


def measure(model_path: str, audio: str, seconds: float, calls: int, providers: str) -> dict:
    """All figures for one model in this process (see the module docstring)."""
    import soundfile as sf

    from .frontend import LogMelFrontend
    from .runtime import OnnxModel
    from .smoother import Smoother

    t0 = time.perf_counter()
    model = OnnxModel(model_path, providers=providers)
    load_ms = (time.perf_counter() - t0) * 1e3
    info = model.info
    fp = info.frontend
    y, sr = sf.read(audio, dtype="float32", always_2d=True)
    if sr != fp.sample_rate:
        raise RttagError(f"bench: {audio} is {sr} Hz; the model wants {fp.sample_rate} Hz")
    y = np.resize(y.mean(axis=1), int(seconds * sr))

    frontend = LogMelFrontend(fp)
    c0 = _cpu()
    feats = np.concatenate([frontend.push(y[i:i + 1600]) for i in range(0, len(y), 1600)])
    fe_cpu = _cpu() - c0

    state = model.zero_state(1)
    per_call = np.empty(min(calls, len(feats)))
    probs = []
    c0 = _cpu()
    for i in range(len(feats)):
        t = time.perf_counter()
        p, state = model.step(feats[None, i:i + 1], state)
        if i < len(per_call):
            per_call[i] = time.perf_counter() - t
        probs.append(p[0])
    model_cpu = _cpu() - c0
    all_probs = np.concatenate(probs)

    state16 = model.zero_state(16)
    n16 = min(500, len(feats))
    batch = np.repeat(feats[None, :n16], 16, axis=0)
    t = time.perf_counter()
    for i in range(n16):
        _, state16 = model.step(batch[:, i:i + 1], state16)
    batch16_fps = 16 * n16 / (time.perf_counter() - t)

    smoother = Smoother(info.labels, info.smoother, "bench", fp.hop_length / sr, 0.0, 0.0)
    c0 = _cpu()
    n_events = sum(1 for _ in smoother.update(all_probs, feats))
    sm_cpu = _cpu() - c0

    from .capture import FileSource
    from .pipeline import Pipeline

    tmp = Path(f"/tmp/rttag-bench-{Path(model_path).stem}.wav")
    sf.write(tmp, y, sr)
    events = []
    c0, t0 = _cpu(), time.perf_counter()
    Pipeline(model, info.smoother, events.append).run(FileSource(str(tmp), sr, 1600))
    pipe_cpu, pipe_wall = _cpu() - c0, time.perf_counter() - t0
    tmp.unlink()

    audio_s = len(y) / sr
    return {
        "model": info.name, "arch": info.arch, "params": info.params, "provider": model.provider,
        "file_kb": round(Path(model_path).stat().st_size / 1024, 1), "load_ms": round(load_ms, 1),
        "call_us_median": round(float(np.median(per_call)) * 1e6, 1),
        "call_us_p99": round(float(np.percentile(per_call, 99)) * 1e6, 1),
        "batch16_fps": round(batch16_fps),
        "cpu_ms_per_s": {"pipeline": round(pipe_cpu / audio_s * 1e3, 2), "frontend": round(fe_cpu / audio_s * 1e3, 2),
                         "model": round(model_cpu / audio_s * 1e3, 2), "smoother": round(sm_cpu / audio_s * 1e3, 2)},
        "rtf": round(pipe_wall / audio_s, 4), "events_per_min": round(n_events / audio_s * 60, 1),
        "audio_s": audio_s, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def measure_silero(audio: str, seconds: float, calls: int) -> dict:
    """silero-vad figures in this process (CPU provider, one thread)."""
    import soundfile as sf

    from .silero_peer import CHUNK, SileroVad

    t0 = time.perf_counter()
    vad = SileroVad()
    load_ms = (time.perf_counter() - t0) * 1e3
    y, sr = sf.read(audio, dtype="float32", always_2d=True)
    y = np.resize(y.mean(axis=1), int(seconds * sr))
    short = y[: CHUNK * min(calls, len(y) // CHUNK)]
    t = time.perf_counter()
    vad.speech_probs([short])
    call_s = (time.perf_counter() - t) / max(1, len(short) // CHUNK)
    c0, t0 = _cpu(), time.perf_counter()
    vad.speech_probs([y])
    cpu, wall = _cpu() - c0, time.perf_counter() - t0
    t = time.perf_counter()
    vad.speech_probs([y[: 16 * CHUNK * 100]] * 16)
    batch16 = 16 * 100 * 16 * CHUNK / sr / 0.01 / (time.perf_counter() - t)  # in 10 ms frames/s
    audio_s = len(y) / sr
    return {"model": "silero-vad", "arch": "peer", "params": 0, "provider": "CPUExecutionProvider",
            "file_kb": round(vad.path.stat().st_size / 1024, 1), "load_ms": round(load_ms, 1),
            "call_us_median": round(call_s * 1e6, 1), "call_us_p99": float("nan"), "batch16_fps": round(batch16),
            "cpu_ms_per_s": {"pipeline": round(cpu / audio_s * 1e3, 2)}, "rtf": round(wall / audio_s, 4),
            "audio_s": audio_s, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def run(args: argparse.Namespace) -> int:
    if args.worker == "silero-vad":
        print(json.dumps(measure_silero(args.audio, args.seconds, args.calls)))
        return 0
    if args.worker:
        print(json.dumps(measure(args.worker, args.audio, args.seconds, args.calls, args.providers)))
        return 0
    from .runtime import model_file

    if not Path(args.audio).is_file():
        raise RttagError(f"bench: no audio file {args.audio}")
    results = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        path = name if name == "silero-vad" else model_file(name)
        print(f"rttag bench: {name} …", file=sys.stderr)
        proc = subprocess.run([sys.executable, "-m", "rttag", "bench", "--worker", str(path), "--audio", args.audio,
                               "--seconds", str(args.seconds), "--calls", str(args.calls),
                               "--providers", args.providers], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RttagError(f"bench: {name} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
        results.append({"name": name, **json.loads(proc.stdout)})
    base = results[0]
    # the name and ratio columns widen to fit paths such as runs/x/model.onnx
    name_w = max(14, max(len(r["name"]) for r in results) + 2)
    ratio_label = "× " + base["name"]
    ratio_w = max(14, len(ratio_label) + 2)
    header = f"{'model':<{name_w}}{'params':>9}{'KB':>8}{'load ms':>9}{'call µs':>9}{'p99 µs':>9}{'16×fps':>9}" \
             f"{'cpu ms/s':>10}{ratio_label:>{ratio_w}}{'rtf':>8}{'RSS MB':>8}"
    print(header)
    for r in results:
        ratio = r["cpu_ms_per_s"]["pipeline"] / base["cpu_ms_per_s"]["pipeline"]
        print(f"{r['name']:<{name_w}}{r['params']:>9}{r['file_kb']:>8}{r['load_ms']:>9}{r['call_us_median']:>9}"
              f"{r['call_us_p99']:>9}{r['batch16_fps']:>9}{r['cpu_ms_per_s']['pipeline']:>10}{ratio:>{ratio_w}.2f}"
              f"{r['rtf']:>8}{r['peak_rss_mb']:>8}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0
