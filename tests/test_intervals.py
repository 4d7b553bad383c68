"""Bootstrap intervals: the file bootstrap against explicit resampling, the two-way bootstrap
over files and source recordings, and the figures each interval is built around."""

import numpy as np
import pytest

from rttag.evaluate import Detection, RefEvent, Split, event_sources, format_table, score_system
from rttag.intervals import (BOOTSTRAP_SEED, add_intervals, resampled_excess, resampled_f1, resampled_median,
                             resampling)
from conftest import split_of


def file_intervals(systems: dict, split: Split, rounds: int) -> None:
    add_intervals(systems, resampling(list(split.paths), {}, event_sources(split), rounds=rounds, unit="file"),
                  np.array([split.durations[n] / 60.0 for n in split.paths]))


def _system(per_file: dict, labels=("dog",), segment_per_file: dict | None = None) -> dict:
    """Scores as sed_scores gives them, from per-file [tp, ref, sys] counts, all on the first
    label (the segment counts default to the event counts)."""
    def kind(counts):
        tp, ref, sys_ = np.sum(list(counts.values()), axis=0)
        return {"micro_f1": 2 * tp / (ref + sys_), "per_file": counts,
                "per_file_class": {n: {labels[0]: c} for n, c in counts.items()},
                "per_class": {label: {"n_ref": int(ref)} for label in labels}}
    return {"scores": {"event": kind(per_file), "segment": kind(segment_per_file or per_file)}}


def test_bootstrap_intervals_hold_the_estimate_and_the_paired_difference_sees_a_consistent_gain():
    rng = np.random.default_rng(1)
    names = [f"f{i}" for i in range(60)]
    base = {n: [int(rng.integers(0, 3)), 4, 4] for n in names}  # 0-2 hits of 4 events per file
    better = {n: [tp + (i % 4 == 0), r, s] for i, (n, (tp, r, s)) in enumerate(base.items())}  # one more hit in every 4th file
    worse_segments = {n: [max(tp - (i % 3 == 0), 0), r, s] for i, (n, (tp, r, s)) in enumerate(base.items())}
    systems = {"a/tuned": _system(base), "a/raw": _system(base), "b/tuned": _system(better, segment_per_file=worse_segments),
               "peer/streaming": _system(base, labels=("speech",))}
    file_intervals(systems, split_of({}, dict.fromkeys(names, 20.0)), rounds=500)
    for s in systems.values():
        for kind in ("event", "segment"):
            low, high = s["scores"][kind]["micro_f1_ci95"]
            assert low < s["scores"][kind]["micro_f1"] < high
        (pc,) = s["scores"]["event"]["per_class"].values()  # one label: its interval is the micro one
        assert pc["f1_ci95"] == s["scores"]["event"]["micro_f1_ci95"]
    assert "vs_first" not in systems["a/tuned"]["scores"]["event"]  # the reference itself
    assert "vs_first" not in systems["peer/streaming"]["scores"]["event"]  # other labels: not comparable
    same = systems["a/raw"]["scores"]["event"]["vs_first"]
    assert same["system"] == "a/tuned" and same["diff"] == 0 and same["ci95"] == [0.0, 0.0]
    gain = systems["b/tuned"]["scores"]["event"]["vs_first"]
    assert gain["diff"] == pytest.approx(15 / 240) and 0 < gain["ci95"][0] <= gain["ci95"][1]
    loss = systems["b/tuned"]["scores"]["segment"]["vs_first"]  # each metric is paired with its own counts
    assert loss["diff"] < 0 and loss["ci95"][0] <= loss["ci95"][1] < 0
    assert "vs_first" not in systems["peer/streaming"]["scores"]["segment"]
    # unpaired, the two intervals overlap although no file lost: what the paired figure is for
    assert systems["b/tuned"]["scores"]["event"]["micro_f1_ci95"][0] < systems["a/tuned"]["scores"]["event"]["micro_f1_ci95"][1]


