"""``rttag export``: round trip and parity on small random models of each arch, metadata
contract, and clean errors for corrupt checkpoints or a parity mismatch."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from rttag import LABELS  # noqa: E402
from rttag.errors import RttagError  # noqa: E402
from rttag.frontend import FrontendParams  # noqa: E402
from rttag.runtime import OnnxModel  # noqa: E402
from rttag.train import export  # noqa: E402
from rttag.train.models import build, n_params  # noqa: E402
from conftest import randomise_batchnorm  # noqa: E402

SMALL = {"crnn": {"channels": [4, 4, 8], "hidden": 16},
         "frame-mlp": {"hidden": 32},
         "context-cnn": {"channels": [4, 4, 8], "hidden": 32}}
BIN_CHANNEL = {**SMALL["crnn"], "bin_channel": True}
"""The crnn with the per-bin normalised second input channel (and its ``bins`` state)."""
PCEN_CHANNEL = {**SMALL["crnn"], "pcen_channel": True}
"""The crnn with the PCEN second input channel (and its ``pcen`` state)."""


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """4 s of noise bursts and a tone at 16 kHz (a stand-in for a real recording)."""
    rng = np.random.default_rng(0)
    sr = 16000
    t = np.arange(4 * sr) / sr
    x = 0.02 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * 440 * t) * (t > 2)
    x[sr // 2: sr] += 0.5 * rng.standard_normal(sr // 2)
    path = tmp_path_factory.mktemp("audio") / "a.wav"
    sf.write(path, x.astype(np.float32), sr)
    return path


def save_checkpoint(path, arch, smoother=None, hparams=None):
    hparams = SMALL[arch] if hparams is None else hparams
    torch.manual_seed(0)
    model = build(arch, hparams)
    randomise_batchnorm(model)
    config = {"arch": arch, "hparams": hparams, "name": f"test-{arch}", "version": "0",
              "labels": list(LABELS), "frontend": FrontendParams().to_dict()}
    if smoother:
        config["smoother"] = smoother
    torch.save({"state_dict": model.state_dict(), "config": config}, path)
    return model


def export_args(ckpt, out, audio):
    parser = argparse.ArgumentParser()
    export.add_arguments(parser)
    return parser.parse_args([str(ckpt), "-o", str(out), "--audio", str(audio)])


@pytest.mark.parametrize("arch, hparams", [("crnn", None), ("frame-mlp", None), ("context-cnn", None),
                                           ("crnn", BIN_CHANNEL), ("crnn", PCEN_CHANNEL)],
                         ids=["crnn", "frame-mlp", "context-cnn", "crnn-bin-channel", "crnn-pcen-channel"])
def test_round_trip_parity_and_metadata(tmp_path, audio, arch, hparams):
    ckpt = tmp_path / f"{arch}.pt"
    model = save_checkpoint(ckpt, arch, smoother={"on_threshold": [0.4] * len(LABELS)}, hparams=hparams)
    out = tmp_path / f"{arch}.onnx"
    assert export.run(export_args(ckpt, out, audio)) == 0

    m = OnnxModel(out, providers="cpu")  # the runtime's own contract check
    meta = json.loads(onnx.load(str(out)).metadata_props[0].value)
    assert set(meta) == {"format", "name", "version", "arch", "frontend", "labels", "state", "smoother", "params"}
    assert meta["format"] == 1 and meta["arch"] == arch and meta["name"] == f"test-{arch}"
    assert meta["labels"] == list(LABELS)
    assert meta["frontend"] == FrontendParams().to_dict()
    assert meta["params"] == n_params(model)
    assert meta["state"]["names"] == list(model.state_shapes())
    assert {k: list(v) for k, v in m.info.state_shapes.items()} == model.state_shapes()
    assert m.info.smoother.on_threshold == (0.4,) * len(LABELS)
    assert m.info.smoother.min_on_s == (export.DEFAULT_SMOOTHER["min_on_s"],) * len(LABELS)

    # dynamic batch and time: 3 streams × 7 frames from the zero state
    feats = np.random.default_rng(1).normal(-5, 2, (3, 7, 64)).astype(np.float32)
    probs, state = m.step(feats, m.zero_state(3))
    assert probs.shape == (3, 7, len(LABELS))
    assert all(state[n].shape == (3, *m.info.state_shapes[n]) for n in m.info.state_names)
    with torch.no_grad():
        ref = torch.sigmoid(model.eval()(torch.from_numpy(feats), *[torch.from_numpy(v) for v in m.zero_state(3).values()])[0])
    np.testing.assert_allclose(probs, ref.numpy(), atol=1e-5)


def test_corrupt_checkpoint_is_a_clean_error(tmp_path, audio):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(RttagError, match="cannot load checkpoint"):
        export.run(export_args(bad, tmp_path / "x.onnx", audio))
    with pytest.raises(RttagError, match="not found"):
        export.run(export_args(tmp_path / "missing.pt", tmp_path / "x.onnx", audio))


def test_checkpoint_that_does_not_fit_its_arch(tmp_path, audio):
    ckpt = tmp_path / "c.pt"
    save_checkpoint(ckpt, "crnn")
    data = torch.load(ckpt, weights_only=True)
    data["config"]["hparams"] = {"hidden": 24}
    torch.save(data, ckpt)
    with pytest.raises(RttagError, match="cannot load checkpoint"):
        export.run(export_args(ckpt, tmp_path / "c.onnx", audio))


def test_parity_mismatch_is_an_error(tmp_path, audio, monkeypatch):
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, "frame-mlp")
    monkeypatch.setattr(export, "parity", lambda *a: 0.01)
    with pytest.raises(RttagError, match="parity check failed"):
        export.run(export_args(ckpt, tmp_path / "m.onnx", audio))


def test_cli_reports_one_line(tmp_path, capsys):
    from rttag.cli import main

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x04garbage")
    assert main(["export", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rttag: error: cannot load checkpoint")
