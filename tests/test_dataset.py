"""Dataset building without network: mixer placement and ratios, determinism, split rules,
Qt resource reading."""

import struct
import subprocess
import zlib
from dataclasses import replace

import numpy as np
import pytest

from rttag.dataset.mixer import SR, MixSettings, Pool, mix, pick, rms, scale_to_ebr
from rttag.dataset.sources import Source, SourceError, _rcc_member
from rttag.dataset.splits import VALIDATION_PACKAGES, assign

QUIET = MixSettings(p_lowpass=0, p_highpass=0, p_reverb=0, p_speed=0, p_no_background=1.0,
                    mix_dbfs=(-20, -20), ebr_db=(30.0, 30.0))


def pools(value=0.5, seconds=0.5):
    clip = np.full(int(seconds * SR), value, np.float32)
    return {"door": Pool([clip], [("pkg", "door.wav")])}


@pytest.mark.parametrize("seed", range(5))
def test_events_are_where_the_reference_says_to_the_sample(seed):
    m = mix(pools(), Pool([], []), np.random.default_rng(seed), QUIET)
    assert 1 <= len(m.events) <= 4 and {e[2] for e in m.events} == {"door"}
    loud = np.abs(m.audio) > 10 * np.median(np.abs(m.audio))
    for onset, offset, _ in m.events:
        a, b = round(onset * SR), round(offset * SR)
        assert loud[a] and loud[b - 1] and (a == 0 or not loud[a - 1] or any(
            o[0] < onset < o[1] for o in m.events if o[0] != onset))
        assert b - a == int(0.5 * SR) or b == len(m.audio)


@pytest.mark.parametrize("ebr", [-5.0, 0.0, 12.0, 20.0])
def test_event_to_background_ratio_is_as_asked(ebr):
    rng = np.random.default_rng(0)
    background = 0.01 * rng.standard_normal(SR).astype(np.float32)
    tone = np.sign(np.sin(2 * np.pi * 440 * np.arange(SR) / SR) + 1e-9).astype(np.float32)  # |x| = 1: all active
    scaled = scale_to_ebr(tone, rms(background), ebr)
    assert 20 * np.log10(rms(scaled) / rms(background)) == pytest.approx(ebr, abs=0.05)


def test_mix_is_deterministic_for_a_seed():
    rng_clip = np.random.default_rng(1)
    p = {"dog": Pool([rng_clip.standard_normal(4000).astype(np.float32)], [("p", "a")]),
         "water": Pool([rng_clip.standard_normal(30000).astype(np.float32)], [("p", "b")])}
    bg = Pool([0.1 * rng_clip.standard_normal(50000).astype(np.float32)], [("p", "bg")])
    a = mix(p, bg, np.random.default_rng([3, 1]))
    b = mix(p, bg, np.random.default_rng([3, 1]))
    c = mix(p, bg, np.random.default_rng([4, 1]))
    assert np.array_equal(a.audio, b.audio) and a.events == b.events
    assert not np.array_equal(a.audio[:1000], c.audio[:1000])
    assert np.abs(a.audio).max() <= 0.99 and 10 * SR <= len(a.audio) <= 30 * SR


def test_splits_never_share_sources_and_validation_packages_differ_from_train():
    rows = [Source(pkg, f"{pkg}/{label}{i}.ogg", label, split, "GPL", 1.0)
            for pkg, label, split in [("0ad-data", "music", "train"), ("widelands-data", "music", "train"),
                                      ("hedgewars-data", "music", "test"), ("redeclipse-data", "speech", "train"),
                                      ("ktuberling-data", "speech", "train"), ("hedgewars-data", "speech", "test")]
            for i in range(3)]
    s = assign(rows)
    keys = {split: {x.path for srcs in d.values() for x in srcs} for split, d in s.items()}
    assert not (keys["train"] & keys["validation"]) and not (keys["train"] & keys["test"])
    assert not (keys["validation"] & keys["test"])
    for label in ("music", "speech"):
        train_pkgs = {x.package for x in s["train"][label]}
        val_pkgs = {x.package for x in s["validation"][label]}
        assert val_pkgs == VALIDATION_PACKAGES[label] and not (train_pkgs & val_pkgs)
        assert not ({x.package for x in s["test"][label]} & train_pkgs)


