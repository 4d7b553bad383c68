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

Offsets by acoustic evidence (``offset_excess_db`` > 0 for a class, 0 = off): a recurrent
model's probability decays slowly after the sound stops, by a time that varies from event to
event, so a fixed ``offset_lag_s`` places many offsets badly. With the log-mel frames passed
to :meth:`Smoother.update`, the background spectrum is taken when the event's candidate
begins (its probability first reaches ``on_threshold``) — the per-bin median (dB) over the
:data:`EXCESS_BACKGROUND_S` before its back-dated onset — and each frame of the event gets
an *excess*: the mean over mel bins of how far the frame rises above that background (dB,
negative parts counted as 0), averaged over the last :data:`EXCESS_SMOOTH_FRAMES` frames.
The ``off``'s ``t`` is then the end of the last frame whose excess exceeded
``offset_excess_db``, plus :data:`EXCESS_HANGOVER_S`, never later than the offset the
probability alone gives (``offset_lag_s`` is then not applied) and never before the ``on``.
``at`` is untouched: the decision still waits for the probability. Where there is too little
history before the onset (under :data:`EXCESS_MIN_BACKGROUND_S`, at a stream's start) or no
frame rose above the threshold, ``offset_lag_s`` applies as usual.

Dominance (``dominance`` > 0 for a class, 0 = off): a tagger trained on few sources often
answers a sound it has not heard with several classes at once, and most of its false events
sit on events of *other* labels. A candidate whose minimum duration is met only becomes an
``on`` once its probability is at least ``dominance`` × the highest probability of any other
class in the same frame; until then it stays pending (the probability still has to stay above
``off_threshold``, else the candidate is dropped) and its ``t`` is still back-dated from where
the candidate began, while ``at`` is the frame that decided it. With 1 the class must be the
most probable one; below 1 it may trail the leader by that factor. Events already on are
never ended by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from .events import OffEvent, OnEvent

FIELDS = ("on_threshold", "off_threshold", "min_on_s", "min_off_s", "onset_lag_s", "offset_lag_s", "offset_excess_db",
          "dominance")
"""The per-class parameters in :class:`SmootherParams` order; also the keys of the ``smoother``
block of a model's metadata and of the config file."""

EXCESS_BACKGROUND_S = 2.0
"""Seconds before an event's onset whose per-bin median is its background spectrum."""
EXCESS_MIN_BACKGROUND_S = 0.1
"""Less history than this before the onset: no background, the ``offset_lag_s`` rule applies."""
EXCESS_SMOOTH_FRAMES = 5
"""Frames of the moving average over the per-frame excess (causal)."""
EXCESS_HANGOVER_S = 0.2
"""Added after the last frame above the excess threshold (decay and reverberation tails).
2 s, 5 frames and 0.2 s were chosen on the validation split with the crnn (docs/EVALUATION.md)."""
EXCESS_MAX_ONSET_LAG_S = 1.0
"""Longest onset back-dating the frame history covers for the excess rule (``rttag tune``
never measures more; with a longer configured lag the background is taken later)."""
DB_PER_LOG = 10.0 / np.log(10.0)
"""dB per natural-log unit of power (the frontend's log-mel is ``log(mel power + offset)``)."""


@dataclass(frozen=True)
class SmootherParams:
    """Per-class parameters (one value per label). Thresholds in [0, 1]; times in s;
    ``offset_excess_db`` in dB ≥ 0 (0: offsets by ``offset_lag_s`` only) and ``dominance``, a
    ratio ≥ 0 (0: off); either left out: 0 for every class."""

    on_threshold: tuple[float, ...]
    off_threshold: tuple[float, ...]
    min_on_s: tuple[float, ...]
    min_off_s: tuple[float, ...]
    onset_lag_s: tuple[float, ...]
    offset_lag_s: tuple[float, ...]
    offset_excess_db: tuple[float, ...] = ()
    dominance: tuple[float, ...] = ()

    def __post_init__(self):
        n = len(self.on_threshold)
        for name in ("offset_excess_db", "dominance"):
            if not getattr(self, name):
                object.__setattr__(self, name, (0.0,) * n)
            if any(v < 0 for v in getattr(self, name)):
                raise ValueError(f"smoother.{name} must be >= 0 (got {list(getattr(self, name))})")
        for name in FIELDS[1:]:
            if len(getattr(self, name)) != n:
                raise ValueError(f"smoother.{name} has {len(getattr(self, name))} values, expected {n}")
        for on, off in zip(self.on_threshold, self.off_threshold):
            if not (0.0 <= off <= on <= 1.0):
                raise ValueError(f"smoother thresholds need 0 <= off_threshold <= on_threshold <= 1 (got on={on}, off={off})")

    @classmethod
    def raw(cls, on_threshold: Sequence[float]) -> "SmootherParams":
        """Plain per-frame thresholding at ``on_threshold`` (no hysteresis, durations, lags,
        offsets by the sound or dominance)."""
        n = len(on_threshold)
        return cls(tuple(on_threshold), tuple(on_threshold), *((0.0,) * n,) * (len(FIELDS) - 2))


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
        self._excess = np.asarray(params.offset_excess_db)
        self._dominance = np.asarray(params.dominance)
        self._uses_dominance = bool(self._dominance.any())
        self._uses_frames = bool(self._excess.any())
        self._bg_frames = int(round(EXCESS_BACKGROUND_S / hop_s))
        self._history_len = self._bg_frames + int(round(EXCESS_MAX_ONSET_LAG_S / hop_s)) + 2
        self.reset()

    def reset(self) -> None:
        """Forget every open or pending event and the frame history; frames count from 0 again."""
        n = len(self.labels)
        self._phase = [_IDLE] * n
        self._start = [0] * n      # frame where the current candidate / event began
        self._stop = [0] * n       # frame where p first fell below off (pending off)
        self._psum = [0.0] * n     # sum of p since _start
        self._count = [0] * n      # frames since _start
        self._onset_t = [0.0] * n  # emitted on's t
        self._bg: dict = {}               # class → background spectrum [n_mels] dB of its active event (excess rule)
        self._recent: list = [[] for _ in range(n)]  # the last EXCESS_SMOOTH_FRAMES excess values (dB)
        self._last_loud = [-1] * n        # last frame whose smoothed excess exceeded offset_excess_db
        self._loud_at_stop = [-1] * n     # _last_loud when the probability fell (pending off)
        self._history: np.ndarray | None = None  # dB log-mel ring [history_len, n_mels], frame i at i % len
        self._first = 0            # the first frame the ring has held
        self.frame = 0             # index of the next frame

    def _centre(self, i: int) -> float:
        return self.centre0_s + i * self.hop_s

    def _onset_time(self, k: int) -> float:
        return max(0.0, self._centre(self._start[k]) - self.params.onset_lag_s[k])

    def _offset_time(self, k: int) -> float:
        stop = self._centre(self._stop[k])
        if k in self._bg and self._loud_at_stop[k] >= 0:
            end = self._centre(self._loud_at_stop[k]) + self.hop_s / 2 + EXCESS_HANGOVER_S
            return max(min(end, stop), self._onset_t[k])
        return max(stop - self.params.offset_lag_s[k], self._onset_t[k])

    def update(self, probs: np.ndarray, frames: np.ndarray | None = None) -> Iterator[OnEvent | OffEvent]:
        """Consume probabilities ``[T, n_classes]`` and yield the events they decide.
        ``frames``: the log-mel frames ``[T, n_mels]`` (natural log of mel power, as the
        frontend gives them) the probabilities came from; required when any class has
        ``offset_excess_db`` > 0."""
        probs = np.asarray(probs)
        if frames is None and self._uses_frames:
            raise ValueError("smoother.offset_excess_db is set: update() needs the log-mel frames")
        if frames is not None and len(frames) != len(probs):
            raise ValueError(f"{len(probs)} probability rows but {len(frames)} log-mel frames")
        for j, row in enumerate(probs):
            i = self.frame
            if self._uses_frames:
                self._remember(i, frames[j])
            at = self.ready0_s + i * self.hop_s
            above_on = row >= self._on
            above_off = row >= self._off
            lead, first, second = self._leaders(row) if self._uses_dominance else (-1, 0.0, 0.0)
            for k in np.flatnonzero(above_on | above_off | (np.asarray(self._phase) != _IDLE)):
                rival = second if k == lead else first
                yield from self._step(int(k), float(row[k]), rival, bool(above_on[k]), bool(above_off[k]), i, at)
            self.frame += 1

    @staticmethod
    def _leaders(row: np.ndarray) -> tuple[int, float, float]:
        """The most probable class of a frame, its probability and the runner-up's (0 with one class)."""
        lead = int(np.argmax(row))
        second = float(np.max(np.delete(row, lead))) if len(row) > 1 else 0.0
        return lead, float(row[lead]), second

    def _remember(self, i: int, frame: np.ndarray) -> None:
        """Keep frame ``i`` (log-mel, converted to dB) in the history ring; track the excess of
        every event whose background is known."""
        if self._history is None:
            self._history, self._first = np.zeros((self._history_len, len(frame))), i
        self._history[i % self._history_len] = np.asarray(frame, dtype=np.float64) * DB_PER_LOG
        for k in self._bg:
            self._track_excess(k, i)

    def _track_excess(self, k: int, i: int) -> None:
        excess = float(np.maximum(self._history[i % self._history_len] - self._bg[k], 0.0).mean())
        recent = self._recent[k]
        recent.append(excess)
        del recent[:-EXCESS_SMOOTH_FRAMES]
        if sum(recent) / len(recent) > self._excess[k]:
            self._last_loud[k] = i

    def _start_excess(self, k: int, i: int) -> None:
        """When a candidate of class ``k`` begins at frame ``i``: its background spectrum from
        the frames before its back-dated onset, and the excess of the frames since. Taken here,
        not at the ``on``, so that a candidate kept pending by ``dominance`` still finds its
        background in the frame history."""
        self._recent[k], self._last_loud[k] = [], -1
        if not self._excess[k] or self._history is None:
            return
        onset = int(round((self._onset_time(k) - self.centre0_s) / self.hop_s))
        onset = max(onset, i - self._history_len + self._bg_frames + 1, self._first)
        lo = max(onset - self._bg_frames, self._first, i - self._history_len + 1)
        if (onset - lo) * self.hop_s < EXCESS_MIN_BACKGROUND_S:
            return
        self._bg[k] = np.median(self._history[[f % self._history_len for f in range(lo, onset)]], axis=0)
        for f in range(onset, i + 1):
            self._track_excess(k, f)

    def _step(self, k: int, p: float, rival: float, above_on: bool, above_off: bool, i: int, at: float):
        """Advance class ``k`` by one frame: ``p`` its probability, ``rival`` the highest
        probability of any other class in the frame."""
        phase = self._phase[k]
        if phase == _IDLE:
            if above_on:
                self._phase[k], self._start[k], self._psum[k], self._count[k] = _PENDING_ON, i, 0.0, 0
                self._start_excess(k, i)
                phase = _PENDING_ON
            else:
                return
        if phase == _PENDING_ON:
            if not above_off:
                self._phase[k] = _IDLE
                self._bg.pop(k, None)
                return
            self._psum[k] += p
            self._count[k] += 1
            if i - self._start[k] >= self._min_on[k] and p >= self._dominance[k] * rival:
                self._phase[k] = _ACTIVE
                self._onset_t[k] = min(self._onset_time(k), at)
                yield OnEvent(self.stream, self.labels[k], self._onset_t[k], at, self._psum[k] / self._count[k])
            return
        if phase == _ACTIVE:
            if above_off:
                self._psum[k] += p
                self._count[k] += 1
                return
            self._phase[k], self._stop[k], self._loud_at_stop[k] = _PENDING_OFF, i, self._last_loud[k]
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
                self._bg.pop(k, None)

    def close(self, t_end: float) -> Iterator[OffEvent]:
        """End of stream at ``t_end`` s: close every open event with an ``off`` (one still above
        its threshold ends at ``t_end``), drop candidates."""
        for k, phase in enumerate(self._phase):
            if phase in (_ACTIVE, _PENDING_OFF):
                t = self._offset_time(k) if phase == _PENDING_OFF else max(t_end, self._onset_t[k])
                yield OffEvent(self.stream, self.labels[k], t, max(t_end, t),
                               self._onset_t[k], self._psum[k] / self._count[k])
        self.reset()
