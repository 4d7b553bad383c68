"""Smoother semantics on hand-made probability sequences (10 ms frames)."""

import numpy as np
import pytest

from rttag.events import OffEvent, OnEvent
from rttag.smoother import EXCESS_HANGOVER_S, Smoother, SmootherParams

HOP = 0.01


def run(seq, on=0.5, off=0.3, min_on=0.0, min_off=0.0, lag=0.0, split=None, off_lag=0.0):
    params = SmootherParams((on,), (off,), (min_on,), (min_off,), (lag,), (off_lag,))
    sm = Smoother(["dog"], params, "s", hop_s=HOP, centre0_s=0.016, ready0_s=0.032)
    probs = np.asarray(seq, dtype=np.float32)[:, None]
    parts = np.array_split(probs, split) if split else [probs]
    events = [e for p in parts for e in sm.update(p)]
    return events + list(sm.close(0.032 + (len(seq) - 1) * HOP))


def test_hysteresis_keeps_the_event_between_thresholds():
    ev = run([0, 0.6, 0.4, 0.35, 0.6, 0.1, 0])
    assert [type(e) for e in ev] == [OnEvent, OffEvent]
    on, off = ev
    assert on.t == pytest.approx(0.026) and on.at == pytest.approx(0.042)
    assert off.t == pytest.approx(0.066) and off.onset == on.t


def test_min_on_suppresses_blips_and_delays_the_decision():
    assert run([0, 0.9, 0.9, 0, 0, 0], min_on=0.05) == []
    ev = run([0] + [0.9] * 8 + [0], min_on=0.05)
    assert ev[0].t == pytest.approx(0.026) and ev[0].at == pytest.approx(0.032 + 6 * HOP)


def test_min_off_bridges_short_gaps():
    seq = [0.9] * 5 + [0.0] * 3 + [0.9] * 5 + [0.0] * 20
    assert len([e for e in run(seq, min_off=0.05) if isinstance(e, OnEvent)]) == 1
    assert len([e for e in run(seq, min_off=0.0) if isinstance(e, OnEvent)]) == 2


def test_onset_lag_backdates_t_not_at():
    ev = run([0] * 50 + [0.9] * 5, lag=0.2)
    assert ev[0].t == pytest.approx(0.016 + 0.5 - 0.2) and ev[0].at == pytest.approx(0.032 + 0.5)


def test_offset_lag_backdates_the_off_t_not_at_and_never_before_the_on():
    seq = [0] * 10 + [0.9] * 30 + [0] * 10
    plain, lagged = run(seq, min_off=0.05), run(seq, min_off=0.05, off_lag=0.12)
    assert lagged[0] == plain[0]
    assert lagged[1].t == pytest.approx(plain[1].t - 0.12) and lagged[1].at == pytest.approx(plain[1].at)
    short = run([0] * 10 + [0.9] * 3 + [0] * 10, off_lag=1.0)
    assert short[1].t == pytest.approx(short[0].t)


def test_close_ends_open_events_at_stream_end():
    ev = run([0, 0.9, 0.9])
    assert isinstance(ev[-1], OffEvent) and ev[-1].t == pytest.approx(0.052)


def test_chunking_does_not_change_events():
    rng = np.random.default_rng(3)
    seq = np.clip(np.convolve(rng.random(400), np.ones(9) / 9, "same") * 1.3, 0, 1)
    whole = run(seq, min_on=0.03, min_off=0.05)
    assert whole and whole == run(seq, min_on=0.03, min_off=0.05, split=37)


def test_raw_mode_is_per_frame_thresholding():
    seq = [0, 0.6, 0, 0.6, 0.6, 0]
    p = SmootherParams.raw((0.5,))
    sm = Smoother(["dog"], p, "s", hop_s=HOP, centre0_s=0, ready0_s=0)
    ev = list(sm.update(np.asarray(seq)[:, None]))
    assert [(type(e).__name__, round(e.t, 3)) for e in ev] == [("OnEvent", 0.01), ("OffEvent", 0.02),
                                                              ("OnEvent", 0.03), ("OffEvent", 0.05)]


