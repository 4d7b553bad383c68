"""Prediction ensemble from trained checkpoints:
``python -m rttag.train.ensemble a.pt b.pt ... -o runs/ens.pt``.

Writes one checkpoint of arch ``ensemble`` (:class:`rttag.train.models.Ensemble`): the members
run side by side, each with its own state, and the output is the mean of their probabilities.
``rttag export`` turns it into one stateful ONNX graph like any other checkpoint. The members
must share arch, hyper-parameters, labels and frontend. The config keeps each member's file
name, SHA-256 and training record (for the model card); the smoother block is the first
member's until ``rttag tune`` chooses one for the ensemble.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from pathlib import Path

import torch

from ..errors import RttagError
from .export import load_checkpoint
from .models import ENSEMBLE, build, n_params

log = logging.getLogger(__name__)

SHARED = ("arch", "hparams", "labels", "frontend")
"""Config keys every member must have equal."""


def combine(paths: list[Path], name: str, version: str) -> dict:
    """The ensemble checkpoint ``{"state_dict", "config"}`` of the checkpoints at ``paths``."""
    if len(paths) < 2:
        raise RttagError("an ensemble needs at least 2 member checkpoints")
    loaded = [load_checkpoint(p) for p in paths]
    first = loaded[0][1]
    if first["arch"] == ENSEMBLE:
        raise RttagError(f"{paths[0]} is an ensemble already; list its members instead")
    for path, (_, config) in zip(paths[1:], loaded[1:]):
        for key in SHARED:
            if config.get(key) != first.get(key):
                raise RttagError(f"{path} differs from {paths[0]} in {key!r}; ensemble members must share "
                                 f"{', '.join(SHARED)}")
    hparams = {"arch": first["arch"], "members": len(paths), "hparams": first["hparams"]}
    model = build(ENSEMBLE, hparams)
    for member, (trained, _) in zip(model.members, loaded):
        member.load_state_dict(trained.state_dict())
    members = [{"file": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "name": c.get("name"),
                "train": c.get("train", {}), "metrics": c.get("metrics", {})} for p, (_, c) in zip(paths, loaded)]
    config = {"arch": ENSEMBLE, "hparams": hparams, "name": name, "version": version, "labels": first["labels"],
              "frontend": first["frontend"], "smoother": first.get("smoother", {}), "params": n_params(model),
              "members": members}
    return {"state_dict": model.state_dict(), "config": config}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rttag.train.ensemble", description=__doc__.splitlines()[0])
    parser.add_argument("members", nargs="+", help="member checkpoints written by 'rttag train' (.pt)")
    parser.add_argument("-o", "--output", required=True, help="ensemble checkpoint to write (.pt)")
    parser.add_argument("--name", default="crnn", help="model name in the metadata (default: crnn)")
    parser.add_argument("--version", default="1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        ckpt = combine([Path(p) for p in args.members], args.name, args.version)
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(ckpt, out)
    except RttagError as exc:
        print(f"rttag: error: {exc}", file=sys.stderr)
        return 2
    log.info("wrote %s: %d × %s, %d parameters", out, len(args.members), ckpt["config"]["hparams"]["arch"],
             ckpt["config"]["params"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
