"""End to end through a real audio device: a PulseAudio server started by the test, a null
sink with a virtual source, a WAV played into it, and ``rttag listen`` recording from it."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import jsonschema
import pytest

from conftest import REPO, parse_events

SCHEMA = json.loads((REPO / "rttag" / "schema" / "events-v1.json").read_text())


def _need(tool):
    if shutil.which(tool) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is required in CI (installed by .ci/run)")
        pytest.skip(f"{tool} not installed")


@pytest.fixture(scope="module")
def pulse():
    """A private PulseAudio server: sink ``rttag_sink``, default source ``rttag_mic`` (its monitor)."""
    for tool in ("pulseaudio", "pactl", "paplay"):
        _need(tool)
    runtime = tempfile.mkdtemp(prefix="rttag-pulse-")
    os.chmod(runtime, 0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": runtime, "PULSE_RUNTIME_PATH": os.path.join(runtime, "pulse"),
           "HOME": runtime}
    subprocess.run(["pulseaudio", "-D", "--exit-idle-time=-1", "--disallow-exit", "-n",
                    "--load=module-native-protocol-unix", "--log-target=stderr"], env=env, check=True,
                   capture_output=True, timeout=30)
    try:
        for _ in range(50):
            if subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        pactl = lambda *a: subprocess.run(["pactl", *a], env=env, check=True, capture_output=True, timeout=10)  # noqa: E731
        pactl("load-module", "module-null-sink", "sink_name=rttag_sink", "rate=16000", "channels=1")
        pactl("load-module", "module-remap-source", "master=rttag_sink.monitor", "source_name=rttag_mic")
        pactl("set-default-source", "rttag_mic")
        pactl("set-default-sink", "rttag_sink")
        yield env
    finally:
        subprocess.run(["pulseaudio", "--kill"], env=env, capture_output=True, timeout=10)
        shutil.rmtree(runtime, ignore_errors=True)


def test_devices_lists_the_pulse_input(pulse):
    proc = subprocess.run([sys.executable, "-m", "rttag", "devices"], env=pulse, capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "pulse" in proc.stdout


def test_listen_on_a_virtual_device_then_sigterm(pulse, model_path, bursts_wav):
    proc = subprocess.Popen([sys.executable, "-m", "rttag", "listen", "--device", "pulse", "--model", str(model_path)],
                            env=pulse, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    try:
        first = json.loads(proc.stdout.readline())
        assert first["status"] == "started" and first["stream"] == "mic:pulse"
        time.sleep(1.5)  # the first callback can come 1–2 s after start
        t_play = time.monotonic()
        subprocess.run(["paplay", "--device=rttag_sink", str(bursts_wav)], env=pulse, check=True, timeout=60)
        played_for = time.monotonic() - t_play
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    events = [first] + parse_events(out)
    for e in events:
        jsonschema.validate(e, SCHEMA)
    ons = [e for e in events if e["type"] == "on"]
    offs = [e for e in events if e["type"] == "off"]
    assert len(ons) >= 2, events
    assert len(ons) == len(offs), "every on must be closed by an off"
    stopped = events[-1]
    assert stopped["status"] == "stopped"
    # Stream time comes from samples: it covers the playback and not much more than the run.
    assert played_for - 1.0 <= stopped["t"] <= played_for + 10.0
    assert all(0 <= e["t"] <= e["at"] <= stopped["t"] for e in ons)
    assert all(e["onset"] <= e["t"] for e in offs)


RESAMPLED_LISTEN = """
import json, sys, threading
from rttag.capture import MicSource
from rttag.events import JsonlSink
from rttag.pipeline import Pipeline
from rttag.runtime import OnnxModel
model = OnnxModel(sys.argv[1])
src = MicSource("pulse", 16000, 1600)
# Take the path of a device that cannot record at 16 kHz: capture at 48 kHz, relay-resample.
src.device_rate, src.block_size = 48000, 4800
pipe = Pipeline(model, model.info.smoother, JsonlSink().write)
# Stop when the test writes a line (after its playback), however slowly this machine started.
threading.Thread(target=lambda: (sys.stdin.readline(), pipe.stop_requested.set()), daemon=True).start()
pipe.run(src)
"""


def test_device_at_another_rate_is_resampled(pulse, model_path, bursts_wav):
    proc = subprocess.Popen([sys.executable, "-c", RESAMPLED_LISTEN, str(model_path)], env=pulse,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert json.loads(proc.stdout.readline())["status"] == "started"
    started = time.monotonic()
    time.sleep(1.5)
    subprocess.run(["paplay", "--device=rttag_sink", str(bursts_wav)], env=pulse, check=True, timeout=60)
    time.sleep(1.0)
    ran = time.monotonic() - started
    out, err = proc.communicate(b"stop\n", timeout=60)
    assert proc.returncode == 0, err.decode()
    events = parse_events(out)
    assert sum(e["type"] == "on" for e in events) >= 2, events
    # Stream time counts samples recorded: at least the 6 s played, at most the time it ran
    # (from its 'started' line to the stop request, plus the blocks it drains after it).
    assert events[-1]["status"] == "stopped" and 5.0 <= events[-1]["t"] <= ran + 1.0, (events[-1], ran)
