"""``rttag train --arch crnn|frame-mlp|context-cnn --data DIR``: train, validate, keep the best.

Long-stream training (the state must stay healthy for hours): each epoch the training clips
are shuffled and chained into ``--batch`` long streams (≈ train hours / batch each); the
model runs over them in chunks of ``--chunk`` frames and its state is carried from chunk to
chunk (truncated back-propagation through time) and across epochs (half the streams are reset
at each epoch start, so the zero start state is trained too). The model thus sees its state
after tens of minutes of input, not only after 10–30 s clips.

Loss: binary cross-entropy with a per-class positive weight (√(negatives/positives), 1…10,
so rare short classes do not vanish) and extra weight on the first 200 ms of every event
(``--onset-weight``: onsets come earlier), optionally extra weight on the inactive 300 ms
after every event (``--offset-weight``, 0 by default: the probability should fall when the
sound ends, not outlast it), and optionally extra weight on a class's inactive frames while another
class is active (``--confusion-weight``, 0 by default: a class should stay low during other
classes' sounds), and optionally a steadiness term (``--steady-weight``, 0 by default): the mean
absolute frame-to-frame change of each class's probability where its label does not change, so
the output holds still inside events and inside silences and moves only at their edges
(``--steady-grace S``: the S seconds after each edge are free of it too, for the model's rise).
With ``--target-delay S`` the model is trained to say at frame n which classes were active at
frame n − S (S seconds earlier): it hears S seconds of an event before it must name it. The
runtime needs nothing for it: ``rttag tune`` measures each class's onset and offset lag (the
delay included) and the smoother back-dates ``t`` by them, while ``at`` stays the decision time,
so the delay is paid in decision latency, which the tuner holds to its budget. Raw thresholding
(``--no-smoother``) does not back-date. Validation, the end-of-training smoother block and the
test metrics pair each probability with the label S earlier in the same file (the block's onset
lags then have S added, and its offset lags are S).
Augmentation (rttag.train.augment): gain, EQ, low-pass, reverberation, background noise, mixing,
SpecAugment masks, and with ``--freq-mixstyle P`` Freq-MixStyle on a share P of the streams.

Validation each epoch on the validation split (other packages than training), chained as
8 streams; the score is the mean of frame mAP and macro frame-F1 (thresholds tuned per class).
The best epoch's weights are kept (``--keep last``: the last epoch's, whatever their
score, for choosing between runs later by event F1); training stops after ``--patience``
epochs without improvement or when the ``--minutes`` budget is spent (the learning rate follows a cosine over
that budget). With ``--ema DECAY`` the weights that are validated and kept are an exponential
moving average of the trained ones (updated after every step; buffers too), which smooths out
the last steps' noise. At the end the smoother values are tuned on validation, test-split
metrics are measured with them, and all of it goes into the checkpoint
(``torch.load(weights_only=True)`` readable: state_dict + a JSON-able config) and a
learning-curve PNG.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import LABELS
from ..cli import db_range
from ..errors import RttagError
from ..frontend import FrontendParams
from . import augment, ensemble, metrics
from .export import load_checkpoint
from .features import SplitData, load_split
from .models import ARCHS, ENSEMBLE, build, full_hparams, n_params, zero_state

log = logging.getLogger(__name__)

DEFAULT_MINUTES = {"crnn": 28.0, "context-cnn": 12.0, "frame-mlp": 10.0}
MODELS_DIR = Path(__file__).resolve().parent.parent.parent / "models"
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": str(64 << 30),
              "MALLOC_TOP_PAD_": str(1 << 30)}
"""glibc allocator settings for training: keep freed memory for the next step instead of
unmapping it and page-faulting it back (the batch activations are tens of MB each). On the
2-core machine a crnn step took 1.74–1.85 s with them and 2.56–3.00 s without (5× fewer
page faults)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Train an rttag model on a dataset built by 'rttag data build'."
    parser.add_argument("--arch", required=True, choices=sorted(ARCHS))
    parser.add_argument("--data", default="data", help="dataset directory (DCASE layout; default: data)")
    parser.add_argument("-o", "--output", help="checkpoint to write (default: models/<arch>.pt)")
    parser.add_argument("--hparams", default="{}", help="JSON model keyword arguments, e.g. '{\"hidden\": 96}'")
    parser.add_argument("--minutes", type=float, help="wall-clock budget in minutes "
                        f"(default: {', '.join(f'{k} {v:g}' for k, v in DEFAULT_MINUTES.items())})")
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=6, help="epochs without validation improvement before stopping")
    parser.add_argument("--batch", type=int, default=32, help="parallel training streams")
    parser.add_argument("--chunk", type=int, default=500, help="frames per step (truncated BPTT length)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--ema", type=float, default=0.0, help="validate and keep an exponential moving "
                        "average of the weights with this decay per step (e.g. 0.998; 0 = off)")
    parser.add_argument("--onset-weight", type=float, default=2.0, help="extra loss weight on onset frames")
    parser.add_argument("--offset-weight", type=float, default=0.0,
                        help="extra loss weight on the inactive frames of the 300 ms after every event")
    parser.add_argument("--confusion-weight", type=float, default=0.0,
                        help="extra loss weight on a class's inactive frames while another class is active")
    parser.add_argument("--focal-gamma", type=float, default=0.0, metavar="G",
                        help="scale each frame's loss by (1 - p_t)^G (focal loss: hard frames weigh more); 0 = off")
    parser.add_argument("--steady-weight", type=float, default=0.0,
                        help="weight of the steadiness term: mean absolute frame-to-frame change of a class's "
                        "probability where its label stays the same (0 = off)")
    parser.add_argument("--steady-grace", type=float, default=0.0, metavar="SECONDS",
                        help="frames within this many seconds after a change of a class's label are free of the "
                        "steadiness term (the model's rise and fall; 0 = only the change itself, the default)")
    parser.add_argument("--target-delay", type=float, default=0.0, metavar="SECONDS",
                        help="train the output at frame n on the labels of frame n - SECONDS (it hears that much "
                        "of an event before naming it; rttag tune's onset and offset lags take the delay up); "
                        "0 = the labels of frame n (default)")
    parser.add_argument("--keep", choices=("best", "last"), default="best",
                        help="checkpoint to write: the epoch with the best validation score (default), or the "
                        "last epoch's weights whatever their score (for choosing later by event F1 with 'rttag tune')")
    parser.add_argument("--freq-mixstyle", type=float, default=0.0, metavar="P",
                        help="share of training streams given Freq-MixStyle (per-mel-bin statistics blended with "
                        "another stream's; rttag.train.augment.freq_mixstyle); 0 = off (default)")
    parser.add_argument("--reverb-p", type=float, default=0.3, metavar="P",
                        help="share of training streams given reverberation (default 0.3)")
    parser.add_argument("--reverb-db", default=",".join(f"{v:g}" for v in augment.REVERB_DB), metavar="LOW,HIGH",
                        help="range of the reverberant tail's energy relative to the direct sound, dB "
                        "(default -12,-3; 0 is a microphone a metre or two from the source; write --reverb-db=-9,3, "
                        "since the value starts with a minus)")
    parser.add_argument("--mix-p", type=float, default=0.3, metavar="P",
                        help="share of training streams with another stream's chunk mixed in, labels united "
                        "(default 0.3)")
    parser.add_argument("--mix-db", default=",".join(f"{v:g}" for v in augment.MIX_DB), metavar="LOW,HIGH",
                        help="range of the mixed-in stream's power relative to its own, dB (default -6,0; write "
                        "--mix-db=-6,6, since the value starts with a minus)")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", help="model name in the metadata (default: the arch)")
    parser.add_argument("--version", default="1")
    parser.add_argument("--init", help="checkpoint of the same arch to continue from (its weights, hparams, history "
                        "and wall time carry over; the result is kept only where validation improves on it); "
                        "ENS.pt@I continues from member I (0-based) of an ensemble")


