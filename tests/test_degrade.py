"""``rttag data degrade``: each condition does what its settings say, the copy keeps names,
lengths and reference, is the same on every run, and ``rttag eval`` reads it."""

import json

import numpy as np
import pytest
import soundfile as sf

from conftest import run_rttag, write_burst_dataset
from rttag.dataset.degrade import BAND_HZ, GAIN_DB, RT60_S, SNR_DB, degrade, file_seed, pink_noise
from rttag.dataset.mixer import SR, rms


def db(x: float) -> float:
    return 20 * np.log10(x)


def tone(freq_hz: float, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.1 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def power_density(x: np.ndarray, lo_hz: float, hi_hz: float) -> float:
    """Mean power per frequency bin between ``lo_hz`` and ``hi_hz``."""
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return float(spec[(f >= lo_hz) & (f < hi_hz)].mean())


def test_noise_is_pink_and_at_the_asked_level():
    x = tone(1000.0, 10.0)
    y = degrade(x, "noise", np.random.default_rng(0))
    assert db(rms(y - x) / rms(x)) == pytest.approx(-SNR_DB, abs=0.05)
    n = pink_noise(10 * SR, np.random.default_rng(1))
    # power density four octaves apart, 3 dB per octave: 12 dB
    assert 10 * np.log10(power_density(n, 100, 200) / power_density(n, 1600, 3200)) == pytest.approx(12.0, abs=1.0)


def test_mic_passes_its_band_at_its_gain_and_cuts_outside_it():
    rng = np.random.default_rng(0)
    inside = degrade(tone(1000.0), "mic", rng)
    assert db(rms(inside[SR // 2:]) / rms(tone(1000.0)[SR // 2:])) == pytest.approx(GAIN_DB, abs=0.5)
    for freq in (BAND_HZ[0] / 3, BAND_HZ[1] * 1.5):
        out = degrade(tone(freq), "mic", rng)
        assert db(rms(out[SR // 2:]) / rms(tone(freq)[SR // 2:])) < GAIN_DB - 10


def test_reverb_keeps_the_direct_sound_and_decays_by_60_db_in_rt60():
    x = np.zeros(2 * SR, np.float32)
    x[SR // 4] = 0.5
    y = degrade(x, "reverb", np.random.default_rng(0))
    start = SR // 4
    assert y[start] == pytest.approx(0.5) and np.abs(y[:start]).max() < 1e-6
    tail = y[start + 1:start + int(RT60_S * SR)]
    assert db(rms(tail) * np.sqrt(len(tail)) / 0.5) == pytest.approx(0.0, abs=0.5)  # wet 1.0: tail energy = direct
    early, late = tail[:800], tail[-800:]
    assert db(rms(late) / rms(early)) < -45


@pytest.mark.parametrize("condition", ["reverb", "noise", "mic", "room"])
def test_conditions_keep_the_length_and_repeat_for_a_seed(condition):
    x = tone(440.0, 1.5)
    a = degrade(x, condition, np.random.default_rng(file_seed("f.wav", condition)))
    b = degrade(x, condition, np.random.default_rng(file_seed("f.wav", condition)))
    assert a.dtype == np.float32 and len(a) == len(x) and np.array_equal(a, b)
    assert not np.allclose(a, x)


def test_the_copy_keeps_names_lengths_and_reference_repeats_and_eval_reads_it(tmp_path, model_path):
    data = write_burst_dataset(tmp_path / "data", {"test": (1, 2)})
    (data / "manifest.json").write_text(json.dumps({"splits": {"test": {"clips": [
        {"file": f"audio/test/{p.name}", "sources": [{"label": "music", "package": "p", "path": "a.ogg"}]}
        for p in (data / "audio" / "test").iterdir()]}}}))
    runs = []
    for out in (tmp_path / "room1", tmp_path / "room2"):
        proc = run_rttag("data", "degrade", "--data", str(data), "--condition", "room", "--out", str(out))
        assert proc.returncode == 0, proc.stderr.decode()
        runs.append(out)
    names = sorted(p.name for p in (data / "audio" / "test").iterdir())
    for out in runs:
        assert sorted(p.name for p in (out / "audio" / "test").iterdir()) == names
        assert (out / "metadata" / "test.tsv").read_text() == (data / "metadata" / "test.tsv").read_text()
        assert json.loads((out / "degrade.json").read_text())["condition"] == "room"
        assert (out / "manifest.json").read_bytes() == (data / "manifest.json").read_bytes()
    for name in names:
        info = sf.info(str(runs[0] / "audio" / "test" / name))
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        assert info.frames == sf.info(str(data / "audio" / "test" / name)).frames
        assert (runs[0] / "audio" / "test" / name).read_bytes() == (runs[1] / "audio" / "test" / name).read_bytes()
    out = tmp_path / "eval.json"
    proc = run_rttag("eval", "--data", str(runs[0]), "--models", str(model_path), "--no-silero", "--json", str(out))
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(out.read_text())["settings"]["bootstrap_unit"] == "recording"  # the copied manifest


def test_bad_input_is_one_error_line(tmp_path):
    data = write_burst_dataset(tmp_path / "data", {"test": (1,)})
    proc = run_rttag("data", "degrade", "--data", str(data), "--split", "validation", "--condition", "mic",
                     "--out", str(tmp_path / "o1"))
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and len(err) == 1 and "has no validation split" in err[0], err
    assert run_rttag("data", "degrade", "--data", str(data), "--condition", "mic",
                     "--out", str(tmp_path / "o2")).returncode == 0
    proc = run_rttag("data", "degrade", "--data", str(data), "--condition", "mic", "--out", str(tmp_path / "o2"))
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and len(err) == 1 and "is not empty" in err[0], err
    sf.write(data / "audio" / "test" / "loud.wav", np.zeros(800, np.float32), 8000)
    proc = run_rttag("data", "degrade", "--data", str(data), "--condition", "mic", "--out", str(tmp_path / "o3"))
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0 and len(err) == 1 and "expected 16 kHz mono, got 8000 Hz" in err[0], err
