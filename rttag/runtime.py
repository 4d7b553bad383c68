"""ONNX model step: ``probs, state = step(feats, state)`` with onnxruntime.

The model contract (docs/ARCHITECTURE.md): input ``feats`` float32 ``[B, T, n_mels]``,
output ``probs`` float32 ``[B, T, n_classes]``, and for each state name ``s`` an input ``s``
and an output ``s + "_out"`` with batch on axis 0. Everything the runtime needs (frontend
parameters, labels, smoother defaults, state shapes) is read from the metadata key ``rttag``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import RttagError
from .frontend import FrontendParams
from .smoother import FIELDS as SMOOTHER_FIELDS, SmootherParams

log = logging.getLogger(__name__)

PROVIDER_CHOICES = ("auto", "cpu", "cuda")


class ModelError(RttagError):
    """The model file is missing, corrupt, or does not follow the contract."""


def shipped_model_path(name: str = "crnn") -> Path:
    """A shipped model, ``models/NAME.onnx`` (``crnn``, the default; ``context-cnn``;
    ``frame-mlp``), beside the package (editable or source checkout) or under
    ``<prefix>/share/rttag/models`` (regular install); the checkout's path when neither exists."""
    checkout = Path(__file__).resolve().parent.parent / "models" / f"{name}.onnx"
    for candidate in (checkout, Path(sys.prefix) / "share" / "rttag" / "models" / f"{name}.onnx"):
        if candidate.is_file():
            return candidate
    return checkout


def model_file(name: str) -> Path:
    """The ONNX file a command's model argument names: :func:`shipped_model_path` for a bare
    name (``crnn``), else the ``.onnx`` path given. Raises :class:`ModelError` ("no model
    PATH") when the file does not exist."""
    path = Path(name) if name.endswith(".onnx") else shipped_model_path(name)
    if not path.is_file():
        raise ModelError(f"no model {path}")
    return path


@dataclass(frozen=True)
class ModelInfo:
    """What the ONNX metadata says about a model."""

    name: str
    version: str
    arch: str
    frontend: FrontendParams
    labels: tuple[str, ...]
    state_names: tuple[str, ...]
    state_shapes: dict  # name -> tuple of dims without batch
    smoother: SmootherParams
    params: int

    @classmethod
    def from_metadata(cls, meta: dict, path: str) -> "ModelInfo":
        if "rttag" not in meta:
            raise ModelError(f"{path}: no 'rttag' metadata; not an rttag model")
        try:
            m = json.loads(meta["rttag"])
            labels = tuple(m["labels"])
            sm = m["smoother"]
            for key in ("offset_lag_s", "offset_excess_db", "dominance"):  # models tuned before these existed
                sm.setdefault(key, [0.0] * len(sm["on_threshold"]))
            smoother = SmootherParams(*(tuple(float(v) for v in sm[k]) for k in SMOOTHER_FIELDS))
            if len(smoother.on_threshold) != len(labels):
                raise ValueError("smoother thresholds and labels differ in length")
            names = tuple(m["state"]["names"])
            shapes = {n: tuple(int(d) for d in m["state"]["shapes"][n]) for n in names}
            return cls(name=str(m["name"]), version=str(m["version"]), arch=str(m["arch"]),
                       frontend=FrontendParams.from_dict(m["frontend"]), labels=labels,
                       state_names=names, state_shapes=shapes, smoother=smoother, params=int(m.get("params", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: bad 'rttag' metadata: {exc}") from exc


def _nvidia_gpu_present() -> bool:
    """True when an NVIDIA driver is loaded (onnxruntime-gpu lists CUDA as available even
    without one, then fails noisily at session creation)."""
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


def _providers(choice: str) -> list[str]:
    if choice not in PROVIDER_CHOICES:
        raise RttagError(f"providers must be one of {', '.join(PROVIDER_CHOICES)} (got {choice!r})")
    import onnxruntime as ort

    if choice == "auto" and not _nvidia_gpu_present():
        return ["CPUExecutionProvider"]
    if choice == "cpu" or "CUDAExecutionProvider" not in ort.get_available_providers():
        if choice == "cuda":
            raise RttagError("providers: cuda asked for, but this onnxruntime has no CUDA provider")
        return ["CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


class OnnxModel:
    """One onnxruntime session; per-stream state is held by the caller.

    ``provider`` is the execution provider that really runs the model: CUDA only if the
    session came up with it (onnxruntime-gpu silently falls back to CPU otherwise).
    """

    def __init__(self, path: str | os.PathLike, providers: str = "auto", threads: int = 1):
        import onnxruntime as ort

        self.path = str(path)
        if not Path(self.path).is_file():
            raise ModelError(f"model file not found: {self.path}")
        wanted = _providers(providers)
        ort.set_default_logger_severity(3)
        if "CUDAExecutionProvider" in wanted and hasattr(ort, "preload_dlls"):
            # preload_dlls prints missing libraries on stdout, which carries only events.
            with contextlib.redirect_stdout(sys.stderr):
                ort.preload_dlls()
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # the CUDA-fallback chatter is errors at level 1-2
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(self.path, sess_options=opts, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise ModelError(f"cannot load model {self.path}: {str(exc).splitlines()[0][:200]}") from exc
        self.provider = self.session.get_providers()[0]
        if providers == "cuda" and self.provider != "CUDAExecutionProvider":
            raise RttagError("providers: cuda asked for, but the CUDA provider did not initialise")
        self.info = ModelInfo.from_metadata(self.session.get_modelmeta().custom_metadata_map, self.path)
        self._check_io()

    def _check_io(self) -> None:
        ins = {i.name: i for i in self.session.get_inputs()}
        outs = {o.name for o in self.session.get_outputs()}
        need_in = {"feats", *self.info.state_names}
        need_out = {"probs", *(s + "_out" for s in self.info.state_names)}
        if set(ins) != need_in or not need_out <= outs:
            raise ModelError(f"{self.path}: inputs {sorted(ins)} / outputs {sorted(outs)} do not match the "
                             f"contract (inputs {sorted(need_in)}, outputs {sorted(need_out)})")
        n_mels = ins["feats"].shape[-1]
        if isinstance(n_mels, int) and n_mels != self.info.frontend.n_mels:
            raise ModelError(f"{self.path}: feats has {n_mels} mel bins but metadata says {self.info.frontend.n_mels}")

    def zero_state(self, batch: int = 1) -> dict[str, np.ndarray]:
        """The initial (reset) state for ``batch`` streams: name → float32 ``[batch, *shape]``."""
        return {n: np.zeros((batch, *self.info.state_shapes[n]), dtype=np.float32) for n in self.info.state_names}

    def step(self, feats: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Run ``feats`` float32 ``[B, T, n_mels]`` (T ≥ 1) from ``state``.

        Returns probabilities ``[B, T, n_classes]`` and the state after the last frame.
        """
        feed = {"feats": np.ascontiguousarray(feats, dtype=np.float32), **state}
        names = ["probs", *(s + "_out" for s in self.info.state_names)]
        out = self.session.run(names, feed)
        return out[0], dict(zip(self.info.state_names, out[1:]))