def train_streams(data: SplitData, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Frame indices ``[batch, L]``: the clips shuffled and chained into ``batch`` streams of
    (nearly) equal length, trimmed to the shortest."""
    streams, lengths = [[] for _ in range(batch)], np.zeros(batch, int)
    for c in rng.permutation(len(data.clips)):
        _, a, b = data.clips[c]
        s = int(lengths.argmin())
        streams[s].append(np.arange(a, b))
        lengths[s] += b - a
    n = int(lengths.min())
    return np.stack([np.concatenate(s)[:n] for s in streams])


def label_frames(idx: np.ndarray, start: int, chunk: int, delay: int) -> tuple[torch.Tensor, int]:
    """The frames whose labels train the outputs of the chunk ``idx[:, start:start + chunk]``
    (``idx`` ``[B, L]`` frame indices, :func:`train_streams`) with ``delay`` frames of target
    delay: ``(frames [B, chunk - lead], lead)``, where the chunk's first ``lead`` outputs have no
    label (an epoch's streams are new at ``start`` 0, so nothing precedes them) and are left out
    of the loss."""
    lead = max(delay - start, 0)
    return torch.from_numpy(idx[:, start - delay + lead:start - delay + chunk]), lead


def file_offsets(data: SplitData) -> np.ndarray:
    """Frame offsets of the files ``[n_files + 1]``."""
    return np.array([a for _, a, _ in data.clips] + [len(data.feats)])


@torch.no_grad()
def predict(model: torch.nn.Module, data: SplitData, device: torch.device, n_streams: int = 8,
            chunk: int = 4000) -> np.ndarray:
    """Probabilities ``[N, C]`` for every frame of ``data``: the files in order, cut into
    ``n_streams`` contiguous streams that each start from the zero state."""
    model.eval()
    bounds = np.linspace(0, len(data.clips), n_streams + 1).astype(int)
    offs = file_offsets(data)
    spans = [(offs[a], offs[b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    length = max(b - a for a, b in spans)
    x = torch.zeros(len(spans), length, data.feats.shape[1])
    for i, (a, b) in enumerate(spans):
        x[i, : b - a] = torch.from_numpy(data.feats[a:b])
    state = zero_state(model, len(spans), device)
    out = []
    for s in range(0, length, chunk):
        logits, *state = model(x[:, s:s + chunk].to(device), *state)
        out.append(torch.sigmoid(logits).cpu())
    probs = torch.cat(out, 1).numpy()
    return np.concatenate([probs[i, : b - a] for i, (a, b) in enumerate(spans)])


def delayed(probs: np.ndarray, labels: np.ndarray, offsets: np.ndarray, delay: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs each frame's probability with the label ``delay`` frames earlier in the same file:
    ``probs`` ``[N, C]``, ``labels`` ``[N, C]``, file ``offsets`` ``[n_files + 1]`` → the same
    three without each file's first ``delay`` probabilities and last ``delay`` labels (a model
    trained with ``--target-delay``). ``delay`` 0 returns them unchanged."""
    if delay == 0:
        return probs, labels, offsets
    lengths = np.maximum(np.diff(offsets) - delay, 0)
    p = np.concatenate([probs[a + delay:a + delay + n] for a, n in zip(offsets[:-1], lengths)])
    y = np.concatenate([labels[a:a + n] for a, n in zip(offsets[:-1], lengths)])
    return p, y, np.concatenate([[0], np.cumsum(lengths)])


def scored_predictions(model: torch.nn.Module, data: SplitData, device: torch.device, delay: int = 0
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`predict` over ``data``, paired with the labels it is scored against: ``(probs [M, C],
    labels [M, C], file offsets [n_files + 1])`` as :func:`delayed` gives them for ``delay`` frames."""
    return delayed(predict(model, data, device), data.labels, file_offsets(data), delay)


def frame_score(probs: np.ndarray, labels: np.ndarray) -> tuple[dict, float]:
    """Frame metrics of ``probs [M, C]`` against ``labels [M, C]`` at per-class best thresholds,
    and the early-stopping score: the mean of their frame mAP and macro frame-F1."""
    m = metrics.frame_metrics(probs, labels, metrics.best_thresholds(probs, labels))
    return m, 0.5 * (m["mAP"] + m["macro_f1"])


def validation_score(model: torch.nn.Module, val: SplitData, device: torch.device, delay: int = 0) -> float:
    """:func:`frame_score` of ``model`` on the validation split; ``delay``: frames, as :func:`delayed`."""
    probs, labels, _ = scored_predictions(model, val, device, delay)
    return frame_score(probs, labels)[1]


def loss_weight(y: torch.Tensor, onsets: torch.Tensor, tails: torch.Tensor, onset_w: float, offset_w: float,
                confusion_w: float) -> torch.Tensor:
    """Per-element weight of the binary cross-entropy ``[B, T, C]`` (all inputs 0/1 ``[B, T, C]``).

    1, plus ``onset_w`` on the first 200 ms of an event, plus ``offset_w`` on a class's inactive
    frames in the 300 ms after its events, plus ``confusion_w`` on a class's inactive frames
    while any other class is active (``y`` are the labels after augmentation, mixed-in ones
    included).
    """
    weight = 1 + onset_w * onsets
    if offset_w:
        weight = weight + offset_w * tails * (1 - y)
    if confusion_w:
        weight = weight + confusion_w * (1 - y) * (y.amax(-1, keepdim=True) > 0).float()
    return weight


def steadiness(logits: torch.Tensor, y: torch.Tensor, grace: int = 0) -> torch.Tensor:
    """Mean absolute change of the probabilities from frame to frame, over the frames where the
    label stays the same (scalar; ``logits`` and labels ``y`` ``[B, T, C]``, ``y`` after
    augmentation). A flicker inside an event or inside a silence costs; the step at an onset and
    at an offset does not. A causal model hears an onset only over the frames after it, so
    without ``grace`` every step of its rise after the label's first frame costs, and the term
    asks for a lower plateau on events it cannot jump at; with ``grace`` = G frames, the G frame
    pairs after each change of a class's label are free too (rise and fall within G frames)."""
    p = torch.sigmoid(logits)
    changed = (y[:, 1:] != y[:, :-1]).float()  # [B, T-1, C]
    if grace > 0:  # a change within the last `grace` pairs (causal running maximum)
        b, t, c = changed.shape
        flat = F.pad(changed.transpose(1, 2).reshape(b * c, 1, t), (grace, 0))  # [B·C, 1, grace + T-1]
        changed = F.max_pool1d(flat, grace + 1, stride=1).reshape(b, c, t).transpose(1, 2)
    same = 1.0 - changed
    return ((p[:, 1:] - p[:, :-1]).abs() * same).sum() / same.sum().clamp(min=1.0)


def load_init(spec: str) -> tuple[torch.nn.Module, dict]:
    """The single model and config that ``--init`` names: a checkpoint written by ``rttag train``,
    or ``ENS.pt@I`` for member I of an ensemble (its config rebuilt from the ensemble's and the
    member's record: the training record carries over, the per-epoch history does not, so epochs
    count from 1 again)."""
    path, picks = ensemble.split_spec(spec)
    model, init = load_checkpoint(path)
    if init.get("stack"):
        raise RttagError(f"--init {spec}: {path} has a fitted output stack; continue from the checkpoint it was "
                         "fitted on (its config names it under 'stack')")
    if picks is not None:
        if len(picks) != 1:
            raise RttagError(f"--init {spec}: name one member, e.g. {path}@0")
        [(model, shared, record)] = ensemble.members_of(path, model, init, picks)
        return model, dict(shared, name=record.get("name"), best_epoch=0, history=[], train=record.get("train") or {})
    if init["arch"] == ENSEMBLE:
        raise RttagError(f"--init {spec} is an ensemble of {init['hparams']['members']} models; "
                         f"continue from one member: {spec}@0 … {spec}@{init['hparams']['members'] - 1}")
    return model, init


def frame_loss(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, pos_weight: torch.Tensor,
               focal_gamma: float = 0.0) -> torch.Tensor:
    """Mean weighted binary cross-entropy over ``[B, T, C]`` (``weight`` from :func:`loss_weight`,
    ``pos_weight [C]`` from :func:`pos_weights`). With ``focal_gamma`` > 0 each element is also
    scaled by ``(1 - p_t) ** focal_gamma`` (focal loss, Lin et al. 2017; ``p_t`` the probability
    given to the element's label), so frames the model already gets right weigh less and the
    hard ones — quiet, masked or unfamiliar events — more; 0 is the plain loss."""
    if not focal_gamma:
        return F.binary_cross_entropy_with_logits(logits, y, weight=weight, pos_weight=pos_weight)
    loss = F.binary_cross_entropy_with_logits(logits, y, weight=weight, pos_weight=pos_weight, reduction="none")
    p = torch.sigmoid(logits)
    p_t = y * p + (1 - y) * (1 - p)
    return (loss * (1 - p_t).pow(focal_gamma)).mean()


def pos_weights(labels: np.ndarray) -> torch.Tensor:
    """Per-class √(negatives / positives), clipped to [1, 10] ``[C]``."""
    pos = labels.sum(0).astype(np.float64)
    return torch.tensor(np.clip(np.sqrt((len(labels) - pos) / np.maximum(pos, 1)), 1.0, 10.0), dtype=torch.float32)


def plot_curves(history: list[dict], path: Path, title: str) -> None:
    """Learning curves (loss; validation mAP and macro frame-F1) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot(ep, [h["train_loss"] for h in history], label="train loss (augmented)")
    a.plot(ep, [h["val_loss"] for h in history], label="validation loss")
    a.set_xlabel("epoch")
    a.legend()
    b.plot(ep, [h["val_mAP"] for h in history], label="validation frame mAP")
    b.plot(ep, [h["val_macro_f1"] for h in history], label="validation macro frame-F1")
    b.set_xlabel("epoch")
    b.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def val_loss(probs: np.ndarray, labels: np.ndarray, pw: torch.Tensor) -> float:
    """Mean positive-weighted BCE of probabilities ``[N, C]`` against labels (no onset weight)."""
    p = torch.from_numpy(probs).clamp(1e-6, 1 - 1e-6)
    y = torch.from_numpy(labels).float()
    return float(-(pw * y * p.log() + (1 - y) * (1 - p).log()).mean())


def train_record(args: argparse.Namespace, init: dict, prior_minutes: float, wall_s: float, history: list,
                 step: int, train: SplitData, val: SplitData, device: torch.device) -> dict:
    """The ``train`` block of a checkpoint's config: command, wall time (this stage and all
    stages), epochs, steps, the stage it continued from (``init``), data and settings."""
    argv = sys.argv[2:] if sys.argv[1:2] == ["train"] else sys.argv
    prior = init.get("train") or {}
    return {"command": ("rttag train " if sys.argv[1:2] == ["train"] else "") + " ".join(shlex.quote(a) for a in argv),
            "wall_minutes": round(wall_s / 60, 2), "total_wall_minutes": round(prior_minutes + wall_s / 60, 2),
            "epochs": len(history), "steps": step,
            "init": {k: prior.get(k) for k in ("command", "wall_minutes", "epochs", "init", "data")} if init else None,
            "data": str(args.data), "train_hours": round(train.hours, 3), "validation_hours": round(val.hours, 3),
            "device": str(device), "threads": args.threads, "batch": args.batch, "chunk": args.chunk,
            "lr": args.lr, "ema": args.ema, "onset_weight": args.onset_weight,
            "offset_weight": args.offset_weight, "confusion_weight": args.confusion_weight,
            "steady_weight": args.steady_weight, "steady_grace_s": args.steady_grace, "focal_gamma": args.focal_gamma,
            "target_delay_s": args.target_delay, "keep": args.keep,
            "augment": not args.no_augment,
            "freq_mixstyle": args.freq_mixstyle,
            "reverb_p": args.reverb_p, "reverb_db": list(args.reverb_db),
            "mix_p": args.mix_p, "mix_db": list(args.mix_db),
            "malloc_env": all(k in os.environ for k in MALLOC_ENV)}


def restart_with_malloc_env() -> None:
    """On Linux, replace this ``rttag train`` process once by itself with :data:`MALLOC_ENV`
    added to the environment (glibc reads it only at start-up); values already set are kept.
    A no-op when rttag was not started as ``rttag train`` (e.g. called in-process)."""
    started_as_train = Path(sys.argv[0]).name in ("rttag", "__main__.py") and "train" in sys.argv[1:]
    if sys.platform != "linux" or not started_as_train or all(k in os.environ for k in MALLOC_ENV):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "rttag", *sys.argv[1:]], {**MALLOC_ENV, **os.environ})


def run(args: argparse.Namespace) -> int:
    restart_with_malloc_env()
    t_start = time.time()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise RttagError("--device cuda: torch sees no GPU")
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    try:
        hparams = json.loads(args.hparams)
    except json.JSONDecodeError as exc:
        raise RttagError(f"--hparams is not JSON: {exc}") from None
    if not 0.0 <= args.ema < 1.0:
        raise RttagError(f"--ema {args.ema}: the decay must be in [0, 1)")
    if args.focal_gamma < 0:
        raise RttagError(f"--focal-gamma {args.focal_gamma}: not negative")
    if args.steady_grace < 0:
        raise RttagError(f"--steady-grace {args.steady_grace}: seconds, not negative")
    if args.target_delay < 0:
        raise RttagError(f"--target-delay {args.target_delay}: seconds, not negative")
    for flag, share in (("--reverb-p", args.reverb_p), ("--mix-p", args.mix_p)):
        if not 0.0 <= share <= 1.0:
            raise RttagError(f"{flag} {share}: a share, in [0, 1]")
    args.reverb_db = db_range("--reverb-db", args.reverb_db)  # (low, high) dB from here on, for the loop and the record
    args.mix_db = db_range("--mix-db", args.mix_db)
    minutes = args.minutes or DEFAULT_MINUTES[args.arch]
    output = Path(args.output or MODELS_DIR / f"{args.arch}.pt")
    output.parent.mkdir(parents=True, exist_ok=True)
    labels, params = list(LABELS), FrontendParams()
    grace_frames = round(args.steady_grace * params.sample_rate / params.hop_length)
    delay = round(args.target_delay * params.sample_rate / params.hop_length)
    if delay >= args.chunk:
        raise RttagError(f"--target-delay {args.target_delay}: {delay} frames, not less than --chunk {args.chunk}")

    init = {}
    if args.init:
        model, init = load_init(args.init)
        if init["arch"] != args.arch:
            raise RttagError(f"--init {args.init} is a {init['arch']}, not a {args.arch}")
        model, hparams = model.to(device), init["hparams"]
        before = float((init.get("train") or {}).get("target_delay_s", 0.0))
        if before != args.target_delay:
            log.warning("--init %s was trained with --target-delay %g; this stage trains with %g", args.init, before,
                        args.target_delay)
    else:
        try:
            model = build(args.arch, hparams).to(device)
        except TypeError as exc:
            raise RttagError(f"--hparams does not fit {args.arch}: {exc}") from None
        hparams = full_hparams(args.arch, hparams)
    log.info("%s: %d parameters", args.arch, n_params(model))
    # after the model: a bad --init or --hparams fails before the data is read
    train, val = load_split(args.data, "train", labels, params), load_split(args.data, "validation", labels, params)
    log.info("train %.2f h (%d files), validation %.2f h (%d files); device %s", train.hours, len(train.clips),
             val.hours, len(val.clips), device)

    feats = torch.from_numpy(train.feats)
    targets = torch.from_numpy(train.labels)
    onsets = torch.from_numpy(train.onsets)
    tails = torch.from_numpy(train.tails)
    pw = pos_weights(train.labels).to(device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=1e-4)
    # the model that is validated and saved: the trained one, or the moving average of its weights
    ema = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(args.ema), use_buffers=True) if args.ema else None
    kept = ema.module if ema else model
    budget = minutes * 60 - (time.time() - t_start)
    t0, step = time.time(), 0
    state = zero_state(model, args.batch, device)
    history, best, bad = list(init.get("history", [])), -1.0, 0
    first = len(history) + 1
    prior = init.get("train") or {}
    prior_minutes = prior.get("total_wall_minutes", prior.get("wall_minutes", 0.0))
    config = {"arch": args.arch, "hparams": hparams, "name": args.name or args.arch, "version": args.version,
              "labels": labels, "frontend": params.to_dict()}
    if init:  # the starting point is the one to beat
        best = validation_score(model, val, device, delay)
        torch.save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                    "config": dict(config, best_epoch=init["best_epoch"])}, output)
        log.info("continuing from %s (validation score %.3f, %d epochs)", args.init, best, len(history))
    for epoch in range(first, first + args.max_epochs):
        model.train()
        idx = train_streams(train, args.batch, rng)
        keep = torch.from_numpy(rng.random(args.batch) < 0.5).to(device)
        state = [torch.where(keep.view(-1, *[1] * (s.dim() - 1)), s, torch.zeros_like(s)) for s in state]
        losses = []
        for s in range(0, idx.shape[1] - args.chunk + 1, args.chunk):
            done = (time.time() - t0) / budget
            if done >= 1.0:
                break
            lr = args.lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * done))
            for g in opt.param_groups:
                g["lr"] = lr
            i = torch.from_numpy(idx[:, s:s + args.chunk])
            j, lead = label_frames(idx, s, args.chunk, delay)
            x, y, o = feats[i].to(device), targets[j].float().to(device), onsets[j].float().to(device)
            if not args.no_augment:
                x, y = augment.augment(x, y, args.freq_mixstyle, args.reverb_p, args.reverb_db, args.mix_p, args.mix_db)
            weight = loss_weight(y, o, tails[j].float().to(device), args.onset_weight, args.offset_weight,
                                 args.confusion_weight)
            logits, *state = model(x, *state)
            state = [t.detach() for t in state]
            logits = logits[:, lead:]
            loss = frame_loss(logits, y, weight, pw, args.focal_gamma)
            if args.steady_weight:
                loss = loss + args.steady_weight * steadiness(logits, y, grace_frames)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            if ema:
                ema.update_parameters(model)
            losses.append(loss.item())
            step += 1
        if not losses:
            break
        probs, val_labels, _ = scored_predictions(kept, val, device, delay)
        m, score = frame_score(probs, val_labels)
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val_loss(probs, val_labels, pw.cpu()),
                        "val_mAP": m["mAP"], "val_macro_f1": m["macro_f1"],
                        "minutes": prior_minutes + (time.time() - t_start) / 60})
        log.info("epoch %d: train loss %.4f, val loss %.4f, val mAP %.3f, macro-F1 %.3f, %d steps, %.1f min",
                 epoch, history[-1]["train_loss"], history[-1]["val_loss"], m["mAP"], m["macro_f1"], step,
                 history[-1]["minutes"])
        improved = score > best
        best, bad = (score, 0) if improved else (best, bad + 1)
        if improved or args.keep == "last":
            # Complete enough to be an --init starting point if the run is stopped before it ends.
            torch.save({"state_dict": {k: v.cpu() for k, v in kept.state_dict().items()},
                        "config": dict(config, best_epoch=epoch, history=list(history), train=train_record(
                            args, init, prior_minutes, time.time() - t_start, history, step, train, val, device))},
                       output)
        if bad >= args.patience or time.time() - t0 >= budget:
            break

    if len(history) < first:
        raise RttagError("no training step ran: the time budget is too small or the train split too short")
    ckpt = torch.load(output, map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["state_dict"])
    probs, val_labels, val_offsets = scored_predictions(model, val, device, delay)
    smoother = metrics.smoother_block(probs, val_labels, val_offsets, params.frame_seconds)
    if delay:  # the probabilities speak of frames `delay` back: back-date the events' edges that far too
        shift = delay * params.frame_seconds
        smoother["onset_lag_s"] = [round(x + shift, 3) for x in smoother["onset_lag_s"]]
        smoother["offset_lag_s"] = [round(shift, 3)] * len(labels)
    thr = np.array(smoother["on_threshold"])
    results = {"validation": metrics.frame_metrics(probs, val_labels, thr)}
    try:
        test = load_split(args.data, "test", labels, params)
        test_probs, test_labels, _ = scored_predictions(model, test, device, delay)
        results["test"] = metrics.frame_metrics(test_probs, test_labels, thr)
    except RttagError as exc:
        log.warning("no test metrics: %s", exc)
    wall = time.time() - t_start
    config.update(best_epoch=ckpt["config"]["best_epoch"], smoother=smoother, metrics=results, history=history,
                  params=n_params(model), train=train_record(args, init, prior_minutes, wall, history, step, train, val,
                                                             device))
    torch.save({"state_dict": ckpt["state_dict"], "config": config}, output)
    curves = output.with_name(output.stem + "-curves.png")
    plot_curves(history, curves, f"{config['name']} ({n_params(model)} parameters)")
    log.info("best epoch %d; validation mAP %.3f macro-F1 %.3f%s; wrote %s and %s (%.1f min)",
             config["best_epoch"], results["validation"]["mAP"], results["validation"]["macro_f1"],
             "; test mAP %.3f macro-F1 %.3f" % (results["test"]["mAP"], results["test"]["macro_f1"]) if "test" in results else "",
             output, curves, wall / 60)
    return 0
