"""``rttag eval``: models against the reference of a dataset split, through the streaming path.

Each model runs once per file through :class:`rttag.pipeline.Pipeline` fed by
:class:`rttag.capture.FileSource` — the code ``rttag tag`` runs — with its tuned smoother;
the frame probabilities are kept (``on_probs``) and re-smoothed with raw thresholding
(``SmootherParams.raw(on_thresholds)``), which needs no second model pass. silero-vad runs
over the same files as a peer for ``speech``. Every system is scored the same way:

* event-based F1 / error rate (sed_eval; onset collar 200 ms, offset collar
  max(200 ms, 20 % of the event)), micro (``overall``), macro (class-wise average), per class;
  and the same F1 with the onset collar alone (what the offsets cost), with where the offsets
  of the events it pairs end: in the offset collar, late or early;
* segment-based F1 / error rate at 1 s (sed_eval);
* PSDS1 and PSDS2 (DCASE 2021+ scenario 1: DTC = GTC = 0.7, no cross-trigger, alpha_st = 1,
  eFPR up to 100 per hour — strict on where events start and end; scenario 2: DTC = GTC = 0.1,
  cross-trigger tolerance 0.3 with alpha_ct = 0.5, alpha_st = 1, eFPR up to 100 per hour —
  lenient on boundaries, strict on naming the wrong class) from the frame probabilities
  (sed_scores_eval), scores rounded to ``--psds-resolution`` (0.01 = 101 operating points;
  exact PSDS over unrounded scores took minutes per model on a 2-core machine);
* jitter: ``excess_on_per_min`` = sum over classes of max(0, predicted ``on`` − reference
  events) per minute of audio; ``short_spurious_per_min`` = predicted events shorter than
  250 ms that overlap no reference event of their label, per minute;
* held on: (file, label) pairs whose predicted events cover at least ``HELD_COVER`` of the
  file while its reference events of that label cover less than ``HELD_REF_BELOW`` — a class
  stuck on over a file's background, which the excess ``on`` rate cannot see (a class held on
  for a whole file is one ``on``); counted per label, with the files that have one or more;
* latency: for each reference event, the first not yet used prediction of its label whose
  onset ``t`` lies in [onset − 200 ms, offset) is its match; latency = the match's decision
  time ``at`` − reference onset (median and 90th percentile, s), over all classes and per
  class, with the median of the smoother's share of it (``wait``: from the frame where the
  detection's candidate began being ready to the decision, i.e. ``min_on_s`` and ``dominance``;
  the rest is the probability's rise to its threshold, framing included);
* where the detections fall: the share of predicted events whose onset lies within 200 ms of
  a reference onset of their label, that overlap a reference event of their label with the
  onset further off, that overlap only reference events of *other* labels (confusion), or
  that overlap no reference event at all (background);
* per source recording (where the dataset's ``manifest.json`` says which recordings each event
  holds): each recording's reference events and how many were detected (sed_eval's own
  matching, :func:`event_hits`), and in the table how many of the class's recordings get at
  least one hit on an event made of that recording alone — which of the sources the model
  recognises at all;
* how far the micro event and segment F1, and each class's event F1, can be trusted: 95 %
  percentile intervals over ``--bootstrap`` rounds of a two-way bootstrap over the split's
  files and their source recordings, each reference event weighed by the recordings mixed into
  it (``--bootstrap-unit recording``, the default where the dataset's ``manifest.json`` lists
  them; see :mod:`rttag.intervals`), or over the files only
  (``file``); and for every system scored on the same labels as the first one, its difference
  in micro F1 from the first on the same rounds — a paired interval, far narrower than the
  two intervals side by side suggest; on the same rounds, intervals of the excess ``on`` rate,
  of the median latency and of the files with a class held on, and each such system's excess
  ``on`` rate as a multiple of the first's (the jitter target compares a baseline with the
  crnn this way).

On a ``rttag data others`` set (a folder with ``others.json``: recordings of none of the labels,
played one by one) every ``on`` is false, and :mod:`rttag.false_alarms` scores it instead.

Same-label reference events that overlap or touch are merged first (an event roll cannot
show two overlapping dogs, and PSDS refuses them).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from . import false_alarms
from .errors import RttagError
from .events import OffEvent, OnEvent
from .frontend import FrontendParams
from .intervals import BOOTSTRAP_ROUNDS, BOOTSTRAP_SEED, UNITS, add_intervals, resampling
from .smoother import DB_PER_LOG, FIELDS as SMOOTHER_FIELDS, Smoother, SmootherParams

log = logging.getLogger(__name__)

DEFAULT_MODELS = "crnn,frame-mlp,context-cnn"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
T_COLLAR_S = 0.2
"""Onset collar, and the least offset collar (s)."""
OFFSET_FRACTION = 0.2
"""The offset collar is max(T_COLLAR_S, this × event length) (:func:`offset_collar_s`)."""
SEGMENT_S = 1.0
LEVEL_EDGES_DB = (2.0, 4.0, 6.0, 10.0)
"""Edges (dB) of the bins of :func:`onset_levels`' levels in the found-by-level figures:
< 2, 2–4, 4–6, 6–10, ≥ 10 dB."""
LEVEL_ONSET_S = 0.2
"""A reference event's start, whose level :func:`onset_levels` measures (s)."""
LEVEL_BACKGROUND_S = 2.0
"""The time before a reference onset whose per-bin median is the background it rises from (s)."""
LEVEL_MIN_BACKGROUND_S = 1.0
"""Events with less than this before their onset (s) get no level."""
SHORT_S = 0.25
"""Predicted events shorter than this (s) count as short."""
HELD_COVER = 0.9
"""A label's predicted events covering at least this share of a file hold it on there..."""
HELD_REF_BELOW = 0.5
"""...when its reference events cover less than this share of the file."""
PSDS1 = {"dtc_threshold": 0.7, "gtc_threshold": 0.7, "cttc_threshold": None, "alpha_ct": 0.0,
         "alpha_st": 1.0, "unit_of_time": "hour", "max_efpr": 100.0}
PSDS2 = {"dtc_threshold": 0.1, "gtc_threshold": 0.1, "cttc_threshold": 0.3, "alpha_ct": 0.5,
         "alpha_st": 1.0, "unit_of_time": "hour", "max_efpr": 100.0}
PSDS_SCENARIOS = {"psds1": PSDS1, "psds2": PSDS2}
PER_CLASS_KEYS = {"psds1": "per_class", "psds2": "per_class_psds2"}
"""Where :func:`psds` puts each scenario's per-class figures (``per_class`` kept for PSDS1)."""


class EvalError(RttagError):
    """A dataset split, model list or option that evaluation cannot use."""


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class RefEvent:
    """A reference event: onset and offset in s; ``sources``: the ids (``package:path``) of the
    recordings mixed into it, where the dataset's ``manifest.json`` says (empty where it does
    not; not compared)."""

    onset: float
    offset: float
    label: str
    sources: tuple = field(default=(), compare=False)


@dataclass(frozen=True)
class Detection:
    """A predicted event: onset ``t`` and offset in s (stream time, as the system places
    them) and ``at``, the stream time (s) at which the ``on`` was decided."""

    label: str
    onset: float
    offset: float
    at: float


@dataclass(frozen=True)
class Split:
    """The files of one split: ``paths`` and ``durations`` (s) by file name (relative to
    ``data/audio/SPLIT``), the merged reference events by file name (sorted), and the source
    recordings mixed into each file, ``{file: {label: [recording id, ...]}}`` (background under
    ``"background"``; empty where the dataset does not list them: see :func:`read_recordings`)."""

    name: str
    paths: dict
    durations: dict
    reference: dict
    recordings: dict = field(default_factory=dict)

    @property
    def minutes(self) -> float:
        return sum(self.durations.values()) / 60.0

    @property
    def events_attributed(self) -> bool:
        """Whether every reference event knows the recordings mixed into it (``RefEvent.sources``)."""
        return bool(self.recordings) and all(e.sources for evs in self.reference.values() for e in evs)

    def only(self, labels: Sequence[str]) -> "Split":
        """The same files with reference events of ``labels`` only."""
        keep = set(labels)
        return Split(self.name, self.paths, self.durations,
                     {f: [e for e in evs if e.label in keep] for f, evs in self.reference.items()}, self.recordings)

    def joined(self, other: "Split", prefix: str) -> "Split":
        """This split's files and ``other``'s, whose names get ``prefix`` (``rttag tune --others``:
        files of sounds of none of the labels, without events). The source recordings stay this
        split's (``other``'s files have none listed)."""
        def named(d: dict) -> dict:
            return {prefix + name: v for name, v in d.items()}

        clash = set(self.paths) & set(named(other.paths))
        if clash:
            raise EvalError(f"{sorted(clash)[0]} is in both {self.name} and {other.name}")
        return Split(self.name, {**self.paths, **named(other.paths)}, {**self.durations, **named(other.durations)},
                     {**self.reference, **named(other.reference)}, self.recordings)


def merge_events(events: Sequence[RefEvent]) -> list[RefEvent]:
    """Sorted events with overlapping or touching same-label events merged into one (holding the
    sources of both)."""
    out: list[RefEvent] = []
    open_by_label: dict[str, int] = {}
    for e in sorted(events, key=lambda e: (e.onset, e.offset, e.label)):
        i = open_by_label.get(e.label)
        if i is not None and e.onset <= out[i].offset:
            out[i] = RefEvent(out[i].onset, max(out[i].offset, e.offset), e.label,
                              tuple(dict.fromkeys(out[i].sources + e.sources)))
            continue
        open_by_label[e.label] = len(out)
        out.append(e)
    return out


def label_ranks(events: Sequence[RefEvent]) -> list[int]:
    """Each event's place among the events of its label in ``events`` (0 = the first): how
    ``hits`` and ``latency_events`` name a file's reference events, the same in a split and in
    :meth:`Split.only` of it."""
    seen: Counter = Counter()
    ranks = []
    for e in events:
        ranks.append(seen[e.label])
        seen[e.label] += 1
    return ranks


