"""The streaming path gives the same events whatever the block sizes."""

import threading
import time

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from rttag.capture import FileSource
from rttag.events import JsonlSink, OffEvent, OnEvent, StatusEvent
from rttag import pipeline as pipeline_module
from rttag.pipeline import Pipeline
from rttag.runtime import OnnxModel
from conftest import tone_bursts


class ChunkSource:
    """Writes a signal into the ring buffer in the given chunk sizes (a test driver, not a mock:
    the ring buffer, frontend, model and smoother downstream are the real ones)."""

    live = False
    overflows = 0
    error = None
    stream_name = "chunks"

    def __init__(self, signal, sizes):
        self.signal, self.sizes = signal, sizes

    def start(self, ring):
        pos, i = 0, 0
        while pos < len(self.signal):
            n = self.sizes[i % len(self.sizes)]
            ring.write(self.signal[pos:pos + n], block=False)
            pos, i = pos + n, i + 1
        ring.close()

    def stop(self):
        pass


@pytest.fixture(scope="module")
def model(model_path):
    return OnnxModel(model_path)


def tag(model, source, read_block=1600, frames_per_call=1):
    events = []
    Pipeline(model, model.info.smoother, events.append, block_size=read_block,
             frames_per_call=frames_per_call, ring_seconds=60).run(source)
    return [JsonlSink.encode(e) for e in events]


@pytest.fixture(scope="module")
def reference(model, bursts_wav):
    return tag(model, FileSource(str(bursts_wav), 16000, 1600))


def test_reference_has_events_and_ends_cleanly(reference):
    assert sum('"type":"on"' in e for e in reference) >= 2
    assert reference[0].startswith('{"v":1,"type":"status"') and '"stopped"' in reference[-1]
    assert sum('"type":"on"' in e for e in reference) == sum('"type":"off"' in e for e in reference)


@pytest.mark.parametrize("block", [1, 7, 160, 1000, 4096])
def test_block_sizes_give_identical_events(model, bursts_wav, reference, block):
    assert tag(model, FileSource(str(bursts_wav), 16000, block), read_block=block) == reference


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=12),
       read_block=st.integers(min_value=1, max_value=8000))
def test_random_chunkings_give_identical_events(model, reference, sizes, read_block):
    assert tag(model, ChunkSource(tone_bursts(), sizes), read_block=read_block) == [
        e.replace('"file:bursts.wav"', '"chunks"') for e in reference]


def test_resampled_stereo_file_is_tagged(model, tmp_path):
    y = tone_bursts()
    stereo = np.stack([y, y], axis=1)
    import librosa
    path = tmp_path / "stereo44k.wav"
    sf.write(path, librosa.resample(stereo.T, orig_sr=16000, target_sr=44100).T, 44100)
    src = FileSource(str(path), 16000, 1600)
    assert any("resampling 44100" in n for n in src.notes()) and any("downmixing" in n for n in src.notes())
    assert sum('"type":"on"' in e for e in tag(model, src)) >= 2


def test_state_reset_policy_emits_reset_and_restarts_state(model, bursts_wav):
    events = []
    p = Pipeline(model, model.info.smoother, events.append, state_reset_s=2.0)
    p.run(FileSource(str(bursts_wav), 16000, 1600))
    resets = [e for e in events if isinstance(e, StatusEvent) and e.status == "reset"]
    assert [r.t for r in resets] == [2.0, 4.0]


def test_frames_per_call_changes_only_decision_times(model, bursts_wav, reference):
    batched = tag(model, FileSource(str(bursts_wav), 16000, 1600), frames_per_call=8)
    strip = lambda lines: [l.split(',"at"')[0] for l in lines]  # noqa: E731
    assert strip(batched) == strip(reference)


