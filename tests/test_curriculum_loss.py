"""Tests of the negative-mix curriculum and the contrastive loss."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.curriculum import Curriculum, Stage
from trainer.loss import accuracy_at_threshold, best_threshold, contrastive_loss, pair_distance
from trainer.sampler import NegativeMix

EASY_ONLY = NegativeMix(easy=1.0, hard=0.0)
PAPER_MIX = NegativeMix(easy=0.75, hard=0.25)


def test_paper_default_switches_at_epoch_50_of_90() -> None:
    curriculum = Curriculum.paper_default(90)
    assert [curriculum.stage_at(e) for e in (0, 49, 50, 89)] == [0, 0, 1, 1]
    assert curriculum.mix_at(49) == EASY_ONLY
    assert curriculum.mix_at(50) == PAPER_MIX
    assert curriculum.describe() == "0:easy=1;50:easy=0.75,hard=0.25"


def test_paper_default_for_two_epochs_switches_at_epoch_1() -> None:
    curriculum = Curriculum.paper_default(2)
    assert curriculum.mix_at(0) == EASY_ONLY
    assert curriculum.mix_at(1) == PAPER_MIX


@pytest.mark.parametrize(
    "text", ["0:easy=1;50:easy=0.75,hard=0.25", "0:easy=1;10:easy=0.5,hard=0.25,super_hard=0.25;20:hard=1"]
)
def test_parse_describe_round_trip(text: str) -> None:
    curriculum = Curriculum.parse(text)
    assert curriculum.describe() == text
    assert Curriculum.parse(curriculum.describe()) == curriculum


def test_parse_reads_stages() -> None:
    curriculum = Curriculum.parse(" 0 : easy = 1 ; 3:easy=0.5,super_hard=0.5 ")
    assert curriculum.stages == (
        Stage(0, EASY_ONLY),
        Stage(3, NegativeMix(easy=0.5, hard=0.0, super_hard=0.5)),
    )
    assert curriculum.mix_at(100).super_hard == 0.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "EPOCH"),
        ("0:easy=1;", "EPOCH"),
        ("x:easy=1", "start epoch"),
        ("0:medium=1", "KIND"),
        ("0:easy", "KIND"),
        ("0:easy=abc", "fraction"),
        ("0:easy=1,easy=0", "twice"),
        ("0:easy=0.5", "sum to 1"),
        ("1:easy=1", "epoch 0"),
        ("0:easy=1;5:hard=1;5:easy=1", "increasing"),
    ],
)
def test_parse_rejects_bad_text(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Curriculum.parse(text)


def test_curriculum_rejects_bad_epochs() -> None:
    with pytest.raises(ValueError):
        Curriculum(())
    with pytest.raises(ValueError):
        Curriculum.paper_default(0)
    with pytest.raises(ValueError):
        Curriculum.paper_default(90).mix_at(-1)


def test_loss_matches_hand_computation() -> None:
    v = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.5], [0.0, 2.0]])
    a = torch.zeros(4, 2)
    label = torch.tensor([1.0, 1.0, 0.0, 0.0])
    # distances 0, 5, 0.5, 2: positives cost d², negatives (0.99 - d)² while d < 0.99
    expected = (0.0 + 25.0 + (0.99 - 0.5) ** 2 + 0.0) / 4
    assert torch.allclose(pair_distance(v, a), torch.tensor([0.0, 5.0, 0.5, 2.0]), atol=1e-5)
    assert contrastive_loss(v, a, label).item() == pytest.approx(expected, abs=1e-6)
    assert contrastive_loss(v, a, label, margin=3.0).item() == pytest.approx((25.0 + 2.5**2 + 1.0) / 4, abs=1e-5)


def test_loss_is_zero_for_perfect_pairs() -> None:
    v = torch.randn(6, 8)
    a = torch.cat([v[:3], v[3:] + 10.0])  # in-sync pairs coincide, out-of-sync ones are far apart
    label = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    assert contrastive_loss(v, a, label).item() == 0.0


@pytest.mark.parametrize("label", [1.0, 0.0])
def test_gradient_is_finite_at_zero_distance(label: float) -> None:
    v = torch.ones(3, 4, requires_grad=True)
    a = torch.ones(3, 4, requires_grad=True)
    loss = contrastive_loss(v, a, torch.full((3,), label))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(v.grad).all() and torch.isfinite(a.grad).all()


def test_loss_is_float32_under_autocast() -> None:
    v = torch.randn(4, 8, dtype=torch.bfloat16)
    a = torch.randn(4, 8, dtype=torch.bfloat16)
    label = torch.tensor([1.0, 0.0, 1.0, 0.0])
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = contrastive_loss(v, a, label)
        dist = pair_distance(v, a)
    assert loss.dtype == torch.float32 and dist.dtype == torch.float32
    assert loss.item() == pytest.approx(contrastive_loss(v.float(), a.float(), label).item())


def test_best_threshold_separates_separable_data() -> None:
    gen = torch.Generator().manual_seed(0)
    positives = torch.rand(50, generator=gen) * 0.4  # in sync: distances in [0, 0.4)
    negatives = 0.6 + torch.rand(70, generator=gen)  # out of sync: distances in [0.6, 1.6)
    dist = torch.cat([positives, negatives])
    label = torch.cat([torch.ones(50), torch.zeros(70)])
    order = torch.randperm(120, generator=gen)
    tau, accuracy = best_threshold(dist[order], label[order])
    assert accuracy == 1.0
    assert positives.max() < tau <= negatives.min()
    assert accuracy_at_threshold(dist, label, tau) == 1.0


def test_best_threshold_matches_brute_force() -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        dist = torch.randint(0, 12, (40,), generator=gen).float() / 4  # many ties
        label = (torch.rand(40, generator=gen) < 0.5).float()
        tau, accuracy = best_threshold(dist, label)
        candidates = torch.cat([dist, dist + 0.125, torch.tensor([-1.0])]).tolist()
        brute = max(accuracy_at_threshold(dist, label, t) for t in candidates)
        assert accuracy == pytest.approx(brute)
        assert accuracy_at_threshold(dist, label, tau) == pytest.approx(accuracy)


def test_best_threshold_edge_cuts() -> None:
    dist = torch.tensor([0.5, 0.2, 0.9])
    tau, accuracy = best_threshold(dist, torch.ones(3))
    assert accuracy == 1.0 and math.isfinite(tau) and tau > dist.max().item()
    tau, accuracy = best_threshold(dist, torch.zeros(3))
    assert accuracy == 1.0 and tau <= dist.min().item()
    with pytest.raises(ValueError):
        best_threshold(torch.tensor([]), torch.tensor([]))
