"""``rttag data others`` and ``rttag eval`` on its set: the list's rules, where and how loud each
sound is played, and that every ``on`` the streaming path emits there is counted, on its sound."""

import csv
import json
import re
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from conftest import parse_events, run_rttag, write_burst_dataset
from rttag.dataset.mixer import SR, rms
from rttag.dataset.others import (ACTIVE_SHARE, GAP_S, LEAD_S, MAX_S, OTHER, check_others,
                                  default_other_sources_tsv, level, listed_sources, play)
from rttag.dataset.sources import Source, read_sources
from rttag.dataset.splits import split_of
from rttag.errors import RttagError
from rttag.evaluate import Detection
from rttag.false_alarms import Played, add_intervals, attribute, score

PKG = "rttag-test-sounds"


def db(x: float) -> float:
    return 20 * np.log10(x)


def test_the_bundled_list_holds_only_unlabelled_sounds_from_packages_never_trained_or_tuned_on():
    rows = read_sources(default_other_sources_tsv())
    listed = listed_sources()
    check_others(rows, listed)  # raises on any bad row
    assert len(rows) >= 100 and {r.label for r in rows} == {OTHER} and {r.split for r in rows} == {"test"}
    trained = {s.package for s in listed if s.split != "test"}
    assert trained and not {r.package for r in rows} & trained
    assert len({(r.package, r.path) for r in rows}) == len(rows)


def test_the_bundled_validation_list_holds_only_packages_the_validation_side_uses():
    rows = read_sources(default_other_sources_tsv("validation"))
    listed = listed_sources()
    check_others(rows, listed, "validation")  # raises on any bad row
    assert len(rows) >= 50 and {r.label for r in rows} == {OTHER} and {r.split for r in rows} == {"validation"}
    validation = {s.package for s in listed if split_of(s) == "validation"}
    assert {r.package for r in rows} <= validation
    assert not {r.package for r in rows} & {r.package for r in read_sources(default_other_sources_tsv())}


def row(**kw) -> Source:
    base = dict(package="alienblaster-data", path="usr/share/a.wav", label=OTHER, split="test", licence="GPL-2+",
                duration_s=1.0)
    return Source(**{**base, **kw})


LISTS = [row(package="trained-pkg", label="dog", split="train"),
         row(package="tuned-pkg", label="bird", split="validation"),
         row(package="widelands-data", label="bird", split="train"),  # held out for validation (splits.py)
         row(path="usr/share/listed.wav", label="door")]  # a test row of alienblaster-data


@pytest.mark.parametrize("bad, message", [
    (dict(label="dog"), "unknown label 'dog'"),
    (dict(split="train"), "split is not test"),
    (dict(licence=" "), "no licence"),
    (dict(package="trained-pkg"), "package has train or validation rows"),
    (dict(package="tuned-pkg"), "package has train or validation rows"),
    (dict(package="widelands-data"), "package has train or validation rows"),
    (dict(path="usr/share/listed.wav"), "file repeats a listed one"),
])
def test_check_others_refuses_each_kind_of_bad_row(bad, message):
    check_others([row()], LISTS)
    with pytest.raises(RttagError, match=message):
        check_others([row(**bad)], LISTS)
    with pytest.raises(RttagError, match="file repeats a listed one"):
        check_others([row(), row()], LISTS)


@pytest.mark.parametrize("bad, message", [
    (dict(split="test"), "split is not validation"),
    (dict(package="trained-pkg"), "package has train or test rows"),
    (dict(package="alienblaster-data"), "package has train or test rows"),
])
def test_validation_side_rows_come_only_from_packages_the_validation_side_uses(bad, message):
    good = dict(split="validation", path="usr/share/b.wav")
    check_others([row(**good, package="tuned-pkg"), row(**good, package="widelands-data")], LISTS, "validation")
    with pytest.raises(RttagError, match=message):
        check_others([row(**{**good, "package": "tuned-pkg", **bad})], LISTS, "validation")


