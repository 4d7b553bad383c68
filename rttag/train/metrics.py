"""Frame-level metrics and the initial smoother values, from probabilities and frame labels.

``probs`` float ``[N, C]`` and ``labels`` 0/1 ``[N, C]`` are frames of a split (files
concatenated); ``offsets`` ``[n_files + 1]`` marks the files (onsets never cross files).
"""

from __future__ import annotations

import numpy as np

GRID = np.round(np.arange(0.05, 0.96, 0.025), 3)
"""Candidate on-thresholds."""


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the precision-recall curve of one class (NaN when it has no positive)."""
    n_pos = int(truth.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = truth[order].astype(np.float64)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / n_pos)


def class_ap(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class frame average precision ``[C]`` of ``scores`` ``[N, C]`` (NaN for a class without positives)."""
    return np.array([average_precision(scores[:, k], labels[:, k]) for k in range(scores.shape[1])])


def f1_at(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per-class frame F1 ``[C]`` at per-class ``thresholds`` ``[C]``."""
    pred = probs >= thresholds
    truth = labels.astype(bool)
    tp = (pred & truth).sum(0)
    fp = (pred & ~truth).sum(0)
    fn = (~pred & truth).sum(0)
    return 2 * tp / np.maximum(2 * tp + fp + fn, 1)


def best_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per class, the grid threshold with the highest frame F1 ``[C]``."""
    f1 = np.stack([f1_at(probs, labels, np.full(probs.shape[1], t)) for t in GRID])  # [G, C]
    return GRID[f1.argmax(0)]


def frame_metrics(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> dict:
    """mAP, macro/micro frame F1 at ``thresholds``, and per-class AP / F1 (JSON-able)."""
    ap = class_ap(probs, labels)
    f1 = f1_at(probs, labels, thresholds)
    pred = probs >= thresholds
    truth = labels.astype(bool)
    tp, fp, fn = (pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum()
    return {"mAP": float(np.nanmean(ap)), "macro_f1": float(f1.mean()),
            "micro_f1": float(2 * tp / max(2 * tp + fp + fn, 1)),
            "ap": [None if np.isnan(a) else round(float(a), 4) for a in ap],
            "f1": [round(float(f), 4) for f in f1]}


def onset_frames(labels: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Bool ``[N, C]``: frames where a reference event starts (0 → 1, or active at a file's start)."""
    on = np.zeros(labels.shape, bool)
    on[1:] = (labels[1:] > 0) & (labels[:-1] == 0)
    on[offsets[:-1]] = labels[offsets[:-1]] > 0
    return on


def onset_lags(probs: np.ndarray, labels: np.ndarray, offsets: np.ndarray, thresholds: np.ndarray,
               hop_s: float, early: int = 20, late: int = 100) -> np.ndarray:
    """Per class, the median lag (s, ≥ 0) of the first frame with ``p ≥ threshold`` after each
    reference onset (searched from ``early`` frames before to ``late`` frames after it);
    classes with fewer than 3 matched onsets get the median over all classes."""
    on = onset_frames(labels, offsets)
    ends = np.repeat(offsets[1:], np.diff(offsets))  # [N]: end frame of each frame's file
    per_class = []
    for k in range(probs.shape[1]):
        lags = []
        above = probs[:, k] >= thresholds[k]
        for i in np.flatnonzero(on[:, k]):
            a, b = max(i - early, 0), min(i + late, ends[i])
            hit = np.flatnonzero(above[a:b])
            if len(hit):
                lags.append((a + hit[0] - i) * hop_s)
        per_class.append(lags)
    pooled = [x for lags in per_class for x in lags]
    overall = float(np.median(pooled)) if pooled else 0.0
    return np.array([max(0.0, float(np.median(l)) if len(l) >= 3 else overall) for l in per_class])


def smoother_block(probs: np.ndarray, labels: np.ndarray, offsets: np.ndarray, hop_s: float) -> dict:
    """Initial smoother values per class (lists, JSON-able): on = frame-F1-best threshold,
    off = 0.7 × on, min_on 0.1 s, min_off 0.2 s, onset_lag = median onset lag (≥ 0), offset_lag 0
    and offset_excess_db and dominance 0 (``rttag tune`` places offsets and sets dominance with
    the real smoother)."""
    on = best_thresholds(probs, labels)
    c = len(on)
    return {"on_threshold": [float(t) for t in on], "off_threshold": [round(0.7 * float(t), 4) for t in on],
            "min_on_s": [0.1] * c, "min_off_s": [0.2] * c,
            "onset_lag_s": [round(float(x), 3) for x in onset_lags(probs, labels, offsets, on, hop_s)],
            "offset_lag_s": [0.0] * c, "offset_excess_db": [0.0] * c, "dominance": [0.0] * c}
