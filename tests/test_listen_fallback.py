"""``rttag listen`` on a machine with no input device says so and streams the bundled demo
recording in real time instead."""

import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import DEMO_WAV, REPO, parse_events
from rttag.capture import default_input_device

NO_PULSE = {"PULSE_SERVER": "unix:/nonexistent/rttag-test"}


def test_listen_without_input_device_streams_the_demo_in_real_time(model_path, monkeypatch):
    monkeypatch.setenv("PULSE_SERVER", NO_PULSE["PULSE_SERVER"])
    if default_input_device() is not None:
        pytest.skip("this machine has an input device")
    assert DEMO_WAV.is_file()
    proc = subprocess.Popen([sys.executable, "-m", "rttag", "listen", "--model", str(model_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                            env={**__import__("os").environ, **NO_PULSE})
    try:
        first = json.loads(proc.stdout.readline())
        t0 = time.monotonic()
        time.sleep(2.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    assert "no input device found" in err.decode() and "demo" in err.decode()
    assert first["status"] == "started" and first["stream"] == "file:demo.wav"
    stopped = parse_events(out)[-1]
    assert stopped["status"] == "stopped"
    # Paced in real time: stream time advanced about as much as the wall clock did.
    assert 1.0 <= stopped["t"] <= elapsed + 0.5
