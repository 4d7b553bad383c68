"""The leak screen of ``rttag data build`` (``rttag.dataset.leaks``): a held-out recording that is
a re-encoded, re-levelled, shifted copy of an earlier split's recording is found; a different
take of the same kind of sound is not. No network: the recordings are rttag's generated ones."""

import numpy as np
import pytest
import soxr

from rttag.dataset import leaks, synth
from rttag.dataset.sources import Source

KINDS = [("door", "knock"), ("door", "slam"), ("dog", "bark"), ("water", "stream"), ("engine", "combustion"),
         ("alarm", "beeps"), ("explosion", "gunshots"), ("background", "wind")]


def take(label: str, kind: str, seed: int) -> np.ndarray:
    return synth.clip(label, kind, np.random.default_rng([seed, len(kind)]))


def copy_of(audio: np.ndarray, seed: int) -> np.ndarray:
    """What another package's copy of a file looks like once decoded: another level, a round trip
    through 22.05 kHz, a few milliseconds of lead-in, a faint noise floor."""
    rng = np.random.default_rng(seed)
    y = soxr.resample(soxr.resample(audio * 0.3, 16000, 22050), 22050, 16000)
    y = np.concatenate([np.zeros(int(rng.integers(0, 64)), np.float32), y])
    return (y + rng.normal(0, 1e-3 * np.abs(y).max(), len(y))).astype(np.float32)


def src(label: str, name: str, split: str) -> Source:
    return Source(f"pkg-{split}", f"{label}/{name}.wav", label, split, "test", 0.0)


@pytest.mark.parametrize("label, kind", KINDS)
def test_a_copy_matches_and_another_take_does_not(label, kind):
    a, b = take(label, kind, 0), take(label, kind, 1)
    envs = [leaks.envelope(x) for x in (a, copy_of(a, 0), b)]
    stack = (np.array([e for e, _ in envs]), np.array([n for _, n in envs]))
    sim = leaks.similarity(stack, stack)
    assert np.diag(sim) == pytest.approx(1.0, abs=1e-5)
    assert sim[0, 1] >= leaks.CANDIDATE
    assert leaks.waveform_similarity(a, copy_of(a, 0)) >= leaks.THRESHOLD
    # another take is a candidate at most, and never a match
    assert leaks.waveform_similarity(a, b) < leaks.THRESHOLD


def test_screen_reports_each_held_out_copy_against_the_split_it_repeats():
    audio, by_split = {}, {"train": {}, "validation": {}, "test": {}}

    def add(split, label, name, y):
        s = src(label, name, split)
        audio[s.key] = y
        by_split[split].setdefault(label, []).append(s)
        return s

    originals = {kind: add("train", label, f"{kind}-a", take(label, kind, 0)) for label, kind in KINDS}
    held = {kind: add("validation", label, f"{kind}-b", take(label, kind, 1)) for label, kind in KINDS}
    add("train", "door", "knock-a-again", copy_of(audio[originals["knock"].key], 1))      # train repeats itself: fine
    knock_copy = add("validation", "door", "knock-copy", copy_of(audio[originals["knock"].key], 2))
    bark_copy = add("test", "dog", "bark-copy", copy_of(audio[held["bark"].key], 3))
    stream_copy = add("test", "speech", "stream-copy", copy_of(audio[originals["stream"].key], 4))  # any label
    add("test", "engine", "combustion-c", take("engine", "combustion", 2))

    found = leaks.screen(by_split, audio)
    assert sorted((leak.split, leak.held_out.path, leak.match_split) for leak in found) == sorted(
        [("validation", knock_copy.path, "train"), ("test", bark_copy.path, "validation"),
         ("test", stream_copy.path, "train")])     # the knock copy matches two training knocks: reported once
    leak = next(leak for leak in found if leak.held_out == bark_copy)
    assert leak.match == held["bark"] and leak.similarity >= leaks.THRESHOLD
    assert "test pkg-test/dog/bark-copy.wav (dog) repeats validation pkg-validation/dog/bark-b.wav" in leak.describe()


def test_recordings_shorter_than_a_frame_are_never_matched():
    tiny = np.ones(100, np.float32)
    env, frames = leaks.envelope(tiny)
    assert frames == 0 and not env.any()
    sim = leaks.similarity((env[None], np.array([frames])), (env[None], np.array([frames])))
    assert sim[0, 0] == -1.0
