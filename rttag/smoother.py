"""Causal per-class smoother: frame probabilities → on/off events.

Per class: hysteresis (an event starts when p ≥ on_threshold, ends when p < off_threshold),
a minimum event duration (a candidate must stay above off_threshold for ``min_on_s`` before
its ``on`` is emitted, so blips shorter than that are never reported) and a minimum gap
(after p drops, the ``off`` waits ``min_off_s``; if p climbs back to on_threshold inside
that gap the event simply continues). Decisions are made at frame arrival time ``at``; the
boundary time ``t`` of an ``on`` is back-dated by ``onset_lag_s``, the model's measured
reaction lag, and that of an ``off`` by ``offset_lag_s``, how long the model's probability
measurably outlasts the sound (never before the event's own ``on``). With ``min_on_s =
min_off_s = onset_lag_s = offset_lag_s = 0`` and equal thresholds this is raw per-frame
thresholding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from .events import OffEvent, OnEvent

FIELDS = ("on_threshold", "off_threshold", "min_on_s", "min_off_s", "onset_lag_s", "offset_lag_s")
"""The per-class parameters in :class:`SmootherParams` order; also the keys of the ``smoother``
block of a model's metadata and of the config file."""


@dataclass(frozen=True)
class SmootherParams:
    """Per-class parameters (one value per label). Thresholds in [0, 1]; times in s."""

    on_threshold: tuple[float, ...]
    off_threshold: tuple[float, ...]
    min_on_s: tuple[float, ...]
    min_off_s: tuple[float, ...]
    onset_lag_s: tuple[float, ...]
    offset_lag_s: tuple[float, ...]

    def __post_init__(self):
        n = len(self.on_threshold)
        for name in FIELDS[1:]:
            if len(getattr(self, name)) != n:
                raise ValueError(f"smoother.{name} has {len(getattr(self, name))} values, expected {n}")
        for on, off in zip(self.on_threshold, self.off_threshold):
            if not (0.0 <= off <= on <= 1.0):
                raise ValueError(f"smoother thresholds need 0 <= off_threshold <= on_threshold <= 1 (got on={on}, off={off})")

    @classmethod
    def raw(cls, on_threshold: Sequence[float]) -> "SmootherParams":
        """Plain per-frame thresholding at ``on_threshold`` (no hysteresis, durations, lags)."""
        n = len(on_threshold)
        return cls(tuple(on_threshold), tuple(on_threshold), *((0.0,) * n,) * 4)


# Per-class phases.
_IDLE, _PENDING_ON, _ACTIVE, _PENDING_OFF = range(4)


class Smoother:
    """Feeds on frames ``i = 0, 1, …``; frame ``i`` is centred at ``centre0 + i * hop_s``
    and decided at ``ready0 + i * hop_s`` (seconds of stream time)."""

    def __init__(self, labels: Sequence[str], params: SmootherParams, stream: str,
                 hop_s: float, centre0_s: float, ready0_s: float):
        if len(labels) != len(params.on_threshold):
            raise ValueError(f"{len(labels)} labels but {len(params.on_threshold)} smoother thresholds")
        self.labels = list(labels)
        self.params = params
        self.stream = stream
        self.hop_s, self.centre0_s, self.ready0_s = hop_s, centre0_s, ready0_s
        self._on = np.asarray(params.on_threshold)
        self._off = np.asarray(params.off_threshold)
        self._min_on = [int(round(s / hop_s)) for s in params.min_on_s]
        self._min_off = [int(round(s / hop_s)) for s in params.min_off_s]
        self.reset()

    def reset(self) -> None:
        """Forget every open or pending event (frame counting continues)."""
        n = len(self.labels)
        self._phase = [_IDLE] * n
        self._start = [0] * n      # frame where the current candidate / event began
        self._stop = [0] * n       # frame where p first fell below off (pending off)
        self._psum = [0.0] * n     # sum of p since _start
        self._count = [0] * n      # frames since _start
        self._onset_t = [0.0] * n  # emitted on's t
        self.frame = 0             # index of the next frame

    def _centre(self, i: int) -> float:
        return self.centre0_s + i * self.hop_s

    def _onset_time(self, k: int) -> float:
        return max(0.0, self._centre(self._start[k]) - self.params.onset_lag_s[k])

    def _offset_time(self, k: int) -> float:
        return max(self._centre(self._stop[k]) - self.params.offset_lag_s[k], self._onset_t[k])

    def update(self, probs: np.ndarray) -> Iterator[OnEvent | OffEvent]:
        """Consume probabilities ``[T, n_classes]`` and yield the events they decide."""
        for row in np.asarray(probs):
            i = self.frame
            at = self.ready0_s + i * self.hop_s
            above_on = row >= self._on
            above_off = row >= self._off
            for k in np.flatnonzero(above_on | above_off | (np.asarray(self._phase) != _IDLE)):
                yield from self._step(int(k), float(row[k]), bool(above_on[k]), bool(above_off[k]), i, at)
            self.frame += 1

    def _step(self, k: int, p: float, above_on: bool, above_off: bool, i: int, at: float):
        phase = self._phase[k]
        if phase == _IDLE:
            if above_on:
                self._phase[k], self._start[k], self._psum[k], self._count[k] = _PENDING_ON, i, 0.0, 0
                phase = _PENDING_ON
            else:
                return
        if phase == _PENDING_ON:
            if not above_off:
                self._phase[k] = _IDLE
                return
            self._psum[k] += p
            self._count[k] += 1
            if i - self._start[k] >= self._min_on[k]:
                self._phase[k] = _ACTIVE
                self._onset_t[k] = min(self._onset_time(k), at)
                yield OnEvent(self.stream, self.labels[k], self._onset_t[k], at, self._psum[k] / self._count[k])
            return
        if phase == _ACTIVE:
            if above_off:
                self._psum[k] += p
                self._count[k] += 1
                return
            self._phase[k], self._stop[k] = _PENDING_OFF, i
            phase = _PENDING_OFF
        if phase == _PENDING_OFF:
            if above_on:
                self._phase[k] = _ACTIVE
                self._psum[k] += p
                self._count[k] += 1
                return
            if i - self._stop[k] >= self._min_off[k]:
                self._phase[k] = _IDLE
                yield OffEvent(self.stream, self.labels[k], self._offset_time(k), at, self._onset_t[k],
                               self._psum[k] / self._count[k])

    def close(self, t_end: float) -> Iterator[OffEvent]:
        """End of stream at ``t_end`` s: close every open event with an ``off`` (one still above
        its threshold ends at ``t_end``), drop candidates."""
        for k, phase in enumerate(self._phase):
            if phase in (_ACTIVE, _PENDING_OFF):
                t = self._offset_time(k) if phase == _PENDING_OFF else max(t_end, self._onset_t[k])
                yield OffEvent(self.stream, self.labels[k], t, max(t_end, t),
                               self._onset_t[k], self._psum[k] / self._count[k])
        self.reset()