def make_rcc(files: dict, compress: set) -> bytes:
    """A version-2 Qt resource file holding ``files`` (path → bytes) under one root."""
    names, data, nodes = b"", b"", []

    def name_off(n):
        nonlocal names
        off = len(names)
        names += struct.pack(">HI", len(n), 0) + n.encode("utf-16-be")
        return off

    # root dir (node 0) → dir "a" (node 1) → files (nodes 2..)
    items = sorted(files.items())
    nodes.append(struct.pack(">IHII", 0, 0x02, 1, 1) + b"\0" * 8)
    nodes.append(struct.pack(">IHII", name_off("a"), 0x02, len(items), 2) + b"\0" * 8)
    for path, blob in items:
        flags = 0x01 if path in compress else 0
        stored = struct.pack(">I", len(blob)) + zlib.compress(blob) if flags else blob
        nodes.append(struct.pack(">IHHHI", name_off(path), flags, 0, 0, len(data)) + b"\0" * 8)
        data += struct.pack(">I", len(stored)) + stored
    tree = b"".join(nodes)
    head = 20
    return b"qres" + struct.pack(">IIII", 2, head, head + len(tree), head + len(tree) + len(data)) + tree + data + names


def test_qt_resource_members_plain_and_compressed():
    rcc = make_rcc({"x.ogg": b"plain bytes", "y.ogg": b"zipped " * 50}, compress={"y.ogg"})
    assert _rcc_member(rcc, "a/x.ogg") == b"plain bytes"
    assert _rcc_member(rcc, "a/y.ogg") == b"zipped " * 50
    with pytest.raises(SourceError, match="not found"):
        _rcc_member(rcc, "a/z.ogg")


@pytest.mark.parametrize("container", ["a.zip", "baseoa/pak0.pk3", "base.wz", "a.tar"])
def test_archive_members_are_read_from_zip_containers(tmp_path, container):
    """A row ``A!member`` reads the member of a zip archive, whatever the game named it (.pk3,
    .wz); another container type is one clear error."""
    import zipfile

    from rttag.dataset.sources import read_bytes

    archive = tmp_path / "pkgs" / "p" / container
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("sound/step1.wav", b"RIFF step")
    src = Source("p", f"{container}!sound/step1.wav", "footsteps", "train", "GPL-2+", 0.1)
    if container.endswith(".tar"):
        with pytest.raises(SourceError, match="unknown container type"):
            read_bytes(src, tmp_path)
    else:
        assert read_bytes(src, tmp_path) == b"RIFF step"


def test_unavailable_package_is_one_clear_error(tmp_path):
    from rttag.dataset.sources import fetch_and_unpack

    with pytest.raises(SourceError, match="apt-get download rttag-no-such-package failed"):
        fetch_and_unpack(["rttag-no-such-package"], tmp_path, lambda it, **kw: it)


