"""avts-ingest and avts-train on object storage and over HTTP, against real servers on loopback.

An S3 server (moto, in its own process) and the standard library's http.server. Five 3-s clips are ingested
(shard size 2: ``0000.tar``, ``0001.tar``, ``val-0000.tar``) once into a local folder and once into
``s3://<bucket>/run/{shards,meta}``; the manifests are put in ``meta/``, not the default ``manifests/``, so that
finding them through the shard folder's marker is what is tested. Then: a shard upload killed midway leaves no
object under the shard's name and the rerun resumes to the same bytes; avts-train streams the shards from S3
and from HTTP, also when the server drops the connection halfway through a shard.

Skipped without moto[server] and s3fs (``pip install -e '.[dev]'``). 46-49 s wall (17 s CPU) on a shared 2-core
box (load average 6-8).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from avts import storage
from tests.conftest import REPO, make_av_clip
from tests.test_storage import _launch_moto, _wait_ready, http_server
from tests.test_train import TINY as TRAIN_TINY

FAST = ["--engine", "processes", "--workers", "1", "--shard-size", "2", "--val-fraction", "0.25", "--short-side", "64"]
TINY = [*TRAIN_TINY, "--device", "cpu", "--epochs", "1"]
SHARDS = ["0000.tar", "0001.tar", "val-0000.tar"]
OWN_LOCK = ".avts-ingest.lock"  # local folders only: a bucket cannot be locked


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A moto S3 server, the standard AWS variables pointing at it (for this process and the ones it starts),
    and TMPDIR set to an empty folder, which is returned (where ingest workers stage shards)."""
    pytest.importorskip("s3fs", reason="s3fs not installed: pip install 'avts[s3]'")
    pytest.importorskip("moto.server", reason="moto[server] not installed: pip install 'moto[server]'")
    import s3fs

    process, endpoint = _launch_moto()
    staging = tmp_path_factory.mktemp("worker_tmp")
    with pytest.MonkeyPatch.context() as patch:
        for name in (
            "AWS_PROFILE",
            "AWS_ENDPOINT_URL_S3",
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
            "AWS_SESSION_TOKEN",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
        ):
            patch.delenv(name, raising=False)
        for name, value in (
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("TMPDIR", str(staging)),
            ("CI", "true"),
        ):
            patch.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()
        try:
            _wait_ready(process, endpoint)
            yield staging
        finally:
            process.kill()  # a throw-away in-memory server
            process.wait()
            s3fs.S3FileSystem.clear_instance_cache()


def new_bucket() -> str:
    """``s3://<fresh bucket>`` on the test server."""
    name = f"avts-{uuid.uuid4().hex[:12]}"
    storage.filesystem(f"s3://{name}")[0].mkdir(name)
    return f"s3://{name}"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("object_storage") / "src"
    for index in range(5):
        make_av_clip(src / f"clip{index}.mp4", 3.0, width=96, height=64, seed=index)
    return src


def ingest(src: Path, out: str, meta: str) -> tuple[int, str]:
    """avts-ingest in this process; its exit status and its messages (as one line)."""
    from pipeline.cli import main

    messages = io.StringIO()
    with contextlib.redirect_stderr(messages):
        status = main(["--src", str(src), "--out", out, "--manifests", meta, *FAST])
    return status, " ".join(messages.getvalue().split())


@pytest.fixture(scope="module")
def local_run(clips: Path) -> Path:
    """The same input ingested into a local folder: ``<root>/shards`` and ``<root>/meta``."""
    root = clips.parent / "local"
    status, message = ingest(clips, str(root / "shards"), str(root / "meta"))
    assert status == 0, message
    assert sorted(p.name for p in (root / "shards").glob("*.tar")) == SHARDS
    return root


