"""``python -m rttag.train.stack``: the output stack learns which classes fire on which others'
sounds, exports into one graph with the model, and refuses what it must not fit."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from rttag.errors import RttagError  # noqa: E402
from rttag.runtime import OnnxModel  # noqa: E402
from rttag.train import ensemble, export, features, stack  # noqa: E402
from rttag.train.metrics import average_precision  # noqa: E402
from rttag.train.models import OutputStack, zero_state  # noqa: E402
from conftest import run_rttag, small_crnn_checkpoint, write_burst_dataset  # noqa: E402


def test_fit_learns_that_one_class_fires_on_another_s_frames():
    rng = np.random.default_rng(0)
    n = 4000
    labels = (rng.random((n, 3)) < [0.2, 0.2, 0.3]).astype(np.uint8)
    logits = rng.normal(0, 1, (n, 3)).astype(np.float32)
    logits[:, 0] += 3 * labels[:, 1]  # the model's class 0 fires on class 1's frames ...
    logits[:, 2] += 3 * labels[:, 2]  # ... and hears class 2 right; class 1's own output is noise
    w, b = stack.fit(logits, labels, l2=1e-3)
    assert w[1, 0] > 0.5 and abs(w[2, 2] - 1) < abs(w[1, 0])
    before = average_precision(logits[:, 1], labels[:, 1])
    after = average_precision(logits @ w[1] + b[1], labels[:, 1])
    assert before < 0.3 and after > 0.9
    w_tied, _ = stack.fit(logits, labels, l2=1e4)  # a strong pull keeps W at the identity
    np.testing.assert_allclose(w_tied, np.eye(3), atol=1e-2)


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setattr(features, "CACHE", tmp_path / "cache")
    return write_burst_dataset(tmp_path / "data", {"validation": (1, 2), "test": (3,)})


def test_stacked_checkpoint_exports_one_graph_with_the_fitted_layer(tmp_path, data):
    model = small_crnn_checkpoint(tmp_path / "m.pt", seed=0)
    assert stack.main([str(tmp_path / "m.pt"), "--data", str(data), "-o", str(tmp_path / "s.pt")]) == 0
    stacked, config = export.load_checkpoint(tmp_path / "s.pt")
    assert isinstance(stacked, OutputStack) and config["stack"]["split"] == "validation"
    assert config["stack"]["files"] == 2 and config["stack"]["frames"] > 0 and config["stack"]["l2"] == stack.L2
    w, b = stacked.out.weight.detach().numpy(), stacked.out.bias.detach().numpy()
    assert np.abs(w - np.eye(len(w))).max() > 1e-3  # fitted, not the identity

    out = tmp_path / "s.onnx"
    export.export_onnx(stacked, config, out)
    m = OnnxModel(out, providers="cpu")
    feats = np.random.default_rng(1).normal(-5, 2, (1, 30, 64)).astype(np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(feats), *zero_state(model, 1))[0][0].numpy()
    expected = 1 / (1 + np.exp(-(logits @ w.T + b)))
    state, frames = m.zero_state(1), []
    for t in range(feats.shape[1]):  # frame by frame, as the daemon runs it
        p, state = m.step(feats[:, t:t + 1], state)
        frames.append(p[0])
    np.testing.assert_allclose(np.concatenate(frames), expected, atol=1e-5)
    assert m.info.state_names == tuple(model.state_shapes())  # the stack adds no state

    from rttag.train import card
    assert card.main([str(tmp_path / "s.pt")]) == 0
    text = (tmp_path / "s.md").read_text()
    assert "## Output stack" in text and f"python -m rttag.train.stack {tmp_path / 'm.pt'} --data {data} --split validation" in text
    assert card.main([str(tmp_path / "m.pt")]) == 0 and "## Output stack" not in (tmp_path / "m.md").read_text()


def test_refusals_are_one_line(tmp_path, data, capsys):
    small_crnn_checkpoint(tmp_path / "m.pt", seed=0)
    small_crnn_checkpoint(tmp_path / "m1.pt", seed=1)
    assert stack.main([str(tmp_path / "m.pt"), "--data", str(data), "--split", "test", "-o", str(tmp_path / "t.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "test split" in err[0] and not (tmp_path / "t.pt").exists()
    with pytest.raises(RttagError, match="must not be negative"):
        stack.stack(tmp_path / "m.pt", str(data), l2=-1)
    assert stack.main([str(tmp_path / "m.pt"), "--data", str(data), "-o", str(tmp_path / "s.pt")]) == 0
    with pytest.raises(RttagError, match="already has a fitted output stack"):
        stack.stack(tmp_path / "s.pt", str(data))
    with pytest.raises(RttagError, match="has a fitted output stack"):
        ensemble.combine([tmp_path / "s.pt", tmp_path / "m1.pt"], "crnn", "1")
    proc = run_rttag("train", "--arch", "crnn", "--data", str(data), "--init", str(tmp_path / "s.pt"),
                     "-o", str(tmp_path / "t.pt"), env={"RTTAG_CACHE": str(tmp_path / "cache")})
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and len(err) == 1 and "has a fitted output stack" in err[0]
    ens = export.save_checkpoint(ensemble.combine([tmp_path / "m.pt", tmp_path / "m1.pt"], "crnn", "1"), tmp_path / "e.pt")
    assert stack.main([str(ens), "--data", str(data), "-o", str(tmp_path / "se.pt")]) == 0
    from rttag.train.train import load_init
    with pytest.raises(RttagError, match=r"--init .*se.pt@0: .*se.pt has a fitted output stack; continue from the checkpoint"):
        load_init(f"{tmp_path / 'se.pt'}@0")  # the --init message, not the one written for combining
