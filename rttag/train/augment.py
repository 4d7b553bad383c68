"""Training-time augmentation on log-mel batches, in torch (cheap: no audio re-decoding).

Features are ``log(mel_power + 1e-6)``; every acoustic change is applied to the mel power
(``exp(x) − 1e-6``) and logged again, so the ``1e-6`` floor behaves as in real audio:

* gain ±12 dB and a smooth random EQ curve (±6 dB) — recording level and microphone colour;
* low-pass: a roll-off above a random mel bin (cheap microphones, codecs, distance);
* reverberation: the mel power convolved over time with an exponentially decaying tail
  (RT60 0.2–1.0 s, tail energy −12…−3 dB relative to the direct sound by default, on 30 % of
  the streams; ``rttag train --reverb-db LOW,HIGH --reverb-p P`` widens either);
* background: stationary coloured noise at a random level under the chunk's median power;
* mixing: another stream's chunk added in the power domain (−6…0 dB by default, on 30 % of the
  streams; ``rttag train --mix-p P --mix-db LOW,HIGH`` changes either), labels united — the
  stream's events partly masked by another recording's sound;
* pitch: the mel axis shifted by up to ±3 bins (≈ ±15 % in frequency), edge bins repeated —
  another bark, siren or voice than the few the training set holds;
* SpecAugment-style frequency masks and one short time mask;
* optionally (``freq_mixstyle``, off by default) Freq-MixStyle: each stream's per-mel-bin
  mean and standard deviation over the chunk replaced by a random blend of its own and another
  stream's — the spectral colour and dynamics of another recording chain, not a smooth random
  curve (Kim et al. 2022; Schmid et al. 2022, device generalisation in DCASE task 1).

All operate on ``x`` ``[B, T, F]`` (float32 log-mel) and ``y`` ``[B, T, C]`` (0/1 targets).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_OFFSET = 1e-6
DB = math.log(10.0) / 10.0
"""Natural-log units per dB of power."""


def _to_power(x: torch.Tensor) -> torch.Tensor:
    return (x.exp() - LOG_OFFSET).clamp_min(0.0)


def _to_log(p: torch.Tensor) -> torch.Tensor:
    return (p + LOG_OFFSET).log()


def _gain(level_db: tuple[float, float], *shape: int, device) -> torch.Tensor:
    """Power gains ``[*shape]`` in natural-log units, drawn uniformly from ``level_db`` (dB);
    one ``torch.rand`` draw of ``shape`` whatever the range."""
    return (level_db[0] + (level_db[1] - level_db[0]) * torch.rand(*shape, device=device)) * DB


def _chance(b: int, p: float, device) -> torch.Tensor:
    """Float mask ``[B, 1, 1]``: 1 for the streams picked with probability ``p``."""
    return (torch.rand(b, 1, 1, device=device) < p).float()


def colour(x: torch.Tensor, p_lowpass: float = 0.3) -> torch.Tensor:
    """Gain, EQ and low-pass as one log-power offset ``[B, 1, F]`` (dB-scaled) per stream."""
    b, _, f = x.shape
    dev = x.device
    bins = torch.linspace(0.0, 1.0, f, device=dev)
    gain = (torch.rand(b, 1, device=dev) * 24.0 - 12.0)
    eq = torch.zeros(b, f, device=dev)
    for k in (1, 2, 3):
        eq += torch.randn(b, 1, device=dev) * (3.0 / k) * torch.cos(math.pi * k * bins + torch.rand(b, 1, device=dev) * math.pi)
    eq = eq.clamp(-6.0, 6.0)
    cutoff = 0.4 + 0.55 * torch.rand(b, 1, device=dev)
    slope = 40.0 + 160.0 * torch.rand(b, 1, device=dev)  # dB per unit of the mel axis
    lowpass = -F.relu(bins - cutoff) * slope * _chance(b, p_lowpass, dev)[:, 0]
    return ((gain + eq + lowpass) * DB).unsqueeze(1)


REVERB_DB = (-12.0, -3.0)
"""Default range of the reverberant tail's energy relative to the direct sound (dB)."""

