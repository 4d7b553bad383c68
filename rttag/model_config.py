"""Reconciles the user's configuration with what the model's metadata says.

The model is self-describing; the config may only repeat its frontend values (a mismatch is
an error naming the key) and may override the smoother's tuned per-class values.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from .config import Config, ConfigError
from .runtime import ModelInfo, OnnxModel
from .smoother import FIELDS as SMOOTHER_FIELDS, SmootherParams


def load_model(conf: Config, default_path: Path) -> OnnxModel:
    """Open ``conf.model`` (or ``default_path``) and check the config's frontend section against it."""
    model = OnnxModel(conf.model or default_path, providers=conf.providers, threads=conf.threads)
    meta = model.info.frontend.to_dict()
    for f in fields(conf.frontend):
        wanted = getattr(conf.frontend, f.name)
        if wanted is not None and float(wanted) != float(meta[f.name]):
            raise ConfigError(f"config key 'frontend.{f.name}' is {wanted} but model {model.path} was trained "
                              f"with {meta[f.name]}")
    return model


def smoother_params(conf: Config, info: ModelInfo) -> SmootherParams:
    """The model's tuned smoother with the config's overrides applied (raw thresholding when
    ``smoother.enabled`` is false)."""
    labels = info.labels
    values = {}
    for name in SMOOTHER_FIELDS:
        base = list(getattr(info.smoother, name))
        override = getattr(conf.smoother, name)
        if isinstance(override, dict):
            for label, v in override.items():
                if label not in labels:
                    raise ConfigError(f"config key 'smoother.{name}.{label}': the model has no label {label!r} "
                                      f"(labels: {', '.join(labels)})")
                base[labels.index(label)] = float(v)
        elif override is not None:
            base = [float(override)] * len(labels)
        values[name] = tuple(base)
    if conf.smoother.on_threshold is not None and conf.smoother.off_threshold is None:
        # A user who moves the on threshold keeps the model's hysteresis ratio.
        values["off_threshold"] = tuple(min(on, on * off / max(mon, 1e-9)) for on, off, mon in
                                        zip(values["on_threshold"], info.smoother.off_threshold, info.smoother.on_threshold))
    if not conf.smoother.enabled:
        return SmootherParams.raw(values["on_threshold"])
    try:
        return SmootherParams(**values)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