def test_builds_sharing_a_cache_unpack_and_decode_at_the_same_time(tmp_path):
    """Four builds unpack one cached .deb at once (a real .deb made with dpkg-deb, real dpkg -x),
    then decode its recording at once: each finds the whole package tree and the whole decoded
    array, and no half-written copy is left behind."""
    import threading

    import soundfile as sf

    from rttag.dataset.sources import Source, fetch_and_unpack, load_decoded

    root = tmp_path / "src"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text("Package: rttag-test\nVersion: 1\nArchitecture: all\n"
                                         "Maintainer: rttag <rttag@example.org>\nDescription: test\n")
    (root / "usr/share/sounds").mkdir(parents=True)
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(4 * SR) / SR)).astype(np.float32)
    sf.write(root / "usr/share/sounds/step.wav", tone, SR, subtype="FLOAT")
    cache = tmp_path / "cache"
    (cache / "debs").mkdir(parents=True)
    subprocess.run(["dpkg-deb", "--build", str(root), str(cache / "debs/rttag-test_1_all.deb")],
                   check=True, capture_output=True)
    src = Source("rttag-test", "usr/share/sounds/step.wav", "footsteps", "train", "CC0", 4.0)

    def at_once(job):
        start, results = threading.Barrier(4), []

        def run():
            start.wait()
            try:
                results.append(job())
            except Exception as exc:  # collected, asserted below
                results.append(exc)

        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    assert at_once(lambda: fetch_and_unpack(["rttag-test"], cache, lambda it, **kw: it)) == [None] * 4
    assert sorted(p.name for p in (cache / "pkgs").iterdir()) == ["rttag-test"]
    assert sorted(p.name for p in (cache / "debs").iterdir()) == ["rttag-test_1_all.deb"]
    for key, y, problem in at_once(lambda: load_decoded((src, cache))):
        assert (key, problem) == (src.key, "") and np.allclose(y, tone, atol=1e-6)
    assert sorted(p.name for p in (cache / "decoded").iterdir()) == [f"{src.key}.npy"]
    assert np.allclose(np.load(cache / "decoded" / f"{src.key}.npy"), tone, atol=1e-6)


# --------------------------------------------------------------- synthetic recordings


@pytest.mark.parametrize("label", ["alarm", "door", "explosion", "dog", "engine", "water", "footsteps", "background"])
def test_synthetic_recordings_are_deterministic_trimmed_and_bounded(label):
    from rttag.dataset import synth

    kinds = list(synth.GENERATORS[label])
    a, b = synth.pool(label, 2 * len(kinds), seed=3), synth.pool(label, 2 * len(kinds), seed=3)
    assert [k.split("/")[1].split("-")[0] for _, k in a.ids] == kinds * 2
    assert all(k.startswith(label + "/") and pkg == synth.PACKAGE for pkg, k in a.ids)
    assert all(np.array_equal(x, y) for x, y in zip(a.clips, b.clips))
    assert not np.array_equal(a.clips[0], synth.pool(label, 1, seed=4).clips[0])
    for x in a.clips:
        assert x.dtype == np.float32 and np.isfinite(x).all()
        assert np.abs(x).max() == pytest.approx(0.5, rel=1e-5)
        assert 0.05 <= len(x) / 16000 <= 12.0
        # starts and ends on sound: the trim keeps nothing below 1 % of the peak at the ends
        assert np.abs(x[0]) >= 0.005 - 1e-7 and np.abs(x[-1]) >= 0.005 - 1e-7


