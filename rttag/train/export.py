"""``rttag export model.pt [-o model.onnx]``: checkpoint → ONNX with state I/O and metadata,
then a parity check that fails loudly.

The checkpoint (written by ``rttag train``) is a plain dict loadable with
``torch.load(..., weights_only=True)``::

    {"state_dict": {name: tensor}, "config": {"arch", "hparams", "name", "version", "labels",
                                               "frontend", "smoother" (optional), ...}}

The ONNX graph follows docs/ARCHITECTURE.md: input ``feats`` ``[B, T, n_mels]`` and one input
per state tensor, outputs ``probs`` ``[B, T, n_classes]`` and ``<state>_out``; B and T are
dynamic. Parity: the exported model run frame by frame (T=1, state carried) with onnxruntime
must match the PyTorch model on the whole sequence to ``PARITY_TOL`` on probabilities, on
real audio (``rttag/assets/demo.wav`` by default).
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import LABELS
from ..errors import RttagError
from ..frontend import FrontendParams, LogMelFrontend
from .features import read_audio
from .models import OutputStack, build, n_params, zero_state

log = logging.getLogger(__name__)

PARITY_TOL = 1e-4
"""Largest allowed |p_onnx_streaming − p_torch_full| on probabilities."""
HALF_MIN_ELEMENTS = 1024
"""Weight tensors with at least this many elements are stored as float16 in a checkpoint whose
config says ``"weights": "float16"`` (:func:`halve_state_dict`) and in its ONNX export
(:func:`halve_initializers`); smaller ones (biases, BatchNorm statistics) stay float32: they
are a negligible share of the file, and BatchNorm variances can lie below float16's normal range."""
DEMO_WAV = Path(__file__).resolve().parent.parent / "assets" / "demo.wav"
DEFAULT_SMOOTHER = {"on_threshold": 0.5, "off_threshold": 0.35, "min_on_s": 0.1, "min_off_s": 0.2, "onset_lag_s": 0.0,
                    "offset_lag_s": 0.0, "offset_excess_db": 0.0, "dominance": 0.0}
"""Smoother values for a checkpoint that carries no tuned ones (one value, used for every label)."""


class Probs(nn.Module):
    """Wraps a model so it returns probabilities (sigmoid of its logits) and its state."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor, *state: torch.Tensor):
        logits, *state_out = self.model(feats, *state)
        return (torch.sigmoid(logits), *state_out)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """The model (eval mode, CPU) and config stored in a checkpoint; RttagError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise RttagError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        config = ckpt["config"]
        model = build(config["arch"], config.get("hparams", {}))
        if config.get("stack"):
            model = OutputStack(model, len(config["labels"]))
        model.load_state_dict(ckpt["state_dict"])
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError,
            KeyError, TypeError, ValueError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise RttagError(f"cannot load checkpoint {path}: {first}") from None
    return model.eval(), config


def save_checkpoint(ckpt: dict, path: str | Path) -> Path:
    """Write ``ckpt`` (``{"state_dict", "config"}``) to ``path``, creating its folder; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    return out


def halve_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state_dict`` with its float32 tensors of ≥ ``HALF_MIN_ELEMENTS`` elements as float16
    (half the bytes; rounding error ≤ 2⁻¹¹ relative). :func:`load_checkpoint` reads such a
    checkpoint unchanged: ``load_state_dict`` copies the values into the model's float32
    parameters, so the model computes in float32 with the rounded weights."""
    return {k: v.half() if v.dtype == torch.float32 and v.numel() >= HALF_MIN_ELEMENTS else v
            for k, v in state_dict.items()}


