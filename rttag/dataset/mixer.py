"""Numpy soundscape mixer: a background plus 1–4 labelled events, with augmentation; optionally
unlabelled distractor events (sounds of none of the labels) on top.

All audio is float32 mono at 16 kHz. Event boundaries in the reference are where the
(silence-trimmed) event audio starts and ends in the mix, to the sample.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

SR = 16000
DISTRACTOR = "distractor"
"""The label under which a clip's ``used`` list records its distractors (sounds of none of the
labels, mixed in without reference rows; ``rttag data build --distractors``); also the label of
the distractor list's rows."""


@dataclass
class Pool:
    """Decoded recordings of one label in one split: ``clips[i]`` is float32 ``[n]``,
    ``ids[i]`` its (package, path); ``weights[i]`` its chance of being picked (None: equal)."""

    clips: list
    ids: list
    weights: list | None = None

    def joined(self, other: "Pool", other_share: float) -> "Pool":
        """Both pools as one, ``other`` picked with total probability ``other_share``."""
        if not self.clips or not other.clips:
            return Pool(self.clips + other.clips, self.ids + other.ids)
        w = [(1 - other_share) / len(self.clips)] * len(self.clips) + [other_share / len(other.clips)] * len(other.clips)
        return Pool(self.clips + other.clips, self.ids + other.ids, w)

    def per_package(self) -> "Pool":
        """The same clips, each package picked with an equal total chance (split evenly among its
        clips), so that a package with many files does not drown one with few."""
        counts = Counter(pkg for pkg, _ in self.ids)
        if len(counts) < 2:
            return self
        return Pool(self.clips, self.ids, [1.0 / (len(counts) * counts[pkg]) for pkg, _ in self.ids])


@dataclass
class MixSettings:
    """Ranges are (low, high), sampled uniformly. dB values are RMS ratios."""

    clip_s: tuple = (10.0, 30.0)
    events: tuple = (1, 4)
    ebr_db: tuple = (-5.0, 20.0)
    background_dbfs: tuple = (-55.0, -25.0)
    mix_dbfs: tuple = (-38.0, -14.0)
    p_lowpass: float = 0.3
    p_highpass: float = 0.2
    p_reverb: float = 0.3
    p_speed: float = 0.5
    p_no_background: float = 0.1
    p_distractors: float = 0.0
    """Chance that a clip gets ``distractor_events`` unlabelled distractor events (0: never)."""
    distractor_events: tuple = (1, 2)


