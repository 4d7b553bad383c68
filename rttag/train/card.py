"""Model card from a checkpoint: ``python -m rttag.train.card models/crnn.pt [--drift drift.json]``.

Writes ``models/<name>.md`` next to the checkpoint from what ``rttag train`` stored in its
config (data, command, wall time, validation/test frame metrics, smoother block), the exported
ONNX file's size and state tensors, and optionally a ``python -m rttag.train.drift`` report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import LABELS
from ..smoother import FIELDS as SMOOTHER_FIELDS
from .models import ENSEMBLE

DESCRIPTION = {
    "crnn": "Stateful CRNN (default model): in-graph level normalisation (running 4 s level average as "
            "state) → three causal 3×3 conv blocks over (time, frequency), each caching its last 2 input "
            "frames as state (60 ms look-back) → linear 128 → GRU 128 → per-class sigmoids, with a skip "
            "read-out of the conv features added to the GRU's logits (fast onsets).",
    "context-cnn": "Framewise baseline: in-graph level normalisation → the CRNN's causal conv front (same "
                   "60 ms look-back, conv caches as state) → per-frame MLP (256-256) → per-class sigmoids. "
                   "No recurrence.",
    "frame-mlp": "Framewise baseline: in-graph level normalisation → per-frame MLP (384-384) on one log-mel "
                 "frame → per-class sigmoids. Its only state is the running level average.",
    ENSEMBLE: "Prediction ensemble of stateful CRNNs (default model): the members below run side by side on the "
              "same log-mel frames, each with its own state (in-graph level normalisation, three causal 3×3 conv "
              "blocks with 60 ms look-back, linear 128, GRU 128, per-class logits plus a skip read-out of the conv "
              "features), and the output is the mean of their per-class probabilities.",
}
LICENCE = ("Weights trained by the rttag project; released under the same terms as the rttag code. "
           "The training recordings are the freely licensed Debian-packaged sounds fetched by "
           "`rttag data build`; their packages and licences are listed in docs/DATASET.md.")


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def _commands(train: dict) -> list[str]:
    """The training commands, earliest stage first (a run continued with ``--init`` stores the
    stage it started from in ``train.init``)."""
    stages, t = [], train
    while t:
        stages.append(f"{t.get('command', '?')}    # {t.get('wall_minutes', '?')} min")
        t = t.get("init")
    return stages[::-1]


def _total_minutes(train: dict) -> float:
    """Wall minutes of all stages (the sum over the ``train.init`` chain)."""
    total, t = 0.0, train
    while t:
        total += float(t.get("wall_minutes") or 0.0)
        t = t.get("init")
    return total


def render(config: dict, onnx_meta: dict | None, onnx_bytes: int | None, pt_bytes: int, drift: dict | None,
           name: str) -> str:
    """The card's Markdown."""
    tr, mt, sm = config.get("train", {}), config.get("metrics", {}), config["smoother"]
    lines = [f"# {name} — rttag model card", "", DESCRIPTION.get(config["arch"], config["arch"]), "",
             "| | |", "|---|---|",
             f"| arch / version | `{config['arch']}` / {config.get('version', '1')} |",
             f"| parameters | {config['params']:,}"
             + (" (the large weight tensors stored as float16, computed in float32)" if config.get("weights") == "float16" else "")
             + " |",
             f"| files | `models/{name}.onnx` ({onnx_bytes / 1e6:.2f} MB), `models/{name}.pt` ({pt_bytes / 1e6:.2f} MB) |"
             if onnx_bytes else f"| files | `models/{name}.pt` ({pt_bytes / 1e6:.2f} MB) |",
             "| input | `feats` float32 [B, T, 64] log-mel (16 kHz, n_fft 512, hop 160, 50–8000 Hz) |",
             f"| output | `probs` float32 [B, T, {len(LABELS)}]: {', '.join(LABELS)} |"]
    if onnx_meta:
        st = onnx_meta["state"]
        lines.append("| state | " + (", ".join(f"`{n}` {st['shapes'][n]}" for n in st["names"]) or "none") + " |")
    if config["arch"] == ENSEMBLE:
        lines += _members(config["members"])
        return "\n".join(lines + _stack(config.get("stack")) + _tail(sm, onnx_meta, drift))
    lines += ["", "## Data", "",
              f"Dataset from `rttag data build` (`{tr.get('data', 'data')}`): train {tr.get('train_hours', '?')} h, "
              f"validation {tr.get('validation_hours', '?')} h (packages not used in training for that label), test "
              "1 h (packages shared with neither; docs/DATASET.md). Validation chose the epoch and the thresholds; "
              "test was not looked at during training.", "",
              "## Training", "", "```sh", *_commands(tr), "```", "",
              *(["Each `--init` stage continues from the previous stage's best weights; the data above is the "
                 "last stage's (an earlier stage may have used an earlier build of the dataset: docs/TRAINING.md).", ""]
                if tr.get("init") else []),
              f"Wall time {_total_minutes(tr):.1f} min in all on {tr.get('device', '?')} "
              f"({tr.get('threads', '?')} thread(s); last stage {tr.get('wall_minutes', '?')} min), "
              f"{tr.get('epochs', '?')} epochs, best epoch {config.get('best_epoch', '?')}; "
              f"{tr.get('batch', '?')} chained streams × {tr.get('chunk', '?')}-frame chunks with the state carried, "
              f"lr {tr.get('lr', '?')}, onset weight {tr.get('onset_weight', '?')}, augmentation "
              f"{'on' if tr.get('augment', True) else 'off'} (docs/TRAINING.md). Learning curves: "
              f"[`{name}-curves.png`]({name}-curves.png).", "",
              "## Frame-level metrics", "",
              "Thresholds tuned per class on validation and applied unchanged to test (no smoother).", "",
              "| split | mAP | macro-F1 | micro-F1 |", "|---|---|---|---|"]
    for split in ("validation", "test"):
        if split in mt:
            m = mt[split]
            lines.append(f"| {split} | {m['mAP']:.3f} | {m['macro_f1']:.3f} | {m['micro_f1']:.3f} |")
    lines += ["", "| label | val AP | val F1 | test AP | test F1 | on | off | onset lag (s) |", "|---|---|---|---|---|---|---|---|"]
    val, test = mt.get("validation", {}), mt.get("test", {})
    for k, label in enumerate(LABELS):
        lines.append(f"| {label} | {_fmt(val.get('ap', [None] * 10)[k])} | {_fmt(val.get('f1', [None] * 10)[k])} | "
                     f"{_fmt(test.get('ap', [None] * 10)[k])} | {_fmt(test.get('f1', [None] * 10)[k])} | "
                     f"{sm['on_threshold'][k]:.3f} | {sm['off_threshold'][k]:.3f} | {sm['onset_lag_s'][k]:.2f} |")
    lines += ["", f"Initial smoother block from training (validation): the on/off thresholds and onset lags above, "
              f"min_on_s {sm['min_on_s'][0]}, min_off_s {sm['min_off_s'][0]} for every class."]
    return "\n".join(lines + _stack(config.get("stack")) + _tail(sm, onnx_meta, drift))


