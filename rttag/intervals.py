"""Bootstrap intervals of ``rttag eval``'s figures: resampling files, or files and source recordings.

A split's soundscapes are mixtures of a few source recordings per class (the cross-package test
split holds 4 distinct alarm and 8 dog recordings, reused across its 186 files), and files that
reuse one recording succeed or fail together. Resampling files alone treats them as independent,
and gives intervals that are too narrow for a question about recordings the model never heard.

Two units:

* ``"file"``: each round draws the split's files with replacement (multinomial counts of n
  draws from n files); a file's counts enter the round's sums that many times.
* ``"recording"``: a product-weight ("pigeonhole", two-way) bootstrap — each round also draws the
  split's distinct source recordings (background recordings included) with replacement,
  independently of the files. A reference event — whether it was detected, and its latency —
  weighs its file's count times the mean count of the recordings mixed into it, where the
  dataset says which they are (``RefEvent.sources``), else of its label's recordings in the
  file. The other counts of a (file, label) cell — false alarms, segments — are weighted by the
  file's count times the mean count of that label's recordings in the file, or of all the
  file's recordings where it has none of the label (false alarms over a file depend on whatever
  it holds). A file-level figure (its minutes of audio, whether a class is held on through it)
  takes the file's count times the mean count of all its recordings. Owen's analysis of this
  bootstrap (the pigeonhole bootstrap, 2007) finds it mildly conservative: it counts the noise
  of single cells more than once.

Every interval is the 2.5th–97.5th percentile over the rounds; the same rounds serve every
system and figure, so a difference between two systems on them is paired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

UNITS = ("recording", "file")
BOOTSTRAP_ROUNDS = 2000
"""Default rounds for the intervals (F1, jitter, latency, held-on files)."""
BOOTSTRAP_SEED = 0


def _draw_counts(rng: np.random.Generator, rounds: int, n: int) -> np.ndarray:
    """rounds × n: how often each of n items is drawn in n draws with replacement, per round."""
    picks = rng.integers(0, n, size=(rounds, n))
    return np.array([np.bincount(row, minlength=n) for row in picks], dtype=np.float64).reshape(rounds, n)


@dataclass(frozen=True)
class Resampling:
    """The weights of ``rounds`` bootstrap rounds over a split's files (in the order of ``names``).

    ``files``: rounds × files, the weight of a file's file-level figures; ``cells``: by label,
    rounds × files, the weight of that label's counts in each file (labels not there: ``files``);
    ``events``: by label, rounds × that label's reference events (file by file in the order of
    ``names``, each file's in its order), the weight of each; ``event_start``: by label, where
    each file's events begin among those columns (files + 1 offsets); ``recordings``: the
    distinct source recordings drawn (0 for ``unit == "file"``)."""

    unit: str
    names: list
    files: np.ndarray
    cells: dict
    events: dict
    event_start: dict
    recordings: int

    @property
    def rounds(self) -> int:
        return self.files.shape[0]

    def cell(self, label: str) -> np.ndarray:
        """rounds × files: the weights of ``label``'s counts in each file."""
        return self.cells.get(label, self.files)

    def event_columns(self, label: str, per_file: dict) -> np.ndarray:
        """``per_file`` ({file: [value per reference event of ``label`` there, in order]}) as one
        array in the column order of ``events[label]``; an error where a file's count differs."""
        start = self.event_start.get(label)
        values = [] if start is None else [per_file.get(n, []) for n in self.names]
        if start is None or any(len(v) != start[j + 1] - start[j] for j, v in enumerate(values)):
            raise ValueError(f"the {label} events scored differ from those the resampling was drawn for")
        return np.asarray([x for v in values for x in v], dtype=np.float64)


