"""avts-probe: labelled layouts, folds, sub-clip placement, score averaging, features and the CLI.

Everything runs on a tiny synthetic labelled set written here with PyAV (three classes of tones at distinct
pitches, .wav and .ogg, two folds); one test reads the real esc50_mini set when it is present.
"""

from __future__ import annotations

import io
import json
import os
import wave
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from python_speech_features import mfcc
from rich.console import Console

from avts.progress import CountProgress
from pipeline.audio import log_filterbank
from trainer.checkpoint import save_checkpoint
from trainer.downstream import probe, probe_cli
from trainer.downstream.audio_input import (
    WINDOW_SAMPLES,
    DecodeError,
    FeatureTable,
    decode_mono_16k,
    decode_table,
    feature_frames,
    subclip_filterbanks,
    subclip_starts,
)
from trainer.downstream.labeled_audio import (
    FOLDS,
    SPLIT,
    LabeledFile,
    LayoutError,
    hashed_folds,
    read_csv_layout,
    read_folder_layout,
)
from trainer.downstream.mfcc import mfcc_dim, mfcc_stats
from trainer.downstream.probe import ProbeError, class_scores, evaluation_splits, mean_by_file, run_probe, train_svm
from trainer.downstream.probe_cli import main
from trainer.downstream.subclip_features import AudioConv5Extractor, random_audio_net, window_stats

REPO = Path(__file__).resolve().parents[1]
CLASSES = {"low": 250.0, "mid": 1000.0, "high": 4000.0}
RATE = 22_050
_CODECS = {
    ".wav": ("pcm_s16le", "mono", {}),
    ".ogg": ("vorbis", "stereo", {"strict": "-2"}),
    ".flac": ("flac", "mono", {}),
    ".mp3": ("libmp3lame", "mono", {}),
}


def tone(freq: float, seconds: float, seed: int, rate: int = RATE) -> np.ndarray:
    """A jittered tone with two harmonics, pulsing on and off, over low noise; int16 samples."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    f = freq * rng.uniform(0.97, 1.03)
    wave = sum(np.sin(2 * np.pi * f * h * t + rng.uniform(0, 2 * np.pi)) / h for h in (1, 2, 3))
    pulse = 0.6 + 0.4 * np.sign(np.sin(2 * np.pi * rng.uniform(1.5, 3.0) * t))
    signal = 0.2 * rng.uniform(0.5, 1.0) * wave * pulse + rng.normal(0, 0.01, len(t))
    return np.clip(signal * 32767, -32768, 32767).astype(np.int16)


def write_audio(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    """Encode int16 mono ``samples`` with the codec the suffix implies (Ogg Vorbis is written in stereo)."""
    codec, layout, options = _CODECS[path.suffix]
    channels = 2 if layout == "stereo" else 1
    interleaved = np.repeat(samples[:, None], channels, axis=1).reshape(1, -1)
    with av.open(str(path), "w") as muxer:
        stream = muxer.add_stream(codec, rate=rate, layout=layout, options=options)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(interleaved), format="s16", layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        resampler = av.AudioResampler(
            format=stream.codec_context.format,
            layout=layout,
            rate=rate,
            frame_size=stream.codec_context.frame_size or None,
        )
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            muxer.mux(stream.encode(chunk))
        muxer.mux(stream.encode(None))
    return path


def write_video(path: Path, samples: np.ndarray | None, seconds: float = 2.0) -> Path:
    """A small H.264 MP4, with an AAC track of ``samples`` (16 kHz) when given."""
    with av.open(str(path), "w") as muxer:
        video = muxer.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = muxer.add_stream("aac", rate=16_000, layout="mono") if samples is not None else None
        for index in range(round(seconds * 25)):
            picture = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 5 % 256, np.uint8), format="rgb24")
            muxer.mux(video.encode(picture))
        muxer.mux(video.encode(None))
        if audio is not None:
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts = 16_000, 0
            resampler = av.AudioResampler(
                format=audio.codec_context.format, layout="mono", rate=16_000, frame_size=audio.codec_context.frame_size
            )
            for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
                muxer.mux(audio.encode(chunk))
            muxer.mux(audio.encode(None))
    return path


@pytest.fixture(scope="session")
def esc_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ESC-50 layout: ``root/meta/set.csv`` (filename, fold, target, category) and ``root/audio/``.

    3 classes x 2 folds x 3 files of 3 s, alternately .wav (mono) and .ogg (stereo Vorbis), at 22.05 kHz.
    """
    root = tmp_path_factory.mktemp("esc_like")
    (root / "meta").mkdir()
    (root / "audio").mkdir()
    lines = ["filename,fold,target,category"]
    for target, (category, freq) in enumerate(CLASSES.items()):
        for fold in (1, 2):
            for take in range(3):
                name = f"{fold}-{category}-{take}{'.wav' if take % 2 == 0 else '.ogg'}"
                write_audio(root / "audio" / name, tone(freq, 3.0, seed=100 * target + 10 * fold + take))
                lines.append(f"{name},{fold},{target},{category}")
    (root / "meta" / "set.csv").write_text("\n".join(lines) + "\n")
    return root