def test_stream_intervals_hold_the_estimates_and_the_ratio_sees_twice_the_jitter():
    rng = np.random.default_rng(2)
    names = [f"f{i}" for i in range(40)]
    reference = {n: [RefEvent(2.0 + 5 * k, 3.0 + 5 * k, "dog") for k in range(3)] for n in names}
    split = split_of(reference, dict.fromkeys(names, 20.0))

    def detections(extra: int) -> dict:
        """Each reference event found 0.1-0.5 s late, plus ``extra`` (±1) stray dogs per file."""
        dets = {}
        for n in names:
            found = [Detection("dog", e.onset, e.offset, e.onset + float(rng.uniform(0.1, 0.5))) for e in reference[n]]
            stray = [Detection("dog", 16.0 + 0.5 * k, 16.2 + 0.5 * k, 16.0 + 0.5 * k)
                     for k in range(extra + int(rng.integers(-1, 2)))]
            dets[n] = found + stray
        return dets

    systems = {}
    for key, extra in (("crnn/tuned", 2), ("baseline/tuned", 4)):
        systems[key] = {"system": key.split("/")[0], "smoother": "tuned",
                        "scores": score_system(split, detections(extra), ["dog"], None)}
    file_intervals(systems, split, rounds=400)
    for s in systems.values():
        st = s["scores"]["stream"]
        low, high = st["excess_on_per_min_ci95"]
        assert low < st["excess_on_per_min"] < high
        lat_low, lat_high = st["latency_median_s_ci95"]
        assert 0.1 <= lat_low <= st["latency_median_s"] <= lat_high <= 0.5
    assert "vs_first" not in systems["crnn/tuned"]["scores"]["stream"]
    ratio = systems["baseline/tuned"]["scores"]["stream"]["vs_first"]
    crnn, base = (systems[k]["scores"]["stream"]["excess_on_per_min"] for k in ("crnn/tuned", "baseline/tuned"))
    assert ratio["system"] == "crnn/tuned" and ratio["ratio"] == pytest.approx(base / crnn)
    assert 1.5 < ratio["ci95"][0] < ratio["ratio"] < ratio["ci95"][1] < 3.0
    assert "Jitter and latency, resampling the files" in format_table(systems)
    assert "Jitter and latency, resampling files and source recordings" in format_table(systems, "recording")


def test_held_on_files_get_a_resampled_interval():
    names = [f"f{i}" for i in range(60)]
    system = _system({n: [1, 2, 2] for n in names})
    system["scores"]["held_on"] = {"pairs": 15, "files": 15, "files_share": 0.25, "file_names": names[::4],
                                   "per_class": {"dog": 15}}
    never = _system({n: [1, 2, 2] for n in names})
    never["scores"]["held_on"] = {"pairs": 0, "files": 0, "files_share": 0.0, "file_names": [], "per_class": {"dog": 0}}
    systems = {"a/tuned": system, "b/tuned": never}
    file_intervals(systems, split_of({}, dict.fromkeys(names, 20.0)), rounds=500)
    low, high = system["scores"]["held_on"]["files_ci95"]
    assert 5 < low < 15 < high < 25
    assert never["scores"]["held_on"]["files_ci95"] == [0.0, 0.0]


# ------------------------------------------------------------- the file bootstrap, explicitly


def test_file_weights_give_the_figures_of_the_drawn_files():
    """Unit "file": every resampled figure equals the figure computed on the concatenated draw of
    files (the same draw: ``integers(0, n, (rounds, n))`` on ``default_rng(seed)``)."""
    rng = np.random.default_rng(7)
    names = [f"f{i}" for i in range(9)]
    labels = ["dog", "bird"]
    per_file_class = {n: {k: [int(t), int(t + rng.integers(0, 3)), int(t + rng.integers(0, 3))]
                          for k, t in zip(labels, rng.integers(0, 3, size=2))} for n in names}
    per_file = {n: {"sys": list(rng.integers(0, 6, size=2)), "ref": list(rng.integers(0, 4, size=2)),
                    "latencies": list(rng.uniform(0, 1, size=int(rng.integers(0, 4))))}
                for n in names}
    for f in per_file.values():
        f["latency_labels"], f["latency_events"] = ["dog"] * len(f["latencies"]), list(range(len(f["latencies"])))
    minutes = rng.uniform(0.1, 0.5, size=len(names))
    reference = {n: [("dog", ())] * len(f["latencies"]) for n, f in per_file.items()}
    w = resampling(names, {}, reference, rounds=150, unit="file")
    picks = np.random.default_rng(BOOTSTRAP_SEED).integers(0, len(names), size=(150, len(names)))
    f1, excess, median = resampled_f1(per_file_class, labels, w), resampled_excess(per_file, labels, minutes, w), \
        resampled_median(per_file, w)
    for r, row in enumerate(picks):
        drawn = [names[i] for i in row]
        tp, ref, sys_ = np.sum([per_file_class[n][k] for n in drawn for k in labels], axis=0)
        assert f1[r] == 2 * tp / (ref + sys_)  # exact: whole counts
        over = sum(max(0, sum(per_file[n]["sys"][i] - per_file[n]["ref"][i] for n in drawn)) for i in range(2))
        assert excess[r] == pytest.approx(over / minutes[row].sum(), rel=1e-12)
        lat = [x for n in drawn for x in per_file[n]["latencies"]]
        assert median[r] == np.median(lat) if lat else np.isnan(median[r])


