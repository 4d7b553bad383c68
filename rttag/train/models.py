"""The three rttag models: ``crnn`` (default), and the framewise baselines ``frame-mlp`` and
``context-cnn``.

Every model maps log-mel features ``[B, T, n_mels]`` and its state tensors to logits
``[B, T, n_classes]`` and the state after the last frame::

    logits, *state_out = model(feats, *state)

Each state tensor has batch on axis 0 and shape ``[B] + model.state_shapes()[name]``; all
zeros is the initial (reset) state. Running frame by frame (T=1), carrying the state, gives the
same output as one call over the whole sequence (docs/ARCHITECTURE.md, "Model contract").

All three start with the same two steps, so they differ only in how they use time:

* :class:`LevelNorm` — level robustness inside the graph: subtract a running (4 s) average of
  the frame's mean log-mel, carried as the 2-value state ``level``. A gain change (a constant
  added to every log-mel bin) then vanishes after a few seconds.
* a per-bin affine standardisation (BatchNorm1d over the mel bins).

The crnn can take a second input channel (off by default), beside the first one that keeps the
steady sounds: ``bin_channel``, :class:`BinNorm`, the log-mel minus its per-bin running average,
which takes out a recording's steady spectral colouring (microphone, EQ, codec) as well as its
level; or ``pcen_channel``, :class:`PCEN`, per-channel energy normalisation, a per-bin gain
control with a short time constant that keeps what changes (onsets) and flattens steady
background.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

LOG_FLOOR = 14.0
"""log-mel values are ≥ log(1e-6) ≈ -13.8; adding this makes them positive (see LevelNorm)."""


def fixed_ema(size: int, tau_frames: float) -> nn.RNN:
    """A fixed-weight ReLU ``nn.RNN`` (no bias, batch first) that is exactly the exponential
    moving average, time constant ``tau_frames``, of each of its ``size`` inputs while they are
    positive (the ReLU is then the identity): one op, dynamic T, a plain ``RNN`` node in ONNX."""
    a = 1.0 / tau_frames
    rnn = nn.RNN(size, size, nonlinearity="relu", bias=False, batch_first=True)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.eye(size) * a)
        rnn.weight_hh_l0.copy_(torch.eye(size) * (1.0 - a))
    return rnn.requires_grad_(False)


def running_mean(rnn: nn.RNN, values: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The bias-corrected running mean of positive ``values`` ``[B, T, S]`` by ``rnn``, a
    :func:`fixed_ema` of size ``S + 1`` that also averages 1 (the weight of the mean so far, so a
    zero ``state`` ``[B, S + 1]`` is a valid start) → mean ``[B, T, S]``, state out."""
    ema, h = rnn(torch.cat([values, torch.ones_like(values[..., :1])], -1), state.unsqueeze(0))
    return ema[..., :-1] / ema[..., -1:], h.squeeze(0)


class LevelNorm(nn.Module):
    """``z_t = x_t − m_t``: ``m_t`` is the bias-corrected exponential moving average (time
    constant ``tau_frames``) of the per-frame mean log-mel, i.e. of the input level in log units.

    State ``level`` ``[B, 2]``: the EMA of ``mean(x) + LOG_FLOOR`` and the EMA of 1 (its
    weight, for the bias correction, so a zero state is a valid start), kept by
    :func:`running_mean` (its inputs are positive).
    """

    def __init__(self, tau_frames: float = 400.0):
        super().__init__()
        self.rnn = fixed_ema(2, tau_frames)

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x ``[B, T, F]`` log-mel, level ``[B, 2]`` → normalised x ``[B, T, F]``, level out."""
        mean, level = running_mean(self.rnn, x.mean(-1, keepdim=True) + LOG_FLOOR, level)
        return x - (mean - LOG_FLOOR), level


class BinNorm(nn.Module):
    """``z_t = x_t − m_t`` per mel bin: ``m_t`` ``[F]`` is the bias-corrected exponential moving
    average (time constant ``tau_frames``) of each bin's log-mel. A fixed filter (a constant
    added to a bin) is absent from ``z`` from the first frame, a steady sound fades from it over
    the time constant, and onsets stand out.

    State ``bins`` ``[B, F + 1]``: the EMA of ``x + LOG_FLOOR`` per bin and the EMA of 1 (its
    weight), kept by :func:`running_mean` as in :class:`LevelNorm`.
    """

    def __init__(self, n_mels: int, tau_frames: float = 400.0):
        super().__init__()
        self.rnn = fixed_ema(n_mels + 1, tau_frames)

    def forward(self, x: torch.Tensor, bins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x ``[B, T, F]`` log-mel, bins ``[B, F + 1]`` → normalised x ``[B, T, F]``, bins out."""
        shifted = x + LOG_FLOOR
        mean, bins = running_mean(self.rnn, shifted, bins)
        return shifted - mean, bins


