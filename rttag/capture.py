"""Audio sources that feed the ring buffer: a live input device, an audio file, stdin.

Every source delivers float32 mono samples at the model's sample rate into a
:class:`~rttag.ringbuffer.RingBuffer`; the pipeline downstream is the same for all of them.
The live source's PortAudio callback only copies into the ring buffer and counts overflow
flags. File and stdin sources decode, downmix and resample in a feeder thread, in fixed
one-second pieces (so the result does not depend on the read block size), and wait for room
in the ring buffer instead of dropping samples.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .errors import RttagError
from .ringbuffer import RingBuffer

log = logging.getLogger(__name__)


class AudioInputError(RttagError):
    """A device or file cannot be opened or read."""


def import_sounddevice():
    """Import sounddevice, turning a missing PortAudio into one clear error."""
    try:
        import sounddevice
    except OSError as exc:
        raise AudioInputError(f"PortAudio library not found ({exc}); install it, e.g. "
                              "'apt-get install libportaudio2'") from None
    return sounddevice


def default_input_device() -> Optional[int]:
    """Index of the system's default input device, or None when there is none (or no PortAudio)."""
    try:
        sd = import_sounddevice()
    except AudioInputError:
        return None
    try:
        info = sd.query_devices(kind="input")
    except (ValueError, sd.PortAudioError):
        return None
    return int(info["index"]) if info and info.get("max_input_channels", 0) > 0 else None


def list_input_devices() -> list[dict]:
    """Input devices as dicts: index, name, channels, default_samplerate, default (bool)."""
    sd = import_sounddevice()
    default = default_input_device()
    return [{"index": d["index"], "name": d["name"], "channels": d["max_input_channels"],
             "default_samplerate": d["default_samplerate"], "default": d["index"] == default}
            for d in sd.query_devices() if d["max_input_channels"] > 0]