# ------------------------------------------------------ the bootstrap over source recordings


def test_recording_weights_average_over_a_cells_recordings():
    recordings = {"a": {"background": ["rain"], "dog": ["rex", "fido"]}, "b": {"background": ["rain"], "bird": ["tit"]}}
    w = resampling(["a", "b"], recordings, {}, rounds=300, unit="recording")
    assert w.unit == "recording" and w.recordings == 4
    file_w = resampling(["a", "b"], {}, {}, rounds=300, unit="file").files  # the same first draw
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    rng.integers(0, 2, size=(300, 2))
    rec = np.array([np.bincount(row, minlength=4) for row in rng.integers(0, 4, size=(300, 4))], dtype=float)
    fido, rain, rex, tit = rec.T  # ids in sorted order
    assert np.array_equal(w.cell("dog")[:, 0], file_w[:, 0] * (rex + fido) / 2)
    assert np.array_equal(w.cell("bird")[:, 1], file_w[:, 1] * tit)
    assert np.allclose(w.cell("dog")[:, 1], file_w[:, 1] * (rain + tit) / 2)  # no dog in b: all its recordings
    assert np.allclose(w.files[:, 0], file_w[:, 0] * (rain + rex + fido) / 3)
    assert np.allclose(w.cell("speech"), w.files)  # a label with no recording anywhere
    assert w.files.mean() == pytest.approx(1.0, abs=0.15)  # each weight is 1 on average
    with pytest.raises(ValueError, match="no source recordings"):
        resampling(["a", "b", "c"], recordings, {}, rounds=10)


def test_files_reusing_few_recordings_widen_the_interval():
    """60 files, each with one of two dog recordings: every dog of the first is found, none of the
    second. Files alone look like 60 independent tries (F1 near 0.5, narrow); drawing the two
    recordings as well sees that the figure rests on two."""
    names = [f"f{i}" for i in range(60)]
    recordings = {n: {"background": [f"bg{i % 5}"], "dog": ["good" if i % 2 else "bad"]} for i, n in enumerate(names)}
    counts = {n: {"dog": [2, 2, 2] if i % 2 else [0, 2, 2]} for i, n in enumerate(names)}
    by_file = resampled_f1(counts, ["dog"], resampling(names, {}, {}, rounds=1000, unit="file"))
    by_recording = resampled_f1(counts, ["dog"], resampling(names, recordings, {}, rounds=1000))
    narrow, wide = (np.percentile(x, 97.5) - np.percentile(x, 2.5) for x in (by_file, by_recording))
    assert narrow < 0.3 and wide > 3 * narrow
    assert np.percentile(by_recording, 2.5) == 0.0 and np.percentile(by_recording, 97.5) == 1.0


