"""Which source package feeds which split.

``sources.tsv`` marks rows train or test; test packages never appear in train. Validation
is carved from the train side by holding out, per label, whole packages (below), so that
model and threshold choices are made on recordings from sources the model never trained on —
validation on files of the training packages overstates quality several times. rttag's own
``validation_sources.tsv`` adds rows marked ``validation`` from packages that no other list
uses (``check_validation``), so that a label is not tuned on one package's sounds alone.
``validation_halves`` splits the validation packages in two (``rttag data build
--validation-half A|B``), so that a model can train on one half and be tuned on the other.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .mixer import DISTRACTOR
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


def row_problem(s: Source, split: str, labels: set[str]) -> str | None:
    """What makes a row of one of rttag's own lists unusable on its own (its split is not ``split``,
    its label not in ``labels``, it has no licence), or None."""
    return ("split is not " + split if s.split != split else
            f"unknown label {s.label!r}" if s.label not in labels else
            "no licence" if not s.licence.strip() else None)


def _check_train_only(rows: list[Source], others: list[Source], labels: set[str], kind: str, others_are: str) -> None:
    """Refuses (``SourceError``, naming the ``kind`` of list) the first row that is not ``train``,
    has no licence or a label outside ``labels``, comes from a package that feeds the test split
    (any label) or the validation split of its label, or repeats a file of ``others``."""
    test_packages = {s.package for s in others if s.split == "test"}
    known = {(s.package, s.path) for s in others}
    for s in rows:
        why = row_problem(s, "train", labels) or (
            "package feeds the test split" if s.package in test_packages else
            "package feeds the validation split of this label" if s.package in VALIDATION_PACKAGES.get(s.label, ())
            else f"already in {others_are}" if (s.package, s.path) in known else None)
        if why:
            raise SourceError(f"{kind} source {s.package}:{s.path}: {why}")


def check_extra(extra: list[Source], vetted: list[Source], labels: set[str]) -> None:
    """The extra list may only widen the train split: every row is ``train``, has a licence and
    a known label, and its package feeds neither the test split (any label) nor the validation
    split of its label — so validation and test stay exactly what the vetted list makes them."""
    _check_train_only(extra, vetted, labels, "extra", "the vetted list")


def check_validation(rows: list[Source], others: list[Source], labels: set[str]) -> None:
    """The validation list may only widen the validation split: every row is ``validation``, has a
    licence and a known label, and its package appears in no other list (``others``: the vetted and
    extra lists; any label, any split) — so no model has trained on it and train and test stay
    exactly what the other lists make them."""
    used = {s.package for s in others}
    for s in rows:
        why = row_problem(s, "validation", labels) or (
            "package is used by the other source lists" if s.package in used else None)
        if why:
            raise SourceError(f"validation source {s.package}:{s.path}: {why}")


def check_distractors(rows: list[Source], others: list[Source]) -> None:
    """The distractor list may only add unlabelled sounds to the train split: every row is
    ``train``, labelled ``distractor``, has a licence, is no file of another list (any label) and
    comes from no package that feeds the test split — so validation and test stay exactly what the
    other lists make them, and the leak screen holds held-out recordings against these too."""
    _check_train_only(rows, others, {DISTRACTOR}, "distractor", "another source list")


def validation_halves(sources: list[Source], max_draws: int = 1000) -> dict[str, str]:
    """``{package: "A" or "B"}`` for every package that feeds the validation split of a label, so
    that one half can be trained on and the other kept unseen for tuning (``rttag data build
    --validation-half``). Whole packages go to one half (a package held out for several labels
    stays together); the background ambience is left out (it carries no label and stays in both).
    A label with a single validation package puts it in B, so that B can tune every label. The
    draw is ``numpy.random.default_rng(k)``, one uniform number per package in name order (< 0.5:
    A), for the first k at which every other label has packages in both halves."""
    labels_of: dict[str, set[str]] = defaultdict(set)
    for s in sources:
        if s.label != "background" and split_of(s) == "validation":
            labels_of[s.package].add(s.label)
    packages = sorted(labels_of)
    labels = set().union(*labels_of.values()) if labels_of else set()
    single = {label for label in labels if sum(label in labels_of[p] for p in packages) == 1}
    for k in range(max_draws):
        rng = np.random.default_rng(k)
        half = {p: "A" if rng.random() < 0.5 else "B" for p in packages}
        half.update({p: "B" for p in packages if labels_of[p] & single})
        covered = {h: {label for p in packages if half[p] == h for label in labels_of[p]} for h in "AB"}
        if covered["A"] >= labels - single and covered["B"] >= labels:
            return half
    raise SourceError(f"no split of the validation packages into halves covering every label in {max_draws} draws")


def keep_validation_half(sources: list[Source], half: str) -> list[Source]:
    """``sources`` without the validation rows of the other half's packages (``validation_halves``);
    train and test rows, and the background ambience, are kept as they are."""
    halves = validation_halves(sources)
    return [s for s in sources
            if s.label == "background" or split_of(s) != "validation" or halves[s.package] == half]
