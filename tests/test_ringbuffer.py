"""Absolute-index ring buffer: order, wrap-around, loss accounting, blocking writes."""

import threading

import numpy as np

from rttag.ringbuffer import RingBuffer


def test_reads_what_was_written_across_wraps():
    rb = RingBuffer(10)
    data = np.arange(57, dtype=np.float32)
    got = []
    for i in range(0, 57, 4):
        rb.write(data[i:i + 4])
        c = rb.read(5)
        assert c.lost == 0
        got.append(c.samples)
    rb.close()
    while not (c := rb.read(100)).eof:
        got.append(c.samples)
    got.append(c.samples)
    np.testing.assert_array_equal(np.concatenate(got), data)
    assert rb.read_index == rb.write_index == 57


def test_overrun_reports_exact_lost_samples():
    rb = RingBuffer(8)
    rb.write(np.arange(5, dtype=np.float32))
    rb.write(np.arange(5, 20, dtype=np.float32))  # 20 written, only the last 8 held
    c = rb.read(100)
    assert (c.start, c.lost) == (12, 12)
    np.testing.assert_array_equal(c.samples, np.arange(12, 20))


def test_block_larger_than_capacity_counts_every_sample():
    rb = RingBuffer(4)
    rb.write(np.arange(10, dtype=np.float32))
    c = rb.read(100)
    assert (c.start, c.lost, list(c.samples)) == (6, 6, [6, 7, 8, 9])


def test_blocking_write_waits_for_the_reader_and_loses_nothing():
    rb = RingBuffer(16)
    data = np.arange(1000, dtype=np.float32)

    def writer():
        for i in range(0, 1000, 50):
            rb.write(data[i:i + 50], block=True)
        rb.close()

    threading.Thread(target=writer).start()
    got = []
    while True:
        c = rb.read(7, timeout=2)
        assert c.lost == 0
        got.append(c.samples)
        if c.eof:
            break
    np.testing.assert_array_equal(np.concatenate(got), data)


def test_read_times_out_empty():
    c = RingBuffer(4).read(4, timeout=0.01)
    assert len(c.samples) == 0 and not c.eof