def excess_run(loud_frames, probs_frames, excess_db=3.0, off_lag=0.0, start=300, split=None):
    """A dog event: the log-mel frames rise 12 dB above a noisy background for ``loud_frames``
    from frame ``start``; the probability stays high for ``probs_frames`` from there."""
    n = start + max(loud_frames, probs_frames) + 100
    rng = np.random.default_rng(0)
    frames = -12.0 + rng.normal(0, 0.2, (n, 64))
    frames[start:start + loud_frames] += 12.0 / (10 / np.log(10))  # +12 dB in every bin
    probs = np.zeros((n, 1), np.float32)
    probs[start:start + probs_frames] = 0.9
    params = SmootherParams((0.5,), (0.3,), (0.0,), (0.0,), (0.0,), (off_lag,), (excess_db,))
    sm = Smoother(["dog"], params, "s", hop_s=HOP, centre0_s=0.016, ready0_s=0.032)
    parts = zip(np.array_split(probs, split), np.array_split(frames, split)) if split else [(probs, frames)]
    return [e for p, f in parts for e in sm.update(p, f)] + list(sm.close(0.032 + (n - 1) * HOP))


def test_offset_excess_ends_the_event_where_the_sound_ends_not_the_probability():
    on, off = excess_run(loud_frames=100, probs_frames=250)
    end_of_sound = 0.016 + 400 * HOP  # the first quiet frame's centre
    # + the hangover; the 5-frame average keeps the excess above 3 dB for up to 3 frames more
    assert off.t == pytest.approx(end_of_sound + EXCESS_HANGOVER_S, abs=0.03)
    assert off.at == pytest.approx(0.032 + 550 * HOP)  # the decision still waits for the probability
    assert on.t == pytest.approx(0.016 + 300 * HOP)
    # never later than the probability's own offset, whatever the sound does
    _, off_long = excess_run(loud_frames=250, probs_frames=100)
    assert off_long.t == pytest.approx(0.016 + 400 * HOP)
    # chunking does not change it
    assert excess_run(loud_frames=100, probs_frames=250, split=23) == [on, off]


def test_offset_excess_falls_back_to_the_lag_without_background_or_without_a_louder_sound():
    # an event at the stream's start has no background before it: offset_lag_s applies
    _, off = excess_run(loud_frames=100, probs_frames=250, off_lag=0.5, start=5)
    assert off.t == pytest.approx(0.016 + 255 * HOP - 0.5)
    # a sound no louder than the background: no frame above the threshold, offset_lag_s applies
    _, off = excess_run(loud_frames=100, probs_frames=250, excess_db=20.0, off_lag=0.5)
    assert off.t == pytest.approx(0.016 + 550 * HOP - 0.5)


def test_offset_excess_needs_the_log_mel_frames():
    params = SmootherParams((0.5,), (0.3,), (0.0,), (0.0,), (0.0,), (0.0,), (3.0,))
    sm = Smoother(["dog"], params, "s", hop_s=HOP, centre0_s=0, ready0_s=0)
    with pytest.raises(ValueError, match="needs the log-mel frames"):
        list(sm.update(np.zeros((3, 1))))
    with pytest.raises(ValueError, match="must be >= 0"):
        SmootherParams((0.5,), (0.3,), (0.0,), (0.0,), (0.0,), (0.0,), (-1.0,))
    assert SmootherParams((0.5,), (0.3,), (0,), (0,), (0,), (0,)).offset_excess_db == (0.0,)


def test_bad_thresholds_are_rejected():
    with pytest.raises(ValueError, match="off_threshold <= on_threshold"):
        SmootherParams((0.3,), (0.5,), (0,), (0,), (0,), (0,))


def two_class_run(dog, bird, dominance, min_on=0.0, lag=0.0, excess_db=0.0, frames=None, split=None):
    """Dog and bird probabilities (one value per 10 ms frame each); dominance applies to both."""
    n = 2
    params = SmootherParams((0.5,) * n, (0.3,) * n, (min_on,) * n, (0.0,) * n, (lag,) * n, (0.0,) * n,
                            (excess_db,) * n, (dominance,) * n)
    sm = Smoother(["dog", "bird"], params, "s", hop_s=HOP, centre0_s=0.016, ready0_s=0.032)
    probs = np.stack([dog, bird], axis=1).astype(np.float32)
    n_parts = split or 1
    frame_parts = np.array_split(frames, n_parts) if frames is not None else [None] * n_parts
    events = [e for p, f in zip(np.array_split(probs, n_parts), frame_parts) for e in sm.update(p, f)]
    return events + list(sm.close(0.032 + (len(probs) - 1) * HOP))


