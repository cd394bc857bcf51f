"""Run records: metrics as JSON lines, and PNG curves of loss, accuracy and learning rate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

from avts.atomic import atomic_path, atomic_write_text

matplotlib.use("Agg")
import matplotlib.pyplot as plt

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends one JSON object per line to ``<run>/metrics.jsonl`` (kind: ``step`` or ``epoch``)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / METRICS_FILE

    def write(self, kind: str, **values: Any) -> None:
        """Append a record."""
        with self.path.open("a") as handle:
            handle.write(json.dumps({"kind": kind, **values}) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """All records so far (a resumed run appends to the same file). A last line cut short (a disk that
        filled, or a kill, while it was appended) is not a record: it is left out, and a resume drops it."""
        if not self.path.exists():
            return []
        text = self.path.read_text()
        lines = [line for line in text.splitlines() if line.strip()]
        if lines and not text.endswith("\n"):
            lines.pop()
        return [json.loads(line) for line in lines]

    def keep_until(self, global_step: int, epochs_done: int) -> None:
        """Drop the records a resumed run will write again: steps after ``global_step``, epochs from
        ``epochs_done`` on (the killed run got further than its last checkpoint)."""
        if not self.path.exists():
            return
        kept = [
            record
            for record in self.read()
            if (record["kind"] == "step" and record["step"] <= global_step)
            or (record["kind"] == "epoch" and record["epoch"] < epochs_done)
        ]
        atomic_write_text(self.path, "".join(json.dumps(record) + "\n" for record in kept))


def latest_by(records: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    """Keep the last record for each value of ``field`` (a resumed run may repeat steps or epochs)."""
    chosen: dict[Any, dict[str, Any]] = {}
    for record in records:
        chosen[record[field]] = record
    return [chosen[k] for k in sorted(chosen)]


def plot_run(run_dir: Path) -> list[Path]:
    """Rewrite ``loss.png``, ``accuracy.png`` and ``lr.png`` from the metrics file; returns the paths."""
    records = MetricsLog(run_dir).read()
    steps = latest_by([r for r in records if r["kind"] == "step"], "step")
    epochs = latest_by([r for r in records if r["kind"] == "epoch"], "epoch")
    written = []
    figure, axis = plt.subplots(figsize=(7, 4))
    if steps:
        axis.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=0.8, alpha=0.6, label="train (steps)")
    if epochs:
        axis.plot([r["step"] for r in epochs], [r["train_loss"] for r in epochs], "o-", label="train (epoch mean)")
    cross_entropy = bool(epochs) and epochs[-1].get("objective") == "ce"
    axis.set(
        xlabel="step",
        ylabel="cross-entropy" if cross_entropy else "contrastive loss (Eq. 1)",
        title="AVTS training loss",
    )
    axis.legend()
    written.append(_save(figure, run_dir / "loss.png"))
    figure, axis = plt.subplots(figsize=(7, 4))
    for key, label in (("val_acc_easy", "val: easy negatives"), ("val_acc_mixed", "val: 75% easy / 25% hard")):
        points = [(r["epoch"] + 1, r[key]) for r in epochs if r.get(key) is not None]
        if points:
            axis.plot(*zip(*points, strict=True), "o-", label=label)
    axis.set(
        xlabel="epoch",
        ylabel="AVTS accuracy",
        ylim=(0.4, 1.0),
        title="AVTS accuracy (τ from the other half of the validation videos)",
    )
    axis.axhline(0.5, color="grey", lw=0.5)
    if axis.get_legend_handles_labels()[0]:
        axis.legend()
    else:  # e.g. too few validation videos for two disjoint halves
        axis.text(0.5, 0.7, "no validation accuracy yet", ha="center", transform=axis.transAxes, color="grey")
    written.append(_save(figure, run_dir / "accuracy.png"))
    figure, axis = plt.subplots(figsize=(7, 3))
    if epochs:
        axis.plot([r["epoch"] + 1 for r in epochs], [r["lr"] for r in epochs], "o-")
        axis.set_yscale("log")
    axis.set(xlabel="epoch", ylabel="learning rate", title="learning rate (×0.1 on plateau)")
    written.append(_save(figure, run_dir / "lr.png"))
    return written


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
    return path
