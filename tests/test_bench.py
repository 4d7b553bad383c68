"""``rttag bench`` runs every model in its own process and reports figures (not asserted as
timings: the machines are shared)."""

import json

from conftest import run_rttag


def test_bench_reports_every_figure(model_path, bursts_wav, tmp_path):
    out = tmp_path / "bench.json"
    proc = run_rttag("bench", "--models", f"{model_path},{model_path},silero-vad", "--audio", str(bursts_wav),
                     "--seconds", "5", "--calls", "50", "--json", str(out))
    assert proc.returncode == 0, proc.stderr.decode()
    rows = json.loads(out.read_text())
    lines = proc.stdout.decode().splitlines()
    assert len(rows) == 3 and lines[0].startswith("model")
    # the columns line up even though the model's name is a long temporary path
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1, lines
    assert rows[2]["model"] == "silero-vad" and rows[2]["cpu_ms_per_s"]["pipeline"] > 0
    for r in rows[:2]:
        assert r["audio_s"] == 5.0 and r["provider"] == "CPUExecutionProvider"
        assert r["call_us_median"] > 0 and r["peak_rss_mb"] > 0 and r["batch16_fps"] > 0
        assert set(r["cpu_ms_per_s"]) == {"pipeline", "frontend", "model", "smoother"}


def test_bench_unknown_model_is_one_error_line(bursts_wav):
    proc = run_rttag("bench", "--models", "no-such-model", "--audio", str(bursts_wav))
    assert proc.returncode != 0 and proc.stderr.decode().strip().startswith("rttag: error: no model")
