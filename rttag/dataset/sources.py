"""The vetted source list (``sources.tsv``): fetching, unpacking, reading and decoding.

Packages are fetched with ``apt-get download`` (never installed) into ``CACHE/debs`` and
unpacked with ``dpkg -x`` into ``CACHE/pkgs/PACKAGE``. A row's ``path`` is a file inside
the package, a member of a zip archive (``A.zip!member``; Quake-engine ``.pk3`` and Warzone
2100 ``.wz`` archives are zip files too) or of a Qt resource file (``A.rcc!member``). Decoded
recordings (16 kHz mono float32, silence trimmed) are cached as ``CACHE/decoded/<key>.npy``
so a second build reads nothing else.
"""

from __future__ import annotations

import csv
import fnmatch
import functools
import hashlib
import io
import os
import shutil
import struct
import subprocess
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RttagError

SAMPLE_RATE = 16000
TRIM_TOP_DB = 40.0
"""Leading/trailing audio quieter than this many dB below the peak is trimmed."""
MIN_SECONDS = 0.05


class SourceError(RttagError):
    """A package or recording cannot be fetched, unpacked or decoded."""


@dataclass(frozen=True)
class Source:
    """One row of sources.tsv. duration_s: the raw file's duration (s)."""

    package: str
    path: str
    label: str
    split: str
    licence: str
    duration_s: float

    @property
    def key(self) -> str:
        return hashlib.sha1(f"{self.package}/{self.path}".encode()).hexdigest()[:16]


def default_sources_tsv() -> Path:
    """``../shared/data/sources.tsv`` beside the repository checkout."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "sources.tsv"


def default_extra_sources_tsv() -> Path:
    """rttag's own list of further training recordings (``rttag/dataset/extra_sources.tsv``)."""
    return Path(__file__).resolve().parent / "extra_sources.tsv"


def default_validation_sources_tsv() -> Path:
    """rttag's own list of further validation recordings (``rttag/dataset/validation_sources.tsv``)."""
    return Path(__file__).resolve().parent / "validation_sources.tsv"


def default_distractor_sources_tsv() -> Path:
    """rttag's list of unlabelled training distractors (``rttag/dataset/distractor_sources.tsv``:
    game and interface sounds of none of the labels, for ``rttag data build --distractors``)."""
    return Path(__file__).resolve().parent / "distractor_sources.tsv"


def read_sources(tsv: Path) -> list[Source]:
    if not tsv.is_file():
        raise SourceError(f"source list not found: {tsv} (pass --sources)")
    with open(tsv, newline="") as f:
        return [Source(r["package"], r["path"], r["label"], r["split"], r["licence"], float(r["duration_s"] or 0))
                for r in csv.DictReader(f, delimiter="\t")]