def test_level_sets_the_active_part_and_cuts_long_recordings():
    t = np.arange(int(6 * SR)) / SR
    x = np.where(t < 1.0, 0.3, 0.001 * ACTIVE_SHARE) * np.sin(2 * np.pi * 500 * t)  # loud second, then near silence
    y = level(x.astype(np.float32), -26.0)
    assert len(y) == int(MAX_S * SR) and y.dtype == np.float32
    active = y[np.abs(y) > ACTIVE_SHARE * np.abs(y).max()]
    assert len(active) < SR and db(rms(active)) == pytest.approx(-26.0, abs=0.01)  # the quiet tail is left out


def test_play_places_every_clip_once_apart_at_its_level_over_the_asked_noise():
    clips = [level(np.sin(2 * np.pi * f * np.arange(int(s * SR)) / SR).astype(np.float32), -26.0)
             for f, s in ((300, 0.5), (900, 1.2), (2000, 0.2), (4000, 2.0))]
    y, placed, gain_db = play(clips, np.random.default_rng(3), -26.0, 40.0)
    again, placed_again, _ = play(clips, np.random.default_rng(3), -26.0, 40.0)
    assert np.array_equal(y, again) and placed == placed_again and gain_db == 0.0
    assert sorted(i for _, _, i in placed) == [0, 1, 2, 3]
    assert placed[0][0] == LEAD_S and len(y) == int(round((placed[-1][1] + LEAD_S) * SR))
    for (_, end, _), (start, _, _) in zip(placed, placed[1:]):
        assert GAP_S[0] <= start - end <= GAP_S[1]
    for onset, offset, i in placed:
        assert offset - onset == pytest.approx(len(clips[i]) / SR)
        part = y[int(round(onset * SR)): int(round(offset * SR))]
        assert db(rms(part)) == pytest.approx(db(rms(clips[i])), abs=0.05)
    gap = y[int(round((placed[0][1] + 0.1) * SR)): int(round((placed[1][0] - 0.1) * SR))]
    assert db(rms(gap)) == pytest.approx(-66.0, abs=1.5)
    louder_db = 20 * np.log10(30.0)  # the same clips and noise 29.5 dB up: sines of RMS 1.5 would clip
    loud, _, gain_db = play([c * np.float32(30.0) for c in clips], np.random.default_rng(3), -26.0 + louder_db, 40.0)
    assert gain_db < 0 and np.abs(loud).max() == pytest.approx(0.99, abs=1e-4)
    assert np.allclose(loud, y * np.float32(10 ** ((louder_db + gain_db) / 20)), atol=1e-4)  # the whole file, one gain


def test_ons_are_counted_on_the_sound_they_fall_on_or_between():
    played = [Played(1.0, 1.5, "p:a"), Played(4.0, 6.0, "p:b"), Played(9.0, 9.2, "p:a")]
    counts, between = attribute([0.6, 1.9, 2.1, 3.6, 5.0, 5.1, 9.6, 7.5], played)
    assert counts.tolist() == [2, 3, 1] and between == 2
    dets = {"f": [Detection("dog", t, t + 0.5, t + 0.2) for t in (0.6, 1.9, 2.1, 3.6, 5.0, 5.1, 9.6, 7.5)]}
    s = score(dets, {"f": played}, minutes=0.5)
    assert s["ons"] == 8 and s["on_per_min"] == 16.0 and s["between_per_min"] == 4.0
    assert s["on_per_sound"] == pytest.approx(6 / 3) and s["sounds_named"] == 1.0
    assert s["on_s_per_min"] == pytest.approx(8.0) and s["per_class"] == {"dog": 8}
    assert s["by_recording"] == {"p:a": [3, 2], "p:b": [3, 1]}
    quiet = score({"f": dets["f"][-1:]}, {"f": played}, minutes=0.5)
    systems = {"a/tuned": {"scores": s}, "b/tuned": {"scores": quiet}}
    add_intervals(systems, rounds=200)
    lo, hi = s["on_per_sound_ci"]
    assert lo <= s["on_per_sound"] <= hi
    assert quiet["ratio_to_first"] == 0.0 and quiet["ratio_to_first_ci"] == [0.0, 0.0]


