"""Which source package feeds which split.

``sources.tsv`` marks rows train or test; test packages never appear in train. Validation
is carved from the train side by holding out, per label, whole packages (below), so that
model and threshold choices are made on recordings from sources the model never trained on —
validation on files of the training packages overstates quality several times. rttag's own
``validation_sources.tsv`` adds rows marked ``validation`` from packages that no other list
uses (``check_validation``), so that a label is not tuned on one package's sounds alone.
"""

from __future__ import annotations

from collections import defaultdict

from .sources import Source, SourceError

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
    if src.split in ("test", "validation"):
        return src.split
    return "validation" if src.package in VALIDATION_PACKAGES.get(src.label, ()) else "train"


def assign(sources: list[Source]) -> dict[str, dict[str, list[Source]]]:
    """``{split: {label: [sources]}}``, each list sorted by (package, path) for determinism."""
    out: dict[str, dict[str, list[Source]]] = {s: defaultdict(list) for s in SPLITS}
    for src in sources:
        out[split_of(src)][src.label].append(src)
    return {s: {label: sorted(v, key=lambda x: (x.package, x.path)) for label, v in d.items()}
            for s, d in out.items()}


def _row_problem(s: Source, split: str, labels: set[str]) -> str | None:
    """What makes a row of one of rttag's own lists unusable on its own (wrong split, unknown
    label, no licence), or None."""
    return ("split is not " + split if s.split != split else
            f"unknown label {s.label!r}" if s.label not in labels else
            "no licence" if not s.licence.strip() else None)


def check_extra(extra: list[Source], vetted: list[Source], labels: set[str]) -> None:
    """The extra list may only widen the train split: every row is ``train``, has a licence and
    a known label, and its package feeds neither the test split (any label) nor the validation
    split of its label — so validation and test stay exactly what the vetted list makes them."""
    test_packages = {s.package for s in vetted if s.split == "test"}
    known = {(s.package, s.path) for s in vetted}
    for s in extra:
        why = _row_problem(s, "train", labels) or (
            "package feeds the test split" if s.package in test_packages else
            "package feeds the validation split of this label" if s.package in VALIDATION_PACKAGES.get(s.label, ())
            else "already in the vetted list" if (s.package, s.path) in known else None)
        if why:
            raise SourceError(f"extra source {s.package}:{s.path}: {why}")


def check_validation(rows: list[Source], others: list[Source], labels: set[str]) -> None:
    """The validation list may only widen the validation split: every row is ``validation``, has a
    licence and a known label, and its package appears in no other list (``others``: the vetted and
    extra lists; any label, any split) — so no model has trained on it and train and test stay
    exactly what the other lists make them."""
    used = {s.package for s in others}
    for s in rows:
        why = _row_problem(s, "validation", labels) or (
            "package is used by the other source lists" if s.package in used else None)
        if why:
            raise SourceError(f"validation source {s.package}:{s.path}: {why}")
