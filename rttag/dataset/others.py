"""``rttag data others``: recordings of none of the labels, played one by one, to count false events.

The test split holds only the ten labels' sounds over ambience, so it cannot say how often a
model names a sound it was never meant to name — a keyboard, a cough, a cat, a game's laser.
A user's room has many. This command writes a set of such sounds, each played alone, for
``rttag eval --data OUT``, which counts every ``on`` there as false (rttag.false_alarms).

The recordings (``rttag/dataset/other_sources.tsv``, label ``other``, split ``test``) were
picked by file name, not by ear: clicks, paint and eraser tools, whooshes, swords and knives,
domino falls, pickups, lasers, rope and reload sounds, coughs, sneezes, a cat. Sounds a label
could claim (voices, music, bells, beeps, footsteps, animals that bark or sing, splashes,
crashes, engines) were left out. Every row comes from a package that no training or validation
row of any list uses (:func:`check_others`), so no model saw those packages in training or
tuning.

With ``--split validation`` the recordings come from ``other_validation_sources.tsv`` instead:
packages that only the validation side uses (no train or test row), for ``rttag tune --others
OUT``, which adds the set's files, without events, to the tuning split. ``others.json`` records
the side, and the tuner refuses a test-side set.

Output (``--out``)::

    audio/others/others_N.wav   16 kHz mono PCM16; each holds every recording once, in an order of
                                its own, one every 2-4 s (``GAP_S``) after 1 s of lead-in, over pink
                                noise ``--noise-db`` below the sounds' level
    metadata/others.tsv         the DCASE reference: each file with no events
    others.json                 the settings, each file's peak gain (dB, below), and per file each
                                sound's onset and offset (s) and recording (package, path, licence)
    ATTRIBUTION.md              every recording used, with its licence and copyright holders

Each recording is trimmed as ``rttag data build`` trims (rttag.dataset.sources.decode), cut to
``MAX_S`` and scaled to ``--level-dbfs`` RMS over its active part (samples above 5 % of its
peak), so a quiet click and a loud whoosh are heard alike. A file whose peak would pass 0.99 is
scaled down as a whole, with a line on stderr saying how far. The same ``--seed`` gives the same
files.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from ..errors import RttagError
from .build import decode_all, progress_bar, write_attribution
from .degrade import pink_noise
from .mixer import SR, rms
from .sources import Source, SourceError, default_sources_tsv, fetch_and_unpack, read_sources
from .sources import default_distractor_sources_tsv, default_extra_sources_tsv, default_validation_sources_tsv
from .splits import SPLITS, row_problem, split_of

OTHER = "other"
"""The label of every row of ``other_sources.tsv``."""
SPLIT = "others"
"""The split name ``rttag eval`` reads: ``audio/others/`` and ``metadata/others.tsv``."""
SETTINGS_FILE = "others.json"
MAX_S = 4.0
"""Longest part of a recording played (s)."""
GAP_S = (2.0, 4.0)
"""Range of the silence between one sound's end and the next one's start (s)."""
LEAD_S = 1.0
"""Noise before the first sound and after the last (s)."""
ACTIVE_SHARE = 0.05
"""A sample is part of a recording's active part when above this share of its peak."""


SIDES = ("test", "validation")
"""``--split``: which side's packages the recordings come from."""


def default_other_sources_tsv(split: str = "test") -> Path:
    """rttag's list of recordings of none of the labels for ``split`` (``rttag/dataset/
    other_sources.tsv`` for test, ``other_validation_sources.tsv`` for validation)."""
    name = "other_sources.tsv" if split == "test" else f"other_{split}_sources.tsv"
    return Path(__file__).resolve().parent / name


class OthersSetError(RttagError):
    """A folder given as a ``rttag data others`` set that is none, or whose ``others.json`` is unreadable."""


def is_others_set(data_dir: str | Path) -> bool:
    """Whether ``data_dir`` is a set :func:`run` wrote (it holds ``others.json``)."""
    return (Path(data_dir) / SETTINGS_FILE).is_file()


