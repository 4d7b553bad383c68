"""The command line as a user meets it: events on stdout, one clear error line otherwise."""

import json
import subprocess
import sys
import wave
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import soundfile as sf

from rttag import config as cfg
from conftest import BURSTS, REPO, parse_events, run_rttag, tone_bursts

SCHEMA = json.loads((REPO / "rttag" / "schema" / "events-v1.json").read_text())


def assert_one_error_line(proc, *needles):
    err = proc.stderr.decode()
    lines = [l for l in err.splitlines() if l.strip()]
    assert proc.returncode != 0, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("rttag: error: "), err
    for n in needles:
        assert n in lines[0], err


def test_tag_prints_schema_valid_events(model_path, bursts_wav):
    proc = run_rttag("tag", str(bursts_wav), "--model", str(model_path))
    assert proc.returncode == 0, proc.stderr.decode()
    events = parse_events(proc.stdout)
    for e in events:
        jsonschema.validate(e, SCHEMA)
    assert events[0]["status"] == "started" and events[0]["provider"] == "CPUExecutionProvider"
    assert events[-1]["status"] == "stopped" and events[-1]["t"] == 6.0
    assert {e["type"] for e in events} == {"status", "on", "off"}
    from datetime import datetime
    wall = lambda e: datetime.strptime(e["wall"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()  # noqa: E731
    for e in events:  # wall = UTC of sample t, from one anchor per stream
        assert abs(wall(e) - wall(events[0]) - e["t"]) <= 0.0015


def test_stdin_wav_and_raw_match_the_file(model_path, bursts_wav, tmp_path):
    y = tone_bursts()
    pcm = (np.clip(y, -1, 1) * 32767).astype("<i2")
    wav16 = tmp_path / "b16.wav"
    with wave.open(str(wav16), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(pcm.tobytes())
    strip = lambda out: [{k: v for k, v in e.items() if k not in ("wall", "stream")} for e in parse_events(out)]  # noqa: E731
    from_file = run_rttag("tag", str(wav16), "--model", str(model_path))
    from_wav_stdin = run_rttag("tag", "-", "--model", str(model_path), input=wav16.read_bytes())
    from_raw_stdin = run_rttag("tag", "-", "--model", str(model_path), input=pcm.tobytes())
    assert strip(from_file.stdout) == strip(from_wav_stdin.stdout) == strip(from_raw_stdin.stdout)
    assert len(strip(from_file.stdout)) > 4


def test_missing_file(model_path):
    assert_one_error_line(run_rttag("tag", "nope.wav", "--model", str(model_path)), "nope.wav", "no such file")


def test_corrupt_wav(model_path, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk" * 3)
    assert_one_error_line(run_rttag("tag", str(bad), "--model", str(model_path)), "bad.wav", "cannot read audio")


def test_empty_wav(model_path, tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    assert_one_error_line(run_rttag("tag", str(empty), "--model", str(model_path)), "contains no audio")


def test_events_before_a_bad_file_are_kept(model_path, bursts_wav):
    proc = run_rttag("tag", str(bursts_wav), "missing.wav", "--model", str(model_path))
    assert_one_error_line(proc, "missing.wav")
    events = parse_events(proc.stdout)
    assert events[-1]["status"] == "stopped" and any(e["type"] == "on" for e in events)


def test_model_by_shipped_name(bursts_wav, tmp_path):
    """``--model NAME`` and the config key ``model: NAME`` run models/NAME.onnx; a name that is
    neither a file nor a shipped model is one error line naming what was typed."""
    proc = run_rttag("tag", str(bursts_wav), "--model", "frame-mlp")
    assert proc.returncode == 0, proc.stderr.decode()
    assert parse_events(proc.stdout)[0]["model"] == "frame-mlp-v1"
    conf = tmp_path / "c.yaml"
    conf.write_text("model: context-cnn\n")
    proc = run_rttag("tag", str(bursts_wav), "--config", str(conf))
    assert proc.returncode == 0, proc.stderr.decode()
    assert parse_events(proc.stdout)[0]["model"] == "context-cnn-v1"
    assert_one_error_line(run_rttag("tag", str(bursts_wav), "--model", "no-such-model"),
                          "model file not found: no-such-model")


def test_corrupt_onnx(bursts_wav, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(bytes(range(256)) * 4)
    assert_one_error_line(run_rttag("tag", str(bursts_wav), "--model", str(bad)), "cannot load model")


def test_config_that_disagrees_with_the_model(model_path, bursts_wav, tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("frontend:\n  n_mels: 40\n")
    proc = run_rttag("tag", str(bursts_wav), "--model", str(model_path), "--config", str(conf))
    assert_one_error_line(proc, "frontend.n_mels", "40", "64")


@pytest.mark.parametrize("text,needle", [("blocksize: 10\n", "unknown config key 'blocksize'"),
                                         ("smoother:\n  on_thresh: 0.3\n", "unknown config key 'smoother.on_thresh'"),
                                         ("block_size: many\n", "'block_size' must be int"),
                                         ("threads: 0\n", "'threads' must be positive"),
                                         ("smoother:\n  on_threshold: {cat: 0.5}\n", "no label 'cat'"),
                                         ("smoother:\n  offset_excess_db: -2\n", "offset_excess_db must be >= 0"),
                                         ("smoother:\n  dominance: {dog: -1}\n", "dominance must be >= 0")])
def test_bad_config(model_path, bursts_wav, tmp_path, text, needle):
    conf = tmp_path / "c.yaml"
    conf.write_text(text)
    assert_one_error_line(run_rttag("tag", str(bursts_wav), "--model", str(model_path), "--config", str(conf)), needle)


def test_repository_config_yaml_documents_the_defaults():
    assert cfg.load(REPO / "config.yaml") == cfg.Config()


def test_config_overrides_apply(model_path, bursts_wav, tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("stream: kitchen\nsmoother:\n  enabled: false\n")
    events = parse_events(run_rttag("tag", str(bursts_wav), "--model", str(model_path), "--config", str(conf)).stdout)
    assert {e["stream"] for e in events} == {"kitchen"}
    raw_ons = sum(e["type"] == "on" for e in events)
    smoothed = parse_events(run_rttag("tag", str(bursts_wav), "--model", str(model_path)).stdout)
    assert raw_ons >= sum(e["type"] == "on" for e in smoothed)


def test_offset_lag_flag_moves_every_off_t_back_and_leaves_at(model_path, bursts_wav):
    base = ["tag", str(bursts_wav), "--model", str(model_path), "--min-off", "0"]
    plain = [e for e in parse_events(run_rttag(*base).stdout) if e["type"] == "off"]
    lagged = [e for e in parse_events(run_rttag(*base, "--offset-lag", "0.05").stdout) if e["type"] == "off"]
    assert len(lagged) == len(plain) and any(a["t"] < a["at"] for a in plain)
    for a, b in zip(plain, lagged):
        closed_by_the_end = a["t"] == a["at"]  # still on when the file ended: ends there, not moved
        want = a["t"] if closed_by_the_end else max(a["t"] - 0.05, a["onset"])
        assert b["at"] == a["at"] and b["t"] == pytest.approx(want, abs=1e-3)


def test_dominance_flag_holds_ons_back_and_keeps_their_t(bursts_wav):
    def run(*flags):
        return [e for e in parse_events(run_rttag(*base, *flags).stdout) if e["type"] in ("on", "off")]

    def ons(events):
        return [e for e in events if e["type"] == "on"]

    # the shipped crnn: on the tone bursts some of its classes fire beside a leading one
    base = ["tag", str(bursts_wav), "--model", str(REPO / "models" / "crnn.onnx")]
    plain, held = run("--dominance", "0"), run("--dominance", "1")
    assert 0 < len(ons(held)) < len(ons(plain))
    spans = [(on, next(off for off in plain[i:] if off["type"] == "off" and off["label"] == on["label"]))
             for i, on in enumerate(plain) if on["type"] == "on"]
    for e in ons(held):
        twin = [on for on, _ in spans if on["label"] == e["label"] and on["t"] == pytest.approx(e["t"], abs=1e-3)]
        if twin:  # one of the plain ones, decided no earlier, with the same t
            assert e["at"] >= twin[0]["at"] - 1e-6
        else:  # a pending candidate is dropped at a dip that the plain event bridged with its min_off gap:
            # the later candidate's on then lies inside that plain event, decided after it began
            inside = [on for on, off in spans if on["label"] == e["label"] and on["t"] <= e["t"] <= off["t"]]
            assert inside and e["at"] >= inside[0]["at"]
    # no probability is 50 times every other class's: nothing starts
    assert ons(run("--dominance", "50")) == []


def test_offset_excess_flag_ends_events_where_the_bursts_end(bursts_wav):
    # the shipped crnn: its probabilities outlast the bursts (the test model's do not)
    base = ["tag", str(bursts_wav), "--model", str(REPO / "models" / "crnn.onnx"), "--min-off", "0", "--offset-lag", "0"]
    plain = [e for e in parse_events(run_rttag(*base, "--offset-excess", "0").stdout) if e["type"] == "off"]
    placed = [e for e in parse_events(run_rttag(*base, "--offset-excess", "3").stdout) if e["type"] == "off"]
    assert len(placed) == len(plain)
    moved = 0
    for a, b in zip(plain, placed):
        assert b["at"] == a["at"] and b["onset"] == a["onset"] and b["t"] <= a["t"] + 1e-6
        if b["t"] < a["t"] - 1e-6:
            # placed by the sound: while a burst sounds or just after it ends (+ 0.2 s hangover), never
            # in the silence beyond. (A pure tone fills one or two of the 64 mel bins, so the mean excess
            # over the bins can fall under 3 dB before the burst ends.)
            moved += 1
            assert any(start < b["t"] <= end + 0.3 for start, end, _ in BURSTS), (b, BURSTS)
    assert moved >= 1


@pytest.mark.parametrize("device,needle", [("42", "input device 42"), ("no-such-mic", "no-such-mic")])
def test_unknown_device(model_path, device, needle):
    assert_one_error_line(run_rttag("listen", "--device", device, "--model", str(model_path)), needle)


def test_portaudio_missing(model_path, tmp_path):
    # A fault we cannot cause on a machine that has PortAudio: hide the library from
    # ctypes' lookup (the only mock in this suite, and it says so).
    (tmp_path / "sitecustomize.py").write_text(
        "import ctypes.util\n_f = ctypes.util.find_library\n"
        "ctypes.util.find_library = lambda n: None if 'portaudio' in n else _f(n)\n")
    proc = run_rttag("listen", "--device", "0", "--model", str(model_path), env={"PYTHONPATH": str(tmp_path)})
    assert_one_error_line(proc, "PortAudio library not found", "libportaudio2")
    proc = run_rttag("devices", env={"PYTHONPATH": str(tmp_path)})
    assert_one_error_line(proc, "PortAudio library not found")


def test_stdout_closed_by_the_reader_exits_quietly(model_path, tmp_path):
    long = tmp_path / "long.wav"
    sf.write(long, np.tile(tone_bursts(), 20), 16000)
    proc = subprocess.Popen([sys.executable, "-m", "rttag", "tag", str(long), "--model", str(model_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert json.loads(first)["status"] == "started"
    assert err == "", err


def test_runtime_runs_without_torch(model_path, bursts_wav):
    code = ("import sys, importlib.abc\n"
            "class NoTorch(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name.split('.')[0] == 'torch': raise ImportError('torch is not installed')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "from rttag.cli import main\n"
            f"rc = main(['tag', {str(bursts_wav)!r}, '--model', {str(model_path)!r}])\n"
            "assert 'torch' not in sys.modules\n"
            "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr.decode()
    assert any(e["type"] == "on" for e in parse_events(proc.stdout))


def test_help_loads_no_heavy_modules():
    code = ("import sys, contextlib, io\nfrom rttag.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try: main(['--help'])\n    except SystemExit: pass\n"
            "print(sorted(m for m in ('numpy', 'librosa', 'onnxruntime', 'torch', 'sounddevice') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO, text=True)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