class MicSource:
    """A live PortAudio input stream, mono float32.

    It records at ``sample_rate`` when the device can; otherwise at the device's default rate,
    and a relay thread resamples from a device-rate ring buffer into the pipeline's ring buffer
    (the callback still only copies). Samples lost on the way become silence of the same
    duration, so stream time stays aligned.
    """

    live = True

    def __init__(self, device: int | str | None, sample_rate: int, block_size: int):
        self.sd = import_sounddevice()
        try:
            info = self.sd.query_devices(device, kind="input")
        except (ValueError, self.sd.PortAudioError) as exc:
            raise AudioInputError(f"input device {device!r}: {exc}") from None
        if info["max_input_channels"] < 1:
            raise AudioInputError(f"device {device!r} ({info['name']}) has no input channels")
        self.device = int(info["index"]) if device is None or isinstance(device, int) else device
        self.device_name = info["name"]
        self.sample_rate = sample_rate
        self.device_rate = sample_rate
        if not self._supports(sample_rate):
            self.device_rate = int(info["default_samplerate"])
            if not self._supports(self.device_rate):
                raise AudioInputError(f"input device {device!r} ({info['name']}) cannot record mono float32 at "
                                      f"{sample_rate} Hz nor at its default {self.device_rate} Hz")
        self.block_size = max(1, round(block_size * self.device_rate / sample_rate))
        self.stream_name = f"mic:{device if device is not None else info['index']}"
        self.overflows = 0
        self._stream = None
        self._ring: Optional[RingBuffer] = None
        self._capture_ring: Optional[RingBuffer] = None
        self._relay: Optional[threading.Thread] = None

    def _supports(self, rate: int) -> bool:
        try:
            self.sd.check_input_settings(device=self.device, channels=1, dtype="float32", samplerate=rate)
        except (ValueError, self.sd.PortAudioError):
            return False
        return True

    def notes(self) -> list[str]:
        if self.device_rate != self.sample_rate:
            return [f"{self.stream_name}: the device records at {self.device_rate} Hz; resampling to {self.sample_rate} Hz"]
        return []

    def _callback(self, indata, frames, time_info, status) -> None:
        # Audio thread: copy and count, nothing else.
        if status.input_overflow:
            self.overflows += 1
        self._capture_ring.write(indata[:, 0])

    def _relay_loop(self) -> None:
        """Device-rate ring → soxr → the pipeline's ring (only when the rates differ)."""
        import soxr

        resampler = soxr.ResampleStream(self.device_rate, self.sample_rate, 1, dtype="float32")
        while True:
            chunk = self._capture_ring.read(self.block_size, timeout=0.1)
            if chunk.lost:
                self._ring.write(np.zeros(round(chunk.lost * self.sample_rate / self.device_rate), np.float32))
            if len(chunk.samples):
                self._ring.write(resampler.resample_chunk(chunk.samples))
            if chunk.eof:
                self._ring.close()
                return

    def start(self, ring: RingBuffer) -> None:
        if self._ring is None:
            self._ring = ring
            if self.device_rate == self.sample_rate:
                self._capture_ring = ring
            else:
                self._capture_ring = RingBuffer(self.device_rate * 5)
                self._relay = threading.Thread(target=self._relay_loop, name="rttag-resample", daemon=True)
                self._relay.start()
        try:
            self._stream = self.sd.InputStream(device=self.device, channels=1, dtype="float32",
                                               samplerate=self.device_rate, blocksize=self.block_size,
                                               callback=self._callback)
            self._stream.start()
        except self.sd.PortAudioError as exc:
            raise AudioInputError(f"cannot open input device {self.device!r}: {exc}") from None

    @property
    def alive(self) -> bool:
        """False once PortAudio stopped the stream on its own (device gone)."""
        return self._stream is not None and self._stream.active

    def restart(self) -> bool:
        """Try to reopen the device after it was lost; True on success."""
        self.close_stream()
        try:
            self.start(self._ring)
        except AudioInputError as exc:
            log.debug("reopen failed: %s", exc)
            return False
        return True

    def close_stream(self) -> None:
        """Stop the PortAudio stream without waiting on a stuck device (abort, then close)."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        done = threading.Thread(target=lambda: (stream.abort(ignore_errors=True), stream.close(ignore_errors=True)),
                                daemon=True)
        done.start()
        done.join(timeout=2.0)

    def stop(self) -> None:
        self.close_stream()
        if self._capture_ring is not None:
            self._capture_ring.close()
        if self._relay is not None:
            self._relay.join(timeout=2.0)
        if self._ring is not None:
            self._ring.close()


class _FeederSource:
    """Base for decoded sources: a thread writes fixed pieces into the ring buffer.

    Subclasses provide ``native_rate``, ``channels`` and ``_pieces()`` (float32 arrays
    ``[n, channels]`` at the native rate, about one second each).
    """

    live = False
    native_rate: int
    channels: int

    def __init__(self, sample_rate: int, block_size: int, realtime: bool):
        self.sample_rate = sample_rate
        self.block_size = block_size
        self.realtime = realtime
        self.overflows = 0
        self.error: Optional[BaseException] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def notes(self) -> list[str]:
        """Human notes about conversions (for stderr)."""
        out = []
        if self.channels > 1:
            out.append(f"{self.stream_name}: downmixing {self.channels} channels to mono")
        if self.native_rate != self.sample_rate:
            out.append(f"{self.stream_name}: resampling {self.native_rate} Hz to {self.sample_rate} Hz")
        return out

    def _converted(self) -> Iterator[np.ndarray]:
        resampler = None
        if self.native_rate != self.sample_rate:
            import soxr
            resampler = soxr.ResampleStream(self.native_rate, self.sample_rate, 1, dtype="float32")
        for piece in self._pieces():
            mono = piece.mean(axis=1, dtype=np.float32) if piece.shape[1] > 1 else piece[:, 0]
            yield resampler.resample_chunk(mono) if resampler else mono
        if resampler:
            yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)

    def _feed(self, ring: RingBuffer) -> None:
        t0 = time.monotonic()
        written = 0
        try:
            for samples in self._converted():
                for pos in range(0, len(samples), self.block_size):
                    block = samples[pos:pos + self.block_size]
                    if self._stop.is_set() or not ring.write(block, block=True):
                        return
                    written += len(block)
                    if self.realtime:
                        ahead = written / self.sample_rate - (time.monotonic() - t0)
                        if ahead > 0 and self._stop.wait(ahead):
                            return
        except Exception as exc:  # decoding errors surface in the pipeline thread  # noqa: BLE001
            self.error = exc
        finally:
            ring.close()

    def start(self, ring: RingBuffer) -> None:
        self._thread = threading.Thread(target=self._feed, args=(ring,), name="rttag-feeder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


class FileSource(_FeederSource):
    """An audio file (WAV/FLAC/OGG… via soundfile), any rate and channel count."""

    def __init__(self, path: str, sample_rate: int, block_size: int, realtime: bool = False):
        super().__init__(sample_rate, block_size, realtime)
        import soundfile as sf

        self.path = path
        self.stream_name = f"file:{Path(path).name}"
        if not Path(path).is_file():
            raise AudioInputError(f"{path}: no such file")
        try:
            with sf.SoundFile(path) as f:
                self.native_rate, self.channels, self.frames = f.samplerate, f.channels, f.frames
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioInputError(f"{path}: cannot read audio ({exc})") from None
        if self.frames == 0:
            raise AudioInputError(f"{path}: contains no audio")

    def _pieces(self) -> Iterator[np.ndarray]:
        import soundfile as sf

        try:
            with sf.SoundFile(self.path) as f:
                for piece in f.blocks(blocksize=self.native_rate, dtype="float32", always_2d=True):
                    yield piece
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioInputError(f"{self.path}: audio data is corrupt ({exc})") from None


class StdinSource(_FeederSource):
    """Audio on stdin: a PCM WAV stream (detected by its RIFF header), or raw signed 16-bit
    little-endian mono samples at ``raw_rate`` Hz."""

    def __init__(self, sample_rate: int, block_size: int, raw_rate: int, realtime: bool = False,
                 stdin: Optional[io.BufferedReader] = None):
        super().__init__(sample_rate, block_size, realtime)
        self.stream_name = "stdin"
        self._in = stdin if stdin is not None else sys.stdin.buffer
        head = self._in.peek(4)[:4] if hasattr(self._in, "peek") else b""
        self._wav = None
        if head == b"RIFF":
            try:
                self._wav = wave.open(self._in, "rb")
            except (wave.Error, EOFError) as exc:
                raise AudioInputError(f"stdin: bad WAV stream ({exc})") from None
            self.native_rate, self.channels = self._wav.getframerate(), self._wav.getnchannels()
            self._width = self._wav.getsampwidth()
            if self._width not in (2, 4):
                raise AudioInputError(f"stdin: {8 * self._width}-bit WAV not supported (16 or 32-bit PCM)")
        else:
            self.native_rate, self.channels, self._width = raw_rate, 1, 2

    def _pieces(self) -> Iterator[np.ndarray]:
        frame_bytes = self._width * self.channels
        dtype, scale = (np.int16, 32768.0) if self._width == 2 else (np.int32, 2147483648.0)
        while True:
            data = self._wav.readframes(self.native_rate) if self._wav else self._in.read(self.native_rate * frame_bytes)
            if not data:
                return
            usable = len(data) - len(data) % frame_bytes
            pcm = np.frombuffer(data[:usable], dtype=dtype).astype(np.float32) / scale
            yield pcm.reshape(-1, self.channels)
