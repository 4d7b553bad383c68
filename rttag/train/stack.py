"""Output stack fitted on a validation split:
``python -m rttag.train.stack CHECKPOINT --data DIR -o OUT.pt [--l2 0.001]``.

A tagger hearing packages it never trained on errs in a pattern: on half B of the validation
packages the shipped crnn's ``speech`` fires on dogs, music and birds, its ``footsteps`` on water,
dogs and explosions (docs/EVALUATION.md). :class:`rttag.train.models.OutputStack` maps each
frame's logits through one linear layer, so each class's output can draw on the other classes'
logits; this module fits that layer on the frames of a split the model did not train on (the
validation split; ``--split test`` is refused): binary cross-entropy weighted per class as in
training (:func:`rttag.train.train.pos_weights`) plus ``l2`` × the squared distance of W from the
identity; W starts at the identity and b at 0; L-BFGS.

The model runs over each file from a zero state, as ``rttag tune`` and ``rttag eval`` run it, on
the cached log-mel features of :func:`rttag.train.features.load_split` and their frame labels.
The checkpoint written is the input with the fitted layer and ``config["stack"]``: the input
checkpoint, data, split, l2, the number of frames and files, and the split's frame mAP before and
after (in-sample: the layer was fit there). ``rttag export`` makes one graph of it. The smoother
block is the input's until ``rttag tune`` chooses one on the stacked probabilities: tune after
stacking. An ensemble is stacked after its members are combined, not before.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import RttagError
from ..frontend import FrontendParams
from .export import load_checkpoint, save_checkpoint
from .features import SplitData, load_split
from .metrics import class_ap
from .models import OutputStack, zero_state
from .train import pos_weights

log = logging.getLogger(__name__)

L2 = 1e-3
"""Default pull of W towards the identity (× the sum of squared differences; the loss is a mean over frames)."""
MAX_ITER = 200
"""L-BFGS iterations."""


def file_logits(model: torch.nn.Module, data: SplitData) -> np.ndarray:
    """The model's logits ``[N, n_classes]`` over every file of ``data``, each from a zero state."""
    out = []
    with torch.no_grad():
        for _, a, b in data.clips:
            logits = model(torch.from_numpy(data.feats[a:b])[None], *zero_state(model, 1))[0]
            out.append(logits[0].numpy())
    return np.concatenate(out).astype(np.float32)


def fit(logits: np.ndarray, labels: np.ndarray, l2: float = L2) -> tuple[np.ndarray, np.ndarray]:
    """W ``[C, C]`` and b ``[C]`` minimising the weighted BCE of ``logits @ W.T + b`` against
    ``labels`` (``[N, C]``, 0/1) plus ``l2`` × ‖W − I‖²; starts at the identity."""
    x, y = torch.from_numpy(logits), torch.from_numpy(labels.astype(np.float32))
    n = x.shape[1]
    eye = torch.eye(n)
    w, b = eye.clone().requires_grad_(True), torch.zeros(n, requires_grad=True)
    pw = pos_weights(labels)
    opt = torch.optim.LBFGS([w, b], max_iter=MAX_ITER, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ w.T + b, y, pos_weight=pw) + l2 * ((w - eye) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()


def stack(checkpoint: Path, data_dir: str, split: str = "validation", l2: float = L2) -> dict:
    """The stacked checkpoint ``{"state_dict", "config"}`` of ``checkpoint`` fitted on ``split`` of ``data_dir``."""
    if split == "test":
        raise RttagError("the stack must not be fitted on the test split; use --split validation")
    if l2 < 0:
        raise RttagError(f"--l2 {l2:g}: must not be negative")
    model, config = load_checkpoint(checkpoint)
    if config.get("stack"):
        raise RttagError(f"{checkpoint} already has a fitted output stack; fit one on the checkpoint it was fitted on")
    labels = list(config["labels"])
    data = load_split(data_dir, split, labels, FrontendParams.from_dict(config["frontend"]))
    logits = file_logits(model, data)
    w, b = fit(logits, data.labels, l2)
    stacked = OutputStack(model, len(labels))
    with torch.no_grad():
        stacked.out.weight.copy_(torch.from_numpy(w))
        stacked.out.bias.copy_(torch.from_numpy(b))
    after = logits @ w.T + b
    record = {"checkpoint": str(checkpoint), "data": str(data_dir), "split": split, "l2": l2, "frames": len(logits),
              "files": len(data.clips), "frame_map_before": float(np.nanmean(class_ap(logits, data.labels))),
              "frame_map_after": float(np.nanmean(class_ap(after, data.labels)))}
    return {"state_dict": stacked.state_dict(), "config": {**config, "stack": record}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rttag.train.stack", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="checkpoint (.pt) from 'rttag train' or 'python -m rttag.train.ensemble'")
    parser.add_argument("--data", required=True, help="dataset directory (DCASE layout, 'rttag data build')")
    parser.add_argument("--split", default="validation", help="split to fit on (default validation; test is refused)")
    parser.add_argument("--l2", type=float, default=L2, help=f"pull of the weights towards the identity (default {L2:g})")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("-o", "--output", required=True, help="stacked checkpoint to write (.pt)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(max(1, args.threads))
    try:
        ckpt = stack(Path(args.checkpoint), args.data, args.split, args.l2)
        out = save_checkpoint(ckpt, args.output)
    except RttagError as exc:
        print(f"rttag: error: {exc}", file=sys.stderr)
        return 2
    rec = ckpt["config"]["stack"]
    log.info("wrote %s: output stack fitted on %d %s frames (%d files); frame mAP there %.3f -> %.3f (in-sample)",
             out, rec["frames"], rec["split"], rec["files"], rec["frame_map_before"], rec["frame_map_after"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
