"""``python -m rttag.train.ensemble``: members combined into one checkpoint, exported to one
stateful ONNX graph whose probabilities are the mean of the members'; refusals are one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from rttag import LABELS  # noqa: E402
from rttag.errors import RttagError  # noqa: E402
from rttag.runtime import OnnxModel  # noqa: E402
from rttag.train import ensemble, export  # noqa: E402
from rttag.train.models import Ensemble, zero_state  # noqa: E402
from conftest import small_crnn_checkpoint  # noqa: E402

member = small_crnn_checkpoint


def test_exported_ensemble_gives_the_mean_of_its_members(tmp_path):
    members = [member(tmp_path / f"m{i}.pt", seed=i) for i in range(3)]
    assert ensemble.main([str(tmp_path / f"m{i}.pt") for i in range(3)] + ["-o", str(tmp_path / "ens.pt")]) == 0

    model, config = export.load_checkpoint(tmp_path / "ens.pt")
    assert config["arch"] == "ensemble" and config["name"] == "crnn"
    assert [m["file"] for m in config["members"]] == ["m0.pt", "m1.pt", "m2.pt"]
    assert config["members"][1]["train"]["command"] == "rttag train --seed 1"
    assert config["smoother"]["on_threshold"] == [0.4] * len(LABELS)

    out = tmp_path / "ens.onnx"
    export.export_onnx(model, config, out)
    m = OnnxModel(out, providers="cpu")  # the runtime's own contract check
    meta = json.loads(onnx.load(str(out)).metadata_props[0].value)
    assert meta["arch"] == "ensemble"
    assert m.info.state_names[:2] == ("m0_level", "m0_conv0") and m.info.state_names[-1] == "m2_gru_h"
    assert len(m.info.state_names) == 3 * len(members[0].state_shapes())

    feats = np.random.default_rng(1).normal(-5, 2, (2, 40, 64)).astype(np.float32)
    with torch.no_grad():
        each = [torch.sigmoid(mm(torch.from_numpy(feats), *zero_state(mm, 2))[0]).numpy() for mm in members]
    mean = np.mean(each, axis=0)
    # frame by frame, state carried, as the daemon runs it
    state, frames = m.zero_state(2), []
    for t in range(feats.shape[1]):
        p, state = m.step(feats[:, t:t + 1], state)
        frames.append(p)
    streamed = np.concatenate(frames, axis=1)
    np.testing.assert_allclose(streamed, mean, atol=1e-5)
    # the members disagree, so the mean is not any one of them
    assert min(np.abs(streamed - e).max() for e in each) > 1e-3


def test_members_must_match(tmp_path):
    member(tmp_path / "a.pt", seed=0)
    member(tmp_path / "b.pt", seed=1)
    ckpt = torch.load(tmp_path / "b.pt", weights_only=True)
    ckpt["config"]["labels"] = ckpt["config"]["labels"][::-1]
    torch.save(ckpt, tmp_path / "b.pt")
    with pytest.raises(RttagError, match="differs from .* in 'labels'"):
        ensemble.combine([tmp_path / "a.pt", tmp_path / "b.pt"], "crnn", "1")
    with pytest.raises(RttagError, match="at least 2"):
        ensemble.combine([tmp_path / "a.pt"], "crnn", "1")


def test_members_of_other_hyper_parameters_keep_their_own(tmp_path):
    """A plain member, one with the per-bin channel and a wider one with the PCEN channel: the
    exported graph carries each member's own states and gives the mean of the three."""
    members = [member(tmp_path / "plain.pt", seed=0),
               member(tmp_path / "bins.pt", seed=1, hparams={"channels": [4, 4, 8], "hidden": 16, "bin_channel": True}),
               member(tmp_path / "pcen.pt", seed=2, hparams={"channels": [4, 4, 8], "hidden": 24, "pcen_channel": True})]
    specs = [tmp_path / f"{k}.pt" for k in ("plain", "bins", "pcen")]
    torch.save(ensemble.combine(specs, "crnn", "1"), tmp_path / "mixed.pt")
    model, config = export.load_checkpoint(tmp_path / "mixed.pt")
    each = config["hparams"]["member_hparams"]
    assert "hparams" not in config["hparams"] and len(each) == 3
    assert [h["bin_channel"] for h in each] == [False, True, False] and [h["pcen_channel"] for h in each] == [False, False, True]
    assert [h["hidden"] for h in each] == [16, 16, 24]

    export.export_onnx(model, config, tmp_path / "mixed.onnx")
    m = OnnxModel(tmp_path / "mixed.onnx", providers="cpu")
    names = m.info.state_names
    assert {"m1_bins", "m2_pcen"} <= set(names) and not {"m0_bins", "m0_pcen", "m1_pcen", "m2_bins"} & set(names)
    assert len(names) == sum(len(mm.state_shapes()) for mm in members)

    feats = np.random.default_rng(3).normal(-5, 2, (1, 50, 64)).astype(np.float32)
    with torch.no_grad():
        mean = np.mean([torch.sigmoid(mm(torch.from_numpy(feats), *zero_state(mm, 1))[0]).numpy() for mm in members], axis=0)
    state, frames = m.zero_state(1), []
    for t in range(feats.shape[1]):
        p, state = m.step(feats[:, t:t + 1], state)
        frames.append(p)
    np.testing.assert_allclose(np.concatenate(frames, axis=1), mean, atol=1e-5)

    # picked from and extended, each member keeps its own hyper-parameters and weights
    ckpt = ensemble.combine([f"{tmp_path / 'mixed.pt'}@2,0", tmp_path / "plain.pt"], "crnn", "2")
    assert [h["pcen_channel"] for h in ckpt["config"]["hparams"]["member_hparams"]] == [True, False, False]
    for key, value in members[2].state_dict().items():
        torch.testing.assert_close(ckpt["state_dict"][f"members.0.{key}"], value, rtol=0, atol=0)
    same = ensemble.combine([f"{tmp_path / 'mixed.pt'}@0", tmp_path / "plain.pt"], "crnn", "3")["config"]["hparams"]
    assert "member_hparams" not in same and same["members"] == 2  # equal members: one shared entry, as before
    with pytest.raises(ValueError, match="2 entries for 3 members"):
        Ensemble("crnn", 3, member_hparams=[{}, {}])