def quiet_progress(total: int) -> CountProgress:
    """A progress counter that prints nowhere visible."""
    return CountProgress("test", total, "files", Console(file=io.StringIO()), plain=True)


# ---- layouts --------------------------------------------------------------------------------------------------
def test_esc50_layout_reads_audio_beside_the_meta_folder_and_lists_missing_rows(esc_like: Path, tmp_path: Path) -> None:
    meta = tmp_path / "meta" / "esc.csv"
    meta.parent.mkdir()
    rows = (esc_like / "meta" / "set.csv").read_text().splitlines()
    meta.write_text("\n".join([*rows, "9-gone-0.wav,2,1,mid", "1-low-1.ogg,1,0,"]) + "\n")
    (tmp_path / "audio").symlink_to(esc_like / "audio")
    labeled = read_csv_layout(meta)
    assert labeled.scheme == FOLDS and len(labeled.files) == 18
    assert labeled.files[0] == LabeledFile(tmp_path / "audio" / "1-low-0.wav", "low", "1")
    assert {item.fold for item in labeled.files} == {"1", "2"}
    assert [(Path(s.path).name, s.reason) for s in labeled.skipped] == [
        ("9-gone-0.wav", "file not found"),
        ("1-low-1.ogg", "no category"),
    ]


def test_audio_file_column_is_relative_to_the_csv_and_audio_dir_overrides(esc_like: Path, tmp_path: Path) -> None:
    meta = tmp_path / "mini.csv"
    meta.write_text(
        "filename,fold,target,category,audio_file\n"
        f"x.wav,1,0,low,{esc_like / 'audio' / '1-low-0.wav'}\n"
        "1-mid-0.wav,2,1,mid,sub/absent.ogg\n"
    )
    labeled = read_csv_layout(meta)
    assert [item.path for item in labeled.files] == [esc_like / "audio" / "1-low-0.wav"]
    assert labeled.skipped[0].path == str(tmp_path / "sub" / "absent.ogg")
    labeled = read_csv_layout(meta, audio_dir=esc_like / "audio")
    assert [item.path.name for item in labeled.files] == ["1-mid-0.wav"] and labeled.files[0].label == "mid"
    assert [Path(s.path).name for s in labeled.skipped] == ["x.wav"]


def test_split_column_and_bad_csvs(esc_like: Path, tmp_path: Path) -> None:
    meta = tmp_path / "meta" / "dcase.csv"
    meta.parent.mkdir()
    (tmp_path / "audio").symlink_to(esc_like / "audio")
    meta.write_text("filename,split,label\n1-low-0.wav,train,low\n1-mid-0.wav,TEST,mid\n")
    labeled = read_csv_layout(meta)
    assert labeled.scheme == SPLIT and [item.fold for item in labeled.files] == ["train", "test"]
    meta.write_text("filename,split,label\n1-low-0.wav,validation,low\n")
    with pytest.raises(LayoutError, match="split must be"):
        read_csv_layout(meta)
    meta.write_text("filename,category\n1-low-0.wav,low\n")
    with pytest.raises(LayoutError, match="no fold or split column"):
        read_csv_layout(meta)
    meta.write_text("filename,fold,category\n1-low-0.wav,1,low\n1-mid-0.wav,abc,mid\n")  # a typo became a fold
    with pytest.raises(LayoutError, match=r"fold must be a whole number as in ESC-50 .*got 'abc' \(row 2\)"):
        read_csv_layout(meta)


