"""``rttag tune``: per-class smoother settings chosen on the validation split and written
into the model's ``rttag`` metadata.

The model runs once per validation file through the streaming pipeline (as ``rttag tag``
does) and its frame probabilities are kept; every setting tried afterwards only re-runs the
smoother over them. Per class, a small grid in two stages:

1. ``on_threshold`` × ``off_threshold / on_threshold`` (with ``min_on_s`` = ``--stage1-min-on``,
   0.1 s by default, and ``min_off_s`` = 0.2 s);
2. ``min_on_s`` × ``min_off_s`` at the class's best thresholds (but stage 1's own pair); with
   ``--durations-at both`` also at its best thresholds regardless of latency, where they differ:
   stage 1's ``min_on_s`` adds a wait that a shorter one can remove, bringing thresholds
   within the budget that stage 1 found over it.

Stage 1's wait decides which thresholds count as within the latency budget, and stage 2 tries
durations only there. At 0.1 s it kept the crnn's speech and bird from the thresholds the
shipped smoother uses (their 0.5 and 0.9 decide in 0.17 s at ``min_on_s`` 0 and 0.32 s and
0.29 s at 0.1, over a 0.20 s budget); in diagnostic 43 a tune of 278 files judged at 0 scored
0.184 instead of 0.147 on 279 others. On half B, where the 0.1 s wait had not cost speech and
bird, the crnn's re-tune at 0 was steadier on test but lower in event F1 (0.140 against 0.147,
round 44), and the frame MLP's scored 0.077 instead of 0.119 on validation, so the default stays
0.1 s (docs/EVALUATION.md, diagnostics 42 and 43, round 44).

For every setting the onset lag is measured per class — the median of (model-placed onset −
reference onset) over matched events (:func:`rttag.evaluate.match_onsets`) placed at most
``MAX_LAG_S`` after the onset, with no back-dating, never below 0 — and the events' onsets
are back-dated by it before scoring (exactly what the smoother does with ``onset_lag_s``;
``at`` is untouched).

Offsets are placed next, once the setting of every class is chosen: the probability of a
causal model outlasts the sound, and an event-based F1 wants offsets too (within
max(200 ms, 20 % of the event)). Over the chosen setting's events whose back-dated onset is
within the onset collar of a reference onset, ``offset_lag_s`` is the shift (0 to
``MAX_OFFSET_LAG_S`` in ``OFFSET_LAG_STEP_S`` steps, the smallest on ties) that brings the
most of their offsets within the offset collar. A shift cannot add or remove detections or
onset matches, so it only decides which of those events also count as hits. (Choosing the
offset lag inside the grid instead, as a median per setting, moved the thresholds: on
validation the class-wise F1 rose, on test the event F1 fell from 0.073 to 0.061.)
Then, per class, each ``offset_excess_db`` of :data:`GRID_OFFSET_EXCESS_DB` (offsets where
the sound's level above its pre-onset background falls, see :mod:`rttag.smoother`) is tried
against that lag on the same count, with the log-mel frames kept from the model pass; it is
kept only where it brings strictly more offsets into the collar (else 0, the lag alone).

Dominance comes last (:func:`hold_back`): with every other value fixed, each ``dominance`` of
:data:`GRID_DOMINANCE` (see :mod:`rttag.smoother`) is scored per class, and one per class is
chosen for the **micro** event F1 whatever ``--objective`` says (Dinkelbach's method, below).
Holding a class's ``on`` back until it leads the other classes trades that class's own hits
for fewer false events, and those false events mostly cost the *other* classes' precision,
which a class-wise F1 does not see. It reads the other classes' probabilities, not their
events, so the classes stay independent and the joint choice is exact. It is scored with the
offsets already placed, so that the hits it trades are counted as they will be scored
(before, most events miss their offset collar; on the crnn's validation run the order made
little difference in the end: 0.136 choosing before the offsets, 0.137 after). A class
held back is decided later; each class keeps the latency budget on its own, as in the other
stages. (Holding the budget only over all matched events together let four classes wait up
to 1 s: validation 0.164 instead of 0.137, but on test the median latency rose to 0.30 s,
over the 0.25 s target; docs/EVALUATION.md.) ``--max-overall-latency S`` brings that
variant back with its own budget: the dominance stage starts from the choice with every class
within ``--max-latency`` and then changes one class's dominance at a time, each time the change
that raises the micro event F1 most while the median decision latency over all matched events
together stays within S, until no change does; a class may so wait past ``--max-latency``. With
``--overall-quantile Q`` the constraint is the Q-quantile instead of the median: at least the
share Q of all matched events decided within S. (The median moves little where the validation
latencies crowd around it, as they do: on the shipped crnn's half B, holding footsteps and
water back moved it by 0.006 s while the share decided within 0.25 s fell from 0.675 to 0.630,
and on test, where that share was 0.53, the median rose from 0.236 to 0.255 s;
docs/EVALUATION.md, round 53.) Every combination is scored exactly from the per-class figures
(the classes stay independent), so the search costs no smoother pass. (Until the fiftieth
session this stage freed every class and then held the latest one to its budget, one at a time,
until the median fitted: on the shipped crnn's half B at S = 0.19 s that stopped at 0.2305
micro event F1 where raising three classes' dominance from 0.5 to 0.75 reached 0.2408 at 0.186
s; docs/EVALUATION.md, round 52.)

A setting is *eligible* for a class when it detects at least one of the class's events (and
at least the share ``--min-recall`` of them) and its median decision latency on the class's
matched validation events (``at`` − reference onset; matched on the onsets as the smoother
back-dates them, as ``rttag eval`` matches) is within ``--max-latency`` (default
0.25 s). A class whose final setting (offsets placed, dominance chosen) holds it on through more
than ``--max-held-on`` of the split's files (its events cover at least 90 % of a file whose
reference of the class covers under 50 %: :func:`rttag.evaluate.held_on`) is chosen again from
stage 1 on without the settings that do so before offsets and dominance (where every setting
does, it keeps those that do in the fewest files), until no class that was not yet so guarded
exceeds it (stage 2 is scored again only for the classes whose thresholds the guard changed:
without dominance each class's figures do not depend on the others). Event F1 alone favours
such a setting for a class the model hears everywhere: held on, a file costs one false event
instead of many short ones (the baselines' smoothers, chosen without the guard, held ``dog``
on through 188 and 121 of half B's 279 files). Only the classes whose final setting exceeds the
guard are guarded: guarding every class's settings before offsets and dominance also left out
settings those stages would have brought within it (docs/EVALUATION.md, the twenty-sixth
session). Stage 2 starts from the class-wise
choice: the eligible setting with the best sed_eval event-based F1 of the class, then the
best 1 s segment-based F1 (under the objectives ``sum`` and ``segment``, their own per-class
order instead, in stage 2's thresholds too). The final choice depends on ``--objective``:

* ``class`` (default): the class-wise choice.
* ``sum``: per class the eligible setting with the best event F1 + 1 s segment F1 (then
  event F1). The class-wise choice counts segment F1 only on ties; the headline segment F1
  pools every class's active 1 s segments, and most of its errors are segments a class is
  on without its sound. On the shipped crnn, chosen on half B and scored on V2, it raised
  segment F1 by 0.012 (0.475 → 0.487) with event F1 level (−0.002), too little to become the
  default (docs/EVALUATION.md, round 67).
* ``segment``: per class the eligible setting with the best segment F1, then event F1. In
  round 67 it lost event F1 on V2 (−0.034) and did not raise segment F1 there (−0.008).
* ``micro``: one eligible setting per class such that the **micro** event F1 over
  all classes, 2·ΣTP / (ΣNref + ΣNsys), is highest. Class-wise choices ignore that a class's
  false events cost every other class's precision too: a class the model barely recognises
  is best kept conservative. The classes are coupled only through that ratio, so
  Dinkelbach's method finds the optimum over the tried settings exactly: for a fixed λ each
  class maximises 2·TP − λ·Nsys on its own; λ is then set to the F1 of that choice, until
  the choice no longer changes. It raises the validation micro F1, but on the test split of
  docs/EVALUATION.md it did not raise the event F1 of the shipped models, so it is not the
  default.

When no setting of a class is eligible, ``--over-budget`` decides (the report says so):

* ``best`` (default): the class takes its best setting regardless of latency (and recall).
* ``nearest``: the class's budget is raised in :data:`BUDGET_STEP_S` steps to the first that
  admits a setting (its best event F1 within it, as above): in stage 1 over the stage-1
  settings, then again over all settings after stage 2, and that budget holds through
  offsets and dominance. ``best`` can take a setting that decides a second late for a class
  whose every setting is over the budget: on half B the steadied crnn's dog took min_on 0.3 s
  and decided 1.26 s late (docs/EVALUATION.md, the thirtieth session). ``nearest`` acts
  already in stage 1, whose fixed ``STAGE1_MIN_ON_S`` adds a wait stage 2 can remove, so it
  can also keep a class from thresholds that stage 2 would have brought within the budget
  (T5's bird on half B: 0.137 against 0.443; the thirty-first session).
* ``nearest-late``: stage 1 as ``best``; the budget is raised as by ``nearest`` only after
  stage 2, over all the class's settings, so thresholds that stage 2 brings within the budget
  are kept, and a class that no setting brings within it still gets the smallest raise. Where
  its best within the raised budget is a stage-1 setting of other thresholds, stage 2 is
  scored at those thresholds too (once, also when the held-on guard has the choice made
  again) and the class chooses again (within a budget raised as far as its quickest setting
  now needs).

A class without validation events keeps the model's values. The test split is refused.

``--others DIR`` adds the files of a set of sounds of none of the labels that ``rttag data
others --split validation`` wrote (from packages only the validation side uses) to the tuning
split, without events: every ``on`` the model gives there counts as a false event of its class
in every stage (event F1, segment F1, held-on files), and the false ``on``s the chosen smoother
gives there are printed. The labelled validation files hold the ten labels' sounds only, so
without it no choice sees what a class does on a sound of none of the labels. A set of
test-side sounds is refused. On the shipped crnn it kept every ``on`` threshold and did not
lower its false events on a further validation-side set: door, explosion and footsteps peak as
high on such sounds as on their own events (docs/EVALUATION.md, round 70), so it is not part of
the shipped procedure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from .errors import RttagError
from .evaluate import (T_COLLAR_S, Detection, FrameTiming, Split, held_on, load_split, offset_collar_s,
                       match_onsets, recordings_per_label, run_model, sed_scores, smooth_runs)
from .smoother import FIELDS, SmootherParams

log = logging.getLogger(__name__)

GRID_ON = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Low values included: rare, short classes (explosion) may never reach 0.5."""
GRID_OFF_RATIO = (1.0, 0.75, 0.5)
STAGE1_MIN_ON_S = 0.1
STAGE1_MIN_OFF_S = 0.2
GRID_MIN_ON_S = (0.0, 0.05, 0.1, 0.2, 0.3)
GRID_MIN_OFF_S = (0.0, 0.1, 0.2, 0.4, 0.8, 1.5, 2.5)
"""Durations (s). min_on_s delays every decision (`at`), so it stops at 0.3 s; min_off_s only
delays offsets, so it reaches further."""


