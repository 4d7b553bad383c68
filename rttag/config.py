"""Typed configuration: built-in defaults ← config file ← command-line flags.

The defaults here are the ones documented in the repository's ``config.yaml`` (a test keeps
them equal). Unknown keys and wrong types are errors that name the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional, Union

from .errors import RttagError
from .smoother import FIELDS as SMOOTHER_FIELDS

PerClass = Union[None, float, dict]
"""A smoother setting: None (the model's tuned value), one number for every class, or a
``{label: number}`` map (labels not named keep the model's value)."""


class ConfigError(RttagError):
    """The configuration file or a flag is invalid."""


@dataclass(frozen=True)
class SmootherConfig:
    enabled: bool = True
    on_threshold: PerClass = None
    off_threshold: PerClass = None
    min_on_s: PerClass = None
    min_off_s: PerClass = None
    onset_lag_s: PerClass = None
    offset_lag_s: PerClass = None
    offset_excess_db: PerClass = None
    dominance: PerClass = None


@dataclass(frozen=True)
class FrontendConfig:
    """When set, each value must equal the model's metadata (a guard, not a knob)."""

    sample_rate: Optional[int] = None
    n_fft: Optional[int] = None
    win_length: Optional[int] = None
    hop_length: Optional[int] = None
    n_mels: Optional[int] = None
    fmin: Optional[float] = None
    fmax: Optional[float] = None
    log_offset: Optional[float] = None


@dataclass(frozen=True)
class Config:
    model: Optional[str] = None
    providers: str = "auto"
    threads: int = 1
    device: Union[None, int, str] = None
    block_size: int = 1600
    frames_per_call: int = 1
    ring_seconds: float = 30.0
    stream: Optional[str] = None
    state_reset_s: float = 0.0
    smoother: SmootherConfig = field(default_factory=SmootherConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)


_TYPES = {
    "model": (str, type(None)), "providers": (str,), "threads": (int,), "device": (int, str, type(None)),
    "block_size": (int,), "frames_per_call": (int,), "ring_seconds": (int, float), "stream": (str, type(None)),
    "state_reset_s": (int, float),
    "smoother.enabled": (bool,),
    **{f"smoother.{k}": (int, float, dict, type(None))
       for k in SMOOTHER_FIELDS},
    **{f"frontend.{k}": (int, type(None)) for k in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels")},
    **{f"frontend.{k}": (int, float, type(None)) for k in ("fmin", "fmax", "log_offset")},
}
_POSITIVE = {"threads", "block_size", "frames_per_call", "ring_seconds"}


def _check(key: str, value: Any) -> Any:
    types = _TYPES[key]
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        raise ConfigError(f"config key '{key}' must be {names} (got {value!r})")
    if key in _POSITIVE and value <= 0:
        raise ConfigError(f"config key '{key}' must be positive (got {value!r})")
    if key == "state_reset_s" and value < 0:
        raise ConfigError(f"config key '{key}' must be >= 0 (got {value!r})")
    if isinstance(value, dict):
        for label, v in value.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ConfigError(f"config key '{key}.{label}' must be a number (got {v!r})")
    return value


def apply(config: Config, updates: dict, origin: str) -> Config:
    """Return ``config`` with the nested ``updates`` applied; errors name ``origin`` and the key."""
    if not isinstance(updates, dict):
        raise ConfigError(f"{origin}: expected a mapping of config keys, got {type(updates).__name__}")
    top = {}
    for key, value in updates.items():
        section = getattr(config, key, None) if isinstance(key, str) else None
        if key in ("smoother", "frontend"):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: config key '{key}' must be a mapping")
            sub = {}
            for k, v in value.items():
                if f"{key}.{k}" not in _TYPES:
                    raise ConfigError(f"{origin}: unknown config key '{key}.{k}'")
                try:
                    sub[k] = _check(f"{key}.{k}", v)
                except ConfigError as exc:
                    raise ConfigError(f"{origin}: {exc}") from None
            top[key] = replace(section, **sub)
        elif key in _TYPES:
            try:
                top[key] = _check(key, value)
            except ConfigError as exc:
                raise ConfigError(f"{origin}: {exc}") from None
        else:
            raise ConfigError(f"{origin}: unknown config key '{key}'")
    return replace(config, **top)


def default_path() -> Optional[Path]:
    """``$RTTAG_CONFIG``, else ``~/.config/rttag/config.yaml`` if it exists, else None."""
    env = os.environ.get("RTTAG_CONFIG")
    if env:
        return Path(env)
    user = Path.home() / ".config" / "rttag" / "config.yaml"
    return user if user.is_file() else None


def load(path: Optional[str | os.PathLike] = None) -> Config:
    """Defaults updated by the YAML file at ``path`` (or :func:`default_path`)."""
    import yaml

    path = Path(path) if path is not None else default_path()
    if path is None:
        return Config()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return apply(Config(), data or {}, str(path))


def as_dict(config: Config) -> dict:
    """Nested plain dict of every key (the shape of config.yaml)."""
    out = {}
    for f in fields(config):
        v = getattr(config, f.name)
        out[f.name] = {g.name: getattr(v, g.name) for g in fields(v)} if f.name in ("smoother", "frontend") else v
    return out
