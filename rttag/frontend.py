"""Incremental log-mel frontend, identical in streaming and offline use.

A frame ``i`` covers samples ``[i * hop, i * hop + n_fft)`` (librosa's ``center=False``).
It becomes available once its last sample has arrived, i.e. at stream time
``(i * hop + n_fft) / sample_rate`` seconds.

Offline (training, tests) and streaming (daemon) both go through :class:`LogMelFrontend`,
so the features a model was trained on are exactly the features it sees live.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class FrontendParams:
    """Log-mel parameters; stored in every model's ONNX metadata.

    sample_rate: Hz. n_fft, win_length, hop_length: samples. fmin, fmax: Hz.
    log_offset: added to the mel power before the natural log.
    """

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 512
    hop_length: int = 160
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 8000.0
    log_offset: float = 1e-6

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FrontendParams":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown frontend parameter(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    @property
    def frame_seconds(self) -> float:
        """Seconds between consecutive frames (hop)."""
        return self.hop_length / self.sample_rate


class LogMelFrontend:
    """Turns pushed float32 mono samples into log-mel frames ``[T, n_mels]`` float32.

    Carries the last ``n_fft - hop`` (or fewer) samples between pushes, so any chunking of a
    signal yields exactly the frames of :meth:`offline` on the whole signal.
    """

    def __init__(self, params: FrontendParams = FrontendParams()):
        import librosa  # imported lazily: keeps `rttag --help` fast

        if params.win_length > params.n_fft:
            raise ValueError("win_length must not exceed n_fft")
        self.params = params
        window = librosa.filters.get_window("hann", params.win_length, fftbins=True)
        self._window = librosa.util.pad_center(window, size=params.n_fft).astype(np.float64)
        self._mel = librosa.filters.mel(
            sr=params.sample_rate, n_fft=params.n_fft, n_mels=params.n_mels,
            fmin=params.fmin, fmax=params.fmax,
        ).astype(np.float64)  # [n_mels, n_fft // 2 + 1]
        self._carry = np.zeros(0, dtype=np.float32)
        self.frames_out = 0
        """Number of frames emitted so far (absolute frame index of the next frame)."""

    def reset(self) -> None:
        """Forget carried samples and restart frame counting at 0."""
        self._carry = np.zeros(0, dtype=np.float32)
        self.frames_out = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Append samples (1-D float32, any length, may be 0) and return the completed frames.

        Returns float32 ``[T, n_mels]``, T >= 0.
        """
        p = self.params
        buf = np.concatenate([self._carry, np.asarray(samples, dtype=np.float32).reshape(-1)])
        if len(buf) < p.n_fft:
            self._carry = buf
            return np.zeros((0, p.n_mels), dtype=np.float32)
        n = (len(buf) - p.n_fft) // p.hop_length + 1
        frames = np.lib.stride_tricks.sliding_window_view(buf, p.n_fft)[:: p.hop_length][:n]
        spec = np.abs(np.fft.rfft(frames.astype(np.float64) * self._window, axis=1)) ** 2
        mel = spec @ self._mel.T  # [T, n_mels]
        self._carry = buf[n * p.hop_length:].copy()
        self.frames_out += n
        return np.log(mel + p.log_offset).astype(np.float32)

    def offline(self, signal: np.ndarray) -> np.ndarray:
        """Log-mel of a whole signal ``[T, n_mels]`` float32 (does not touch streaming state)."""
        other = LogMelFrontend.__new__(LogMelFrontend)
        other.params, other._window, other._mel = self.params, self._window, self._mel
        other.reset()
        return other.push(signal)