@pytest.fixture(scope="module")
def s3_run(s3: Path, clips: Path) -> tuple[str, str]:
    """The input ingested into ``s3://<bucket>/run/shards`` and ``…/run/meta``: (the run's URL, the messages)."""
    run = storage.join(new_bucket(), "run")
    status, message = ingest(clips, storage.join(run, "shards"), storage.join(run, "meta"))
    assert status == 0, message
    return run, message


def objects(prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix``, by its name relative to the prefix."""
    fs, path = storage.filesystem(prefix)
    return {key.removeprefix(path + "/"): fs.cat_file(key) for key in fs.find(path, refresh=True)}


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def parquet(data: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data))


# --------------------------------------------------------------------------------------------- ingest


def test_ingest_to_s3_writes_what_a_local_run_writes(s3: Path, s3_run: tuple[str, str], local_run: Path) -> None:
    run, message = s3_run
    remote, local = objects(run), local_files(local_run)
    expected = {name for name in local if not name.endswith(OWN_LOCK)}
    assert set(remote) == expected  # nothing else (no temporary objects) and nothing missing
    assert {name for name in remote if name.startswith("shards/")} == {
        "shards/.avts-shards.json",
        *(f"shards/{name}" for name in SHARDS),
    }
    assert {"meta/parts/0000.tar.json", "meta/stats.json", "meta/videos.parquet", "meta/ingest.json"} < set(remote)
    for name in SHARDS:  # the same writer: the same bytes
        assert remote[f"shards/{name}"] == local[f"shards/{name}"], name
    assert json.loads(remote["meta/stats.json"]) == json.loads(local["meta/stats.json"])
    pd.testing.assert_frame_equal(parquet(remote["meta/videos.parquet"]), parquet(local["meta/videos.parquet"]))
    pd.testing.assert_frame_equal(parquet(remote["meta/shards.parquet"]), parquet(local["meta/shards.parquet"]))
    assert json.loads(remote["shards/.avts-shards.json"])["manifests"] == "../meta"  # relative within the bucket
    assert json.loads(remote["meta/ingest.json"])["shards"] == "../shards"
    assert "cannot be locked" in message and "one job per prefix" in message
    assert not list(s3.glob("avts-shard-*")), "staged shards were left in the workers' temporary folder"


def test_the_settings_guard_and_the_binding_hold_on_s3(s3_run: tuple[str, str], clips: Path) -> None:
    run, _ = s3_run
    before = objects(run)
    from pipeline.cli import main

    messages = io.StringIO()
    with contextlib.redirect_stderr(messages):
        other_settings = main(
            [
                "--src",
                str(clips),
                "--out",
                storage.join(run, "shards"),
                "--manifests",
                storage.join(run, "meta"),
                *FAST,
                "--short-side",
                "32",
            ]
        )
        other_manifests = main(
            [
                "--src",
                str(clips),
                "--out",
                storage.join(run, "shards"),
                "--manifests",
                storage.join(run, "elsewhere"),
                *FAST,
            ]
        )
    said = " ".join(messages.getvalue().split())
    assert other_settings == 1 and "other settings (short_side)" in said and "--overwrite" in said, said
    assert other_manifests == 1 and f"belong to the manifests in {run}/meta" in said, said
    assert objects(run) == before  # nothing written or removed


def test_a_missing_bucket_is_a_clear_message(s3: Path, clips: Path, tmp_path: Path) -> None:
    from trainer.cli import main as train

    status, said = ingest(clips, "s3://no-such-bucket-avts/run/shards", "s3://no-such-bucket-avts/run/meta")
    assert (
        status == 1
        and "avts-ingest: s3://no-such-bucket-avts/run/shards: bucket 'no-such-bucket-avts' does "
        f"not exist at {os.environ['AWS_ENDPOINT_URL']}"
        in said
    ), said
    assert "warning" not in said  # the clean-up that could not run is not reported over the cause
    messages = io.StringIO()
    with contextlib.redirect_stderr(messages):
        status = train(["--shards", "s3://no-such-bucket-avts/run/shards/{0000..0001}.tar", "--out", str(tmp_path)])
    assert status == 1 and "bucket 'no-such-bucket-avts' does not exist" in messages.getvalue()


class UploadStaller:
    """A loopback TCP proxy to the S3 server that forwards everything, except that once a request starting with
    ``request`` has sent ``keep`` bytes it holds the rest: an upload caught midway, as when its uploader dies.
    :meth:`close` then ends the held request early, so the server sees a truncated upload."""

    def __init__(self, endpoint: str, request: bytes, keep: int) -> None:
        self.upstream = ("127.0.0.1", int(endpoint.rsplit(":", 1)[1]))
        self.request, self.keep = request, keep
        self.stalled, self.released = threading.Event(), threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        self.threads = [self._start(self._accept)]

    def _start(self, target, *args) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        return thread

    def _accept(self) -> None:
        self.listener.settimeout(0.05)
        while not self.released.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            upstream = socket.create_connection(self.upstream)
            self.sockets += [client, upstream]
            self.threads += [
                self._start(self._pump, upstream, client, None),
                self._start(self._pump, client, upstream, self.request),
            ]

    def _pump(self, source: socket.socket, target: socket.socket, watch: bytes | None) -> None:
        budget: int | None = None
        with contextlib.suppress(OSError):
            while data := source.recv(1 << 16):
                if watch is not None and budget is None and watch in data:
                    budget = data.index(watch) + self.keep
                if budget is not None and len(data) >= budget:
                    target.sendall(data[:budget])
                    self.stalled.set()
                    self.released.wait(60)
                    break
                target.sendall(data)
                budget = None if budget is None else budget - len(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.released.set()
        for thread in self.threads:
            thread.join(10)
        for sock in [self.listener, *self.sockets]:
            sock.close()


def test_a_killed_upload_leaves_no_shard_and_the_rerun_resumes(s3: Path, clips: Path, local_run: Path) -> None:
    run = storage.join(new_bucket(), "run")
    out, meta = storage.join(run, "shards"), storage.join(run, "meta")
    bucket_path = run.removeprefix("s3://")
    staller = UploadStaller(os.environ["AWS_ENDPOINT_URL"], f"PUT /{bucket_path}/shards/0001.tar".encode(), 60_000)
    command = [sys.executable, "-m", "pipeline.cli", "--src", str(clips), "--out", out, "--manifests", meta, *FAST]
    log = clips.parent / "killed.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, "AWS_ENDPOINT_URL": staller.endpoint},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        stalled = staller.stalled.wait(120)  # 60 kB of the 133 kB shard are on their way
        os.killpg(process.pid, signal.SIGKILL)  # the CLI and its pool worker, mid-upload
        process.wait(timeout=30)
        assert stalled, f"the upload of 0001.tar was never caught midway: {log.read_text()}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        staller.close()

    visible = {storage.basename(url) for split in ("train", "val") for url in storage.list_shards(out, split)}
    assert "0001.tar" not in visible, "a killed upload left an object under the shard's final name"
    assert "0000.tar" in visible and not storage.exists(storage.join(meta, "videos.parquet"))
    for name in visible:  # whatever sits under a final name is complete
        assert storage.read_bytes(storage.join(out, name)) == (local_run / "shards" / name).read_bytes(), name

    # a big shard's multipart upload killed midway leaves invisible parts: the rerun aborts those under its prefix
    fs, bucket = storage.filesystem(run)[0], bucket_path.split("/")[0]
    for key in ("run/shards/0002.tar", "run/shards_of_another_job/0000.tar"):
        fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)
    status, message = ingest(clips, out, meta)
    assert status == 0, message
    assert f"({len(visible)} kept from an earlier run)" in message, message
    assert [upload["Key"] for upload in fs.list_multipart_uploads(bucket)] == ["run/shards_of_another_job/0000.tar"]
    remote = objects(run)
    assert sorted(name for name in remote if name.endswith(".tar")) == [f"shards/{name}" for name in SHARDS]
    for name in SHARDS:
        assert remote[f"shards/{name}"] == (local_run / "shards" / name).read_bytes(), name


# ---------------------------------------------------------------------------------------------- train


def train_in_process(shards: str, out: Path, *extra: str) -> tuple[int, str]:
    """avts-train in this process; its exit status and its messages."""
    from trainer.cli import main

    messages = io.StringIO()
    with contextlib.redirect_stderr(messages):
        status = main(["--shards", shards, "--out", str(out), *TINY, *extra])
    return status, messages.getvalue()


def records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def checkpoint_stats(run_dir: Path) -> list[float]:
    import torch

    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["stats"]["mean"]


def test_train_streams_s3_shards(s3_run: tuple[str, str], tmp_path: Path) -> None:
    from trainer.shardlist import default_stats_path, expand_shards

    run, _ = s3_run
    shards, stats = storage.join(run, "shards"), storage.join(run, "meta", "stats.json")
    expected_mean = json.loads(storage.read_text(stats))["mean"]
    with pytest.raises(FileNotFoundError, match=r"1 shard\(s\) .* do not exist, e\.g\. s3://.*/0002\.tar"):
        expand_shards(f"{shards}/{{0000..0002}}.tar")  # a typo does not train on nothing
    assert default_stats_path([f"{shards}/0000.tar"]) == stats  # through the marker (meta/, not manifests/)

    explicit = tmp_path / "explicit"  # a brace pattern, --stats as a URL, a DataLoader worker process
    status, said = train_in_process(f"{shards}/{{0000..0001}}.tar", explicit, "--stats", stats, "--workers", "1")
    assert status == 0, said[-3000:]
    assert "2 train / 1 val shards" in said
    assert [e["step"] for e in records(explicit, "epoch")] == [2]  # 4 training clips, batches of 2
    assert checkpoint_stats(explicit) == expected_mean

    found = tmp_path / "found"  # the prefix, listed; stats found through the marker, val shards beside
    status, said = train_in_process(f"{shards}/", found, "--workers", "0")
    assert status == 0, said[-3000:]
    assert "2 train / 1 val shards" in said
    assert [e["step"] for e in records(found, "epoch")] == [2]
    assert checkpoint_stats(found) == expected_mean


def test_train_streams_http_shards(local_run: Path, tmp_path: Path) -> None:
    with http_server(local_run) as base:  # stats through the marker, val shards from the index page
        status, said = train_in_process(f"{base}/shards/{{0000..0001}}.tar", tmp_path / "http", "--workers", "1")
    assert status == 0, said[-3000:]
    assert "2 train / 1 val shards" in said
    assert [e["step"] for e in records(tmp_path / "http", "epoch")] == [2]
    assert checkpoint_stats(tmp_path / "http") == json.loads((local_run / "meta" / "stats.json").read_text())["mean"]


def test_a_connection_dropped_mid_shard_is_a_warning_and_training_goes_on(local_run: Path, tmp_path: Path) -> None:
    """0001.tar holds two samples (each a 35 kB .mp4, a 24 kB .fbank.npy and a .json): the connection drops in the
    second one's features, so the shard gives at most one whole sample and a broken one, which is skipped."""
    out = tmp_path / "dropped"
    with http_server(local_run, drop="shards/0001.tar", drop_after=100_000) as base:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "trainer.cli",
                "--shards",
                f"{base}/shards/{{0000..0001}}.tar",
                "--out",
                str(out),
                *TINY,
                "--workers",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
            env={**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"},
        )
        shard = f"{base}/shards/0001.tar"
    assert result.returncode == 0, result.stderr[-3000:]
    said = " ".join(result.stderr.split())
    assert f"shard {shard}: read failed after" in said and "of 133120 bytes" in said, said[-3000:]
    assert [e["step"] for e in records(out, "epoch")] == [1]  # 0000.tar's 2 samples (+ at most 1): one batch