def write_sounds(tmp_path, split="test"):
    """A package cache with three short recordings (a tone, a chirp, a noise burst) and a source list
    of them, rows of ``split``."""
    root = tmp_path / "cache" / "pkgs" / PKG / "usr" / "share" / "sounds"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(0.8 * SR)) / SR
    sounds = {"tone.wav": 0.5 * np.sin(2 * np.pi * 700 * t), "chirp.wav": 0.5 * np.sin(2 * np.pi * (300 + 2000 * t) * t),
              "burst.wav": 0.3 * rng.standard_normal(int(0.3 * SR))}
    tsv = tmp_path / "others.tsv"
    with open(tsv, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["package", "path", "label", "split", "licence", "duration_s", "sample_rate"])
        for name, x in sounds.items():
            sf.write(root / name, x.astype(np.float32), SR)
            w.writerow([PKG, f"usr/share/sounds/{name}", OTHER, split, "CC0-1.0", f"{len(x) / SR:.2f}", SR])
    return tsv


def test_eval_counts_every_on_that_rttag_tag_emits_on_the_set(tmp_path, model_path):
    tsv, out = write_sounds(tmp_path), tmp_path / "set"
    proc = run_rttag("data", "others", "--out", str(out), "--sources", str(tsv), "--cache", str(tmp_path / "cache"),
                     "--files", "2", "--level-dbfs", "-12")
    assert proc.returncode == 0, proc.stderr.decode()
    settings = json.loads((out / "others.json").read_text())
    assert sorted(settings["files"]) == ["others_0.wav", "others_1.wav"] and settings["recordings"] == 3
    assert set(settings["peak_gain_db"]) == set(settings["files"])
    assert {s["path"].rsplit("/", 1)[1] for s in settings["files"]["others_0.wav"]} == {"tone.wav", "chirp.wav",
                                                                                         "burst.wav"}
    assert (out / "metadata" / "others.tsv").read_text().splitlines()[1:] == ["others_0.wav\t\t\t",
                                                                              "others_1.wav\t\t\t"]
    assert f"## {PKG}" in (out / "ATTRIBUTION.md").read_text()
    result = tmp_path / "eval.json"
    proc = run_rttag("eval", "--data", str(out), "--models", str(model_path), "--bootstrap", "100",
                     "--json", str(result))
    assert proc.returncode == 0, proc.stderr.decode()
    assert "sounds of none of the labels: 6 played (3 recordings)" in proc.stdout.decode()
    figures = json.loads(result.read_text())
    tuned = figures["systems"]["test-gru/tuned"]["scores"]
    tagged = Counter()
    for name in settings["files"]:
        proc = run_rttag("tag", "--model", str(model_path), str(out / "audio" / "others" / name))
        assert proc.returncode == 0, proc.stderr.decode()
        tagged.update(e["label"] for e in parse_events(proc.stdout) if e["type"] == "on")
    assert sum(tagged.values()) > 0 and tuned["per_class"] == dict(tagged)
    assert tuned["ons"] == sum(tagged.values())
    assert set(figures["systems"]) == {"test-gru/tuned", "test-gru/raw", "silero-vad/streaming", "silero-vad/raw"}
    assert set(figures["systems"]["silero-vad/raw"]["scores"]["per_class"]) <= {"speech"}
    raw = figures["systems"]["test-gru/raw"]["scores"]
    assert raw["ons"] >= tuned["ons"] and raw["on_per_sound_ci"][0] <= raw["on_per_sound"] <= raw["on_per_sound_ci"][1]


