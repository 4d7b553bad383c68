"""Prediction ensemble from trained checkpoints:
``python -m rttag.train.ensemble a.pt b.pt ... -o runs/ens.pt``.

Writes one checkpoint of arch ``ensemble`` (:class:`rttag.train.models.Ensemble`): the members
run side by side, each with its own state, and the output is the mean of their probabilities.
An ensemble given as input contributes its members, so an ensemble can be extended;
``ens.pt@1,3`` contributes only its members 1 and 3 (0-based), so a new ensemble can take some
members of a shipped one without their separate files.
``rttag export`` turns it into one stateful ONNX graph like any other checkpoint. The members
must share arch, labels, frontend and target delay; their hyper-parameters may differ (a member
with a PCEN input channel beside plain ones; the config then lists each member's). The config
also keeps each member's file name, SHA-256 and training record (for the model card); the
smoother block is the first member's until ``rttag tune`` chooses one for the ensemble. With
``--half`` the large weight tensors are stored as float16
(``rttag.train.export.halve_state_dict``; the config says ``"weights": "float16"`` and
``rttag export`` stores the ONNX initializers the same way, but for the convolutions' weights,
into which the exporter folds BatchNorm): the shipped six members take 2.69 MB of ONNX instead
of 4.58.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from pathlib import Path

import torch

from ..errors import RttagError
from .export import halve_state_dict, load_checkpoint, save_checkpoint
from .models import ENSEMBLE, build, full_hparams, n_params

log = logging.getLogger(__name__)

SHARED = ("arch", "labels", "frontend")
"""Config keys every member must have equal."""


def filled_hparams(config: dict) -> dict:
    """A single model's hparams with its arch's defaults filled in, so a checkpoint that spells a
    default out compares equal to one written before that option existed."""
    return full_hparams(config["arch"], config.get("hparams", {}))


def split_spec(spec: str) -> tuple[Path, list[int] | None]:
    """``"ens.pt@1,3"`` → ``(Path("ens.pt"), [1, 3])``; a spec without ``@``, or naming a file
    that exists as written, picks every member."""
    path, sep, picks = spec.rpartition("@")
    if not sep or Path(spec).exists():
        return Path(spec), None
    try:
        return Path(path), [int(i) for i in picks.split(",")]
    except ValueError:
        raise RttagError(f"{spec}: members after '@' must be 0-based indices separated by commas, e.g. ens.pt@1,3") from None


def members(path: Path, picks: list[int] | None = None) -> list[tuple[torch.nn.Module, dict, dict]]:
    """``(model, config, record)`` for each member model in the checkpoint at ``path``
    (:func:`members_of`); a checkpoint with a fitted output stack is refused."""
    model, config = load_checkpoint(path)
    if config.get("stack"):
        raise RttagError(f"{path} has a fitted output stack (python -m rttag.train.stack); combine the checkpoints "
                         "it was fitted on instead, and fit a stack on the new ensemble")
    return members_of(path, model, config, picks)


def members_of(path: Path, model: torch.nn.Module, config: dict,
               picks: list[int] | None = None) -> list[tuple[torch.nn.Module, dict, dict]]:
    """``(model, config, record)`` for each member of the checkpoint ``model, config`` already
    loaded from ``path`` (no stack): the checkpoint itself for a single model, each member for an
    ensemble (its config rebuilt from the ensemble's, its record the one the ensemble kept), only
    the members ``picks`` (0-based) when given."""
    if config["arch"] != ENSEMBLE:
        if picks is not None:
            raise RttagError(f"{path} is a single {config['arch']} model; '@' picks members of an ensemble only")
        record = {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                  "name": config.get("name"), "train": config.get("train", {}), "metrics": config.get("metrics", {})}
        return [(model, config, record)]
    inner = config["hparams"]
    each = inner.get("member_hparams") or [inner["hparams"]] * inner["members"]
    members = [(member, {"arch": inner["arch"], "hparams": hparams, "labels": config["labels"],
                         "frontend": config["frontend"], "smoother": config.get("smoother", {})}, record)
               for member, hparams, record in zip(model.members, each, config["members"])]
    if picks is None:
        return members
    bad = [i for i in picks if not 0 <= i < len(members)]
    if bad:
        raise RttagError(f"{path} has members 0..{len(members) - 1}; no member {bad[0]}")
    return [members[i] for i in picks]


def combine(specs: list[str | Path], name: str, version: str, half: bool = False) -> dict:
    """The ensemble checkpoint ``{"state_dict", "config"}`` of the checkpoints ``specs`` (paths, or
    ``path@i,j`` for some members of an ensemble, :func:`split_spec`); an ensemble among them
    contributes its members (so ``ens.pt new.pt`` adds a member to ``ens.pt``). ``half``: the
    large weights stored as float16, the config's ``"weights"`` says so."""
    loaded = [(path, *m) for path, picks in map(split_spec, map(str, specs)) for m in members(path, picks)]
    if len(loaded) < 2:
        raise RttagError("an ensemble needs at least 2 member models")
    first_path, _, first, _ = loaded[0]
    for path, _, config, _ in loaded[1:]:
        for key in SHARED:
            if config.get(key) != first.get(key):
                raise RttagError(f"{path} differs from {first_path} in {key!r}; ensemble members must share "
                                 f"{', '.join(SHARED)}")
    delays = {float((record.get("train") or {}).get("target_delay_s", 0.0)) for *_, record in loaded}
    if len(delays) > 1:  # the mean of probabilities that refer to different frames places no event well
        listed = ", ".join(map(str, sorted(delays)))
        raise RttagError(f"the members were trained with different --target-delay values ({listed} s); "
                         "ensemble members must share it")
    each = [filled_hparams(config) for _, _, config, _ in loaded]
    hparams = {"arch": first["arch"], "members": len(loaded), "hparams": first["hparams"]}
    if any(h != each[0] for h in each):
        hparams = {"arch": first["arch"], "members": len(loaded), "member_hparams": each}
    model = build(ENSEMBLE, hparams)
    for member, (_, trained, _, _) in zip(model.members, loaded):
        member.load_state_dict(trained.state_dict())
    config = {"arch": ENSEMBLE, "hparams": hparams, "name": name, "version": version, "labels": first["labels"],
              "frontend": first["frontend"], "smoother": first.get("smoother", {}), "params": n_params(model),
              "members": [record for *_, record in loaded]}
    state = model.state_dict()
    if half:
        config["weights"] = "float16"
        state = halve_state_dict(state)
    return {"state_dict": state, "config": config}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rttag.train.ensemble", description=__doc__.splitlines()[0])
    parser.add_argument("members", nargs="+",
                        help="member checkpoints written by 'rttag train' (.pt); an ensemble adds its members, "
                        "ENS.pt@1,3 only its members 1 and 3 (0-based)")
    parser.add_argument("-o", "--output", required=True, help="ensemble checkpoint to write (.pt)")
    parser.add_argument("--name", default="crnn", help="model name in the metadata (default: crnn)")
    parser.add_argument("--version", default="1")
    parser.add_argument("--half", action="store_true",
                        help="store the large weight tensors as float16 (half the file size; the ONNX export "
                        "does the same)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        ckpt = combine(args.members, args.name, args.version, args.half)
        out = save_checkpoint(ckpt, args.output)
    except RttagError as exc:
        print(f"rttag: error: {exc}", file=sys.stderr)
        return 2
    hparams = ckpt["config"]["hparams"]
    log.info("wrote %s: %d × %s, %d parameters%s (%.2f MB)", out, hparams["members"], hparams["arch"],
             ckpt["config"]["params"], ", large weights float16" if args.half else "", out.stat().st_size / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