def test_a_default_spelled_out_matches_a_checkpoint_written_before_the_option(tmp_path):
    member(tmp_path / "old.pt", seed=0)  # hparams without "bin_channel", as before the option existed
    member(tmp_path / "new.pt", seed=1, hparams={"channels": [4, 4, 8], "hidden": 16, "bin_channel": False})
    member(tmp_path / "bin.pt", seed=2, hparams={"channels": [4, 4, 8], "hidden": 16, "bin_channel": True})
    same = ensemble.combine([tmp_path / "old.pt", tmp_path / "new.pt"], "crnn", "1")["config"]["hparams"]
    assert same["members"] == 2 and "member_hparams" not in same
    mixed = ensemble.combine([tmp_path / "old.pt", tmp_path / "bin.pt"], "crnn", "1")["config"]["hparams"]
    assert [h["bin_channel"] for h in mixed["member_hparams"]] == [False, True]


def test_members_must_share_the_target_delay(tmp_path):
    member(tmp_path / "a.pt", seed=0)
    member(tmp_path / "b.pt", seed=1)
    ckpt = torch.load(tmp_path / "b.pt", weights_only=True)
    ckpt["config"]["train"]["target_delay_s"] = 0.1
    torch.save(ckpt, tmp_path / "b.pt")
    with pytest.raises(RttagError, match=r"different --target-delay values \(0.0, 0.1 s\)"):
        ensemble.combine([tmp_path / "a.pt", tmp_path / "b.pt"], "crnn", "1")
    ckpt["config"]["train"]["target_delay_s"] = 0.0  # recorded as 0 and not recorded at all are the same
    torch.save(ckpt, tmp_path / "b.pt")
    assert ensemble.combine([tmp_path / "a.pt", tmp_path / "b.pt"], "crnn", "1")["config"]["hparams"]["members"] == 2


def test_an_ensemble_given_as_input_adds_its_members(tmp_path):
    models = [member(tmp_path / f"m{i}.pt", seed=i) for i in range(3)]
    torch.save(ensemble.combine([tmp_path / "m0.pt", tmp_path / "m1.pt"], "crnn", "1"), tmp_path / "e.pt")
    ckpt = ensemble.combine([tmp_path / "e.pt", tmp_path / "m2.pt"], "crnn", "2")
    config = ckpt["config"]
    assert config["hparams"]["members"] == 3 and [m["file"] for m in config["members"]] == ["m0.pt", "m1.pt", "m2.pt"]
    assert config["members"][1]["train"]["command"] == "rttag train --seed 1"
    assert config["smoother"]["on_threshold"] == [0.4] * len(LABELS)
    for i, model in enumerate(models):
        for key, value in model.state_dict().items():
            torch.testing.assert_close(ckpt["state_dict"][f"members.{i}.{key}"], value, rtol=0, atol=0)