def stage2_durations(stage1_min_on_s: float) -> tuple[tuple[float, float], ...]:
    """Stage 2's (min_on_s, min_off_s) pairs, s: the grid without stage 1's own pair, scored there already."""
    return tuple(pair for pair in itertools.product(GRID_MIN_ON_S, GRID_MIN_OFF_S)
                 if pair != (stage1_min_on_s, STAGE1_MIN_OFF_S))


MAX_LATENCY_S = 0.25
"""Default decision-latency budget (s) per class: median ``at`` − reference onset."""
MAX_HELD_ON = 0.02
"""Default share of the tuning files through which a setting may hold a class on (see the module docstring)."""
MIN_RECALL = 0.0
"""Default floor on the share of a class's validation events a setting must detect to be eligible."""
MAX_LAG_S = 1.0
"""Longest onset delay (s) taken as reaction lag."""
MAX_OFFSET_LAG_S = 1.0
"""Longest offset back-dating (s) tried."""
OFFSET_LAG_STEP_S = 0.05
GRID_OFFSET_EXCESS_DB = (2.0, 3.0, 4.0, 5.0)
"""``offset_excess_db`` values tried per class against the lag rule (dB)."""
GRID_DOMINANCE = (0.0, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
"""``dominance`` values tried per class, last (ratio to the most probable other class)."""


def _event_then_segment(c: "Candidate") -> tuple[float, float]:
    return c.event_f1, c.segment_f1


CLASS_ORDER = {
    "class": _event_then_segment,
    "micro": _event_then_segment,
    "sum": lambda c: (c.event_f1 + c.segment_f1, c.event_f1),
    "segment": lambda c: (c.segment_f1, c.event_f1),
}
"""Per objective (``--objective``), the order of one class's eligible candidates (the higher
the better); the micro objective starts its joint search from the class-wise choice."""
OBJECTIVES = tuple(CLASS_ORDER)
OVER_BUDGET = ("best", "nearest", "nearest-late")
DURATIONS_AT = ("best", "both")
BUDGET_STEP_S = 0.05
"""Step (s) by which ``--over-budget nearest`` (and ``nearest-late``) raises a class's latency budget."""


@dataclass(frozen=True)
class Candidate:
    """What one smoother setting (``values``, in :data:`rttag.smoother.FIELDS` order) scored for one class:
    event and segment F1, median decision latency (s; NaN when nothing matched), true
    positive and system event counts, the class's reference event count (0 where unknown:
    no recall floor applies), and the files through which it holds the class on
    (:func:`rttag.evaluate.held_on`)."""

    values: tuple
    event_f1: float
    segment_f1: float
    latency_s: float
    n_tp: int
    n_sys: int
    n_ref: int = 0
    files_held_on: int = 0

    def eligible(self, max_latency_s: float, min_recall: float = 0.0) -> bool:
        """Detects at least one of the class's events and at least ``min_recall`` of them,
        with its median decision latency within ``max_latency_s``."""
        return (self.n_tp > 0 and self.n_tp >= min_recall * self.n_ref
                and self.latency_s <= max_latency_s)  # NaN compares False


class TuneError(RttagError):
    """Tuning cannot run as asked."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Choose per-class smoother thresholds, durations, onset/offset placement and dominance on the "
                          "validation split and write them into the model's metadata.")
    parser.add_argument("--model", required=True, help="ONNX model (name in models/ or path)")
    parser.add_argument("--data", default="data", help="dataset folder with metadata/SPLIT.tsv and audio/SPLIT/")
    parser.add_argument("--split", default="validation", help="split to tune on (never test)")
    parser.add_argument("--others", metavar="DIR",
                        help="also tune on a set of sounds of none of the labels that 'rttag data others --split "
                             "validation' wrote to DIR: its files have no events, so every on there is a false event")
    parser.add_argument("-o", "--output", help="write the tuned model here (default: rewrite --model in place)")
    parser.add_argument("--dry-run", action="store_true", help="print the choice, write nothing")
    parser.add_argument("--providers", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    parser.add_argument("--max-latency", type=float, default=MAX_LATENCY_S, metavar="S",
                        help="per-class budget for the median decision latency on validation, s "
                        f"(default {MAX_LATENCY_S:g}; a large value turns it off)")
    parser.add_argument("--min-recall", type=float, default=MIN_RECALL, metavar="R",
                        help="a setting is eligible for a class only if it detects at least this share of the "
                        f"class's validation events (default {MIN_RECALL:g}: at least one)")
    parser.add_argument("--max-held-on", type=float, default=MAX_HELD_ON, metavar="SHARE",
                        help="a class whose chosen setting holds it on through more than this share of the files "
                        "(events over 90 %% of a file the class does not fill) is chosen again without such "
                        f"settings (default {MAX_HELD_ON:g}; 1 turns the guard off)")
    parser.add_argument("--max-overall-latency", type=float, metavar="S",
                        help="budget for the median decision latency over all matched validation events "
                        "together, s: the dominance stage may then let classes exceed --max-latency while "
                        "this holds (default: off, every class keeps --max-latency)")
    parser.add_argument("--overall-quantile", type=float, default=0.5, metavar="Q",
                        help="with --max-overall-latency: the share of all matched validation events that must be "
                        "decided within it (default 0.5: the median)")
    parser.add_argument("--over-budget", default="best", choices=OVER_BUDGET,
                        help="a class with no setting within --max-latency takes best: its best event F1 at any "
                        f"latency (default); nearest: its best within the budget raised in {BUDGET_STEP_S:g} s "
                        "steps to the first that admits a setting, from the thresholds on; nearest-late: "
                        "thresholds as best, and the budget raised as nearest only once every setting is scored")
    parser.add_argument("--durations-at", default="best", choices=DURATIONS_AT,
                        help="best: stage 2 scores durations at each class's best thresholds within its budget "
                        "(default); both: also at its best thresholds at any latency, where a shorter wait can "
                        "bring them within the budget")
    parser.add_argument("--stage1-min-on", type=float, default=STAGE1_MIN_ON_S, metavar="S",
                        help="min_on_s at which stage 1 scores the thresholds, s, one of "
                        f"{', '.join(f'{v:g}' for v in GRID_MIN_ON_S)} (default {STAGE1_MIN_ON_S:g}); "
                        "its wait decides which thresholds count as within --max-latency")
    parser.add_argument("--objective", default="class", choices=OBJECTIVES,
                        help="class: each class's best event F1 on its own (default); "
                        "micro: the settings that together give the best micro event F1; "
                        "sum: each class's best event F1 + segment F1; segment: each class's best segment F1")


def onset_lags(split: Split, detections: dict[str, list[Detection]], labels: Sequence[str]) -> dict[str, float]:
    """Per label, the median (predicted onset − reference onset) over matched events, in s
    (0 when nothing matched; never negative: the smoother only back-dates). Matches placed
    more than ``MAX_LAG_S`` after the reference onset are left out: they are late detections
    inside long events, not the model's reaction lag, and a few of them on a small validation
    split would otherwise back-date every event of the class by seconds."""
    diffs: dict[str, list[float]] = {label: [] for label in labels}
    for name in split.paths:
        for ref, det in match_onsets(split.reference[name], detections.get(name, [])):
            if det.onset - ref.onset <= MAX_LAG_S:
                diffs[ref.label].append(det.onset - ref.onset)
    return {label: max(0.0, float(np.median(d))) if d else 0.0 for label, d in diffs.items()}


def offset_hits(split: Split, detections: dict[str, list[Detection]], labels: Sequence[str],
                ends: dict[str, float], shifts: np.ndarray) -> dict[str, np.ndarray]:
    """Per label, for each offset back-dating in ``shifts`` (s), how many events whose onset is
    within the onset collar of a reference onset would have their offset within the offset
    collar. Events still on when their file ended at ``ends[name]`` s are left out."""
    hits = {label: np.zeros(len(shifts), int) for label in labels}
    for name in split.paths:
        for ref, det in match_onsets(split.reference[name], detections.get(name, [])):
            if abs(det.onset - ref.onset) <= T_COLLAR_S and det.offset < ends[name]:
                collar = offset_collar_s(ref.onset, ref.offset)
                hits[ref.label] += np.abs(np.maximum(det.offset - shifts, det.onset) - ref.offset) <= collar
    return hits


def offset_lags(split: Split, detections: dict[str, list[Detection]], labels: Sequence[str],
                ends: dict[str, float]) -> dict[str, float]:
    """Per label, the offset back-dating (s) that brings the most offsets of onset-matched
    events within the offset collar (see the module docstring); 0 when nothing matched.
    ``detections`` are placed as the smoother would place them with ``offset_lag_s = 0``;
    events still on when their file ended at ``ends[name]`` s are never moved."""
    shifts = np.round(np.arange(0.0, MAX_OFFSET_LAG_S + 1e-9, OFFSET_LAG_STEP_S), 4)
    hits = offset_hits(split, detections, labels, ends, shifts)
    return {label: float(shifts[int(np.argmax(h))]) for label, h in hits.items()}


def backdate(detections: dict[str, list[Detection]], onset_lags: dict[str, float],
             offset_lags: dict[str, float], ends: dict[str, float]) -> dict[str, list[Detection]]:
    """The events a smoother with ``onset_lag_s = onset_lags`` and ``offset_lag_s =
    offset_lags`` would give, from a run without lags: onsets moved earlier (not before 0),
    offsets moved earlier (not before their onset) except those of events still on when the
    file ended at ``ends[name]`` s (the smoother closes them at the end); decision times
    unchanged."""
    out = {}
    for name, dets in detections.items():
        out[name] = []
        for d in dets:
            onset = max(0.0, d.onset - onset_lags[d.label])
            offset = d.offset if d.offset >= ends[name] else max(onset, d.offset - offset_lags[d.label])
            out[name].append(replace(d, onset=onset, offset=offset))
    return out


def latency_lists(split: Split, detections: dict[str, list[Detection]], labels: Sequence[str]) -> dict[str, list[float]]:
    """Per label, the decision latency (``at`` − reference onset, s) of every matched event
    (:func:`rttag.evaluate.match_onsets`)."""
    lat: dict[str, list[float]] = {label: [] for label in labels}
    for name in split.paths:
        for ref, det in match_onsets(split.reference[name], detections.get(name, [])):
            lat[ref.label].append(det.at - ref.onset)
    return lat


def decision_latencies(split: Split, detections: dict[str, list[Detection]], labels: Sequence[str]) -> dict[str, float]:
    """Per label, the median decision latency (s) over the matched events; NaN when nothing matched."""
    return {label: float(np.median(v)) if v else float("nan")
            for label, v in latency_lists(split, detections, labels).items()}


def _params(rows: dict[str, tuple], labels: Sequence[str]) -> SmootherParams:
    """Smoother parameters from one row of values per label, in :data:`rttag.smoother.FIELDS` order."""
    return SmootherParams(*(tuple(rows[label][i] for label in labels) for i in range(len(FIELDS))))


def _with(values: tuple, field: str, value: float) -> tuple:
    """A row of values (FIELDS order) with ``field`` set to ``value``."""
    at = FIELDS.index(field)
    return (*values[:at], value, *values[at + 1:])


def _rescored(cand: Candidate, values: tuple, scores: dict, label: str, **changes) -> Candidate:
    """``cand`` with new ``values`` and the event / segment F1 and counts ``scores`` (from
    :func:`rttag.evaluate.sed_scores`) give ``label``; ``changes``: further fields."""
    ev, seg = scores["event"]["per_class"][label], scores["segment"]["per_class"][label]
    return replace(cand, values=values, event_f1=ev["f1"] or 0.0, segment_f1=seg["f1"] or 0.0, n_tp=ev["n_tp"],
                   n_sys=ev["n_sys"], **changes)


def _score(split: Split, runs: dict, labels: Sequence[str], timing: FrameTiming,
           values_by_label: dict[str, tuple], with_offsets: bool = False) -> dict[str, Candidate]:
    """Per class, what one setting (``values_by_label``: on, off, min_on_s, min_off_s) scores,
    with the onset lag measured at lag 0 and then applied; ``with_offsets``: the offset lag of
    :func:`offset_lags` too (else 0). The latency is measured on the events so placed: the
    back-dated onsets decide which events match, as in :func:`hold_back` and ``rttag eval``."""
    rows = {label: (*values_by_label[label], *(0.0,) * (len(FIELDS) - 4)) for label in labels}
    dets = smooth_runs(runs, labels, _params(rows, labels), timing)
    ends = {name: r.t_end for name, r in runs.items()}
    onset_lag = onset_lags(split, dets, labels)
    no_lag = dict.fromkeys(labels, 0.0)
    offset_lag = offset_lags(split, backdate(dets, onset_lag, no_lag, ends), labels, ends) if with_offsets else no_lag
    placed = backdate(dets, onset_lag, offset_lag, ends)
    latency = decision_latencies(split, placed, labels)  # matched on the back-dated onsets, as rttag eval matches
    scores = sed_scores(split, placed, labels)
    held = held_on(split, placed, labels)["per_class"]
    out = {}
    for label in labels:
        ev, seg = scores["event"]["per_class"][label], scores["segment"]["per_class"][label]
        values = _with(_with(rows[label], "onset_lag_s", onset_lag[label]), "offset_lag_s", offset_lag[label])
        out[label] = Candidate(values, ev["f1"] or 0.0,
                               seg["f1"] or 0.0, latency[label], ev["n_tp"], ev["n_sys"], ev["n_ref"], held[label])
    return out


def restrict(split: Split, runs: dict, labels: Sequence[str], keep: Sequence[str]) -> tuple[Split, dict]:
    """``split`` and the cached ``runs`` (``{file name: FileRun}``, probabilities ``[T,
    len(labels)]``) cut down to the classes ``keep`` (in that order): the reference of those
    labels only and those columns of the probabilities. Without dominance the smoother and
    every per-class figure treat each class on its own, so :func:`_score` of the cut gives
    those classes' candidates unchanged."""
    idx = [list(labels).index(label) for label in keep]
    return split.only(keep), {name: replace(r, probs=r.probs[:, idx]) for name, r in runs.items()}


def not_held_on(candidates: Sequence[Candidate], max_files: float) -> list[Candidate]:
    """The candidates that hold their class on through at most ``max_files`` files; those that
    do in the fewest when none is within it."""
    fewest = min(c.files_held_on for c in candidates)
    return [c for c in candidates if c.files_held_on <= max(max_files, fewest)]


def check_share(max_held_on: float) -> None:
    """Refuses a ``--max-held-on`` outside [0, 1]."""
    if not 0.0 <= max_held_on <= 1.0:
        raise TuneError(f"--max-held-on {max_held_on:g}: a share of the files, from 0 to 1")


def check_quantile(quantile: float) -> None:
    """Refuses an ``--overall-quantile`` outside (0, 1)."""
    if not 0.0 < quantile < 1.0:
        raise TuneError(f"--overall-quantile {quantile:g}: a share of the matched events, above 0 and below 1")


def check_stage1_min_on(stage1_min_on_s: float) -> None:
    """Refuses a ``--stage1-min-on`` that is not in stage 2's grid (:data:`GRID_MIN_ON_S`), whose
    pair with ``STAGE1_MIN_OFF_S`` stage 2 leaves out as scored already."""
    if stage1_min_on_s not in GRID_MIN_ON_S:
        raise TuneError(f"--stage1-min-on {stage1_min_on_s:g}: "
                        f"not one of {', '.join(f'{v:g}' for v in GRID_MIN_ON_S)}")


def class_choice(candidates: Sequence[Candidate], max_latency_s: float, min_recall: float = 0.0,
                 objective: str = "class") -> Candidate:
    """The eligible candidate that ranks first by the ``objective``'s :data:`CLASS_ORDER` (by
    default the best event F1, then segment F1; the first on ties); the first by that order
    regardless of latency and recall when none is eligible."""
    order = CLASS_ORDER[objective]
    return max(candidates, key=lambda c: (c.eligible(max_latency_s, min_recall), *order(c)))


def class_budget(candidates: Sequence[Candidate], max_latency_s: float, min_recall: float = 0.0) -> float:
    """The smallest latency budget ``max_latency_s`` + k · :data:`BUDGET_STEP_S` (s, k ≥ 0)
    within which one of ``candidates`` is eligible (``--over-budget nearest``, ``nearest-late``);
    ``max_latency_s`` when none detects enough of the class's events at any latency."""
    quickest = min((c.latency_s for c in candidates if c.eligible(float("inf"), min_recall)), default=max_latency_s)
    steps = max(0, int(np.ceil((quickest - max_latency_s) / BUDGET_STEP_S - 1e-9)))
    while max_latency_s + steps * BUDGET_STEP_S < quickest:  # float rounding of the division
        steps += 1
    return max_latency_s + steps * BUDGET_STEP_S


def micro_f1(choice: dict[str, Candidate], n_ref: dict[str, int]) -> float:
    """Micro event F1 of one candidate per class: 2·ΣTP / (ΣNref + ΣNsys)."""
    total = sum(n_ref[label] for label in choice) + sum(c.n_sys for c in choice.values())
    return 2 * sum(c.n_tp for c in choice.values()) / total if total else 0.0


def joint_choice(candidates: dict[str, list[Candidate]], start: dict[str, Candidate], n_ref: dict[str, int],
                 budgets: Mapping[str, float], min_recall: float = 0.0) -> dict[str, Candidate]:
    """One candidate per class, eligible within the class's latency budget (``budgets``, s),
    maximising :func:`micro_f1` (Dinkelbach's method, see the module docstring). A class with
    no eligible candidate keeps its ``start`` one."""
    pool = {label: [c for c in cands if c.eligible(budgets[label], min_recall)] or [start[label]]
            for label, cands in candidates.items()}
    choice = dict(start)
    for _ in range(100):  # λ rises strictly until the choice is fixed; a handful of rounds in practice
        lam = micro_f1(choice, n_ref)
        new = {label: max(pool[label], key=lambda c: (2 * c.n_tp - lam * c.n_sys, c.segment_f1)) for label in pool}
        if new == choice or micro_f1(new, n_ref) <= lam:
            break
        choice = new
    return choice


def place_offsets(split: Split, runs: dict, labels: Sequence[str], timing: FrameTiming,
                  choice: dict[str, Candidate]) -> dict[str, Candidate]:
    """``choice`` (a candidate per class with events) with each class's offsets placed (see
    the module docstring): the offset lag of :func:`offset_lags` at its chosen setting, then
    per class the ``offset_excess_db`` of :data:`GRID_OFFSET_EXCESS_DB` that brings more
    offsets of onset-matched events within the collar than the lag does (0 if none does),
    and scored again with it."""
    values = {label: choice[label].values[:4] if label in choice else (1.0, 1.0, 0.0, 0.0) for label in labels}
    scored = _score(split, runs, labels, timing, values, with_offsets=True)
    ends = {name: r.t_end for name, r in runs.items()}
    zero = np.zeros(1)

    def hits_with(excess_db: dict[str, float]) -> tuple[dict, dict[str, int]]:
        params = _params({label: _with(scored[label].values, "offset_excess_db", excess_db[label])
                          for label in labels}, labels)
        dets = smooth_runs(runs, labels, params, timing)
        return dets, {label: int(h[0]) for label, h in offset_hits(split, dets, labels, ends, zero).items()}

    dets, best_hits = hits_with(dict.fromkeys(labels, 0.0))
    best = dict.fromkeys(labels, 0.0)
    for db in GRID_OFFSET_EXCESS_DB:
        _, hits = hits_with(dict.fromkeys(labels, db))
        for label in labels:
            if hits[label] > best_hits[label]:
                best[label], best_hits[label] = db, hits[label]
    if any(best.values()):
        dets, _ = hits_with(best)
    scores, held = sed_scores(split, dets, labels), held_on(split, dets, labels)["per_class"]
    return {label: _rescored(scored[label], _with(scored[label].values, "offset_excess_db", best[label]), scores, label,
                             files_held_on=held[label])
            for label in choice}


def hold_back(split: Split, runs: dict, labels: Sequence[str], timing: FrameTiming, placed: dict[str, Candidate],
              n_ref: dict[str, int], budgets: Mapping[str, float],
              max_overall_latency_s: float | None = None, min_recall: float = 0.0,
              overall_quantile: float = 0.5) -> tuple[dict[str, Candidate], np.ndarray]:
    """``placed`` (a candidate per class with events, offsets placed) with each class's
    ``dominance`` of :data:`GRID_DOMINANCE` chosen for the micro event F1 (see the module
    docstring); classes without events stay silent meanwhile, as in :func:`place_offsets`.
    Returns the choice and the decision latencies (s) of every matched event of every class
    together (:func:`chosen_latencies`).

    Each class keeps its budget (``budgets``, s) on its own, as in the other stages. With
    ``max_overall_latency_s``, that choice is then the start of :func:`overall_ascent`, which may
    let classes wait past their budget while the ``overall_quantile`` of the latencies over
    every matched event (0.5: their median) stays within it (a start already over it stands)."""
    silent = (1.0, 1.0, *(0.0,) * (len(FIELDS) - 2))
    pool: dict[str, list[Candidate]] = {label: [] for label in placed}
    waits: dict[tuple[str, float], list[float]] = {}  # (label, dominance) → its matched events' latencies (s)
    for dominance in GRID_DOMINANCE:
        rows = {label: _with(placed[label].values if label in placed else silent, "dominance", dominance)
                for label in labels}
        dets = smooth_runs(runs, labels, _params(rows, labels), timing)
        scores, lat = sed_scores(split, dets, labels), latency_lists(split, dets, labels)
        held = held_on(split, dets, labels)["per_class"]
        for label in pool:
            latency = float(np.median(lat[label])) if lat[label] else float("nan")
            pool[label].append(_rescored(placed[label], rows[label], scores, label, latency_s=latency,
                                         files_held_on=held[label]))
            waits[label, dominance] = lat[label]
    start = {label: cands[0] for label, cands in pool.items()}
    allowed = {label: [c for c in cands if c.eligible(budgets[label], min_recall)] or [start[label]]
               for label, cands in pool.items()}
    choice = joint_choice(allowed, start, n_ref, dict.fromkeys(allowed, float("inf")), min_recall)
    if max_overall_latency_s is not None:
        choice = overall_ascent(choice, pool, waits, n_ref, max_overall_latency_s, min_recall, overall_quantile)
    return choice, chosen_latencies(choice, waits)


def chosen_latencies(choice: dict[str, Candidate], waits: Mapping[tuple[str, float], Sequence[float]]) -> np.ndarray:
    """The decision latencies (s) of the matched events of every class of ``choice`` together
    (``waits``: by label and dominance, the latencies of the class's matched events)."""
    at = FIELDS.index("dominance")
    return np.array([w for label, c in choice.items() for w in waits[label, c.values[at]]], dtype=float)


def overall_latency(choice: dict[str, Candidate], waits: Mapping[tuple[str, float], Sequence[float]],
                    quantile: float = 0.5) -> float:
    """The ``quantile`` (0.5: the median) of :func:`chosen_latencies` (s); NaN when nothing
    matched. Interpolated linearly, as ``np.median`` is, so 0.5 gives the median ``rttag eval``
    reports; within S s at quantile q, the share q of the matched events, to within one event,
    is decided within S s."""
    everything = chosen_latencies(choice, waits)
    return float(np.quantile(everything, quantile)) if len(everything) else float("nan")


def overall_ascent(start: dict[str, Candidate], pool: Mapping[str, Sequence[Candidate]],
                   waits: Mapping[tuple[str, float], Sequence[float]], n_ref: dict[str, int],
                   max_overall_latency_s: float, min_recall: float = 0.0,
                   quantile: float = 0.5) -> dict[str, Candidate]:
    """From ``start`` (one candidate per class), change one class's candidate (from ``pool``,
    at least ``min_recall`` of its events detected) at a time: each time the change that
    raises :func:`micro_f1` most (the lower overall latency on ties) while
    :func:`overall_latency` at ``quantile`` stays within ``max_overall_latency_s`` (s), until
    none does. A ``start`` over that budget is returned unchanged."""
    choice = dict(start)
    if not overall_latency(choice, waits, quantile) <= max_overall_latency_s:  # NaN: nothing matched, nothing to trade
        return choice
    while True:
        now, best, best_key = micro_f1(choice, n_ref), None, None
        for label, cands in pool.items():
            for cand in cands:
                if cand is choice[label] or not cand.eligible(float("inf"), min_recall):
                    continue
                trial = {**choice, label: cand}
                latency = overall_latency(trial, waits, quantile)
                key = (micro_f1(trial, n_ref), -latency)
                if latency <= max_overall_latency_s and key[0] > now and (best_key is None or key > best_key):
                    best, best_key = trial, key
        if best is None:
            return choice
        choice = best


def choose(split: Split, runs: dict, labels: Sequence[str], timing: FrameTiming, fallback: SmootherParams,
           max_latency_s: float = MAX_LATENCY_S, objective: str = "class",
           max_overall_latency_s: float | None = None, overall_quantile: float = 0.5, min_recall: float = MIN_RECALL,
           max_held_on: float = MAX_HELD_ON, over_budget: str = "best",
           durations_at: str = "best",
           stage1_min_on_s: float = STAGE1_MIN_ON_S) -> tuple[SmootherParams, dict, dict]:
    """The grid search (see the module docstring); ``stage1_min_on_s`` (s, one of
    :data:`GRID_MIN_ON_S`) is the wait at which stage 1 scores the thresholds. Returns the
    chosen parameters; per label, what the choice scored on ``split`` (``event_f1``,
    ``segment_f1``, ``latency_s``: median decision latency, ``within_budget`` (within
    ``max_latency_s``), ``budget_s`` (the class's budget: raised by ``over_budget`` "nearest"
    or "nearest-late"), ``n_ref``, ``files_held_on``, ``held_on_ok``: False when the chosen
    setting still holds it on through more than ``max_held_on`` of the files (every setting
    did), ``tuned``: False when the class had no events and kept ``fallback``); and micro event
    F1 figures on ``split`` over the classes with events: ``class_micro_f1`` (each class's own
    best by the ``objective``'s :data:`CLASS_ORDER`, offsets not yet placed),
    ``choice_micro_f1`` (the ``objective``'s choice, offsets not yet placed),
    ``placed_micro_f1`` (offsets placed, no dominance yet) and ``micro_f1`` (the final choice,
    with dominance); ``overall_latency_s``, the final choice's median decision
    latency over all matched events together, and ``overall_within``, the share of them decided
    within ``max_overall_latency_s`` (None without it; it and ``overall_quantile``: see
    :func:`hold_back`)."""
    if objective not in OBJECTIVES:
        raise TuneError(f"objective {objective!r}: not one of {', '.join(OBJECTIVES)}")
    if over_budget not in OVER_BUDGET:
        raise TuneError(f"over_budget {over_budget!r}: not one of {', '.join(OVER_BUDGET)}")
    if durations_at not in DURATIONS_AT:
        raise TuneError(f"durations_at {durations_at!r}: not one of {', '.join(DURATIONS_AT)}")
    check_share(max_held_on)
    check_stage1_min_on(stage1_min_on_s)
    check_quantile(overall_quantile)
    max_held_files = max_held_on * len(split.paths)

    def scored(values_by_label: dict[str, tuple]) -> dict[str, Candidate]:
        return _score(split, runs, labels, timing, values_by_label)

    t0 = time.perf_counter()
    stage1 = {label: [] for label in labels}
    for on, ratio in itertools.product(GRID_ON, GRID_OFF_RATIO):
        for label, cand in scored({label: (on, round(on * ratio, 4), stage1_min_on_s, STAGE1_MIN_OFF_S)
                                   for label in labels}).items():
            stage1[label].append(cand)
    log.info("stage 1 (thresholds, min_on_s %g): %d settings, %.0f s", stage1_min_on_s,
             len(GRID_ON) * len(GRID_OFF_RATIO), time.perf_counter() - t0)
    durations_grid = stage2_durations(stage1_min_on_s)

    def pool(label: str, cands: list[Candidate], guarded: set[str]) -> list[Candidate]:
        return not_held_on(cands, max_held_files) if label in guarded else cands

    def budget(cands: Sequence[Candidate], stage: int) -> float:
        raise_it = over_budget == "nearest" or (over_budget == "nearest-late" and stage == 2)
        return class_budget(cands, max_latency_s, min_recall) if raise_it else max_latency_s

    n_ref = {label: sum(e.label == label for evs in split.reference.values() for e in evs) for label in labels}
    tuned = [label for label in labels if n_ref[label] > 0]
    guarded: set[str] = set()
    thresholds: dict[str, tuple] = {}
    stage2: dict[str, list[Candidate]] = {}

    def durations(at: dict[str, tuple]) -> None:
        """Stage 2 at the (on, off) thresholds ``at`` of each class in it whose stage 2 has not been
        scored there yet (so never twice, also across the held-on guard): candidates added to ``stage2``."""
        todo = [label for label, pair in at.items() if all(c.values[:2] != pair for c in stage2[label])]
        if not todo:
            return
        t0 = time.perf_counter()
        sub_split, sub_runs = restrict(split, runs, labels, todo)
        for min_on, min_off in durations_grid:
            for label, cand in _score(sub_split, sub_runs, todo, timing,
                                      {label: (*at[label], min_on, min_off) for label in todo}).items():
                stage2[label].append(cand)
        log.info("stage 2 (durations): %d settings, %s, %.0f s", len(durations_grid),
                 ", ".join(todo), time.perf_counter() - t0)

    allowed: dict[str, list[Candidate]] = {}
    budgets: dict[str, float] = {}
    by_class: dict[str, Candidate] = {}

    def pick(label: str) -> None:
        """The class's best among every setting scored for it (stages 1 and 2) within its budget."""
        allowed[label] = pool(label, stage1[label] + stage2[label], guarded)
        budgets[label] = budget(allowed[label], 2)
        by_class[label] = class_choice(allowed[label], budgets[label], min_recall, objective)

    def anchors(cands: list[Candidate]) -> tuple[tuple, ...]:
        """The (on, off) thresholds stage 2 scores a class's durations at: its best stage-1
        thresholds within its budget, and with ``durations_at`` "both" also its best at any latency."""
        best = class_choice(cands, budget(cands, 1), min_recall, objective).values[:2]
        if durations_at == "best":
            return (best,)
        free = class_choice(cands, float("inf"), min_recall, objective).values[:2]
        return (best,) if free == best else (best, free)
    while True:
        first = {label: pool(label, stage1[label], guarded) for label in labels}
        before, thresholds = thresholds, {label: anchors(first[label]) for label in labels}
        # stage 2 scores the classes one by one (no dominance yet), so after the guard a class
        # whose thresholds stayed keeps its candidates and only the others are scored again
        redo = [label for label in labels if thresholds[label] != before.get(label)]
        stage2.update({label: [] for label in redo})
        for k in range(max((len(thresholds[label]) for label in redo), default=0)):
            durations({label: thresholds[label][k] for label in redo if len(thresholds[label]) > k})
        for label in tuned:
            pick(label)
        if over_budget == "nearest-late":
            # a raised budget can take a stage-1 setting of other thresholds, whose durations
            # stage 2 has not tried: try them (once: after the guard a class keeps what it has
            # scored), and choose again within the (not higher) budget
            moved = {label: by_class[label].values[:2] for label in tuned
                     if by_class[label].values[:2] not in thresholds[label]}
            durations(moved)
            for label in moved:
                pick(label)
        choice = by_class if objective != "micro" else joint_choice(allowed, by_class, n_ref, budgets, min_recall)
        placed = place_offsets(split, runs, labels, timing, choice)
        t0 = time.perf_counter()
        final, latencies = hold_back(split, runs, labels, timing, placed, n_ref, budgets,
                                     max_overall_latency_s, min_recall, overall_quantile)
        log.info("dominance: %d settings, %.0f s", len(GRID_DOMINANCE), time.perf_counter() - t0)
        over = [label for label in tuned if label not in guarded and final[label].files_held_on > max_held_files]
        if not over:
            break
        log.info("held on through more than %g %% of the files (%.1f): %s; chosen again without such settings",
                 100 * max_held_on, max_held_files, ", ".join(f"{label} ({final[label].files_held_on})" for label in over))
        guarded.update(over)
    chosen, report = {f: [] for f in FIELDS}, {}
    for k, label in enumerate(labels):
        c = final.get(label)
        values = c.values if c else tuple(getattr(fallback, f)[k] for f in FIELDS)
        for f, v in zip(FIELDS, values):
            chosen[f].append(round(float(v), 4))
        report[label] = {"event_f1": c.event_f1 if c else 0.0, "segment_f1": c.segment_f1 if c else 0.0,
                         "latency_s": None if not c or np.isnan(c.latency_s) else c.latency_s,
                         "within_budget": bool(c and c.eligible(max_latency_s)),
                         "budget_s": budgets.get(label, max_latency_s), "n_ref": n_ref[label],
                         "files_held_on": c.files_held_on if c else 0,
                         "held_on_ok": bool(not c or c.files_held_on <= max_held_files), "tuned": c is not None}
    nothing = not len(latencies)
    within = None if max_overall_latency_s is None else (
        float("nan") if nothing else float(np.mean(latencies <= max_overall_latency_s)))
    summary = {"objective": objective, "class_micro_f1": micro_f1(by_class, n_ref),
               "choice_micro_f1": micro_f1(choice, n_ref), "placed_micro_f1": micro_f1(placed, n_ref),
               "micro_f1": micro_f1(final, n_ref),
               "overall_latency_s": float("nan") if nothing else float(np.median(latencies)),
               "overall_within": within}
    return SmootherParams(*(tuple(chosen[f]) for f in FIELDS)), report, summary


def write_smoother(src: Path, dst: Path, params: SmootherParams) -> None:
    """Copy the ONNX model ``src`` to ``dst`` with the ``smoother`` block of its ``rttag``
    metadata replaced by ``params``; the graph and every other metadata key are kept."""
    try:
        import onnx
    except ImportError:
        raise TuneError("tune needs the onnx package: pip install 'rttag[dev]'") from None
    model = onnx.load(str(src))
    props = [p for p in model.metadata_props if p.key == "rttag"]
    if not props:
        raise TuneError(f"{src}: no 'rttag' metadata; not an rttag model")
    meta = json.loads(props[0].value)
    meta["smoother"] = {f: list(getattr(params, f)) for f in FIELDS}
    props[0].value = json.dumps(meta)
    onnx.save(model, str(dst))


def format_choice(labels: Sequence[str], params: SmootherParams, report: dict,
                  recordings: Optional[dict] = None) -> str:
    """The chosen settings as a Markdown table (one row per label); ``recordings``: the distinct
    source recordings per label of the tuning split (:func:`rttag.evaluate.recordings_per_label`),
    a column where given."""
    lines = ["| label | on | off | min_on_s | min_off_s | onset_lag_s | offset_lag_s | offset_excess_db | dominance "
             "| val event F1 | val segment F1 | val latency (s) | val files held on | val events |"
             + (" val recordings |" if recordings else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if recordings else "")]
    for k, label in enumerate(labels):
        r = report[label]
        note = "" if r["tuned"] else " (no events: kept)"
        if r["latency_s"] is None:
            latency = "—"
        elif r["within_budget"]:
            latency = f"{r['latency_s']:.2f}"
        elif r["latency_s"] <= r["budget_s"]:
            latency = f"{r['latency_s']:.2f} (budget raised to {r['budget_s']:.2f})"
        else:
            latency = f"{r['latency_s']:.2f} (over budget)"
        held = f"{r['files_held_on']}" + ("" if r["held_on_ok"] else " (over the guard)")
        lines.append(f"| {label}{note} | " + " | ".join(f"{getattr(params, f)[k]:g}" for f in FIELDS)
                     + f" | {r['event_f1']:.3f} | {r['segment_f1']:.3f} | {latency} | {held} | {r['n_ref']} |"
                     + (f" {recordings.get(label, 0)} |" if recordings else ""))
    return "\n".join(lines)


FEW_RECORDINGS = 5
"""A class tuned on events from fewer distinct source recordings than this gets a warning: a
setting chosen on a few sources often does not carry to others (docs/EVALUATION.md, round 58d:
half B's settings recognise 72 % of its own recordings and 47 % of the test's)."""


def warn_few_recordings(labels: Sequence[str], report: dict, recordings: dict) -> list[str]:
    """The tuned labels whose tuning events come from fewer than :data:`FEW_RECORDINGS` distinct
    source recordings (``recordings``: per label; empty where the dataset does not list them),
    each with a warning on the log."""
    few = [label for label in labels
           if recordings and report[label]["tuned"] and recordings.get(label, 0) < FEW_RECORDINGS]
    for label in few:
        log.warning("%s: its setting rests on %d source recording(s) of the tuning split; a setting chosen on "
                    "few sources often does not carry to others", label, recordings.get(label, 0))
    return few


OTHERS_PREFIX = "others/"
"""Where :func:`with_others` puts the ``--others`` files among the tuning split's names."""


def with_others(split: Split, data_dir: str, labels: Sequence[str]) -> Split:
    """``split`` plus the files of the ``rttag data others`` set in ``data_dir`` (no events; named
    ``others/others_N.wav``, :data:`OTHERS_PREFIX`); an error where ``data_dir`` is not such a
    set or its sounds come from packages of the test side (``"split": "test"`` in
    ``others.json``, or no side, as sets written before the sixty-eighth session): no smoother
    may be chosen on those."""
    from .dataset.others import SPLIT, OthersSetError, read_settings

    try:
        side = read_settings(data_dir).get("split", "test")
    except OthersSetError as exc:
        raise TuneError(f"--others {exc}") from None
    if side != "validation":
        raise TuneError(f"--others {data_dir}: its sounds are from the {side} side; tune only on a set written "
                        "with 'rttag data others --split validation'")
    return split.joined(load_split(data_dir, SPLIT, labels=labels), OTHERS_PREFIX)


def others_ons(split: Split, runs: dict, labels: Sequence[str], params: SmootherParams,
               timing: FrameTiming) -> Counter:
    """Per label, the ``on``s that ``params`` gives on the ``--others`` files of ``split`` (every
    one a false event)."""
    names = [n for n in split.paths if n.startswith(OTHERS_PREFIX)]
    detections = smooth_runs({n: runs[n] for n in names}, labels, params, timing)
    return Counter(d.label for dets in detections.values() for d in dets)


def run(args) -> int:
    from .runtime import OnnxModel, model_file

    if args.split == "test":
        raise TuneError("tuning must not look at the test split; use --split validation")
    check_share(args.max_held_on)
    check_stage1_min_on(args.stage1_min_on)
    check_quantile(args.overall_quantile)
    src = model_file(args.model)
    dst = Path(args.output) if args.output else src
    model = OnnxModel(src, providers=args.providers, threads=args.threads)
    info = model.info
    split = load_split(args.data, args.split, labels=info.labels)
    if args.others:
        split = with_others(split, args.others, info.labels)
    log.info("tuning %s on %s: %d files, %.1f min, %d reference events", info.name, split.name, len(split.paths),
             split.minutes, sum(len(v) for v in split.reference.values()))
    t0 = time.perf_counter()
    runs = run_model(model, split, info.smoother)
    log.info("model pass: %.0f s", time.perf_counter() - t0)
    timing = FrameTiming.of_frontend(info.frontend)
    params, report, summary = choose(split, runs, info.labels, timing, info.smoother,
                                     max_latency_s=args.max_latency, objective=args.objective,
                                     max_overall_latency_s=args.max_overall_latency,
                                     overall_quantile=args.overall_quantile, min_recall=args.min_recall,
                                     max_held_on=args.max_held_on, over_budget=args.over_budget,
                                     durations_at=args.durations_at, stage1_min_on_s=args.stage1_min_on)
    recordings = recordings_per_label(split)
    print(format_choice(info.labels, params, report, recordings))
    warn_few_recordings(info.labels, report, recordings)
    print(f"\n{split.name} micro event F1: {summary['micro_f1']:.4f} with the {summary['objective']} objective, "
          f"offsets placed and dominance ({summary['placed_micro_f1']:.3f} before dominance, "
          f"{summary['choice_micro_f1']:.3f} before offsets; {summary['class_micro_f1']:.3f} with each "
          f"class's own best); median decision latency over all matched events {summary['overall_latency_s']:.3f} s"
          + (f", {summary['overall_within']:.3f} of them within {args.max_overall_latency:g} s"
             if summary["overall_within"] is not None else ""))
    if args.others:
        ons = others_ons(split, runs, info.labels, params, timing)
        minutes = sum(d for n, d in split.durations.items() if n.startswith(OTHERS_PREFIX)) / 60.0
        print(f"--others {args.others}: {sum(ons.values())} false on events in {minutes:.1f} min of sounds of none of the "
              "labels (counted in the figures above)"
              + "".join(f"{', ' if k else ': '}{label} {n}" for k, (label, n) in enumerate(ons.most_common())))
    if args.dry_run:
        return 0
    write_smoother(src, dst, params)
    if OnnxModel(dst, providers="cpu").info.smoother != params:
        raise TuneError(f"{dst}: the rewritten metadata does not read back as written")
    log.info("wrote the tuned smoother into %s (%.0f s in all)", dst, time.perf_counter() - t0)
    return 0