def _members(members: list[dict]) -> list[str]:
    """The card section of an ensemble's members: file, SHA-256, training commands and frame metrics."""
    lines = ["", "## Members", "",
             f"{len(members)} models trained separately (`rttag train`) and combined with "
             "`python -m rttag.train.ensemble` (docs/TRAINING.md); each runs on the same features with its own "
             "state, and the output is the mean of their probabilities.", ""]
    for i, m in enumerate(members):
        tr, val, test = m.get("train", {}), m.get("metrics", {}).get("validation", {}), m.get("metrics", {}).get("test", {})
        lines += [f"### m{i}: `{m['file']}` (SHA-256 `{m['sha256'][:16]}…`)", "", "```sh", *_commands(tr), "```", "",
                  f"Wall time {_total_minutes(tr):.1f} min in all on {tr.get('device', '?')}, data `{tr.get('data', '?')}`; "
                  f"frame mAP validation {_fmt(val.get('mAP'))}, test {_fmt(test.get('mAP'))} "
                  "(thresholds and epochs chosen on validation).", ""]
    return lines


def _stack(record: dict | None) -> list[str]:
    """The card section of a fitted output stack (:mod:`rttag.train.stack`); none without one."""
    if not record:
        return []
    return ["", "## Output stack", "",
            "A per-frame linear map on the output logits (each class reads every class's logit), fitted after "
            "training on a split from packages the model did not train on:", "", "```sh",
            f"python -m rttag.train.stack {record['checkpoint']} --data {record['data']} "
            f"--split {record['split']} --l2 {record['l2']:g}", "```", "",
            f"{record['frames']:,} frames of {record['files']} files; frame mAP there {record['frame_map_before']:.3f} → "
            f"{record['frame_map_after']:.3f} (in-sample: it was fitted there). The smoother below was tuned on the "
            "stacked probabilities.", ""]


