"""The loader's clip/audio alignment, with exact expected values (in process, no shards on disk).

A stored video whose frame k has luma 16 + 3k and features whose row i holds the value i make every
misalignment visible: the first frame of a decoded clip says which frame it is, and the feature row at the
clip's offset must be 4 × that frame (4 feature frames per video frame, see avts/schema.py).
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from avts.schema import FEATURES_PER_FRAME, Sample, SampleMeta, encode_sample
from pipeline.video import VideoResampler
from trainer.clip_decode import decode_clip
from trainer.data import POSITION, LoaderSpec, audio_context, clip_starts, square_crop, to_examples

FRAMES = 60


def numbered_video(frames: int, width: int = 48, height: int = 32) -> bytes:
    """A stored (ingest-format) video whose frame ``k`` is flat grey with luma ``16 + 3 k`` (lossless x264)."""
    resampler = VideoResampler(short_side=height, crf=0, preset="ultrafast", threads=1)
    for k in range(frames):
        planes = np.full((height * 3 // 2, width), 128, np.uint8)
        planes[:height] = 16 + 3 * k
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts, frame.time_base, frame.duration = k, Fraction(1, 25), 1
        resampler.push(frame)
    return resampler.finish().data


@pytest.fixture(scope="module")
def raw_sample() -> dict:
    video = numbered_video(FRAMES)
    fbank = np.repeat(np.arange(FEATURES_PER_FRAME * FRAMES, dtype=np.float16)[:, None], 40, axis=1)
    meta = SampleMeta(
        key="numbered",
        source="numbered.mp4",
        label=None,
        duration_s=FRAMES / 25,
        source_start_s=0.0,
        frames=FRAMES,
        fps=25.0,
        width=48,
        height=32,
        stored_width=48,
        stored_height=32,
        audio_sample_rate=16000,
        audio_channels=1,
        audio_pad_s=0.0,
        mp3=False,
    )
    raw = encode_sample(Sample("numbered", video, fbank, meta))
    return {**raw, POSITION: "0/0/0", "__url__": "memory"}


def frame_index(luma: np.ndarray) -> int:
    return round((float(luma.mean()) - 16) / 3)


def test_decode_clip_returns_exactly_the_asked_frames(raw_sample: dict) -> None:
    for start in (0, 7, 25, 35):  # at, between and after key frames (one every 25)
        clip = decode_clip(raw_sample["mp4"], start, 25)
        assert clip.shape == (25, 48, 48)  # 32 rows of Y + 16 of packed U, V
        assert [frame_index(frame[:32]) for frame in clip] == list(range(start, start + 25))


def test_a_window_past_the_end_repeats_the_last_frame(raw_sample: dict) -> None:
    clip = decode_clip(raw_sample["mp4"], FRAMES - 5, 25)
    assert [frame_index(frame[:32]) for frame in clip] == [55, 56, 57, 58, 59] + [59] * 20


def test_evaluation_clips_are_evenly_spaced() -> None:
    assert clip_starts(100, 25, 4, None) == [9, 28, 47, 66]
    assert clip_starts(20, 25, 2, None) == [0, 0]  # shorter than a clip: from the start


@pytest.mark.parametrize(
    ("length", "start", "begin", "valid", "offset"),
    [
        (400, 120, 70, 200, 50),  # centred on the clip
        (400, 300, 200, 200, 100),  # pushed back from the end
        (150, 40, 0, 150, 40),  # shorter than the context: zero padded after `valid`
    ],
)
def test_audio_context_placement(length: int, start: int, begin: int, valid: int, offset: int) -> None:
    fbank = np.repeat(np.arange(length, dtype=np.float16)[:, None], 40, axis=1)
    feats, got_valid, got_offset = audio_context(fbank, start, 200, None)
    assert (got_valid, got_offset) == (valid, offset)
    assert feats[0, 0] == begin and feats[offset, 0] == start
    assert not feats[valid:].any()


def test_training_context_always_holds_the_clip_window() -> None:
    fbank = np.repeat(np.arange(400, dtype=np.float16)[:, None], 40, axis=1)
    rng = np.random.default_rng(0)
    for start in range(0, 301, 20):
        feats, valid, offset = audio_context(fbank, start, 200, rng)
        assert feats[offset, 0] == start and offset + 100 <= valid == 200


def test_square_crop_is_centred_for_evaluation() -> None:
    clip = np.zeros((2, 48, 48), np.uint8)  # 32 rows of Y (48 wide), then U and V packed
    clip[:, :32, 8:40] = 200  # the central 32 x 32 square of Y
    y, u, v = square_crop(clip, None)
    assert y.shape == (2, 32, 32) and u.shape == v.shape == (2, 16, 16)
    assert (y == 200).all()


def test_a_training_example_lines_up_picture_and_sound(raw_sample: dict) -> None:
    spec = LoaderSpec(["memory"], batch_size=2, clip_frames=25, context_frames=120, seed=5, workers=0)
    for epoch in range(4):
        (example,) = list(to_examples(dict(raw_sample), spec, epoch))
        first = frame_index(example.y[0])
        assert 0 <= first <= FRAMES - 25
        assert example.feats[example.clip_start, 0] == FEATURES_PER_FRAME * first
        assert example.valid == 120 and example.clip_start + 100 <= example.valid


def test_validation_examples_are_the_evenly_spaced_clips(raw_sample: dict) -> None:
    spec = LoaderSpec(
        ["memory"],
        batch_size=2,
        clip_frames=25,
        context_frames=200,
        seed=5,
        workers=0,
        training=False,
        clips_per_video=3,
    )
    examples = list(to_examples(dict(raw_sample), spec, 0))
    assert [frame_index(e.y[0]) for e in examples] == clip_starts(FRAMES, 25, 3, None) == [6, 18, 29]
    for example in examples:
        assert example.feats[example.clip_start, 0] == FEATURES_PER_FRAME * frame_index(example.y[0])


def test_samples_without_audible_audio_are_skipped_where_audio_is_needed(raw_sample: dict) -> None:
    import json

    silent = dict(raw_sample)
    silent["json"] = json.dumps({**json.loads(raw_sample["json"]), "audible": False}).encode()
    for needs_audio, expected in ((True, 0), (False, 1)):
        spec = LoaderSpec(
            ["memory"], batch_size=2, clip_frames=25, context_frames=120, seed=5, workers=0, needs_audio=needs_audio
        )
        assert len(list(to_examples(dict(silent), spec, 0))) == expected
    assert len(list(to_examples(dict(raw_sample), LoaderSpec(["memory"], 2, 25, 120, 5, 0), 0))) == 1


def test_a_stream_of_unusable_samples_ends_instead_of_spinning(
    raw_sample: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resampled shards whose samples are all unusable (ingested without audible audio, or bad) were read round
    and round for ever: `avts-train --epoch-size` hung at full CPU. The stream now ends after a run of unusable
    samples, and a usable sample resets the count."""
    import itertools
    import json

    import trainer.data

    monkeypatch.setattr(trainer.data, "MAX_UNUSABLE_IN_A_ROW", 20)
    silent = {**raw_sample, "json": json.dumps({**json.loads(raw_sample["json"]), "audible": False}).encode()}
    bad = {"__key__": "broken", "__url__": "memory", POSITION: "0/0/1", "json": b"{"}
    spec = LoaderSpec(["memory"], batch_size=2, clip_frames=25, context_frames=120, seed=5, workers=0)
    stage = trainer.data.expand_examples(spec, 0)
    endless = itertools.cycle([dict(silent), dict(bad)])  # what resampled shards of such samples give
    with pytest.warns(trainer.data.BadSampleWarning, match="no usable sample in the last 20 read"):
        assert list(stage(endless)) == []
    mixed = itertools.islice(itertools.cycle([dict(silent)] * 19 + [dict(raw_sample)]), 200)
    assert len(list(stage(mixed))) == 10  # never 20 unusable in a row: the whole finite stream is read


def test_samples_a_reader_cannot_trust_are_refused(raw_sample: dict) -> None:
    """A 0.5-s filterbank beside a 4-s video trained on zero-padded audio, and a sample of a newer shard schema
    (schema_version 99) was read as if it were this one. Both are now bad samples (skipped with a warning)."""
    import json

    from avts.schema import decode_sample

    spec = LoaderSpec(["memory"], batch_size=2, clip_frames=25, context_frames=120, seed=5, workers=0)
    meta = json.loads(raw_sample["json"])
    short = {
        **raw_sample,
        "fbank.npy": encode_sample(Sample("numbered", b"", np.zeros((50, 40), np.float16), SampleMeta.from_dict(meta)))[
            "fbank.npy"
        ],
    }
    with pytest.raises(ValueError, match=r"its audio features cover 0\.50 s but its video"):
        list(to_examples(short, spec, 0))
    newer = {**raw_sample, "json": json.dumps({**meta, "schema_version": 99}).encode()}
    with pytest.raises(ValueError, match="written with shard schema 99; this AVTS reads up to 1"):
        decode_sample(newer)