MIX_DB = (-6.0, 0.0)
"""Default range of the added stream's power relative to its own (dB), see :func:`mix`."""


def reverb(p: torch.Tensor, p_apply: float = 0.3, hop_s: float = 0.01, taps: int = 100,
           level_db: tuple[float, float] = REVERB_DB) -> torch.Tensor:
    """Mel power ``[B, T, F]`` plus a causal exponential tail (``taps`` frames long) whose total
    energy is drawn uniformly from ``level_db`` (dB relative to the frame it follows), on a share
    ``p_apply`` of the streams."""
    b, t, f = p.shape
    dev = p.device
    rt60 = 0.2 + 0.8 * torch.rand(b, 1, device=dev)
    level = _gain(level_db, b, 1, device=dev)
    k = torch.arange(1, taps + 1, device=dev).float() * hop_s
    tail = torch.exp(-6.9 * k / rt60)  # [B, taps], power decays 60 dB over rt60
    tail = tail / tail.sum(1, keepdim=True) * level.exp()  # total tail energy = level
    kernel = torch.cat([tail.flip(1), torch.zeros(b, 1, device=dev)], 1)  # causal: taps before t
    kernel = kernel.repeat_interleave(f, 0).unsqueeze(1)  # [B*F, 1, taps+1]
    sig = F.pad(p.transpose(1, 2).reshape(1, b * f, t), (taps, 0))
    wet = F.conv1d(sig, kernel, groups=b * f).reshape(b, f, t).transpose(1, 2)
    return p + wet * _chance(b, p_apply, dev)


def background(p: torch.Tensor, p_apply: float = 0.4) -> torch.Tensor:
    """Add stationary noise with a random spectral tilt, 30…5 dB below the chunk's median power."""
    b, _, f = p.shape
    dev = p.device
    med = p.mean(-1).median(1).values.clamp_min(1e-8)  # [B]
    rel = (-30.0 + 25.0 * torch.rand(b, device=dev)) * DB
    tilt = torch.linspace(-1.0, 1.0, f, device=dev) * (torch.rand(b, 1, device=dev) * 20.0 - 10.0) * DB
    noise = (med * rel.exp()).view(b, 1, 1) * tilt.exp().unsqueeze(1)
    jitter = torch.exp(0.5 * torch.randn_like(p))  # noise-like frame-to-frame fluctuation
    return p + noise * jitter * _chance(b, p_apply, dev)


def mix(p: torch.Tensor, y: torch.Tensor, p_apply: float = 0.3,
        level_db: tuple[float, float] = MIX_DB) -> tuple[torch.Tensor, torch.Tensor]:
    """Add the power of the next stream's chunk to a share ``p_apply`` of the streams, scaled by
    a gain drawn uniformly from ``level_db`` (dB); labels united. Mel power ``p`` ``[B, T, F]``,
    targets ``y`` ``[B, T, C]``. The draws do not depend on the settings, so two runs that differ
    only in them see the same batches otherwise."""
    b = p.shape[0]
    m = _chance(b, p_apply, p.device)
    level = _gain(level_db, b, 1, 1, device=p.device).exp()
    p2, y2 = p.roll(1, 0), y.roll(1, 0)
    return p + m * level * p2, torch.maximum(y, m * y2)


def pitch(x: torch.Tensor, max_bins: int = 3, p_apply: float = 0.5) -> torch.Tensor:
    """Shift log-mel ``[B, T, F]`` along the mel axis by a random whole number of bins in
    ``[-max_bins, max_bins]`` (a pitch / formant shift of roughly 5 % per bin), repeating the
    edge bin into the vacated ones, on a random subset of streams."""
    b, t, f = x.shape
    dev = x.device
    s = torch.randint(-max_bins, max_bins + 1, (b, 1), device=dev) * (torch.rand(b, 1, device=dev) < p_apply)
    idx = (torch.arange(f, device=dev).view(1, f) - s).clamp(0, f - 1)  # [B, F]
    return torch.gather(x, 2, idx.unsqueeze(1).expand(b, t, f))


