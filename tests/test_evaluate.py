"""Evaluation and tuning: the scorers on hand-made events, the cached-probability path against
the pipeline, the commands end to end on a tiny synthetic dataset, and the silero-vad peer."""

import itertools
from dataclasses import replace
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from rttag.evaluate import (Detection, EvalError, FileRun, FrameTiming, RefEvent, Split, event_sources, load_split,
                            match_onsets, PLACES, covered_s, detection_places, format_table, held_on,
                            format_recordings, merge_events, onset_levels, onset_scores, psds, score_system, sed_scores, smooth,
                            smoother_wait, stream_file, stream_scores, smooth_runs, system_names)
from rttag.intervals import add_intervals, resampling
from rttag.runtime import OnnxModel
from rttag.smoother import DB_PER_LOG, SmootherParams
from rttag.frontend import FrontendParams
from rttag.tune import (GRID_MIN_OFF_S, GRID_MIN_ON_S, GRID_ON, OBJECTIVES, Candidate, TuneError, _params, _score,
                        backdate, check_quantile, choose, class_budget, class_choice, format_choice, joint_choice,
                        FEW_RECORDINGS, warn_few_recordings,
                        latency_lists, micro_f1, offset_lags, onset_lags, overall_ascent, overall_latency,
                        stage2_durations)
from conftest import BURSTS, run_rttag, split_of, tone_bursts, write_burst_dataset

SR = 16000


