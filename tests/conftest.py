"""Shared fixtures: a small contract-following ONNX model built with onnx.helper, test audio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rttag import LABELS
from rttag.frontend import FrontendParams

REPO = Path(__file__).resolve().parent.parent
DEMO_WAV = REPO / "rttag" / "assets" / "demo.wav"
HIDDEN = 8


def randomise_batchnorm(model) -> None:
    """Give every BatchNorm layer of a torch ``model`` non-trivial running statistics, so that
    eval mode (what export and the runtime use) differs from training mode. Needs torch."""
    import torch

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)


SMALL_CRNN = {"channels": [4, 4, 8], "hidden": 16}
"""Hyper-parameters of a small crnn for checkpoint tests."""


def small_crnn_checkpoint(path: Path, seed: int, hparams: dict = SMALL_CRNN):
    """A small random crnn checkpoint (non-trivial BatchNorm statistics, on-thresholds 0.4) at
    ``path``, as 'rttag train' writes one; returns the model in eval mode. Needs torch."""
    import torch

    from rttag.train import export
    from rttag.train.models import build, n_params

    torch.manual_seed(seed)
    model = build("crnn", hparams)
    randomise_batchnorm(model)
    smoother = {k: [v] * len(LABELS) for k, v in export.DEFAULT_SMOOTHER.items()} | {"on_threshold": [0.4] * len(LABELS)}
    config = {"arch": "crnn", "hparams": hparams, "name": f"m{seed}", "version": "0", "labels": list(LABELS),
              "frontend": FrontendParams().to_dict(), "smoother": smoother, "params": n_params(model),
              "train": {"command": f"rttag train --seed {seed}", "wall_minutes": 1.0}}
    torch.save({"state_dict": model.state_dict(), "config": config}, path)
    return model.eval()


def make_gru_model(path: Path, seed: int = 0, metadata: dict | None = None, n_mels: int = 64) -> Path:
    """Write a randomly initialised stateful model: GRU(feats) → linear + loudness term → sigmoid.

    Inputs ``feats [B, T, n_mels]`` and ``h [B, 1, 8]``; outputs ``probs [B, T, 10]`` and
    ``h_out``. The loudness term (mean log-mel) makes louder audio push probabilities up, so
    tone bursts produce on/off events.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    C = len(LABELS)
    inits = [
        numpy_helper.from_array((rng.standard_normal((1, 3 * HIDDEN, n_mels)) * 0.05).astype(np.float32), "W"),
        numpy_helper.from_array((rng.standard_normal((1, 3 * HIDDEN, HIDDEN)) * 0.3).astype(np.float32), "R"),
        numpy_helper.from_array(np.zeros((1, 6 * HIDDEN), np.float32), "Bg"),
        numpy_helper.from_array((rng.standard_normal((HIDDEN, C)) * 0.5).astype(np.float32), "Wo"),
        numpy_helper.from_array(np.linspace(1.0, 3.0, C).astype(np.float32), "bo"),
        numpy_helper.from_array(np.full(C, 0.45, np.float32), "gain"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array([2], np.int64), "ax2"),
    ]
    nodes = [
        helper.make_node("Transpose", ["feats"], ["x_tbi"], perm=[1, 0, 2]),
        helper.make_node("Transpose", ["h"], ["h0"], perm=[1, 0, 2]),
        helper.make_node("GRU", ["x_tbi", "W", "R", "Bg", "", "h0"], ["Y", "Yh"], hidden_size=HIDDEN,
                         linear_before_reset=1),
        helper.make_node("Squeeze", ["Y", "ax1"], ["Y3"]),
        helper.make_node("Transpose", ["Y3"], ["Ybth"], perm=[1, 0, 2]),
        helper.make_node("Transpose", ["Yh"], ["h_out"], perm=[1, 0, 2]),
        helper.make_node("MatMul", ["Ybth", "Wo"], ["lin"]),
        helper.make_node("ReduceMean", ["feats", "ax2"], ["loud"], keepdims=1),
        helper.make_node("Mul", ["loud", "gain"], ["loud_c"]),
        helper.make_node("Add", ["lin", "loud_c"], ["z0"]),
        helper.make_node("Add", ["z0", "bo"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["probs"]),
    ]
    graph = helper.make_graph(
        nodes, "rttag-test-gru",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["B", "T", n_mels]),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, ["B", 1, HIDDEN])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["B", "T", C]),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["B", 1, HIDDEN])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    meta = {
        "format": 1, "name": "test-gru", "version": "0", "arch": "test-gru",
        "frontend": FrontendParams().to_dict(), "labels": list(LABELS),
        "state": {"names": ["h"], "shapes": {"h": [1, HIDDEN]}},
        "smoother": {"on_threshold": [0.5] * C, "off_threshold": [0.4] * C, "min_on_s": [0.05] * C,
                     "min_off_s": [0.1] * C, "onset_lag_s": [0.02] * C},
        "params": int(sum(np.prod(i.dims) for i in inits)),
    }
    if metadata:
        meta.update(metadata)
    helper.set_model_props(model, {"rttag": json.dumps(meta)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def split_of(reference: dict, durations: dict, recordings: dict | None = None):
    """A :class:`rttag.evaluate.Split` of the files of ``durations`` (s) with their ``reference``
    events (merged) and, where given, their source ``recordings``."""
    from rttag.evaluate import Split, merge_events

    return Split("test", {n: Path(n) for n in durations}, durations,
                 {n: merge_events(reference.get(n, [])) for n in durations}, recordings or {})


def tone_bursts(seconds: float = 6.0, sr: int = 16000, seed: int = 1) -> np.ndarray:
    """Quiet noise with loud tone bursts (float32 mono): on/off material for the test model."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.003 * rng.standard_normal(len(t))
    for start, dur, f in ((0.7, 0.8, 440.0), (2.2, 0.3, 1200.0), (3.0, 1.5, 300.0), (5.0, 0.5, 2500.0)):
        m = (t >= start) & (t < start + dur)
        x[m] += 0.5 * np.sin(2 * np.pi * f * t[m])
    return x.astype(np.float32)


BURSTS = [(0.7, 1.5, "music"), (2.2, 2.5, "alarm"), (3.0, 4.5, "music"), (5.0, 5.5, "speech")]
"""The reference of tone_bursts(): its four tone bursts (s) with labels."""


def write_burst_dataset(root: Path, seeds_by_split: dict[str, tuple[int, ...]]) -> Path:
    """A DCASE-layout dataset under ``root``: per split, one tone_bursts(seed) file per seed
    (``bursts{seed}.wav``) and a metadata TSV with the BURSTS reference for each."""
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    for split, seeds in seeds_by_split.items():
        (root / "audio" / split).mkdir(parents=True)
        rows = ["filename\tonset\toffset\tevent_label"]
        for seed in seeds:
            name = f"bursts{seed}.wav"
            sf.write(root / "audio" / split / name, tone_bursts(seed=seed), 16000, subtype="FLOAT")
            rows += [f"{name}\t{a}\t{b}\t{label}" for a, b, label in BURSTS]
        (root / "metadata" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="session")
def model_path(tmp_path_factory) -> Path:
    return make_gru_model(tmp_path_factory.mktemp("model") / "test-gru.onnx")


@pytest.fixture(scope="session")
def bursts_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "bursts.wav"
    sf.write(path, tone_bursts(), 16000, subtype="FLOAT")
    return path


def run_rttag(*args: str, input: bytes | None = None, env: dict | None = None, timeout: float = 120):
    """Run the rttag CLI as a subprocess (the installed entry point's module)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "rttag", *args], input=input, capture_output=True,
                          env=full_env, timeout=timeout, cwd=REPO)


def parse_events(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