def test_recording_median_weighs_each_latency_by_its_cell():
    """Two files: the dog recording's latencies are 0.1 s, the bird's 0.9 s; where a round draws
    the dog recording twice (and the bird's not), the median is the dog's. The events do not say
    their recordings: each weighs its label's in its file."""
    per_file = {"a": {"latencies": [0.1, 0.1], "latency_labels": ["dog", "dog"], "latency_events": [0, 1]},
                "b": {"latencies": [0.9], "latency_labels": ["bird"], "latency_events": [0]}}
    recordings = {"a": {"dog": ["rex"]}, "b": {"bird": ["tit"]}}
    w = resampling(["a", "b"], recordings, {"a": [("dog", ())] * 2, "b": [("bird", ())]}, rounds=400)
    got = resampled_median(per_file, w)
    dog, bird = w.cell("dog")[:, 0], w.cell("bird")[:, 1]
    assert np.all(got[(dog > 0) & (bird == 0)] == 0.1) and np.all(got[(bird > 0) & (dog == 0)] == 0.9)
    both = (dog > 0) & (bird > 0)
    assert np.all(got[both & (2 * dog > bird)] == 0.1) and np.all(got[both & (2 * dog < bird)] == 0.9)
    assert np.all(np.isnan(got[(dog == 0) & (bird == 0)]))


def test_each_event_weighs_the_recordings_mixed_into_it():
    """File a holds a dog from rex and one mixing rex and fido; file b a dog from fido. Each event
    weighs its file's draws times the mean draws of its own recordings; a hit counts its event's
    weight, a false alarm its cell's."""
    recordings = {"a": {"dog": ["rex", "fido"]}, "b": {"background": ["rain"], "dog": ["fido"]}}
    reference = {"a": [("dog", ("rex",)), ("dog", ("rex", "fido"))], "b": [("dog", ("fido",))]}
    w = resampling(["a", "b"], recordings, reference, rounds=300)
    file_w = resampling(["a", "b"], {}, {}, rounds=300, unit="file").files
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    rng.integers(0, 2, size=(300, 2))
    fido, rain, rex = np.array([np.bincount(row, minlength=3) for row in rng.integers(0, 3, size=(300, 3))], dtype=float).T
    assert list(w.event_start["dog"]) == [0, 2, 3]
    events = w.events["dog"]
    assert np.array_equal(events[:, 0], file_w[:, 0] * rex) and np.array_equal(events[:, 2], file_w[:, 1] * fido)
    assert np.allclose(events[:, 1], file_w[:, 0] * (rex + fido) / 2)
    counts = {"a": {"dog": [1, 2, 3]}, "b": {"dog": [1, 1, 1]}}  # a: the first dog found, 2 false alarms
    hits = {"a": {"dog": [1, 0]}, "b": {"dog": [1]}}
    tp = events[:, 0] + events[:, 2]
    denom = events.sum(axis=1) + tp + 2 * w.cell("dog")[:, 0]
    expected = np.divide(2 * tp, denom, out=np.zeros(300), where=denom > 0)
    assert np.allclose(resampled_f1(counts, ["dog"], w, hits), expected)
    # files only: an event weighs its file's draws, which is what the cell counts give
    by_file = resampling(["a", "b"], {}, reference, rounds=300, unit="file")
    assert np.array_equal(resampled_f1(counts, ["dog"], by_file, hits), resampled_f1(counts, ["dog"], by_file))
    with pytest.raises(ValueError, match="do not match the counts"):
        resampled_f1(counts, ["dog"], w, {"a": {"dog": [1, 1]}, "b": {"dog": [1]}})
    with pytest.raises(ValueError, match="differ from those the resampling was drawn for"):
        resampled_f1(counts, ["dog"], w, {"a": {"dog": [1]}, "b": {"dog": [1]}})
    with pytest.raises(ValueError, match="not among the files' recordings"):
        resampling(["a", "b"], recordings, {"a": [("dog", ("rover",))]}, rounds=10)


def test_recording_median_weighs_each_latency_by_its_events_recordings():
    """One file, two dogs: rex's found after 0.1 s, fido's after 0.9 s. A round that draws rex
    and not fido has the median 0.1, and the other way round 0.9."""
    per_file = {"a": {"latencies": [0.1, 0.9], "latency_labels": ["dog", "dog"], "latency_events": [0, 1]}}
    w = resampling(["a"], {"a": {"dog": ["rex", "fido"]}}, {"a": [("dog", ("rex",)), ("dog", ("fido",))]}, rounds=400)
    got = resampled_median(per_file, w)
    rex, fido = w.events["dog"][:, 0], w.events["dog"][:, 1]
    assert np.all(got[(rex > 0) & (fido == 0)] == 0.1) and np.all(got[(fido > 0) & (rex == 0)] == 0.9)
    assert np.all(got[(rex > 0) & (rex == fido)] == 0.5)