def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path):
    tsv = write_sounds(tmp_path)
    cache = str(tmp_path / "cache")
    proc = run_rttag("data", "others", "--out", str(tmp_path / "o1"), "--sources", str(tsv), "--cache", cache,
                     "--files", "0")
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and len(err) == 1 and "--files must be at least 1" in err[0], err
    assert not (tmp_path / "o1").exists()
    bad = tmp_path / "bad.tsv"
    bad.write_text(tsv.read_text().replace(f"{PKG}\t", "0ad-data\t", 1))  # a training package
    proc = run_rttag("data", "others", "--out", str(tmp_path / "o2"), "--sources", str(bad), "--cache", cache)
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and len(err) == 1 and "0ad-data" in err[0] and "train or validation" in err[0], err
    assert not (tmp_path / "o2").exists()


def test_eval_on_a_set_whose_sounds_list_lacks_a_file_is_one_error_line(tmp_path, model_path):
    root = tmp_path / "set"
    (root / "audio" / "others").mkdir(parents=True)
    (root / "metadata").mkdir()
    sf.write(root / "audio" / "others" / "others_0.wav", np.zeros(SR, np.float32), SR, subtype="PCM_16")
    (root / "metadata" / "others.tsv").write_text("filename\tonset\toffset\tevent_label\nothers_0.wav\t\t\t\n")
    (root / "others.json").write_text(json.dumps({"files": {"others_1.wav": []}}))
    proc = run_rttag("eval", "--data", str(root), "--models", str(model_path), "--no-silero")
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and len(err) == 1 and "cannot read the sounds played" in err[0], err
    assert proc.stdout == b""


def test_tune_counts_the_ons_on_a_validation_side_set_and_refuses_a_test_side_one(tmp_path, model_path):
    """``rttag tune --others``: the set's files join the tuning split (the log counts them) and the
    model is written as without it; a set of test-side sounds, a folder that is no set, or one whose
    ``others.json`` is cut short, is one error line before the model runs."""
    dataset, sets = write_burst_dataset(tmp_path / "data", {"validation": (1, 2)}), {}
    for side in ("validation", "test"):
        tsv, sets[side] = write_sounds(tmp_path / side, side), tmp_path / side / "set"
        proc = run_rttag("data", "others", "--out", str(sets[side]), "--sources", str(tsv), "--cache",
                         str(tmp_path / side / "cache"), "--files", "2", "--split", side)
        assert proc.returncode == 0, proc.stderr.decode()
        assert json.loads((sets[side] / "others.json").read_text())["split"] == side
    tuned = tmp_path / "tuned.onnx"
    plain = run_rttag("tune", "--model", str(model_path), "--data", str(dataset), "--dry-run")
    joined = run_rttag("tune", "--model", str(model_path), "--data", str(dataset), "-o", str(tuned),
                       "--others", str(sets["validation"]))
    assert plain.returncode == 0 and joined.returncode == 0, joined.stderr.decode()
    n = int(re.search(r"on validation: (\d+) files", plain.stderr.decode()).group(1))
    assert f"on validation: {n + 2} files" in joined.stderr.decode()
    # the false ons it reports on the set are those the tuned model emits there
    said = re.search(r"--others \S+: (\d+) false on events in [\d.]+ min", joined.stdout.decode())
    emitted = 0
    for wav in sorted((sets["validation"] / "audio" / "others").glob("*.wav")):
        proc = run_rttag("tag", "--model", str(tuned), str(wav))
        emitted += sum(e["type"] == "on" for e in parse_events(proc.stdout))
    assert said and int(said.group(1)) == emitted > 0
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "others.json").write_text('{"split": "validation", ')
    for bad, message in ((sets["test"], "from the test side"), (tmp_path, "not a set written by 'rttag data others'"),
                         (corrupt, "others.json: cannot read it")):
        proc = run_rttag("tune", "--model", str(model_path), "--data", str(dataset), "--others", str(bad))
        err = proc.stderr.decode().strip().splitlines()
        assert proc.returncode != 0 and len(err) == 1 and message in err[0], err
