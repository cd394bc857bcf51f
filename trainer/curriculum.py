"""Curriculum of negative mixes over the epochs (Korbar, Tran & Torresani, NeurIPS 2018, §2.4).

The paper trains first with easy negatives only and then fine-tunes with 75% easy and 25% hard negatives
(epochs 1-50 easy, 51-90 mixed). A :class:`Curriculum` is a list of stages, each with the epoch it starts
at and the :class:`~trainer.sampler.NegativeMix` it uses, written on the command line as
``"0:easy=1;50:easy=0.75,hard=0.25"``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields

from trainer.sampler import NegativeMix

_MIX_KEYS = tuple(f.name for f in fields(NegativeMix))


@dataclass(frozen=True)
class Stage:
    """A curriculum stage: from 0-based epoch ``start_epoch`` on, sample negatives with ``mix``."""

    start_epoch: int
    mix: NegativeMix


def _format_mix(mix: NegativeMix) -> str:
    """Write ``mix`` as ``easy=0.75,hard=0.25``, leaving out zero fractions."""
    return ",".join(f"{key}={getattr(mix, key):g}" for key in _MIX_KEYS if getattr(mix, key) > 0)


def _parse_mix(text: str) -> NegativeMix:
    """Read a mix written as ``easy=0.75,hard=0.25`` (missing kinds are 0)."""
    values: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or key not in _MIX_KEYS:
            raise ValueError(f"bad mix entry {item.strip()!r}: expected KIND=FRACTION with KIND in {_MIX_KEYS}")
        if key in values:
            raise ValueError(f"mix {text!r} gives {key} twice")
        try:
            values[key] = float(value)
        except ValueError:
            raise ValueError(f"bad fraction {value!r} for {key} in mix {text!r}") from None
    return NegativeMix(**{key: values.get(key, 0.0) for key in _MIX_KEYS})


@dataclass(frozen=True)
class Curriculum:
    """Stages sorted by strictly increasing ``start_epoch``, the first starting at epoch 0."""

    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("a curriculum needs at least one stage")
        if self.stages[0].start_epoch != 0:
            raise ValueError(f"the first stage must start at epoch 0, not {self.stages[0].start_epoch}")
        starts = [stage.start_epoch for stage in self.stages]
        if any(later <= earlier for earlier, later in itertools.pairwise(starts)):
            raise ValueError(f"stage start epochs must be strictly increasing, got {starts}")

    def stage_at(self, epoch: int) -> int:
        """Index of the stage in force at 0-based ``epoch``."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        return max(i for i, stage in enumerate(self.stages) if stage.start_epoch <= epoch)

    def mix_at(self, epoch: int) -> NegativeMix:
        """Negative mix in force at 0-based ``epoch``."""
        return self.stages[self.stage_at(epoch)].mix

    def describe(self) -> str:
        """The curriculum in the format :meth:`parse` reads, e.g. ``0:easy=1;50:easy=0.75,hard=0.25``."""
        return ";".join(f"{stage.start_epoch}:{_format_mix(stage.mix)}" for stage in self.stages)

    @classmethod
    def paper_default(cls, epochs: int) -> Curriculum:
        """The paper's schedule scaled to ``epochs``: easy only, then 75% easy / 25% hard.

        The switch comes at 0-based epoch ``round(epochs * 50 / 90)``: epoch 50 of 90, as in the paper.
        """
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        return cls(
            (
                Stage(0, NegativeMix(easy=1.0, hard=0.0)),
                Stage(round(epochs * 50 / 90), NegativeMix(easy=0.75, hard=0.25)),
            )
        )

    @classmethod
    def parse(cls, text: str) -> Curriculum:
        """Read ``"EPOCH:KIND=FRACTION,...;EPOCH:..."``, e.g. ``"0:easy=1;50:easy=0.75,hard=0.25"``.

        KIND is ``easy``, ``hard`` or ``super_hard``; kinds left out get 0; epochs are 0-based.
        """
        stages = []
        for part in text.split(";"):
            epoch, sep, mix = part.partition(":")
            if not sep:
                raise ValueError(f"bad curriculum stage {part.strip()!r}: expected EPOCH:KIND=FRACTION,...")
            try:
                start = int(epoch)
            except ValueError:
                raise ValueError(f"bad start epoch {epoch.strip()!r} in curriculum stage {part.strip()!r}") from None
            stages.append(Stage(start, _parse_mix(mix)))
        return cls(tuple(stages))


def curriculum_check(text: str | None) -> tuple[bool, str]:
    """A validation entry for ``--curriculum``: whether ``text`` parses, and what is wrong if not."""
    if text is None:
        return True, ""
    try:
        Curriculum.parse(text)
    except ValueError as error:
        return False, f"--curriculum: {error}"
    return True, ""
