"""The leak screen of ``rttag data build``: held-out recordings that repeat a recording of an
earlier split.

Holding out whole packages does not by itself keep training audio out of validation and test:
Debian packages share sound files (the same freesound recording in two games, re-encoded,
re-levelled, sometimes trimmed differently). So every validation recording is compared with
every training recording, and every test recording with every training and validation
recording, whatever their labels; a held-out recording that matches one of them is a leak.

The comparison is in two stages, both on the start of each recording (``FRAMES`` × 20 ms =
2.56 s; recordings are trimmed at the same level when decoded, ``sources.TRIM_TOP_DB``, so
copies start at the same place give or take a few milliseconds):

1. the spectral envelope, for every pair: 48 log mel-band energies per 20 ms, floored 40 dB
   under the recording's peak and centred per band and per frame (gain, EQ and loudness
   contour drop out; what is left is how the spectrum moves), compared by their cosine over the
   overlap at the best of ±``MAX_LAG`` frames of offset. Copies score near 1; different
   recordings of one kind of sound can reach about 0.9 when they are short (a few frames of
   onset and decay), so this stage only picks candidates (``CANDIDATE``);
2. the waveform, for the candidates: the normalised cross-correlation of the two starts at
   the best offset within ±``MAX_LAG`` frames. A copy, re-encoded, re-levelled, low-passed or
   shifted, keeps its samples' shape; two different recordings do not (``THRESHOLD``).

An excerpt taken from the middle of another recording is not caught.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

from .sources import SAMPLE_RATE, Source

N_FFT = 1024
HOP = 320
"""STFT frame and hop (samples at 16 kHz): 64 ms frames, 20 ms hop."""
BANDS = 48
FRAMES = 128
"""Envelope frames compared per recording (2.56 s)."""
FLOOR = 1e-4
"""Band energies are floored 40 dB under the recording's loudest band and frame, so that quiet
parts, where a re-encoding or a noise floor differ most, weigh alike in both copies."""
MAX_LAG = 5
"""Largest offset tried between two envelopes (frames; 100 ms)."""
MIN_OVERLAP = 5
"""Fewest overlapping frames (100 ms) for a comparison to count."""
CANDIDATE = 0.75
"""Envelope similarity from which a pair is compared sample by sample."""
THRESHOLD = 0.8
"""Waveform correlation from which a candidate pair is the same audio."""
EARLIER = {"validation": ("train",), "test": ("train", "validation")}
"""Per held-out split, the splits its recordings must not repeat."""


@dataclass(frozen=True)
class Leak:
    """A held-out recording that repeats an earlier split's recording; ``similarity`` is their
    waveform correlation (:func:`waveform_similarity`)."""

    held_out: Source
    split: str
    match: Source
    match_split: str
    similarity: float

    def describe(self) -> str:
        return (f"{self.split} {self.held_out.package}/{self.held_out.path} ({self.held_out.label}) repeats "
                f"{self.match_split} {self.match.package}/{self.match.path} ({self.match.label}), "
                f"similarity {self.similarity:.2f}")


_MEL = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=BANDS, fmin=50.0, fmax=SAMPLE_RATE / 2)


def envelope(audio: np.ndarray) -> tuple[np.ndarray, int]:
    """The centred band envelope ``[FRAMES, BANDS]`` of mono 16 kHz ``audio`` (log band energies
    minus their per-band and per-frame means; zero past its end) and the number of frames that hold
    audio (≤ ``FRAMES``; 0 for audio shorter than one frame)."""
    y = np.asarray(audio[: N_FFT + HOP * (FRAMES - 1)], dtype=np.float64)
    n = 1 + max(0, len(y) - N_FFT) // HOP if len(y) >= N_FFT else 0
    out = np.zeros((FRAMES, BANDS))
    if n < 2:
        return out, n
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT)[::HOP][:n] * np.hanning(N_FFT)
    energy = (_MEL @ (np.abs(np.fft.rfft(frames, axis=1)) ** 2).T).T                 # [n, BANDS]
    bands = np.log(np.maximum(energy, energy.max() * FLOOR + 1e-20))
    centred = bands - bands.mean(axis=0) - bands.mean(axis=1, keepdims=True) + bands.mean()
    out[:n] = centred
    return out, n


def similarity(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Pairwise similarity ``[len(a), len(b)]`` of two stacks of envelopes, each given as
    ``(envelopes [N, FRAMES, BANDS], frames [N])``: per pair, the best over offsets of ±MAX_LAG
    frames of the cosine of the two envelopes over their overlapping frames (1 for the same
    audio); −1 where no offset overlaps by MIN_OVERLAP frames."""
    (ea, na), (eb, nb) = a, b
    mask_a = (np.arange(FRAMES)[None, :] < np.asarray(na)[:, None]).astype(np.float32)
    mask_b = (np.arange(FRAMES)[None, :] < np.asarray(nb)[:, None]).astype(np.float32)
    flat_b = eb.reshape(len(eb), -1).astype(np.float32)
    energy_b = (eb ** 2).sum(axis=2).astype(np.float32)                          # [Nb, FRAMES]
    best = np.full((len(ea), len(eb)), -1.0, dtype=np.float32)
    for lag in range(-MAX_LAG, MAX_LAG + 1):      # a's frame t + lag against b's frame t
        shifted = np.zeros_like(ea, dtype=np.float32)
        shifted_mask = np.zeros_like(mask_a)
        src, dst = slice(max(lag, 0), FRAMES + min(lag, 0)), slice(max(-lag, 0), FRAMES - max(lag, 0))
        shifted[:, dst], shifted_mask[:, dst] = ea[:, src], mask_a[:, src]
        overlap = shifted_mask @ mask_b.T
        dot = shifted.reshape(len(ea), -1) @ flat_b.T
        norm = np.sqrt(((shifted ** 2).sum(axis=2) @ mask_b.T) * (shifted_mask @ energy_b.T))
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where((overlap >= MIN_OVERLAP) & (norm > 0), dot / norm, -1.0)
        best = np.maximum(best, score)
    return best


