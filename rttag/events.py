"""Event types of the public JSON Lines contract (schema version 1) and the stdout sink.

Times are stream seconds computed from sample counts; ``wall`` is the UTC time of sample
``t`` from a clock anchored once at stream start. See ``rttag/schema/events-v1.json``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import IO, Optional

SCHEMA_VERSION = 1


def _wall(anchor: datetime, t: float) -> str:
    return (anchor + timedelta(seconds=t)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class OnEvent:
    """A sound class became active. t: boundary (s); at: decision time (s); p: confidence."""

    stream: str
    label: str
    t: float
    at: float
    p: float

    def fields(self) -> dict:
        return {"type": "on", "stream": self.stream, "label": self.label, "t": round(self.t, 3),
                "at": round(self.at, 3), "p": round(self.p, 3)}


@dataclass(frozen=True)
class OffEvent:
    """A sound class stopped. onset: the matching on's ``t``; duration = t − onset (s)."""

    stream: str
    label: str
    t: float
    at: float
    onset: float
    p: float

    def fields(self) -> dict:
        return {"type": "off", "stream": self.stream, "label": self.label, "t": round(self.t, 3),
                "at": round(self.at, 3), "onset": round(self.onset, 3),
                "duration": round(self.t - self.onset, 3), "p": round(self.p, 3)}


@dataclass(frozen=True)
class StatusEvent:
    """Stream status: started, stopped, overflow, gap, device_lost, reconnected, reset.

    ``extra`` carries the fields that make the status useful (model, provider,
    lost_samples, detail, …); keys must not clash with the common fields.
    """

    stream: str
    status: str
    t: float
    extra: dict = field(default_factory=dict)

    def fields(self) -> dict:
        return {"type": "status", "stream": self.stream, "status": self.status,
                "t": round(self.t, 3), **self.extra}


Event = OnEvent | OffEvent | StatusEvent


class SinkClosed(Exception):
    """The reader closed stdout; nothing more can be delivered."""


class JsonlSink:
    """Writes one JSON object per line, flushed per line, with ``v`` and ``wall`` added.

    Each stream's clock is anchored once, when its ``started`` status passes: that UTC time
    is taken as the time of sample 0, and ``wall = anchor + t``.
    """

    def __init__(self, out: Optional[IO[str]] = None, with_wall: bool = True):
        self.out = out if out is not None else sys.stdout
        self.with_wall = with_wall
        self._anchors: dict[str, datetime] = {}

    @staticmethod
    def encode(event: Event, wall_anchor: Optional[datetime] = None) -> str:
        """One JSON line (no newline) for ``event``; ``wall`` only when an anchor is given."""
        obj = {"v": SCHEMA_VERSION, **event.fields()}
        if wall_anchor is not None:
            obj["wall"] = _wall(wall_anchor, event.t)
        return json.dumps(obj, separators=(",", ":"))

    def write(self, event: Event) -> None:
        if isinstance(event, StatusEvent) and event.status == "started":
            self._anchors[event.stream] = datetime.now(timezone.utc) - timedelta(seconds=event.t)
        anchor = self._anchors.setdefault(event.stream, datetime.now(timezone.utc))
        line = self.encode(event, anchor if self.with_wall else None)
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except BrokenPipeError as exc:
            # Point stdout at /dev/null so the interpreter's final flush stays quiet.
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.out.fileno())
            except (OSError, ValueError):
                pass
            raise SinkClosed() from exc
