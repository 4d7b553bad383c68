"""Streaming log-mel equals librosa's offline computation, for any chunking."""

import librosa
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rttag.frontend import FrontendParams, LogMelFrontend
from conftest import DEMO_WAV, tone_bursts

P = FrontendParams()


def librosa_logmel(y: np.ndarray) -> np.ndarray:
    mel = librosa.feature.melspectrogram(y=y, sr=P.sample_rate, n_fft=P.n_fft, hop_length=P.hop_length,
                                         win_length=P.win_length, window="hann", center=False, power=2.0,
                                         n_mels=P.n_mels, fmin=P.fmin, fmax=P.fmax)
    return np.log(mel + P.log_offset).T.astype(np.float32)


def signals():
    rng = np.random.default_rng(0)
    out = {"bursts": tone_bursts(3.0), "noise": (0.1 * rng.standard_normal(16000)).astype(np.float32),
           "chirp": librosa.chirp(fmin=60, fmax=7000, sr=16000, duration=1.3).astype(np.float32)}
    if DEMO_WAV.exists():
        import soundfile as sf
        out["demo"] = sf.read(DEMO_WAV, dtype="float32")[0][: 16000 * 5]
    return out


@pytest.mark.parametrize("name", sorted(signals()))
def test_offline_equals_librosa(name):
    y = signals()[name]
    ours = LogMelFrontend(P).offline(y)
    ref = librosa_logmel(y)
    assert ours.shape == ref.shape == (1 + (len(y) - P.n_fft) // P.hop_length, P.n_mels)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=40))
def test_any_chunking_gives_the_offline_frames(cuts):
    y = tone_bursts(2.0)
    fe = LogMelFrontend(P)
    points = np.unique(np.clip(np.cumsum(cuts), 0, len(y)))
    parts = np.split(y, points)
    streamed = np.concatenate([fe.push(p) for p in parts])
    np.testing.assert_array_equal(streamed, fe.offline(y))
    assert fe.frames_out == len(streamed)


@pytest.mark.parametrize("block", [1, 7, 160, 1000, 4096])
def test_fixed_blocks(block):
    y = tone_bursts(1.0)
    fe = LogMelFrontend(P)
    streamed = np.concatenate([fe.push(y[i:i + block]) for i in range(0, len(y), block)])
    np.testing.assert_array_equal(streamed, fe.offline(y))


def test_too_short_gives_no_frames_until_enough():
    fe = LogMelFrontend(P)
    assert fe.push(np.zeros(P.n_fft - 1, np.float32)).shape == (0, P.n_mels)
    assert fe.push(np.zeros(1, np.float32)).shape == (1, P.n_mels)


def test_unknown_frontend_key_is_rejected():
    with pytest.raises(ValueError, match="unknown frontend parameter"):
        FrontendParams.from_dict({**P.to_dict(), "bogus": 1})