def test_folder_layout_assigns_stratified_folds_by_name_hash(tmp_path: Path) -> None:
    for label in ("beach", "bus"):
        (tmp_path / "src" / label).mkdir(parents=True)
        for index in range(5):
            (tmp_path / "src" / label / f"{label}{index}.wav").write_bytes(b"")
    (tmp_path / "src" / "stray.wav").write_bytes(b"")  # no class folder: not an example
    labeled = read_folder_layout(tmp_path / "src", folds=2)
    assert labeled.scheme == FOLDS and len(labeled.files) == 10
    assert [(Path(s.path).name, s.reason) for s in labeled.skipped] == [("stray.wav", "not in a class folder")]
    for label in ("beach", "bus"):
        folds = sorted(item.fold for item in labeled.files if item.label == label)
        assert folds == ["1", "1", "1", "2", "2"]
    names = ["a.wav", "b.wav", "c.wav", "d.wav"]
    assert hashed_folds(names, 2) == hashed_folds(names, 2)
    assert dict(zip(names, hashed_folds(names, 2), strict=True)) == dict(
        zip(names[::-1], hashed_folds(names[::-1], 2), strict=True)
    )
    assert sorted(hashed_folds(names, 3)) == ["1", "1", "2", "3"]
    assert {item.fold for item in read_folder_layout(tmp_path / "src", folds=5).files} == {"1", "2", "3", "4", "5"}
    with pytest.raises(LayoutError, match=r"--folds 6: the largest class \(beach\) has 5 files"):
        read_folder_layout(tmp_path / "src", folds=6)  # it used to run as 5-fold without a word


def test_a_csv_listing_a_file_twice_is_refused(esc_like: Path, tmp_path: Path) -> None:
    meta = tmp_path / "meta" / "twice.csv"
    meta.parent.mkdir()
    (tmp_path / "audio").symlink_to(esc_like / "audio")
    meta.write_text("filename,fold,category\n1-low-0.wav,1,low\n1-mid-0.wav,2,mid\n./1-low-0.wav,2,mid\n")
    with pytest.raises(LayoutError, match=r"rows 1 and 3 both list .*1-low-0.wav; list each file once"):
        read_csv_layout(meta)  # under two labels, the probe used to score it as both


# ---- folds, averaging, SVM ------------------------------------------------------------------------------------
def test_evaluation_splits_never_mix_folds() -> None:
    folds = ["1", "2", "3", "10", "1", "2", "3", "10", "2"]
    splits = evaluation_splits(folds, FOLDS)
    assert [split.name for split in splits] == ["1", "2", "3", "10"]
    for split in splits:
        assert all(folds[i] != split.name for i in split.train)
        assert all(folds[i] == split.name for i in split.test)
        assert sorted([*split.train, *split.test]) == list(range(len(folds)))
    (fixed,) = evaluation_splits(["train", "test", "train"], SPLIT)
    assert fixed.train.tolist() == [0, 2] and fixed.test.tolist() == [1]
    with pytest.raises(ProbeError, match="at least 2 folds"):
        evaluation_splits(["1", "1"], FOLDS)


