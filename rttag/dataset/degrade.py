"""``rttag data degrade``: a built split heard through a room and a cheap microphone.

The test split is mixed with mild, random augmentation (rttag.dataset.mixer: some scenes
reverberated, some events filtered). A user's room is harsher and the same for every sound:
this command writes a copy of one split with every file put through one fixed condition, so
``rttag eval --data OUT`` scores the shipped models there against the unchanged reference::

    reverb  synthetic room response, RT60 0.6 s, reverberant energy equal to the direct sound
    noise   pink noise 10 dB below the file's RMS
    mic     4th-order Butterworth band 120 Hz - 5 kHz, then -20 dB of gain
    room    reverb, then the mic's band, then the noise (10 dB below the filtered file's RMS),
            then the mic's gain

Output (``--out``): ``audio/SPLIT/*.wav`` (16 kHz mono PCM16, the input's names and lengths),
``metadata/SPLIT.tsv``, ``ATTRIBUTION.md`` and ``manifest.json`` copied from ``--data`` (the audio
is derived from the same recordings; ``rttag eval`` reads them from the manifest) and
``degrade.json`` (the condition and its settings). Each file's random parts (room response,
noise) are drawn from a seed made of its name and the condition, so the output is the same on
every run. A file whose peak would pass 0.99 is scaled down to 0.99.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np

from ..errors import RttagError
from .mixer import SR, filtered, reverb, rms

CONDITIONS = ("reverb", "noise", "mic", "room")
RT60_S = 0.6
"""Reverberation time of the room response (s)."""
WET = 1.0
"""Reverberant energy relative to the direct sound (1.0: a microphone a metre or two away)."""
SNR_DB = 10.0
"""Pink noise level below the file's RMS (dB)."""
BAND_HZ = (120.0, 5000.0)
"""Pass band of the cheap microphone (Hz)."""
GAIN_DB = -20.0
"""Input gain of the cheap microphone (dB)."""


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of unit-RMS pink noise (power falling 3 dB per octave), float32 ``[n]``."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0.0
    y = np.fft.irfft(spectrum, n)
    return (y / rms(y)).astype(np.float32)


def degrade(x: np.ndarray, condition: str, rng: np.random.Generator) -> np.ndarray:
    """``x``: float32 ``[n]`` at 16 kHz → the same length under ``condition`` (see the module)."""
    if condition not in CONDITIONS:
        raise RttagError(f"data degrade: unknown condition {condition!r} ({', '.join(CONDITIONS)})")
    y = np.asarray(x, dtype=np.float32)
    if condition in ("reverb", "room"):
        y = reverb(y, RT60_S, WET, rng)
    if condition in ("mic", "room"):
        y = filtered(filtered(y, BAND_HZ[0], "highpass"), BAND_HZ[1], "lowpass")
    if condition in ("noise", "room"):
        y = y + pink_noise(len(y), rng) * np.float32(rms(y) * 10 ** (-SNR_DB / 20))
    if condition in ("mic", "room"):
        y = y * np.float32(10 ** (GAIN_DB / 20))
    peak = float(np.abs(y).max()) if len(y) else 0.0
    if peak > 0.99:
        y = y * np.float32(0.99 / peak)
    return y.astype(np.float32)


def file_seed(name: str, condition: str) -> int:
    """The seed of one file's random parts: its name and the condition, stable across runs."""
    return zlib.crc32(f"{condition}:{name}".encode())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="data", help="a built dataset (rttag data build)")
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"))
    parser.add_argument("--condition", required=True, choices=CONDITIONS)
    parser.add_argument("--out", required=True, help="folder for the degraded copy (must not hold this split yet)")


def run(args: argparse.Namespace) -> int:
    import soundfile as sf

    data, out = Path(args.data), Path(args.out)
    audio_in, tsv = data / "audio" / args.split, data / "metadata" / f"{args.split}.tsv"
    if not audio_in.is_dir() or not tsv.is_file():
        raise RttagError(f"data degrade: {data} has no {args.split} split (audio/{args.split}/ and "
                         f"metadata/{args.split}.tsv; build it with 'rttag data build')")
    if out.resolve() == data.resolve():
        raise RttagError("data degrade: --out must differ from --data")
    audio_out = out / "audio" / args.split
    if audio_out.exists() and any(audio_out.iterdir()):
        raise RttagError(f"data degrade: {audio_out} is not empty")
    files = sorted(audio_in.glob("*.wav"))
    if not files:
        raise RttagError(f"data degrade: {audio_in} holds no .wav files")
    audio_out.mkdir(parents=True, exist_ok=True)
    (out / "metadata").mkdir(exist_ok=True)
    for f in files:
        try:
            x, sr = sf.read(str(f), dtype="float32", always_2d=False)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise RttagError(f"data degrade: {f}: cannot read audio ({exc})") from None
        if sr != SR or x.ndim != 1:
            raise RttagError(f"data degrade: {f}: expected 16 kHz mono, got {sr} Hz, {x.ndim}-D")
        y = degrade(x, args.condition, np.random.default_rng(file_seed(f.name, args.condition)))
        sf.write(str(audio_out / f.name), y, SR, subtype="PCM_16")
    shutil.copyfile(tsv, out / "metadata" / tsv.name)
    for name in ("ATTRIBUTION.md", "manifest.json"):
        if (data / name).is_file():
            shutil.copyfile(data / name, out / name)
    settings = {"condition": args.condition, "split": args.split, "source": str(data), "files": len(files),
                "rt60_s": RT60_S, "wet": WET, "snr_db": SNR_DB, "band_hz": list(BAND_HZ), "gain_db": GAIN_DB}
    (out / "degrade.json").write_text(json.dumps(settings, indent=2) + "\n")
    print(f"rttag data degrade: {len(files)} {args.split} files under '{args.condition}' → {audio_out}",
          file=sys.stderr)
    return 0