def resampling(names: Sequence[str], recordings: dict, reference: dict, rounds: int = BOOTSTRAP_ROUNDS,
               seed: int = BOOTSTRAP_SEED, unit: str = "recording") -> Resampling:
    """Draw the weights for ``names`` (the split's files). ``recordings``: {file: {label:
    [recording id, ...]}} for every file (``unit == "recording"`` only; background under its own
    label); ``reference``: {file: [(label, (recording id, ...)), ...]}, each reference event's
    label and the recordings mixed into it (empty where not known), in the file's order. With
    ``unit == "file"`` the file counts are those of ``integers(0, n, (rounds, n))`` on
    ``default_rng(seed)``; the recording draw comes after it from the same generator."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, not {unit!r}")
    names = list(names)
    rng = np.random.default_rng(seed)
    file_counts = _draw_counts(rng, rounds, len(names))
    if unit == "file":
        events, event_start = _event_weights(names, reference, lambda label, j, _: file_counts[:, j])
        return Resampling(unit, names, file_counts, {}, events, event_start, 0)
    missing = [n for n in names if not any(recordings.get(n, {}).values())]
    if missing:
        raise ValueError(f"no source recordings for {len(missing)} file(s), e.g. {missing[0]}")
    ids = sorted({r for n in names for recs in recordings[n].values() for r in recs})
    index = {r: i for i, r in enumerate(ids)}
    unknown = sorted({r for n in names for _, srcs in reference.get(n, []) for r in srcs} - set(index))
    if unknown:
        raise ValueError(f"{len(unknown)} recording(s) of the events are not among the files' recordings, "
                         f"e.g. {unknown[0]}")
    rec_counts = _draw_counts(rng, rounds, len(ids))

    def mean_count(recs) -> np.ndarray:  # rounds
        return rec_counts[:, sorted({index[r] for r in recs})].mean(axis=1)

    whole = np.stack([mean_count([r for recs in recordings[n].values() for r in recs]) for n in names], axis=1)
    files = file_counts * whole
    labels = {label for n in names for label in recordings[n]}
    cells = {label: file_counts * np.stack([mean_count(recordings[n][label]) if recordings[n].get(label) else whole[:, j]
                                            for j, n in enumerate(names)], axis=1)
             for label in sorted(labels)}
    events, event_start = _event_weights(
        names, reference,
        lambda label, j, srcs: file_counts[:, j] * mean_count(srcs) if srcs else cells.get(label, files)[:, j])
    return Resampling(unit, names, files, cells, events, event_start, len(ids))


def _event_weights(names: list, reference: dict, weight) -> tuple[dict, dict]:
    """``events`` and ``event_start`` of :class:`Resampling`; ``weight(label, file index,
    sources)`` gives one event's weights (rounds)."""
    columns, start = {}, {}
    labels = sorted({label for n in names for label, _ in reference.get(n, [])})
    for label in labels:
        cols, offsets = [], [0]
        for j, n in enumerate(names):
            mine = [srcs for lab, srcs in reference.get(n, []) if lab == label]
            cols.extend(weight(label, j, srcs) for srcs in mine)
            offsets.append(offsets[-1] + len(mine))
        columns[label], start[label] = np.stack(cols, axis=1), np.asarray(offsets)
    return columns, start


def resampled_f1(per_file_class: dict, labels: Sequence[str], w: Resampling, hits: dict | None = None) -> np.ndarray:
    """F1 = 2·ΣTP / (ΣNref + ΣNsys) over ``labels`` for each round, from ``per_file_class``
    ({file: {label: [n_tp, n_ref, n_sys]}}, absent labels count 0); 0 where the round has
    nothing referenced or predicted. With ``hits`` ({file: {label: [0 or 1 per reference event
    of the label]}}, event-based F1) each reference event weighs its own weight (``w.events``),
    and only the false alarms (n_sys − n_tp) their cell's; without, every count its cell's."""
    sums = np.zeros((w.rounds, 3))
    for label in labels:
        counts = np.array([per_file_class.get(n, {}).get(label, [0, 0, 0]) for n in w.names], dtype=np.float64)
        if not counts.any():
            continue
        if hits is None:
            sums += w.cell(label) @ counts
            continue
        tp, ref = np.zeros(w.rounds), np.zeros(w.rounds)
        if label in w.events:
            hit = w.event_columns(label, {n: by_label.get(label, []) for n, by_label in hits.items()})
            tp, ref = w.events[label] @ hit, w.events[label].sum(axis=1)
        else:
            hit = np.zeros(0)
        if hit.sum() != counts[:, 0].sum() or len(hit) != counts[:, 1].sum():
            raise ValueError(f"{label}: the hits do not match the counts' n_tp and n_ref")
        sums[:, 0] += tp
        sums[:, 1] += ref
        sums[:, 2] += tp + w.cell(label) @ (counts[:, 2] - counts[:, 0])
    denom = sums[:, 1] + sums[:, 2]
    return np.divide(2 * sums[:, 0], denom, out=np.zeros(len(sums)), where=denom > 0)


def resampled_excess(per_file: dict, labels: Sequence[str], minutes: np.ndarray, w: Resampling) -> np.ndarray:
    """Excess ``on`` events per minute for each round: Σ over ``labels`` of max(0, ΣNsys − ΣNref)
    / Σ minutes. ``per_file``: {file: {"sys": [...], "ref": [...]}} per label in the order of
    ``labels``; ``minutes``: per file, in the order of ``w.names``."""
    sys_ = np.array([per_file[n]["sys"] for n in w.names], dtype=np.float64).reshape(len(w.names), len(labels))
    ref = np.array([per_file[n]["ref"] for n in w.names], dtype=np.float64).reshape(len(w.names), len(labels))
    excess = sum(np.maximum(w.cell(label) @ (sys_[:, i] - ref[:, i]), 0) for i, label in enumerate(labels))
    return excess / (w.files @ minutes)


