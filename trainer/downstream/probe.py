"""The linear probe of §3.4: one-vs-all linear SVMs on per-sub-clip features, evaluated on the set's own folds.

For each split (each fold in turn as the test set, trained on all the other folds; or the fixed train/test
split of a ``split`` column) the features are standardized with a scaler fitted on the training rows only,
a one-vs-rest :class:`~sklearn.svm.LinearSVC` is trained on every training sub-clip (labelled with its
file's class), and a test file's class scores are the mean of its sub-clips' decision values; the
predicted class is the argmax. Folds are never mixed: :func:`evaluation_splits` is the only place that
decides which files train and which test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.metrics import confusion_matrix
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from avts.atomic import atomic_path, atomic_write_text
from trainer.downstream.audio_input import FeatureTable
from trainer.downstream.labeled_audio import FOLDS, TEST_SPLIT, TRAIN_SPLIT, Scheme

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SVM_MAX_ITER = 10_000


class ProbeError(RuntimeError):
    """The probe cannot run on what is left (no files, a split without training or test files...)."""


@dataclass(frozen=True)
class Split:
    """One evaluation: train on the ``train`` files, test on the ``test`` files (indices into the files)."""

    name: str  # the tested fold, or "test" for a fixed train/test split
    train: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class FoldResult:
    """Accuracy on one split's test files."""

    name: str
    accuracy: float
    train_files: int
    test_files: int


@dataclass
class ProbeResult:
    """Every split's accuracy and the pooled predictions of all test files."""

    classes: list[str]
    folds: list[FoldResult]
    true: list[str]  # labels of the tested files, split after split
    predicted: list[str]

    @property
    def mean_accuracy(self) -> float:
        """Mean of the per-split accuracies (the ESC-50 convention)."""
        return float(np.mean([fold.accuracy for fold in self.folds]))

    @property
    def std_accuracy(self) -> float:
        """Population standard deviation of the per-split accuracies (0 for a single split)."""
        return float(np.std([fold.accuracy for fold in self.folds]))

    def confusion(self) -> np.ndarray:
        """Confusion counts ``[true class, predicted class]`` over all tested files, rows in ``classes`` order."""
        return confusion_matrix(self.true, self.predicted, labels=self.classes)


def _fold_order(name: str) -> tuple[int, int | str]:
    """Sort key putting numeric fold names in numeric order ("2" before "10")."""
    return (0, int(name)) if name.isdigit() else (1, name)


def evaluation_splits(folds: list[str], scheme: Scheme) -> list[Split]:
    """The splits to evaluate, from each file's fold.

    ``folds`` scheme: one split per distinct fold, testing that fold's files and training on all the files
    of every other fold. ``split`` scheme: one split, training on ``train`` and testing on ``test``.
    """
    fold_of = np.asarray(folds)
    if scheme == FOLDS:
        names = sorted(set(folds), key=_fold_order)
        if len(names) < 2:
            raise ProbeError(f"cross-validation needs at least 2 folds, found {names}")
        return [Split(name, np.flatnonzero(fold_of != name), np.flatnonzero(fold_of == name)) for name in names]
    split = Split(TEST_SPLIT, np.flatnonzero(fold_of == TRAIN_SPLIT), np.flatnonzero(fold_of == TEST_SPLIT))
    if len(split.train) == 0 or len(split.test) == 0:
        raise ProbeError(
            f"the split needs both {TRAIN_SPLIT} and {TEST_SPLIT} files (have {len(split.train)} and {len(split.test)})"
        )
    return [split]


def rows_of(file_index: np.ndarray, files: np.ndarray) -> np.ndarray:
    """Indices of the feature rows (sub-clips) that belong to ``files``."""
    return np.flatnonzero(np.isin(file_index, files))


