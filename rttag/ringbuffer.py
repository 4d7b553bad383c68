"""Single-producer, single-consumer ring buffer of float32 samples with absolute indices.

Indices count samples since the stream started and never wrap (Python ints), so stream time
is ``index / sample_rate``. A reader that falls more than ``capacity`` samples behind the
writer loses the oldest samples and is told exactly which ones (``lost``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Chunk:
    """Samples ``[start, start + len(samples))`` of the stream, preceded by ``lost`` dropped
    samples ``[start - lost, start)``. ``eof`` is set once the writer closed and all is read."""

    start: int
    samples: np.ndarray
    lost: int
    eof: bool


class RingBuffer:
    """Capacity in samples. ``write`` is cheap enough for an audio callback: one copy under
    a lock held for the copy only."""

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError("ring buffer capacity must be positive")
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, dtype=np.float32)
        self._lock = threading.Lock()
        self._readable = threading.Condition(self._lock)
        self._writable = threading.Condition(self._lock)
        self.write_index = 0
        """Absolute index of the next sample to be written."""
        self.read_index = 0
        """Absolute index of the next sample to be read."""
        self._closed = False

    def write(self, samples: np.ndarray, block: bool = False, timeout: float | None = None) -> bool:
        """Append 1-D float32 samples. Never blocks unless ``block``.

        Without ``block`` (live capture), old unread samples are overwritten and the reader
        will be told. With ``block`` (files), waits until there is room; returns False if the
        buffer was closed or ``timeout`` (s) ran out before everything was written.
        """
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if block:
            pos = 0
            while pos < len(samples):
                with self._writable:
                    if not self._writable.wait_for(
                            lambda: self._closed or self.write_index - self.read_index < self.capacity,
                            timeout):
                        return False
                    if self._closed:
                        return False
                    room = self.capacity - (self.write_index - self.read_index)
                    part = samples[pos:pos + room]
                    self._copy_in(part)
                    pos += len(part)
                    self._readable.notify()
            return True
        with self._lock:
            if len(samples) > self.capacity:  # the earliest would be overwritten at once
                self.write_index += len(samples) - self.capacity
                samples = samples[-self.capacity:]
            self._copy_in(samples)
            self._readable.notify()
        return True

    def _copy_in(self, samples: np.ndarray) -> None:
        n = len(samples)
        at = self.write_index % self.capacity
        first = min(n, self.capacity - at)
        self._buf[at:at + first] = samples[:first]
        self._buf[:n - first] = samples[first:]
        self.write_index += n

    def close(self) -> None:
        """Mark the end of the stream; readers get ``eof`` once everything is read."""
        with self._lock:
            self._closed = True
            self._readable.notify_all()
            self._writable.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def read(self, max_samples: int, timeout: float | None = None) -> Chunk:
        """Take up to ``max_samples`` unread samples, waiting up to ``timeout`` s for some.

        Returns an empty chunk on timeout. ``lost`` counts samples overwritten before they
        could be read (the reader resumes at the oldest sample still held).
        """
        with self._readable:
            self._readable.wait_for(lambda: self._closed or self.write_index > self.read_index, timeout)
            lost = max(0, self.write_index - self.capacity - self.read_index)
            start = self.read_index + lost
            n = min(max_samples, self.write_index - start)
            at = start % self.capacity
            first = min(n, self.capacity - at)
            out = np.concatenate([self._buf[at:at + first], self._buf[:n - first]])
            self.read_index = start + n
            eof = self._closed and self.read_index == self.write_index
            self._writable.notify()
        return Chunk(start=start, samples=out, lost=lost, eof=eof)
