"""Long-stream drift check: ``python -m rttag.train.drift [--model models/crnn.onnx] [--data data]``.

A model trained on short clips may let its recurrent state drift over hours. This check
chains test-split recordings into one ``--minutes`` long stream (default 60) and runs the
ONNX model over it exactly as the daemon does: streaming log-mel, state carried, never reset,
then the model's own smoother (metadata ``smoother`` block). The chain is built so that the
**first and the last window hold the same recordings**: the files that fill the first
``--window`` minutes are played again at the end (the middle is the other test files, cycled
if the split is short); the "last" window is the ``--window`` minutes from where that replay
starts. The two windows thus differ only in how long the model has been running.

Reported per window (JSON on stdout; a summary on stderr):

* false positives per minute: smoothed events that overlap no reference event of their label;
* the same for the recordings run one by one from a zero state (what a fresh stream sees);
* mean probability on reference-negative frames.

Exit status 1 when the last window has more false positives per minute than the first
(``RttagError`` otherwise-style failures exit 2 through the usual one-line error).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import numpy as np

from ..errors import RttagError
from ..evaluate import FrameTiming, load_split, smooth
from ..frontend import LogMelFrontend
from ..runtime import OnnxModel
from .features import read_audio

log = logging.getLogger(__name__)

CHUNK_FRAMES = 1000
"""Frames per model call (10 s); the contract makes the result independent of this."""


def chain_order(durations: dict[str, float], minutes: float, window: float) -> tuple[list[str], int]:
    """File names in play order — the files filling the first ``window`` minutes, then the
    others (cycled) up to ``minutes − window``, then the first window's files again — and
    the number of files in that first group."""
    names = sorted(durations)
    head, t = [], 0.0
    while t < 60 * window and len(head) < len(names):
        head.append(names[len(head)])
        t += durations[head[-1]]
    rest = [n for n in names if n not in head] or head
    middle, k = [], 0
    while t < 60 * (minutes - window):
        middle.append(rest[k % len(rest)])
        t += durations[middle[-1]]
        k += 1
    return head + middle + head, len(head)


def run_stream(model: OnnxModel, signals: list[np.ndarray], carry: bool) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities ``[T, C]`` and log-mel frames ``[T, n_mels]`` of the signals played back
    to back through the streaming frontend (one frontend for the whole chain, so both modes
    share one frame timeline); with ``carry`` the model state runs on across recordings,
    otherwise it restarts from zero at each one."""
    frontend = LogMelFrontend(model.info.frontend)
    state = model.zero_state()
    out, frames = [], []
    for x in signals:
        if not carry:
            state = model.zero_state()
        feats = frontend.push(x)
        frames.append(feats)
        for a in range(0, len(feats), CHUNK_FRAMES):
            p, state = model.step(feats[None, a:a + CHUNK_FRAMES], state)
            out.append(p[0])
    return np.concatenate(out), np.concatenate(frames)


def false_positives(detections, reference: list[tuple[float, float, str]]) -> list[float]:
    """Onsets (s) of detections that overlap no reference event of their label."""
    by_label: dict[str, list[tuple[float, float]]] = {}
    for on, off, label in reference:
        by_label.setdefault(label, []).append((on, off))
    return [d.onset for d in detections
            if not any(on < d.offset and d.onset < off for on, off in by_label.get(d.label, []))]


def window_stats(fp_onsets: list[float], probs: np.ndarray, negative: np.ndarray, timing: FrameTiming,
                 start_s: float, end_s: float) -> dict:
    """False positives per minute and mean negative-frame probability in ``[start_s, end_s)``."""
    fp = np.asarray(fp_onsets)
    n_fp = int(((fp >= start_s) & (fp < end_s)).sum())
    centres = timing.centre0_s + np.arange(len(probs)) * timing.hop_s
    sel = (centres >= start_s) & (centres < end_s)
    neg = probs[sel][negative[sel]]
    return {"from_min": round(start_s / 60, 2), "to_min": round(end_s / 60, 2),
            "fp_per_min": round(n_fp / ((end_s - start_s) / 60), 3),
            "mean_p_negative": round(float(neg.mean()) if neg.size else 0.0, 5)}