def read_settings(data_dir: str | Path) -> dict:
    """``DIR/others.json`` as :func:`run` writes it (the settings, ``split``, and per file its sounds
    under ``files``); :class:`OthersSetError` where ``DIR`` holds none, or it is not a JSON object."""
    path = Path(data_dir) / SETTINGS_FILE
    if not is_others_set(data_dir):
        raise OthersSetError(f"{data_dir}: not a set written by 'rttag data others' (no {SETTINGS_FILE})")
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OthersSetError(f"{path}: cannot read it ({exc})") from None
    if not isinstance(settings, dict):
        raise OthersSetError(f"{path}: not a JSON object")
    return settings


def check_others(rows: list[Source], lists: list[Source], split: str = "test") -> None:
    """Refuse (one ``SourceError``) a row that is not of ``split``, is not labelled ``other``, has
    no licence (:func:`rttag.dataset.splits.row_problem`), repeats a file of ``lists`` or of an
    earlier row, or comes from a package that another side uses. ``lists``: the vetted list and
    rttag's own, each row on the side :func:`rttag.dataset.splits.split_of` gives it (distractor
    rows are training rows). A ``test`` row's package must have no training or validation rows; a
    ``validation`` row's no training or test rows."""
    other_sides = {s.package for s in lists if split_of(s) != split}
    seen = {(s.package, s.path) for s in lists}
    for s in rows:
        problem = row_problem(s, split, {OTHER}) or (
            f"package has {' or '.join(x for x in SPLITS if x != split)} rows" if s.package in other_sides else
            "file repeats a listed one" if (s.package, s.path) in seen else None)
        if problem:
            raise SourceError(f"other sources: {s.package}:{s.path}: {problem}")
        seen.add((s.package, s.path))


def listed_sources() -> list[Source]:
    """Every row of the vetted list and of rttag's own lists (what ``check_others`` compares with)."""
    return [s for tsv in (default_sources_tsv(), default_extra_sources_tsv(), default_validation_sources_tsv(),
                          default_distractor_sources_tsv()) for s in read_sources(tsv)]


def level(x: np.ndarray, level_dbfs: float) -> np.ndarray:
    """``x`` (float32 ``[n]``) cut to ``MAX_S`` and scaled so that its active part has RMS
    ``level_dbfs`` (dB re full scale)."""
    x = np.asarray(x[: int(MAX_S * SR)], dtype=np.float32)
    active = x[np.abs(x) > ACTIVE_SHARE * np.abs(x).max()]
    return (x * np.float32(10 ** (level_dbfs / 20) / rms(active))).astype(np.float32)


def play(clips: list[np.ndarray], rng: np.random.Generator, level_dbfs: float,
         noise_db: float) -> tuple[np.ndarray, list[tuple[float, float, int]], float]:
    """Every clip of ``clips`` (float32 ``[n_i]``, already levelled) once, in a random order,
    ``GAP_S`` apart after ``LEAD_S`` of lead-in, over pink noise ``noise_db`` below
    ``level_dbfs``. Returns float32 ``[n]``; in time order, each sound's ``(onset s, offset s,
    index into clips)``; and the gain (dB, 0 or below) that brought the whole file's peak down to
    0.99 where it would pass it (every sound then sits that much below ``level_dbfs``)."""
    t, placed = LEAD_S, []
    for i in rng.permutation(len(clips)):
        placed.append((t, t + len(clips[i]) / SR, int(i)))
        t += len(clips[i]) / SR + rng.uniform(*GAP_S)
    y = pink_noise(int(round((placed[-1][1] + LEAD_S) * SR)), rng) * np.float32(10 ** ((level_dbfs - noise_db) / 20))
    for onset, _, i in placed:
        at = int(round(onset * SR))
        y[at:at + len(clips[i])] += clips[i]
    peak = float(np.abs(y).max())
    gain = min(1.0, 0.99 / peak)
    return (y * np.float32(gain)).astype(np.float32), placed, 20 * float(np.log10(gain))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Write a set of recordings of none of the labels, each played alone, for "
                          "'rttag eval --data OUT' to count false events on.")
    parser.add_argument("--out", required=True, help="output folder (must not hold audio/others yet)")
    parser.add_argument("--files", type=int, default=3, help="files to write; each plays every recording once")
    parser.add_argument("--level-dbfs", type=float, default=-26.0, help="RMS of each sound's active part, dBFS")
    parser.add_argument("--noise-db", type=float, default=50.0, help="pink noise this far below the sounds, dB")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=SIDES, default="test",
                        help="test: sounds from packages only the test side uses, for 'rttag eval'; validation: "
                             "from packages only the validation side uses, for 'rttag tune --others'")
    parser.add_argument("--sources", help="list of recordings (default: rttag/dataset/other_sources.tsv, or "
                                          "other_validation_sources.tsv with --split validation)")
    parser.add_argument("--cache", default="~/.cache/rttag", help="package and decode cache (shared with data build)")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes")