def fetch_and_unpack(packages: list[str], cache: Path, progress) -> None:
    """Make ``cache/pkgs/P`` exist for every package P (download and unpack what is missing).

    Safe for builds that share one cache at the same time: each downloads into and unpacks
    into a directory of its own and renames the finished result into place, so another build
    never sees a half-written ``.deb`` or package tree; where two finish the same package, the
    first rename wins and the other copy is dropped."""
    debs, pkgs = cache / "debs", cache / "pkgs"
    debs.mkdir(parents=True, exist_ok=True)
    pkgs.mkdir(parents=True, exist_ok=True)
    for pkg in progress(packages, desc="fetch+unpack", unit="pkg"):
        if (pkgs / pkg).is_dir():
            continue
        deb = _fetched_deb(pkg, debs)
        with tempfile.TemporaryDirectory(prefix=f"{pkg}.", suffix=".partial", dir=pkgs) as tmp:
            tree = Path(tmp) / pkg
            proc = subprocess.run(["dpkg", "-x", str(deb), str(tree)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise SourceError(f"dpkg -x {deb.name} failed: {proc.stderr.strip()[:200]}")
            try:
                tree.rename(pkgs / pkg)
            except OSError:  # another build unpacked it meanwhile
                if not (pkgs / pkg).is_dir():
                    raise


def _fetched_deb(pkg: str, debs: Path) -> Path:
    """The cached ``.deb`` of ``pkg`` in ``debs``, downloaded with ``apt-get download`` (into a
    directory of its own, then renamed into ``debs``) when there is none."""
    found = sorted(debs.glob(f"{pkg}_*.deb"))
    if found:
        return found[-1]
    if shutil.which("apt-get") is None:
        raise SourceError("apt-get not found: rttag data build needs a Debian/Ubuntu system")
    with tempfile.TemporaryDirectory(prefix=f"{pkg}.", suffix=".partial", dir=debs) as tmp:
        proc = subprocess.run(["apt-get", "download", pkg], cwd=tmp, capture_output=True, text=True)
        got = sorted(Path(tmp).glob(f"{pkg}_*.deb"))
        if proc.returncode != 0 or not got:
            msg = (proc.stderr.strip().splitlines() or ["no .deb appeared"])[-1]
            raise SourceError(f"apt-get download {pkg} failed: {msg} (try 'apt-get update')")
        return got[-1].replace(debs / got[-1].name)  # atomic; a copy another build put there is the same file


def _rcc_member(rcc: bytes, member: str) -> bytes:
    """The bytes of ``member`` (a/b/c.ogg) inside a Qt ``.rcc`` resource file."""
    if rcc[:4] != b"qres":
        raise SourceError("not a Qt resource file")
    version, tree, data, names = struct.unpack(">IIII", rcc[4:20])
    node_size = 14 if version == 1 else 22

    def name_at(off: int) -> str:
        (n,) = struct.unpack(">H", rcc[names + off:names + off + 2])
        return rcc[names + off + 6:names + off + 6 + 2 * n].decode("utf-16-be")

    node = 0
    for part in member.split("/"):
        base = tree + node * node_size
        _, flags, count, first = struct.unpack(">IHII", rcc[base:base + 14])
        if not flags & 0x02:
            raise SourceError(f"{member}: not found in resource file")
        for child in range(first, first + count):
            cbase = tree + child * node_size
            (name_off,) = struct.unpack(">I", rcc[cbase:cbase + 4])
            if name_at(name_off) == part:
                node = child
                break
        else:
            raise SourceError(f"{member}: not found in resource file")
    base = tree + node * node_size
    _, flags, _, _, offset = struct.unpack(">IHHHI", rcc[base:base + 14])
    (size,) = struct.unpack(">I", rcc[data + offset:data + offset + 4])
    blob = rcc[data + offset + 4:data + offset + 4 + size]
    if flags & 0x01:
        return zlib.decompress(blob[4:])
    if flags & 0x04:
        raise SourceError(f"{member}: zstd-compressed resource not supported")
    return blob


ZIP_SUFFIXES = (".zip", ".pk3", ".wz")  # containers read as zip archives


def read_bytes(src: Source, cache: Path) -> bytes:
    """The encoded audio of ``src`` from the unpacked package."""
    root = cache / "pkgs" / src.package
    container, _, member = src.path.partition("!")
    path = root / container
    if not path.is_file():
        raise SourceError(f"{src.package}: {container} not in the package")
    if not member:
        return path.read_bytes()
    if container.endswith(ZIP_SUFFIXES):
        with zipfile.ZipFile(path) as z:
            return z.read(member)
    if container.endswith(".rcc"):
        return _rcc_member(path.read_bytes(), member)
    raise SourceError(f"{src.path}: unknown container type")


def decode(data: bytes) -> np.ndarray:
    """Encoded audio → float32 mono at 16 kHz, leading/trailing silence trimmed. ``[n]``."""
    import librosa
    import soundfile as sf

    y, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    if sr != SAMPLE_RATE:
        y = librosa.resample(y, orig_sr=sr, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    if len(y) and np.abs(y).max() > 0:
        y, _ = librosa.effects.trim(y, top_db=TRIM_TOP_DB, frame_length=512, hop_length=128)
    return np.ascontiguousarray(y, dtype=np.float32)


def load_decoded(args: tuple[Source, Path]) -> tuple[str, np.ndarray | None, str]:
    """Decoded audio of a source, from the cache or decoded now (and cached).

    Returns ``(key, audio or None, problem)``; a file that cannot be decoded or is shorter
    than 50 ms after trimming is skipped with the reason, not fatal.
    """
    src, cache = args
    out = cache / "decoded" / f"{src.key}.npy"
    if out.is_file():
        return src.key, np.load(out), ""
    try:
        y = decode(read_bytes(src, cache))
    except (SourceError, RuntimeError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        return src.key, None, f"{src.package}:{src.path}: {exc}"
    if len(y) < MIN_SECONDS * SAMPLE_RATE:
        return src.key, None, f"{src.package}:{src.path}: silent or too short"
    out.parent.mkdir(parents=True, exist_ok=True)
    # a name of its own, renamed into place: builds that decode the same file at the same time
    # never truncate each other's copy, and a reader finds the whole array or none
    fd, tmp = tempfile.mkstemp(prefix=f"{src.key}.", suffix=".partial", dir=out.parent)
    with os.fdopen(fd, "wb") as f:
        np.save(f, y)
    os.replace(tmp, out)
    return src.key, y, ""


@functools.lru_cache(maxsize=64)
def _dep5_stanzas(doc: Path) -> tuple[dict, ...]:
    """The stanzas with a ``Files`` field of a DEP-5 copyright file, each ``{field: [lines]}``
    (none when the file is missing or not DEP-5); read once per file."""
    if not doc.is_file():
        return ()
    stanzas = []
    for stanza in doc.read_text(errors="replace").split("\n\n"):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key].append(line.strip())
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = [value.strip()]
        if "Files" in fields:
            stanzas.append(fields)
    return tuple(stanzas)


def copyright_stanza(package: str, cache: Path, path: str | None = None) -> dict[str, list[str]]:
    """The stanza of the package's DEP-5 ``/usr/share/doc/PKG/copyright`` that covers a file,
    ``{field: [lines]}``; ``{}`` when none does or the file is not DEP-5 (free-form files name
    holders of code and data alike, so nothing is picked from them).

    With ``path`` (the file's path in the package as in the source lists, ``usr/share/...``; a
    ``!member`` suffix is ignored): of the stanzas whose ``Files:`` patterns match it (the
    patterns name the source tree, so a pattern matches when a trailing part of the installed
    path does, ``*`` crossing ``/``; a pattern of three or more parts also matches without its
    top directory, which packages often rename), the one whose matching pattern names the most
    directories, and of equals the last, as DEP-5 reads them. The depth comes first because
    source and installed trees differ and a short pattern can match by accident (hedgewars'
    engine ``hedgewars/*`` matches ``.../games/hedgewars/Data/Sounds/x.ogg``). Without
    ``path``: the general ``Files: *`` stanza."""
    stanzas = _dep5_stanzas(cache / "pkgs" / package / "usr" / "share" / "doc" / package / "copyright")
    parts = path.split("!")[0].split("/") if path else None

    def depth(fields: dict) -> int:
        """-1: no pattern matches; else the most ``/`` in a matching pattern."""
        patterns = " ".join(fields["Files"]).split()
        if parts is None:
            return 0 if patterns == ["*"] else -1
        # a top directory renamed at install (mtg/mods/... → .../minetest_game/mods/...)
        patterns += [pat.split("/", 1)[1] for pat in patterns if pat.count("/") >= 2]
        return max((pat.count("/") for pat in patterns for i in range(len(parts))
                    if fnmatch.fnmatchcase("/".join(parts[i:]), pat)), default=-1)

    ranked = [(d, i) for i, d in enumerate(map(depth, stanzas)) if d >= 0]
    return stanzas[max(ranked)[1]] if ranked else {}


def stanza_holders(stanza: dict[str, list[str]], limit: int = 3) -> list[str]:
    """The copyright holders of a :func:`copyright_stanza`, at most ``limit`` (empty for ``{}``)."""
    return [h for h in stanza.get("Copyright", []) if h and h != "."][:limit]


def _licence_key(name: str) -> str:
    """A licence name compared loosely: ``GPL-2.0+`` and ``GPL-2`` give the same key."""
    return name.lower().replace(".0", "").replace("+", "")


def credited_licence(listed: str, stanza: dict[str, list[str]]) -> str:
    """The source list's licence, followed in brackets by the stanza's where that names another.
    Only a stanza for specific files is trusted to contradict the list: a renamed data directory
    can hide the one that covers the file behind the general ``*``."""
    stated = stanza.get("License", [""])[0] if stanza.get("Files") != ["*"] else ""
    if stated and _licence_key(stated) not in _licence_key(listed):
        return f"{listed} (its copyright stanza: {stated})"
    return listed


def holders_text(stanza: dict[str, list[str]]) -> str:
    """The holders of a :func:`copyright_stanza` as one attribution line, or where to find them."""
    return "; ".join(stanza_holders(stanza)) or "see the package's copyright file"