def read_reference(tsv: Path, labels: Optional[Sequence[str]] = None,
                   files: Optional[Sequence[str]] = None) -> dict[str, list[RefEvent]]:
    """The events of a DCASE metadata TSV (``filename onset offset event_label``; a row with
    an empty label = a file without events) by file name, in file order, not merged.

    ``labels``: when given, a label outside it is an error; ``files``: when given, a file name
    outside it is an error. Events with ``offset <= onset`` are dropped.
    """
    events: dict[str, list[RefEvent]] = defaultdict(list)
    known = None if files is None else set(files)
    with tsv.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = {"filename", "onset", "offset", "event_label"} - set(reader.fieldnames or ())
        if missing:
            raise EvalError(f"{tsv}: header lacks {', '.join(sorted(missing))}")
        for n, row in enumerate(reader, start=2):
            name = row["filename"]
            if known is not None and name not in known:
                raise EvalError(f"{tsv}:{n}: {name} is not in {tsv.parent.parent / 'audio' / tsv.stem}")
            if not row["event_label"]:
                events.setdefault(name, [])
                continue
            try:
                onset, offset = float(row["onset"]), float(row["offset"])
            except ValueError:
                raise EvalError(f"{tsv}:{n}: onset/offset are not numbers") from None
            if labels is not None and row["event_label"] not in labels:
                raise EvalError(f"{tsv}:{n}: label {row['event_label']!r} is not one of {', '.join(labels)}")
            if offset > onset:
                events[name].append(RefEvent(onset, offset, row["event_label"]))
    return dict(events)


def recording_id(source: dict) -> str:
    """A source recording's id, ``package:path``, from a ``manifest.json`` source entry."""
    return f"{source['package']}:{source['path']}"


def read_recordings(data_dir: Path, split: str, names: Sequence[str]) -> tuple[dict, dict]:
    """The source recordings of each file of ``names`` (relative to ``DIR/audio/SPLIT``) from
    ``DIR/manifest.json`` (what ``rttag data build`` writes), a recording's id being
    ``package:path``. Returns ``(recordings, events)``: ``recordings`` is ``{file: {label:
    [recording id, ...]}}``, empty where the manifest is missing, has no clips for ``split``, or
    lacks (the sources of) one of ``names`` (a partial list would weigh files unevenly);
    ``events`` is ``{file: {(onset, offset, label): (recording id, ...)}}``, the recordings mixed
    into each reference event (onset and offset in s as the TSV writes them), empty unless
    ``recordings`` is full and the manifest lists every clip's events (manifests written before
    rttag recorded them do not)."""
    manifest = data_dir / "manifest.json"
    if not manifest.is_file():
        return {}, {}
    try:
        splits = json.loads(manifest.read_text(encoding="utf-8")).get("splits", {})
        if split not in splits:
            return {}, {}
        clips, prefix = splits[split]["clips"], f"audio/{split}/"
        found, found_events = {}, {}
        for clip in clips:
            name = clip["file"].removeprefix(prefix)
            by_label = defaultdict(list)
            for src in clip["sources"]:
                by_label[src["label"]].append(recording_id(src))
            found[name] = dict(by_label)
            if "events" in clip:
                by_event = defaultdict(tuple)
                for e in clip["events"]:
                    key = (float(e["onset"]), float(e["offset"]), e["label"])
                    by_event[key] = tuple(dict.fromkeys(by_event[key] + tuple(map(recording_id, e["sources"]))))
                found_events[name] = dict(by_event)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EvalError(f"{manifest}: cannot read the clips of split {split!r} ({exc!r})") from None
    if not all(found.get(n) for n in names):
        return {}, {}
    return {n: found[n] for n in names}, \
        ({n: found_events[n] for n in names} if all(n in found_events for n in names) else {})