def run(args: argparse.Namespace) -> int:
    import soundfile as sf

    if args.files < 1 or not -60.0 <= args.level_dbfs <= -3.0 or args.noise_db < 0:
        raise RttagError("data others: --files must be at least 1, --level-dbfs between -60 and -3, "
                         "--noise-db not negative")
    out, cache = Path(args.out), Path(args.cache).expanduser()
    audio_dir = out / "audio" / SPLIT
    if audio_dir.exists() and any(audio_dir.iterdir()):
        raise RttagError(f"data others: {audio_dir} is not empty")
    rows = read_sources(Path(args.sources) if args.sources else default_other_sources_tsv(args.split))
    if not rows:
        raise RttagError("data others: the source list has no rows")
    check_others(rows, listed_sources(), args.split)
    progress = progress_bar()
    fetch_and_unpack(sorted({s.package for s in rows}), cache, progress)
    audio, problems = decode_all(rows, cache, args.workers, progress)
    for p in problems:
        print(f"rttag data others: skipped {p}", file=sys.stderr)
    used = [s for s in rows if s.key in audio]
    if not used:
        raise RttagError("data others: no recording could be decoded")
    clips = [level(audio[s.key], args.level_dbfs) for s in used]
    audio_dir.mkdir(parents=True, exist_ok=True)
    (out / "metadata").mkdir(exist_ok=True)
    files, gains, samples = {}, {}, 0
    for k in range(args.files):
        y, placed, gain_db = play(clips, np.random.default_rng((args.seed, k)), args.level_dbfs, args.noise_db)
        name = f"others_{k}.wav"
        sf.write(str(audio_dir / name), y, SR, subtype="PCM_16")
        samples += len(y)
        gains[name] = round(gain_db, 2)
        if gain_db < 0:
            print(f"rttag data others: {name} scaled by {gain_db:.1f} dB to keep its peak at 0.99: its sounds sit at "
                  f"{args.level_dbfs + gain_db:.1f} dBFS", file=sys.stderr)
        files[name] = [{"onset": round(a, 3), "offset": round(b, 3), "package": used[i].package,
                        "path": used[i].path, "licence": used[i].licence} for a, b, i in placed]
    with open(out / "metadata" / f"{SPLIT}.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["filename", "onset", "offset", "event_label"])
        w.writerows([name, "", "", ""] for name in files)
    settings = {"split": args.split, "seed": args.seed, "level_dbfs": args.level_dbfs, "noise_db": args.noise_db,
                "max_s": MAX_S, "gap_s": list(GAP_S), "lead_s": LEAD_S, "recordings": len(used), "peak_gain_db": gains,
                "files": files}
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=1))
    write_attribution(out, {(s.package, s.path) for s in used}, {(s.package, s.path): s.licence for s in used}, cache)
    print(f"rttag data others: {len(used)} recordings, {len(files)} files, {samples / SR / 60:.1f} min → {audio_dir}",
          file=sys.stderr)
    return 0
