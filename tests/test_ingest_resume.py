"""avts-ingest reruns: resume after a SIGKILL, worker-count independence, and the settings guard.

The corpus is 12 three-second camera-like clips made here (different keys, two class folders, several
frame sizes and rates). A reference run goes uninterrupted; the other runs must reproduce its shards byte
for byte.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import av
import pandas as pd
import pytest

from tests.conftest import REPO, make_av_clip, run_cli

# class folder -> (frame size, frame rate, audio rate, audio channels) of its clips
KINDS = {
    "speech": (454, 256, "25", 16000, 2),
    "scenes": (320, 240, "30000/1001", 44100, 1),
}
CLIP_S = 3.0
ARGS = ["--engine", "processes", "--shard-size", "2", "--val-fraction", "0.2"]
SHARD_NAME = re.compile(r"^(val-)?\d{4}\.tar$")
PARTIAL_NAME = re.compile(r"^\.(val-)?\d{4}\.tar\.tmp-[0-9a-f]+$")
OWN_HIDDEN = {".avts-shards.json", ".avts-ingest.lock"}  # the ownership marker and the lock


def ingest(src: Path, root: Path, *extra: str, workers: int = 1) -> subprocess.CompletedProcess:
    return run_cli(
        "pipeline.cli",
        "--src",
        str(src),
        "--out",
        str(root / "shards"),
        *ARGS,
        "--workers",
        str(workers),
        *extra,
        timeout=300,
    )


def command(src: Path, root: Path, workers: int = 1) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipeline.cli",
        "--src",
        str(src),
        "--out",
        str(root / "shards"),
        *ARGS,
        "--workers",
        str(workers),
    ]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shard_digests(root: Path) -> dict[str, str]:
    return {path.name: sha256(path) for path in sorted((root / "shards").glob("*.tar"))}


def table(root: Path, name: str) -> pd.DataFrame:
    frame = pd.read_parquet(root / "manifests" / name)
    sort_by = "key" if "key" in frame else "shard"
    return frame.sort_values(sort_by).reset_index(drop=True)


def oneline(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("resume") / "src"
    for index in range(12):
        folder = "speech" if index % 2 else "scenes"
        width, height, fps, rate, channels = KINDS[folder]
        make_av_clip(
            src / folder / f"clip {index:02d}.mp4",
            CLIP_S,
            width=width,
            height=height,
            fps=fps,
            sample_rate=rate,
            channels=channels,
            seed=index,
        )
    assert len(list(src.rglob("*.mp4"))) == 12
    return src


@pytest.fixture(scope="module")
def reference(corpus: Path) -> Path:
    """An uninterrupted run with one worker."""
    root = corpus.parent / "reference"
    result = ingest(corpus, root)
    assert result.returncode == 0, result.stderr
    videos = table(root, "videos.parquet")
    assert len(videos) == 12 and (videos.status == "ok").all(), videos[["path", "reason"]]
    assert set(videos.split) == {"train", "val"}  # both kinds of shard are exercised
    assert len(shard_digests(root)) >= 6
    return root


def test_resume_after_sigkill_gives_the_same_shards_and_manifests(corpus: Path, reference: Path) -> None:
    root = corpus.parent / "killed"
    shards = root / "shards"
    log = root.parent / "killed.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command(corpus, root),
            cwd=REPO,
            env={**os.environ, "CI": "true"},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while not (shards.is_dir() and any(SHARD_NAME.match(p.name) for p in shards.iterdir())):
            assert process.poll() is None, f"the run ended before it could be interrupted: {log.read_text()}"
            assert time.monotonic() < deadline, "no shard appeared within 120 s"
            time.sleep(0.005)
        assert process.poll() is None, "the run finished before it could be interrupted"
        os.killpg(process.pid, signal.SIGKILL)  # the CLI and its pool workers together
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    expected = shard_digests(reference)
    assert not (root / "manifests" / "videos.parquet").exists()  # the run really did not finish
    visible = [p for p in shards.iterdir() if not p.name.startswith(".")]
    hidden = [p for p in shards.iterdir() if p.name.startswith(".") and p.name not in OWN_HIDDEN]
    assert all(PARTIAL_NAME.match(p.name) for p in hidden), hidden
    assert visible and all(SHARD_NAME.match(p.name) for p in visible), visible
    assert len(visible) < len(expected)
    for path in visible:  # whatever sits under a final name is complete: the same bytes as the reference
        assert sha256(path) == expected[path.name], path.name
    kept = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in visible}

    result = ingest(corpus, root)
    assert result.returncode == 0, result.stderr
    assert f"({len(kept)} kept from an earlier run)" in oneline(result.stderr), result.stderr
    for name, identity in kept.items():  # kept shards were not rewritten
        stat = (shards / name).stat()
        assert (stat.st_ino, stat.st_mtime_ns) == identity, name
    assert sorted(p.name for p in shards.iterdir()) == sorted([*expected, *OWN_HIDDEN])  # partials cleaned up
    assert shard_digests(root) == expected
    pd.testing.assert_frame_equal(table(root, "videos.parquet"), table(reference, "videos.parquet"))
    pd.testing.assert_frame_equal(table(root, "shards.parquet"), table(reference, "shards.parquet"))
    assert json.loads((root / "manifests" / "stats.json").read_text()) == json.loads(
        (reference / "manifests" / "stats.json").read_text()
    )


def test_two_workers_give_the_same_bytes_as_one(corpus: Path, reference: Path) -> None:
    root = corpus.parent / "two_workers"
    result = ingest(corpus, root, workers=2)
    assert result.returncode == 0, result.stderr
    assert shard_digests(root) == shard_digests(reference)
    pd.testing.assert_frame_equal(
        pd.read_parquet(root / "manifests" / "shards.parquet"),
        pd.read_parquet(reference / "manifests" / "shards.parquet"),
    )
    pd.testing.assert_frame_equal(table(root, "videos.parquet"), table(reference, "videos.parquet"))


def stored_short_sides(root: Path) -> set[int]:
    sides = set()
    for path in (root / "shards").glob("*.tar"):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".mp4"):
                    with av.open(io.BytesIO(tar.extractfile(member).read())) as container:
                        stream = container.streams.video[0]
                        sides.add(min(stream.width, stream.height))
    return sides


def test_other_settings_need_overwrite(corpus: Path, reference: Path) -> None:
    root = corpus.parent / "guard"
    shutil.copytree(reference, root)  # an output folder made with --short-side 128
    before = shard_digests(root)
    settings = (root / "manifests" / "ingest.json").read_text()

    refused = ingest(corpus, root, "--short-side", "64")
    message = oneline(refused.stderr)
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    assert "--overwrite" in message and "short_side" in message, refused.stderr
    assert shard_digests(root) == before  # nothing was touched
    assert (root / "manifests" / "ingest.json").read_text() == settings

    redone = ingest(corpus, root, "--short-side", "64", "--overwrite", workers=2)
    assert redone.returncode == 0, redone.stderr
    assert "(0 kept from an earlier run)" in oneline(redone.stderr)
    assert json.loads((root / "manifests" / "ingest.json").read_text())["settings"]["short_side"] == 64
    assert stored_short_sides(root) == {64}
    assert sorted(shard_digests(root)) == sorted(before)  # same plan, new contents
    assert all(shard_digests(root)[name] != digest for name, digest in before.items())
    videos = table(root, "videos.parquet")
    assert len(videos) == 12 and (videos.status == "ok").all()


def test_a_source_file_replaced_since_is_redone_on_resume(corpus: Path, reference: Path, tmp_path: Path) -> None:
    """A rerun kept a shard whose source file had been replaced (a re-download, a fixed copy): stale samples
    under the new file's name. Its size no longer matches the row, so its shard is redone, and the result
    equals a fresh run over the changed folder."""
    src = tmp_path / "src"
    shutil.copytree(corpus, src)
    root = tmp_path / "run"
    assert ingest(src, root).returncode == 0
    before = shard_digests(root)
    videos = table(root, "videos.parquet")
    replaced = videos.loc[videos.split == "train"].iloc[0]
    make_av_clip(src / replaced.path, CLIP_S + 1.0, width=320, height=240, seed=99)  # other content, other size
    assert (src / replaced.path).stat().st_size != replaced.source_bytes

    rerun = ingest(src, root)
    assert rerun.returncode == 0, rerun.stderr
    said = oneline(rerun.stderr)
    assert (
        f"redoing 1 shard(s) of an earlier run whose videos or source files have changed since: {replaced.shard}"
        in (said)
    )
    assert f"({len(before) - 1} kept from an earlier run)" in said
    after = shard_digests(root)
    assert [name for name in before if after[name] != before[name]] == [replaced.shard]
    row = table(root, "videos.parquet").set_index("path").loc[replaced.path]
    assert row.duration_s == pytest.approx(CLIP_S + 1.0, abs=0.05)

    fresh = tmp_path / "fresh"
    assert ingest(src, fresh).returncode == 0
    assert shard_digests(fresh) == after


def test_a_shard_cut_short_since_is_redone_on_resume(corpus: Path, reference: Path, tmp_path: Path) -> None:
    """A rerun kept a shard cut to 100,000 bytes under its final name (a bad copy, a full disk elsewhere), while
    shards.parquet still gave its old size and checksum. Its size no longer matches its record: it is redone."""
    root = tmp_path / "run"
    shutil.copytree(reference, root)
    victim = sorted(shard_digests(root))[0]
    with open(root / "shards" / victim, "r+b") as handle:
        handle.truncate(100_000)
    rerun = ingest(corpus, root)
    assert rerun.returncode == 0, rerun.stderr
    assert f"({len(shard_digests(reference)) - 1} kept from an earlier run)" in oneline(rerun.stderr)
    assert shard_digests(root) == shard_digests(reference)


def test_threads_per_worker_is_a_content_setting(corpus: Path, reference: Path, tmp_path: Path) -> None:
    """x264 with two threads encodes other bytes: resuming a one-thread output with two threads mixed shards
    of both settings. It is now refused like any other content setting."""
    root = tmp_path / "run"
    shutil.copytree(reference, root)
    refused = ingest(corpus, root, "--threads-per-worker", "2")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "threads_per_worker" in oneline(refused.stderr) and "--overwrite" in oneline(refused.stderr)
    assert shard_digests(root) == shard_digests(reference)


def test_outputs_equal_to_the_source_or_empty_are_refused_before_anything_is_written(
    corpus: Path, tmp_path: Path
) -> None:
    """--manifests equal to --src made every rerun ingest its own manifests as videos; an empty --src (an unset
    variable) ingested the current folder; a refused --out equal to --src left a lock file in the source."""
    src = tmp_path / "src"
    shutil.copytree(corpus, src)
    listing = sorted(src.rglob("*"))
    for extra, said in (
        (["--src", str(src), "--out", str(tmp_path / "out"), "--manifests", str(src)], "--manifests must be another"),
        (["--src", str(src), "--out", str(src)], "--out must be another folder than --src"),
        (["--src", "", "--out", str(tmp_path / "out")], "an empty path"),
        (["--src", str(src), "--out", ""], "--out must not be empty"),
    ):
        result = run_cli("pipeline.cli", *extra, "--plain", timeout=60)
        assert result.returncode == 2 and "Traceback" not in result.stderr and said in result.stderr, result.stderr
    assert sorted(src.rglob("*")) == listing and not (tmp_path / "out").exists()


def test_two_names_with_one_key_are_named_in_a_one_line_error(tmp_path: Path) -> None:
    """A file named with the byte 0xE9 (not UTF-8) and one named with the text ``\\xe9`` print alike and got the
    same key: a traceback. Now one line names both files."""
    src = tmp_path / "src" / "a"
    make_av_clip(src / "one.mp4", CLIP_S)
    os.rename(src / "one.mp4", os.fsencode(src) + b"/caf\xe9.mp4")
    shutil.copy(os.fsencode(src) + b"/caf\xe9.mp4", src / "caf\\xe9.mp4")
    result = run_cli("pipeline.cli", "--src", str(src.parent), "--out", str(tmp_path / "out"), "--plain", timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "2 files map to the same sample key" in oneline(result.stderr) and "rename one of each" in result.stderr


def test_a_source_file_rewritten_at_the_same_size_is_redone_on_resume(corpus: Path, tmp_path: Path) -> None:
    """A download manager preallocates the file's final size: the first run met zeros ("not a media file"), and
    every rerun kept that failure after the real file had landed at the same size. Its modification time
    changed, so its shard is now redone."""
    src = tmp_path / "src"
    shutil.copytree(corpus, src)
    real = sorted(src.rglob("*.mp4"))[0]
    content = real.read_bytes()
    real.write_bytes(bytes(len(content)))  # the download in progress: its final size, all zeros
    root = tmp_path / "run"
    assert ingest(src, root).returncode == 0
    row = table(root, "videos.parquet").set_index("path").loc[real.relative_to(src).as_posix()]
    assert row.status == "failed" and row.reason == "not a media file"

    real.write_bytes(content)  # the download finished: same size, other bytes, a later modification time
    rerun = ingest(src, root)
    assert rerun.returncode == 0, rerun.stderr
    assert "redoing 1 shard(s) of an earlier run whose videos or source files have changed since" in oneline(
        rerun.stderr
    )
    row = table(root, "videos.parquet").set_index("path").loc[real.relative_to(src).as_posix()]
    assert row.status == "ok"