def waveform_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The normalised cross-correlation of the starts (``FRAMES`` hops) of two mono 16 kHz
    recordings at the best offset within ±MAX_LAG hops: 1 for the same samples at any gain."""
    n = HOP * FRAMES
    a, b = np.asarray(a[:n], dtype=np.float64), np.asarray(b[:n], dtype=np.float64)
    size = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    corr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    lags = np.r_[corr[:MAX_LAG * HOP + 1], corr[-MAX_LAG * HOP:]]
    m = min(len(a), len(b))
    denom = np.sqrt(np.sum(a[:m] ** 2) * np.sum(b[:m] ** 2))
    return float(np.abs(lags).max() / denom) if denom > 0 else 0.0


def screen(by_split: dict[str, dict[str, list[Source]]], audio: dict[str, np.ndarray]) -> list[Leak]:
    """Every held-out recording (validation, test) that repeats a recording of a split before it
    (``EARLIER``), once, with its best match; ``by_split`` as :func:`rttag.dataset.splits.assign` gives it,
    ``audio`` the decoded recordings by source key (sources without audio are skipped)."""
    stacks = {}
    for split, by_label in by_split.items():
        srcs = [s for label in sorted(by_label) for s in by_label[label] if s.key in audio]
        envs = [envelope(audio[s.key]) for s in srcs]
        stacks[split] = (srcs, (np.array([e for e, _ in envs]).reshape(-1, FRAMES, BANDS),
                                np.array([n for _, n in envs], dtype=int)))
    best: dict[tuple[str, Source], Leak] = {}
    for split, earlier in EARLIER.items():
        held, held_env = stacks.get(split, ([], None))
        if not held:
            continue
        for other in earlier:
            cands, cand_env = stacks.get(other, ([], None))
            if not cands:
                continue
            sim = similarity(held_env, cand_env)
            for i, j in np.argwhere(sim >= CANDIDATE):
                score = waveform_similarity(audio[held[i].key], audio[cands[j].key])
                key = (split, held[i])
                if score >= THRESHOLD and (key not in best or score > best[key].similarity):
                    best[key] = Leak(held[i], split, cands[j], other, score)
    return list(best.values())