def test_run_probe_trains_each_fold_without_its_own_files(monkeypatch: pytest.MonkeyPatch) -> None:
    files = [LabeledFile(Path(f"f{i}"), "ab"[i % 2], str(i % 3 + 1)) for i in range(12)]
    file_index = np.repeat(np.arange(12), 4)  # 4 sub-clips per file
    rng = np.random.default_rng(0)
    label_signal = np.array([0.0 if files[i].label == "a" else 5.0 for i in file_index])
    features = np.stack([file_index.astype(float), label_signal + rng.normal(0, 0.1, len(file_index))], axis=1)
    trained_on: list[set[str]] = []

    def spy(rows: np.ndarray, labels: np.ndarray, c: float):
        trained_on.append({files[int(i)].fold for i in rows[:, 0]})
        return train_svm(rows, labels, c)

    monkeypatch.setattr(probe, "train_svm", spy)
    result = run_probe(FeatureTable(features, file_index, files, [], []), FOLDS)
    assert trained_on == [{"2", "3"}, {"1", "3"}, {"1", "2"}]
    assert [(fold.name, fold.train_files, fold.test_files) for fold in result.folds] == [
        ("1", 8, 4),
        ("2", 8, 4),
        ("3", 8, 4),
    ]
    assert result.mean_accuracy == 1.0 and len(result.true) == 12


def test_mean_by_file_averages_sub_clip_scores() -> None:
    scores = np.array(
        [
            [1.0, 0.0, -1.0],
            [3.0, 0.0, 1.0],  # file 7: mean (2, 0, 0) -> class 0
            [0.0, 4.0, 0.0],
            [0.0, -2.0, 3.0],  # file 2: mean (0, 1, 1.5) -> class 2, though one sub-clip says 1
            [0.5, 0.2, 0.1],
        ]
    )  # file 4 alone
    files, means = mean_by_file(scores, np.array([7, 7, 2, 2, 4]))
    assert files.tolist() == [2, 4, 7]
    np.testing.assert_allclose(means, [[0.0, 1.0, 1.5], [0.5, 0.2, 0.1], [2.0, 0.0, 0.0]])
    assert means.argmax(axis=1).tolist() == [2, 0, 0]


def test_a_class_that_no_training_fold_holds_is_an_error_not_a_score() -> None:
    """With fold 2's files of class "c" gone, fold 1 was scored 66.7% with "c" counted as certain misses, and
    classes split across folds gave 50.0% ± 0.0%: figures about the folds, not the features."""
    files = [
        LabeledFile(Path(f"f{i}"), label, fold)
        for i, (label, fold) in enumerate(
            [("a", "1"), ("b", "1"), ("c", "1"), ("a", "2"), ("b", "2"), ("a", "3"), ("b", "3")]
        )
    ]
    features = np.arange(len(files), dtype=float)[:, None]
    with pytest.raises(ProbeError, match=r"split 1: class\(es\) c of its test files have no training file"):
        run_probe(FeatureTable(features, np.arange(len(files)), files, [], []), FOLDS)


def test_class_scores_two_classes_and_a_class_missing_from_training() -> None:
    features = np.array([[0.0], [0.2], [1.0], [1.2]])
    model = train_svm(features, np.array(["b", "b", "c", "c"]), c=1.0)
    scores = class_scores(model, np.array([[0.1], [1.1]]), ["a", "b", "c"])
    assert np.isneginf(scores[:, 0]).all()
    assert scores.argmax(axis=1).tolist() == [1, 2]
    np.testing.assert_allclose(scores[:, 1], -scores[:, 2])


# ---- audio input ------------------------------------------------------------------------------------------------
def test_subclip_starts_are_equally_spaced_feature_frames() -> None:
    # 5 s at 16 kHz -> 499 feature frames; the last 200-frame window starts at frame 299 (sample 47,840)
    assert feature_frames(80_000) == 499
    assert subclip_starts(80_000, 10).tolist() == [0, 5280, 10560, 16000, 21280, 26560, 31840, 37280, 42560, 47840]
    assert subclip_starts(80_000, 2).tolist() == [0, 47840]
    assert subclip_starts(80_000, 1).tolist() == [149 * 160]
    assert subclip_starts(WINDOW_SAMPLES, 3).tolist() == [0, 0, 0]
    assert subclip_starts(10_000, 4).tolist() == [0, 0, 0, 0]