def _tail(sm: dict, onnx_meta: dict | None, drift: dict | None) -> list[str]:
    """The shipped smoother block (where it differs from ``sm``), the drift check and the licence."""
    lines = []
    shipped = onnx_meta["smoother"] if onnx_meta else sm
    if shipped != sm:
        lines += ["The shipped ONNX carries a block re-tuned on validation with the real smoother (`rttag tune`):", "",
                  "| label | " + " | ".join(SMOOTHER_FIELDS) + " |", "|---" * (len(SMOOTHER_FIELDS) + 1) + "|"]
        lines += [f"| {label} | " + " | ".join(f"{shipped.get(k, [0.0] * len(LABELS))[i]:g}" for k in SMOOTHER_FIELDS)
                  + " |" for i, label in enumerate(LABELS)]
    lines += ["", "Event-level figures through the streaming pipeline: docs/EVALUATION.md (`rttag eval`)."]
    if drift:
        c, r = drift["chained"], drift["reset_per_file"]
        lines += ["", "## Long-stream check", "",
                  f"`python -m rttag.train.drift` — {drift['minutes']:.0f} min of chained test recordings, state never "
                  f"reset; the first and the last {drift['window_min']:g}-minute windows hold the same recordings.", "",
                  "| run | FP/min first window | FP/min last window | mean p (negatives) first → last |", "|---|---|---|---|",
                  f"| state carried | {c['first']['fp_per_min']:.2f} | {c['last']['fp_per_min']:.2f} | "
                  f"{c['first']['mean_p_negative']:.4f} → {c['last']['mean_p_negative']:.4f} |",
                  f"| reset per recording | {r['first']['fp_per_min']:.2f} | {r['last']['fp_per_min']:.2f} | "
                  f"{r['first']['mean_p_negative']:.4f} → {r['last']['mean_p_negative']:.4f} |", "",
                  f"Result: **{'pass' if drift['pass'] else 'FAIL'}** (last window not worse than the first), with "
                  + ("the shipped smoother block." if drift.get("smoother") == shipped else "the initial smoother block.")]
    lines += ["", "## Licence", "", LICENCE, ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(prog="python -m rttag.train.card", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="checkpoint written by rttag train (models/NAME.pt)")
    parser.add_argument("--drift", help="JSON report of python -m rttag.train.drift for this model")
    args = parser.parse_args(argv)
    pt = Path(args.checkpoint)
    config = torch.load(pt, map_location="cpu", weights_only=True)["config"]
    name = config.get("name", config["arch"])
    onnx_path = pt.with_suffix(".onnx")
    onnx_meta, onnx_bytes = None, None
    if onnx_path.is_file():
        import onnx

        props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
        onnx_meta, onnx_bytes = json.loads(props["rttag"]), onnx_path.stat().st_size
    drift = json.loads(Path(args.drift).read_text()) if args.drift else None
    out = pt.with_suffix(".md")
    out.write_text(render(config, onnx_meta, onnx_bytes, pt.stat().st_size, drift, name), encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