def test_reader_falling_behind_reports_an_exact_gap(model):
    y = tone_bursts()
    events = []
    Pipeline(model, model.info.smoother, events.append, ring_seconds=1.0).run(ChunkSource(y, [len(y)]))
    gaps = [e for e in events if isinstance(e, StatusEvent) and e.status == "gap"]
    assert len(gaps) == 1
    assert gaps[0].extra["lost_samples"] == len(y) - 16000 and gaps[0].t == (len(y) - 16000) / 16000
    assert events[-1].status == "stopped" and events[-1].t == len(y) / 16000


def test_probability_observer_sees_every_frame_once(model, bursts_wav):
    seen = []
    Pipeline(model, model.info.smoother, lambda e: None, frames_per_call=5,
             on_probs=lambda i, p, f: seen.append((i, len(p), f.shape))).run(FileSource(str(bursts_wav), 16000, 1600))
    starts = [i for i, _, _ in seen]
    assert starts == sorted(starts) and sum(n for _, n, _ in seen) == 1 + (6 * 16000 - 512) // 160
    n_mels = model.info.frontend.n_mels
    assert all(shape == (n, n_mels) for _, n, shape in seen)  # the log-mel frames each call was given


class VanishingDevice(ChunkSource):
    """A live source whose device stops delivering after its first second and comes back on the
    first reopen. A stand-in for unplugging a microphone mid-stream, which a test cannot do to
    a real device; everything downstream is real."""

    live = True

    def __init__(self, signal):
        super().__init__(signal, [len(signal)])
        self.alive = True
        self.restarts = 0

    def start(self, ring):
        self.ring = ring
        ring.write(self.signal[:16000])
        self.alive = False

    def restart(self):
        self.restarts += 1
        self.ring.write(self.signal[16000:])
        self.ring.close()
        self.alive = True
        return True


def test_device_lost_then_reconnected(model):
    src = VanishingDevice(tone_bursts())
    events = []
    Pipeline(model, model.info.smoother, events.append).run(src)
    statuses = [(e.status, e.t) for e in events if isinstance(e, StatusEvent)]
    assert [s for s, _ in statuses] == ["started", "device_lost", "reconnected", "stopped"]
    assert statuses[1][1] == 1.0 and src.restarts == 1


class SlowToStartDevice(ChunkSource):
    """A live source whose first audio comes 3 s after it is opened, as the first stream of a
    freshly started PulseAudio server's does after about 2 s (a real server's delay sits too close
    to the 2 s stall limit to test with; this one is a stand-in, everything downstream is real)."""

    live = True
    alive = True

    def __init__(self, signal, delay_s):
        super().__init__(signal, [len(signal)])
        self.delay_s = delay_s
        self.restarts = 0

    def start(self, ring):
        def deliver():
            time.sleep(self.delay_s)
            ring.write(self.signal)
            ring.close()
        threading.Thread(target=deliver, daemon=True).start()

    def restart(self):
        self.restarts += 1
        return True


def test_a_device_slow_to_deliver_its_first_audio_is_not_reopened(model):
    y = tone_bursts()
    src = SlowToStartDevice(y, delay_s=3.0)
    events = []
    Pipeline(model, model.info.smoother, events.append).run(src)
    statuses = [(e.status, e.t) for e in events if isinstance(e, StatusEvent)]
    assert [s for s, _ in statuses] == ["started", "stopped"] and src.restarts == 0
    assert statuses[-1][1] == len(y) / 16000  # every sample it delivered is in the stream


def test_a_device_that_never_delivers_is_lost_after_the_first_audio_wait(model, monkeypatch):
    monkeypatch.setattr(pipeline_module, "FIRST_AUDIO_S", 1.0)
    src = SlowToStartDevice(tone_bursts(), delay_s=60.0)
    events = []
    pipe = Pipeline(model, model.info.smoother, events.append)
    timer = threading.Timer(2.0, pipe.stop_requested.set)
    timer.start()
    pipe.run(src)
    timer.join()
    statuses = [(e.status, e.t) for e in events if isinstance(e, StatusEvent)]
    assert [s for s, _ in statuses] == ["started", "device_lost", "stopped"] and src.restarts >= 1