def halve_initializers(proto) -> None:
    """Store ``proto``'s float32 initializers of ≥ ``HALF_MIN_ELEMENTS`` elements whose values
    are all float16 numbers as float16, each followed by a ``Cast`` to float32 under its old name,
    so every node reads the same float32 tensor as before and the export stays exactly the
    PyTorch model (onnxruntime's constant folding runs the casts once, when it loads the
    session, not per frame). Those are a float16 checkpoint's weights that the exporter moved but did not
    recompute (GRU and linear weights); a convolution's weights with its BatchNorm folded in are
    new float32 numbers and stay float32."""
    from onnx import TensorProto, helper, numpy_helper

    graph, casts, kept = proto.graph, [], []
    for init in graph.initializer:
        values = numpy_helper.to_array(init) if init.data_type == TensorProto.FLOAT else None
        half = values.astype(np.float16) if values is not None and values.size >= HALF_MIN_ELEMENTS else None
        if half is None or not np.array_equal(half.astype(np.float32), values):
            kept.append(init)
            continue
        kept.append(numpy_helper.from_array(half, init.name + "_f16"))
        casts.append(helper.make_node("Cast", [init.name + "_f16"], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "_cast"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)


def metadata(model: nn.Module, config: dict) -> dict:
    """The ``rttag`` metadata object of docs/ARCHITECTURE.md for a model and its config."""
    labels = list(config.get("labels", LABELS))
    smoother = dict(DEFAULT_SMOOTHER, **config.get("smoother", {}))
    smoother = {k: ([float(v)] * len(labels) if np.isscalar(v) else [float(x) for x in v]) for k, v in smoother.items()}
    shapes = model.state_shapes()
    return {"format": 1, "name": str(config.get("name", config["arch"])), "version": str(config.get("version", "1")),
            "arch": config["arch"], "frontend": config.get("frontend", FrontendParams().to_dict()),
            "labels": labels, "state": {"names": list(shapes), "shapes": shapes},
            "smoother": smoother, "params": n_params(model)}


def export_onnx(model: nn.Module, config: dict, output: str | Path) -> dict:
    """Write ``model`` (eval mode) as ONNX with dynamic batch/time and its metadata; returns the
    metadata. A config with ``"weights": "float16"`` gets its large weights stored as float16
    (:func:`halve_initializers`)."""
    import onnx

    meta = metadata(model, config)
    names = meta["state"]["names"]
    n_mels = meta["frontend"]["n_mels"]
    example = (torch.zeros(1, 4, n_mels), *zero_state(model, 1))
    dynamic = {"feats": {0: "batch", 1: "time"}, "probs": {0: "batch", 1: "time"},
               **{n: {0: "batch"} for n in names}, **{n + "_out": {0: "batch"} for n in names}}
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # The exporter warns that RNNs may not run with another batch size unless the initial
        # states are inputs: ours are (tests/test_export.py runs batch 3).
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(Probs(model).eval(), example, str(output), input_names=["feats", *names],
                          output_names=["probs", *(n + "_out" for n in names)], dynamic_axes=dynamic,
                          opset_version=17, dynamo=False)
    proto = onnx.load(str(output))
    if config.get("weights") == "float16":
        halve_initializers(proto)
    del proto.metadata_props[:]
    proto.metadata_props.add(key="rttag", value=json.dumps(meta))
    proto.doc_string = f"rttag {meta['name']} v{meta['version']} ({meta['arch']}, {meta['params']} parameters)"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(output))
    return meta


def parity(model: nn.Module, onnx_path: str | Path, feats: np.ndarray) -> float:
    """Max |p| difference between ONNX run frame by frame (T=1, state carried, CPU) and the
    PyTorch model on the whole sequence ``feats`` ``[T, n_mels]``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    names = list(model.state_shapes())
    with torch.no_grad():
        full = torch.sigmoid(model(torch.from_numpy(feats)[None], *zero_state(model, 1))[0])[0].numpy()
    state = {n: s.numpy() for n, s in zip(names, zero_state(model, 1))}
    out_names = ["probs", *(n + "_out" for n in names)]
    worst = 0.0
    for t in range(len(feats)):
        p, *s = sess.run(out_names, {"feats": feats[None, t:t + 1], **state})
        state = dict(zip(names, s))
        worst = max(worst, float(np.abs(p[0, 0] - full[t]).max()))
    return worst


def parity_audio(explicit: str | None) -> Path:
    """The recording for the parity check: ``explicit``, else demo.wav, else a test-split WAV."""
    if explicit:
        return Path(explicit)
    if DEMO_WAV.is_file():
        return DEMO_WAV
    test_wavs = sorted(Path("data/audio/test").glob("*.wav"))
    if test_wavs:
        return test_wavs[0]
    raise RttagError(f"no audio for the parity check: {DEMO_WAV} is missing; pass --audio FILE")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Export an rttag checkpoint to ONNX (state I/O + metadata) and check streaming parity."
    parser.add_argument("checkpoint", help="checkpoint written by 'rttag train' (.pt)")
    parser.add_argument("-o", "--output", help="ONNX file to write (default: the checkpoint path with .onnx)")
    parser.add_argument("--audio", help="real recording for the parity check (default: rttag/assets/demo.wav)")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="use at most this many seconds of the parity recording (default 60)")


def run(args: argparse.Namespace) -> int:
    model, config = load_checkpoint(args.checkpoint)
    output = Path(args.output or Path(args.checkpoint).with_suffix(".onnx"))
    meta = export_onnx(model, config, output)
    audio = parity_audio(args.audio)
    params = FrontendParams.from_dict(meta["frontend"])
    signal = read_audio(audio, params.sample_rate)[: int(args.max_seconds * params.sample_rate)]
    feats = LogMelFrontend(params).offline(signal)
    if len(feats) < 2:
        raise RttagError(f"parity recording {audio} is too short")
    diff = parity(model, output, feats)
    if not diff <= PARITY_TOL:
        raise RttagError(f"parity check failed for {output}: streaming ONNX differs from PyTorch by {diff:.3g} "
                         f"(> {PARITY_TOL}) on {audio}")
    size = output.stat().st_size
    log.info("wrote %s (%s, %d parameters, %.2f MB); parity on %s (%d frames): max |Δp| = %.2g",
             output, meta["arch"], meta["params"], size / 1e6, audio.name, len(feats), diff)
    return 0
