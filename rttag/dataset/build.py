"""``rttag data build``: fetch the vetted recordings and mix the DCASE-layout dataset.

Output (``--out``, default ``data/``)::

    audio/{train,validation,test}/<split>_NNNNN.wav   16 kHz mono PCM16 soundscapes
    metadata/{train,validation,test}.tsv               filename onset offset event_label (s)
    manifest.json                                      per clip: sources used, and each event (the TSV's rows
                                                       in order) with the recordings mixed into it;
                                                       per split: packages per label
    ATTRIBUTION.md                                     every source file used, with its licence and copyright holders

Deterministic for a given ``--seed`` and source list; a second run reuses the package and
decode cache (``--cache``, default ``~/.cache/rttag``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..cli import db_range
from ..errors import RttagError
from ..workers import die_with_parent
from .mixer import DISTRACTOR, SR, MixSettings, Pool, mix
from .. import LABELS
from .sources import (Source, copyright_stanza, credited_licence, default_distractor_sources_tsv,
                      default_extra_sources_tsv, default_sources_tsv, default_validation_sources_tsv,
                      fetch_and_unpack, holders_text, load_decoded, read_sources)
from .splits import SPLITS, assign, check_distractors, check_extra, check_validation, keep_validation_half
from . import leaks, synth

SPLIT_SEED = {"train": 0, "validation": 1, "test": 2}
DISTRACTOR_STREAM = 7
"""Last element of a clip's distractor RNG seed ``(seed, split, index, 7)``: a stream of its own,
so ``--distractors`` leaves every labelled draw of the clip as it is."""
SYNTHETIC_CLIPS = 100
SYNTHETIC_SHARE = {"alarm": 0.5, "door": 0.5, "explosion": 0.3, "dog": 0.5, "engine": 0.3, "water": 0.3,
                   "footsteps": 0.5, "background": 0.5}
"""Per label, the chance that a training event (for ``background``: a training clip's ambience)
is a generated one (rttag.dataset.synth)."""
DEFAULT_SYNTHETIC_LABELS = ("alarm", "door", "explosion")
"""The labels that get generated recordings unless ``--synthetic-labels`` says otherwise."""
_POOLS: dict = {}
"""Per-process pools for the mixing workers (filled before forking)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="data", help="output folder (default: data)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--hours", type=float, default=6.0, help="hours of training soundscapes (default: 6)")
    parser.add_argument("--validation-hours", type=float, default=1.5, help="default: 1.5")
    parser.add_argument("--test-hours", type=float, default=1.0, help="default: 1")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "rttag"), help="download/decode cache")
    parser.add_argument("--sources", default=None, help="sources.tsv (default: ../shared/data/sources.tsv)")
    parser.add_argument("--extra-sources", default=None, metavar="TSV",
                        help="further train-only recordings (default: rttag's own rttag/dataset/extra_sources.tsv; "
                             "'none': the vetted list alone)")
    parser.add_argument("--validation-sources", default=None, metavar="TSV",
                        help="further validation-only recordings from packages no other list uses (default: rttag's "
                             "own rttag/dataset/validation_sources.tsv; 'none': validation from the vetted list alone)")
    parser.add_argument("--validation-half", choices=("A", "B"), default=None,
                        help="keep only this half of the validation packages (whole packages; the same halves on "
                             "every machine for the same source lists): train with half A, tune on half B")
    parser.add_argument("--train-ebr-db", default=None, metavar="LOW,HIGH",
                        help="event-to-background ratio range of the train split's events, dB (default: "
                             f"{','.join(f'{v:g}' for v in MixSettings().ebr_db)}, as validation and test, which keep it); "
                             "the same draws at any range, so each event moves by the same dB")
    parser.add_argument("--workers", type=int, default=2, help="processes for decoding and mixing")
    parser.add_argument("--synthetic", type=int, default=SYNTHETIC_CLIPS, metavar="N",
                        help=f"generated recordings per label added to the train split (default {SYNTHETIC_CLIPS}; 0: none)")
    parser.add_argument("--synthetic-labels", default=",".join(DEFAULT_SYNTHETIC_LABELS), metavar="LABELS",
                        help=f"labels that get them (default {','.join(DEFAULT_SYNTHETIC_LABELS)}; "
                             f"possible: {','.join(SYNTHETIC_SHARE)})")
    parser.add_argument("--distractors", type=float, default=0.0, metavar="P",
                        help="chance that a training clip also gets 1-2 unlabelled distractor events: game and "
                             "interface sounds of none of the labels (rttag/dataset/distractor_sources.tsv; default "
                             "0: none); validation and test are unchanged, and so are the training clips' labelled "
                             "events")