class PCEN(nn.Module):
    """Per-channel energy normalisation of a log-mel, per mel bin::

        E = exp(x),  M_t = bias-corrected EMA of E (time constant ``tau_frames``),
        z = (E / (eps + M)^alpha + delta)^r − delta^r

    (Wang et al. 2017; librosa's defaults: 0.4 s at 100 frames/s, alpha 0.98, delta 2, r 0.5).
    A power gain g scales z's inside term by only g^(1 − alpha) (1.10 for 20 dB); a steady sound
    settles at E/M^alpha ≈ 1 within the time constant, and an onset stands out above it.

    State ``pcen`` ``[B, F + 1]``: the EMA of E per bin and the EMA of 1 (its weight), kept by
    :func:`running_mean` (E is positive).
    """

    def __init__(self, n_mels: int, tau_frames: float = 40.0, alpha: float = 0.98, delta: float = 2.0,
                 r: float = 0.5, eps: float = 1e-6):
        super().__init__()
        self.rnn = fixed_ema(n_mels + 1, tau_frames)
        self.alpha, self.delta, self.r, self.eps = alpha, delta, r, eps

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x ``[B, T, F]`` log-mel (natural log of power) → z ``[B, T, F]`` (≥ 0), state out."""
        energy = torch.exp(x)
        smooth, state = running_mean(self.rnn, energy, state)
        return (energy / (self.eps + smooth) ** self.alpha + self.delta) ** self.r - self.delta ** self.r, state


SECOND_CHANNELS = {"bins": BinNorm, "pcen": PCEN}
"""The crnn's optional second input channels, by the name of their state."""


class InputNorm(nn.Module):
    """LevelNorm, then a per-bin affine standardisation. ``[B, T, F]`` → ``[B, T, F]``."""

    def __init__(self, n_mels: int):
        super().__init__()
        self.level = LevelNorm()
        self.bn = nn.BatchNorm1d(n_mels)

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, level = self.level(x, level)
        return self.bn(x.transpose(1, 2)).transpose(1, 2), level