def masks(x: torch.Tensor, n_freq: int = 2, max_freq: int = 8, max_time: int = 15, p_apply: float = 0.5) -> torch.Tensor:
    """Frequency masks (``n_freq`` × up to ``max_freq`` bins) and one time mask (≤ ``max_time``
    frames), filled with the chunk's mean log-mel, on a random subset of streams."""
    b, t, f = x.shape
    dev = x.device
    fill = x.mean((1, 2), keepdim=True)
    hide = torch.zeros(b, t, f, dtype=torch.bool, device=dev)
    fi = torch.arange(f, device=dev).view(1, 1, f)
    ti = torch.arange(t, device=dev).view(1, t, 1)
    for _ in range(n_freq):
        w = torch.randint(0, max_freq + 1, (b, 1, 1), device=dev)
        s = (torch.rand(b, 1, 1, device=dev) * (f - w)).long()
        hide |= (fi >= s) & (fi < s + w)
    w = torch.randint(0, max_time + 1, (b, 1, 1), device=dev)
    s = (torch.rand(b, 1, 1, device=dev) * (t - w).clamp_min(1)).long()
    hide |= (ti >= s) & (ti < s + w)
    hide &= torch.rand(b, 1, 1, device=dev) < p_apply
    return torch.where(hide, fill, x)


def freq_mixstyle(x: torch.Tensor, p_apply: float, alpha: float = 0.4, eps: float = 1e-4) -> torch.Tensor:
    """Log-mel ``[B, T, F]`` with, on a random subset of streams, each mel bin's mean and
    standard deviation over the ``T`` frames set to ``λ`` × its own + ``(1 − λ)`` × those of
    another stream of the batch (a random permutation), ``λ ~ Beta(alpha, alpha)`` per stream."""
    b = x.shape[0]
    dev = x.device
    mu = x.mean(1, keepdim=True)  # [B, 1, F]
    sig = (x.var(1, keepdim=True) + eps).sqrt()
    lam = torch.distributions.Beta(alpha, alpha).sample((b, 1, 1)).to(dev)
    perm = torch.randperm(b, device=dev)
    mixed = (x - mu) / sig * (lam * sig + (1 - lam) * sig[perm]) + lam * mu + (1 - lam) * mu[perm]
    return torch.where(_chance(b, p_apply, dev) > 0, mixed, x)


def augment(x: torch.Tensor, y: torch.Tensor, p_freq_mixstyle: float = 0.0, p_reverb: float = 0.3,
            reverb_db: tuple[float, float] = REVERB_DB, p_mix: float = 0.3,
            mix_db: tuple[float, float] = MIX_DB) -> tuple[torch.Tensor, torch.Tensor]:
    """The full chain: ``x`` log-mel ``[B, T, F]``, ``y`` targets ``[B, T, C]`` → augmented pair;
    Freq-MixStyle on a share ``p_freq_mixstyle`` of the streams (0: not at all); reverberation on
    a share ``p_reverb``, its tail energy drawn from ``reverb_db`` (dB, see :func:`reverb`);
    another stream mixed into a share ``p_mix`` at ``mix_db`` (dB, see :func:`mix`)."""
    x = pitch(x)
    p = _to_power(x + colour(x))
    p, y = mix(p, y, p_mix, mix_db)
    p = reverb(p, p_reverb, level_db=reverb_db)
    p = background(p)
    x = _to_log(p)
    if p_freq_mixstyle:
        x = freq_mixstyle(x, p_freq_mixstyle)
    return masks(x), y
