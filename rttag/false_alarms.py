"""False events on sounds of none of the labels: what ``rttag eval`` reports on a ``rttag data others`` set.

The set (rttag.dataset.others) plays recordings of none of the ten labels one by one, so every
``on`` a model emits there is false. Each model runs through the streaming pipeline once per
file (rttag.evaluate.run_model, the code ``rttag tag`` runs) with its tuned smoother, and its
frame probabilities are re-smoothed with raw thresholding, as on a labelled split. Per system:

* ``on_per_min``: ``on`` events per minute of audio;
* ``on_per_sound``: ``on`` events that fall on a sound — onset ``t`` within ``WINDOW_S`` of the
  sound's span — per sound played, with a 95 % interval over the recordings (each round draws the
  distinct recordings with replacement; a recording's sounds in every file go with it) and, for
  every system after the first, its rate as a multiple of the first's on the same rounds;
* ``sounds_named``: the share of sounds played that get at least one ``on``;
* ``between_per_min``: ``on`` events on the noise between sounds, per minute;
* ``on_s_per_min``: seconds of false events (summed over classes) per minute of audio;
* ``per_class``: ``on`` events by label, most first.

silero-vad runs over the same files as the peer for ``speech`` (``--no-silero`` leaves it out).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .intervals import BOOTSTRAP_SEED, ci95

log = logging.getLogger(__name__)

WINDOW_S = 0.5
"""An ``on`` whose onset lies within this of a sound's span (s) falls on that sound."""


@dataclass(frozen=True)
class Played:
    """One sound of a file: onset and offset (s) and its recording's id (``package:path``)."""

    onset: float
    offset: float
    recording: str


def read_played(data_dir: str | Path, names: Sequence[str]) -> dict[str, list[Played]]:
    """The sounds of each file of ``names`` from ``DIR/others.json``, in time order; an error
    (rttag.dataset.others.OthersSetError) where the file is unreadable or lacks one of ``names``."""
    from .dataset.others import SETTINGS_FILE, OthersSetError, read_settings

    settings = read_settings(data_dir)
    try:
        files = settings["files"]
        played = {name: sorted((Played(float(s["onset"]), float(s["offset"]), f"{s['package']}:{s['path']}")
                                for s in files[name]), key=lambda p: p.onset) for name in names}
    except (ValueError, KeyError, TypeError) as exc:
        raise OthersSetError(f"{Path(data_dir) / SETTINGS_FILE}: cannot read the sounds played ({exc!r})") from None
    return played


def attribute(onsets: Sequence[float], played: Sequence[Played]) -> tuple[np.ndarray, int]:
    """Per sound of ``played`` (time order), how many of ``onsets`` (s) fall on it (within
    ``WINDOW_S`` of its span; the first such sound where windows overlap), and how many fall on
    none."""
    counts, between = np.zeros(len(played), dtype=np.int64), 0
    for t in onsets:
        hit = next((i for i, p in enumerate(played) if p.onset - WINDOW_S <= t <= p.offset + WINDOW_S), None)
        if hit is None:
            between += 1
        else:
            counts[hit] += 1
    return counts, between


def score(detections: dict, played: dict, minutes: float) -> dict:
    """The figures of the module for one system: ``detections`` and ``played`` by file name
    (rttag.evaluate.Detection lists; :class:`Played` lists), ``minutes`` of audio in all.
    ``by_recording`` holds, per recording id, ``[on events on its sounds, times played]``."""
    ons = between = named = sounds = 0
    on_s, per_class, by_recording = 0.0, Counter(), {}
    for name, dets in detections.items():
        counts, off_sound = attribute([d.onset for d in dets], played[name])
        ons += len(dets)
        between += off_sound
        named += int((counts > 0).sum())
        sounds += len(counts)
        on_s += sum(d.offset - d.onset for d in dets)
        per_class.update(d.label for d in dets)
        for p, n in zip(played[name], counts):
            got = by_recording.setdefault(p.recording, [0, 0])
            got[0] += int(n)
            got[1] += 1
    return {"ons": ons, "on_per_min": ons / minutes, "on_per_sound": (ons - between) / max(sounds, 1),
            "sounds_named": named / max(sounds, 1), "between_per_min": between / minutes,
            "on_s_per_min": on_s / minutes, "per_class": dict(per_class.most_common()), "by_recording": by_recording}


def add_intervals(systems: dict, rounds: int) -> None:
    """Add ``on_per_sound_ci`` to every system of ``systems`` (``{key: {"scores": score(...)}}``,
    all over the same set) and, after the first, ``ratio_to_first`` with ``ratio_to_first_ci``:
    the same ``rounds`` draws of the recordings for all (paired). No intervals for 0 rounds."""
    keys = list(systems)
    if not keys:
        return
    first = systems[keys[0]]["scores"]
    recordings = sorted(first["by_recording"])
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draws = rng.multinomial(len(recordings), np.full(len(recordings), 1 / len(recordings)), size=rounds) \
        if rounds else None
    rates = {}
    for key in keys:
        s = systems[key]["scores"]
        ons, plays = (np.array([s["by_recording"][r][i] for r in recordings], dtype=np.float64) for i in (0, 1))
        if draws is not None:
            rates[key] = (draws @ ons) / np.maximum(draws @ plays, 1)
            s["on_per_sound_ci"] = ci95(rates[key])
        if key != keys[0]:
            s["ratio_to_first"] = s["on_per_sound"] / first["on_per_sound"] if first["on_per_sound"] else None
            if draws is not None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = np.where(rates[keys[0]] > 0, rates[key] / rates[keys[0]], np.nan)
                s["ratio_to_first_ci"] = ci95(ratio)


