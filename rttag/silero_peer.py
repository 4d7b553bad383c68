"""silero-vad as an external peer for the ``speech`` label, run with onnxruntime only.

The ``silero-vad`` package ships its ONNX model; its Python wrapper needs torch, so this
module reads the ONNX file straight from the installed package (without importing the
package) and drives it the way the wrapper does: 512-sample chunks at 16 kHz, each fed with
the 64 samples before it as context (``input [B, 64 + 512]``), the recurrent state
``[2, B, 128]`` carried from chunk to chunk, ``sr`` int64. Several files run at once as rows
of one batch (each row keeps its own state), which is how one session serves many streams.

Its usual streaming post-processing (threshold 0.5, release below 0.35, speech shorter than
250 ms dropped, silences shorter than 100 ms bridged) maps onto rttag's own smoother, so the
peer's events go through the same code and the same scoring as rttag's.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .errors import RttagError
from .smoother import SmootherParams

SAMPLE_RATE = 16000
CHUNK = 512
"""Samples per model call at 16 kHz (32 ms)."""
CONTEXT = 64
"""Samples of the previous chunk prepended to each chunk."""
STATE_SHAPE = (2, 128)
"""State ``[2, B, 128]``; the batch is axis 1."""
MODEL_FILE = "silero_vad.onnx"
STREAMING_PARAMS = SmootherParams(on_threshold=(0.5,), off_threshold=(0.35,), min_on_s=(0.25,),
                                  min_off_s=(0.1,), onset_lag_s=(0.0,), offset_lag_s=(0.0,))
"""silero-vad's usual streaming settings as rttag smoother parameters (one class: speech)."""


def model_path() -> Path:
    """Path of the ONNX model inside the installed ``silero-vad`` package (not imported:
    importing it would import torch)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise RttagError("silero-vad is not installed; install it with: pip install --no-deps silero-vad==6.2.3")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / MODEL_FILE
    if not path.is_file():
        raise RttagError(f"silero-vad is installed but has no {MODEL_FILE} (looked in {path.parent})")
    return path


def version() -> str:
    """The installed silero-vad package's version."""
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version("silero-vad")
    except PackageNotFoundError:
        return "unknown"


class SileroVad:
    """The silero-vad ONNX model in one onnxruntime session (CPU, ``threads`` intra-op threads)."""

    def __init__(self, path: str | Path | None = None, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.path = Path(path) if path is not None else model_path()
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)

    def speech_probs(self, signals: list[np.ndarray]) -> list[np.ndarray]:
        """Speech probability per 32 ms chunk for each signal (float32 mono at 16 kHz, any
        length), streamed from a zero state; the signals run side by side as one batch.

        Returns one float32 array ``[ceil(n / 512)]`` per signal (the last chunk zero-padded).
        """
        if not signals:
            return []
        n_chunks = [int(np.ceil(len(s) / CHUNK)) for s in signals]
        longest = max(n_chunks)
        batch = np.zeros((len(signals), longest * CHUNK + CONTEXT), dtype=np.float32)
        for row, s in enumerate(signals):
            batch[row, CONTEXT:CONTEXT + len(s)] = s
        state = np.zeros((STATE_SHAPE[0], len(signals), STATE_SHAPE[1]), dtype=np.float32)
        out = np.zeros((len(signals), longest), dtype=np.float32)
        for i in range(longest):
            x = batch[:, i * CHUNK:(i + 1) * CHUNK + CONTEXT]
            prob, state = self.session.run(None, {"input": x, "state": state, "sr": self._sr})
            out[:, i] = prob[:, 0]
        return [out[row, :n] for row, n in enumerate(n_chunks)]
