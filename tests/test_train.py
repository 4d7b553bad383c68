"""``rttag train`` end to end on a tiny tone-burst dataset: a first stage, a stage continued
with ``--init``, and the export of the result. Small models and budgets: this checks the
trainer's contract (checkpoint contents, the stage chain, exportability), not model quality."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from rttag.runtime import OnnxModel
from conftest import run_rttag, write_burst_dataset

pytest.importorskip("torch")

TINY = json.dumps({"channels": [4, 4, 4], "hidden": 16})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_burst_dataset(tmp_path_factory.mktemp("data"),
                               {"train": (1, 2, 3, 4), "validation": (5, 6), "test": (7,)})


def test_loss_weight_adds_onsets_tails_and_other_classes_frames():
    import torch
    from rttag.train.train import loss_weight

    y = torch.tensor([[[1.0, 0, 0], [0, 0, 0], [0, 1, 1]]])  # frames × (dog, bird, door)
    onsets = torch.tensor([[[1.0, 0, 0], [0, 0, 0], [0, 0, 0]]])
    tails = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [1, 0, 0]]])
    w = loss_weight(y, onsets, tails, onset_w=2, offset_w=4, confusion_w=3)
    # frame 0: the dog's onset; bird and door silent while the dog sounds. frame 1: the dog's
    # tail, nothing sounds. frame 2: the dog's tail while bird and door sound: both weights.
    assert w.tolist() == [[[3, 4, 4], [5, 1, 1], [8, 1, 1]]]
    assert loss_weight(y, onsets, tails, 2, 0, 0).tolist() == [[[3, 1, 1], [1, 1, 1], [1, 1, 1]]]


def test_focal_loss_is_the_plain_loss_at_0_and_weighs_hard_frames_more():
    import torch
    import torch.nn.functional as F
    from rttag.train.train import frame_loss

    y = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # [B=1, T=2, C=2]
    logits = torch.tensor([[[4.0, -4.0], [-1.0, 1.0]]])  # frame 0 right and sure, frame 1 wrong
    w, pw = torch.tensor([[[3.0, 1.0], [1.0, 1.0]]]), torch.tensor([2.0, 1.0])
    plain = F.binary_cross_entropy_with_logits(logits, y, weight=w, pos_weight=pw)
    assert torch.allclose(frame_loss(logits, y, w, pw, 0.0), plain)
    per = F.binary_cross_entropy_with_logits(logits, y, weight=w, pos_weight=pw, reduction="none")
    p = torch.sigmoid(logits)
    scale = torch.where(y > 0, 1 - p, p) ** 2
    assert torch.allclose(frame_loss(logits, y, w, pw, 2.0), (per * scale).mean())
    easy, hard = scale[0, 0], scale[0, 1]
    assert (easy < 0.001).all() and (hard > 0.5).all()  # the sure, right frame hardly counts


def test_steadiness_costs_flicker_inside_events_and_silences_not_their_edges():
    import torch
    from rttag.train.train import steadiness

    y = torch.tensor([[[0.0], [0], [0], [1], [1], [1], [0]]])  # one class: an event over frames 3-5

    def cost(p):
        return float(steadiness(torch.logit(torch.tensor(p).view(1, -1, 1)), y))
    assert cost([0.01, 0.01, 0.01, 0.99, 0.99, 0.99, 0.01]) < 1e-6  # following the label: its edges are free
    # a blip of 0.4 in the silence (frame 1) and a dip of 0.5 inside the event (frame 4), over the
    # 4 frame pairs whose label stays the same
    assert cost([0.01, 0.41, 0.01, 0.99, 0.49, 0.99, 0.01]) == pytest.approx((2 * 0.4 + 2 * 0.5) / 4, abs=1e-5)


def test_steadiness_grace_frees_the_rise_after_an_edge_not_later_flicker():
    import torch
    from rttag.train.train import steadiness

    y = torch.tensor([[[0.0], [0], [0], [1], [1], [1], [1], [1], [1]]])  # an onset at frame 3

    def cost(p, grace):
        return float(steadiness(torch.logit(torch.tensor(p).view(1, -1, 1)), y, grace))
    rise = [0.01, 0.01, 0.01, 0.3, 0.6, 0.99, 0.99, 0.99, 0.99]  # reaches its plateau 2 frames after the onset
    # without grace the two late steps of the rise cost (0.69 over the 7 unchanged pairs)
    assert cost(rise, 0) == pytest.approx(0.69 / 7, abs=1e-5)
    # grace 2: pairs (3,4) and (4,5) are free; the 5 pairs left hold still
    assert cost(rise, 2) < 1e-6
    # a dip at frame 7, after the grace: its two steps of 0.5 still cost, over the 5 pairs left
    dip = [0.01, 0.01, 0.01, 0.99, 0.99, 0.99, 0.99, 0.49, 0.99]
    assert cost(dip, 2) == pytest.approx(2 * 0.5 / 5, abs=1e-5)
    # a class's grace follows its own edges: a second class without edges gets none
    y2 = torch.cat([y, torch.zeros_like(y)], dim=2)
    p2 = torch.logit(torch.tensor([[[a, b] for a, b in zip(rise, [0.01, 0.01, 0.01, 0.01, 0.41, 0.01, 0.01, 0.01, 0.01])]]))
    assert float(steadiness(p2, y2, 2)) == pytest.approx(0.8 / (5 + 8), abs=1e-5)


def test_init_names_one_member_of_an_ensemble(tmp_path):
    import torch
    from conftest import small_crnn_checkpoint
    from rttag.errors import RttagError
    from rttag.train import ensemble
    from rttag.train.export import save_checkpoint
    from rttag.train.train import load_init

    a, b = small_crnn_checkpoint(tmp_path / "a.pt", 1), small_crnn_checkpoint(tmp_path / "b.pt", 2)
    ens = save_checkpoint(ensemble.combine([tmp_path / "a.pt", tmp_path / "b.pt"], "crnn", "1"), tmp_path / "ens.pt")
    model, config = load_init(f"{ens}@1")
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(v, a.state_dict()[k]) for k, v in model.state_dict().items())  # not member 0
    assert config["arch"] == "crnn" and config["hparams"] == load(tmp_path / "b.pt")["hparams"]
    assert config["best_epoch"] == 0 and config["history"] == [] and config["name"] == "m2"
    with pytest.raises(RttagError, match=r"name one member, e.g. .*ens.pt@0"):
        load_init(f"{ens}@0,1")
    with pytest.raises(RttagError, match=r"is an ensemble of 2 models; continue from one member: .*ens.pt@0 … .*ens.pt@1"):
        load_init(str(ens))


def load(path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["config"]


def test_train_continue_and_export(dataset, tmp_path):
    env = {"RTTAG_CACHE": str(tmp_path / "cache")}
    common = ["--data", str(dataset), "--batch", "2", "--chunk", "100", "--threads", "1", "--minutes", "2"]
    first = tmp_path / "stage1.pt"
    proc = run_rttag("train", "--arch", "crnn", "-o", str(first), "--hparams", TINY, "--max-epochs", "2", *common,
                     env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    c1 = load(first)
    assert c1["arch"] == "crnn" and c1["hparams"]["hidden"] == 16 and len(c1["history"]) == 2
    assert {"validation", "test"} <= set(c1["metrics"]) and 0.0 <= c1["metrics"]["test"]["mAP"] <= 1.0
    assert c1["train"]["malloc_env"] is (sys.platform == "linux")  # restarted with the allocator settings
    assert c1["train"]["init"] is None and c1["train"]["data"] == str(dataset) and c1["train"]["epochs"] == 2
    assert len(c1["smoother"]["on_threshold"]) == len(c1["labels"])
    assert first.with_name("stage1-curves.png").stat().st_size > 0
    # one cache entry per split, renamed into place: no temporary files left behind
    cached = [p for p in (tmp_path / "cache" / "features").rglob("*") if p.is_file()]
    assert sorted({p.parent.name.split("-")[0] for p in cached}) == ["test", "train", "validation"]
    assert {p.name for p in cached} == {"feats.npy", "lengths.json"} and len(cached) == 6

    second = tmp_path / "stage2.pt"
    proc = run_rttag("train", "--arch", "crnn", "-o", str(second), "--init", str(first), "--max-epochs", "1",
                     "--ema", "0.9", *common, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    c2 = load(second)
    assert len(c2["history"]) == 3 and [h["epoch"] for h in c2["history"]] == [1, 2, 3]
    assert c2["train"]["init"]["command"] == c1["train"]["command"]
    assert c1["train"]["ema"] == 0.0 and c2["train"]["ema"] == 0.9  # the averaged weights are what is kept
    assert c2["train"]["total_wall_minutes"] >= c1["train"]["wall_minutes"]
    assert c2["best_epoch"] in (c1["best_epoch"], 3)  # kept only where validation improved

    # --keep last: the last epoch is written whatever its score; --offset-weight and --freq-mixstyle are recorded
    third = tmp_path / "stage3.pt"
    proc = run_rttag("train", "--arch", "crnn", "-o", str(third), "--init", str(second), "--max-epochs", "2",
                     "--keep", "last", "--offset-weight", "3", "--freq-mixstyle", "0.5", "--confusion-weight", "2",
                     "--steady-weight", "5", "--steady-grace", "0.05", "--reverb-p", "0.5", "--reverb-db=-9,3",
                     "--mix-p", "0.6", "--mix-db=-6,6", "--target-delay", "0.05", *common, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    c3 = load(third)
    assert c3["best_epoch"] == 5 and [h["epoch"] for h in c3["history"]] == [1, 2, 3, 4, 5]
    assert c3["train"]["keep"] == "last" and c3["train"]["offset_weight"] == 3.0
    assert c2["train"]["keep"] == "best" and c2["train"]["offset_weight"] == 0.0
    assert c3["train"]["freq_mixstyle"] == 0.5 and c2["train"]["freq_mixstyle"] == 0.0
    assert c3["train"]["confusion_weight"] == 2.0 and c2["train"]["confusion_weight"] == 0.0
    assert c3["train"]["steady_weight"] == 5.0 and c2["train"]["steady_weight"] == 0.0
    assert c3["train"]["steady_grace_s"] == 0.05 and c2["train"]["steady_grace_s"] == 0.0
    assert c3["train"]["reverb_p"] == 0.5 and c3["train"]["reverb_db"] == [-9.0, 3.0]
    assert c2["train"]["reverb_p"] == 0.3 and c2["train"]["reverb_db"] == [-12.0, -3.0]
    assert c3["train"]["mix_p"] == 0.6 and c3["train"]["mix_db"] == [-6.0, 6.0]
    assert c2["train"]["mix_p"] == 0.3 and c2["train"]["mix_db"] == [-6.0, 0.0]
    assert c3["train"]["target_delay_s"] == 0.05 and c2["train"]["target_delay_s"] == 0.0
    assert f"--init {second} was trained with --target-delay 0; this stage trains with 0.05" in proc.stderr.decode()
    # the delayed model's events are back-dated by the delay on top of the lag measured after it
    assert min(c3["smoother"]["onset_lag_s"]) >= 0.05 and c3["smoother"]["offset_lag_s"] == [0.05] * len(c3["labels"])
    assert c2["smoother"]["offset_lag_s"] == [0.0] * len(c2["labels"])

    onnx_path = tmp_path / "stage2.onnx"
    proc = run_rttag("export", str(second), "-o", str(onnx_path), "--audio", str(dataset / "audio" / "test" / "bursts7.wav"),
                     env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    info = OnnxModel(onnx_path, providers="cpu").info
    assert info.arch == "crnn" and list(info.labels) == c2["labels"]


def test_init_of_another_arch_is_one_error_line(dataset, tmp_path):
    env = {"RTTAG_CACHE": str(tmp_path / "cache")}
    first = tmp_path / "mlp.pt"
    common = ["--data", str(dataset), "--batch", "2", "--chunk", "100", "--threads", "1", "--minutes", "1"]
    assert run_rttag("train", "--arch", "frame-mlp", "-o", str(first), "--hparams", json.dumps({"hidden": 8}),
                     "--max-epochs", "1", *common, env=env, timeout=300).returncode == 0
    proc = run_rttag("train", "--arch", "crnn", "--init", str(first), "-o", str(tmp_path / "x.pt"), *common,
                     env=env, timeout=300)
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and err == [f"rttag: error: --init {first} is a frame-mlp, not a crnn"]


def test_init_from_the_shipped_ensemble_is_one_error_line(dataset, tmp_path):
    shipped = Path(__file__).resolve().parent.parent / "models" / "crnn.pt"
    proc = run_rttag("train", "--arch", "crnn", "--init", str(shipped), "-o", str(tmp_path / "x.pt"), "--data",
                     str(dataset), "--minutes", "1", env={"RTTAG_CACHE": str(tmp_path / "cache")}, timeout=300)
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and len(err) == 1
    info = OnnxModel(str(shipped.with_suffix(".onnx")), providers="cpu").info  # the export names each member's state mK_…
    members = len({name.split("_")[0] for name in info.state_names})
    assert err[0].startswith(f"rttag: error: --init {shipped} is an ensemble of {members} models")


def test_ema_decay_out_of_range_is_one_error_line(dataset, tmp_path):
    proc = run_rttag("train", "--arch", "frame-mlp", "--data", str(dataset), "-o", str(tmp_path / "x.pt"),
                     "--ema", "1.0", env={"RTTAG_CACHE": str(tmp_path / "cache")}, timeout=300)
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and err == ["rttag: error: --ema 1.0: the decay must be in [0, 1)"]


def test_tail_frames_follow_each_event_where_its_class_is_inactive():
    from rttag.frontend import FrontendParams
    from rttag.train.features import TAIL_S, frame_targets

    p = FrontendParams()
    n = 300  # 3 s of frames
    centre = (np.arange(n) * p.hop_length + p.n_fft / 2) / p.sample_rate
    labels, onsets, tails = frame_targets(n, [(0.5, 1.0, 0), (1.1, 1.5, 0), (0.9, 1.2, 1)], 3, p)
    expect0 = ((centre >= 1.0) & (centre < 1.1)) | ((centre >= 1.5) & (centre < 1.5 + TAIL_S))
    expect1 = (centre >= 1.2) & (centre < 1.2 + TAIL_S)
    assert np.array_equal(tails[:, 0] == 1, expect0)  # the gap before the next event of class 0 is cut short
    assert np.array_equal(tails[:, 1] == 1, expect1)  # class 1's tail overlaps class 0's event: still a tail
    assert not tails[:, 2].any() and not (tails & labels).any()
    assert np.array_equal(onsets[:, 1] == 1, (centre >= 0.9) & (centre < 1.1))


@pytest.mark.parametrize("flags, message", [
    (["--reverb-db=3,-9"], "--reverb-db 3,-9: LOW is above HIGH"),
    (["--reverb-db", "loud"], "--reverb-db loud: expected LOW,HIGH in dB, such as -12,-3"),
    (["--reverb-p", "1.5"], "--reverb-p 1.5: a share, in [0, 1]"),
    (["--mix-p", "-0.1"], "--mix-p -0.1: a share, in [0, 1]"),
    (["--mix-db=6,-6"], "--mix-db 6,-6: LOW is above HIGH"),
    (["--target-delay", "-0.1"], "--target-delay -0.1: seconds, not negative"),
    (["--target-delay", "5"], "--target-delay 5.0: 500 frames, not less than --chunk 500"),
])
def test_bad_augment_or_delay_settings_are_one_error_line(dataset, tmp_path, flags, message):
    proc = run_rttag("train", "--arch", "frame-mlp", "--data", str(dataset), "-o", str(tmp_path / "x.pt"), *flags,
                     env={"RTTAG_CACHE": str(tmp_path / "cache")}, timeout=300)
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and err == [f"rttag: error: {message}"]


def test_delayed_pairs_each_probability_with_the_label_frames_earlier_in_its_file():
    from rttag.train.train import delayed

    probs = np.arange(10, dtype=float).reshape(-1, 1)  # frame numbers: file 0 is frames 0-5, file 1 frames 6-9
    labels = -probs
    p, y, offsets = delayed(probs, labels, np.array([0, 6, 10]), 2)
    assert p[:, 0].tolist() == [2, 3, 4, 5, 8, 9] and y[:, 0].tolist() == [-0, -1, -2, -3, -6, -7]
    assert offsets.tolist() == [0, 4, 6]
    same = delayed(probs, labels, np.array([0, 6, 10]), 0)
    assert same[0] is probs and same[1] is labels and same[2].tolist() == [0, 6, 10]


def test_label_frames_reach_back_by_the_delay_across_chunks():
    from rttag.train.train import label_frames

    idx = np.arange(20).reshape(2, 10) + 100  # two streams of frame indices
    j, lead = label_frames(idx, 0, 5, 2)  # first chunk: no labels before the stream starts
    assert lead == 2 and j.tolist() == [[100, 101, 102], [110, 111, 112]]
    j, lead = label_frames(idx, 5, 5, 2)  # the next chunk reaches back into the first
    assert lead == 0 and j.tolist() == [[103, 104, 105, 106, 107], [113, 114, 115, 116, 117]]
    j, lead = label_frames(idx, 5, 5, 0)
    assert lead == 0 and j.tolist() == [[105, 106, 107, 108, 109], [115, 116, 117, 118, 119]]