def progress_bar(quiet: bool = False):
    """A wrapper ``(iterable, desc=..., unit=..., total=...) -> iterable`` that shows a tqdm bar on
    stderr, or passes the iterable through where tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return lambda it, **kw: it
    return lambda it, **kw: tqdm(it, file=sys.stderr, disable=quiet, **kw)


def decode_all(sources: list[Source], cache: Path, workers: int, progress) -> tuple[dict, list[str]]:
    """key → memory-mapped float32 audio for every decodable source; and the skipped ones."""
    audio, problems = {}, []
    with get_context("fork").Pool(workers, die_with_parent, (os.getpid(),)) as pool:
        for key, y, problem in progress(pool.imap_unordered(load_decoded, [(s, cache) for s in sources], chunksize=16),
                                        total=len(sources), desc="decode", unit="file"):
            if problem:
                problems.append(problem)
            else:
                audio[key] = None
    for key in audio:
        audio[key] = np.load(cache / "decoded" / f"{key}.npy", mmap_mode="r")
    return audio, problems


def make_pools(by_label: dict[str, list[Source]], audio: dict, per_package: bool = False) -> dict[str, Pool]:
    """Per label, a pool of the decoded recordings; with ``per_package`` each package of a label is
    picked with an equal chance (the validation split, so that every source package weighs alike)."""
    pools = {label: Pool([audio[s.key] for s in srcs if s.key in audio],
                         [(s.package, s.path) for s in srcs if s.key in audio])
             for label, srcs in by_label.items()}
    return {label: pool.per_package() for label, pool in pools.items()} if per_package else pools


def _mix_one(job: tuple[str, int, int, MixSettings]):
    split, index, seed, settings = job
    pools = _POOLS[split]
    backgrounds = pools.get("background", Pool([], []))
    labelled = {k: v for k, v in pools.items() if k not in ("background", DISTRACTOR)}
    return index, mix(labelled, backgrounds, np.random.default_rng([seed, SPLIT_SEED[split], index]), settings,
                      distractors=pools.get(DISTRACTOR),
                      distractor_rng=np.random.default_rng([seed, SPLIT_SEED[split], index, DISTRACTOR_STREAM]))


def write_split(split: str, hours: float, seed: int, out: Path, workers: int, progress,
                settings: MixSettings = MixSettings()) -> tuple[list, list]:
    """Mix clips with ``settings`` until ``hours`` of audio; write WAVs and the TSV. Returns (tsv
    rows, manifest clips)."""
    import soundfile as sf

    folder = out / "audio" / split
    folder.mkdir(parents=True, exist_ok=True)
    mean_s = float(np.mean(settings.clip_s))
    n_clips = max(1, int(np.ceil(1.03 * hours * 3600 / mean_s)))  # 3 % spare: at least `hours`
    rows, clips = [], []
    with get_context("fork").Pool(workers, die_with_parent, (os.getpid(),)) as pool:
        jobs = [(split, i, seed, settings) for i in range(n_clips)]
        for index, m in progress(pool.imap(_mix_one, jobs, chunksize=4), total=n_clips, desc=f"mix {split}", unit="clip"):
            name = f"{split}_{index:05d}.wav"
            sf.write(folder / name, m.audio, SR, subtype="PCM_16")
            rows.extend((name, on, off, label) for on, off, label in m.events)
            clips.append({"file": f"audio/{split}/{name}", "duration_s": round(len(m.audio) / SR, 3),
                          "sources": [{"label": l, "package": p, "path": q} for l, p, q in m.used],
                          "events": [{"onset": round(on, 4), "offset": round(off, 4), "label": label,
                                      "sources": [{"package": p, "path": q} for p, q in srcs]}
                                     for (on, off, label), srcs in zip(m.events, m.event_sources)]})
    with open(out / "metadata" / f"{split}.tsv", "w") as f:
        f.write("filename\tonset\toffset\tevent_label\n")
        for name, on, off, label in rows:
            f.write(f"{name}\t{on:.4f}\t{off:.4f}\t{label}\n")
    return rows, clips


def summary(rows: list, split: str) -> dict:
    """Per label: events and minutes."""
    out = defaultdict(lambda: {"events": 0, "minutes": 0.0})
    for _, on, off, label in rows:
        out[label]["events"] += 1
        out[label]["minutes"] += (off - on) / 60
    return {k: {"events": v["events"], "minutes": round(v["minutes"], 2)} for k, v in sorted(out.items())}


def write_attribution(out: Path, used: set, licences: dict, cache: Path) -> None:
    """``out/ATTRIBUTION.md``: per package, the files of ``used`` ({(package, path)}) grouped by
    the holders of the copyright stanza that covers each, with the licence of the source lists
    (``licences``) and the stanza's own where a stanza for specific files names another."""
    by_pkg = defaultdict(list)
    for pkg, path in sorted(used):
        by_pkg[pkg].append(path)
    lines = ["# Attribution", "", "The soundscapes in this folder mix the following recordings, taken from Debian",
             "packages (fetched at build time, not redistributed by rttag). Licences as listed in",
             "rttag's source lists, followed in brackets by the licence of the file's own stanza in the",
             "package's /usr/share/doc/PACKAGE/copyright where that names another; see that file for the",
             "texts and the credits in full.", ""]
    generated = by_pkg.pop(synth.PACKAGE, [])
    for pkg, paths in by_pkg.items():
        by_holders = defaultdict(list)  # "- `path` — licence" lines, by the holders of their stanza
        for p in paths:
            stanza = copyright_stanza(pkg, cache, p)
            by_holders[holders_text(stanza)].append(f"- `{p}` — {credited_licence(licences[(pkg, p)], stanza)}")
        lines += [f"## {pkg}", ""]
        for holders, held in by_holders.items():
            lines += [f"Copyright: {holders}", ""] + held + [""]
    if generated:
        counts = defaultdict(int)
        for path in generated:
            counts[path.split("/")[0]] += 1
        lines += [f"## {synth.PACKAGE} (train split only)", "",
                  "Recordings " + synth.LICENCE + ": " + ", ".join(f"{n} {label}" for label, n in sorted(counts.items()))
                  + ".", ""]
    (out / "ATTRIBUTION.md").write_text("\n".join(lines))