def test_members_can_be_picked_from_an_ensemble(tmp_path):
    models = [member(tmp_path / f"m{i}.pt", seed=i) for i in range(4)]
    torch.save(ensemble.combine([tmp_path / f"m{i}.pt" for i in range(3)], "crnn", "1"), tmp_path / "e.pt")
    ckpt = ensemble.combine([f"{tmp_path / 'e.pt'}@2,0", tmp_path / "m3.pt"], "crnn", "2")
    assert [m["file"] for m in ckpt["config"]["members"]] == ["m2.pt", "m0.pt", "m3.pt"]
    for i, model in enumerate([models[2], models[0], models[3]]):
        for key, value in model.state_dict().items():
            torch.testing.assert_close(ckpt["state_dict"][f"members.{i}.{key}"], value, rtol=0, atol=0)
    with pytest.raises(RttagError, match="no member 3"):
        ensemble.combine([f"{tmp_path / 'e.pt'}@1,3", tmp_path / "m3.pt"], "crnn", "1")
    with pytest.raises(RttagError, match="0-based indices"):
        ensemble.combine([f"{tmp_path / 'e.pt'}@one", tmp_path / "m3.pt"], "crnn", "1")
    with pytest.raises(RttagError, match="single crnn model"):
        ensemble.combine([f"{tmp_path / 'm0.pt'}@0", tmp_path / "m3.pt"], "crnn", "1")
    # a file whose name has an '@' is still a file
    (tmp_path / "v@2.pt").write_bytes((tmp_path / "m3.pt").read_bytes())
    assert ensemble.split_spec(str(tmp_path / "v@2.pt")) == (tmp_path / "v@2.pt", None)


def test_cli_error_is_one_line(tmp_path, capsys):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    member(tmp_path / "a.pt", seed=0)
    assert ensemble.main([str(tmp_path / "a.pt"), str(tmp_path / "bad.pt"), "-o", str(tmp_path / "e.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rttag: error: cannot load checkpoint")
    assert not (tmp_path / "e.pt").exists()


def test_model_card_lists_the_members(tmp_path):
    from rttag.train import card
    for i in range(2):
        member(tmp_path / f"m{i}.pt", seed=i)
    assert ensemble.main([str(tmp_path / "m0.pt"), str(tmp_path / "m1.pt"), "-o", str(tmp_path / "ens.pt")]) == 0
    assert card.main([str(tmp_path / "ens.pt")]) == 0
    text = (tmp_path / "ens.md").read_text()
    assert "Prediction ensemble" in text and "## Members" in text
    assert "`m0.pt`" in text and "`m1.pt`" in text
    assert "rttag train --seed 0" in text and "rttag train --seed 1" in text
    assert card.main([str(tmp_path / "m0.pt")]) == 0  # a single model's card has no members section
    assert "## Members" not in (tmp_path / "m0.md").read_text()


def test_half_storage_rounds_the_large_weights_and_the_export_stays_exact(tmp_path):
    hparams = {"channels": [4, 4, 8], "hidden": 32}  # GRU weights of 96 × 32: large enough to be halved
    for i in range(2):
        member(tmp_path / f"m{i}.pt", seed=i, hparams=hparams)
    specs = [str(tmp_path / f"m{i}.pt") for i in range(2)]
    assert ensemble.main(specs + ["-o", str(tmp_path / "full.pt")]) == 0
    assert ensemble.main(specs + ["-o", str(tmp_path / "half.pt"), "--half"]) == 0
    full = torch.load(tmp_path / "full.pt", weights_only=True)["state_dict"]
    half = torch.load(tmp_path / "half.pt", weights_only=True)["state_dict"]
    halved = [k for k, v in half.items() if v.dtype == torch.float16]
    assert halved and all(full[k].numel() >= export.HALF_MIN_ELEMENTS for k in halved)
    for k, v in half.items():  # halved: the float16 rounding of the weight; the rest (BatchNorm statistics, biases) as they were
        assert torch.equal(v.float(), full[k].half().float()) if k in halved else torch.equal(v, full[k])

    model, config = export.load_checkpoint(tmp_path / "half.pt")
    assert config["weights"] == "float16" and all(p.dtype == torch.float32 for p in model.parameters())
    export.export_onnx(model, config, tmp_path / "half.onnx")
    export.export_onnx(*export.load_checkpoint(tmp_path / "full.pt"), tmp_path / "full.onnx")
    proto = onnx.load(str(tmp_path / "half.onnx"))
    f16 = [i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert f16 and sorted(f16) == sorted(n.input[0] for n in proto.graph.node if n.op_type == "Cast" and n.input[0] in f16)
    assert (tmp_path / "half.onnx").stat().st_size < (tmp_path / "full.onnx").stat().st_size

    feats = np.random.default_rng(2).normal(-5, 2, (60, 64)).astype(np.float32)
    assert export.parity(model, tmp_path / "half.onnx", feats) < 1e-5  # the ONNX is the rounded model, exactly
    half_m, full_m = (OnnxModel(tmp_path / f"{k}.onnx", providers="cpu") for k in ("half", "full"))  # contract checks
    p_half, p_full = (m.step(feats[None], m.zero_state(1))[0] for m in (half_m, full_m))
    assert 0 < np.abs(p_half - p_full).max() < 1e-2  # rounded, and only slightly

    from rttag.train import card
    for k in ("half", "full"):
        assert card.main([str(tmp_path / f"{k}.pt")]) == 0
    assert "stored as float16" in (tmp_path / "half.md").read_text()
    assert "float16" not in (tmp_path / "full.md").read_text()
