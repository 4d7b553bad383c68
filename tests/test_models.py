"""The models' input normalisation: what the level channel and the crnn's optional second
channels (``bin_channel``, ``pcen_channel``) keep and take out of a recording."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rttag.train.models import PCEN, BinNorm, LevelNorm, build, zero_state  # noqa: E402

TAU = 400
"""LevelNorm's and BinNorm's time constant (frames; PCEN's is 40)."""


def log_mel(frames: int = 3000, seed: int = 0) -> torch.Tensor:
    """Steady noise as log-mel ``[1, frames, 64]`` (natural log, around −5)."""
    return torch.from_numpy(np.random.default_rng(seed).normal(-5.0, 1.0, (1, frames, 64)).astype(np.float32))


def run(norm, x: torch.Tensor, state_size: int) -> torch.Tensor:
    with torch.no_grad():
        return norm(x, torch.zeros(1, state_size))[0]


def test_the_bin_channel_takes_out_a_fixed_filter_that_the_level_channel_keeps():
    x = log_mel()
    tilt = torch.linspace(-3.0, 3.0, 64)  # a fixed EQ: −3 to +3 in log units across the bins, mean 0
    bins = run(BinNorm(64), x + tilt, 65) - run(BinNorm(64), x, 65)
    level = run(LevelNorm(), x + tilt, 2) - run(LevelNorm(), x, 2)
    np.testing.assert_allclose(bins.numpy(), 0.0, atol=1e-4)  # from the first frame: the bias correction
    np.testing.assert_allclose(level.numpy(), np.broadcast_to(tilt.numpy(), level.shape), atol=1e-4)


def test_a_steady_sound_fades_from_the_bin_channel_over_its_time_constant():
    x = log_mel()
    x[0, 600:, 20:24] += 5.0  # a steady tone from frame 600 on
    z = run(BinNorm(64), x, 65)[0, :, 20:24].mean(-1).numpy()
    rest = run(BinNorm(64), x, 65)[0, :, 30:].mean(-1).numpy()
    assert z[600] > 4.0  # the onset stands out at full height
    # one time constant later: the step minus its share of the bias-corrected average
    keep = 1.0 - 1.0 / TAU
    expected = 5.0 - 5.0 * (1.0 - keep ** (TAU + 1)) / (1.0 - keep ** (600 + TAU + 1))
    assert abs(z[600 + TAU - 20: 600 + TAU + 21].mean() - expected) < 0.25  # 41 frames: noise ±0.08
    assert abs(z[-41:].mean()) < 0.25 and abs(rest[-41:].mean()) < 0.25  # gone, like the steady bins
    level = run(LevelNorm(), x, 2)[0, -1, 20:24].mean() - run(LevelNorm(), x, 2)[0, -1, 30:].mean()
    assert level > 4.0  # the level channel still holds the tone above the other bins


def test_the_bin_channel_adds_one_state_and_an_input_channel_only_when_asked():
    plain, binned = build("crnn", {}), build("crnn", {"bin_channel": True})
    assert list(binned.state_shapes()) == ["level", "bins", *list(plain.state_shapes())[1:]]
    assert binned.state_shapes()["bins"] == [65]
    assert binned.front.blocks[0].conv.in_channels == 2 and plain.front.blocks[0].conv.in_channels == 1
    # the plain crnn has no weights of the option, so checkpoints written before it load unchanged
    assert not any(k.startswith("second_") for k in plain.state_dict())
    with torch.no_grad():
        out = binned.eval()(log_mel(50), *zero_state(binned, 1))
    assert out[0].shape == (1, 50, 10) and out[2].shape == (1, 65)


def test_pcen_hardly_hears_a_gain_change_and_flattens_a_steady_sound_but_not_its_onset():
    x = log_mel()
    x[0, 600:, 20:24] += 5.0  # a steady tone from frame 600 on (+22 dB)
    z = run(PCEN(64), x, 65)[0]
    loud = run(PCEN(64), x + np.log(100.0), 65)[0]  # the same 20 dB louder (power × 100)
    # only through alpha < 1: the inside term grows by 100 ** 0.02 = 1.096, z by less
    assert torch.all(loud >= z) and float((loud / z.clamp_min(1e-3)).median()) < 1.1
    tone, rest = z[:, 20:24].mean(-1), z[:, 30:].mean(-1)
    assert tone[600] > 10.0 * rest[550:600].mean()  # the onset: E jumps 148 times above M
    # four time constants (160 frames) on, the tone sits where the steady noise does
    assert abs(float(tone[760:].mean()) - float(rest[760:].mean())) < 0.1 * float(rest[760:].mean())


def test_the_channels_are_alternatives_and_pcen_adds_its_own_state():
    with pytest.raises(ValueError, match="choose one"):
        build("crnn", {"bin_channel": True, "pcen_channel": True})
    pcen = build("crnn", {"pcen_channel": True})
    assert list(pcen.state_shapes())[:2] == ["level", "pcen"] and pcen.state_shapes()["pcen"] == [65]
    with torch.no_grad():
        out = pcen.eval()(log_mel(50), *zero_state(pcen, 1))
    assert out[0].shape == (1, 50, 10) and torch.isfinite(out[0]).all()