def test_subclip_filterbanks_slice_the_ingest_filterbank_and_pad_short_audio() -> None:
    signal = tone(500, 5.0, seed=1, rate=16_000).astype(np.float64)
    windows, padded = subclip_filterbanks(signal, 10)
    full = log_filterbank(signal)
    assert windows.shape == (10, 200, 40) and windows.dtype == np.float16 and not padded
    assert len(full) == feature_frames(len(signal))
    np.testing.assert_array_equal(windows[3], full[100:300].astype(np.float16))
    np.testing.assert_array_equal(windows[9], full[299:499].astype(np.float16))
    short, padded = subclip_filterbanks(signal[:16_000], 3)
    assert padded and short.shape == (3, 200, 40)
    expected = log_filterbank(np.concatenate([signal[:16_000], np.zeros(WINDOW_SAMPLES - 16_000)]))
    np.testing.assert_array_equal(short[0], expected.astype(np.float16))


def test_decode_reads_any_container_to_16k_mono(tmp_path: Path) -> None:
    samples = tone(800, 1.5, seed=2)
    lengths = {suffix: len(decode_mono_16k(write_audio(tmp_path / f"a{suffix}", samples))) for suffix in _CODECS}
    for suffix, length in lengths.items():  # 1.5 s; lossy codecs may add up to one codec frame
        assert 24_000 <= length <= 24_000 + 1_200, (suffix, length)
    assert lengths[".wav"] == lengths[".flac"] == 24_000
    video = write_video(tmp_path / "v.mp4", tone(800, 2.0, seed=3, rate=16_000))
    assert abs(len(decode_mono_16k(video)) - 32_000) <= 1_100
    with pytest.raises(DecodeError, match="no audio stream"):
        decode_mono_16k(write_video(tmp_path / "silent.mp4", None))
    with wave.open(str(tmp_path / "empty.wav"), "wb") as empty:  # a WAV header and no samples
        empty.setnchannels(1)
        empty.setsampwidth(2)
        empty.setframerate(RATE)
    with pytest.raises(DecodeError, match="no decodable audio"):
        decode_mono_16k(tmp_path / "empty.wav")
    (tmp_path / "text.wav").write_text("not audio at all\n" * 50)
    with pytest.raises(DecodeError, match="cannot decode"):
        decode_mono_16k(tmp_path / "text.wav")


# ---- features ---------------------------------------------------------------------------------------------------
def test_mfcc_baseline_separates_the_synthetic_classes(esc_like: Path) -> None:
    labeled = read_csv_layout(esc_like / "meta" / "set.csv")
    table = decode_table(labeled.files, lambda s: (mfcc_stats(s)[None], False), quiet_progress(18))
    assert table.features.shape == (18, mfcc_dim()) == (18, 26)
    sine = 10_000 * np.sin(2 * np.pi * 1000 * (np.arange(16_000) + 0.5) / 16_000)
    with_zcr = mfcc_stats(sine, zcr=True)
    coefficients = mfcc(sine, samplerate=16_000)  # python_speech_features defaults: 25 ms, 10 ms, 13 ceps
    np.testing.assert_allclose(with_zcr[:26], np.r_[coefficients.mean(0), coefficients.std(0)], rtol=1e-5)
    assert with_zcr.shape == (mfcc_dim(zcr=True),) == (28,)
    # 16-sample period, 8 samples per sign: 49 sign changes in the 399 sample pairs of each 400-sample frame
    assert with_zcr[26] == pytest.approx(49 / 399, abs=1e-3) and with_zcr[27] < 1e-2
    result = run_probe(table, labeled.scheme)
    assert [(fold.name, fold.accuracy) for fold in result.folds] == [("1", 1.0), ("2", 1.0)]
    assert result.confusion().tolist() == [[6, 0, 0], [0, 6, 0], [0, 0, 6]]


