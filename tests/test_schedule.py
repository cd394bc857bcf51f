"""The LR schedule across the curriculum's stage change, on scripted epoch losses (no data, no model; < 1 s).

§3.1: "the learning rate is scaled by 0.1 each time the loss value fails to decrease for more than 5 epochs".
The loss it watches is the epoch's training loss, which jumps up when hard negatives come in (§2.4). These
tests drive the real pieces of `avts-train` — :func:`trainer.optim.plateau_schedule`, stepped once per epoch
with the epoch loss as :func:`trainer.train.finish_epoch` does, and the stage rule
:meth:`trainer.train.SyncTask.start_epoch`, called at the start of each epoch as
:func:`trainer.train.train_one_epoch` does — and check the learning rate recorded for every epoch against
values worked out by hand from the rule.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from trainer.config import TrainConfig
from trainer.curriculum import Curriculum
from trainer.optim import build_optimizer, plateau_schedule
from trainer.train import SyncTask, TrainState

LR = 0.01
PATIENCE = 5  # the paper's
FACTOR = 0.1  # the paper's
EPOCHS = 18
CURRICULUM = Curriculum.paper_default(EPOCHS)  # easy only in epochs 0-9, 75% easy / 25% hard from epoch 10
EASY_STAGE = [0.245, 0.20, 0.15, 0.10, 0.08, 0.06, 0.05, 0.045, 0.04, 0.038]  # steadily learning
HARD_STAGE = [0.12, 0.11, 0.10, 0.09, 0.085, 0.08, 0.075, 0.07]  # still learning, but above 0.038 throughout


CONFIG = TrainConfig(
    shards="unused", out=Path("unused"), epochs=EPOCHS, lr=LR, plateau_patience=PATIENCE, lr_factor=FACTOR
)
# The stage rule of `avts-train` (its model, inputs and validation play no part in it).
TASK = SyncTask(CONFIG, model=None, curriculum=CURRICULUM, settings=None, stats=None, val_loader=None)  # type: ignore[arg-type]


def fake_run() -> SimpleNamespace:
    """The parts of :class:`trainer.train.Run` that the schedule and the stage rule touch: a real optimizer
    and plateau schedule built as `avts-train` builds them, and the training state."""
    optimizer = build_optimizer(
        [torch.nn.Parameter(torch.zeros(1))], CONFIG.optimizer, CONFIG.lr, CONFIG.momentum, CONFIG.weight_decay
    )
    return SimpleNamespace(
        optimizer=optimizer,
        state=TrainState(),
        schedule=plateau_schedule(optimizer, CONFIG.plateau_patience, CONFIG.lr_factor),
    )


def learning_rates(
    run: SimpleNamespace, losses: list[float], first_epoch: int = 0, restart_at_stage: bool = True
) -> list[float]:
    """Epochs ``first_epoch, ...`` with the scripted ``losses``: the stage rule at each epoch's start, then the
    schedule step on the epoch loss; returns the learning rate recorded for each epoch (after its step)."""
    recorded = []
    for epoch, loss in enumerate(losses, start=first_epoch):
        run.state = TrainState(epoch=epoch)  # a new epoch starts at its step 0
        if restart_at_stage:
            TASK.start_epoch(run, epoch)  # type: ignore[arg-type]
        run.schedule.step(loss)
        recorded.append(run.optimizer.param_groups[0]["lr"])
    return recorded


def test_the_scripted_curriculum_switches_at_epoch_10() -> None:
    assert [CURRICULUM.stage_at(epoch) for epoch in range(EPOCHS)] == [0] * 10 + [1] * 8
    assert len(EASY_STAGE) == 10 and len(HARD_STAGE) == 8


def test_without_the_restart_the_hard_stage_is_starved() -> None:
    # Every hard-stage loss is above the easy stage's best (0.038): epochs 10..14 are bad epochs 1..5, epoch 15 is
    # the 6th (> patience 5), so the LR is cut there, in the middle of the stage that is still learning.
    lrs = learning_rates(fake_run(), EASY_STAGE + HARD_STAGE, restart_at_stage=False)
    assert lrs == pytest.approx([LR] * 15 + [LR * FACTOR] * 3)


def test_with_the_restart_the_hard_stage_keeps_its_learning_rate() -> None:
    lrs = learning_rates(fake_run(), EASY_STAGE + HARD_STAGE)
    assert lrs == pytest.approx([LR] * EPOCHS)


def test_a_plateau_inside_the_hard_stage_still_cuts_the_rate() -> None:
    # The restart does not switch the rule off: a flat hard stage (0.12 from epoch 10) has bad epochs 1..6 at
    # epochs 11..16, so the cut comes at epoch 16, counted from the stage's own best.
    lrs = learning_rates(fake_run(), EASY_STAGE + [0.12] * 8)
    assert lrs == pytest.approx([LR] * 16 + [LR * FACTOR] * 2)


def test_a_cut_made_in_the_easy_stage_carries_over() -> None:
    # The restart forgets the old best loss, not the learning rate: a flat easy stage is cut at epoch 6 (bad
    # epochs 1..6 at epochs 1..6), and the hard stage goes on at the cut rate.
    lrs = learning_rates(fake_run(), [0.245] * 10 + HARD_STAGE)
    assert lrs == pytest.approx([LR] * 6 + [LR * FACTOR] * 12)


def test_resuming_at_the_stage_change_restarts_the_tracking_too() -> None:
    # A run stopped after epoch 9 (last easy epoch) and resumed from its epoch-end checkpoint: the checkpoint holds
    # the easy stage's schedule; the resumed first epoch (step 0 of epoch 10) must still start afresh.
    first = fake_run()
    before = learning_rates(first, EASY_STAGE)
    resumed = fake_run()
    resumed.optimizer.load_state_dict(first.optimizer.state_dict())
    resumed.schedule.load_state_dict(first.schedule.state_dict())
    after = learning_rates(resumed, HARD_STAGE, first_epoch=len(EASY_STAGE))
    assert before + after == pytest.approx(learning_rates(fake_run(), EASY_STAGE + HARD_STAGE))
    assert after == pytest.approx([LR] * len(HARD_STAGE))


def test_resuming_mid_epoch_does_not_restart_again() -> None:
    # A run resumed in the middle of the first hard epoch: its checkpoint already holds the fresh schedule, which
    # has seen nothing yet; a restart must not happen a second time on a schedule that has (the rule looks at
    # step_in_epoch).
    run = fake_run()
    learning_rates(run, EASY_STAGE)
    kept = run.schedule
    run.state = TrainState(epoch=10, step_in_epoch=3)
    TASK.start_epoch(run, 10)  # type: ignore[arg-type]
    assert run.schedule is kept