def resampled_median(per_file: dict, w: Resampling) -> np.ndarray:
    """The weighted median latency (s) per round: each matched reference event weighs its own
    weight (``w.events``); with whole-number weights it is the median of the drawn events, each
    counted as often as drawn (``np.median`` of the concatenated draw). ``per_file``: {file:
    {"latencies": [...], "latency_labels": [...], "latency_events": [...]}} (each latency's
    label and its event's place among the file's events of that label); NaN where a round
    weighs no latency."""
    values, weights = [], []
    for j, n in enumerate(w.names):
        f = per_file[n]
        for latency, label, k in zip(f["latencies"], f["latency_labels"], f["latency_events"]):
            values.append(latency)
            weights.append(w.events[label][:, w.event_start[label][j] + k])
    if not values:
        return np.full(w.rounds, np.nan)
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    flat = values[order]
    cum = np.cumsum(np.stack(weights, axis=1)[:, order], axis=1)  # rounds × latencies, ascending latency
    half = cum[:, -1:] / 2
    lower = np.argmax(cum >= half, axis=1)  # the two middle elements (one where the total is odd)
    upper = np.argmax(cum > half, axis=1)
    return np.where(cum[:, -1] > 0, 0.5 * (flat[lower] + flat[upper]), np.nan)


def ci95(values: np.ndarray) -> list[float]:
    """The 2.5th and 97.5th percentiles of resampled figures (NaN rounds left out)."""
    return [float(v) for v in np.nanpercentile(values, (2.5, 97.5))]


def add_intervals(systems: dict, w: Resampling, minutes: np.ndarray) -> None:
    """95 % percentile intervals over the rounds of ``w`` (the same rounds for every system and
    figure), added to each system's scores; ``minutes``: per file, in the order of ``w.names``.

    * ``scores["event"]`` and ``scores["segment"]``: ``micro_f1_ci95`` ([low, high]); for each
      later system with the same labels as the first, ``vs_first``: the first system's name,
      the difference in micro F1 (this − first) and its interval. Each class with reference
      events gets ``f1_ci95`` in ``scores["event"]["per_class"]``.
    * ``scores["stream"]`` (where it has ``per_file``): ``excess_on_per_min_ci95``,
      ``latency_median_s_ci95``, and for the same later systems ``vs_first``: ``ratio``, this
      system's excess ``on`` rate as a multiple of the first's, and its interval (NaN rounds,
      where the first has no excess, left out).
    * ``scores["held_on"]`` (where it has ``file_names``): ``files_ci95``, the interval of the
      number of files with a class held on."""
    if not systems or not w.rounds:
        return
    first_key = next(iter(systems))
    first_labels = set(systems[first_key]["scores"]["event"]["per_class"])
    paired = [key for key, s in systems.items()
              if key != first_key and set(s["scores"]["event"]["per_class"]) == first_labels]
    _f1_intervals(systems, w, first_key, paired)
    excess = {key: resampled_excess(s["scores"]["stream"]["per_file"], list(s["scores"]["stream"]["per_class"]),
                                    minutes, w)
              for key, s in systems.items() if "per_file" in s["scores"].get("stream", {})}
    for key, rounds_excess in excess.items():
        st = systems[key]["scores"]["stream"]
        st["excess_on_per_min_ci95"] = ci95(rounds_excess)
        st["latency_median_s_ci95"] = ci95(resampled_median(st["per_file"], w)) \
            if st["latency_median_s"] is not None else None
        if key in paired and first_key in excess:
            first = systems[first_key]["scores"]["stream"]["excess_on_per_min"]
            ratio = np.divide(rounds_excess, excess[first_key], out=np.full(w.rounds, np.nan),
                              where=excess[first_key] > 0)
            st["vs_first"] = {"system": first_key,
                              "ratio": st["excess_on_per_min"] / first if first > 0 else None,
                              "ci95": ci95(ratio) if np.isfinite(ratio).any() else None}
    for s in systems.values():
        held = s["scores"].get("held_on")
        if held and "file_names" in held:
            flags = np.isin(w.names, held["file_names"]).astype(np.float64)
            held["files_ci95"] = ci95(w.files @ flags)


def _f1_intervals(systems: dict, w: Resampling, first_key: str, paired: Sequence[str]) -> None:
    """The F1 part of :func:`add_intervals`."""
    for kind in ("event", "segment"):
        rounds_f1 = {key: resampled_f1(s["scores"][kind]["per_file_class"], list(s["scores"]["event"]["per_class"]), w,
                                       s["scores"][kind].get("hits"))
                     for key, s in systems.items()}
        first_f1 = systems[first_key]["scores"][kind]["micro_f1"] or 0.0
        for key, s in systems.items():
            scores = s["scores"][kind]
            scores["micro_f1_ci95"] = ci95(rounds_f1[key])
            if key in paired:
                scores["vs_first"] = {"system": first_key, "diff": (scores["micro_f1"] or 0.0) - first_f1,
                                      "ci95": ci95(rounds_f1[key] - rounds_f1[first_key])}
    for s in systems.values():
        event = s["scores"]["event"]
        for label, pc in event["per_class"].items():
            if pc["n_ref"] > 0:
                pc["f1_ci95"] = ci95(resampled_f1(event["per_file_class"], [label], w, event.get("hits")))