def test_dominance_holds_an_on_until_the_class_leads_and_keeps_its_onset():
    # dog rises at frame 10 but the bird leads until frame 30
    dog = [0.0] * 10 + [0.6] * 60 + [0.0] * 10
    bird = [0.0] * 10 + [0.9] * 20 + [0.2] * 50
    free = two_class_run(dog, bird, dominance=0.0)
    held = two_class_run(dog, bird, dominance=1.0)
    dog_free = [e for e in free if e.label == "dog"]
    dog_held = [e for e in held if e.label == "dog"]
    assert dog_free[0].at == pytest.approx(0.032 + 10 * HOP)
    assert dog_held[0].t == dog_free[0].t == pytest.approx(0.016 + 10 * HOP)  # t from where the candidate began
    assert dog_held[0].at == pytest.approx(0.032 + 30 * HOP)  # decided when it leads
    assert dog_held[1] == dog_free[1]  # the off is not moved
    # the bird led from its first frame: never held
    assert [e for e in held if e.label == "bird"] == [e for e in free if e.label == "bird"]
    # a ratio below 1: the dog may trail the bird (0.6 ≥ 0.5 × 0.9)
    assert [e.at for e in two_class_run(dog, bird, dominance=0.5) if e.label == "dog"] == [e.at for e in dog_free]
    # chunking does not change it
    assert two_class_run(dog, bird, dominance=1.0, split=7) == held


def test_dominance_drops_a_candidate_that_never_leads_and_never_ends_an_event():
    dog = [0.0] * 10 + [0.6] * 30 + [0.0] * 10
    bird = [0.0] * 10 + [0.9] * 30 + [0.0] * 10
    assert [e.label for e in two_class_run(dog, bird, dominance=1.0)] == ["bird", "bird"]
    # an event already on is not ended when another class overtakes it
    dog = [0.0] * 10 + [0.6] * 60 + [0.0] * 10
    bird = [0.0] * 30 + [0.9] * 20 + [0.0] * 30
    dogs = [e for e in two_class_run(dog, bird, dominance=1.0) if e.label == "dog"]
    assert [type(e) for e in dogs] == [OnEvent, OffEvent]
    assert dogs[1].t == pytest.approx(0.016 + 70 * HOP)
    with pytest.raises(ValueError, match="dominance must be >= 0"):
        SmootherParams((0.5,), (0.3,), (0.0,), (0.0,), (0.0,), (0.0,), (0.0,), (-1.0,))
    assert SmootherParams((0.5,), (0.3,), (0,), (0,), (0,), (0,)).dominance == (0.0,)


def test_dominance_with_offsets_by_the_sound_keeps_the_background_from_before_the_candidate():
    """A dog held back 2.5 s by a higher-scoring bird: its background is still the 2 s before
    its own onset (taken when the candidate began, not when the on was decided — by then the
    2 s before the held frames are the dog's own sound), so its off lands where its sound ends."""
    n, start, loud, held = 800, 300, 300, 250
    rng = np.random.default_rng(0)
    frames = -12.0 + rng.normal(0, 0.2, (n, 64))
    frames[start:start + loud] += 12.0 / (10 / np.log(10))
    dog = np.zeros(n)
    dog[start:start + 400] = 0.6
    bird = np.zeros(n)
    bird[start:start + held] = 0.9
    events = two_class_run(dog, bird, dominance=1.0, excess_db=3.0, frames=frames)
    on, off = [e for e in events if e.label == "dog"]
    assert on.t == pytest.approx(0.016 + start * HOP) and on.at == pytest.approx(0.032 + (start + held) * HOP)
    assert off.t == pytest.approx(0.016 + (start + loud) * HOP + EXCESS_HANGOVER_S, abs=0.03)
    assert two_class_run(dog, bird, dominance=1.0, excess_db=3.0, frames=frames, split=11) == events
