"""Dataset split (DCASE layout) → log-mel features and frame labels, cached on disk.

Layout (written by ``rttag data build``)::

    DIR/audio/SPLIT/*.wav                      mono recordings (resampled here if not 16 kHz)
    DIR/metadata/SPLIT.tsv                     filename  onset  offset  event_label (seconds)

Features are ``LogMelFrontend(params).offline(signal)`` — exactly what the streaming frontend
produces. All files of a split are concatenated into one array; ``clips`` says where each
file's frames are. The features are cached under ``~/.cache/rttag/features`` (key: data
directory, split, frontend parameters, file names/sizes/mtimes), so they are computed once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RttagError
from ..evaluate import read_reference
from ..frontend import FrontendParams, LogMelFrontend
from ..workers import die_with_parent

log = logging.getLogger(__name__)

CACHE = Path(os.environ.get("RTTAG_CACHE", Path.home() / ".cache" / "rttag")) / "features"
ONSET_S = 0.2
"""Frames within this many seconds after a reference onset are 'onset frames' (extra loss weight)."""
TAIL_S = 0.3
"""Inactive frames within this many seconds after a reference offset are 'tail frames' (extra
loss weight with ``rttag train --offset-weight``)."""


@dataclass
class SplitData:
    """One split. feats float32 ``[N, n_mels]``; labels / onsets / tails uint8 ``[N, n_classes]``;
    clips: (file name, first frame, end frame) per file, in file-name order; events: per file
    name, the reference events (onset s, offset s, label index)."""

    feats: np.ndarray
    labels: np.ndarray
    onsets: np.ndarray
    tails: np.ndarray
    clips: list[tuple[str, int, int]]
    events: dict[str, list[tuple[float, float, int]]]

    @property
    def hours(self) -> float:
        return len(self.feats) * 0.01 / 3600


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Mono float32 samples of an audio file at ``sample_rate`` Hz."""
    import soundfile as sf
    import soxr

    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, OSError) as exc:
        raise RttagError(f"cannot read audio {path}: {exc}") from None
    x = x.mean(axis=1)
    return x if sr == sample_rate else soxr.resample(x, sr, sample_rate).astype(np.float32)


def read_events(tsv: Path, labels: list[str]) -> dict[str, list[tuple[float, float, int]]]:
    """Reference events per file name from a DCASE metadata TSV as (onset s, offset s, label
    index); unknown labels are an error (:func:`rttag.evaluate.read_reference`)."""
    return {name: [(e.onset, e.offset, labels.index(e.label)) for e in evs]
            for name, evs in read_reference(tsv, labels).items()}


def _logmel(args: tuple[str, dict]) -> np.ndarray:
    path, params = args
    p = FrontendParams.from_dict(params)
    return LogMelFrontend(p).offline(read_audio(path, p.sample_rate))


def frame_targets(n: int, events: list[tuple[float, float, int]], n_classes: int,
                  params: FrontendParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, onset marks and tail marks ``[n, n_classes]`` uint8: frame i (centre (i*hop +
    n_fft/2)/sr) is active for an event when onset ≤ centre < offset, an onset frame when also
    centre < onset + ONSET_S, and a tail frame of the event when offset ≤ centre < offset +
    TAIL_S and no event of the same class is active there."""
    centre = (np.arange(n) * params.hop_length + params.n_fft / 2) / params.sample_rate
    labels = np.zeros((n, n_classes), np.uint8)
    onsets = np.zeros((n, n_classes), np.uint8)
    tails = np.zeros((n, n_classes), np.uint8)
    for on, off, k in events:
        labels[(centre >= on) & (centre < off), k] = 1
        onsets[(centre >= on) & (centre < min(off, on + ONSET_S)), k] = 1
        tails[(centre >= off) & (centre < off + TAIL_S), k] = 1
    tails[labels == 1] = 0
    return labels, onsets, tails


def load_split(data_dir: str | Path, split: str, labels: list[str], params: FrontendParams = FrontendParams(),
               workers: int = 2) -> SplitData:
    """Features and targets of ``data_dir``'s ``split`` (computed once, then read from the cache)."""
    audio_dir, tsv = Path(data_dir) / "audio" / split, Path(data_dir) / "metadata" / f"{split}.tsv"
    if not tsv.is_file() or not audio_dir.is_dir():
        raise RttagError(f"{data_dir}: no {split} split (need {audio_dir}/ and {tsv})")
    files = sorted(p for p in audio_dir.iterdir() if p.suffix.lower() in (".wav", ".flac"))
    if not files:
        raise RttagError(f"{audio_dir}: no audio files")
    events = read_events(tsv, labels)
    stats = [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in files]
    key = hashlib.sha1(json.dumps([str(audio_dir.resolve()), params.to_dict(), stats]).encode()).hexdigest()[:16]
    cache = CACHE / f"{split}-{key}"
    if (cache / "feats.npy").is_file():
        feats = np.load(cache / "feats.npy")
        lengths = json.loads((cache / "lengths.json").read_text())
    else:
        log.info("computing log-mel features of %d %s files (cached in %s)", len(files), split, cache)
        with ProcessPoolExecutor(max(1, workers), initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
            parts = list(pool.map(_logmel, [(str(p), params.to_dict()) for p in files], chunksize=8))
        lengths = [len(x) for x in parts]
        feats = np.concatenate(parts).astype(np.float32)
        # written under temporary names and renamed, feats.npy last: a training started beside
        # this one never reads a half-written cache
        cache.mkdir(parents=True, exist_ok=True)
        tmp = f".{os.getpid()}.tmp"
        (cache / f"lengths.json{tmp}").write_text(json.dumps(lengths))
        with open(cache / f"feats.npy{tmp}", "wb") as f:
            np.save(f, feats)
        os.replace(cache / f"lengths.json{tmp}", cache / "lengths.json")
        os.replace(cache / f"feats.npy{tmp}", cache / "feats.npy")
    clips, targets = [], []
    start = 0
    for path, n in zip(files, lengths):
        targets.append(frame_targets(n, events.get(path.name, []), len(labels), params))
        clips.append((path.name, start, start + n))
        start += n
    ys, os_, ts = (np.concatenate(t) for t in zip(*targets))
    return SplitData(feats, ys, os_, ts, clips,
                     {p.name: events.get(p.name, []) for p in files})