@dataclass
class Mix:
    """audio ``[n]`` float32; events: (onset_s, offset_s, label), sorted; event_sources[i]: the
    (package, path) of each recording mixed into ``events[i]``, in the order used; used: (label,
    package, path) of every recording mixed in, background included."""

    audio: np.ndarray
    events: list = field(default_factory=list)
    event_sources: list = field(default_factory=list)
    used: list = field(default_factory=list)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (pitch moves with it), by linear interpolation."""
    n = max(1, int(len(x) / factor))
    return np.interp(np.arange(n) * factor, np.arange(len(x)), x).astype(np.float32)


def fade(x: np.ndarray, seconds: float = 0.02) -> np.ndarray:
    n = min(len(x) // 2, int(seconds * SR))
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def loop_to(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of ``x`` from a random start, looping (faded joins) if ``x`` is shorter."""
    if len(x) >= n:
        start = int(rng.integers(0, len(x) - n + 1))
        return np.array(x[start:start + n], dtype=np.float32)
    reps = [fade(np.asarray(x, dtype=np.float32), 0.01)] * (n // len(x) + 1)
    return np.concatenate(reps)[:n]


def filtered(x: np.ndarray, cutoff_hz: float, kind: str) -> np.ndarray:
    """4th-order Butterworth low- or high-pass."""
    from scipy.signal import butter, sosfilt

    sos = butter(4, cutoff_hz, btype=kind, fs=SR, output="sos")
    return sosfilt(sos, x).astype(np.float32)


def reverb(x: np.ndarray, rt60_s: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic exponentially decaying noise room response; same length."""
    from scipy.signal import fftconvolve

    n = int(rt60_s * SR)
    t = np.arange(n) / SR
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)
    ir[0] = 0.0
    ir *= wet / (np.sqrt(np.sum(ir ** 2)) + 1e-9)
    ir[0] = 1.0
    return fftconvolve(x, ir)[:len(x)].astype(np.float32)


def scale_to_ebr(y: np.ndarray, background_rms: float, ebr_db: float) -> np.ndarray:
    """Scale event ``y`` so its active-part RMS (samples above 5 % of its peak) is ``ebr_db``
    above ``background_rms``."""
    active = y[np.abs(y) > 0.05 * np.abs(y).max()]
    return y * np.float32(background_rms * 10 ** (ebr_db / 20) / rms(active))


def pick(pool: Pool, rng: np.random.Generator) -> tuple[np.ndarray, tuple]:
    if pool.weights is None:
        i = int(rng.integers(len(pool.clips)))
    else:
        i = int(rng.choice(len(pool.clips), p=pool.weights))
    return np.asarray(pool.clips[i], dtype=np.float32), pool.ids[i]


def event_audio(label: str, pool: Pool, rng: np.random.Generator, max_s: float) -> tuple[np.ndarray, list]:
    """One event's audio for ``label`` (float32 ``[n]``, starts and ends on sound) and the
    sources it used. Single steps become a walk, barks a short series, steady sounds a loop."""
    used = []

    def series(n_parts: int, gap: tuple) -> np.ndarray:
        parts = []
        for k in range(n_parts):
            x, sid = pick(pool, rng)
            used.append(sid)
            if label == "dog":
                x = speed(x, float(rng.uniform(0.9, 1.12)))
            parts.append(x[: int(3.0 * SR)] * np.float32(rng.uniform(0.6, 1.0)))
            if k < n_parts - 1:
                parts.append(np.zeros(int(rng.uniform(*gap) * SR), np.float32))
        return np.concatenate(parts)

    if label == "footsteps":
        y = series(int(rng.integers(4, 11)), (0.25, 0.6))
    elif label == "dog":
        y = series(int(rng.integers(1, 5)), (0.1, 0.45))
    elif label == "speech":
        y = series(int(rng.integers(1, 4)), (0.08, 0.3))
    elif label in ("engine", "water", "music"):
        x, sid = pick(pool, rng)
        used.append(sid)
        y = fade(loop_to(x, int(rng.uniform(2.0, 10.0 if label != "music" else 14.0) * SR), rng), 0.05)
    else:
        x, sid = pick(pool, rng)
        used.append(sid)
        y = x if len(x) <= 8 * SR else fade(loop_to(x, int(rng.uniform(2.0, 8.0) * SR), rng), 0.05)
    return y[: int(max_s * SR)], used


def add_distractors(out: Mix, distractors: Pool, bg_level: float, rng: np.random.Generator,
                    settings: MixSettings) -> None:
    """With chance ``settings.p_distractors``, add ``settings.distractor_events`` recordings of
    ``distractors`` (sounds of none of the labels: no reference rows) to ``out.audio`` at uniform
    onsets and an event-to-background ratio from ``settings.ebr_db``, each at most 8 s, ±8 %
    speed with chance ``p_speed``; recorded in ``out.used`` as label :data:`DISTRACTOR`. ``rng`` is
    the distractors' own stream, so the labelled content of the clip is the same with or
    without them."""
    if not distractors.clips or rng.random() >= settings.p_distractors:
        return
    n = len(out.audio)
    for _ in range(int(rng.integers(settings.distractor_events[0], settings.distractor_events[1] + 1))):
        y, sid = pick(distractors, rng)
        if rng.random() < settings.p_speed:
            y = speed(y, float(rng.uniform(0.92, 1.08)))
        onset = int(rng.uniform(0, max(n / SR - 0.5, 0.0)) * SR)
        y = y[: min(8 * SR, n - onset)]
        if not len(y) or np.abs(y).max() <= 0:
            continue
        out.audio[onset:onset + len(y)] += scale_to_ebr(y, bg_level, float(rng.uniform(*settings.ebr_db)))
        out.used.append((DISTRACTOR, *sid))


def mix(pools: dict[str, Pool], backgrounds: Pool, rng: np.random.Generator,
        settings: MixSettings = MixSettings(), labels: list[str] | None = None,
        distractors: Pool | None = None, distractor_rng: np.random.Generator | None = None) -> Mix:
    """One soundscape. ``pools``: label → Pool; events pick labels uniformly from ``labels``
    (default: every label with a non-empty pool). ``distractors`` with ``distractor_rng``: see
    :func:`add_distractors` (added before the reverberation and the final level)."""
    labels = labels or sorted(k for k, p in pools.items() if p.clips)
    n = int(rng.uniform(*settings.clip_s) * SR)
    out = Mix(np.zeros(n, np.float32))
    if rng.random() >= settings.p_no_background and backgrounds.clips:
        bg, sid = pick(backgrounds, rng)
        bg = loop_to(bg, n, rng)
        out.used.append(("background", *sid))
    else:
        bg = np.zeros(n, np.float32)
    bg = bg * np.float32(10 ** (rng.uniform(*settings.background_dbfs) / 20) / rms(bg)) if rms(bg) > 1e-6 else bg
    bg += np.float32(10 ** (rng.uniform(-75, -55) / 20)) * rng.standard_normal(n).astype(np.float32)
    bg_level = max(rms(bg), 10 ** (-60 / 20))
    out.audio += bg
    for _ in range(int(rng.integers(settings.events[0], settings.events[1] + 1))):
        label = labels[int(rng.integers(len(labels)))]
        onset = int(rng.uniform(0, n / SR - 0.5) * SR)
        y, used = event_audio(label, pools[label], rng, max_s=(n - onset) / SR)
        if rng.random() < settings.p_speed and label not in ("dog",):
            y = speed(y, float(rng.uniform(0.92, 1.08)))[: n - onset]
        if rng.random() < settings.p_lowpass:
            y = filtered(y, float(rng.uniform(2500, 7000)), "lowpass")
        if rng.random() < settings.p_highpass:
            y = filtered(y, float(rng.uniform(100, 500)), "highpass")
        if not len(y) or np.abs(y).max() <= 0:
            continue
        y = scale_to_ebr(y, bg_level, float(rng.uniform(*settings.ebr_db)))
        out.audio[onset:onset + len(y)] += y
        out.events.append((onset / SR, (onset + len(y)) / SR, label))
        out.event_sources.append(list(used))
        out.used.extend((label, *sid) for sid in used)
    if distractors is not None and distractor_rng is not None:
        add_distractors(out, distractors, bg_level, distractor_rng, settings)
    if rng.random() < settings.p_reverb:
        out.audio = reverb(out.audio, float(rng.uniform(0.2, 0.9)), float(rng.uniform(0.2, 0.7)), rng)
    out.audio *= np.float32(10 ** (rng.uniform(*settings.mix_dbfs) / 20) / rms(out.audio))
    peak = np.abs(out.audio).max()
    if peak > 0.99:
        out.audio *= np.float32(0.99 / peak)
    order = sorted(range(len(out.events)), key=out.events.__getitem__)
    out.events = [out.events[i] for i in order]
    out.event_sources = [out.event_sources[i] for i in order]
    return out
