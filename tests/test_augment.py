"""Training augmentation (rttag.train.augment): Freq-MixStyle's statistics blend and the chain."""

import torch

from rttag.train import augment


def _streams(b: int = 6, t: int = 400, f: int = 64) -> torch.Tensor:
    """Log-mel-like streams ``[B, T, F]``, each with its own spectral colour and dynamics."""
    g = torch.Generator().manual_seed(1)
    colour = torch.randn(b, 1, f, generator=g) * 3.0 - 8.0
    spread = torch.rand(b, 1, f, generator=g) * 2.0 + 0.5
    return colour + spread * torch.randn(b, t, f, generator=g)


def test_freq_mixstyle_off_and_identical_streams_change_nothing():
    x = _streams()
    assert torch.equal(augment.freq_mixstyle(x, 0.0), x)
    same = x[:1].expand(5, -1, -1).contiguous()
    torch.manual_seed(0)
    assert torch.allclose(augment.freq_mixstyle(same, 1.0), same, atol=1e-4)


def test_freq_mixstyle_blends_each_bins_statistics_between_streams():
    x = _streams()
    torch.manual_seed(0)
    out = augment.freq_mixstyle(x, 1.0)
    mu, sig = x.mean(1), x.std(1)
    lo, hi = mu.min(0).values, mu.max(0).values
    out_mu, out_sig = out.mean(1), out.std(1)
    # every stream's per-bin mean and spread now lie within the batch's range: a convex blend
    assert torch.all(out_mu >= lo - 1e-3) and torch.all(out_mu <= hi + 1e-3)
    assert torch.all(out_sig >= sig.min(0).values - 1e-3) and torch.all(out_sig <= sig.max(0).values + 1e-3)
    # and the batch changed: at least one stream took on another's colour
    assert (out_mu - mu).abs().max() > 0.5
    # within a stream and bin the frames keep their order (an affine map with a positive slope)
    for i in range(x.shape[0]):
        assert torch.equal(out[i].argsort(0), x[i].argsort(0))


def test_augment_chain_keeps_shapes_and_targets_with_freq_mixstyle():
    x = _streams(b=4, t=300)
    y = torch.zeros(4, 300, 10)
    y[0, 50:120, 3] = 1
    torch.manual_seed(0)
    xa, ya = augment.augment(x, y, p_freq_mixstyle=1.0)
    assert xa.shape == x.shape and torch.isfinite(xa).all()
    assert ya.shape == y.shape and set(ya.unique().tolist()) <= {0.0, 1.0}
    assert torch.all(ya >= y)  # mixing unites labels, never removes one


def test_mix_adds_the_next_stream_at_the_asked_level_and_unites_labels():
    """Stream b gets stream b−1's power times the drawn gain; a fixed range gives that gain
    exactly, ``p_apply`` 0 leaves every stream alone, and the draws do not depend on the settings."""
    p = torch.rand(6, 50, 4) + 0.1
    y = torch.zeros(6, 50, 3)
    y[2, 10:20, 1] = 1
    for level_db in ((0.0, 0.0), (6.0, 6.0), (-10.0, -10.0)):
        out, yo = augment.mix(p, y, p_apply=1.0, level_db=level_db)
        assert torch.allclose(out, p + 10 ** (level_db[0] / 10) * p.roll(1, 0), rtol=1e-5)
        assert torch.equal(yo[3, 10:20, 1], torch.ones(10)) and torch.equal(yo[2], y[2])  # stream 3 got stream 2's label
    out, yo = augment.mix(p, y, p_apply=0.0, level_db=(6.0, 6.0))
    assert torch.equal(out, p) and torch.equal(yo, y)
    torch.manual_seed(1)
    a, _ = augment.mix(p, y, p_apply=0.5, level_db=(-6.0, 0.0))
    after_a = torch.rand(1)
    torch.manual_seed(1)
    b, _ = augment.mix(p, y, p_apply=0.5, level_db=(-6.0, 6.0))
    assert torch.equal(torch.rand(1), after_a)  # the same random numbers consumed
    mixed = (a != p).flatten(1).any(1)
    assert torch.equal(mixed, (b != p).flatten(1).any(1))  # the same streams picked
    assert torch.all((b - p)[mixed] >= (a - p)[mixed])  # each drawn gain scaled up, not redrawn


def test_reverb_tail_energy_follows_the_asked_range():
    """One loud frame in silence: the tail after it holds the asked share of its energy."""
    p = torch.zeros(8, 200, 4)
    p[:, 10] = 1.0
    torch.manual_seed(0)
    for level_db in ((0.0, 0.0), (-12.0, -12.0), (3.0, 3.0)):
        out = augment.reverb(p, p_apply=1.0, level_db=level_db)
        tail = out[:, 11:].sum(1)  # [B, F]: the energy after the frame
        assert torch.allclose(out[:, 10], p[:, 10])  # the direct frame is kept
        assert torch.allclose(tail, torch.full_like(tail, 10 ** (level_db[0] / 10)), rtol=1e-4)
    assert torch.equal(augment.reverb(p, p_apply=0.0, level_db=(3.0, 3.0)), p)