def check(model_path: str, data: str, minutes: float, window: float) -> dict:
    """Run the drift check; returns the JSON-able report."""
    model = OnnxModel(model_path, providers="cpu", threads=1)
    info = model.info
    split = load_split(data, "test", info.labels)
    order, n_head = chain_order(split.durations, minutes, window)
    hop = info.frontend.hop_length
    # Each recording padded with silence to a whole number of hops (< 10 ms), so every
    # recording starts on the frame grid and its replay yields the very same frames.
    signals = [np.pad(x, (0, -len(x) % hop)) for x in
               (read_audio(split.paths[n], info.frontend.sample_rate) for n in order)]
    starts = np.cumsum([0] + [len(x) for x in signals]) / info.frontend.sample_rate
    total_s = float(starts[-1])
    reference = [(s + e.onset, s + e.offset, e.label) for s, n in zip(starts, order) for e in split.reference[n]]
    timing = FrameTiming.of_frontend(info.frontend)
    replay_s = float(starts[len(order) - n_head])  # where the first window's recordings play again
    log.info("%s over %.1f min of chained test audio (%d recordings)", info.name, total_s / 60, len(order))

    centres = timing.centre0_s + np.arange(int(total_s * 100) + 1) * timing.hop_s
    runs = {}
    for mode, carry in (("chained", True), ("reset_per_file", False)):
        probs, logmel = run_stream(model, signals, carry)
        c = centres[: len(probs)]
        negative = np.ones(probs.shape, bool)
        for on, off, label in reference:
            negative[(c >= on) & (c < off), info.labels.index(label)] = False
        detections = smooth(probs, info.labels, info.smoother, timing, total_s, logmel)
        fps = false_positives(detections, reference)
        edges = np.arange(0.0, total_s + 1e-9, 60 * window)
        edges = np.append(edges[:-1], total_s) if total_s - edges[-1] < 60 else np.append(edges, total_s)
        runs[mode] = {"events": len(detections), "false_positives": len(fps),
                      "windows": [window_stats(fps, probs, negative, timing, a, b) for a, b in zip(edges[:-1], edges[1:])]}
        runs[mode]["first"] = window_stats(fps, probs, negative, timing, 0.0, 60 * window)
        runs[mode]["last"] = window_stats(fps, probs, negative, timing, replay_s, replay_s + 60 * window)
    first, last = runs["chained"]["first"], runs["chained"]["last"]
    return {"model": str(model_path), "name": info.name, "smoother": dataclasses.asdict(info.smoother),
            "minutes": round(total_s / 60, 2), "window_min": window,
            "recordings": len(order), "same_audio_in_first_and_last_window": True, **runs,
            "pass": last["fp_per_min"] <= first["fp_per_min"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rttag.train.drift", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/crnn.onnx", help="ONNX model (default models/crnn.onnx)")
    parser.add_argument("--data", default="data", help="dataset folder with a test split (default data)")
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the chained stream (default 60)")
    parser.add_argument("--window", type=float, default=10.0, help="first/last window length, minutes (default 10)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="drift: %(message)s")
    if args.minutes < 2 * args.window:
        parser.error("--minutes must be at least twice --window")
    try:
        report = check(args.model, args.data, args.minutes, args.window)
    except RttagError as exc:
        print(f"rttag: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1))
    for mode in ("chained", "reset_per_file"):
        r = report[mode]
        log.info("%s: false positives/min first %g min: %.2f, last %g min: %.2f; mean p on negatives %.4f → %.4f",
                 mode, args.window, r["first"]["fp_per_min"], args.window, r["last"]["fp_per_min"],
                 r["first"]["mean_p_negative"], r["last"]["mean_p_negative"])
    log.info("%s", "PASS: no more false positives at the end than at the start" if report["pass"]
             else "FAIL: more false positives in the last window than in the first")
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
