"""The ONNX step: streaming equals one call, reset reproduces, contract checks."""

import json

import numpy as np
import pytest

from rttag.frontend import LogMelFrontend
from rttag.runtime import ModelError, OnnxModel, model_file, shipped_model_path
from conftest import make_gru_model, tone_bursts


@pytest.fixture(scope="module")
def model(model_path):
    return OnnxModel(model_path, providers="auto")


@pytest.fixture(scope="module")
def feats(model):
    return LogMelFrontend(model.info.frontend).offline(tone_bursts(4.0))


def run_stream(model, feats, T):
    state = model.zero_state(1)
    out = []
    for i in range(0, len(feats), T):
        p, state = model.step(feats[None, i:i + T], state)
        out.append(p[0])
    return np.concatenate(out), state


def test_cpu_provider_without_gpu(model):
    assert model.provider == "CPUExecutionProvider"
    assert model.info.labels[0] == "speech" and model.info.state_names == ("h",)


@pytest.mark.parametrize("T", [1, 8, 100])
def test_streaming_equals_whole_sequence(model, feats, T):
    whole, _ = model.step(feats[None], model.zero_state(1))
    streamed, _ = run_stream(model, feats, T)
    np.testing.assert_allclose(streamed, whole[0], rtol=1e-5, atol=1e-6)


def test_zero_state_reset_reproduces_the_first_run(model, feats):
    first, state = run_stream(model, feats, 1)
    assert np.abs(state["h"]).sum() > 0
    again, _ = run_stream(model, feats, 1)
    np.testing.assert_array_equal(first, again)


def test_batch_of_streams_equals_separate_streams(model, feats):
    a, b = feats[:150], feats[150:300]
    batched, _ = model.step(np.stack([a, b]), model.zero_state(2))
    np.testing.assert_allclose(batched[1], model.step(b[None], model.zero_state(1))[0][0], rtol=1e-5, atol=1e-6)


def test_corrupt_model_is_a_model_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(ModelError, match="cannot load model"):
        OnnxModel(bad)


def test_model_file_resolves_a_name_or_a_path_and_names_a_missing_one(model_path, tmp_path):
    assert model_file("crnn") == shipped_model_path("crnn")
    assert model_file(str(model_path)) == model_path
    for missing in ("no-such-model", str(tmp_path / "gone.onnx")):
        with pytest.raises(ModelError, match=r"^no model .*(no-such-model|gone)\.onnx$"):
            model_file(missing)


def test_missing_metadata_fields_are_named(tmp_path):
    path = make_gru_model(tmp_path / "m.onnx", metadata={"labels": ["a", "b"]})
    with pytest.raises(ModelError, match="smoother thresholds and labels differ"):
        OnnxModel(path)


def test_metadata_is_json_with_the_contract_keys(model_path):
    meta = json.loads(OnnxModel(model_path).session.get_modelmeta().custom_metadata_map["rttag"])
    assert {"format", "name", "version", "arch", "frontend", "labels", "state", "smoother"} <= set(meta)


def test_a_model_tuned_before_the_newer_smoother_fields_reads_them_as_zero(model_path):
    # the fixture model's smoother block has no offset_lag_s, offset_excess_db or dominance,
    # like models tuned before they existed
    meta = json.loads(OnnxModel(model_path).session.get_modelmeta().custom_metadata_map["rttag"])
    assert not {"offset_lag_s", "offset_excess_db", "dominance"} & set(meta["smoother"])
    smoother = OnnxModel(model_path).info.smoother
    assert smoother.offset_lag_s == smoother.offset_excess_db == smoother.dominance == (0.0,) * len(meta["labels"])
