"""Property tests of the GPU pair sampler (run on CPU)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from trainer.sampler import EASY, HARD, POSITIVE, SUPER_HARD, NegativeMix, PairSampler

WINDOW = 100
GAP = 50
OFFSET = 50
FILTERS = 40
ROW_SCALE = 1000  # feature value = row * ROW_SCALE + frame + filter / 64: every (row, frame, filter) is unique


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """Run on one thread: the tensors are tiny, and thread start-up dominates on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def identifiable_feats(batch: int, frames: int) -> torch.Tensor:
    """``(B, T, 40)`` float32 features whose value encodes the row, frame and filter (exactly representable)."""
    row = torch.arange(batch, dtype=torch.float32)[:, None, None]
    frame = torch.arange(frames, dtype=torch.float32)[None, :, None]
    filt = torch.arange(FILTERS, dtype=torch.float32)[None, None, :]
    return row * ROW_SCALE + frame + filt / 64


def decode(audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Source row and start frame of each window, after checking it is one contiguous window of one row."""
    assert audio.dtype == torch.float32
    base = audio[:, 0, 0, :]
    row = torch.div(base[:, 0], ROW_SCALE, rounding_mode="floor").long()
    start = (base[:, 0] - row * ROW_SCALE).long()
    expected = (row * ROW_SCALE + start)[:, None] + torch.arange(audio.shape[-1])
    assert torch.equal(base, expected.float())
    offsets = torch.arange(FILTERS, dtype=torch.float32)[:, None] / 64
    assert torch.equal(audio[:, 0], base[:, None, :] + offsets)
    return row, start


def random_batch(gen: torch.Generator, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features of ``batch`` rows with random valid lengths in [250, T] and random clip starts."""
    frames = int(torch.randint(250, 900, (1,), generator=gen))
    valid = torch.randint(250, frames + 1, (batch,), generator=gen)
    clip = (torch.rand(batch, generator=gen, dtype=torch.float64) * (valid - WINDOW + 1)).long()
    return identifiable_feats(batch, frames), valid, clip


def hard_capable(valid: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """Rows with at least one start at least GAP frames away from the clip window, inside the valid range."""
    return (clip - WINDOW - GAP >= 0) | (clip + WINDOW + GAP + WINDOW <= valid)


def super_capable(valid: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """Rows where the clip window shifted by ±OFFSET still fits in the valid range."""
    return (clip - OFFSET >= 0) | (clip + OFFSET + WINDOW <= valid)


MIXES = [
    NegativeMix(easy=1.0, hard=0.0),
    NegativeMix(easy=0.75, hard=0.25),
    NegativeMix(easy=0.0, hard=1.0),
    NegativeMix(easy=0.5, hard=0.25, super_hard=0.25),
    NegativeMix(easy=0.0, hard=0.0, super_hard=1.0),
]


@pytest.mark.parametrize("mix", MIXES, ids=lambda m: f"{m.easy}-{m.hard}-{m.super_hard}")
def test_random_batches_satisfy_every_rule(mix: NegativeMix) -> None:
    sampler = PairSampler(WINDOW, GAP, OFFSET)
    gen = torch.Generator().manual_seed(1)
    data_gen = torch.Generator().manual_seed(2)
    for trial in range(150):
        batch = 2 + trial % 15
        feats, valid, clip = random_batch(data_gen, batch)
        out = sampler.sample(feats, valid, clip, mix, generator=gen)
        rows = torch.arange(batch)
        row, start = decode(out.audio)

        assert out.audio.shape == (batch, 1, FILTERS, WINDOW)
        assert torch.equal(out.source, row) and torch.equal(out.audio_start, start)
        assert out.kind.dtype == torch.int64 and out.label.dtype == torch.float32
        assert torch.equal(out.label, (out.kind == POSITIVE).float())
        # Every window lies inside its source row's valid range.
        assert (start >= 0).all() and (start + WINDOW <= valid[row]).all()

        positives = out.kind == POSITIVE
        easy = out.kind == EASY
        hard = out.kind == HARD
        sup = out.kind == SUPER_HARD
        assert int(positives.sum()) == batch // 2

        assert torch.equal(row[positives], rows[positives])
        assert torch.equal(start[positives], clip[positives])

        assert (row[easy] != rows[easy]).all()

        assert torch.equal(row[hard], rows[hard])
        gap_before = clip[hard] - (start[hard] + WINDOW)
        gap_after = start[hard] - (clip[hard] + WINDOW)
        assert (torch.maximum(gap_before, gap_after) >= GAP).all()

        assert torch.equal(row[sup], rows[sup])
        assert ((start[sup] - clip[sup]).abs() == OFFSET).all()

        # Kind counts follow the mix, except for rows too short to host their kind, which become easy.
        want_easy, want_hard, want_super = mix.counts(batch - batch // 2)
        n_hard, n_super = int(hard.sum()), int(sup.sum())
        assert n_hard <= want_hard and n_super <= want_super
        assert int(easy.sum()) == want_easy + (want_hard - n_hard) + (want_super - n_super)
        assert int((easy & ~hard_capable(valid, clip)).sum()) >= want_hard - n_hard
        assert int((easy & ~super_capable(valid, clip)).sum()) >= want_super - n_super


@pytest.mark.parametrize(
    ("batch", "mix", "expected"),
    [
        (16, NegativeMix(easy=0.75, hard=0.25), (8, 6, 2, 0)),
        (16, NegativeMix(easy=0.5, hard=0.25, super_hard=0.25), (8, 4, 2, 2)),
        (15, NegativeMix(easy=0.75, hard=0.25), (7, 6, 2, 0)),
        (2, NegativeMix(easy=0.0, hard=1.0), (1, 0, 1, 0)),
        (3, NegativeMix(easy=0.5, hard=0.0, super_hard=0.5), (1, 1, 0, 1)),
    ],
)
def test_kind_counts_are_exact_per_batch(batch: int, mix: NegativeMix, expected: tuple[int, ...]) -> None:
    frames = 1000
    feats = identifiable_feats(batch, frames)
    valid = torch.full((batch,), frames)
    clip = torch.full((batch,), 450)  # room for hard negatives on both sides and super-hard on both sides
    sampler = PairSampler(WINDOW, GAP, OFFSET)
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        out = sampler.sample(feats, valid, clip, mix, generator=gen)
        assert tuple(torch.bincount(out.kind, minlength=4).tolist()) == expected


def test_rows_too_short_fall_back_to_easy() -> None:
    batch = 8
    feats = identifiable_feats(batch, 300)
    sampler = PairSampler(WINDOW, GAP, OFFSET)
    gen = torch.Generator().manual_seed(4)
    # valid = 200, clip at 50: no start is 50 frames clear of [50, 150) inside [0, 100].
    valid = torch.full((batch,), 200)
    clip = torch.full((batch,), 50)
    out = sampler.sample(feats, valid, clip, NegativeMix(easy=0.0, hard=1.0), generator=gen)
    assert int((out.kind == HARD).sum()) == 0 and int((out.kind == EASY).sum()) == batch // 2
    assert (out.source[out.kind == EASY] != torch.arange(batch)[out.kind == EASY]).all()
    # valid = 100, clip at 0: neither 0 - 50 nor 0 + 50 fits.
    valid = torch.full((batch,), WINDOW)
    clip = torch.zeros(batch, dtype=torch.long)
    out = sampler.sample(feats, valid, clip, NegativeMix(easy=0.0, hard=0.0, super_hard=1.0), generator=gen)
    assert int((out.kind == SUPER_HARD).sum()) == 0 and int((out.kind == EASY).sum()) == batch // 2


def test_only_the_fitting_super_hard_side_is_used() -> None:
    batch = 4
    feats = identifiable_feats(batch, 400)
    sampler = PairSampler(WINDOW, GAP, OFFSET)
    gen = torch.Generator().manual_seed(5)
    valid = torch.tensor([400, 400, 200, 200])
    clip = torch.tensor([10, 10, 100, 100])  # rows 0-1 only fit +50, rows 2-3 only fit -50
    mix = NegativeMix(easy=0.0, hard=0.0, super_hard=1.0)
    for _ in range(20):
        out = sampler.sample(feats, valid, clip, mix, generator=gen)
        sup = out.kind == SUPER_HARD
        expected = torch.tensor([60, 60, 50, 50])
        assert torch.equal(out.audio_start[sup], expected[sup])


def test_hard_and_super_hard_starts_cover_both_sides() -> None:
    batch, frames = 8, 1000
    feats = identifiable_feats(batch, frames)
    valid = torch.full((batch,), frames)
    clip = torch.full((batch,), 450)  # hard starts: [0, 300] before, [600, 900] after, 301 each
    sampler = PairSampler(WINDOW, GAP, OFFSET)
    gen = torch.Generator().manual_seed(6)
    hard_starts, super_shifts = [], []
    for _ in range(300):
        out = sampler.sample(feats, valid, clip, NegativeMix(easy=0.0, hard=0.5, super_hard=0.5), generator=gen)
        hard_starts.append(out.audio_start[out.kind == HARD])
        super_shifts.append(out.audio_start[out.kind == SUPER_HARD] - clip[out.kind == SUPER_HARD])
    starts = torch.cat(hard_starts)
    shifts = torch.cat(super_shifts)
    assert ((starts <= 300) | ((starts >= 600) & (starts <= 900))).all()
    before = (starts <= 300).double().mean().item()
    assert 0.45 < before < 0.55, before
    assert starts.min() < 15 and starts.max() > 885
    assert ((starts // 100).bincount(minlength=10)[[0, 1, 2, 6, 7, 8]] > 0.1 * len(starts)).all()
    assert 0.4 < (shifts < 0).double().mean().item() < 0.6


def test_easy_sources_cover_every_other_row() -> None:
    batch = 6
    feats = identifiable_feats(batch, 400)
    valid = torch.full((batch,), 400)
    clip = torch.full((batch,), 150)
    sampler = PairSampler(WINDOW, GAP, OFFSET)
    gen = torch.Generator().manual_seed(7)
    pairs = torch.zeros(batch, batch, dtype=torch.long)
    starts = []
    for _ in range(1000):
        out = sampler.sample(feats, valid, clip, NegativeMix(easy=1.0, hard=0.0), generator=gen)
        easy = out.kind == EASY
        pairs[torch.arange(batch)[easy], out.source[easy]] += 1
        starts.append(out.audio_start[easy])
    assert (pairs.diagonal() == 0).all()
    # Each ordered pair (i, j != i) is expected 1000 / 2 / 5 = 100 times (sd about 9).
    off_diagonal = pairs[~torch.eye(batch, dtype=torch.bool)]
    assert ((off_diagonal > 60) & (off_diagonal < 140)).all(), off_diagonal
    starts = torch.cat(starts)
    assert starts.min() < 10 and starts.max() > 290


def test_same_seed_gives_same_batch() -> None:
    feats, valid, clip = random_batch(torch.Generator().manual_seed(8), 12)
    sampler = PairSampler(WINDOW, GAP, OFFSET)
    mix = NegativeMix(easy=0.5, hard=0.25, super_hard=0.25)
    first = sampler.sample(feats, valid, clip, mix, generator=torch.Generator().manual_seed(9))
    second = sampler.sample(feats, valid, clip, mix, generator=torch.Generator().manual_seed(9))
    other = sampler.sample(feats, valid, clip, mix, generator=torch.Generator().manual_seed(10))
    for name in ("audio", "label", "kind", "source", "audio_start"):
        assert torch.equal(getattr(first, name), getattr(second, name)), name
    assert not torch.equal(first.audio, other.audio)


def test_half_precision_features_give_float32_audio() -> None:
    feats = torch.randn(4, 300, FILTERS).half()
    valid = torch.full((4,), 300)
    clip = torch.full((4,), 100)
    out = PairSampler().sample(feats, valid, clip, NegativeMix(easy=1.0, hard=0.0), torch.Generator().manual_seed(0))
    assert out.audio.dtype == torch.float32
    positive = int(torch.nonzero(out.kind == POSITIVE)[0])
    assert torch.equal(out.audio[positive, 0], feats[positive, 100:200].float().T)


def test_batch_of_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        PairSampler().sample(
            torch.zeros(1, 200, FILTERS), torch.tensor([200]), torch.tensor([0]), NegativeMix(easy=1.0, hard=0.0)
        )


@pytest.mark.parametrize("fractions", [(0.5, 0.4, 0.0), (1.0, 0.25, 0.0), (1.2, -0.2, 0.0), (float("nan"), 1.0, 0.0)])
def test_negative_mix_is_validated(fractions: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError, match="NegativeMix"):
        NegativeMix(*fractions)


@pytest.mark.parametrize(
    "kwargs", [{"window": 0}, {"hard_gap": -1}, {"super_hard_offset": 100}, {"super_hard_offset": 0}]
)
def test_sampler_arguments_are_validated(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        PairSampler(**kwargs)


def test_easy_negatives_come_from_another_video_when_rows_share_a_video() -> None:
    """Several clips of one video in a batch (validation does this): easy audio must come from another video."""
    sampler = PairSampler()
    generator = torch.Generator().manual_seed(3)
    batch, frames = 8, 400
    feats = torch.arange(batch * frames, dtype=torch.float32).view(batch, frames, 1).expand(batch, frames, 40)
    valid = torch.full((batch,), frames)
    clip_start = torch.full((batch,), 150)
    video_id = torch.tensor([7, 7, 7, 7, 7, 7, 9, 9])
    seen_sources = set()
    for _ in range(200):
        pairs = sampler.sample(feats, valid, clip_start, NegativeMix(easy=1.0, hard=0.0), generator, video_id=video_id)
        easy = pairs.kind == 1
        assert torch.all(video_id[pairs.source[easy]] != video_id[easy])
        seen_sources.update(pairs.source[easy].tolist())
    assert seen_sources == set(range(batch))