def mean_by_file(scores: np.ndarray, file_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average sub-clip scores ``(rows, classes)`` per file: ``(files in ascending order, (files, classes))``."""
    files, inverse = np.unique(file_index, return_inverse=True)
    sums = np.zeros((len(files), scores.shape[1]))
    np.add.at(sums, inverse, scores)
    return files, sums / np.bincount(inverse)[:, None]


def train_svm(features: np.ndarray, labels: np.ndarray, c: float) -> Pipeline:
    """Standardize (statistics of these training rows only) + one-vs-rest linear SVM (squared hinge, L2).

    Solved in the primal (liblinear's trust-region Newton): with about as many sub-clip rows as dimensions
    (800 x 1,024 for an esc50_mini fold of 80 clips) the dual coordinate descent did not converge in 10,000
    iterations.
    """
    model = make_pipeline(
        StandardScaler(), LinearSVC(C=c, dual=False, multi_class="ovr", max_iter=SVM_MAX_ITER, random_state=0)
    )
    return model.fit(features, labels)


def class_scores(model: Pipeline, features: np.ndarray, classes: list[str]) -> np.ndarray:
    """Decision values ``(rows, len(classes))`` in ``classes`` order; a class the SVM never saw scores -inf."""
    svm: LinearSVC = model[-1]
    raw = model.decision_function(features)
    if raw.ndim == 1:  # two classes: one decision value, positive for svm.classes_[1]
        raw = np.stack([-raw, raw], axis=1)
    scores = np.full((len(features), len(classes)), -np.inf)
    scores[:, [classes.index(label) for label in svm.classes_]] = raw
    return scores


def run_probe(table: FeatureTable, scheme: Scheme, c: float = 1.0) -> ProbeResult:
    """Train and test on every split of ``table``'s files (see the module docstring)."""
    if not table.files:
        raise ProbeError("no usable audio files left")
    labels = np.asarray([item.label for item in table.files])
    classes = sorted(set(labels.tolist()))
    if len(classes) < 2:
        raise ProbeError(f"need at least two classes, found {classes}")
    rows = table.features.reshape(len(table.features), -1)
    folds, true, predicted = [], [], []
    for split in evaluation_splits([item.fold for item in table.files], scheme):
        if len(set(labels[split.train])) < 2:
            raise ProbeError(f"split {split.name}: the training files hold fewer than two classes")
        unseen = sorted(set(labels[split.test]) - set(labels[split.train]))
        if unseen:  # scored as certain misses, they would lower the accuracy by what the folds lack, not the features
            raise ProbeError(
                f"split {split.name}: class(es) {', '.join(unseen[:5])} of its test files have no training file in "
                "the other folds; every class needs files in at least two folds"
            )
        train_rows = rows_of(table.file_index, split.train)
        test_rows = rows_of(table.file_index, split.test)
        model = train_svm(rows[train_rows], labels[table.file_index[train_rows]], c)
        files, scores = mean_by_file(class_scores(model, rows[test_rows], classes), table.file_index[test_rows])
        guesses = np.asarray(classes)[scores.argmax(axis=1)]
        folds.append(FoldResult(split.name, float(np.mean(guesses == labels[files])), len(split.train), len(files)))
        true.extend(labels[files].tolist())
        predicted.extend(guesses.tolist())
    return ProbeResult(classes, folds, true, predicted)


def results_dict(result: ProbeResult, table: FeatureTable, settings: dict[str, Any]) -> dict[str, Any]:
    """Everything a run reports, JSON-ready: ``settings`` (features name, sub-clips, ...) plus the figures."""
    return {
        **settings,
        "mean_accuracy": result.mean_accuracy,
        "std_accuracy": result.std_accuracy,
        "folds": {fold.name: fold.accuracy for fold in result.folds},
        "fold_sizes": {
            fold.name: {"train_files": fold.train_files, "test_files": fold.test_files} for fold in result.folds
        },
        "classes": result.classes,
        "n_files": len(table.files),
        "n_subclip_rows": len(table.file_index),
        "feature_dim": int(np.prod(table.features.shape[1:])),
        "padded_files": len(table.padded),
        "padded": table.padded,
        "skipped": [{"path": item.path, "reason": item.reason} for item in table.skipped],
        "confusion": result.confusion().tolist(),
    }


def write_results(path: Path, results: dict[str, Any]) -> None:
    """Write the results JSON atomically."""
    atomic_write_text(path, json.dumps(results, indent=2) + "\n")


def save_confusion_png(result: ProbeResult, path: Path, title: str) -> None:
    """Plot the confusion counts over all tested files (rows: true class, columns: predicted) to a PNG."""
    counts = result.confusion()
    size = 2.5 + 0.45 * len(result.classes)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(counts, cmap="Blues")
    ticks = np.arange(len(result.classes))
    axes.set_xticks(ticks, result.classes, rotation=60, ha="right")
    axes.set_yticks(ticks, result.classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"{title}\nmean accuracy {result.mean_accuracy:.1%}")
    for (row, column), count in np.ndenumerate(counts):
        if count:
            axes.text(
                column,
                row,
                str(count),
                ha="center",
                va="center",
                color="white" if count > counts.max() / 2 else "black",
                fontsize=8,
            )
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)


def print_results(result: ProbeResult, title: str, console: Console) -> None:
    """A rich table: one line per split and the mean ± std."""
    table = Table(title=title)
    table.add_column("fold")
    for name in ("train files", "test files", "accuracy"):
        table.add_column(name, justify="right")
    for fold in result.folds:
        table.add_row(fold.name, str(fold.train_files), str(fold.test_files), f"{fold.accuracy:.1%}")
    table.add_section()
    table.add_row(
        "mean ± std", "", str(len(result.true)), f"{result.mean_accuracy:.1%} ± {result.std_accuracy:.1%}", style="bold"
    )
    console.print(table)