@pytest.fixture(scope="module")
def model(model_path):
    return OnnxModel(model_path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """data/ with validation and test splits of tone-burst files and their reference TSVs."""
    root = write_burst_dataset(tmp_path_factory.mktemp("data"), {"validation": (1, 2), "test": (3, 4)})
    sf.write(root / "audio" / "test" / "quiet.wav", tone_bursts(seed=5) * 0.0, SR, subtype="FLOAT")
    return root


# --------------------------------------------------------------- scoring on hand-made events


def test_perfect_prediction_scores_one():
    ref = {"a.wav": [RefEvent(1.0, 3.0, "dog"), RefEvent(5.0, 6.0, "bird"), RefEvent(2.0, 4.0, "speech")]}
    split = split_of(ref, {"a.wav": 8.0})
    dets = {"a.wav": [Detection(e.label, e.onset, e.offset, e.onset) for e in ref["a.wav"]]}
    s = sed_scores(split, dets, ["speech", "dog", "bird"])
    assert s["event"]["micro_f1"] == pytest.approx(1.0) and s["event"]["micro_er"] == pytest.approx(0.0)
    assert s["event"]["macro_f1"] == pytest.approx(1.0)
    assert s["segment"]["micro_f1"] == pytest.approx(1.0) and s["segment"]["micro_er"] == pytest.approx(0.0)
    assert {k: v["f1"] for k, v in s["event"]["per_class"].items()} == pytest.approx({"speech": 1, "dog": 1, "bird": 1})


def test_known_misplacements_give_the_expected_figures():
    """One frame late stays inside the 200 ms collar; 250 ms late does not (one deletion and
    one insertion), but the 1 s segments do not see the difference."""
    split = split_of({"a.wav": [RefEvent(1.0, 3.0, "dog"), RefEvent(5.0, 6.0, "bird")]}, {"a.wav": 8.0})
    dets = {"a.wav": [Detection("dog", 1.01, 3.0, 1.1), Detection("bird", 5.25, 6.0, 5.3)]}
    s = sed_scores(split, dets, ["dog", "bird", "water"])  # water: no reference, no prediction
    ev = s["event"]
    assert ev["per_class"]["water"]["er"] is None and ev["per_class"]["water"]["n_ref"] == 0
    assert (ev["micro_f1"], ev["precision"], ev["recall"], ev["micro_er"]) == pytest.approx((0.5, 0.5, 0.5, 1.0))
    assert ev["per_class"]["dog"]["f1"] == pytest.approx(1.0) and ev["per_class"]["bird"]["f1"] == pytest.approx(0.0)
    assert ev["macro_f1"] == pytest.approx(0.5)
    silent = sed_scores(split, {"a.wav": [Detection("dog", 1.0, 3.0, 1.1)]}, ["dog", "bird"])["event"]
    assert silent["per_class"]["bird"]["f1"] == 0.0 and silent["macro_f1"] == pytest.approx(0.5)
    assert s["segment"]["micro_f1"] == pytest.approx(1.0)


def test_per_file_counts_add_up_to_the_micro_f1():
    split = split_of({"a.wav": [RefEvent(1.0, 3.0, "dog"), RefEvent(5.0, 6.0, "bird")],
                      "b.wav": [RefEvent(2.0, 4.0, "dog")], "c.wav": []}, {"a.wav": 8.0, "b.wav": 8.0, "c.wav": 8.0})
    dets = {"a.wav": [Detection("dog", 1.01, 3.0, 1.1), Detection("bird", 5.25, 6.0, 5.3)],
            "c.wav": [Detection("dog", 1.0, 2.0, 1.1)]}
    scores = sed_scores(split, dets, ["dog", "bird"])
    ev, seg = scores["event"], scores["segment"]
    assert ev["per_file"] == {"a.wav": [1, 2, 2], "b.wav": [0, 1, 0], "c.wav": [0, 0, 1]}
    # 1 s segments: a.wav dog 2 of 2 and bird 1 of 1; b.wav's dog (2 segments) missed; c.wav one false segment
    assert seg["per_file"] == {"a.wav": [3, 3, 3], "b.wav": [0, 2, 0], "c.wav": [0, 0, 1]}
    for kind in (ev, seg):
        tp, ref, sys_ = np.sum(list(kind["per_file"].values()), axis=0)
        assert 2 * tp / (ref + sys_) == pytest.approx(kind["micro_f1"])
    assert ev["per_file_class"] == {"a.wav": {"dog": [1, 1, 1], "bird": [0, 1, 1]}, "b.wav": {"dog": [0, 1, 0]},
                                    "c.wav": {"dog": [0, 0, 1]}}
    assert seg["per_file_class"] == {"a.wav": {"dog": [2, 2, 2], "bird": [1, 1, 1]}, "b.wav": {"dog": [0, 2, 0]},
                                     "c.wav": {"dog": [0, 0, 1]}}
    for kind in (ev, seg):  # the per-class counts add up to the class figures and to each file's micro counts
        for label, pc in kind["per_class"].items():
            assert [pc["n_tp"], pc["n_ref"], pc["n_sys"]] == list(
                np.sum([f.get(label, [0, 0, 0]) for f in kind["per_file_class"].values()], axis=0))
        for name, counts in kind["per_file"].items():
            assert counts == list(np.sum(list(kind["per_file_class"][name].values()), axis=0))


def test_offset_collar_is_twenty_percent_of_long_events():
    """A 10 s event may end 1.5 s early (collar max(0.2, 0.2 × 10) = 2 s), not 2.5 s early."""
    split = split_of({"a.wav": [RefEvent(1.0, 11.0, "engine")]}, {"a.wav": 12.0})
    ok = sed_scores(split, {"a.wav": [Detection("engine", 1.0, 9.5, 1.1)]}, ["engine"])
    late = sed_scores(split, {"a.wav": [Detection("engine", 1.0, 8.5, 1.1)]}, ["engine"])
    assert ok["event"]["micro_f1"] == pytest.approx(1.0) and late["event"]["micro_f1"] == pytest.approx(0.0)


def test_onset_only_f1_ignores_the_offsets():
    """A detection whose onset is in the collar but which ends 2 s late is a miss and a false
    event for the event-based F1, a hit with the onsets alone; an onset 300 ms late is a miss for
    both."""
    split = split_of({"a.wav": [RefEvent(1.0, 2.0, "dog"), RefEvent(5.0, 6.0, "bird")]}, {"a.wav": 10.0})
    dets = {"a.wav": [Detection("dog", 1.1, 4.0, 1.2), Detection("bird", 5.3, 6.0, 5.4)]}
    assert sed_scores(split, dets, ["dog", "bird"])["event"]["micro_f1"] == pytest.approx(0.0)
    onsets = onset_scores(split, dets, ["dog", "bird"])
    assert onsets["micro_f1"] == pytest.approx(0.5)
    assert onsets["per_class"] == pytest.approx({"dog": 1.0, "bird": 0.0})
    assert onsets["macro_f1"] == pytest.approx(0.5)
    assert onsets["offsets"]["dog"] == {"matched": 1, "in_collar": 0, "late": 1, "early": 0,
                                        "late_median_s": pytest.approx(2.0), "early_median_s": None}
    assert onsets["offsets"]["bird"]["matched"] == 0  # its onset is out of the collar: no pair


def test_offsets_of_onset_matched_events_in_collar_late_and_early():
    """Offsets of events paired by their onset: within the collar (max(200 ms, 20 % of the
    reference event): 1 s for a 5 s event), late or early beyond it, with the median distance
    from the reference offset; an unmatched reference or a false detection adds nothing."""
    split = split_of({"a.wav": [RefEvent(1.0, 6.0, "dog"), RefEvent(10.0, 11.0, "dog"), RefEvent(20.0, 21.0, "dog"),
                                RefEvent(30.0, 31.0, "bird"), RefEvent(40.0, 41.0, "bird")]}, {"a.wav": 60.0})
    dets = {"a.wav": [Detection("dog", 1.1, 6.9, 1.2),      # 0.9 s late, collar 1 s: in
                      Detection("dog", 10.0, 11.5, 10.1),   # 0.5 s late, collar 0.2 s: late
                      Detection("dog", 20.1, 20.4, 20.2),   # 0.6 s early: early
                      Detection("bird", 30.0, 33.0, 30.1),  # 2 s late
                      Detection("bird", 50.0, 51.0, 50.1)]}  # false; bird at 40 s is missed
    off = onset_scores(split, dets, ["dog", "bird"])["offsets"]
    assert off["dog"] == {"matched": 3, "in_collar": 1, "late": 1, "early": 1,
                          "late_median_s": pytest.approx(0.5), "early_median_s": pytest.approx(0.6)}
    assert off["bird"] == {"matched": 1, "in_collar": 0, "late": 1, "early": 0,
                           "late_median_s": pytest.approx(2.0), "early_median_s": None}
    assert off["all"] == {"matched": 4, "in_collar": 1, "late": 2, "early": 1,
                          "late_median_s": pytest.approx(1.25), "early_median_s": pytest.approx(0.6)}


def test_onset_levels_and_the_events_found_by_level():
    """An event's start level is the mean over mel bins of how far its first 0.2 s rises above
    the per-bin median of the 2 s before it (dB); an event with under 1 s before it gets none.
    The onsets-only figures count the events found per level bin."""
    timing = FrameTiming(hop_s=0.1, centre0_s=0.05, ready0_s=0.1)
    db = np.zeros((80, 4))                  # 8 s, background 0 dB in every bin
    db[20:30, :2] = 6.0                     # 2.0–3.0 s: +6 dB in half the bins → 3 dB
    db[50:60, :] = 12.0                     # 5.0–6.0 s: +12 dB everywhere → 12 dB
    db[3:8, :] = 20.0                       # 0.3–0.8 s: too early for a background
    events = [RefEvent(0.3, 0.8, "dog"), RefEvent(2.0, 3.0, "dog"), RefEvent(5.0, 6.0, "bird")]
    split = split_of({"a.wav": events}, {"a.wav": 8.0})
    levels = onset_levels(split, {"a.wav": db / DB_PER_LOG}, timing)["a.wav"]
    assert set(levels) == set(events[1:])
    assert levels[events[1]] == pytest.approx(3.0) and levels[events[2]] == pytest.approx(12.0)
    dets = {"a.wav": [Detection("dog", 2.1, 3.0, 2.2), Detection("bird", 6.5, 7.0, 6.6)]}  # the bird is missed
    by_level = onset_scores(split, dets, ["dog", "bird"], {"a.wav": levels})["by_level"]
    assert by_level == {"edges_db": [2.0, 4.0, 6.0, 10.0], "found": [0, 1, 0, 0, 0], "total": [0, 1, 0, 0, 1]}
    assert "by_level" not in onset_scores(split, dets, ["dog", "bird"])


def test_jitter_and_latency_on_hand_made_events():
    split = split_of({"a.wav": [RefEvent(1.0, 3.0, "dog")]}, {"a.wav": 60.0})
    dets = {"a.wav": [Detection("dog", 1.05, 3.0, 1.15),   # the detection: latency at − onset = 0.15 s
                      Detection("dog", 2.0, 2.1, 2.05),    # short, but inside the reference: a fragment
                      Detection("dog", 4.0, 4.1, 4.05),    # short and spurious
                      Detection("bird", 10.0, 10.1, 10.05)]}  # short, spurious, a class with no events
    st = stream_scores(split, dets, ["dog", "bird"])
    assert st["on_per_min"] == pytest.approx(4.0) and st["ref_per_min"] == pytest.approx(1.0)
    assert st["excess_on_per_min"] == pytest.approx(3.0)
    assert st["short_spurious_per_min"] == pytest.approx(2.0)
    assert st["latency_median_s"] == pytest.approx(0.15) and st["latency_p90_s"] == pytest.approx(0.15)
    assert st["matched"] == 1 and st["matched_fraction"] == 1.0


def test_latency_per_class_with_the_smoother_s_wait():
    split = split_of({"a.wav": [RefEvent(1.0, 3.0, "dog"), RefEvent(5.0, 6.0, "dog"), RefEvent(8.0, 9.0, "bird"),
                                RefEvent(20.0, 21.0, "bird")]}, {"a.wav": 60.0})
    timing = FrameTiming(hop_s=0.01, centre0_s=0.016, ready0_s=0.032)  # a frame is ready 16 ms after its centre
    params = replace(SmootherParams.raw((0.5, 0.5)), onset_lag_s=(0.1, 0.0))
    # dog: candidates began at 1.2 and 5.0 (t back-dated by 0.1 s), decided at 1.5 and 5.1;
    # bird (no lag): began at 8.3, decided at once when ready; the second bird is missed
    dets = {"a.wav": [Detection("dog", 1.1, 3.0, 1.5), Detection("dog", 4.9, 6.0, 5.1),
                      Detection("bird", 8.3, 9.0, 8.316)]}
    wait = smoother_wait(params, ["dog", "bird"], timing)
    assert [wait(d) for d in dets["a.wav"]] == pytest.approx([0.284, 0.084, 0.0])
    st = stream_scores(split, dets, ["dog", "bird"], wait)
    dog, bird = st["per_class"]["dog"], st["per_class"]["bird"]
    assert dog["latency_median_s"] == pytest.approx(0.3) and dog["wait_median_s"] == pytest.approx(0.184)
    assert dog["matched"] == 2 and dog["matched_fraction"] == 1.0
    assert bird["latency_median_s"] == pytest.approx(0.316) and bird["wait_median_s"] == pytest.approx(0.0)
    assert bird["matched"] == 1 and bird["matched_fraction"] == 0.5
    assert st["latency_median_s"] == pytest.approx(0.316) and st["wait_median_s"] == pytest.approx(0.084)
    assert st["matched"] == 3 and stream_scores(split, dets, ["dog", "bird"])["wait_median_s"] is None
    assert st["per_class"]["dog"]["latency_p90_s"] == pytest.approx(0.1 + 0.9 * 0.4)  # of 0.5 and 0.1


def test_smoother_wait_is_the_minimum_duration_the_smoother_held_the_candidate_for():
    """On the real smoother: a step to 0.9 at 1 s held for min_on_s = 0.3 s before its ``on``."""
    timing = FrameTiming(hop_s=0.01, centre0_s=0.016, ready0_s=0.032)
    probs = np.zeros((300, 1), dtype=np.float32)
    probs[100:250] = 0.9
    params = SmootherParams(on_threshold=(0.5,), off_threshold=(0.5,), min_on_s=(0.3,), min_off_s=(0.0,),
                            onset_lag_s=(0.05,), offset_lag_s=(0.0,), offset_excess_db=(0.0,), dominance=(0.0,))
    [d] = smooth(probs, ["dog"], params, timing, 3.0)
    assert d.onset == pytest.approx(1.016 - 0.05)
    assert smoother_wait(params, ["dog"], timing)(d) == pytest.approx(0.3, abs=0.011)


def test_detection_places_tell_hits_mistimings_confusions_and_background():
    split = split_of({"a.wav": [RefEvent(1.0, 3.0, "dog"), RefEvent(5.0, 9.0, "music")]}, {"a.wav": 60.0})
    dets = {"a.wav": [Detection("dog", 1.15, 2.0, 1.2),     # onset within 200 ms: a hit
                      Detection("dog", 2.0, 2.5, 2.1),      # inside the dog, onset 1 s off
                      Detection("bird", 6.0, 7.0, 6.1),     # during music only: a confusion
                      Detection("dog", 8.5, 9.5, 8.6),      # during music, not a dog: a confusion too
                      Detection("music", 20.0, 21.0, 20.1)]}  # on nothing: background
    pl = detection_places(split, dets)
    assert pl["confusions"] == [["bird", "music", 1], ["dog", "music", 1]]
    del pl["confusions"]
    assert pl == pytest.approx({"onset_hit": 0.2, "same_label_onset_off": 0.2, "other_label_only": 0.4,
                                "no_reference": 0.2, "per_min": 5.0})
    assert detection_places(split, {})["onset_hit"] is None


def test_excess_is_per_class_and_never_negative():
    """A class that misses events does not cancel another class's extra events."""
    split = split_of({"a.wav": [RefEvent(1, 2, "dog"), RefEvent(3, 4, "dog"), RefEvent(5, 6, "dog")]}, {"a.wav": 30.0})
    dets = {"a.wav": [Detection("bird", t, t + 1, t) for t in (10, 12, 14)]}
    st = stream_scores(split, dets, ["dog", "bird"])
    assert st["excess_on_per_min"] == pytest.approx(6.0)
    assert [st["per_class"][k]["excess_on_per_min"] for k in ("dog", "bird")] == pytest.approx([0.0, 6.0])


def test_matching_takes_the_first_detection_within_the_event():
    refs = [RefEvent(1.0, 2.0, "dog"), RefEvent(2.5, 4.0, "dog")]
    early, inside, late = Detection("dog", 0.85, 1.2, 0.9), Detection("dog", 1.5, 1.9, 1.6), Detection("dog", 2.9, 3.5, 3.0)
    pairs = match_onsets(refs, [late, inside, early])
    assert pairs == [(refs[0], early), (refs[1], late)]
    assert match_onsets(refs, [Detection("dog", 0.7, 1.5, 0.8)]) == []  # 300 ms early: outside the collar
    assert match_onsets(refs, [Detection("cat", 1.0, 2.0, 1.0)]) == []


def test_merge_events_joins_same_label_overlaps_only():
    merged = merge_events([RefEvent(1, 3, "dog"), RefEvent(2, 4, "dog"), RefEvent(4, 5, "dog"),
                           RefEvent(2, 3, "bird"), RefEvent(6, 7, "dog")])
    assert merged == [RefEvent(1, 5, "dog"), RefEvent(2, 3, "bird"), RefEvent(6, 7, "dog")]


def _two_class_truth(timing, n, ref, share=1.0):
    """``[n, 2]`` (dog, bird) activity of the frames whose centres lie in the first ``share`` of a
    reference event of that label."""
    centres = timing.centre0_s + np.arange(n) * timing.hop_s
    return np.stack([np.any([(centres >= e.onset) & (centres < e.onset + share * (e.offset - e.onset))
                             for e in ref if e.label == k], axis=0)
                     for k in ("dog", "bird")], axis=1).astype(np.float32)


def test_psds_rewards_probabilities_that_follow_the_reference():
    timing = FrameTiming(0.01, 0.016, 0.032)
    n = 2000
    ref = [RefEvent(3.0, 6.0, "dog"), RefEvent(10.0, 12.0, "dog"), RefEvent(14.0, 15.0, "bird")]
    truth = _two_class_truth(timing, n, ref)
    split = split_of({"a.wav": ref}, {"a.wav": 20.05})
    good_probs = np.pad(0.1 + 0.8 * truth, ((0, 0), (0, 1)), constant_values=0.1)
    good = psds(split, {"a.wav": good_probs}, timing, ["dog", "bird", "water"])
    noise = psds(split, {"a.wav": np.random.default_rng(0).random((n, 3)).astype(np.float32)}, timing,
                 ["dog", "bird", "water"])
    assert good["psds1"] > 0.9 and noise["psds1"] < 0.5
    assert good["psds2"] > 0.9 and noise["psds2"] < 0.5
    assert good["classes"] == ["dog", "bird"]
    assert good["per_class"]["water"] is None and good["per_class_psds2"]["water"] is None
    dog_only = psds(split.only(["dog"]), {"a.wav": good_probs[:, :1]}, timing, ["dog"])
    assert dog_only["psds1"] > 0.9 and dog_only["psds2"] is None  # no other class to cross-trigger on


def test_psds2_is_lenient_on_boundaries_where_psds1_is_not():
    """Probabilities high over only the first quarter of each event: under PSDS1 (a detection
    must cover 70 % of its event) nothing is found; under PSDS2 (10 %) everything is. A flat
    score (one detection over the whole file, where each class covers under 10 % of it) is
    found under neither."""
    timing = FrameTiming(0.01, 0.016, 0.032)
    n = 12000
    ref = [RefEvent(2.0, 6.0, "dog"), RefEvent(38.0, 42.0, "bird"), RefEvent(84.0, 88.0, "dog")]
    head = _two_class_truth(timing, n, ref, share=0.25)
    split = split_of({"a.wav": ref}, {"a.wav": 120.05})
    got = psds(split, {"a.wav": 0.1 + 0.8 * head}, timing, ["dog", "bird"])
    flat = psds(split, {"a.wav": np.full((n, 2), 0.5, np.float32)}, timing, ["dog", "bird"])
    assert got["psds2"] > 0.9 and got["psds1"] < 0.1
    assert flat["psds2"] < 0.1 and flat["psds1"] < 0.1


def test_psds2_counts_a_class_that_fires_on_another_class_against_it():
    """A dog that also rises on the bird's events (cross-triggers) lowers PSDS2 below the clean
    system's: scenario 2 adds alpha_ct times the cross-trigger rate to the false-positive rate.
    The file is long enough (the dog covers 5 % of it) that one detection over the whole file
    is not a true positive under the 10 % tolerances."""
    timing = FrameTiming(0.01, 0.016, 0.032)
    n = 12000
    ref = [RefEvent(2.0, 4.0, "dog"), RefEvent(6.0, 8.0, "bird"), RefEvent(10.0, 12.0, "dog"),
           RefEvent(14.0, 16.0, "bird"), RefEvent(20.0, 22.0, "bird"), RefEvent(26.0, 28.0, "dog")]
    truth = _two_class_truth(timing, n, ref)
    clean = 0.1 + 0.8 * truth
    crossed = clean.copy()
    crossed[:, 0] = np.maximum(crossed[:, 0], 0.1 + 0.85 * truth[:, 1])  # the dog fires on birds, above its own level
    split = split_of({"a.wav": ref}, {"a.wav": 120.05})
    good = psds(split, {"a.wav": clean}, timing, ["dog", "bird"])
    bad = psds(split, {"a.wav": crossed}, timing, ["dog", "bird"])
    assert bad["per_class_psds2"]["dog"] < good["per_class_psds2"]["dog"] - 0.05
    assert bad["psds2"] < good["psds2"]


# --------------------------------------------------------------- the streaming path and caching


def test_smoothing_cached_probs_equals_the_pipeline(model, bursts_wav):
    run = stream_file(model, Path(bursts_wav), model.info.smoother)
    assert run.probs.shape == (1 + (6 * SR - 512) // 160, len(model.info.labels)) and run.t_end == 6.0
    assert run.detections, "the fixture model should produce events on tone bursts"
    again = smooth(run.probs, model.info.labels, model.info.smoother, FrameTiming.of_frontend(model.info.frontend),
                   run.t_end)
    assert again == run.detections


def test_backdating_equals_the_smoother_lag(model, bursts_wav):
    info = model.info
    run = stream_file(model, Path(bursts_wav), info.smoother)
    timing = FrameTiming.of_frontend(info.frontend)
    n = len(info.labels)
    base = replace(info.smoother, onset_lag_s=(0.0,) * n, offset_lag_s=(0.0,) * n)
    lags = {label: 0.01 * (k + 1) for k, label in enumerate(info.labels)}
    off_lags = {label: 0.05 * (k + 1) for k, label in enumerate(info.labels)}
    lagged = replace(base, onset_lag_s=tuple(lags[label] for label in info.labels),
                     offset_lag_s=tuple(off_lags[label] for label in info.labels))
    direct = smooth(run.probs, info.labels, lagged, timing, run.t_end)
    shifted = backdate({"f": smooth(run.probs, info.labels, base, timing, run.t_end)}, lags, off_lags,
                       {"f": run.t_end})["f"]
    assert sorted(shifted, key=lambda d: (d.label, d.onset)) == sorted(direct, key=lambda d: (d.label, d.onset))
    assert any(d.offset < b.offset for d, b in zip(sorted(direct, key=lambda d: (d.label, d.onset)),
                                                   sorted(smooth(run.probs, info.labels, base, timing, run.t_end),
                                                          key=lambda d: (d.label, d.onset))))


def test_onset_lag_is_the_median_delay_of_matched_events():
    split = split_of({"a.wav": [RefEvent(1, 2, "dog"), RefEvent(3, 4, "dog"), RefEvent(5, 6, "dog"),
                                RefEvent(1, 2, "bird")]}, {"a.wav": 10.0})
    dets = {"a.wav": [Detection("dog", 1.1, 2, 1.2), Detection("dog", 3.3, 4, 3.4), Detection("dog", 5.4, 6, 5.5),
                      Detection("bird", 0.9, 2, 1.0)]}
    assert onset_lags(split, dets, ["dog", "bird", "water"]) == pytest.approx({"dog": 0.3, "bird": 0.0, "water": 0.0})


def test_offset_lag_is_the_smallest_shift_that_brings_the_most_offsets_into_the_collar():
    refs = [RefEvent(t, t + 1, "dog") for t in (1, 3, 5, 7)] + [RefEvent(1, 2, "bird"), RefEvent(9, 10, "bird")]
    split = split_of({"a.wav": refs}, {"a.wav": 10.0})
    dets = {"a.wav": [Detection("dog", 1.0, 2.5, 1.1), Detection("dog", 3.1, 4.5, 3.2), Detection("dog", 5.0, 6.58, 5.1),
                      Detection("dog", 7.0, 8.0, 7.1),  # on time: lost once the shift passes 0.2 s
                      Detection("dog", 5.6, 9.0, 5.7),  # onset off by 0.6 s: not an onset match, left out
                      Detection("bird", 1.0, 2.1, 1.1),  # early enough already
                      Detection("bird", 9.0, 10.0, 9.1)]}  # still on at the end of the file: never moved
    lags = offset_lags(split, dets, ["dog", "bird", "water"], {"a.wav": 10.0})
    # dog: late by 0.5, 0.5, 0.58 and 0 s; shifts 0.4-0.7 put the first three within 0.2 s, 0.4 is the smallest
    assert lags == pytest.approx({"dog": 0.4, "bird": 0.0, "water": 0.0})


def test_onset_lag_leaves_out_late_detections_inside_long_events():
    split = split_of({"a.wav": [RefEvent(1, 9, "dog"), RefEvent(10, 18, "dog"), RefEvent(20, 21, "dog")]},
                     {"a.wav": 25.0})
    dets = {"a.wav": [Detection("dog", 4.0, 9, 4.1), Detection("dog", 13.5, 18, 13.6), Detection("dog", 20.2, 21, 20.3)]}
    assert onset_lags(split, dets, ["dog"]) == pytest.approx({"dog": 0.2})


# --------------------------------------------------------------- dataset loading


def test_load_split_reads_files_and_reference(dataset):
    split = load_split(dataset, "test")
    assert sorted(split.paths) == ["bursts3.wav", "bursts4.wav", "quiet.wav"]
    assert split.durations["bursts3.wav"] == pytest.approx(6.0) and split.reference["quiet.wav"] == []
    assert split.reference["bursts3.wav"][0] == RefEvent(0.7, 1.5, "music")


def test_load_split_errors_are_clear(dataset, tmp_path):
    with pytest.raises(EvalError, match="not found"):
        load_split(tmp_path, "test")
    with pytest.raises(EvalError, match="'kazoo' is not one of"):
        (tmp_path / "metadata").mkdir()
        (tmp_path / "audio" / "test").mkdir(parents=True)
        shutil.copy(dataset / "audio" / "test" / "quiet.wav", tmp_path / "audio" / "test")
        (tmp_path / "metadata" / "test.tsv").write_text("filename\tonset\toffset\tevent_label\nquiet.wav\t1\t2\tkazoo\n")
        load_split(tmp_path, "test", labels=("dog",))


def _manifest(root: Path, clips: list) -> None:
    """``root/manifest.json`` as ``rttag data build`` writes it, with ``clips`` of the test split."""
    (root / "manifest.json").write_text(json.dumps({"seed": 0, "splits": {"test": {"clips": clips}}}))


def _clip(name: str, *sources: tuple[str, str, str], events: list | None = None) -> dict:
    """A manifest clip; ``events``: (onset, offset, label, [(package, path), ...]) per event."""
    clip = {"file": f"audio/test/{name}", "duration_s": 6.0,
            "sources": [{"label": label, "package": package, "path": path} for label, package, path in sources]}
    if events is not None:
        clip["events"] = [{"onset": a, "offset": b, "label": label,
                           "sources": [{"package": package, "path": path} for package, path in srcs]}
                          for a, b, label, srcs in events]
    return clip


def _burst_events(*music: tuple[str, str]) -> list:
    """BURSTS as manifest events: the two music bursts from ``music``'s recordings, the alarm and the
    speech burst from one recording each."""
    srcs = {0: [music[0]], 1: [("p", "bell.ogg")], 2: [music[-1]], 3: [("p", "talk.ogg")]}
    return [(a, b, label, srcs[i]) for i, (a, b, label) in enumerate(BURSTS)]


def test_load_split_reads_the_source_recordings_from_the_manifest(dataset, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(dataset, root)
    assert load_split(root, "test").recordings == {}  # no manifest
    clips = [_clip("bursts3.wav", ("background", "p", "rain.ogg"), ("music", "p", "a.ogg"), ("music", "q", "b.ogg")),
             _clip("bursts4.wav", ("music", "p", "a.ogg"))]
    _manifest(root, clips)
    assert load_split(root, "test").recordings == {}  # quiet.wav is not listed: no partial weights
    _manifest(root, clips + [_clip("quiet.wav", ("background", "p", "rain.ogg"))])
    split = load_split(root, "test")
    assert split.recordings["bursts3.wav"] == {"background": ["p:rain.ogg"], "music": ["p:a.ogg", "q:b.ogg"]}
    assert split.only(["speech"]).recordings == split.recordings
    assert not split.events_attributed and all(e.sources == () for e in split.reference["bursts3.wav"])
    # the events with the recordings mixed into each: bursts3's two music bursts from two recordings
    burst_sources = ("background", "p", "rain.ogg"), ("music", "p", "a.ogg"), ("alarm", "p", "bell.ogg"), \
        ("speech", "p", "talk.ogg")
    _manifest(root, [_clip("bursts3.wav", *burst_sources, ("music", "q", "b.ogg"),
                           events=_burst_events(("p", "a.ogg"), ("q", "b.ogg"))),
                     _clip("bursts4.wav", *burst_sources, events=_burst_events(("p", "a.ogg"))),
                     _clip("quiet.wav", ("background", "p", "rain.ogg"), events=[])])
    split = load_split(root, "test")
    assert split.events_attributed
    assert [(e.label, e.sources) for e in split.reference["bursts3.wav"]] == [
        ("music", ("p:a.ogg",)), ("alarm", ("p:bell.ogg",)), ("music", ("q:b.ogg",)), ("speech", ("p:talk.ogg",))]
    assert split.only(["music"]).reference["bursts3.wav"][1].sources == ("q:b.ogg",)
    assert load_split(root, "validation").recordings == {}  # the manifest has no validation clips
    (root / "manifest.json").write_text('{"splits": {"test": {"clips": [{"file": "x"}]}}}')
    with pytest.raises(EvalError, match="cannot read the clips of split 'test'"):
        load_split(root, "test")
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(EvalError, match="manifest.json: cannot read"):
        load_split(root, "test")


# --------------------------------------------------------------- the commands


def test_eval_command_prints_the_table_and_writes_json_and_plots(dataset, model_path, tmp_path):
    out = tmp_path / "eval.json"
    proc = run_rttag("eval", "--data", str(dataset), "--models", str(model_path), "--json", str(out),
                     "--plots", str(tmp_path / "img"), "--roll-file", "bursts3.wav")
    assert proc.returncode == 0, proc.stderr.decode()
    table = proc.stdout.decode()
    assert table.startswith("| system | smoother | event F1 micro")
    assert "| test-gru | tuned |" in table and "| test-gru | raw |" in table and "silero-vad (speech only)" in table
    doc = json.loads(out.read_text())
    assert set(doc["systems"]) == {"test-gru/tuned", "test-gru/raw", "silero-vad/streaming", "silero-vad/raw"}
    assert doc["files"] == 3 and doc["minutes"] == pytest.approx(0.3)
    tuned, raw = doc["systems"]["test-gru/tuned"]["scores"], doc["systems"]["test-gru/raw"]["scores"]
    assert tuned["psds"] == raw["psds"]  # one set of probabilities, two smoothers
    assert "| PSDS1 | PSDS2 |" in table and 0.0 <= tuned["psds"]["psds2"] <= 1.0
    assert doc["settings"]["psds2"]["cttc_threshold"] == 0.3
    assert "Speech only" in table and tuned["speech"]["event_f1"] == tuned["event"]["per_class"]["speech"]["f1"]
    silero = doc["systems"]["silero-vad/streaming"]["scores"]
    assert silero["speech"]["segment_f1"] == silero["segment"]["micro_f1"]
    assert silero["psds"]["psds1"] is not None and silero["psds"]["psds2"] is None  # speech alone: no cross-triggers
    assert raw["stream"]["on_per_min"] >= tuned["stream"]["on_per_min"]
    assert "Where the detections fall" in table
    assert "Offsets of the events found by their onset" in table and "Reference events found by their onset" in table
    lv_tuned, lv_raw = tuned["event"]["onset_only"]["by_level"], raw["event"]["onset_only"]["by_level"]
    assert lv_tuned["total"] == lv_raw["total"] and sum(lv_tuned["total"]) > 0  # one level per event, any smoother
    assert all(f <= t for f, t in zip(lv_tuned["found"], lv_tuned["total"]))
    for off in (tuned["event"]["onset_only"]["offsets"]["all"], raw["event"]["onset_only"]["offsets"]["all"]):
        assert off["in_collar"] + off["late"] + off["early"] == off["matched"]
    assert "Micro F1, resampling the files" in table and "Event F1 per class with its 95 % interval" in table
    assert doc["settings"]["bootstrap_rounds"] == 2000
    # the tone-burst dataset has no manifest.json: the intervals say they resample files only
    assert doc["settings"]["bootstrap_unit"] == "file" and doc["settings"]["bootstrap_recordings"] == 0
    assert "resample files only" in proc.stderr.decode()
    for s in doc["systems"].values():
        for kind in ("event", "segment"):
            low, high = s["scores"][kind]["micro_f1_ci95"]
            assert low <= s["scores"][kind]["micro_f1"] <= high
        for pc in s["scores"]["event"]["per_class"].values():
            if pc["n_ref"]:
                assert pc["f1_ci95"][0] <= (pc["f1"] or 0.0) <= pc["f1_ci95"][1]
            else:
                assert "f1_ci95" not in pc
    assert raw["event"]["vs_first"]["system"] == "test-gru/tuned" and "vs_first" not in silero["event"]
    assert "Jitter and latency, resampling the files" in table
    assert "Decision latency per class" in table and "Excess `on` events per minute per class" in table
    for st in (tuned["stream"], raw["stream"]):  # the jitter figure is the per-class excesses' sum
        assert sum(pc["excess_on_per_min"] for pc in st["per_class"].values()) == pytest.approx(st["excess_on_per_min"])
    assert raw["stream"]["wait_median_s"] in (None, 0.0)  # raw thresholding decides on the first frame
    assert set(tuned["stream"]["per_class"]) == set(doc["systems"]["test-gru/tuned"]["params"]["on_threshold"])
    assert sum(pc["matched"] for pc in tuned["stream"]["per_class"].values()) == tuned["stream"]["matched"]
    for st in (tuned["stream"], raw["stream"], silero["stream"]):
        low, high = st["excess_on_per_min_ci95"]
        assert low <= st["excess_on_per_min"] <= high
    assert raw["stream"]["vs_first"]["system"] == "test-gru/tuned" and "vs_first" not in silero["stream"]
    for places in (tuned["places"], raw["places"]):
        assert sum(places[k] for k in PLACES) == pytest.approx(1.0) and places["per_min"] > 0
    # silero-vad is scored on speech, but its detections are placed against every label's reference
    assert silero["places"]["per_min"] == pytest.approx(silero["stream"]["on_per_min"])
    for name in ("event-roll.png", "per-class-f1.png"):
        assert (tmp_path / "img" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_models_that_share_a_name_are_told_apart_by_file(dataset, model_path, tmp_path):
    assert system_names(["crnn", "crnn", "frame-mlp"], [Path("runs/a.onnx"), Path("runs/b.onnx"), Path("m.onnx")]) \
        == ["a", "b", "frame-mlp"]
    assert system_names(["crnn", "crnn"], [Path("x/m.onnx"), Path("y/m.onnx")]) == ["x/m.onnx", "y/m.onnx"]
    for name in ("a.onnx", "b.onnx"):
        shutil.copy(model_path, tmp_path / name)
    out = tmp_path / "eval.json"
    proc = run_rttag("eval", "--data", str(dataset), "--models", f"{tmp_path / 'a.onnx'},{tmp_path / 'b.onnx'}",
                     "--no-silero", "--json", str(out))
    assert proc.returncode == 0, proc.stderr.decode()
    doc = json.loads(out.read_text())
    assert set(doc["systems"]) == {"a/tuned", "a/raw", "b/tuned", "b/raw"}
    a, b = doc["systems"]["a/tuned"]["scores"], doc["systems"]["b/tuned"]["scores"]
    for kind in ("event", "segment"):
        assert b[kind].pop("vs_first") == {"system": "a/tuned", "diff": 0.0, "ci95": [0.0, 0.0]}
    assert b["stream"].pop("vs_first") == {"system": "a/tuned", "ratio": 1.0, "ci95": [1.0, 1.0]}
    assert a == b  # the same weights


def test_per_recording_counts_each_event_for_the_recordings_mixed_into_it():
    ref = {"a.wav": [RefEvent(1.0, 2.0, "dog", ("rex",)), RefEvent(4.0, 5.0, "dog", ("rex",))],
           "b.wav": [RefEvent(1.0, 2.0, "dog", ("fido",))],
           "c.wav": [RefEvent(1.0, 2.0, "dog", ("fido",)), RefEvent(4.0, 5.0, "dog", ("rex", "fido")),
                     RefEvent(3.0, 4.0, "bird", ("tit",))],
           "d.wav": [RefEvent(6.0, 7.0, "bird", ("tit",))]}
    recordings = {"a.wav": {"dog": ["rex"]}, "b.wav": {"dog": ["fido"]}, "c.wav": {"dog": ["rex", "fido"], "bird": ["tit"]},
                  "d.wav": {"background": ["rain"], "bird": ["tit"]}}
    split = split_of(ref, dict.fromkeys(ref, 8.0), recordings)
    dets = {"a.wav": [Detection("dog", 1.0, 2.0, 1.1)], "c.wav": [Detection("dog", 4.0, 5.0, 4.1)],
            "d.wav": [Detection("bird", 6.0, 7.0, 6.1), Detection("dog", 6.0, 7.0, 6.1)]}
    scores = score_system(split, dets, ["dog", "bird", "water"], None)
    assert scores["event"]["hits"]["c.wav"] == {"dog": [0, 1], "bird": [0]}
    pr = scores["event"]["per_recording"]
    # c.wav's second dog mixes both recordings and is found: a hit for each, but for neither alone;
    # d.wav's dog is a false alarm of no one's
    assert pr["dog"] == {"fido": [1, 3, 2, 0, 2], "rex": [2, 3, 2, 1, 2]}
    assert pr["bird"] == {"tit": [1, 2, 2, 1, 2]} and pr["water"] == {}
    table = format_table({"m/tuned": {"system": "m", "smoother": "tuned", "scores": scores}})
    assert "| m | tuned | 1/2 | 1/1 |  |" in table.splitlines()  # recognised alone: rex, not fido
    bird_only = score_system(split.only(["bird"]), {n: [d for d in ds if d.label == "bird"] for n, ds in dets.items()},
                             ["bird"], None)  # a peer scored on one label
    listing = format_recordings({"m/tuned": {"system": "m", "smoother": "tuned", "scores": scores},
                                 "p/streaming": {"system": "p", "smoother": "streaming", "scores": bird_only}}).splitlines()
    assert "| label | source recording | files | events (alone) | m (tuned) hits (alone) | p (streaming) hits (alone) |" \
        in listing
    assert "| dog | fido | 2 | 3 (2) | 1 (0) |  |" in listing and "| bird | tit | 2 | 2 (2) | 1 (1) | 1 (1) |" in listing
    unattributed = {n: [RefEvent(e.onset, e.offset, e.label) for e in evs] for n, evs in ref.items()}
    assert "per_recording" not in score_system(split_of(unattributed, dict.fromkeys(ref, 8.0), recordings), dets,
                                               ["dog", "bird"], None)["event"]
    assert "per_recording" not in score_system(split_of(ref, dict.fromkeys(ref, 8.0)), dets, ["dog", "bird"], None)["event"]


def test_event_hits_are_sed_evals_optimal_matching():
    """Two dogs, two detections: the first detection fits both dogs, the second only the first dog.
    Greedy matching would give the first dog to the first detection and miss the second; sed_eval's
    optimal matching finds both, and event_hits says which."""
    ref = {"a.wav": [RefEvent(1.0, 2.0, "dog"), RefEvent(1.15, 2.15, "dog"), RefEvent(5.0, 6.0, "bird")]}
    dets = {"a.wav": [Detection("dog", 1.1, 2.1, 1.2), Detection("dog", 0.9, 1.9, 1.0)]}
    split = Split("test", {"a.wav": Path("a.wav")}, {"a.wav": 8.0}, ref)  # not merged: two overlapping dogs
    scores = sed_scores(split, dets, ["dog", "bird"])
    assert scores["event"]["per_class"]["dog"]["n_tp"] == 2
    assert scores["event"]["hits"] == {"a.wav": {"dog": [1, 1], "bird": [0]}}


def test_eval_command_resamples_source_recordings_where_the_manifest_lists_them(dataset, model_path, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(dataset, root)
    bursts = ("music", "p", "a.ogg"), ("alarm", "p", "bell.ogg"), ("speech", "p", "talk.ogg")
    _manifest(root, [_clip("bursts3.wav", ("background", "p", "rain.ogg"), *bursts, events=_burst_events(("p", "a.ogg"))),
                     _clip("bursts4.wav", ("background", "p", "wind.ogg"), *bursts, events=_burst_events(("p", "a.ogg"))),
                     _clip("quiet.wav", ("background", "p", "rain.ogg"), events=[])])
    docs = {}
    for unit in ("recording", "file"):
        out = tmp_path / f"{unit}.json"
        proc = run_rttag("eval", "--data", str(root), "--models", str(model_path), "--no-silero", "--bootstrap", "300",
                         "--bootstrap-unit", unit, "--json", str(out), "--per-recording")
        assert proc.returncode == 0, proc.stderr.decode()
        assert "resample files only" not in proc.stderr.decode()
        assert "does not say which recordings" not in proc.stderr.decode()
        heading = {"recording": "resampling files and source recordings", "file": "resampling the files"}[unit]
        assert f"Micro F1, {heading}" in proc.stdout.decode()
        docs[unit] = json.loads(out.read_text())
        assert docs[unit]["settings"]["bootstrap_unit"] == unit
    assert docs["recording"]["settings"]["bootstrap_recordings"] == 5 and docs["file"]["settings"]["bootstrap_recordings"] == 0
    assert docs["file"]["source_recordings"] == {"alarm": 1, "background": 2, "music": 1, "speech": 1}
    labels = list(docs["file"]["systems"]["test-gru/tuned"]["scores"]["event"]["per_class"])
    row = "| distinct source recordings | | " + " | ".join(
        "1" if k in ("music", "alarm", "speech") else "0" for k in labels) + " |"
    assert row in proc.stdout.decode().splitlines()
    by_rec, by_file = (docs[u]["systems"]["test-gru/tuned"]["scores"] for u in ("recording", "file"))
    assert set(by_rec["event"]["per_recording"]["music"]) == {"p:a.ogg"}  # one music recording, in two files
    assert by_rec["event"]["per_recording"]["music"]["p:a.ogg"][1:3] == [4, 2]  # 4 events, in 2 files
    tuned_hits, raw_hits = (docs["file"]["systems"][f"test-gru/{k}"]["scores"]["event"]["per_recording"]["music"]["p:a.ogg"][0]
                            for k in ("tuned", "raw"))
    assert f"| music | p:a.ogg | 2 | 4 (4) | {tuned_hits} ({tuned_hits}) | {raw_hits} ({raw_hits}) |" \
        in proc.stdout.decode().splitlines()  # --per-recording
    assert docs["recording"]["settings"]["events_attributed"] is True
    assert by_rec["event"]["micro_f1"] == by_file["event"]["micro_f1"]  # the same figure, other intervals
    for scores in (by_rec, by_file):
        low, high = scores["event"]["micro_f1_ci95"]
        assert low <= scores["event"]["micro_f1"] <= high
    # a manifest written before the events' recordings were: each event weighs its label's recordings in its file
    _manifest(root, [_clip("bursts3.wav", ("background", "p", "rain.ogg"), *bursts),
                     _clip("bursts4.wav", ("background", "p", "wind.ogg"), *bursts),
                     _clip("quiet.wav", ("background", "p", "rain.ogg"))])
    out = tmp_path / "old.json"
    proc = run_rttag("eval", "--data", str(root), "--models", str(model_path), "--no-silero", "--bootstrap", "300",
                     "--json", str(out), "--per-recording")
    assert proc.returncode == 0, proc.stderr.decode()
    assert "does not say which recordings each event" in proc.stderr.decode()
    assert "--per-recording" in proc.stderr.decode() and "Reference events per source recording" not in proc.stdout.decode()
    old = json.loads(out.read_text())
    assert old["settings"]["bootstrap_unit"] == "recording" and old["settings"]["events_attributed"] is False
    old_scores = old["systems"]["test-gru/tuned"]["scores"]
    assert "per_recording" not in old_scores["event"]
    # each file holds one recording per label here, so the weights are the same as the events'
    assert old_scores["event"]["micro_f1_ci95"] == by_rec["event"]["micro_f1_ci95"]


def test_eval_command_errors_are_one_line(dataset, model_path, tmp_path):
    proc = run_rttag("eval", "--data", str(tmp_path), "--models", "no-such-model")
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and len(err) == 1 and err[0].startswith("rttag: error: no model")
    proc = run_rttag("eval", "--data", str(tmp_path), "--models", f"{model_path},{model_path}")
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and len(err) == 1 and "more than once" in err[0], err


def fallback_params(n: int) -> SmootherParams:
    """The smoother a model's metadata would hold before tuning, for ``n`` classes."""
    return SmootherParams((0.5,) * n, (0.5,) * n, (0.1,) * n, (0.2,) * n, (0.0,) * n, (0.0,) * n)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_tune_keeps_the_latency_budget_unless_nothing_meets_it(objective):
    """Three 3 s dog events the model tracks exactly, and four 150 ms blips. A 0.2 s minimum
    duration removes the blips (event F1 1.0) but decides 0.2 s late; with min_on_s ≤ 0.1 the
    blips stay (F1 0.6). The latency budget decides which one the tuner takes."""
    timing = FrameTiming.of_frontend(FrontendParams())
    duration, events, blips = 20.0, [(2.0, 5.0), (8.0, 11.0), (14.0, 17.0)], [0.5, 6.5, 12.5, 18.5]
    centres = timing.centre0_s + np.arange(int(duration / timing.hop_s) - 3) * timing.hop_s
    p = np.full(len(centres), 0.01, np.float32)
    for a, b in events:
        p[(centres >= a) & (centres < b)] = 0.99
    for a in blips:
        p[(centres >= a) & (centres < a + 0.15)] = 0.99
    split = split_of({"a.wav": [RefEvent(a, b, "dog") for a, b in events]}, {"a.wav": duration})
    logmel = np.full((len(centres), 64), -12.0, np.float32)
    logmel[p > 0.5] = -2.0
    runs = {"a.wav": FileRun(p[:, None], logmel, [], duration)}
    fallback = fallback_params(1)
    fast, fast_report, _ = choose(split, runs, ["dog"], timing, fallback, max_latency_s=0.15, objective=objective)
    assert fast.min_on_s[0] <= 0.1 and fast_report["dog"]["within_budget"]
    assert fast_report["dog"]["latency_s"] <= 0.15 and fast_report["dog"]["event_f1"] == pytest.approx(0.6)
    slow, slow_report, summary = choose(split, runs, ["dog"], timing, fallback, max_latency_s=10.0,
                                        objective=objective)
    assert slow.min_on_s[0] >= 0.2 and slow_report["dog"]["event_f1"] == pytest.approx(1.0)
    assert slow_report["dog"]["latency_s"] > 0.15
    assert summary["micro_f1"] == summary["class_micro_f1"] == pytest.approx(1.0)  # one class: the same optimum
    # A budget nothing meets: the best setting regardless of latency, flagged as over budget.
    none, none_report, _ = choose(split, runs, ["dog"], timing, fallback, max_latency_s=0.0, objective=objective)
    assert none_report["dog"]["event_f1"] == pytest.approx(1.0) and not none_report["dog"]["within_budget"]
    assert none_report["dog"]["latency_s"] >= 0.2 and none_report["dog"]["budget_s"] == 0.0
    # --over-budget nearest: the budget is raised only as far as the quickest setting needs, so the
    # blips stay (F1 0.6) rather than a 0.2 s wait; still reported as over the asked budget.
    for how in ("nearest", "nearest-late"):  # stage 2 brings no setting within 0 s either: the same raise
        near, near_report, _ = choose(split, runs, ["dog"], timing, fallback, max_latency_s=0.0, objective=objective,
                                      over_budget=how)
        r = near_report["dog"]
        assert not r["within_budget"] and 0.0 < r["budget_s"] <= 0.15 and r["latency_s"] <= r["budget_s"]
        assert near.min_on_s[0] <= 0.1 and r["event_f1"] == pytest.approx(0.6)
    assert "(budget raised to" in format_choice(["dog"], near, near_report)
    assert "(over budget)" in format_choice(["dog"], none, none_report)
    assert "val recordings" not in format_choice(["dog"], none, none_report)  # the dataset does not list them
    table = format_choice(["dog"], none, none_report, {"dog": 2, "background": 1}).splitlines()
    assert table[0].endswith("| val events | val recordings |") and table[2].endswith(" 2 |")
    with pytest.raises(TuneError, match="over_budget 'closest'"):
        choose(split, runs, ["dog"], timing, fallback, over_budget="closest")


def test_tune_on_a_split_joined_with_sounds_of_none_of_the_labels_keeps_the_class_off_them():
    """Three dog events the model tracks at 0.9, and a file of other sounds where its dog
    probability rises to 0.6 for 1 s at a time. On the dog file alone every on-threshold up to
    0.8 scores event F1 1.0; joined with the other file (no events: ``rttag tune --others``) only
    a threshold above 0.6 does, and that is what the tuner takes."""
    timing = FrameTiming.of_frontend(FrontendParams())
    duration = 20.0
    centres = timing.centre0_s + np.arange(int(duration / timing.hop_s) - 3) * timing.hop_s

    def probs(spans, p_on):
        p = np.full(len(centres), 0.01, np.float32)
        for a, b in spans:
            p[(centres >= a) & (centres < b)] = p_on
        return p

    events = [(2.0, 5.0), (8.0, 11.0), (14.0, 17.0)]
    dog = split_of({"a.wav": [RefEvent(a, b, "dog") for a, b in events]}, {"a.wav": duration})
    others = split_of({}, {"others_0.wav": duration})
    joined = dog.joined(others, "others/")
    assert list(joined.paths) == ["a.wav", "others/others_0.wav"] and joined.reference["others/others_0.wav"] == []
    logmel = np.full((len(centres), 64), -12.0, np.float32)
    runs = {"a.wav": FileRun(probs(events, 0.9)[:, None], logmel, [], duration),
            "others/others_0.wav": FileRun(probs([(3.0, 4.0), (9.0, 10.0), (15.0, 16.0)], 0.6)[:, None], logmel,
                                           [], duration)}
    fallback = fallback_params(1)
    fired = smooth_runs(runs, ["dog"], fallback, timing)["others/others_0.wav"]
    assert len(fired) == 3  # at the untuned 0.5 the other sounds are named dog
    params, report, _ = choose(joined, runs, ["dog"], timing, fallback, max_latency_s=1.0)
    assert params.on_threshold[0] > 0.6 and report["dog"]["event_f1"] == pytest.approx(1.0)
    assert smooth_runs(runs, ["dog"], params, timing)["others/others_0.wav"] == []
    with pytest.raises(EvalError, match="in both"):
        joined.joined(others, "others/")


def test_tune_warns_of_a_class_tuned_on_few_recordings(caplog):
    report = {label: {"tuned": tuned} for label, tuned in (("dog", True), ("bird", True), ("door", False))}
    with caplog.at_level("WARNING", logger="rttag.tune"):
        few = warn_few_recordings(["dog", "bird", "door"], report, {"dog": 2, "bird": FEW_RECORDINGS, "door": 1})
    assert few == ["dog"]  # door has no tuning events: kept, nothing to warn of
    assert [r.getMessage() for r in caplog.records] == [
        "dog: its setting rests on 2 source recording(s) of the tuning split; a setting chosen on few sources "
        "often does not carry to others"]
    assert warn_few_recordings(["dog"], report, {}) == []  # recordings not listed: no claim either way


def ramp_fixture(rise_s: float) -> tuple[Split, dict, FrameTiming]:
    """Three 3 s bird events whose probability ramps from 0.01 to 0.99 over ``rise_s`` seconds,
    and four 150 ms blips at 0.55: thresholds over 0.55 drop the blips (event F1 1.0) but
    cross later."""
    timing = FrameTiming.of_frontend(FrontendParams())
    duration, events, blips = 20.0, [(2.0, 5.0), (8.0, 11.0), (14.0, 17.0)], [0.5, 6.5, 12.5, 18.5]
    centres = timing.centre0_s + np.arange(int(duration / timing.hop_s) - 3) * timing.hop_s
    p = np.full(len(centres), 0.01, np.float32)
    for a, b in events:
        inside = (centres >= a) & (centres < b)
        p[inside] = np.clip(0.01 + (centres[inside] - a) / rise_s * 0.98, 0.01, 0.99)
    for a in blips:
        p[(centres >= a) & (centres < a + 0.15)] = 0.55
    split = split_of({"a.wav": [RefEvent(a, b, "bird") for a, b in events]}, {"a.wav": duration})
    logmel = np.full((len(centres), 64), -12.0, np.float32)
    logmel[p > 0.3] = -2.0
    return split, {"a.wav": FileRun(p[:, None], logmel, [], duration)}, timing


def test_tune_nearest_late_keeps_thresholds_that_stage_2_brings_near_the_budget():
    """A 100 ms rise: with stage 1's min_on 0.1 s no threshold meets a 0.1 s budget.
    ``nearest`` raises the budget in stage 1 to the quickest stage-1 setting, a low threshold,
    so the blips stay; ``nearest-late`` keeps the best thresholds, lets stage 2 drop min_on and
    raises the budget only as far as that needs; ``best`` keeps the thresholds too, but not the
    quicker wait."""
    split, runs, timing = ramp_fixture(0.1)
    tuned = {how: choose(split, runs, ["bird"], timing, fallback_params(1), max_latency_s=0.1, over_budget=how)
             for how in ("best", "nearest", "nearest-late")}
    near, late, best = tuned["nearest"][1]["bird"], tuned["nearest-late"][1]["bird"], tuned["best"][1]["bird"]
    assert tuned["nearest"][0].on_threshold[0] < 0.55 and near["event_f1"] == pytest.approx(0.6)
    assert tuned["nearest-late"][0].on_threshold[0] > 0.55 and late["event_f1"] == pytest.approx(1.0)
    assert not late["within_budget"] and 0.1 < late["latency_s"] <= late["budget_s"] <= 0.1 + 0.05 + 1e-9
    assert tuned["nearest-late"][0].min_on_s[0] == 0.0
    assert best["event_f1"] == pytest.approx(1.0) and best["latency_s"] > late["budget_s"]


def test_tune_durations_at_both_finds_thresholds_a_shorter_wait_brings_within_the_budget():
    """A 100 ms rise and a 0.15 s budget: with stage 1's min_on 0.1 s only thresholds under the
    blips (0.55) decide within it, so stage 2 at the best of those keeps the blips (event F1
    0.6). ``durations_at="both"`` also scores durations at the best thresholds at any latency
    (over the blips), where min_on 0 decides within the budget: event F1 1.0."""
    split, runs, timing = ramp_fixture(0.1)
    tuned = {at: choose(split, runs, ["bird"], timing, fallback_params(1), max_latency_s=0.15, durations_at=at)
             for at in ("best", "both")}
    best, both = tuned["best"][1]["bird"], tuned["both"][1]["bird"]
    assert tuned["best"][0].on_threshold[0] < 0.55 and best["event_f1"] == pytest.approx(0.6) and best["within_budget"]
    assert tuned["both"][0].on_threshold[0] > 0.55 and both["event_f1"] == pytest.approx(1.0) and both["within_budget"]
    assert tuned["both"][0].min_on_s[0] < 0.1
    with pytest.raises(TuneError, match="durations_at 'all'"):
        choose(split, runs, ["bird"], timing, fallback_params(1), durations_at="all")


def test_tune_stage1_min_on_0_judges_the_thresholds_without_stage_1_s_wait():
    """A 100 ms rise and a 0.15 s budget, stage 2 at the best thresholds within the budget only:
    scored in stage 1 with min_on 0.1 s, only thresholds under the blips (0.55) decide within it
    (event F1 0.6); scored with min_on 0, those over the blips do (event F1 1.0). Stage 2 then
    also scores the pair (0.1 s, 0.2 s) that stage 1 no longer does."""
    split, runs, timing = ramp_fixture(0.1)
    tuned = {wait: choose(split, runs, ["bird"], timing, fallback_params(1), max_latency_s=0.15, stage1_min_on_s=wait)
             for wait in (0.1, 0.0)}
    late, quick = tuned[0.1][1]["bird"], tuned[0.0][1]["bird"]
    assert tuned[0.1][0].on_threshold[0] < 0.55 and late["event_f1"] == pytest.approx(0.6) and late["within_budget"]
    assert tuned[0.0][0].on_threshold[0] > 0.55 and quick["event_f1"] == pytest.approx(1.0) and quick["within_budget"]
    assert (0.1, 0.2) in stage2_durations(0.0) and (0.0, 0.2) not in stage2_durations(0.0)
    assert len(stage2_durations(0.0)) == len(stage2_durations(0.1)) == len(GRID_MIN_ON_S) * len(GRID_MIN_OFF_S) - 1
    with pytest.raises(TuneError, match="--stage1-min-on 0.15: not one of 0, 0.05, 0.1, 0.2, 0.3"):
        choose(split, runs, ["bird"], timing, fallback_params(1), stage1_min_on_s=0.15)


def test_tune_nearest_late_tries_the_durations_of_thresholds_a_raise_moves_to():
    """A 500 ms rise: no setting of the best thresholds comes near a 0.1 s budget, so the raise
    takes a low threshold from stage 1 (min_on 0.1 s). Stage 2 at that threshold finds min_on 0,
    which brings it within the asked budget: ``nearest-late`` ends where ``nearest`` does."""
    split, runs, timing = ramp_fixture(0.5)
    near, near_report, _ = choose(split, runs, ["bird"], timing, fallback_params(1), max_latency_s=0.1,
                                  over_budget="nearest")
    late, late_report, _ = choose(split, runs, ["bird"], timing, fallback_params(1), max_latency_s=0.1,
                                  over_budget="nearest-late")
    assert late_report["bird"]["within_budget"] and late_report["bird"]["budget_s"] == 0.1
    assert late.min_on_s[0] < 0.1 and late.on_threshold[0] < 0.55
    assert late == near and late_report == near_report


def test_a_settings_latency_is_measured_on_the_events_as_they_will_be_placed():
    """Four 0.3 s bird events: the probability rises 0.2 s after the first two onsets and 0.4 s
    after the last two, past their ends. Matched on the raw onsets only the first two count
    (median 0.2 s, within a 0.25 s budget); the smoother back-dates every onset by the lag those
    two give, which brings the last two inside their events, so rttag eval matches all four
    and measures 0.3 s. The tuner's latency for the setting is the one eval measures."""
    timing = FrameTiming.of_frontend(FrontendParams())
    duration, events, rises = 16.0, [(2.0, 2.3), (6.0, 6.3), (10.0, 10.3), (14.0, 14.3)], [0.2, 0.2, 0.4, 0.4]
    centres = timing.centre0_s + np.arange(int(duration / timing.hop_s) - 3) * timing.hop_s
    p = np.full(len(centres), 0.01, np.float32)
    for (a, _), rise in zip(events, rises):
        p[(centres >= a + rise) & (centres < a + rise + 0.5)] = 0.99
    split = split_of({"a.wav": [RefEvent(a, b, "bird") for a, b in events]}, {"a.wav": duration})
    runs = {"a.wav": FileRun(p[:, None], np.full((len(centres), 64), -12.0, np.float32), [], duration)}
    cand = _score(split, runs, ["bird"], timing, {"bird": (0.5, 0.5, 0.0, 0.1)})["bird"]
    dets = smooth_runs(runs, ["bird"], _params({"bird": cand.values}, ["bird"]), timing)
    placed = latency_lists(split, dets, ["bird"])["bird"]
    assert len(placed) == 4 and cand.latency_s == pytest.approx(float(np.median(placed)))
    assert not cand.eligible(0.25)


def test_class_budget_rises_in_steps_to_the_quickest_eligible_setting():
    """Budgets (s): the asked one when a setting meets it or none detects enough; else the
    first step of BUDGET_STEP_S over it that the quickest eligible setting fits."""
    blind = Candidate((0.9,), 0.0, 0.0, float("nan"), 0, 0, 20)
    few, slow = Candidate((0.8,), 0.1, 0.1, 0.26, 1, 2, 20), Candidate((0.2,), 0.3, 0.3, 0.41, 9, 30, 20)
    assert class_budget([blind, few, slow], 0.22) == pytest.approx(0.27)
    assert class_budget([blind, few, slow], 0.22, min_recall=0.1) == pytest.approx(0.42)
    assert class_budget([blind, slow], 0.5) == 0.5 and class_budget([blind], 0.22) == 0.22
    assert class_budget([replace(slow, latency_s=0.25)], 0.2) >= 0.25  # float steps never fall short
    for budget in (0.27, 0.42):
        assert class_choice([blind, few, slow], budget, 0.1 if budget > 0.3 else 0.0).eligible(budget)


def test_tune_places_offsets_by_the_sound_where_the_probability_outlasts_it_by_varying_times():
    """Four 2 s dog events; the model's probability outlasts each by a different time (0.3 to
    2.1 s), as a recurrent model's does. No single offset lag brings more than one or two
    offsets into the 0.4 s collar; the log-mel frames show where each sound ends, so the tuner
    takes the excess rule and every event is a hit."""
    timing = FrameTiming.of_frontend(FrontendParams())
    duration, events, tails = 30.0, [(2.0, 4.0), (9.0, 11.0), (16.0, 18.0), (23.0, 25.0)], [0.3, 0.9, 1.5, 2.1]
    centres = timing.centre0_s + np.arange(int(duration / timing.hop_s) - 3) * timing.hop_s
    p = np.full(len(centres), 0.01, np.float32)
    logmel = np.full((len(centres), 64), -14.0, np.float32) + np.random.default_rng(0).normal(0, 0.3, (len(centres), 64))
    for (a, b), tail in zip(events, tails):
        p[(centres >= a) & (centres < b + tail)] = 0.95
        logmel[(centres >= a) & (centres < b)] += 3.0  # 13 dB above the background in every mel bin
    split = split_of({"a.wav": [RefEvent(a, b, "dog") for a, b in events]}, {"a.wav": duration})
    runs = {"a.wav": FileRun(p[:, None], logmel.astype(np.float32), [], duration)}
    fallback = fallback_params(1)
    params, report, _ = choose(split, runs, ["dog"], timing, fallback, max_latency_s=1.0)
    assert params.offset_excess_db[0] > 0 and report["dog"]["event_f1"] == pytest.approx(1.0)
    # the same setting with the lag rule alone matches at most half of the offsets
    lag_only = replace(params, offset_excess_db=(0.0,))
    dets = smooth(p[:, None], ["dog"], lag_only, timing, duration, logmel)
    assert sed_scores(split, {"a.wav": dets}, ["dog"])["event"]["micro_f1"] <= 0.5


def confused_dog(n_birds: int, bird_leads_dog_s: float = 0.0):
    """Bird events (2 s, every 8 s from 2 s) during which the dog's probability is 0.6 and the
    bird's 0.9, and four dog events (2 s, every 8 s from 6 s) with the dog at 0.6, where the
    bird leads with 0.9 for the first ``bird_leads_dog_s``. Returns the split, the runs, the
    probabilities [T, 2] (dog, bird) and the log-mel frames."""
    timing = FrameTiming.of_frontend(FrontendParams())
    birds = [(2.0 + 8 * i, 4.0 + 8 * i) for i in range(n_birds)]
    dogs = [(6.0 + 8 * i, 8.0 + 8 * i) for i in range(4)]
    duration = 8.0 * max(n_birds, 4) + 4.0
    centres = timing.centre0_s + np.arange(int(duration / timing.hop_s) - 3) * timing.hop_s
    p = np.full((len(centres), 2), 0.01, np.float32)
    for a, b in birds:
        p[(centres >= a) & (centres < b)] = (0.6, 0.9)
    for a, b in dogs:
        p[(centres >= a) & (centres < b), 0] = 0.6
        p[(centres >= a) & (centres < a + bird_leads_dog_s), 1] = 0.9
    reference = sorted([RefEvent(a, b, "bird") for a, b in birds] + [RefEvent(a, b, "dog") for a, b in dogs],
                       key=lambda e: e.onset)
    logmel = np.full((len(centres), 64), -12.0, np.float32)
    return split_of({"a.wav": reference}, {"a.wav": duration}), {"a.wav": FileRun(p, logmel, [], duration)}, p, logmel




def test_tune_holds_back_a_class_that_fires_on_another_class_s_events():
    """The dog also reaches 0.6 on every bird event (:func:`confused_dog`). Thresholds alone
    cannot separate the two (the dog's own events score 0.6 too), so without dominance the
    dog has four false events; the tuner takes a dominance that holds them back, and the
    micro F1 reaches 1."""
    timing = FrameTiming.of_frontend(FrontendParams())
    split, runs, p, logmel = confused_dog(4)
    params, report, summary = choose(split, runs, ["dog", "bird"], timing, fallback_params(2))
    assert params.dominance[0] > 0.6 / 0.9 and summary["micro_f1"] == pytest.approx(1.0)
    assert summary["placed_micro_f1"] == pytest.approx(2 * 8 / (8 + 12))  # before dominance: 4 false dogs
    assert summary["overall_within"] is None  # no overall budget asked for
    assert report["dog"]["event_f1"] == pytest.approx(1.0)
    without = replace(params, dominance=(0.0, params.dominance[1]))
    dets = smooth(p, ["dog", "bird"], without, timing, runs["a.wav"].t_end, logmel)
    assert sum(d.label == "dog" for d in dets) == 8


def test_tune_does_not_hold_a_class_back_past_the_latency_budget():
    """As above, but on each dog event the bird leads for the first 0.5 s, so a dog held back
    would be decided about 0.6 s late, over the 0.25 s budget: the dog is not held back,
    although that would remove its false events on the six bird events."""
    timing = FrameTiming.of_frontend(FrontendParams())
    split, runs, _, _ = confused_dog(6, bird_leads_dog_s=0.5)
    params, report, _ = choose(split, runs, ["dog", "bird"], timing, fallback_params(2))
    assert params.dominance[0] < 0.6 / 0.9 and report["dog"]["within_budget"]
    # with a budget the wait fits in, it is held back
    params, report, _ = choose(split, runs, ["dog", "bird"], timing, fallback_params(2), max_latency_s=1.0)
    assert params.dominance[0] > 0.6 / 0.9 and report["dog"]["latency_s"] > 0.5


def test_tune_may_let_a_class_wait_while_the_overall_latency_holds():
    """The case above with an overall budget: with six bird events decided at once, holding
    the dog back (its four events decided about 0.6 s late) keeps the median over all ten
    matched events within 0.25 s, so the dog is held back past its own budget; with three
    bird events the dogs' waits would make the median, so the dog is held to its own budget."""
    timing = FrameTiming.of_frontend(FrontendParams())
    split, runs, _, _ = confused_dog(6, bird_leads_dog_s=0.5)
    params, report, summary = choose(split, runs, ["dog", "bird"], timing, fallback_params(2),
                                     max_overall_latency_s=0.25)
    assert params.dominance[0] > 0.6 / 0.9 and report["dog"]["latency_s"] > 0.5
    assert not report["dog"]["within_budget"] and summary["overall_latency_s"] <= 0.25
    assert summary["overall_within"] == pytest.approx(0.6)  # the six birds of ten matched events
    assert summary["micro_f1"] > summary["placed_micro_f1"]
    split, runs, _, _ = confused_dog(3, bird_leads_dog_s=0.5)
    params, report, summary = choose(split, runs, ["dog", "bird"], timing, fallback_params(2),
                                     max_overall_latency_s=0.25)
    assert params.dominance[0] < 0.6 / 0.9 and report["dog"]["within_budget"]
    assert summary["overall_latency_s"] <= 0.25


def test_joint_choice_keeps_a_poorly_recognised_class_conservative():
    """Class-wise, the dog's best F1 (0.2) comes from a setting with 90 false events; those
    cost the bird's precision in the micro F1, so the joint choice takes the dog setting with
    F1 0.1 and 2 false events, and the micro F1 rises from 0.49 to 0.67."""
    n_ref = {"bird": 50, "dog": 20}
    bird = [Candidate((0.5,), 0.8, 0.8, 0.1, 40, 50)]
    noisy, quiet = Candidate((0.2,), 0.2, 0.3, 0.1, 11, 90), Candidate((0.9,), 0.1, 0.1, 0.1, 1, 3)
    by_class = {"bird": bird[0], "dog": class_choice([noisy, quiet], 0.25)}
    assert by_class["dog"] is noisy and micro_f1(by_class, n_ref) == pytest.approx(102 / 210)
    joint = joint_choice({"bird": bird, "dog": [noisy, quiet]}, by_class, n_ref, dict.fromkeys(n_ref, 0.25))
    assert joint["dog"] is quiet and micro_f1(joint, n_ref) == pytest.approx(82 / 123)
    # over budget (latency NaN or too late) or detecting nothing: never chosen while something else is eligible
    late, blind = Candidate((0.3,), 0.9, 0.9, 0.5, 19, 21), Candidate((0.95,), 0.0, 0.0, float("nan"), 0, 0)
    budgets = dict.fromkeys(n_ref, 0.25)
    assert joint_choice({"bird": bird, "dog": [late, blind, quiet]}, by_class, n_ref, budgets)["dog"] is quiet


def test_a_recall_floor_keeps_a_poorly_recognised_class_audible():
    """As above, with ``min_recall`` 0.1: the quiet dog setting finds 1 of the dog's 20
    validation events, under the floor, so neither choice takes it; a setting that finds 4
    is eligible, and where nothing reaches the floor the class-wise choice takes the best
    regardless."""
    n_ref = {"bird": 50, "dog": 20}
    bird = [Candidate((0.5,), 0.8, 0.8, 0.1, 40, 50, 50)]
    noisy, quiet = Candidate((0.2,), 0.2, 0.3, 0.1, 11, 90, 20), Candidate((0.9,), 0.1, 0.1, 0.1, 1, 3, 20)
    some, sharp = Candidate((0.7,), 0.15, 0.2, 0.1, 4, 33, 20), replace(quiet, event_f1=0.2)
    assert class_choice([sharp, some], 0.25) is sharp
    assert class_choice([sharp, some], 0.25, min_recall=0.1) is some
    assert class_choice([sharp, replace(some, n_tp=1)], 0.25, min_recall=0.1) is sharp
    by_class = {"bird": bird[0], "dog": noisy}
    budgets = dict.fromkeys(n_ref, 0.25)
    assert joint_choice({"bird": bird, "dog": [noisy, quiet]}, by_class, n_ref, budgets)["dog"] is quiet
    joint = joint_choice({"bird": bird, "dog": [noisy, quiet, some]}, by_class, n_ref, budgets, min_recall=0.1)
    assert joint["dog"] is some and not quiet.eligible(0.25, 0.1) and some.eligible(0.25, 0.1)


def test_each_objective_ranks_a_class_s_candidates_its_own_way():
    """Three eligible settings of one class: the sharpest events (event F1 0.5, segment F1
    0.4), the best cover (0.3, 0.8) and one between (0.45, 0.6). The class objective takes the
    first, ``sum`` the one with the best sum (1.1), ``segment`` the second; a setting over the
    latency budget is left out by every objective while another is eligible."""
    sharp, cover = Candidate((0.9,), 0.5, 0.4, 0.1, 10, 20), Candidate((0.2,), 0.3, 0.8, 0.1, 10, 47)
    between = Candidate((0.5,), 0.45, 0.6, 0.1, 10, 24)
    cands = [sharp, cover, between]
    assert class_choice(cands, 0.25) is sharp and class_choice(cands, 0.25, objective="micro") is sharp
    assert class_choice(cands, 0.25, objective="sum") is cover
    assert class_choice(cands, 0.25, objective="segment") is cover
    between = replace(between, segment_f1=0.7)
    assert class_choice([sharp, cover, between], 0.25, objective="sum") is between  # 1.15 against 1.1
    assert class_choice([sharp, cover, between], 0.25, objective="segment") is cover
    late_cover = replace(cover, latency_s=0.4)
    for objective in OBJECTIVES:
        assert class_choice([sharp, late_cover], 0.25, objective=objective) is sharp
    assert class_choice([replace(sharp, segment_f1=0.8), replace(cover, event_f1=0.5)], 0.25, objective="sum") \
        .values == (0.9,)  # equal sums: the better event F1 (equal too: the first)


def test_joint_choice_is_the_exhaustive_optimum():
    rng = np.random.default_rng(0)
    for _ in range(30):
        labels = ["a", "b", "c"]
        n_ref = {k: int(rng.integers(5, 40)) for k in labels}
        cands = {}
        for k in labels:
            cands[k] = []
            for i in range(4):
                tp = int(rng.integers(1, n_ref[k] + 1))
                cands[k].append(Candidate((i,), 0.0, float(rng.random()), 0.1, tp, tp + int(rng.integers(0, 60))))
        start = {k: cands[k][0] for k in labels}
        best = max(itertools.product(*cands.values()), key=lambda combo: micro_f1(dict(zip(labels, combo)), n_ref))
        got = joint_choice(cands, start, n_ref, dict.fromkeys(labels, 0.25))
        assert micro_f1(got, n_ref) == pytest.approx(micro_f1(dict(zip(labels, best)), n_ref))


def dominance_candidate(dominance: float, n_tp: int, n_sys: int) -> Candidate:
    """A class's candidate that differs from its others only by ``dominance`` and its event counts."""
    return Candidate((0.5, 0.5, 0.1, 0.2, 0.0, 0.0, 0.0, dominance), 0.0, 0.0, 0.1, n_tp, n_sys)


def test_overall_ascent_holds_back_the_classes_whose_waits_fit_the_overall_budget():
    """Three classes, each with a setting within its own budget (dominance 0, decided in
    0.1 s) and one held back (dominance 1: fewer false events, decided later). Holding ``a``
    back would gain most, but its eight events decided 0.6 s late put the median over all
    sixteen matched events at 0.35 s, over the 0.2 s budget; holding ``b`` and ``c`` back
    (0.3 s each) keeps it at 0.2 s. The ascent takes those two, which is also the best of all
    eight combinations within the budget; a start already over the budget stands."""
    cand = dominance_candidate
    pool = {"a": [cand(0.0, 8, 20), cand(1.0, 8, 10)], "b": [cand(0.0, 4, 10), cand(1.0, 4, 6)],
            "c": [cand(0.0, 4, 10), cand(1.0, 4, 6)]}
    waits = {("a", 0.0): [0.1] * 8, ("a", 1.0): [0.6] * 8, ("b", 0.0): [0.1] * 4, ("b", 1.0): [0.3] * 4,
             ("c", 0.0): [0.1] * 4, ("c", 1.0): [0.3] * 4}
    n_ref = {"a": 8, "b": 4, "c": 4}
    start = {k: v[0] for k, v in pool.items()}
    got = overall_ascent(start, pool, waits, n_ref, 0.2)
    assert [got[k].values[-1] for k in "abc"] == [0.0, 1.0, 1.0]
    assert overall_latency(got, waits) == pytest.approx(0.2)
    assert overall_latency({**start, "a": pool["a"][1]}, waits) == pytest.approx(0.35)
    within = [dict(zip("abc", combo)) for combo in itertools.product(*pool.values())
              if overall_latency(dict(zip("abc", combo)), waits) <= 0.2]
    assert micro_f1(got, n_ref) == pytest.approx(max(micro_f1(c, n_ref) for c in within))
    assert micro_f1(got, n_ref) > micro_f1(start, n_ref)
    # a budget the start does not fit: nothing changes
    assert overall_ascent(start, pool, waits, n_ref, 0.05) == start
    # a budget every wait fits: a is held back too
    assert all(c.values[-1] == 1.0 for c in overall_ascent(start, pool, waits, n_ref, 1.0).values())


def test_overall_ascent_takes_the_quicker_of_two_equal_gains():
    """Holding ``a`` or ``b`` back removes the same false events, but ``a``'s held events are
    decided 0.5 s late and ``b``'s 0.3 s; the 0.3 s overall budget admits either alone
    (median 0.3 or 0.2 s) and not both (0.4 s), so the ascent holds back ``b``, the quicker."""
    cand = dominance_candidate
    pool = {"a": [cand(0.0, 4, 10), cand(1.0, 4, 5)], "b": [cand(0.0, 4, 10), cand(1.0, 4, 5)]}
    waits = {("a", 0.0): [0.1] * 4, ("a", 1.0): [0.5] * 4, ("b", 0.0): [0.1] * 4, ("b", 1.0): [0.3] * 4}
    got = overall_ascent({k: v[0] for k, v in pool.items()}, pool, waits, {"a": 4, "b": 4}, 0.3)
    assert (got["a"].values[-1], got["b"].values[-1]) == (0.0, 1.0)
    assert overall_latency(got, waits) == pytest.approx(0.2)


def test_overall_ascent_at_a_quantile_keeps_the_share_of_quick_decisions():
    """Twelve matched events, all decided in 0.1 s: ``a``'s four and ``b``'s eight. Holding
    ``a`` back gains most and decides its four in 0.6 s, which leaves the median at 0.1 s; holding
    ``b`` back too decides its eight in 0.2 s. Within a 0.3 s median both are held back. At the
    0.75 quantile the same budget asks nine of the twelve decided within 0.3 s, which ``a`` held
    back breaks, so only ``b`` is. Quantile 0.5 is the median: the default."""
    cand = dominance_candidate
    pool = {"a": [cand(0.0, 4, 20), cand(1.0, 4, 5)], "b": [cand(0.0, 8, 16), cand(1.0, 8, 12)]}
    waits = {("a", 0.0): [0.1] * 4, ("a", 1.0): [0.6] * 4, ("b", 0.0): [0.1] * 8, ("b", 1.0): [0.2] * 8}
    n_ref, start = {"a": 4, "b": 8}, {k: v[0] for k, v in pool.items()}
    median = overall_ascent(start, pool, waits, n_ref, 0.3)
    assert median == overall_ascent(start, pool, waits, n_ref, 0.3, quantile=0.5)
    assert (median["a"].values[-1], median["b"].values[-1]) == (1.0, 1.0)
    quick = overall_ascent(start, pool, waits, n_ref, 0.3, quantile=0.75)
    assert (quick["a"].values[-1], quick["b"].values[-1]) == (0.0, 1.0)
    assert overall_latency(quick, waits, 0.75) <= 0.3 < overall_latency(median, waits, 0.75)
    assert micro_f1(start, n_ref) < micro_f1(quick, n_ref) < micro_f1(median, n_ref)


def test_tune_refuses_an_overall_quantile_outside_0_1():
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(TuneError, match="--overall-quantile"):
            check_quantile(bad)
    check_quantile(0.67)


def test_tune_rewrites_the_metadata_and_the_model_still_loads(dataset, model_path, tmp_path):
    import onnx

    tuned_path = tmp_path / "tuned.onnx"
    shutil.copy(model_path, tuned_path)
    before = OnnxModel(tuned_path).info
    proc = run_rttag("tune", "--model", str(tuned_path), "--data", str(dataset))
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().startswith("| label | on | off |")
    # four decimals: rules that compare candidates by this figure must not tie on rounding
    assert re.search(r"validation micro event F1: \d\.\d{4} with the class objective", proc.stdout.decode())
    after = OnnxModel(tuned_path).info
    assert after.smoother != before.smoother
    assert (after.labels, after.frontend, after.state_shapes) == (before.labels, before.frontend, before.state_shapes)
    k_dog = after.labels.index("dog")  # no validation events: keeps the model's values
    assert after.smoother.on_threshold[k_dog] == before.smoother.on_threshold[k_dog]
    for k in (after.labels.index("music"), after.labels.index("alarm")):
        assert after.smoother.on_threshold[k] in GRID_ON
        assert after.smoother.onset_lag_s[k] >= 0.0
    assert onnx.load(str(tuned_path)).graph == onnx.load(str(model_path)).graph
    # The rewritten model runs through the pipeline.
    assert run_rttag("tag", str(dataset / "audio" / "test" / "bursts3.wav"), "--model", str(tuned_path)).returncode == 0


def test_eval_runs_one_network_once_for_two_smoothers_and_scores_each_as_alone(dataset, model_path, tmp_path):
    """A model and its copy with a tuned smoother (``rttag tune -o``): one pass serves both, and
    the copy's figures are those it gets when evaluated alone, tuned and raw."""
    tuned = tmp_path / "tuned.onnx"
    proc = run_rttag("tune", "--model", str(model_path), "--data", str(dataset), "-o", str(tuned))
    assert proc.returncode == 0, proc.stderr.decode()
    both, alone = tmp_path / "both.json", tmp_path / "alone.json"
    logs = []
    for models, out in ((f"{model_path},{tuned}", both), (str(tuned), alone)):
        proc = run_rttag("eval", "--data", str(dataset), "--models", models, "--no-silero", "--bootstrap", "20",
                         "--json", str(out))
        assert proc.returncode == 0, proc.stderr.decode()
        logs.append(proc.stderr.decode())
    assert "tuned: the network of test-gru with another smoother; its pass is reused" in logs[0]
    assert "its pass is reused" not in logs[1]
    b, a = json.loads(both.read_text()), json.loads(alone.read_text())
    assert b["wall_s"]["tuned"]["pipeline_s"] == 0.0 and b["wall_s"]["tuned"]["pass_of"] == "test-gru"
    assert b["wall_s"]["test-gru"]["pipeline_s"] > 0 and "pass_of" not in b["wall_s"]["test-gru"]
    for kind in ("tuned", "raw"):
        got, want = b["systems"][f"tuned/{kind}"]["scores"], a["systems"][f"test-gru/{kind}"]["scores"]
        for figure in ("event", "segment"):
            assert got[figure]["micro_f1"] == want[figure]["micro_f1"]
            assert got[figure]["per_class"] == want[figure]["per_class"]
        assert got["stream"]["per_class"] == want["stream"]["per_class"] and got["held_on"] == want["held_on"]
    assert b["systems"]["tuned/tuned"]["scores"]["event"] != b["systems"]["test-gru/tuned"]["scores"]["event"]


def test_tune_over_budget_nearest_from_the_command_line(dataset, model_path):
    """A budget of 0 s that no setting meets: with --over-budget nearest the classes the
    model detects (music, alarm) are tuned within a raised budget; the model is not written."""
    before = model_path.read_bytes()
    proc = run_rttag("tune", "--model", str(model_path), "--data", str(dataset), "--dry-run", "--max-latency", "0",
                     "--over-budget", "nearest")
    assert proc.returncode == 0, proc.stderr.decode()
    rows = {line.split(" | ")[0].strip("| "): line for line in proc.stdout.decode().splitlines()}
    for label in ("music", "alarm"):
        assert "(budget raised to 0.05)" in rows[label], rows[label]
    assert model_path.read_bytes() == before


def test_tune_objective_sum_from_the_command_line(dataset, model_path):
    """--objective sum reaches the choice (the summary names it, each tuned class's setting is
    from the grid) and an unknown objective is refused before the model runs; --dry-run
    writes nothing."""
    before = model_path.read_bytes()
    proc = run_rttag("tune", "--model", str(model_path), "--data", str(dataset), "--dry-run", "--objective", "sum")
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert re.search(r"validation micro event F1: \d\.\d{4} with the sum objective", out)
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in out.splitlines()}
    for label in ("music", "alarm"):
        assert float(rows[label][1]) in GRID_ON, rows[label]
    proc = run_rttag("tune", "--model", str(model_path), "--data", str(dataset), "--objective", "frames")
    assert proc.returncode != 0 and b"invalid choice: 'frames'" in proc.stderr
    assert model_path.read_bytes() == before


def test_tune_stage1_min_on_from_the_command_line(dataset, model_path):
    """--stage1-min-on 0 reaches stage 1 (its log line says the wait); a wait outside stage 2's
    grid is one error line before the model runs."""
    proc = run_rttag("tune", "--model", str(model_path), "--data", str(dataset), "--dry-run", "--stage1-min-on", "0")
    assert proc.returncode == 0, proc.stderr.decode()
    assert "stage 1 (thresholds, min_on_s 0):" in proc.stderr.decode()
    proc = run_rttag("tune", "--model", str(model_path), "--data", str(dataset), "--stage1-min-on", "0.15")
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and err == ["rttag: error: --stage1-min-on 0.15: not one of 0, 0.05, 0.1, 0.2, 0.3"]


def test_tune_overall_quantile_from_the_command_line(dataset, model_path):
    """With --max-overall-latency the summary line gives the share of matched events decided
    within it; an --overall-quantile outside (0, 1) is one error line before the model runs."""
    proc = run_rttag("tune", "--model", str(model_path), "--data", str(dataset), "--dry-run",
                     "--max-overall-latency", "0.3", "--overall-quantile", "0.6")
    assert proc.returncode == 0, proc.stderr.decode()
    assert re.search(r"median decision latency over all matched events [0-9.]+ s, [01]\.[0-9]{3} of them within 0\.3 s",
                     proc.stdout.decode()), proc.stdout.decode()
    proc = run_rttag("tune", "--model", str(model_path), "--data", str(dataset), "--max-overall-latency", "0.3",
                     "--overall-quantile", "1")
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and err == [
        "rttag: error: --overall-quantile 1: a share of the matched events, above 0 and below 1"]


def test_tune_refuses_the_test_split(dataset, model_path, tmp_path):
    proc = run_rttag("tune", "--model", str(model_path), "--data", str(dataset), "--split", "test")
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and err == ["rttag: error: tuning must not look at the test split; use --split validation"]
    proc = run_rttag("tune", "--model", str(model_path), "--data", str(dataset), "--max-held-on", "5")
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and err == ["rttag: error: --max-held-on 5: a share of the files, from 0 to 1"]


# --------------------------------------------------------------- silero-vad peer


def vowels(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """Speech-like sound: a pulse train at a wandering 100–150 Hz through vowel formants
    that change every 250 ms, with 4 Hz syllable envelopes (float32 at 16 kHz)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t) + 10 * np.sin(2 * np.pi * 3.1 * t)
    pulses = (np.diff(np.floor(np.cumsum(f0 / SR)), prepend=0) > 0).astype(float)
    source = scipy.signal.lfilter([1], [1, -0.95], pulses)
    formants = [(730, 1090, 2440), (270, 2290, 3010), (530, 1840, 2480), (300, 870, 2240)]
    out, seg = np.zeros(n), SR // 4
    r = np.exp(-np.pi * 80 / SR)
    for i in range(0, n, seg):
        y = source[i:i + seg]
        for f in formants[(i // seg) % 4]:
            y = scipy.signal.lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / SR), r * r], y)
        out[i:i + seg] = y
    out *= 0.5 * (1 - np.cos(2 * np.pi * 4 * t))
    return (0.3 * out / np.abs(out).max() + 0.001 * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module")
def vad():
    from rttag.silero_peer import SileroVad

    return SileroVad()


def test_silero_tells_speech_like_sound_from_silence_and_tones(vad):
    noise = (0.001 * np.random.default_rng(1).standard_normal(3 * SR)).astype(np.float32)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * SR) / SR)).astype(np.float32)
    speechy, quiet, beep = vad.speech_probs([vowels(), noise, tone])
    assert len(speechy) == int(np.ceil(3 * SR / 512))
    assert np.median(speechy) > 0.2 and speechy.max() > 0.5
    assert quiet.max() < 0.35 and beep.max() < 0.35


def test_silero_batch_rows_are_independent(vad):
    a, b = vowels(2.0), vowels(3.3, seed=1)
    alone = vad.speech_probs([a])[0]
    together = vad.speech_probs([a, b])
    assert np.allclose(together[0], alone, atol=1e-5) and len(together[1]) == int(np.ceil(len(b) / 512))


def test_silero_runner_matches_the_packages_own_wrapper(vad):
    """Against silero-vad's own (torch) ONNX wrapper, where torch is installed."""
    torch = pytest.importorskip("torch")
    from silero_vad.utils_vad import OnnxWrapper

    from rttag.silero_peer import model_path

    x = vowels(2.0)
    theirs = OnnxWrapper(str(model_path()), force_onnx_cpu=True).audio_forward(torch.from_numpy(x), 16000)
    assert np.allclose(vad.speech_probs([x])[0], theirs.numpy()[0], atol=1e-5)


def test_held_on_counts_a_class_stuck_over_a_file_not_a_long_true_event():
    split = split_of({"a.wav": [RefEvent(0.0, 20.0, "music")],       # music all along: not stuck
                      "b.wav": [RefEvent(2.0, 4.0, "dog")],          # a short dog in a long dog
                      "c.wav": []}, {"a.wav": 20.0, "b.wav": 20.0, "c.wav": 20.0})
    dets = {"a.wav": [Detection("music", 0.0, 20.0, 0.1), Detection("dog", 0.0, 10.0, 0.1),
                      Detection("dog", 9.0, 17.0, 9.1)],                # 17 of 20 s: under 90 %
            "b.wav": [Detection("dog", 0.0, 8.0, 0.1), Detection("dog", 7.5, 30.0, 7.6)],  # 20 s, ref 2 s
            "c.wav": [Detection("bird", -1.0, 10.0, 0.1), Detection("bird", 10.0, 19.0, 10.1),  # 19 of 20 s
                      Detection("dog", 0.0, 20.0, 0.1)]}
    held = held_on(split, dets, ["music", "dog", "bird"])
    assert held["per_class"] == {"music": 0, "dog": 2, "bird": 1}
    assert held["pairs"] == 3 and held["files"] == 2 and held["files_share"] == pytest.approx(2 / 3)
    assert held["file_names"] == ["b.wav", "c.wav"]
    assert covered_s([(5.0, 8.0), (1.0, 3.0), (2.0, 4.0), (-2.0, 0.5)], 7.0) == pytest.approx(0.5 + 3.0 + 2.0)
    table, held = _held_table(split, dets)
    assert "| 2 (67 %) |" in table
    low, high = held["files_ci95"]
    assert 0 <= low <= 2 <= high <= 3
    assert f"| m | tuned | 3 | 2 (67 %) | {low:.0f} – {high:.0f} | dog 2, bird 1 |" in table.splitlines()


def _held_table(split, dets) -> tuple[str, dict]:
    """format_table's output for one system scored on ``dets``, with resampling intervals, and its held-on figures."""
    systems = {"m/tuned": {"system": "m", "smoother": "tuned",
                           "scores": score_system(split, dets, ["music", "dog", "bird"], None)}}
    add_intervals(systems, resampling(list(split.paths), {}, event_sources(split), rounds=200, unit="file"),
                  np.array([split.durations[n] / 60.0 for n in split.paths]))
    return format_table(systems), systems["m/tuned"]["scores"]["held_on"]


def weak_dog():
    """Four 20 s files' frame timing, the dog file's three dog events (onset, offset s, level)
    and the dog's probability there ``[T]`` (two of three dogs reach only 0.14), flat log-mel
    frames ``[T, 64]`` and the file names (the dog file first)."""
    timing = FrameTiming.of_frontend(FrontendParams())
    duration, events = 20.0, [(2.0, 4.0, 0.14), (8.0, 10.0, 0.14), (14.0, 16.0, 0.9)]
    centres = timing.centre0_s + np.arange(int(duration / timing.hop_s) - 3) * timing.hop_s
    dog = np.full(len(centres), 0.02, np.float32)
    for a, b, level in events:
        dog[(centres >= a) & (centres < b)] = level
    logmel = np.full((len(centres), 64), -12.0, np.float32)
    return timing, duration, events, centres, dog, logmel, ["dog.wav", "b.wav", "c.wav", "d.wav"]


def test_tune_does_not_hold_a_class_on_through_the_files_it_does_not_sound_in():
    """A weak dog model: in the dog file two of three dogs reach only 0.14 (one 0.9), and in
    three files without a dog the dog's probability sits at 0.12 throughout. An on-threshold of
    0.1 finds all three dogs and holds the dog on through the three other files — one false
    event each, event F1 6 / 9 — where 0.15 and above find one dog and nothing else (2 / 4). Event F1
    alone takes 0.1; the guard leaves it out, and with the guard off it comes back."""
    timing, duration, events, centres, dog, logmel, names = weak_dog()
    quiet = np.full(len(centres), 0.12, np.float32)
    split = split_of({"dog.wav": [RefEvent(a, b, "dog") for a, b, _ in events], "b.wav": [], "c.wav": [], "d.wav": []},
                     dict.fromkeys(names, duration))
    runs = {n: FileRun((dog if n == "dog.wav" else quiet)[:, None], logmel, [], duration) for n in names}
    params, report, summary = choose(split, runs, ["dog"], timing, fallback_params(1))
    assert params.on_threshold[0] >= 0.15 and report["dog"]["files_held_on"] == 0 and report["dog"]["held_on_ok"]
    assert summary["micro_f1"] == pytest.approx(0.5)
    params, report, summary = choose(split, runs, ["dog"], timing, fallback_params(1), max_held_on=1.0)
    assert params.on_threshold[0] == pytest.approx(0.1) and report["dog"]["files_held_on"] == 3
    assert summary["micro_f1"] == pytest.approx(6 / 9)
    with pytest.raises(TuneError):
        choose(split, runs, ["dog"], timing, fallback_params(1), max_held_on=1.5)


def test_the_guard_scores_stage_two_again_only_for_the_classes_it_re_chose(monkeypatch):
    """The weak dog above beside a bird the model hears cleanly: the guard re-chooses the dog's
    thresholds, and stage 2 is scored again for the dog alone; a class cut out of the
    probabilities scores exactly as it does among all the classes."""
    import rttag.tune as tune

    timing, duration, events, centres, dog, logmel, names = weak_dog()
    bird = np.full(len(centres), 0.02, np.float32)
    bird[(centres >= 5.0) & (centres < 7.0)] = 0.8
    quiet = np.stack([np.full(len(centres), 0.12, np.float32), bird], axis=1)
    split = split_of({"dog.wav": [RefEvent(a, b, "dog") for a, b, _ in events],
                      **{n: [RefEvent(5.0, 7.0, "bird")] for n in names[1:]}}, dict.fromkeys(names, duration))
    runs = {"dog.wav": FileRun(np.stack([dog, np.full(len(centres), 0.02, np.float32)], axis=1), logmel, [], duration),
            **{n: FileRun(quiet, logmel, [], duration) for n in names[1:]}}
    labels = ["dog", "bird"]
    setting = {"dog": (0.1, 0.05, 0.1, 0.5), "bird": (0.5, 0.25, 0.1, 0.5)}
    whole = tune._score(split, runs, labels, timing, setting)
    cut = tune._score(*tune.restrict(split, runs, labels, ["bird"]), ["bird"], timing, {"bird": setting["bird"]})
    assert cut["bird"] == whole["bird"]

    calls = []
    real = tune._score

    def spy(split, runs, labels, timing, values_by_label, with_offsets=False):
        calls.append((tuple(labels), with_offsets))  # place_offsets scores with offsets, the stages without
        return real(split, runs, labels, timing, values_by_label, with_offsets)
    monkeypatch.setattr(tune, "_score", spy)
    params, report, _ = choose(split, runs, labels, timing, fallback_params(2))
    assert params.on_threshold[0] >= 0.15 and report["dog"]["held_on_ok"] and report["bird"]["event_f1"] == 1.0
    stage1 = len(tune.GRID_ON) * len(tune.GRID_OFF_RATIO)
    assert all(ls == ("dog", "bird") and not offsets for ls, offsets in calls[:stage1])
    stage2 = [ls for ls, offsets in calls[stage1:] if not offsets]
    n = len(tune.GRID_MIN_ON_S) * len(tune.GRID_MIN_OFF_S) - 1  # stage 1's own durations are not scored again
    assert [offsets for _, offsets in calls[stage1:]].count(True) == 2  # a pass before the guard, one after
    assert stage2.count(("dog", "bird")) == n and stage2.count(("dog",)) == n
    monkeypatch.setattr(tune, "_score", real)
    assert choose(split, runs, labels, timing, fallback_params(2)) == (params, report, _)


def test_nearest_late_scores_the_durations_of_a_moved_class_once_across_the_guard(monkeypatch):
    """The 500 ms bird ramp above (its budget raise moves it to other thresholds, whose
    durations stage 2 then scores) beside the weak dog (the held-on guard re-chooses it, so the
    choice runs twice): no stage-2 setting is scored twice or was scored in stage 1, and the
    bird's moved thresholds are scored once."""
    import rttag.tune as tune

    timing, duration, events, centres, dog, logmel, names = weak_dog()
    b_split, b_runs, _ = ramp_fixture(0.5)
    n = len(centres)
    low = np.full(n, 0.02, np.float32)
    runs = {"dog.wav": FileRun(np.stack([dog, low], axis=1), logmel, [], duration),
            **{f: FileRun(np.stack([np.full(n, 0.12, np.float32), low], axis=1), logmel, [], duration)
               for f in names[1:]},
            "a.wav": FileRun(np.stack([low, b_runs["a.wav"].probs[:, 0]], axis=1), b_runs["a.wav"].logmel, [], duration)}
    split = split_of({"dog.wav": [RefEvent(a, b, "dog") for a, b, _ in events], **{f: [] for f in names[1:]},
                      "a.wav": b_split.reference["a.wav"]}, dict.fromkeys([*names, "a.wav"], duration))
    labels = ["dog", "bird"]
    scored = []
    real = tune._score

    def spy(split, runs, labels, timing, values_by_label, with_offsets=False):
        if not with_offsets:
            scored.extend((label, tuple(v)) for label, v in values_by_label.items())
        return real(split, runs, labels, timing, values_by_label, with_offsets)
    monkeypatch.setattr(tune, "_score", spy)
    params, report, _ = choose(split, runs, labels, timing, fallback_params(2), max_latency_s=0.1,
                               over_budget="nearest-late")
    stage2 = scored[len(tune.GRID_ON) * len(tune.GRID_OFF_RATIO) * len(labels):]  # after stage 1
    assert report["dog"]["held_on_ok"] and params.on_threshold[0] >= 0.15  # the guard re-chose the dog
    assert params.on_threshold[1] < 0.55 and params.min_on_s[1] < 0.1  # the bird moved, and stage 2 found min_on 0
    assert len(stage2) == len(set(stage2)) and not set(stage2) & set(scored[:len(scored) - len(stage2)])
    moved = (params.on_threshold[1], params.off_threshold[1])
    assert sum(label == "bird" and v[:2] == moved for label, v in stage2) == \
        len(tune.GRID_MIN_ON_S) * len(tune.GRID_MIN_OFF_S) - 1  # stage 1 scored its own durations


def test_tune_guards_only_the_classes_whose_final_setting_holds_them_on():
    """Three files of birdsong where the dog's probability sits at 0.6 under the bird's 0.9,
    and one file with three dogs at 0.6. Every on-threshold that finds a dog holds the dog on
    through the three bird files — until dominance holds it back where the bird leads. The
    guard looks at the final setting, so the dog keeps its threshold and dominance takes the
    false dogs away (micro F1 1) instead of the dog going silent."""
    timing = FrameTiming.of_frontend(FrontendParams())
    duration, dogs = 20.0, [(2.0, 4.0), (8.0, 10.0), (14.0, 16.0)]
    centres = timing.centre0_s + np.arange(int(duration / timing.hop_s) - 3) * timing.hop_s
    dog_file = np.full((len(centres), 2), 0.01, np.float32)
    for a, b in dogs:
        dog_file[(centres >= a) & (centres < b), 0] = 0.6
    bird_file = np.tile(np.array([[0.6, 0.9]], np.float32), (len(centres), 1))
    logmel = np.full((len(centres), 64), -12.0, np.float32)
    birds = ["b.wav", "c.wav", "d.wav"]
    split = split_of({"dog.wav": [RefEvent(a, b, "dog") for a, b in dogs],
                      **{n: [RefEvent(0.0, duration, "bird")] for n in birds}},
                     dict.fromkeys(["dog.wav", *birds], duration))
    runs = {"dog.wav": FileRun(dog_file, logmel, [], duration),
            **{n: FileRun(bird_file, logmel, [], duration) for n in birds}}
    params, report, summary = choose(split, runs, ["dog", "bird"], timing, fallback_params(2))
    assert params.dominance[0] > 0.6 / 0.9 and report["dog"]["event_f1"] == pytest.approx(1.0)
    assert report["dog"]["files_held_on"] == 0 and summary["micro_f1"] == pytest.approx(1.0)
