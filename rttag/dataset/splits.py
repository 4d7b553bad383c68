"""Which source package feeds which split.

``sources.tsv`` marks rows train or test; test packages never appear in train. Validation
is carved from the train side by holding out, per label, whole packages (below), so that
model and threshold choices are made on recordings from sources the model never trained on —
validation on files of the training packages overstates quality several times.
"""

from __future__ import annotations

from collections import defaultdict

from .sources import Source

SPLITS = ("train", "validation", "test")

VALIDATION_PACKAGES = {
    "speech": {"redeclipse-data"},
    "music": {"widelands-data"},
    "dog": {"qabcs-data"},
    "bird": {"widelands-data"},
    "footsteps": {"redeclipse-data"},
    "door": {"redeclipse-data", "wordwarvi-sound"},
    "engine": {"searchandrescue-data", "btanks-data"},
    "alarm": {"btanks-data", "micropolis-data", "dustracing2d-data"},
    "water": {"searchandrescue-data"},
    "explosion": {"wordwarvi-sound", "micropolis-data"},
    "background": {"redeclipse-data"},
}
"""Train-side packages held out for validation, per label (``background`` = unlabelled ambience)."""


def split_of(src: Source) -> str:
    if src.split == "test":
        return "test"
    return "validation" if src.package in VALIDATION_PACKAGES.get(src.label, ()) else "train"


def assign(sources: list[Source]) -> dict[str, dict[str, list[Source]]]:
    """``{split: {label: [sources]}}``, each list sorted by (package, path) for determinism."""
    out: dict[str, dict[str, list[Source]]] = {s: defaultdict(list) for s in SPLITS}
    for src in sources:
        out[split_of(src)][src.label].append(src)
    return {s: {label: sorted(v, key=lambda x: (x.package, x.path)) for label, v in d.items()}
            for s, d in out.items()}