def test_generated_footsteps_are_single_steps_whose_surface_sets_the_timbre():
    """Each clip is one step (the mixer strings steps into a walk); hard floors click high,
    grass / carpet and floorboards thud low."""
    from rttag.dataset import synth

    def centroid_hz(x):
        power = np.abs(np.fft.rfft(x)) ** 2
        return float((power * np.fft.rfftfreq(len(x), 1 / 16000)).sum() / power.sum())

    def longest_pause_s(x):
        frames = np.abs(x[: len(x) // 160 * 160]).reshape(-1, 160).max(axis=1) < 0.01 * np.abs(x).max()
        longest = run = 0
        for quiet in frames:
            run = run + 1 if quiet else 0
            longest = max(longest, run)
        return longest * 0.01

    clips = {kind: [synth.clip("footsteps", kind, np.random.default_rng([5, i])) for i in range(8)]
             for kind in synth.GENERATORS["footsteps"]}
    # one step, not a walk: short, and no pause as long as the mixer's 0.25-0.6 s between steps
    assert all(len(x) / 16000 <= 0.8 and longest_pause_s(x) < 0.2 for xs in clips.values() for x in xs)
    low = max(centroid_hz(x) for kind in ("soft", "wood") for x in clips[kind])
    assert low < min(centroid_hz(x) for x in clips["hard"])


def test_weighted_pool_picks_the_joined_share():
    real = Pool([np.zeros(10, np.float32)] * 2, [("real", "a"), ("real", "b")])
    fake = Pool([np.ones(10, np.float32)] * 8, [("synth", str(i)) for i in range(8)])
    joined = real.joined(fake, 0.25)
    rng = np.random.default_rng(0)
    picks = [pick(joined, rng)[1][0] for _ in range(4000)]
    assert picks.count("synth") / len(picks) == pytest.approx(0.25, abs=0.03)
    assert real.joined(Pool([], []), 0.5).weights is None


def test_per_package_pool_gives_each_package_an_equal_share():
    many = [("big", str(i)) for i in range(9)]
    pool = Pool([np.zeros(10, np.float32)] * 10, many + [("small", "a")]).per_package()
    rng = np.random.default_rng(0)
    picks = [pick(pool, rng)[1][0] for _ in range(4000)]
    assert picks.count("small") / len(picks) == pytest.approx(0.5, abs=0.03)
    one = Pool([np.zeros(10, np.float32)] * 2, [("only", "a"), ("only", "b")])
    assert one.per_package() is one  # a single package keeps the plain uniform pick


def test_bundled_validation_sources_only_widen_the_validation_split():
    from rttag import LABELS
    from rttag.dataset.sources import (default_extra_sources_tsv, default_sources_tsv,
                                       default_validation_sources_tsv, read_sources)
    from rttag.dataset.splits import check_validation
    others = read_sources(default_sources_tsv()) + read_sources(default_extra_sources_tsv())
    rows = read_sources(default_validation_sources_tsv())
    check_validation(rows, others, set(LABELS))
    before, after = assign(others), assign(others + rows)
    for split in ("train", "test"):
        assert after[split] == before[split]
    speech = {s.package for s in after["validation"]["speech"]}
    assert len(speech) >= 3 and {s.package for s in before["validation"]["speech"]} < speech
    for label, n in (("footsteps", 2), ("door", 4), ("engine", 5), ("water", 7), ("music", 10),
                     ("explosion", 13)):
        packages = {s.package for s in after["validation"][label]}
        assert len(packages) == n and {s.package for s in before["validation"][label]} < packages
    alarm = {s.package for s in after["validation"]["alarm"]}
    assert len(alarm) == 10 and {s.package for s in before["validation"]["alarm"]} < alarm
    bird = {s.package for s in after["validation"]["bird"]}
    assert len(bird) == 4 and {s.package for s in before["validation"]["bird"]} < bird


@pytest.mark.parametrize("row, why", [
    (("newpkg", "a.ogg", "speech", "train", "GPL", 1.0), "split is not validation"),
    (("newpkg", "a.ogg", "cat", "validation", "GPL", 1.0), "unknown label"),
    (("newpkg", "a.ogg", "speech", "validation", "", 1.0), "no licence"),
    (("0ad-data", "v.ogg", "speech", "validation", "GPL", 1.0), "used by the other source lists"),
])
def test_validation_source_that_would_touch_train_or_test_is_refused(row, why):
    from rttag.dataset.splits import check_validation
    others = [Source("0ad-data", "x.ogg", "music", "train", "GPL", 1.0)]
    with pytest.raises(SourceError, match=why):
        check_validation([Source(*row)], others, {"speech", "music"})


def test_bundled_extra_sources_only_widen_the_train_split():
    from rttag import LABELS
    from rttag.dataset.sources import default_extra_sources_tsv, default_sources_tsv, read_sources
    from rttag.dataset.splits import check_extra
    vetted, extra = read_sources(default_sources_tsv()), read_sources(default_extra_sources_tsv())
    assert len(extra) > 100 and {s.label for s in extra} <= set(LABELS)
    check_extra(extra, vetted, set(LABELS))
    before, after = assign(vetted), assign(vetted + extra)
    for split in ("validation", "test"):
        assert after[split] == before[split]
    assert sum(map(len, after["train"].values())) == sum(map(len, before["train"].values())) + len(extra)


@pytest.mark.parametrize("row, why", [
    (("newpkg", "a.ogg", "dog", "test", "GPL", 1.0), "split is not train"),
    (("newpkg", "a.ogg", "cat", "train", "GPL", 1.0), "unknown label"),
    (("newpkg", "a.ogg", "dog", "train", " ", 1.0), "no licence"),
    (("hedgewars-data", "b.ogg", "dog", "train", "GPL", 1.0), "feeds the test split"),
    (("qabcs-data", "b.ogg", "dog", "train", "GPL", 1.0), "validation split of this label"),
    (("0ad-data", "x.ogg", "music", "train", "GPL", 1.0), "already in the vetted list"),
])
def test_extra_source_that_would_change_validation_or_test_is_refused(row, why):
    from rttag.dataset.splits import check_extra
    vetted = [Source("hedgewars-data", "h.ogg", "speech", "test", "GPL", 1.0),
              Source("0ad-data", "x.ogg", "music", "train", "GPL", 1.0)]
    with pytest.raises(SourceError, match=why):
        check_extra([Source(*row)], vetted, {"dog", "music", "speech"})


DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Source: https://example.org/game

Files: *
Copyright: 2001-2014 Main Author
License: GPL-2+

Files: data/mods/apoc/*
       data/extra/bark.ogg
Copyright: Mod Team
 2009, Second Person
License: CC-BY-SA-3.0

Files: top/mods/doors/sounds/*
Copyright: Door Maker
License: CC0-1.0

Files: debian/*
Copyright: 2020 Packager
License: GPL-2+
"""


def _copyright_file(cache, package, text):
    doc = cache / "pkgs" / package / "usr" / "share" / "doc" / package
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(text)


def test_the_deepest_matching_stanza_wins_over_a_later_short_one(tmp_path):
    """hedgewars-data's case: the engine's ``hedgewars/*`` (listed later) also matches the installed
    sounds by accident; the sounds' own, deeper stanza must win."""
    from rttag.dataset.sources import copyright_stanza
    _copyright_file(tmp_path, "hw-data", "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
                    "Files: *\nCopyright: Everyone\nLicense: GPL-2\n\n"
                    "Files: share/hedgewars/Data/Sounds/*\nCopyright: Sound Maker\nLicense: GFDL-1.3\n\n"
                    "Files: hedgewars/*\nCopyright: Engine Coder\nLicense: GPL-2\n")
    sound = copyright_stanza("hw-data", tmp_path, "usr/share/games/hedgewars/Data/Sounds/voices/Robot/Hi.ogg")
    assert sound["Copyright"] == ["Sound Maker"] and sound["License"] == ["GFDL-1.3"]
    engine = copyright_stanza("hw-data", tmp_path, "usr/lib/games/hedgewars/engine.so")
    assert engine["Copyright"] == ["Engine Coder"]


def test_attribution_names_the_holders_of_the_stanza_that_covers_each_file(tmp_path):
    """DEP-5: of the stanzas whose source-tree pattern matches a trailing part of the installed
    path (or, with its top directory renamed, the pattern without it), the deepest wins (of
    equals the last), and its licence is
    named where the list's differs; a free-form copyright file gives no holders."""
    from rttag.dataset.build import write_attribution
    from rttag.dataset.sources import copyright_stanza, holders_text, stanza_holders

    def copyright_lines(package, cache, path=None):
        return stanza_holders(copyright_stanza(package, cache, path))

    _copyright_file(tmp_path, "game-data", DEP5)
    _copyright_file(tmp_path, "old-data", "Copyright 1986 Library Author\nCopyright 2003 Game Author\n")
    mod, main = "usr/share/games/game/data/mods/apoc/wav/dog.wav", "usr/share/games/game/sounds/door.wav"
    assert copyright_lines("game-data", tmp_path, mod) == ["Mod Team", "2009, Second Person"]
    assert copyright_lines("game-data", tmp_path, "usr/share/games/game/data/extra/bark.ogg") == [
        "Mod Team", "2009, Second Person"]
    assert copyright_lines("game-data", tmp_path, main) == ["2001-2014 Main Author"]
    assert copyright_lines("game-data", tmp_path) == ["2001-2014 Main Author"]
    assert copyright_lines("old-data", tmp_path, "usr/share/old/knock.wav") == []
    assert holders_text(copyright_stanza("old-data", tmp_path, "usr/share/old/knock.wav")) == (
        "see the package's copyright file")
    assert copyright_lines("missing", tmp_path, main) == []

    renamed = "usr/share/games/game/game_top/mods/doors/sounds/knock.ogg"  # source tree: top/mods/doors/...
    assert copyright_lines("game-data", tmp_path, renamed) == ["Door Maker"]

    used = {("game-data", mod), ("game-data", main), ("game-data", renamed), ("old-data", "usr/share/old/knock.wav")}
    licences = {("game-data", mod): "GPL-2+", ("game-data", main): "GPL-2", ("game-data", renamed): "CC0-1.0",
                ("old-data", "usr/share/old/knock.wav"): "GPL"}
    write_attribution(tmp_path, used, licences, tmp_path)
    text = (tmp_path / "ATTRIBUTION.md").read_text()
    assert (f"Copyright: Mod Team; 2009, Second Person\n\n- `{mod}` — GPL-2+ (its copyright stanza: CC-BY-SA-3.0)"
            in text and f"Copyright: 2001-2014 Main Author\n\n- `{main}` — GPL-2\n" in text
            and f"Copyright: Door Maker\n\n- `{renamed}` — CC0-1.0\n" in text
            and "Copyright: see the package's copyright file\n\n- `usr/share/old/knock.wav` — GPL\n" in text)


def test_validation_halves_of_the_bundled_lists_split_whole_packages_and_cover_every_label():
    from rttag import LABELS
    from rttag.dataset.sources import (default_extra_sources_tsv, default_sources_tsv,
                                       default_validation_sources_tsv, read_sources)
    from rttag.dataset.splits import keep_validation_half, validation_halves
    sources = (read_sources(default_sources_tsv()) + read_sources(default_extra_sources_tsv())
               + read_sources(default_validation_sources_tsv()))
    halves = validation_halves(sources)
    assert halves == validation_halves(list(reversed(sources)))  # the draw does not depend on row order
    full = assign(sources)
    kept = {h: assign(keep_validation_half(sources, h)) for h in "AB"}
    for h in "AB":
        assert kept[h]["train"] == full["train"] and kept[h]["test"] == full["test"]
        assert kept[h]["validation"]["background"] == full["validation"]["background"]
    for label in LABELS:
        pkgs = {h: {s.package for s in kept[h]["validation"].get(label, [])} for h in "AB"}
        assert not pkgs["A"] & pkgs["B"]
        assert pkgs["A"] | pkgs["B"] == {s.package for s in full["validation"][label]}
        assert pkgs["B"] and (pkgs["A"] or label == "dog")  # dog has one validation package: B tunes it
    assert {s.package for s in kept["B"]["validation"]["dog"]} == {"qabcs-data"}


def test_validation_halves_refuse_a_split_that_cannot_cover_every_label():
    from rttag.dataset.splits import validation_halves
    row = lambda pkg, label: Source(pkg, f"{label}.ogg", label, "validation", "GPL", 1.0)
    # p1 and p2 each hold the only validation package of a label, so both go to B: no music left for A
    sources = [row("p1", "music"), row("p1", "dog"), row("p2", "music"), row("p2", "bird")]
    with pytest.raises(SourceError, match="halves covering every label"):
        validation_halves(sources, max_draws=50)
    sources.append(row("p3", "music"))
    halves = validation_halves(sources)
    assert halves == {"p1": "B", "p2": "B", "p3": "A"}


@pytest.mark.parametrize("seed", range(4))
def test_each_event_says_which_recordings_were_mixed_into_it(seed):
    """Steps of a walk and barks of a series come from several picks of their label's pool; each
    event lists its own, in the order mixed, and together with the background they are ``used``."""
    rng_clip = np.random.default_rng(seed)
    p = {label: Pool([rng_clip.standard_normal(3000).astype(np.float32) for _ in range(3)],
                     [("p", f"{label}{i}") for i in range(3)])
         for label in ("footsteps", "dog", "water")}
    bg = Pool([0.1 * rng_clip.standard_normal(50000).astype(np.float32)], [("p", "bg")])
    m = mix(p, bg, np.random.default_rng([seed, 2]), settings=MixSettings(events=(3, 4)))
    assert len(m.event_sources) == len(m.events) and m.events == sorted(m.events)
    for (_, _, label), srcs in zip(m.events, m.event_sources):
        assert srcs and all(path.startswith(label) for _, path in srcs)
        if label == "footsteps":
            assert len(srcs) >= 4  # a walk of 4-10 steps
    mixed = sorted((label, *src) for (_, _, label), srcs in zip(m.events, m.event_sources) for src in srcs)
    assert mixed == sorted(u for u in m.used if u[0] != "background")


def test_a_train_ebr_range_changes_only_the_levels_of_the_training_events(tmp_path, monkeypatch):
    """``rttag data build --train-ebr-db``: the train split's clips are mixed from the same draws at
    any range (same files, events, sources and lengths), and with the range moved down each
    file's event stretches stand out less from its background."""
    import soundfile as sf

    from rttag.dataset import build

    rng_clip = np.random.default_rng(5)
    monkeypatch.setattr(build, "_POOLS", {"train": {
        "dog": Pool([rng_clip.standard_normal(8000).astype(np.float32)], [("p", "dog")]),
        "water": Pool([rng_clip.standard_normal(30000).astype(np.float32)], [("p", "water")]),
        "background": Pool([0.1 * rng_clip.standard_normal(50000).astype(np.float32)], [("p", "bg")])}})
    written = {}
    for name, ebr in (("default", (5.0, 15.0)), ("lower", (0.0, 10.0))):
        out = tmp_path / name
        (out / "metadata").mkdir(parents=True)
        rows, clips = build.write_split("train", 0.02, 3, out, 1, lambda it, **kw: it,
                                        replace(QUIET, p_no_background=0.0, ebr_db=ebr))
        written[name] = rows, clips, {p.name: sf.read(p)[0] for p in sorted((out / "audio/train").glob("*.wav"))}
        assert (out / "metadata/train.tsv").read_text().count("\n") == len(rows) + 1
    (rows_a, clips_a, audio_a), (rows_b, clips_b, audio_b) = written["default"], written["lower"]
    assert rows_a == rows_b and clips_a == clips_b and list(audio_a) == list(audio_b) and len(rows_a) >= 2
    for name in audio_a:
        a, b = audio_a[name], audio_b[name]
        inside = np.zeros(len(a), bool)
        for n, o, f, _ in rows_a:
            if n == name:
                inside[int(o * SR):int(f * SR)] = True
        ratio_a = rms(a[inside]) / rms(a[~inside])  # event + background against background alone
        ratio_b = rms(b[inside]) / rms(b[~inside])
        assert ratio_b < ratio_a


def test_a_bad_train_ebr_range_is_one_error_line(tmp_path):
    from conftest import run_rttag

    proc = run_rttag("data", "build", "--out", str(tmp_path / "d"), "--train-ebr-db", "10,-5", timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.decode().strip().splitlines() == ["rttag: error: --train-ebr-db 10,-5: LOW is above HIGH"]
    assert not (tmp_path / "d").exists()


def test_distractors_add_unlabelled_sound_and_leave_the_labelled_events_as_they_are():
    """``MixSettings.p_distractors``: the clip's labelled events, their sources and the clip's
    length are the same with and without distractors (their draws come from a stream of their
    own); the distractor is heard where no event is and gets no reference row."""
    p = {"door": Pool([np.full(int(0.3 * SR), 0.5, np.float32)], [("pkg", "door.wav")])}
    tone = np.sin(2 * np.pi * 1000 * np.arange(int(0.4 * SR)) / SR).astype(np.float32)
    distractors = Pool([tone], [("game", "laser.ogg")])
    settings = replace(QUIET, p_distractors=1.0, distractor_events=(2, 2))
    for seed in range(5):
        plain = mix(p, Pool([], []), np.random.default_rng([seed, 0]), settings)
        with_d = mix(p, Pool([], []), np.random.default_rng([seed, 0]), settings,
                     distractors=distractors, distractor_rng=np.random.default_rng([seed, 7]))
        assert with_d.events == plain.events and with_d.event_sources == plain.event_sources
        assert len(with_d.audio) == len(plain.audio)
        assert with_d.used == plain.used + [("distractor", "game", "laser.ogg")] * 2
        outside = np.ones(len(plain.audio), bool)
        for onset, offset, _ in plain.events:
            outside[int(onset * SR):int(offset * SR) + 1] = False
        assert np.abs(with_d.audio[outside]).max() > 4 * np.abs(plain.audio[outside]).max()  # at the events' level
    never = mix(p, Pool([], []), np.random.default_rng([0, 0]), QUIET, distractors=distractors,
                distractor_rng=np.random.default_rng([0, 7]))
    assert ("distractor", "game", "laser.ogg") not in never.used


def test_bundled_distractors_only_add_unlabelled_training_sound():
    from rttag.dataset.sources import (default_distractor_sources_tsv, default_extra_sources_tsv,
                                       default_sources_tsv, default_validation_sources_tsv, read_sources)
    from rttag.dataset.mixer import DISTRACTOR
    from rttag.dataset.splits import check_distractors
    others = (read_sources(default_sources_tsv()) + read_sources(default_extra_sources_tsv())
              + read_sources(default_validation_sources_tsv()))
    distractors = read_sources(default_distractor_sources_tsv())
    assert len(distractors) >= 90 and len({s.package for s in distractors}) >= 10
    check_distractors(distractors, others)
    before, after = assign(others), assign(others + distractors)
    for split in ("validation", "test"):
        assert after[split] == before[split]
    assert after["train"][DISTRACTOR] == sorted(distractors, key=lambda s: (s.package, s.path))


@pytest.mark.parametrize("row, why", [
    (("newpkg", "a.ogg", "distractor", "validation", "GPL", 1.0), "split is not train"),
    (("newpkg", "a.ogg", "dog", "train", "GPL", 1.0), "unknown label"),
    (("newpkg", "a.ogg", "distractor", "train", "", 1.0), "no licence"),
    (("hedgewars-data", "b.ogg", "distractor", "train", "GPL", 1.0), "feeds the test split"),
    (("0ad-data", "x.ogg", "distractor", "train", "GPL", 1.0), "already in another source list"),
])
def test_distractor_source_that_would_touch_a_label_or_test_is_refused(row, why):
    from rttag.dataset.splits import check_distractors
    others = [Source("hedgewars-data", "h.ogg", "speech", "test", "GPL", 1.0),
              Source("0ad-data", "x.ogg", "music", "train", "GPL", 1.0)]
    with pytest.raises(SourceError, match=why):
        check_distractors([Source(*row)], others)


def test_a_distractor_chance_outside_0_to_1_is_one_error_line(tmp_path):
    from conftest import run_rttag

    proc = run_rttag("data", "build", "--out", str(tmp_path / "d"), "--distractors", "1.5", timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.decode().strip().splitlines() == [
        "rttag: error: data build: --distractors 1.5: a chance, 0 to 1"]
    assert not (tmp_path / "d").exists()
