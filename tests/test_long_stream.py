"""State policy on hour-long input: the shipped models keep their state for the whole stream
(``state_reset_s: 0``), so their state must not drift. One hour of the demo recording played
in a loop: the last repetition must look like an early one, and the last ten minutes must
not hold more events than the first ten."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rttag.frontend import LogMelFrontend
from rttag.runtime import OnnxModel
from rttag.smoother import Smoother
from conftest import DEMO_WAV, REPO

MODELS = ["crnn", "context-cnn", "frame-mlp"]
HOUR_S = 3600


@pytest.fixture(scope="module")
def demo():
    y, sr = sf.read(DEMO_WAV, dtype="float32")
    return y, sr


@pytest.mark.parametrize("name", MODELS)
def test_an_hour_of_input_does_not_drift(name, demo):
    model = OnnxModel(REPO / "models" / f"{name}.onnx")
    y, sr = demo
    reps = int(np.ceil(HOUR_S * sr / len(y)))
    feats = LogMelFrontend(model.info.frontend).offline(np.tile(y, reps))
    state = model.zero_state(1)
    probs = []
    for i in range(0, len(feats), 500):  # T=500 per call; streaming T=1 equality is tested elsewhere
        p, state = model.step(feats[None, i:i + 500], state)
        probs.append(p[0])
    probs = np.concatenate(probs)
    for s in state.values():
        assert np.isfinite(s).all()
    hop = model.info.frontend.hop_length / sr
    per_rep = len(y) / sr / hop  # frames per repetition (not an integer)
    second = probs[int(per_rep): int(per_rep) + int(per_rep) - 10]
    last_start = int((reps - 1) * per_rep)
    last = probs[last_start: last_start + len(second)]
    assert np.abs(last - second).max() < 0.05, "the state drifts: the same audio scores differently after an hour"
    sm = Smoother(model.info.labels, model.info.smoother, "long", hop, 0.0, 0.0)
    onsets = np.array([e.t for e in sm.update(probs, feats) if type(e).__name__ == "OnEvent"])
    first10 = np.sum(onsets < 600)
    last10 = np.sum((onsets >= HOUR_S - 600) & (onsets < HOUR_S))
    assert last10 <= first10 * 1.1 + 2, (first10, last10)