class CausalConvBlock(nn.Module):
    """3×3 conv over (time, frequency), causal in time, + BatchNorm + ReLU + max-pool over
    frequency by ``pool``. The last 2 input frames are the state (``cache`` ``[B, C_in, 2, F_in]``).

    x ``[B, C_in, T, F_in]`` → ``[B, C_out, T, F_in // pool]``.
    """

    def __init__(self, c_in: int, c_out: int, pool: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, (3, 3), padding=(0, 1))
        self.bn = nn.BatchNorm2d(c_out)
        self.pool = pool

    def forward(self, x: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([cache, x], 2)
        y = F.relu(self.bn(self.conv(x)))
        return F.max_pool2d(y, (1, self.pool)), x[:, :, -2:]


class ConvFront(nn.Module):
    """A stack of :class:`CausalConvBlock`; look-back ``2 * len(channels)`` frames.

    x ``[B, T, n_mels]`` (one input channel) or ``[B, in_channels, T, n_mels]`` →
    ``[B, T, channels[-1] * n_mels / prod(pools)]``.
    """

    def __init__(self, n_mels: int, channels: list[int], pools: list[int], in_channels: int = 1):
        super().__init__()
        ins, bins = [in_channels, *channels[:-1]], [n_mels]
        for p in pools[:-1]:
            bins.append(bins[-1] // p)
        self.blocks = nn.ModuleList(CausalConvBlock(i, o, p) for i, o, p in zip(ins, channels, pools))
        self.cache_shapes = [[i, 2, b] for i, b in zip(ins, bins)]
        self.out_dim = channels[-1] * bins[-1] // pools[-1]

    def forward(self, x: torch.Tensor, caches: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        y, out = (x.unsqueeze(1) if x.dim() == 3 else x), []
        for block, cache in zip(self.blocks, caches):
            y, c = block(y, cache)
            out.append(c)
        b, c, t, f = y.shape
        return y.permute(0, 2, 1, 3).reshape(b, t, c * f), out


class CRNN(nn.Module):
    """InputNorm → ConvFront → Linear → GRU → Linear: the default streaming tagger.

    A skip path adds a linear read-out of the per-frame conv features to the GRU's logits, so
    an onset can show in the output before the GRU state has turned (onset latency).
    With ``bin_channel`` (:class:`BinNorm`) or ``pcen_channel`` (:class:`PCEN`) the conv front
    also sees that normalisation of the log-mel, per-bin standardised, as a second input channel.
    States: ``level`` [2], ``bins`` or ``pcen`` [n_mels + 1] (with the second channel),
    ``conv{i}`` per conv block, ``gru_h`` [layers, hidden].
    """

    def __init__(self, n_mels: int = 64, n_classes: int = 10, channels: tuple = (16, 32, 64),
                 pools: tuple = (2, 2, 2), hidden: int = 128, dropout: float = 0.2, bin_channel: bool = False,
                 pcen_channel: bool = False):
        super().__init__()
        if bin_channel and pcen_channel:
            raise ValueError("bin_channel and pcen_channel are alternatives: choose one")
        self.norm = InputNorm(n_mels)
        self.second = "bins" if bin_channel else "pcen" if pcen_channel else None
        self.second_norm = SECOND_CHANNELS[self.second](n_mels) if self.second else None
        self.second_bn = nn.BatchNorm1d(n_mels) if self.second else None
        self.n_mels = n_mels
        self.front = ConvFront(n_mels, list(channels), list(pools), in_channels=2 if self.second else 1)
        self.proj = nn.Linear(self.front.out_dim, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, n_classes)
        self.skip = nn.Linear(hidden, n_classes)
        self.hidden = hidden

    def state_shapes(self) -> dict[str, list[int]]:
        convs = {f"conv{i}": s for i, s in enumerate(self.front.cache_shapes)}
        second = {self.second: [self.n_mels + 1]} if self.second else {}
        return {"level": [2], **second, **convs, "gru_h": [1, self.hidden]}

    def forward(self, x: torch.Tensor, level: torch.Tensor, *rest: torch.Tensor):
        normed, level = self.norm(x, level)
        if self.second is None:
            *caches, h = rest
            head = (level,)
        else:
            second, *caches, h = rest
            z, second = self.second_norm(x, second)
            normed = torch.stack([normed, self.second_bn(z.transpose(1, 2)).transpose(1, 2)], 1)
            head = (level, second)
        y, caches = self.front(normed, list(caches))
        y = self.drop(F.relu(self.proj(y)))
        g, h = self.gru(y, h.transpose(0, 1).contiguous())
        return self.out(self.drop(g)) + self.skip(y), *head, *caches, h.transpose(0, 1)


class ContextCNN(nn.Module):
    """InputNorm → the CRNN's ConvFront (same look-back) → per-frame MLP head. No recurrence
    beyond the conv caches and the level average."""

    def __init__(self, n_mels: int = 64, n_classes: int = 10, channels: tuple = (16, 32, 64),
                 pools: tuple = (2, 2, 2), hidden: int = 256, dropout: float = 0.2):
        super().__init__()
        self.norm = InputNorm(n_mels)
        self.front = ConvFront(n_mels, list(channels), list(pools))
        self.head = nn.Sequential(nn.Linear(self.front.out_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, n_classes))

    def state_shapes(self) -> dict[str, list[int]]:
        return {"level": [2], **{f"conv{i}": s for i, s in enumerate(self.front.cache_shapes)}}

    def forward(self, x: torch.Tensor, level: torch.Tensor, *caches: torch.Tensor):
        x, level = self.norm(x, level)
        y, caches = self.front(x, list(caches))
        return self.head(y), level, *caches


class FrameMLP(nn.Module):
    """InputNorm → per-frame MLP. Its only state is the level average."""

    def __init__(self, n_mels: int = 64, n_classes: int = 10, hidden: int = 384, dropout: float = 0.2):
        super().__init__()
        self.norm = InputNorm(n_mels)
        self.head = nn.Sequential(nn.Linear(n_mels, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, n_classes))

    def state_shapes(self) -> dict[str, list[int]]:
        return {"level": [2]}

    def forward(self, x: torch.Tensor, level: torch.Tensor):
        x, level = self.norm(x, level)
        return self.head(x), level


ARCHS = {"crnn": CRNN, "frame-mlp": FrameMLP, "context-cnn": ContextCNN}
"""The architectures ``rttag train`` trains."""

ENSEMBLE = "ensemble"
"""The arch name of :class:`Ensemble` checkpoints (built from trained ones, never trained)."""

PROB_EPS = 1e-6
"""The ensemble's mean probability is clipped to [PROB_EPS, 1 − PROB_EPS] before its logit."""


class Ensemble(nn.Module):
    """``members`` models of one arch run side by side on the same features, each carrying its
    own state; the output is the logit of the mean of their probabilities, so the exported
    graph's sigmoid gives that mean. (A prediction ensemble: members trained with different
    seeds or recipes miss different recordings, and their mean is meant to miss fewer; measured
    in docs/TRAINING.md, "Prediction ensembles".)

    Every member is built from ``hparams``, or member i from ``member_hparams[i]`` where that
    list is given (members whose hyper-parameters differ, e.g. one with a PCEN input channel
    beside plain ones; each then has its own number of states).

    States: each member's, prefixed ``m{i}_`` (member i's ``gru_h`` is ``m{i}_gru_h``).
    feats ``[B, T, n_mels]`` → logits ``[B, T, n_classes]``, state out.
    """

    def __init__(self, arch: str = "crnn", members: int = 2, hparams: dict | None = None,
                 member_hparams: list[dict] | None = None):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown member arch {arch!r} (choose from {', '.join(ARCHS)})")
        each = member_hparams if member_hparams is not None else [hparams or {}] * members
        if len(each) != members:
            raise ValueError(f"member_hparams has {len(each)} entries for {members} members")
        self.members = nn.ModuleList(ARCHS[arch](**h) for h in each)
        counts = [len(m.state_shapes()) for m in self.members]
        self.state_slices = [slice(sum(counts[:i]), sum(counts[:i + 1])) for i in range(members)]

    def state_shapes(self) -> dict[str, list[int]]:
        return {f"m{i}_{name}": shape for i, m in enumerate(self.members) for name, shape in m.state_shapes().items()}

    def forward(self, x: torch.Tensor, *state: torch.Tensor):
        probs, state_out = [], []
        for member, own in zip(self.members, self.state_slices):
            logits, *s = member(x, *state[own])
            probs.append(torch.sigmoid(logits))
            state_out += s
        p = torch.stack(probs).mean(0).clamp(PROB_EPS, 1.0 - PROB_EPS)
        return torch.log(p) - torch.log1p(-p), *state_out


class OutputStack(nn.Module):
    """``model`` with a per-frame linear map on its output logits: ``logits' = logits · Wᵀ + b``
    (``out.weight`` W ``[n_classes, n_classes]``, ``out.bias`` b ``[n_classes]``), the identity
    until :mod:`rttag.train.stack` fits it on a validation split from packages the model never
    trained on. Each class's output can then draw on the other classes' logits (the model's
    ``speech`` firing on a kind of sound it has not heard as ``dog``). Per frame, no state of its
    own: a framewise model stays framewise. States and shapes are ``model``'s."""

    def __init__(self, model: nn.Module, n_classes: int):
        super().__init__()
        self.model = model
        self.out = nn.Linear(n_classes, n_classes)
        with torch.no_grad():
            self.out.weight.copy_(torch.eye(n_classes))
            self.out.bias.zero_()

    def state_shapes(self) -> dict[str, list[int]]:
        return self.model.state_shapes()

    def forward(self, x: torch.Tensor, *state: torch.Tensor):
        logits, *state_out = self.model(x, *state)
        return self.out(logits), *state_out


def build(arch: str, hparams: dict) -> nn.Module:
    """A model of ``arch`` (a key of ARCHS, or ENSEMBLE) built from JSON-able keyword arguments."""
    if arch == ENSEMBLE:
        return Ensemble(**hparams)
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r} (choose from {', '.join([*ARCHS, ENSEMBLE])})")
    return ARCHS[arch](**hparams)


def full_hparams(arch: str, given: dict) -> dict:
    """``given`` plus the constructor defaults of ``arch`` (a key of ARCHS; JSON-able), so a
    checkpoint stays loadable if the defaults change, and two checkpoints that differ only in
    whether they spell a default out compare equal."""
    sig = inspect.signature(ARCHS[arch])
    full = {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}
    full.update(given)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in full.items()}


def zero_state(model: nn.Module, batch: int, device: str | torch.device = "cpu") -> list[torch.Tensor]:
    """The initial state, in ``state_shapes()`` order: float32 zeros ``[batch, *shape]``."""
    return [torch.zeros(batch, *s, device=device) for s in model.state_shapes().values()]


def n_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
