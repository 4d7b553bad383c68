"""``rttag data demo``: the bundled demo clip (``rttag/assets/demo.wav``).

28 s of real recordings from test-side packages (never used for training), one event after
another over a test-side background, with background-only stretches between them. Written
with its reference (``demo.tsv``) and per-file attribution (``DEMO_ATTRIBUTION.md``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..errors import RttagError
from .build import make_pools
from .mixer import SR, event_audio, loop_to, rms, scale_to_ebr
from .sources import (copyright_stanza, credited_licence, default_sources_tsv, fetch_and_unpack, holders_text,
                      load_decoded, read_sources)
from .splits import assign

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DURATION_S = 28.0
SCHEDULE = [(1.0, "speech", 3.0), (4.8, "dog", 2.0), (7.8, "bird", 3.0), (11.5, "footsteps", 3.0),
            (15.2, "door", 1.5), (17.4, "engine", 3.0), (21.2, "alarm", 2.5), (24.6, "explosion", 2.2)]
"""(onset s, label, longest duration s) of each event."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(ASSETS), help="folder for demo.wav, demo.tsv, DEMO_ATTRIBUTION.md")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "rttag"))
    parser.add_argument("--sources", default=None, help="sources.tsv (default: ../shared/data/sources.tsv)")


def run(args: argparse.Namespace) -> int:
    import soundfile as sf

    cache, out = Path(args.cache).expanduser(), Path(args.out)
    sources = [s for s in read_sources(Path(args.sources) if args.sources else default_sources_tsv()) if s.split == "test"]
    fetch_and_unpack(sorted({s.package for s in sources}), cache, lambda it, **kw: it)
    audio = {}
    for s in sources:
        key, y, problem = load_decoded((s, cache))
        if y is not None:
            audio[key] = y
    pools = make_pools(assign(sources)["test"], audio)
    missing = [label for _, label, _ in SCHEDULE if not pools.get(label) or not pools[label].clips]
    if missing or not pools.get("background"):
        raise RttagError(f"data demo: no test recordings for {', '.join(missing or ['background'])}")
    rng = np.random.default_rng(args.seed)
    n = int(DURATION_S * SR)
    bg_src_i = int(rng.integers(len(pools["background"].clips)))
    bg = loop_to(np.asarray(pools["background"].clips[bg_src_i]), n, rng)
    bg *= np.float32(10 ** (-40 / 20) / rms(bg))
    y = bg.copy()
    rows, used = [], [("background", *pools["background"].ids[bg_src_i])]
    for onset_s, label, max_s in SCHEDULE:
        ev, ids = event_audio(label, pools[label], rng, max_s)
        ev = scale_to_ebr(ev, rms(bg), float(rng.uniform(12, 20)))
        start = int(onset_s * SR)
        y[start:start + len(ev)] += ev
        rows.append((onset_s, (start + len(ev)) / SR, label))
        used += [(label, *i) for i in ids]
    y *= np.float32(0.9 / np.abs(y).max())
    out.mkdir(parents=True, exist_ok=True)
    sf.write(out / "demo.wav", y, SR, subtype="PCM_16")
    with open(out / "demo.tsv", "w") as f:
        f.write("filename\tonset\toffset\tevent_label\n")
        f.writelines(f"demo.wav\t{a:.4f}\t{b:.4f}\t{label}\n" for a, b, label in rows)
    licences = {(s.package, s.path): s.licence for s in sources}
    lines = ["# demo.wav — attribution", "",
             "`demo.wav` (28 s, 16 kHz mono) is a mix made by `rttag data demo` of the recordings below,",
             "all from Debian packages on the test side of rttag's source list (never used for training).",
             "It is distributed under the licences of its parts: as rttag's source list gives them, followed",
             "in brackets by the licence of the file's own stanza in the package's",
             "/usr/share/doc/PACKAGE/copyright where that names another. Copyright holders are those of",
             "that stanza; credits in full are in that file.", ""]
    for label, pkg, path in dict.fromkeys(used):
        stanza = copyright_stanza(pkg, cache, path)
        lines.append(f"- {label}: Debian package `{pkg}`, `{path}` — licence "
                     f"{credited_licence(licences[(pkg, path)], stanza)}; copyright: {holders_text(stanza)}")
    (out / "DEMO_ATTRIBUTION.md").write_text("\n".join(lines) + "\n")
    print(f"rttag data demo: wrote {out / 'demo.wav'} ({len(rows)} events)", file=sys.stderr)
    return 0