def test_random_subnet_features_have_the_documented_shape() -> None:
    windows, _ = subclip_filterbanks(tone(700, 3.0, seed=4, rate=16_000).astype(np.float64), 2)
    mean, std = window_stats(windows)
    frames = windows.astype(np.float64).reshape(-1, 40)
    np.testing.assert_allclose(mean, frames.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(std, frames.std(axis=0), rtol=1e-6)
    net = random_audio_net(seed=0)
    features = AudioConv5Extractor(net, mean, std, pool=(4, 1))(windows)
    assert features.shape == (2, 1024) and features.dtype == np.float32 and (features >= 0).all()
    normalized = (torch.from_numpy(windows[1].astype(np.float32)).T - torch.tensor(mean)[:, None].float()) / (
        torch.tensor(std)[:, None].float()
    )
    with torch.no_grad():
        conv5 = net.conv5_features(normalized[None, None])
    assert tuple(conv5.shape) == (1, 256, 20, 50)  # the full map of a 2-s window: 256,000 values
    bands_max = conv5[0].reshape(256, 4, 5, 50).amax(dim=(2, 3)).flatten().numpy()  # 4 bands of 5 rows, all time
    np.testing.assert_allclose(features[1], bands_max, rtol=1e-4, atol=1e-5)
    assert AudioConv5Extractor(net, mean, std, pool=(2, 2)).feature_dim == 1024
    small = AudioConv5Extractor(random_audio_net(seed=0, width=16), mean, std)(windows)
    again = AudioConv5Extractor(random_audio_net(seed=0, width=16), mean, std, batch_size=1)(windows)
    other = AudioConv5Extractor(random_audio_net(seed=1, width=16), mean, std)(windows)
    assert small.shape == (2, 64 * 4)
    np.testing.assert_allclose(again, small, rtol=1e-4, atol=1e-5)
    assert not np.allclose(other, small)


# ---- the command line -------------------------------------------------------------------------------------------
def test_cli_writes_results_json_and_confusion_png(
    esc_like: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "res" / "RESULTS.json"
    assert main(["--meta", str(esc_like / "meta" / "set.csv"), "--features", "mfcc", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["mean_accuracy"] == 1.0 and results["folds"] == {"1": 1.0, "2": 1.0}
    assert results["std_accuracy"] == 0.0 and results["n_files"] == 18 and results["features"] == "mfcc"
    assert results["classes"] == ["high", "low", "mid"] and results["feature_dim"] == 26
    png = tmp_path / "res" / "RESULTS-confusion.png"
    assert results["confusion_png"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "mean ± std" in capsys.readouterr().out


def test_cli_skips_bad_files_pads_short_ones_and_refuses_bad_flags(
    esc_like: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio = tmp_path / "audio"
    audio.mkdir()
    for item in read_csv_layout(esc_like / "meta" / "set.csv").files:
        (audio / item.path.name).symlink_to(item.path)
    write_audio(audio / "2-low-short.wav", tone(250, 1.0, seed=9))
    (audio / "1-mid-broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 20)
    rows = (esc_like / "meta" / "set.csv").read_text().splitlines()
    extra = ["2-low-short.wav,2,0,low", "1-mid-broken.wav,1,1,mid", "1-high-missing.wav,1,2,high"]
    meta = tmp_path / "meta" / "set.csv"
    meta.parent.mkdir()
    meta.write_text("\n".join([*rows, *extra]) + "\n")
    out = tmp_path / "random.json"
    argv = ["--meta", str(meta), "--features", "random", "--width", "8", "--subclips", "2", "--out", str(out)]
    assert main(argv) == 0
    results = json.loads(out.read_text())
    assert results["n_files"] == 19 and results["n_subclip_rows"] == 38 and results["feature_dim"] == 32 * 4
    assert results["padded_files"] == 1 and results["padded"] == [str(audio / "2-low-short.wav")]
    reasons = {Path(item["path"]).name: item["reason"] for item in results["skipped"]}
    assert reasons.keys() == {"1-mid-broken.wav", "1-high-missing.wav"}
    assert reasons["1-high-missing.wav"] == "file not found" and reasons["1-mid-broken.wav"].startswith("cannot")
    assert results["normalization"] == "all probed sub-clip frames (no labels)"
    assert "skipped" in capsys.readouterr().err

    only_missing = tmp_path / "meta" / "none.csv"
    only_missing.write_text("filename,fold,category\nnope1.wav,1,a\nnope2.wav,2,b\n")
    assert main(["--meta", str(only_missing), "--features", "mfcc", "--out", str(tmp_path / "x.json")]) == 1
    assert "no usable audio files" in capsys.readouterr().err
    for bad, message in (
        (["--features", "spectrogram"], "invalid choice"),
        (["--features", "avts"], "--features avts needs --checkpoint"),
        (["--features", "mfcc", "--stats", "s.json"], "--stats only applies to --features random"),
        (["--features", "mfcc", "--src", str(audio)], "--meta and --src cannot be combined"),
        (["--features", "random", "--pool", "4by1"], "expected BANDSxTIME"),
        (["--features", "random", "--subclips", "0"], "--subclips must be in [1, 100]"),
        (["--features", "mfcc", "--folds", "3"], "--folds applies to --src: a CSV brings its own folds"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["--meta", str(meta), *bad])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--features", "mfcc"])
    assert exit_info.value.code == 2 and "one of --meta or --src is required" in capsys.readouterr().err


def test_cli_reports_a_missing_or_foreign_checkpoint_in_one_line(
    esc_like: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_checkpoint(tmp_path / "finetune", {"model": {}, "state": {"epoch": 1}, "classes": ["a", "b"]})
    for checkpoint, message in (
        (tmp_path / "missing.pt", "no checkpoint at"),
        (tmp_path / "finetune" / "last.pt", "is not an avts-train checkpoint"),
    ):
        argv = [
            "--meta",
            str(esc_like / "meta" / "set.csv"),
            "--features",
            "avts",
            "--checkpoint",
            str(checkpoint),
            "--subclips",
            "1",
            "--out",
            str(tmp_path / "avts.json"),
            "--plain",
        ]
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("avts-probe: ") and message in err[-1] and "Traceback" not in "".join(err)
    assert not (tmp_path / "avts.json").exists()


def test_cli_avts_features_use_the_checkpoint_subnet_and_its_stats(
    esc_like: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded: list[Path] = []

    def fake_loader(checkpoint: Path) -> tuple[torch.nn.Module, list[float], list[float]]:
        loaded.append(checkpoint)
        return random_audio_net(seed=5, width=8), [-5.0] * 40, [4.0] * 40

    monkeypatch.setattr(probe_cli, "load_audio_subnet", fake_loader)
    out = tmp_path / "avts.json"
    argv = [
        "--meta",
        str(esc_like / "meta" / "set.csv"),
        "--features",
        "avts",
        "--checkpoint",
        str(tmp_path / "c.pt"),
        "--subclips",
        "3",
        "--pool",
        "2x2",
        "--out",
        str(out),
    ]
    assert main(argv) == 0 and loaded == [tmp_path / "c.pt"]
    results = json.loads(out.read_text())
    assert results["normalization"] == f"stats stored in {tmp_path / 'c.pt'}" and results["pool"] == [2, 2]
    assert results["n_subclip_rows"] == 18 * 3 and results["feature_dim"] == 32 * 2 * 2 and "seed" not in results


# ---- the real ESC-10 subset, when present -------------------------------------------------------------------------
def test_esc50_mini_layout_and_sub_clips() -> None:
    candidates = [Path(p) for p in (os.environ.get("AVTS_SHARED_DATA"), REPO.parent / "shared" / "data") if p]
    folder = next((p / "esc50_mini" for p in candidates if (p / "esc50_mini" / "esc50_mini.csv").is_file()), None)
    if folder is None:
        pytest.skip(f"esc50_mini not found under {[str(p) for p in candidates]} (set AVTS_SHARED_DATA)")
    labeled = read_csv_layout(folder / "esc50_mini.csv")
    assert len(labeled.files) == 160 and not labeled.skipped
    assert {item.fold for item in labeled.files} == {"1", "2"} and len({item.label for item in labeled.files}) == 10
    first = labeled.files[0]
    assert first.path == folder / "audio" / "1-100032-A-0.ogg" and first.label == "dog"
    signal = decode_mono_16k(first.path)  # 220,544 samples at 44.1 kHz
    assert abs(len(signal) - 80_016) <= 16
    windows, padded = subclip_filterbanks(signal, 10)
    assert windows.shape == (10, 200, 40) and not padded