def format_table(systems: dict, minutes: float, sounds: int, recordings: int) -> str:
    """The stdout table: one row per system, every ``on`` false."""
    def rng(pair):
        return f" ({pair[0]:.2f}–{pair[1]:.2f})" if pair else ""

    first = next(iter(systems.values()), {}).get("system", "")
    lines = [f"sounds of none of the labels: {sounds} played ({recordings} recordings), {minutes:.1f} min; "
             "every on is false",
             "| system | smoother | on/min | on per sound (95 %) | × " + first + " (95 %) | sounds named | "
             "between sounds, on/min | false on s/min | most named |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in systems.values():
        f = s["scores"]
        ratio = "—" if f.get("ratio_to_first") is None else f"{f['ratio_to_first']:.2f}{rng(f.get('ratio_to_first_ci'))}"
        named = ", ".join(f"{k} {v}" for k, v in list(f["per_class"].items())[:5]) or "—"
        lines.append(f"| {s['system']} | {s['smoother']} | {f['on_per_min']:.1f} | {f['on_per_sound']:.2f}"
                     f"{rng(f.get('on_per_sound_ci'))} | {ratio} | {f['sounds_named']:.2f} | "
                     f"{f['between_per_min']:.2f} | {f['on_s_per_min']:.1f} | {named} |")
    return "\n".join(lines)


def silero_systems(split, played: dict, threads: int) -> dict:
    """silero-vad (the ``speech`` peer of rttag.evaluate) over the set, with its usual streaming
    thresholds and raw at 0.5: every speech ``on`` is false."""
    from . import silero_peer
    from .evaluate import run_silero, silero_detections

    probs = run_silero(split, threads=threads)
    return {f"silero-vad/{kind}": {"system": "silero-vad (speech only)", "smoother": kind,
                                   "model": f"silero-vad {silero_peer.version()}",
                                   "scores": score(dets, played, split.minutes)}
            for kind, (_, dets) in silero_detections(probs, split.durations).items()}


def run(args, models: list, names: Sequence[str]) -> int:
    """``rttag eval --data OTHERS``: every model in ``models`` (rttag.runtime.OnnxModel, shown as
    ``names``) over the set, tuned and raw; the table on stdout, every figure in ``--json``."""
    from .evaluate import load_split, model_detections, run_or_reuse
    from .dataset.others import SPLIT

    if args.split not in ("test", SPLIT):
        log.warning("%s is a set of sounds of none of the labels: scoring its '%s' files, not --split %s",
                    args.data, SPLIT, args.split)
    unused = [flag for flag, value in (("--plots", args.plots), ("--roll-file", args.roll_file),
                                       ("--per-recording", args.per_recording)) if value]
    if unused:
        log.warning("on a set of sounds of none of the labels there are no event rolls, per-class F1 or "
                    "per-recording hits: %s ignored", ", ".join(unused))
    split = load_split(args.data, SPLIT, labels=models[0].info.labels if models else None)
    played = read_played(args.data, list(split.paths))
    systems, passes = {}, {}
    for model, name in zip(models, names):
        runs, _ = run_or_reuse(model, name, split, passes)
        for kind, (_, dets) in model_detections(runs, model.info).items():
            systems[f"{name}/{kind}"] = {"system": name, "smoother": kind, "model": str(model.path),
                                         "scores": score(dets, played, split.minutes)}
            log.info("%s/%s: %.1f on/min", name, kind, systems[f"{name}/{kind}"]["scores"]["on_per_min"])
    # the models' tuned systems paired against the first model's tuned one, their raw ones against its raw
    for kind in ("tuned", "raw"):
        add_intervals({k: v for k, v in systems.items() if v["smoother"] == kind}, args.bootstrap)
    if not args.no_silero:  # the speech peer, each of its two systems on its own (no ratio: one label against ten)
        for key, system in silero_systems(split, played, args.threads).items():
            add_intervals({key: system}, args.bootstrap)
            systems[key] = system
    sounds = sum(len(p) for p in played.values())
    n_recordings = len({p.recording for ps in played.values() for p in ps})
    print(format_table(systems, split.minutes, sounds, n_recordings))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"data": str(args.data), "split": SPLIT, "minutes": split.minutes, "sounds": sounds,
                       "recordings": n_recordings, "window_s": WINDOW_S, "bootstrap_rounds": args.bootstrap,
                       "systems": systems}, f, indent=1)
    return 0