def load_split(data_dir: str | Path, split: str, labels: Optional[Sequence[str]] = None) -> Split:
    """Read ``DIR/metadata/SPLIT.tsv`` (see :func:`read_reference`), the audio files of
    ``DIR/audio/SPLIT`` and, where ``DIR/manifest.json`` lists them, their source recordings.

    Every audio file in the folder is evaluated (those absent from the TSV have no events).
    ``labels``: when given, a label outside it is an error.
    """
    import soundfile as sf

    data_dir = Path(data_dir)
    tsv = data_dir / "metadata" / f"{split}.tsv"
    audio_dir = data_dir / "audio" / split
    if not tsv.is_file():
        raise EvalError(f"no reference for split {split!r}: {tsv} not found (build the dataset with 'rttag data build')")
    if not audio_dir.is_dir():
        raise EvalError(f"no audio for split {split!r}: {audio_dir} not found")
    paths = {p.relative_to(audio_dir).as_posix(): p for p in sorted(audio_dir.rglob("*"))
             if p.suffix.lower() in AUDIO_SUFFIXES}
    if not paths:
        raise EvalError(f"{audio_dir} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
    events = read_reference(tsv, labels, list(paths))
    durations = {}
    for name, p in paths.items():
        try:
            info = sf.info(str(p))
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise EvalError(f"{p}: cannot read audio ({exc})") from None
        durations[name] = info.frames / info.samplerate
    recordings, sources = read_recordings(data_dir, split, list(paths))
    if sources:
        events = {name: [replace(e, sources=sources[name].get((e.onset, e.offset, e.label), ())) for e in evs]
                  for name, evs in events.items()}
    return Split(split, paths, durations, {name: merge_events(events.get(name, [])) for name in paths}, recordings)


# ------------------------------------------------------------------ running systems


@dataclass(frozen=True)
class FrameTiming:
    """Frame ``i`` is centred at ``centre0_s + i * hop_s`` and decided at
    ``ready0_s + i * hop_s`` (s of stream time) — as the pipeline's smoother sees it."""

    hop_s: float
    centre0_s: float
    ready0_s: float

    @classmethod
    def of_frontend(cls, fp: FrontendParams) -> "FrameTiming":
        return cls(fp.hop_length / fp.sample_rate, fp.n_fft / 2 / fp.sample_rate, fp.n_fft / fp.sample_rate)

    def frame_bounds(self, n_frames: int, duration_s: float) -> np.ndarray:
        """Frame boundaries ``[n_frames + 1]`` (s): each frame spans its centre ± hop/2,
        clipped to ``[0, duration_s]`` (PSDS wants an onset/offset per frame)."""
        bounds = self.centre0_s + (np.arange(n_frames + 1) - 0.5) * self.hop_s
        return np.clip(bounds, 0.0, max(duration_s, bounds[0] + 1e-6))


def detections_from_events(events) -> list[Detection]:
    """Pair a stream's ``on``/``off`` events into detections (status events are ignored)."""
    open_at: dict[str, float] = {}
    out = []
    for ev in events:
        if isinstance(ev, OnEvent):
            open_at[ev.label] = ev.at
        elif isinstance(ev, OffEvent):
            out.append(Detection(ev.label, ev.onset, ev.t, open_at.pop(ev.label)))
    return sorted(out, key=lambda d: (d.onset, d.label))


def smooth(probs: np.ndarray, labels: Sequence[str], params: SmootherParams, timing: FrameTiming,
           t_end: float, logmel: Optional[np.ndarray] = None) -> list[Detection]:
    """Run rttag's smoother over cached probabilities ``[T, n_classes]`` (and the log-mel
    frames ``[T, n_mels]`` they came from, needed for ``offset_excess_db``) and close at
    ``t_end`` (s): the same events the pipeline emits with one frame per model call."""
    smoother = Smoother(labels, params, "eval", hop_s=timing.hop_s, centre0_s=timing.centre0_s,
                        ready0_s=timing.ready0_s)
    return detections_from_events([*smoother.update(probs, logmel), *smoother.close(t_end)])


def smooth_runs(runs: dict, labels: Sequence[str], params: SmootherParams,
                timing: FrameTiming) -> dict[str, list[Detection]]:
    """:func:`smooth` over every cached run (``{file name: FileRun}``, log-mel frames included)
    with one setting: ``{file name: detections}``."""
    return {name: smooth(r.probs, labels, params, timing, r.t_end, r.logmel) for name, r in runs.items()}


@dataclass
class FileRun:
    """One model over one file: ``probs [T, n_classes]``, the log-mel frames ``logmel [T,
    n_mels]`` they came from, the pipeline's detections, and the stream's end time ``t_end`` (s)."""

    probs: np.ndarray
    logmel: np.ndarray
    detections: list
    t_end: float


def stream_file(model, path: Path, params: SmootherParams, block_size: int = 1600) -> FileRun:
    """Run ``path`` through the streaming pipeline (as ``rttag tag`` does) with ``params``."""
    from .capture import FileSource
    from .events import StatusEvent
    from .pipeline import Pipeline

    events, chunks, frames = [], [], []

    def keep(first: int, probs: np.ndarray, logmel: np.ndarray) -> None:
        chunks.append(np.array(probs, dtype=np.float32))
        frames.append(np.array(logmel, dtype=np.float32))

    pipeline = Pipeline(model, params, events.append, block_size=block_size, frames_per_call=1, on_probs=keep)
    source = FileSource(str(path), model.info.frontend.sample_rate, block_size)
    pipeline.run(source, stream=path.name)
    stopped = [e for e in events if isinstance(e, StatusEvent) and e.status == "stopped"]
    probs = np.concatenate(chunks) if chunks else np.zeros((0, len(model.info.labels)), np.float32)
    logmel = np.concatenate(frames) if frames else np.zeros((0, model.info.frontend.n_mels), np.float32)
    return FileRun(probs, logmel, detections_from_events(events), stopped[-1].t)


def run_model(model, split: Split, params: SmootherParams) -> dict[str, FileRun]:
    """Every file of ``split`` through the pipeline once, one frame per model call (as
    ``rttag tag`` by default; :func:`smooth` reproduces its events exactly). Progress on stderr."""
    runs = {}
    t0 = time.perf_counter()
    for i, (name, path) in enumerate(split.paths.items(), start=1):
        runs[name] = stream_file(model, path, params)
        if i % 10 == 0 or i == len(split.paths):
            log.info("%s: %d/%d files, %.0f s", model.info.name, i, len(split.paths), time.perf_counter() - t0)
    return runs


def run_silero(split: Split, threads: int = 1) -> dict[str, np.ndarray]:
    """silero-vad's speech probabilities ``[n_chunks, 1]`` for every file of ``split``
    (decoded, downmixed and resampled to 16 kHz as ``FileSource`` does)."""
    from . import silero_peer
    from .capture import FileSource
    from .ringbuffer import RingBuffer

    vad = silero_peer.SileroVad(threads=threads)
    names = list(split.paths)
    signals = []
    for name in names:
        source = FileSource(str(split.paths[name]), silero_peer.SAMPLE_RATE, 16000)
        ring = RingBuffer(int(split.durations[name] * silero_peer.SAMPLE_RATE) + 2 * silero_peer.SAMPLE_RATE)
        source.start(ring)
        pieces = []
        while True:
            chunk = ring.read(1 << 20, timeout=1.0)
            pieces.append(chunk.samples)
            if chunk.eof:
                break
        if source.error is not None:
            raise EvalError(f"{split.paths[name]}: {source.error}")
        signals.append(np.concatenate(pieces))
    return {name: p[:, None] for name, p in zip(names, vad.speech_probs(signals))}


# ------------------------------------------------------------------------ scoring


def _nan_to_none(x: float) -> Optional[float]:
    x = float(x)
    return None if np.isnan(x) else x


def _sed_eval():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # dcase_util's pkg_resources deprecation notice
            import sed_eval
    except ImportError as exc:
        raise EvalError(f"evaluation needs sed_eval ({exc}); install with: pip install 'rttag[eval]' "
                        "(dcase_util also needs pkg_resources: pip install 'setuptools<81')") from None
    return sed_eval


def offset_collar_s(onset: float, offset: float) -> float:
    """The offset collar (s) of a reference event from ``onset`` to ``offset`` (s): max(200 ms,
    20 % of its length), as sed_eval's event-based metric here applies it."""
    return max(T_COLLAR_S, OFFSET_FRACTION * (offset - onset))


def _sed_lists(split: Split, detections: dict[str, list[Detection]], name: str):
    ref = [{"filename": name, "event_label": e.label, "onset": e.onset, "offset": e.offset}
           for e in split.reference[name]]
    est = [{"filename": name, "event_label": d.label, "onset": d.onset, "offset": d.offset}
           for d in detections.get(name, [])]
    return ref, est


def sed_scores(split: Split, detections: dict[str, list[Detection]], labels: Sequence[str]) -> dict:
    """Event-based (collars 200 ms / max(200 ms, 20 %)) and segment-based (1 s) figures from
    sed_eval: ``{"event": {...}, "segment": {...}}``, each with ``micro_f1``, ``micro_er``,
    ``precision``, ``recall``, ``macro_f1``, ``macro_er`` and ``per_class`` (f1, er, n_ref,
    n_sys, n_tp by label). F1 in [0, 1]; None where sed_eval has nothing to divide by.
    Both also hold ``per_file``: ``{file: [n_tp, n_ref, n_sys]}`` over all labels (events, or
    label-segments), and ``per_file_class``: ``{file: {label: [n_tp, n_ref, n_sys]}}`` (labels
    with any count only): the counts :mod:`rttag.intervals` resamples; ``event`` also holds
    ``hits``: ``{file: {label: [0 or 1, ...]}}``, for each of the file's reference events of that
    label in order, whether sed_eval's matching counts it detected (:func:`event_hits`; labels
    with reference events only)."""
    sed_eval = _sed_eval()
    event = sed_eval.sound_event.EventBasedMetrics(event_label_list=list(labels), t_collar=T_COLLAR_S,
                                                   percentage_of_length=OFFSET_FRACTION,
                                                   empty_system_output_handling="zero_score")
    segment = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=list(labels), time_resolution=SEGMENT_S)
    segment.empty_system_output_handling = "zero_score"  # its constructor does not take the option
    per_file, per_file_class = {"event": {}, "segment": {}}, {"event": {}, "segment": {}}
    hits = {}
    counts = ("Ntp", "Nref", "Nsys")
    for name in split.paths:
        ref, est = _sed_lists(split, detections, name)
        file_hits = event_hits(event, ref, est)
        hits[name] = {}
        for h, e in zip(file_hits, ref):
            hits[name].setdefault(e["event_label"], []).append(h)
        before = {"event": dict(event.overall), "segment": dict(segment.overall)}  # sed_eval accumulates file by file
        before_class = {kind: {label: dict(metric.class_wise[label]) for label in labels}
                        for kind, metric in (("event", event), ("segment", segment))}
        event.evaluate(ref, est)
        segment.evaluate(ref, est, evaluated_length_seconds=split.durations[name])
        for kind, metric in (("event", event), ("segment", segment)):
            per_file[kind][name] = [int(round(metric.overall[k] - before[kind][k])) for k in counts]
            by_class = {label: [int(round(metric.class_wise[label][k] - before_class[kind][label][k])) for k in counts]
                        for label in labels}
            per_file_class[kind][name] = {label: c for label, c in by_class.items() if any(c)}
        for label in labels:
            if sum(hits[name].get(label, [])) != per_file_class["event"][name].get(label, [0])[0]:
                raise RuntimeError(f"{name}, {label}: event_hits disagrees with sed_eval's count of hits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # sed_eval's nanmean over classes without events
        out = {kind: {**_summary(metric.results(), labels), "per_file": per_file[kind],
                      "per_file_class": per_file_class[kind]}
               for kind, metric in (("event", event), ("segment", segment))}
    out["event"]["hits"] = hits
    return out


def onset_scores(split: Split, detections: dict[str, list[Detection]], labels: Sequence[str],
                 levels: Optional[dict] = None) -> dict:
    """The event-based F1 with the onset collar alone (200 ms; sed_eval's
    ``evaluate_offset=False``): ``micro_f1``, ``macro_f1`` and ``per_class`` (label → F1); what
    the offsets cost is its gap to :func:`sed_scores`' event ``micro_f1``. Kept out of
    :func:`sed_scores`, which ``rttag tune`` calls for every setting it tries.

    ``offsets``: where the offsets of the events this matching pairs end, per label and under
    ``all``: ``matched`` pairs, ``in_collar`` (the system's offset within max(200 ms, 20 % of
    the reference event) of the reference's), ``late`` and ``early`` (beyond the collar after or
    before it), and ``late_median_s`` / ``early_median_s``, the median distance (s) of those
    from the reference offset (None where there are none). A pair whose offset is in the collar
    need not be a hit of :func:`sed_scores`, whose matching may pair the events differently.

    ``by_level``, where ``levels`` (:func:`onset_levels`) are given: the reference events this
    matching finds, by the level of their start: ``edges_db`` (:data:`LEVEL_EDGES_DB`),
    ``found`` and ``total`` per bin (events without a level left out)."""
    metric = _sed_eval().sound_event.EventBasedMetrics(event_label_list=list(labels), t_collar=T_COLLAR_S,
                                                       evaluate_offset=False, empty_system_output_handling="zero_score")
    errors: dict[str, list[tuple[float, float]]] = {label: [] for label in labels}  # (offset error s, collar s)
    found, total = np.zeros(len(LEVEL_EDGES_DB) + 1, int), np.zeros(len(LEVEL_EDGES_DB) + 1, int)
    for name in split.paths:
        ref, est = _sed_lists(split, detections, name)
        before = metric.overall["Ntp"]  # sed_eval accumulates file by file
        metric.evaluate(ref, est)
        matches = event_matches(metric, ref, est)
        if len(matches) != int(round(metric.overall["Ntp"] - before)):
            raise RuntimeError(f"{name}: event_matches disagrees with sed_eval's count of onset hits")
        for j, i in matches.items():
            r = ref[j]
            errors[r["event_label"]].append((est[i]["offset"] - r["offset"], offset_collar_s(r["onset"], r["offset"])))
        if levels is not None:
            for j, e in enumerate(split.reference[name]):
                level = levels.get(name, {}).get(e)
                if level is not None:
                    b = int(np.searchsorted(LEVEL_EDGES_DB, level, side="right"))
                    total[b] += 1
                    found[b] += j in matches
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # sed_eval's nanmean over classes without events
        summary = _summary(metric.results(), labels)
    offsets = {label: offset_summary(errors[label]) for label in labels}
    offsets["all"] = offset_summary([e for label in labels for e in errors[label]])
    out = {"micro_f1": summary["micro_f1"], "macro_f1": summary["macro_f1"],
           "per_class": {label: c["f1"] for label, c in summary["per_class"].items()}, "offsets": offsets}
    if levels is not None:
        out["by_level"] = {"edges_db": list(LEVEL_EDGES_DB), "found": found.tolist(), "total": total.tolist()}
    return out


def onset_levels(split: Split, logmels: dict[str, np.ndarray], timing: FrameTiming) -> dict:
    """How far each reference event's start rises above what came before it, from the mixture
    alone: the mean over mel bins of the positive part of the log-mel (dB) of the frames in its
    first :data:`LEVEL_ONSET_S` minus the per-bin median of the frames in the
    :data:`LEVEL_BACKGROUND_S` before its onset. ``logmels``: ``{file: [T, n_mels]}``, natural
    log of mel power as the frontend gives it, frames placed by ``timing``. Returns ``{file:
    {RefEvent: dB}}``; events with less than :data:`LEVEL_MIN_BACKGROUND_S` before them, or no
    frame in their start, are left out."""
    out = {}
    for name, events in split.reference.items():
        if name not in logmels:
            continue
        db = np.asarray(logmels[name], dtype=np.float64) * DB_PER_LOG
        frame = lambda t: int(np.clip(round((t - timing.centre0_s) / timing.hop_s), 0, len(db)))
        out[name] = {}
        for e in events:
            start, end = frame(e.onset), frame(e.onset + LEVEL_ONSET_S)
            first = frame(max(0.0, e.onset - LEVEL_BACKGROUND_S))
            if e.onset < LEVEL_MIN_BACKGROUND_S or end <= start or start - first < 1:
                continue
            background = np.median(db[first:start], axis=0)
            out[name][e] = float(np.maximum(db[start:end] - background, 0.0).mean())
    return out


def offset_summary(errors: Sequence[tuple[float, float]]) -> dict:
    """From ``(system offset − reference offset, collar)`` pairs (s): the counts and medians of
    :func:`onset_scores`' ``offsets``."""
    err = np.array([e for e, _ in errors]).reshape(-1)
    collar = np.array([c for _, c in errors]).reshape(-1)
    late, early = err[err > collar], -err[err < -collar]
    return {"matched": len(err), "in_collar": int(np.sum(np.abs(err) <= collar)), "late": len(late),
            "early": len(early), "late_median_s": float(np.median(late)) if len(late) else None,
            "early_median_s": float(np.median(early)) if len(early) else None}


def event_hits(metric, ref: Sequence[dict], est: Sequence[dict]) -> list[int]:
    """Which of one file's reference events (``ref``, sed_eval dicts, in order) sed_eval's
    event-based ``metric`` counts as detected (1) or not (0), by :func:`event_matches`. sed_eval
    reports only the counts; this gives which."""
    matched = event_matches(metric, ref, est)
    return [int(j in matched) for j in range(len(ref))]


def event_matches(metric, ref: Sequence[dict], est: Sequence[dict]) -> dict[int, int]:
    """sed_eval's own optimal matching of one file's events by an event-based ``metric``:
    ``{reference index: system index}``. The hit matrix of same-label pairs whose onset and
    offset lie within the metric's collars (``validate_onset`` where the metric evaluates
    onsets, ``validate_offset`` where it evaluates offsets), built in sed_eval's order, then
    ``sed_eval.util.bipartite_match``."""
    from sed_eval.util import bipartite_match

    est_by_label: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(est):
        est_by_label[e["event_label"]].append(i)
    pairs = [(j, i) for j, r in enumerate(ref) for i in est_by_label.get(r["event_label"], [])
             if (not metric.evaluate_onset or metric.validate_onset(r, est[i], t_collar=metric.t_collar))
             and (not metric.evaluate_offset
                  or metric.validate_offset(r, est[i], t_collar=metric.t_collar,
                                            percentage_of_length=metric.percentage_of_length))]
    graph: dict[int, list[int]] = {}  # system event → the reference events it may match, built as sed_eval does
    for j, i in sorted(pairs):
        graph.setdefault(i, []).append(j)
    return bipartite_match(graph)  # reference index → system index


def _summary(r: dict, labels: Sequence[str]) -> dict:
    per_class = {}
    for label in labels:
        c = r["class_wise"][label]
        has_ref = c["count"]["Nref"] > 0  # sed_eval divides by eps when there is no reference
        per_class[label] = {"f1": _nan_to_none(c["f_measure"]["f_measure"]),
                            "er": _nan_to_none(c["error_rate"]["error_rate"]) if has_ref else None,
                            "n_ref": int(c["count"]["Nref"]), "n_sys": int(c["count"]["Nsys"]),
                            # sed_eval's recall is n_tp / n_ref exactly; it does not report n_tp itself
                            "n_tp": int(round((c["f_measure"]["recall"] or 0.0) * c["count"]["Nref"]))
                            if has_ref else 0}
    with_ref = [v for v in per_class.values() if v["n_ref"] > 0]
    any_ref = bool(with_ref)
    return {"micro_f1": _nan_to_none(r["overall"]["f_measure"]["f_measure"]),
            "precision": _nan_to_none(r["overall"]["f_measure"]["precision"]),
            "recall": _nan_to_none(r["overall"]["f_measure"]["recall"]),
            "micro_er": _nan_to_none(r["overall"]["error_rate"]["error_rate"]) if any_ref else None,
            "macro_f1": float(np.mean([v["f1"] or 0.0 for v in with_ref])) if any_ref else None,
            "macro_er": float(np.mean([v["er"] for v in with_ref])) if any_ref else None,
            "per_class": per_class}


def psds(split: Split, probs: dict[str, np.ndarray], timing: FrameTiming, labels: Sequence[str],
         resolution: float = 0.01) -> dict:
    """PSDS1 and PSDS2 (``PSDS_SCENARIOS``) from frame probabilities ``[T, n_classes]`` by file
    (sed_scores_eval), scores rounded to ``resolution`` (0 = exact), over the classes that have
    reference events (PSDS is undefined for the others). Returns ``{"psds1", "psds2", "classes",
    "per_class", "per_class_psds2"}``: ``per_class`` holds each class's PSDS1 (its ROC's area),
    ``per_class_psds2`` its PSDS2 (cross-triggers counted against it). With one scored class
    (silero-vad's speech) there is nothing to cross-trigger on, and PSDS2 is ``None``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sed_scores_eval import intersection_based
        from sed_scores_eval.base_modules.scores import create_score_dataframe

    out = {"classes": [], **{key: None for key in PSDS_SCENARIOS},
           **{PER_CLASS_KEYS[key]: {label: None for label in labels} for key in PSDS_SCENARIOS}}
    present = {e.label for evs in split.reference.values() for e in evs}
    columns = [i for i, label in enumerate(labels) if label in present]  # PSDS needs events of every class
    if not columns:
        return out
    out["classes"] = scored = [labels[i] for i in columns]
    scores, truth = {}, {}
    for name in split.paths:
        p = probs[name][:, columns].astype(np.float64)
        if resolution > 0:
            p = np.round(p / resolution) * resolution
        stem = Path(name).with_suffix("").as_posix()
        scores[stem] = create_score_dataframe(p, timing.frame_bounds(len(p), split.durations[name]), scored)
        truth[stem] = [(e.onset, e.offset, e.label) for e in split.reference[name]]
    durations = {Path(n).with_suffix("").as_posix(): d for n, d in split.durations.items()}
    for key, scenario in PSDS_SCENARIOS.items():
        if scenario["cttc_threshold"] is not None and len(scored) < 2:
            continue  # cross-triggers need another class (sed_scores_eval fails on one)
        value, per_class, *_ = intersection_based.psds(scores=scores, ground_truth=truth,
                                                       audio_durations=durations, **scenario)
        out[key] = float(value)
        out[PER_CLASS_KEYS[key]] = {label: _nan_to_none(per_class[label]) if label in per_class else None
                                    for label in labels}
    return out


def match_onsets(reference: Sequence[RefEvent], detections: Sequence[Detection],
                 collar: float = T_COLLAR_S) -> list[tuple[RefEvent, Detection]]:
    """One file's detection of each reference event: per label, in onset order, the first
    unused prediction whose onset lies in ``[onset − collar, offset)``."""
    pairs = []
    by_label: dict[str, list[Detection]] = defaultdict(list)
    for d in sorted(detections, key=lambda d: d.onset):
        by_label[d.label].append(d)
    used: set[int] = set()
    for ref in sorted(reference, key=lambda e: e.onset):
        for d in by_label.get(ref.label, []):
            if d.onset >= ref.offset:
                break
            if id(d) not in used and d.onset >= ref.onset - collar:
                used.add(id(d))
                pairs.append((ref, d))
                break
    return pairs


def smoother_wait(params: SmootherParams, labels: Sequence[str], timing: FrameTiming):
    """The smoother's share of a detection's decision latency: a function of a
    :class:`Detection` giving ``at`` minus the time (s) the first frame of its candidate was
    ready — the wait for ``min_on_s`` and ``dominance`` — so that latency = the probability's
    rise to ``on_threshold`` (from the reference onset to that frame being ready) + this wait.
    The candidate's first frame is recovered from the back-dated onset (``t + onset_lag_s``);
    for a candidate that begins within ``onset_lag_s`` of the stream's start, whose ``t`` the
    smoother clips at 0, the wait is understated (floored at 0)."""
    lag = dict(zip(labels, params.onset_lag_s))
    framing = timing.ready0_s - timing.centre0_s
    return lambda d: max(0.0, d.at - (d.onset + lag[d.label] + framing))


def _latency_figures(latencies: Sequence[float], waits: Sequence[float], n_ref: int) -> dict:
    lat = np.asarray(latencies, dtype=np.float64)
    return {"latency_median_s": float(np.median(lat)) if len(lat) else None,
            "latency_p90_s": float(np.percentile(lat, 90)) if len(lat) else None,
            "wait_median_s": float(np.median(waits)) if len(waits) else None,
            "matched": len(lat), "matched_fraction": len(lat) / n_ref if n_ref else None}


def stream_scores(split: Split, detections: dict[str, list[Detection]], labels: Sequence[str],
                  wait_of=None) -> dict:
    """Jitter and latency figures (see the module docstring); rates per minute of audio,
    latencies in s (None when nothing matched), over all classes and under ``per_class``.
    ``wait_of``: the smoother's wait of a detection (:func:`smoother_wait`); its median over the
    matched detections is ``wait_median_s`` (None without it). ``per_file``: by file name,
    ``sys`` and ``ref``, the predicted and reference events per label of ``labels`` (in that
    order), ``latencies`` (s) of its matched events, ``latency_labels``, their labels, and
    ``latency_events``, each one's place among the file's reference events of its label (0 =
    the first): what :mod:`rttag.intervals` resamples."""
    minutes = split.minutes
    short = 0
    per_file = {}
    by_label: dict[str, list[tuple[float, float]]] = {k: [] for k in labels}  # (latency, wait) of matches
    for name in split.paths:
        refs, dets = split.reference[name], detections.get(name, [])
        file_ref, file_sys = Counter(e.label for e in refs), Counter(d.label for d in dets)
        for d in dets:
            if d.offset - d.onset < SHORT_S and not any(
                    e.label == d.label and e.onset < d.offset and d.onset < e.offset for e in refs):
                short += 1
        pairs = match_onsets(refs, dets)
        rank = dict(zip(map(id, refs), label_ranks(refs)))
        latencies = [d.at - e.onset for e, d in pairs]
        for (e, d), latency in zip(pairs, latencies):
            by_label[e.label].append((latency, wait_of(d) if wait_of else None))
        per_file[name] = {"sys": [file_sys[k] for k in labels], "ref": [file_ref[k] for k in labels],
                          "latencies": latencies, "latency_labels": [e.label for e, _ in pairs],
                          "latency_events": [rank[id(e)] for e, _ in pairs]}
    n_sys, n_ref = (np.array([f[k] for f in per_file.values()], dtype=np.int64).reshape(-1, len(labels)).sum(axis=0)
                    for k in ("sys", "ref"))  # events per label over all files
    n_refs = int(n_ref.sum())
    excess = np.maximum(n_sys - n_ref, 0)  # per label: a class's misses do not cancel another's extra events
    lat = [x for f in per_file.values() for x in f["latencies"]]
    waits = [w for k in labels for _, w in by_label[k] if w is not None]
    return {"on_per_min": int(n_sys.sum()) / minutes,
            "ref_per_min": n_refs / minutes,
            "excess_on_per_min": int(excess.sum()) / minutes,
            "short_spurious_per_min": short / minutes,
            **_latency_figures(lat, waits, n_refs),
            "per_class": {k: {**_latency_figures([x for x, _ in by_label[k]],
                                                 [w for _, w in by_label[k] if w is not None], int(n_ref[i])),
                              "excess_on_per_min": int(excess[i]) / minutes}
                          for i, k in enumerate(labels)},
            "per_file": per_file}


def covered_s(spans: Sequence[tuple[float, float]], duration_s: float) -> float:
    """Seconds of [0, ``duration_s``] inside the union of the (onset, offset) ``spans`` (s)."""
    total, end = 0.0, 0.0
    for onset, offset in sorted((max(0.0, a), min(duration_s, b)) for a, b in spans):
        if offset > end:
            total += offset - max(onset, end)
            end = offset
    return total


def held_on(split: Split, detections: dict[str, list[Detection]], labels: Sequence[str]) -> dict:
    """Classes held on through a file (see the module docstring): ``pairs``, the (file, label)
    pairs whose detections cover at least :data:`HELD_COVER` of the file while the reference
    covers less than :data:`HELD_REF_BELOW`; ``files``, the files with one or more such pair,
    and ``files_share``, their share of the split's files (None for an empty split);
    ``file_names``, those files; ``per_class``, the pairs per label of ``labels``."""
    per_class = dict.fromkeys(labels, 0)
    file_names = []
    for name, duration in split.durations.items():
        held = False
        for label in labels:
            sys_s = covered_s([(d.onset, d.offset) for d in detections.get(name, []) if d.label == label], duration)
            if duration > 0 and sys_s >= HELD_COVER * duration:
                ref_s = covered_s([(e.onset, e.offset) for e in split.reference[name] if e.label == label], duration)
                if ref_s < HELD_REF_BELOW * duration:
                    per_class[label] += 1
                    held = True
        if held:
            file_names.append(name)
    files = len(file_names)
    return {"pairs": sum(per_class.values()), "files": files,
            "files_share": files / len(split.durations) if split.durations else None, "file_names": file_names,
            "per_class": per_class}


N_CONFUSIONS = 5
"""Confusion pairs shown per system in the table (the JSON keeps them all)."""
PLACES = ("onset_hit", "same_label_onset_off", "other_label_only", "no_reference")
"""Where a detection falls, in the order :func:`detection_places` tests them."""


def detection_places(split: Split, detections: dict[str, list[Detection]]) -> dict:
    """Per :data:`PLACES` category, the share of all detections (None without detections), and
    ``per_min``, detections per minute. ``split`` should carry the reference of every label:
    a detection overlapping only another label's event is a confusion, not background.
    ``confusions``: ``[detected label, reference label, detections]`` for those, a detection
    counted once against each label it overlaps, most frequent first (then by the labels)."""
    counts = dict.fromkeys(PLACES, 0)
    confusions: Counter = Counter()
    for name in split.paths:
        refs = split.reference[name]
        for d in detections.get(name, []):
            over = [e for e in refs if e.onset < d.offset and d.onset < e.offset]
            same = [e for e in over if e.label == d.label]
            if any(abs(d.onset - e.onset) <= T_COLLAR_S for e in refs if e.label == d.label):
                counts["onset_hit"] += 1
            elif same:
                counts["same_label_onset_off"] += 1
            elif over:
                counts["other_label_only"] += 1
                confusions.update((d.label, label) for label in {e.label for e in over})
            else:
                counts["no_reference"] += 1
    n = sum(counts.values())
    return {**{k: (v / n if n else None) for k, v in counts.items()}, "per_min": n / split.minutes,
            "confusions": [[a, b, c] for (a, b), c in sorted(confusions.items(), key=lambda kv: (-kv[1], kv[0]))]}


def score_system(split: Split, detections: dict[str, list[Detection]], labels: Sequence[str],
                 psds: Optional[dict], full: Optional[Split] = None, wait_of=None,
                 levels: Optional[dict] = None) -> dict:
    """Every figure for one system (``psds`` computed once per set of probabilities), and
    under ``speech`` the figures for that label alone (the silero-vad comparison). ``full``:
    the split with every label's reference, for :func:`detection_places` (default ``split``);
    ``wait_of``: the system's :func:`smoother_wait`, for the latency's split into rise and wait;
    ``levels``: :func:`onset_levels`, for the events found by level."""
    scores = {**sed_scores(split, detections, labels),
              "stream": stream_scores(split, detections, labels, wait_of),
              "held_on": held_on(split, detections, labels),
              "places": detection_places(full or split, detections), "psds": psds}
    if "speech" in labels:
        speech_only = {n: [d for d in dets if d.label == "speech"] for n, dets in detections.items()}
        scores["speech"] = {"event_f1": scores["event"]["per_class"]["speech"]["f1"],
                            "segment_f1": scores["segment"]["per_class"]["speech"]["f1"],
                            "psds1": psds["per_class"]["speech"] if psds else None,
                            **{k: v for k, v in
                               stream_scores(split.only(["speech"]), speech_only, ["speech"], wait_of).items()
                               if k not in ("per_file", "per_class")}}
    scores["event"]["onset_only"] = onset_scores(split, detections, labels, levels)
    if split.events_attributed:
        scores["event"]["per_recording"] = per_recording(split, scores["event"]["hits"], labels)
    return scores


def per_recording(split: Split, hits: dict, labels: Sequence[str]) -> dict:
    """Reference events per source recording: ``{label: {recording: [n_tp, n_ref, files,
    n_tp_alone, n_ref_alone]}}``, an event counting for each recording mixed into it (a walk of
    steps from two recordings counts for both), ``files`` the files holding such events, and the
    ``_alone`` counts over the events made of that recording only — the ones whose hit says the
    recording itself was recognised. ``hits``: from :func:`sed_scores`; ``split``: with
    :attr:`Split.events_attributed`. False alarms belong to no recording."""
    out: dict = {label: {} for label in labels}
    files: dict = defaultdict(set)
    for name, evs in split.reference.items():
        for e, k in zip(evs, label_ranks(evs)):
            if e.label not in out:
                continue
            hit = hits[name][e.label][k]
            for rec in e.sources:
                counts = out[e.label].setdefault(rec, [0, 0, 0, 0, 0])
                counts[0] += hit
                counts[1] += 1
                if len(e.sources) == 1:
                    counts[3] += hit
                    counts[4] += 1
                files[e.label, rec].add(name)
    for label, recs in out.items():
        for rec, counts in recs.items():
            counts[2] = len(files[label, rec])
    return {label: dict(sorted(recs.items())) for label, recs in out.items()}


# ------------------------------------------------------------------------ command


def system_names(names: Sequence[str], paths: Sequence[Path]) -> list[str]:
    """The name each model goes by in the table: its metadata name, or — where two models given
    share that name (two exports of one arch) — its file name without ``.onnx``, else its path."""
    clash = {n for n, count in Counter(names).items() if count > 1}
    out = [p.stem if n in clash else n for n, p in zip(names, paths)]
    if len(set(out)) < len(out):
        out = [str(p) if n in clash else n for n, p in zip(names, paths)]
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Score models (tuned smoother and raw thresholding) and silero-vad against a split's reference."
    parser.add_argument("--data", default="data", help="dataset folder with metadata/SPLIT.tsv and audio/SPLIT/")
    parser.add_argument("--split", default="test", help="split to score (default: test)")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma list of names in models/ or .onnx paths")
    parser.add_argument("--no-silero", action="store_true", help="leave out the silero-vad speech peer")
    parser.add_argument("--json", help="write every figure to this JSON file")
    parser.add_argument("--plots", help="folder for event-roll.png and per-class-f1.png")
    parser.add_argument("--roll-file", help="file (name relative to audio/SPLIT) for the event roll; "
                                            "default: the one with the most distinct reference labels")
    parser.add_argument("--roll-start", type=float, default=0.0, help="event roll start, s")
    parser.add_argument("--roll-seconds", type=float, default=30.0, help="event roll length, s")
    parser.add_argument("--psds-resolution", type=float, default=0.01,
                        help="round probabilities to this step before PSDS (0 = exact, slow)")
    parser.add_argument("--providers", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP_ROUNDS, metavar="ROUNDS",
                        help="bootstrap rounds for the intervals (0: none)")
    parser.add_argument("--bootstrap-unit", choices=UNITS, default="recording",
                        help="resample files and their source recordings (default; files only where the "
                             "dataset's manifest.json does not list the recordings), or files only")
    parser.add_argument("--per-recording", action="store_true",
                        help="also print each source recording's reference events and each system's hits on them "
                             "(where the dataset's manifest.json says which recordings each event holds)")


def _fmt(x: Optional[float], digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _fmt_range(pair: Optional[Sequence[float]], digits: int = 3) -> str:
    """An interval ``[low, high]`` as "low – high" (empty when there is none)."""
    return f"{_fmt(pair[0], digits)} – {_fmt(pair[1], digits)}" if pair else ""


def _latency_cell(fig: dict) -> str:
    if not fig["matched"]:
        return "–"
    wait = f" ({_fmt(fig['wait_median_s'], 2)})" if fig["wait_median_s"] is not None else ""
    return f"{_fmt(fig['latency_median_s'], 2)}{wait}, {fig['matched_fraction']:.0%}"


def _offsets_cell(off: dict) -> str:
    """"in collar/late/early" for the offsets table, e.g. "113/32/38"."""
    return f"{off['in_collar']}/{off['late']}/{off['early']}"


def _held_cell(held: dict) -> str:
    """"files (share)" for the main table, e.g. "12 (6 %)"."""
    return f"{held['files']} ({100 * held['files_share']:.0f} %)" if held["files_share"] is not None else ""


RESAMPLED = {"recording": "resampling files and source recordings", "file": "resampling the files"}
"""How the interval tables name each bootstrap unit."""


def format_table(systems: dict, unit: str = "file", recordings: Optional[dict] = None) -> str:
    """The main table and the per-class event-F1 table (Markdown) from ``systems``; ``unit``:
    the bootstrap unit of their intervals (:data:`rttag.intervals.UNITS`); ``recordings``: the
    distinct source recordings per label (:func:`recordings_per_label`), shown under the
    per-class intervals where given."""
    head = ("| system | smoother | event F1 micro | event F1 onsets only | event F1 macro | event ER | segment F1 "
            "| segment ER | PSDS1 | PSDS2 "
            "| excess on/min | short spurious/min | files with a class held on | latency median (s) | latency p90 (s) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in systems.values():
        ev, seg, st = s["scores"]["event"], s["scores"]["segment"], s["scores"]["stream"]
        psds = s["scores"]["psds"]
        lines.append(f"| {s['system']} | {s['smoother']} | {_fmt(ev['micro_f1'])} "
                     f"| {_fmt(ev['onset_only']['micro_f1'])} | {_fmt(ev['macro_f1'])} "
                     f"| {_fmt(ev['micro_er'])} | {_fmt(seg['micro_f1'])} | {_fmt(seg['micro_er'])} "
                     f"| {_fmt(psds['psds1'] if psds else None)} | {_fmt(psds['psds2'] if psds else None)} "
                     f"| {_fmt(st['excess_on_per_min'], 1)} "
                     f"| {_fmt(st['short_spurious_per_min'], 1)} | {_held_cell(s['scores']['held_on'])} "
                     f"| {_fmt(st['latency_median_s'], 2)} | {_fmt(st['latency_p90_s'], 2)} |")
    labels = list(dict.fromkeys(label for s in systems.values() for label in s["scores"]["event"]["per_class"]))
    head2 = "| system | smoother | " + " | ".join(labels) + " |"
    lines += ["", "Event-based F1 per class:", "", head2, "|" + "---|" * (head2.count("|") - 1)]
    for s in systems.values():
        pc = s["scores"]["event"]["per_class"]
        lines.append(f"| {s['system']} | {s['smoother']} | "
                     + " | ".join(_fmt(pc[k]["f1"]) if k in pc else "" for k in labels) + " |")
    head_lat = "| system | smoother | all | " + " | ".join(labels) + " |"
    lines += ["", "Decision latency per class: median (s), the smoother's wait in brackets, matched events "
              "as a share of the reference:", "", head_lat, "|" + "---|" * (head_lat.count("|") - 1)]
    for s in systems.values():
        st = s["scores"]["stream"]
        pc = st["per_class"]
        lines.append(f"| {s['system']} | {s['smoother']} | {_latency_cell(st)} | "
                     + " | ".join(_latency_cell(pc[k]) if k in pc else "" for k in labels) + " |")
    head3 = ("| system | smoother | speech event F1 | speech segment F1 | speech PSDS1 | excess on/min "
             "| short spurious/min | latency median (s) | latency p90 (s) |")
    lines += ["", "Speech only (silero-vad's label):", "", head3, "|" + "---|" * (head3.count("|") - 1)]
    for s in systems.values():
        sp = s["scores"].get("speech")
        if sp:
            lines.append(f"| {s['system']} | {s['smoother']} | {_fmt(sp['event_f1'])} | {_fmt(sp['segment_f1'])} "
                         f"| {_fmt(sp['psds1'])} | {_fmt(sp['excess_on_per_min'], 1)} "
                         f"| {_fmt(sp['short_spurious_per_min'], 1)} | {_fmt(sp['latency_median_s'], 2)} "
                         f"| {_fmt(sp['latency_p90_s'], 2)} |")
    head4 = ("| system | smoother | detections/min | onset within 200 ms of its label | its label, onset off "
             "| only other labels | no reference |")
    lines += ["", "Where the detections fall (share of all detections):", "", head4,
              "|" + "---|" * (head4.count("|") - 1)]
    for s in systems.values():
        pl = s["scores"]["places"]
        lines.append(f"| {s['system']} | {s['smoother']} | {_fmt(pl['per_min'], 1)} | "
                     + " | ".join(_fmt(pl[k], 2) for k in PLACES) + " |")
    head_off = "| system | smoother | all | " + " | ".join(labels) + " |"
    lines += ["", "Offsets of the events found by their onset (the onsets-only matching): in the offset collar / "
              "late / early, and for all labels the median distance (s) of the late and the early ones from the "
              "reference offset:", "",
              head_off, "|" + "---|" * (head_off.count("|") - 1)]
    for s in systems.values():
        off = s["scores"]["event"]["onset_only"]["offsets"]
        lines.append(f"| {s['system']} | {s['smoother']} | {_offsets_cell(off['all'])} (late "
                     f"{_fmt(off['all']['late_median_s'], 2)}, early {_fmt(off['all']['early_median_s'], 2)}) | "
                     + " | ".join(_offsets_cell(off[k]) if k in off else "" for k in labels) + " |")
    with_levels = [s for s in systems.values() if "by_level" in s["scores"]["event"]["onset_only"]]
    if with_levels:
        edges = with_levels[0]["scores"]["event"]["onset_only"]["by_level"]["edges_db"]
        bins = [f"< {edges[0]:g}"] + [f"{a:g}–{b:g}" for a, b in zip(edges, edges[1:])] + [f"≥ {edges[-1]:g}"]
        head_lv = "| system | smoother | " + " | ".join(f"{b} dB" for b in bins) + " |"
        lines += ["", f"Reference events found by their onset (the onsets-only matching), by how far their first "
                  f"{LEVEL_ONSET_S:g} s rises above the {LEVEL_BACKGROUND_S:g} s before them (mean over mel bins of "
                  "the positive excess of the mixture): found/events (share):", "", head_lv,
                  "|" + "---|" * (head_lv.count("|") - 1)]
        for s in with_levels:
            lv = s["scores"]["event"]["onset_only"]["by_level"]
            lines.append(f"| {s['system']} | {s['smoother']} | " + " | ".join(
                f"{f}/{t} ({_fmt(f / t if t else None, 2)})" for f, t in zip(lv["found"], lv["total"])) + " |")
    head_ex = "| system | smoother | " + " | ".join(labels) + " | most frequent confusions |"
    lines += ["", f"Excess `on` events per minute per class (the jitter figure is their sum), and the "
              f"{N_CONFUSIONS} most frequent confusions (detected label on the reference label it "
              "overlaps, where it overlaps no event of its own: detections):", "", head_ex,
              "|" + "---|" * (head_ex.count("|") - 1)]
    for s in systems.values():
        pc = s["scores"]["stream"]["per_class"]
        lines.append(f"| {s['system']} | {s['smoother']} | "
                     + " | ".join(_fmt(pc[k]["excess_on_per_min"], 1) if k in pc else "" for k in labels)
                     + " | " + ", ".join(f"{a} on {b}: {n}" for a, b, n
                                         in s["scores"]["places"]["confusions"][:N_CONFUSIONS]) + " |")
    head_held = "| system | smoother | pairs | files | 95 % interval of files | labels (pairs) |"
    lines += ["", f"Classes held on through a file (events over ≥ {HELD_COVER:.0%} of it, reference under "
              f"{HELD_REF_BELOW:.0%}):", "", head_held, "|" + "---|" * (head_held.count("|") - 1)]
    for s in systems.values():
        held = s["scores"]["held_on"]
        most = sorted(((n, k) for k, n in held["per_class"].items() if n), key=lambda nk: (-nk[0], nk[1]))
        lines.append(f"| {s['system']} | {s['smoother']} | {held['pairs']} | {_held_cell(held)} "
                     f"| {_fmt_range(held.get('files_ci95'), 0)} | " + ", ".join(f"{k} {n}" for n, k in most) + " |")
    with_ci = [s for s in systems.values() if "micro_f1_ci95" in s["scores"]["event"]]
    if with_ci:
        first = next(iter(systems.values()))
        vs = f"difference from {first['system']} ({first['smoother']})"
        head5 = (f"| system | smoother | event F1 micro | 95 % interval | {vs} | 95 % interval of the difference "
                 f"| segment F1 | 95 % interval | {vs} | 95 % interval of the difference |")
        lines += ["", f"Micro F1, {RESAMPLED[unit]} (95 % percentile intervals; the difference is "
                  "paired, on the same resamples):", "", head5, "|" + "---|" * (head5.count("|") - 1)]
        for s in with_ci:
            cells = [s["system"], s["smoother"]]
            for kind in ("event", "segment"):
                sc = s["scores"][kind]
                d = sc.get("vs_first")
                cells += [_fmt(sc["micro_f1"]), _fmt_range(sc["micro_f1_ci95"]),
                          f"{d['diff']:+.3f}" if d else "", f"{d['ci95'][0]:+.3f} – {d['ci95'][1]:+.3f}" if d else ""]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Event F1 per class with its 95 % interval (the same resamples):", "", head2,
                  "|" + "---|" * (head2.count("|") - 1)]
        for s in with_ci:
            pc = s["scores"]["event"]["per_class"]
            lines.append(f"| {s['system']} | {s['smoother']} | " + " | ".join(
                f"{_fmt(pc[k]['f1'])} ({_fmt(pc[k]['f1_ci95'][0])}–{_fmt(pc[k]['f1_ci95'][1])})"
                if k in pc and "f1_ci95" in pc[k] else "" for k in labels) + " |")
        if recordings:
            lines.append("| distinct source recordings | | " + " | ".join(str(recordings.get(k, 0)) for k in labels) + " |")
    with_rec = [s for s in systems.values() if "per_recording" in s["scores"]["event"]]
    if with_rec:
        lines += ["", "Source recordings with at least one hit, of those with reference events made of that "
                  "recording alone (a walk of steps or a series of barks mixes several, and its hit names none):",
                  "", head2, "|" + "---|" * (head2.count("|") - 1)]
        for s in with_rec:
            pr = s["scores"]["event"]["per_recording"]
            alone = {k: [c for c in pr.get(k, {}).values() if c[4] > 0] for k in labels}
            lines.append(f"| {s['system']} | {s['smoother']} | " + " | ".join(
                f"{sum(c[3] > 0 for c in alone[k])}/{len(alone[k])}" if alone[k] else "" for k in labels) + " |")
    with_stream_ci = [s for s in systems.values() if "excess_on_per_min_ci95" in s["scores"]["stream"]]
    if with_stream_ci:
        first = next(iter(systems.values()))
        head6 = (f"| system | smoother | excess on/min | 95 % interval "
                 f"| as a multiple of {first['system']} ({first['smoother']})'s | 95 % interval of the ratio "
                 "| latency median (s) | 95 % interval |")
        lines += ["", f"Jitter and latency, {RESAMPLED[unit]} (the same resamples; the ratio is paired):", "",
                  head6, "|" + "---|" * (head6.count("|") - 1)]
        for s in with_stream_ci:
            st = s["scores"]["stream"]
            d = st.get("vs_first")
            lines.append(f"| {s['system']} | {s['smoother']} | {_fmt(st['excess_on_per_min'], 1)} "
                         f"| {_fmt_range(st['excess_on_per_min_ci95'], 1)} | {_fmt(d['ratio'], 2) if d else ''} "
                         f"| {_fmt_range(d['ci95'] if d else None, 2)} "
                         f"| {_fmt(st['latency_median_s'], 2)} | {_fmt_range(st['latency_median_s_ci95'], 2)} |")
    return "\n".join(lines)


def format_recordings(systems: dict) -> str:
    """One row per (label, source recording) with reference events: its files and events, and for
    each system that scored the label its hits (Markdown; from each system's ``per_recording``)."""
    with_rec = {key: s for key, s in systems.items() if "per_recording" in s["scores"]["event"]}
    rows = sorted({(label, rec) for s in with_rec.values()
                   for label, recs in s["scores"]["event"]["per_recording"].items() for rec in recs})
    head = ("| label | source recording | files | events (alone) | "
            + " | ".join(f"{s['system']} ({s['smoother']}) hits (alone)" for s in with_rec.values()) + " |")
    lines = ["Reference events per source recording (an event counts for each recording mixed into it; in "
             "brackets, the events made of that recording alone) and each system's hits:", "", head,
             "|" + "---|" * (head.count("|") - 1)]
    for label, rec in rows:
        counts = [s["scores"]["event"]["per_recording"].get(label, {}).get(rec) for s in with_rec.values()]
        _, n_ref, files, _, n_alone = next(c for c in counts if c)
        lines.append(f"| {label} | {rec} | {files} | {n_ref} ({n_alone}) | "
                     + " | ".join(f"{c[0]} ({c[3]})" if c else "" for c in counts) + " |")
    return "\n".join(lines)


def network_key(model) -> Optional[tuple]:
    """What decides ``model``'s probabilities: a SHA-256 of its ONNX graph (the metadata left out)
    with its labels, front end and state; None where the ``onnx`` package is not installed. Two
    files with the same key differ at most in their smoother (``rttag tune -o`` writes such a
    copy), so ``rttag eval`` runs the network once and smooths its probabilities with each
    smoother (:func:`smooth` gives the pipeline's events exactly)."""
    try:
        import onnx
    except ImportError:
        return None
    graph = hashlib.sha256(onnx.load(str(model.path)).graph.SerializeToString()).hexdigest()
    info = model.info
    return graph, info.labels, info.frontend, info.state_names, tuple(sorted(info.state_shapes.items()))


def run_or_reuse(model, name: str, split: Split, passes: dict) -> tuple[dict[str, FileRun], dict]:
    """``model`` over every file of ``split`` (:func:`run_model`) and the wall time it took,
    ``{"pipeline_s": s}``. Where an earlier model in ``passes`` (``{network_key: (name, runs)}``,
    filled here) has the same network, its runs with ``model``'s smoother applied to their
    probabilities instead, and ``{"pipeline_s": 0.0, "pass_of": that model's name}``."""
    key = network_key(model)
    if key is not None and key in passes:
        first, runs = passes[key]
        info = model.info
        detections = smooth_runs(runs, info.labels, info.smoother, FrameTiming.of_frontend(info.frontend))
        log.info("%s: the network of %s with another smoother; its pass is reused", name, first)
        return {n: replace(r, detections=detections[n]) for n, r in runs.items()}, {"pipeline_s": 0.0, "pass_of": first}
    t0 = time.perf_counter()
    runs = run_model(model, split, model.info.smoother)
    if key is not None:
        passes[key] = (name, runs)
    return runs, {"pipeline_s": time.perf_counter() - t0}


def model_detections(runs: dict[str, FileRun], info) -> dict[str, tuple[SmootherParams, dict]]:
    """A model's two systems over its runs (``info``: its rttag.runtime.ModelInfo), as
    :func:`silero_detections` gives silero-vad's: ``tuned``, the pipeline's own events with the
    smoother of its metadata, and ``raw``, per-frame thresholding at the same on-thresholds
    (``SmootherParams.raw``); each as ``(params, {file: detections})``."""
    raw = SmootherParams.raw(info.smoother.on_threshold)
    return {"tuned": (info.smoother, {n: r.detections for n, r in runs.items()}),
            "raw": (raw, smooth_runs(runs, info.labels, raw, FrameTiming.of_frontend(info.frontend)))}


def run(args) -> int:
    from .dataset.others import is_others_set
    from .runtime import OnnxModel, model_file

    if args.roll_seconds <= 0 or args.psds_resolution < 0 or args.bootstrap < 0:
        raise EvalError("--roll-seconds must be positive, --psds-resolution and --bootstrap not negative")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    paths = [model_file(n) for n in names]  # all checked before the first long run
    repeated = [p for p, count in Counter(p.resolve() for p in paths).items() if count > 1]
    if repeated:
        raise EvalError(f"--models names {repeated[0]} more than once")
    models = [OnnxModel(p, providers=args.providers, threads=args.threads) for p in paths]
    shown = system_names([m.info.name for m in models], paths)
    if is_others_set(args.data):
        return false_alarms.run(args, models, shown)
    split = load_split(args.data, args.split, labels=models[0].info.labels if models else None)
    log.info("%s: %d files, %.1f min, %d reference events", split.name, len(split.paths), split.minutes,
             sum(len(v) for v in split.reference.values()))
    roll_file = args.roll_file or _busiest_file(split)
    if roll_file not in split.paths:
        raise EvalError(f"--roll-file {roll_file}: not a file of split {split.name}")
    systems, walls, rolls, passes = {}, {}, [], {}
    levels = None  # each reference event's start level, from the first model's log-mel frames
    for model, name in zip(models, shown):
        info = model.info
        timing = FrameTiming.of_frontend(info.frontend)
        runs, walls[name] = run_or_reuse(model, name, split, passes)
        probs = {n: r.probs for n, r in runs.items()}
        if levels is None:
            levels = onset_levels(split, {n: r.logmel for n, r in runs.items()}, timing)
        t1 = time.perf_counter()
        psds_figures = psds(split, probs, timing, info.labels, args.psds_resolution)
        walls[name]["psds_s"] = time.perf_counter() - t1
        detections = model_detections(runs, info)
        for kind, (params, dets) in detections.items():
            t2 = time.perf_counter()
            scores = score_system(split, dets, info.labels, psds_figures,
                                  wait_of=smoother_wait(params, info.labels, timing), levels=levels)
            systems[f"{name}/{kind}"] = {"system": name, "smoother": kind, "model": str(model.path),
                                         "params": _params_dict(params, info.labels), "scores": scores}
            walls[name][f"score_{kind}_s"] = time.perf_counter() - t2
            log.info("%s/%s: event F1 %.3f, segment F1 %.3f", name, kind,
                     scores["event"]["micro_f1"] or 0.0, scores["segment"]["micro_f1"] or 0.0)
        rolls.append({"name": name, "labels": info.labels, "timing": timing, "probs": probs,
                      "tuned": detections["tuned"][1], "raw": detections["raw"][1]})
    if not args.no_silero:
        systems.update(_silero_systems(split, args, walls, rolls, levels))
    unit = args.bootstrap_unit
    if unit == "recording" and not split.recordings:
        log.warning("%s/manifest.json does not list the source recordings of split %s: "
                    "the intervals resample files only", args.data, split.name)
        unit = "file"
    elif unit == "recording" and not split.events_attributed:
        log.warning("%s/manifest.json does not say which recordings each event of split %s holds (rebuild it "
                    "with 'rttag data build'): an event weighs the mean of its label's recordings in its file",
                    args.data, split.name)
    weights = resampling(list(split.paths), split.recordings, event_sources(split), rounds=args.bootstrap, unit=unit)
    add_intervals(systems, weights, np.array([split.durations[n] / 60.0 for n in weights.names]))
    recordings = recordings_per_label(split)
    print(format_table(systems, weights.unit, recordings))
    if args.per_recording:
        if split.events_attributed:
            print("\n" + format_recordings(systems))
        else:
            log.warning("--per-recording: %s/manifest.json does not say which recordings each event of split %s "
                        "holds; no per-recording table", args.data, split.name)
    if args.json:
        _write_json(args.json, split, systems, walls, args, weights, recordings)
    if args.plots:
        out = Path(args.plots)
        out.mkdir(parents=True, exist_ok=True)
        event_roll(out / "event-roll.png", split, roll_file, rolls, args.roll_start, args.roll_seconds)
        per_class_f1(out / "per-class-f1.png", systems)
        log.info("plots written to %s", out)
    return 0


SILERO_LABELS = ("speech",)
"""The one label silero-vad answers for."""


def silero_timing() -> FrameTiming:
    """Where silero-vad's probabilities lie in time: one per chunk, placed at the chunk's start."""
    from . import silero_peer

    chunk_s = silero_peer.CHUNK / silero_peer.SAMPLE_RATE
    return FrameTiming(hop_s=chunk_s, centre0_s=0.0, ready0_s=chunk_s)


def silero_detections(probs: dict, durations: dict) -> dict[str, tuple[SmootherParams, dict]]:
    """silero-vad's two systems over its probabilities (``{file: [n_chunks, 1]}``, from
    :func:`run_silero`; ``durations`` in s by file): ``streaming`` with its usual thresholds
    (``silero_peer.STREAMING_PARAMS``) and ``raw`` at 0.5, each as ``(params, {file: detections})``."""
    from . import silero_peer

    timing = silero_timing()
    return {kind: (params, {n: smooth(p, SILERO_LABELS, params, timing, durations[n]) for n, p in probs.items()})
            for kind, params in (("streaming", silero_peer.STREAMING_PARAMS), ("raw", SmootherParams.raw((0.5,))))}


def _silero_systems(split: Split, args, walls: dict, rolls: list, levels: Optional[dict]) -> dict:
    from . import silero_peer

    labels = SILERO_LABELS
    speech = split.only(labels)
    timing = silero_timing()
    t0 = time.perf_counter()
    probs = run_silero(split, threads=args.threads)
    walls["silero-vad"] = {"pipeline_s": time.perf_counter() - t0}
    psds_figures = psds(speech, probs, timing, labels, args.psds_resolution)
    out = {}
    dets_by_kind = {}
    for kind, (params, dets) in silero_detections(probs, split.durations).items():
        dets_by_kind[kind] = dets
        out[f"silero-vad/{kind}"] = {"system": "silero-vad (speech only)", "smoother": kind, "model": f"silero-vad {silero_peer.version()}",
                                     "params": _params_dict(params, labels),
                                     "scores": score_system(speech, dets, labels, psds_figures, full=split,
                                                            wait_of=smoother_wait(params, labels, timing),
                                                            levels=levels)}
    rolls.append({"name": "silero-vad", "labels": labels, "timing": timing, "probs": probs,
                  "tuned": dets_by_kind["streaming"], "raw": dets_by_kind["raw"]})
    return out


def _params_dict(params: SmootherParams, labels: Sequence[str]) -> dict:
    return {k: dict(zip(labels, getattr(params, k))) for k in SMOOTHER_FIELDS}


def event_sources(split: Split) -> dict:
    """``{file: [(label, sources), ...]}``: each reference event's label and recordings, in the
    file's order — what :func:`rttag.intervals.resampling` weighs the events by."""
    return {name: [(e.label, e.sources) for e in evs] for name, evs in split.reference.items()}


def recordings_per_label(split: Split) -> dict:
    """The number of distinct source recordings per label (background included) over the split's
    files; empty where the split does not list them."""
    found = defaultdict(set)
    for by_label in split.recordings.values():
        for label, recs in by_label.items():
            found[label].update(recs)
    return {label: len(recs) for label, recs in sorted(found.items())}


def _busiest_file(split: Split) -> str:
    return max(split.paths, key=lambda n: (len({e.label for e in split.reference[n]}), len(split.reference[n]), n))


def _write_json(path: str, split: Split, systems: dict, walls: dict, args, weights, recordings: dict) -> None:
    doc = {"split": split.name, "data": str(args.data), "files": len(split.paths), "minutes": split.minutes,
           "reference_events": sum(len(v) for v in split.reference.values()),
           "source_recordings": recordings,
           "settings": {"t_collar_s": T_COLLAR_S, "offset_fraction": OFFSET_FRACTION, "segment_s": SEGMENT_S,
                        "short_s": SHORT_S, **PSDS_SCENARIOS, "psds_resolution": args.psds_resolution,
                        "frames_per_call": 1, "providers": args.providers,
                        "bootstrap_rounds": args.bootstrap, "bootstrap_seed": BOOTSTRAP_SEED,
                        "bootstrap_unit": weights.unit, "bootstrap_recordings": weights.recordings,
                        "events_attributed": split.events_attributed},
           "systems": systems, "wall_s": walls}
    Path(path).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    log.info("figures written to %s", path)


# -------------------------------------------------------------------------- plots


def event_roll(path: Path, split: Split, name: str, rolls: list, start_s: float, seconds: float) -> None:
    """PNG: the reference of file ``name`` on top, then for each system its frame
    probabilities (grey, label × time) with its tuned events (blue bars) and raw-threshold
    events (red ticks), on one time axis from ``start_s`` for ``seconds`` s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end_s = min(start_s + seconds, split.durations[name])
    all_labels = list(dict.fromkeys(label for r in rolls for label in r["labels"]))
    heights = [len(all_labels)] + [max(1.5, len(r["labels"])) for r in rolls]
    fig, axes = plt.subplots(len(heights), 1, sharex=True, figsize=(14, 0.28 * sum(heights) + 1.5),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    axes = axes[:, 0]
    ref_rows = {label: i for i, label in enumerate(all_labels)}
    for e in split.reference[name]:
        if e.offset > start_s and e.onset < end_s:
            axes[0].broken_barh([(e.onset, e.offset - e.onset)], (ref_rows[e.label] - 0.35, 0.7), color="tab:green")
    _label_axis(axes[0], all_labels, "reference")
    for ax, r in zip(axes[1:], rolls):
        labels, timing, probs = r["labels"], r["timing"], r["probs"][name]
        first = max(0, int(np.floor((start_s - timing.centre0_s) / timing.hop_s)))
        last = min(len(probs), int(np.ceil((end_s - timing.centre0_s) / timing.hop_s)) + 1)
        t0 = timing.centre0_s + (first - 0.5) * timing.hop_s
        t1 = timing.centre0_s + (last - 0.5) * timing.hop_s
        ax.imshow(probs[first:last].T, aspect="auto", cmap="Greys", vmin=0.0, vmax=1.0, interpolation="nearest",
                  extent=(t0, t1, len(labels) - 0.5, -0.5))
        rows = {label: i for i, label in enumerate(labels)}
        for d in r["tuned"].get(name, []):
            ax.broken_barh([(d.onset, d.offset - d.onset)], (rows[d.label] - 0.15, 0.3), color="tab:blue")
        for d in r["raw"].get(name, []):
            ax.broken_barh([(d.onset, max(d.offset - d.onset, timing.hop_s))], (rows[d.label] + 0.22, 0.16),
                           color="tab:red")
        _label_axis(ax, labels, r["name"])
    axes[-1].set_xlim(start_s, end_s)
    axes[-1].set_xlabel(f"stream time (s) — {name}")
    fig.suptitle("reference (green); per model: frame probabilities (grey), events with the tuned smoother "
                 "(blue) and with raw thresholding (red)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _label_axis(ax, labels: Sequence[str], title: str) -> None:
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_ylabel(title, fontsize=8, rotation=0, ha="right", va="center")


def per_class_f1(path: Path, systems: dict) -> None:
    """PNG: event-based F1 per class, one bar per system and smoother."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(label for s in systems.values() for label in s["scores"]["event"]["per_class"]))
    keys = list(systems)
    width = 0.8 / max(1, len(keys))
    fig, ax = plt.subplots(figsize=(14, 4.5))
    cmap = plt.get_cmap("tab10")
    for j, key in enumerate(keys):
        s = systems[key]
        pc = s["scores"]["event"]["per_class"]
        xs = [i + (j - (len(keys) - 1) / 2) * width for i, label in enumerate(labels) if label in pc]
        ys = [pc[label]["f1"] or 0.0 for label in labels if label in pc]
        colour, raw = cmap(j // 2 % 10), s["smoother"] == "raw"
        ax.bar(xs, ys, width, label=f"{s['system']} / {s['smoother']}", color=(*colour[:3], 0.35) if raw else colour,
               hatch="//" if raw else None, edgecolor=colour)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels)
    ax.set_ylabel("event-based F1 (200 ms collar)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=4)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