def run(args: argparse.Namespace) -> int:
    t0 = time.time()
    progress = progress_bar()
    cache, out = Path(args.cache).expanduser(), Path(args.out)
    if args.hours <= 0 or args.validation_hours <= 0 or args.test_hours <= 0:
        raise RttagError("data build: --hours, --validation-hours and --test-hours must be positive")
    settings = {split: MixSettings() for split in SPLITS}
    if not 0.0 <= args.distractors <= 1.0:
        raise RttagError(f"data build: --distractors {args.distractors:g}: a chance, 0 to 1")
    settings["train"] = MixSettings(p_distractors=args.distractors)
    if args.train_ebr_db is not None:
        settings["train"] = replace(settings["train"], ebr_db=db_range("--train-ebr-db", args.train_ebr_db))
    sources = read_sources(Path(args.sources) if args.sources else default_sources_tsv())
    extra = []
    if args.extra_sources != "none":
        extra = read_sources(Path(args.extra_sources) if args.extra_sources else default_extra_sources_tsv())
        check_extra(extra, sources, set(LABELS))
        sources += extra
    validation = []
    if args.validation_sources != "none":
        validation = read_sources(Path(args.validation_sources) if args.validation_sources
                                  else default_validation_sources_tsv())
        check_validation(validation, sources, set(LABELS))
        sources += validation
    if args.validation_half:
        sources = keep_validation_half(sources, args.validation_half)
    distractors = []
    if args.distractors:
        distractors = read_sources(default_distractor_sources_tsv())
        check_distractors(distractors, sources)
        sources += distractors
    fetch_and_unpack(sorted({s.package for s in sources}), cache, progress)
    audio, problems = decode_all(sources, cache, args.workers, progress)
    for p in problems:
        print(f"rttag data build: skipped {p}", file=sys.stderr)
    by_split = assign(sources)
    leaked = leaks.screen(by_split, audio)
    for leak in leaked:
        print(f"rttag data build: left out {leak.describe()}", file=sys.stderr)
    dropped = {(leak.split, leak.held_out.key) for leak in leaked}
    by_split = {split: {label: [s for s in srcs if (split, s.key) not in dropped] for label, srcs in by_label.items()}
                for split, by_label in by_split.items()}
    global _POOLS
    _POOLS = {split: make_pools(by_split[split], audio, per_package=split == "validation") for split in SPLITS}
    synthetic = [label for label in args.synthetic_labels.split(",") if label] if args.synthetic > 0 else []
    unknown = set(synthetic) - set(SYNTHETIC_SHARE)
    if unknown:
        raise RttagError(f"data build: no generator for {', '.join(sorted(unknown))} "
                         f"(--synthetic-labels takes {', '.join(SYNTHETIC_SHARE)})")
    for label in synthetic:
        _POOLS["train"][label] = _POOLS["train"][label].joined(synth.pool(label, args.synthetic, args.seed),
                                                               SYNTHETIC_SHARE[label])
    for split in SPLITS:
        empty = [label for label, pool in _POOLS[split].items() if not pool.clips]
        if empty:
            raise RttagError(f"data build: no usable recordings for {', '.join(empty)} in the {split} split")
    (out / "metadata").mkdir(parents=True, exist_ok=True)
    hours = {"train": args.hours, "validation": args.validation_hours, "test": args.test_hours}
    manifest = {"seed": args.seed, "sample_rate": SR, "splits": {}, "extra_sources": len(extra),
                "validation_sources": len(validation), "validation_half": args.validation_half,
                "distractors": {"train_clip_share": args.distractors, "recordings": len(distractors)},
                "ebr_db": {split: list(settings[split].ebr_db) for split in SPLITS},
        "synthetic": {label: {"train_clips": args.synthetic, "share": SYNTHETIC_SHARE[label]} for label in synthetic}}
    used, licences = set(), {(s.package, s.path): s.licence for s in sources}
    licences.update({sid: synth.LICENCE for label in synthetic for sid in _POOLS["train"][label].ids
                     if sid[0] == synth.PACKAGE})
    for split in SPLITS:
        rows, clips = write_split(split, hours[split], args.seed, out, args.workers, progress, settings[split])
        used |= {(src["package"], src["path"]) for c in clips for src in c["sources"]}
        for c in clips:
            for src in c["sources"]:
                src["licence"] = licences[(src["package"], src["path"])]
        manifest["splits"][split] = {
            "clips": clips, "hours": round(sum(c["duration_s"] for c in clips) / 3600, 3),
            "labels": summary(rows, split),
            "packages": {label: sorted({p for p, _ in _POOLS[split][label].ids}) for label in sorted(_POOLS[split])}}
    manifest["validation_packages"] = manifest["splits"]["validation"]["packages"]  # per label, the packages tuned on
    manifest["leaks_left_out"] = [{"split": leak.split, "package": leak.held_out.package, "path": leak.held_out.path,
                                   "repeats": {"split": leak.match_split, "package": leak.match.package,
                                               "path": leak.match.path}, "similarity": round(leak.similarity, 3)}
                                  for leak in leaked]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    write_attribution(out, used, licences, cache)
    print(f"rttag data build: wrote {out} in {time.time() - t0:.0f} s", file=sys.stderr)
    print(f"{'label':<12}" + "".join(f"{s + ' ev':>14}{'min':>8}" for s in SPLITS))
    labels = sorted({l for s in SPLITS for l in manifest["splits"][s]["labels"]})
    for label in labels:
        cells = [manifest["splits"][s]["labels"].get(label, {"events": 0, "minutes": 0}) for s in SPLITS]
        print(f"{label:<12}" + "".join(f"{c['events']:>14}{c['minutes']:>8.1f}" for c in cells))
    return 0
