"""One streaming path for every source: ring buffer → frontend → model step → smoother → sink.

Stream time comes from sample counts only. Lost samples (a reader that fell behind, a
device that vanished) are reported as a ``gap`` status and replaced by silence, so frame
``i`` always starts at sample ``i * hop`` and every timestamp stays sample-accurate.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Callable, Optional

import numpy as np

from .capture import AudioInputError
from .events import Event, StatusEvent
from .frontend import LogMelFrontend
from .ringbuffer import RingBuffer
from .runtime import OnnxModel
from .smoother import Smoother, SmootherParams

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.2
STALL_S = 2.0
"""A live source that delivers nothing for this long (s) after it has delivered audio is treated as lost."""
FIRST_AUDIO_S = 6.0
"""How long (s) a live source may take to deliver its first audio before it is treated as lost. The
first input stream a freshly started PulseAudio server opens delivered its first audio after 2.0 s
on the test machines (later ones after 0.2 s); declaring such a device lost and reopening it loses
the audio it was about to deliver."""
RECONNECT_EVERY_S = 1.0


class Pipeline:
    """Runs sources through one model, writing events to ``emit``.

    ``frames_per_call``: T frames per model call (the pipeline waits for T frames, so the
    calls — and therefore the numbers — do not depend on how the audio was chunked).
    ``state_reset_s``: if > 0, the model state is zeroed every that many seconds of stream
    time (a ``reset`` status says so); 0 keeps the state for the whole stream.
    ``on_probs``: optional observer called with ``(first_frame_index, probs [T, n_classes],
    logmel [T, n_mels])`` after every model call (evaluation and plots use it).
    """

    def __init__(self, model: OnnxModel, smoother: SmootherParams, emit: Callable[[Event], None],
                 block_size: int = 1600, frames_per_call: int = 1, ring_seconds: float = 30.0,
                 state_reset_s: float = 0.0,
                 on_probs: Optional[Callable[[int, np.ndarray, np.ndarray], None]] = None):
        self.model = model
        self.info = model.info
        self.smoother_params = smoother
        self.emit = emit
        self.block_size = block_size
        self.frames_per_call = frames_per_call
        self.ring_seconds = ring_seconds
        self.state_reset_s = state_reset_s
        self.on_probs = on_probs
        self.stop_requested = threading.Event()

    def run(self, source, stream: Optional[str] = None) -> None:
        """Stream ``source`` until it ends or :attr:`stop_requested` is set; always closes open
        events and emits ``stopped``. Raises the source's error, if any, after closing."""
        fp = self.info.frontend
        sr, hop = fp.sample_rate, fp.hop_length
        name = stream or source.stream_name
        ring = RingBuffer(int(self.ring_seconds * sr))
        frontend = LogMelFrontend(fp)
        smoother = Smoother(self.info.labels, self.smoother_params, name, hop_s=hop / sr,
                            centre0_s=fp.n_fft / 2 / sr, ready0_s=fp.n_fft / sr)
        state = self.model.zero_state(1)
        pending = np.zeros((0, fp.n_mels), dtype=np.float32)
        reset_frames = int(round(self.state_reset_s * sr / hop)) if self.state_reset_s > 0 else 0
        frames_run = 0
        overflows = 0

        def run_model(feats: np.ndarray) -> None:
            nonlocal state, frames_run
            if reset_frames and frames_run and frames_run % reset_frames == 0:
                state = self.model.zero_state(1)
                self.emit(StatusEvent(name, "reset", frames_run * hop / sr, {"reason": "periodic"}))
            probs, state = self.model.step(feats[None], state)
            if self.on_probs is not None:
                self.on_probs(frames_run, probs[0], feats)
            frames_run += len(feats)
            decided = (fp.n_fft + (frames_run - 1) * hop) / sr
            for ev in smoother.update(probs[0], feats):
                self.emit(dataclasses.replace(ev, at=max(ev.at, decided)))

        def consume(samples: np.ndarray) -> None:
            nonlocal pending
            frames = frontend.push(samples)
            pending = np.concatenate([pending, frames]) if len(pending) else frames
            T = self.frames_per_call if not reset_frames else min(self.frames_per_call, reset_frames)
            while len(pending) >= T:
                take = T if not reset_frames else min(T, reset_frames - frames_run % reset_frames)
                run_model(pending[:take])
                pending = pending[take:]

        source.start(ring)
        self.emit(StatusEvent(name, "started", 0.0, {"model": f"{self.info.name}-v{self.info.version}",
                                                   "provider": self.model.provider, "sample_rate": sr}))
        last_data_read = ring.read_index
        stalled_reads = 0
        lost_device = False
        try:
            while not self.stop_requested.is_set():
                chunk = ring.read(self.block_size, timeout=READ_TIMEOUT_S)
                if source.overflows != overflows:
                    overflows = source.overflows
                    self.emit(StatusEvent(name, "overflow", chunk.start / sr, {"detail": "input overflow reported by the device"}))
                if chunk.lost:
                    self.emit(StatusEvent(name, "gap", chunk.start / sr, {"lost_samples": chunk.lost,
                                                                         "from_t": round((chunk.start - chunk.lost) / sr, 3)}))
                    consume(np.zeros(chunk.lost, dtype=np.float32))
                if len(chunk.samples):
                    consume(chunk.samples)
                    last_data_read, stalled_reads = ring.read_index, 0
                    if lost_device:
                        lost_device = False
                        self.emit(StatusEvent(name, "reconnected", chunk.start / sr))
                elif source.live:
                    stalled_reads += 1
                    patience = STALL_S if last_data_read else FIRST_AUDIO_S  # the ring counts from 0: 0 = no audio yet
                    if not lost_device and (not source.alive or stalled_reads * READ_TIMEOUT_S >= patience):
                        lost_device = True
                        self.emit(StatusEvent(name, "device_lost", last_data_read / sr,
                                              {"detail": "no audio from the device; trying to reopen it"}))
                    if lost_device and stalled_reads % int(RECONNECT_EVERY_S / READ_TIMEOUT_S) == 0:
                        source.restart()
                if chunk.eof:
                    break
        finally:
            source.stop()
            if len(pending):
                run_model(pending)
            t_end = ring.read_index / sr
            for ev in smoother.close(t_end):
                self.emit(ev)
            self.emit(StatusEvent(name, "stopped", t_end))
        error = getattr(source, "error", None)
        if error is not None:
            raise error if isinstance(error, AudioInputError) else AudioInputError(f"{name}: {error}")
