"""avts.storage against real servers on loopback: moto's S3 server and the standard library's http.server.

Shards are built here with ``tarfile`` in WebDataset's layout (``<key>.txt`` members); nothing from pipeline/
or trainer/ is used. S3 tests skip when moto[server] or s3fs is missing; HTTP tests when aiohttp is.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from avts import storage

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20


# ------------------------------------------------------------------------------------------- helpers


def make_shard(keys: list[str], payload: int = 2000) -> bytes:
    """A tar shard in WebDataset layout: one ``<key>.txt`` member per sample."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for key in keys:
            data = (key + "\n").encode() * (payload // (len(key) + 1) + 1)
            info = tarfile.TarInfo(f"{key}.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def shard_keys(index: int, count: int = 4) -> list[str]:
    return [f"s{index}-sample{n}" for n in range(count)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stream_keys(urls: list[str], **tar_kwargs) -> list[tuple[str, str]]:
    """(``__key__``, ``__url__``) of every sample a webdataset pipeline reads from ``urls``."""
    import webdataset as wds

    pipeline = wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples(**tar_kwargs))
    return [(sample["__key__"], sample["__url__"]) for sample in pipeline]


def random_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


# --------------------------------------------------------------------------------------- S3 fixtures


def _launch_moto(extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``python -m moto.server`` on a free loopback port (not waiting for it)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(extra_env or {})},
    )
    return process, f"http://127.0.0.1:{port}"


def _wait_ready(process: subprocess.Popen, endpoint: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start on {endpoint}") from None
            time.sleep(0.05)


@pytest.fixture(scope="session")
def moto_servers() -> Iterator[dict[str, str]]:
    """Two moto S3 servers in their own processes, started together: ``open`` accepts any keys, ``auth`` checks
    them (``INITIAL_NO_AUTH_ACTION_COUNT=0``). Killed at the end of the session."""
    pytest.importorskip("s3fs", reason="s3fs not installed: pip install 'avts[s3]'")
    pytest.importorskip("moto.server", reason="moto[server] not installed: pip install 'moto[server]'")
    launched = {"open": _launch_moto(), "auth": _launch_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})}
    try:
        for process, endpoint in launched.values():
            _wait_ready(process, endpoint)
        yield {name: endpoint for name, (_, endpoint) in launched.items()}
    finally:
        for process, _ in launched.values():
            process.kill()  # a throw-away in-memory server: nothing to shut down cleanly
            process.wait()


@pytest.fixture()
def moto_endpoint(moto_servers: dict[str, str]) -> str:
    return moto_servers["open"]


def aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: str, key: str = "testing") -> None:
    """Standard AWS variables only (what a user would set), and fresh s3fs clients."""
    import s3fs

    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL_S3",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
        "AWS_SESSION_TOKEN",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture()
def bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<fresh bucket>`` on the moto server, with the AWS variables pointing at it."""
    import s3fs

    aws_env(monkeypatch, moto_endpoint)
    name = f"avts-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem().mkdir(name)
    return f"s3://{name}"


# ------------------------------------------------------------------------------------- HTTP fixtures

DROP_AFTER = 3 * 2560 + 1000  # make_shard: 512-byte header + 2048 bytes per sample, so inside the 4th sample


@contextlib.contextmanager
def http_server(folder: Path, drop: str | None = None, drop_after: int = DROP_AFTER) -> Iterator[str]:
    """``http.server`` on loopback serving ``folder``; a GET of ``drop`` announces the whole file in
    Content-Length, sends its first ``drop_after`` bytes, waits a moment and closes the connection."""
    pytest.importorskip("aiohttp", reason="aiohttp not installed (fsspec's HTTP backend needs it)")

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if drop is None or self.path.lstrip("/") != drop:
                return super().do_GET()
            data = (folder / drop).read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:drop_after])
            self.wfile.flush()
            time.sleep(0.1)  # the reader consumes what it got before the connection goes
            self.close_connection = True
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def shard_folder(tmp_path: Path, count: int = 3) -> Path:
    folder = tmp_path / "shards"
    folder.mkdir()
    for index in range(count):
        (folder / f"{index:04d}.tar").write_bytes(make_shard(shard_keys(index)))
    (folder / "val-0000.tar").write_bytes(make_shard(["v-sample0"]))
    return folder


# ----------------------------------------------------------------------------- paths (no server needed)


def test_paths_and_braces() -> None:
    assert storage.is_remote("s3://b/p") and storage.is_remote("http://h/x.tar") and storage.is_remote("pipe:cat x")
    assert not storage.is_remote("shards/0000.tar") and not storage.is_remote("file:///tmp/x")
    assert not storage.is_remote(r"C:\data\0000.tar") and not storage.is_remote(Path("/tmp"))
    assert storage.join("s3://b/p/", "shards", "0001.tar") == "s3://b/p/shards/0001.tar"
    assert storage.join("out", "0001.tar") == str(Path("out") / "0001.tar")
    assert storage.parent("s3://b/p/shards/0001.tar") == "s3://b/p/shards"
    assert storage.parent("s3://b/0001.tar") == "s3://b"
    assert (
        storage.join(storage.parent(storage.parent("s3://b/p/shards/0000.tar")), "manifests", "stats.json")
        == "s3://b/p/manifests/stats.json"
    )
    assert storage.basename("s3://b/p/val-0002.tar") == "val-0002.tar"
    assert storage.expand_braces("s3://b/p/{0000..0002}.tar") == [f"s3://b/p/{i:04d}.tar" for i in range(3)]
    assert storage.expand_braces("s3://b/p/<0009..0010>.tar") == ["s3://b/p/0009.tar", "s3://b/p/0010.tar"]


def test_local_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "out"
    storage.write_bytes_atomic(out / "manifests" / "stats.json", b'{"mean": [0]}')
    assert storage.read_text(out / "manifests" / "stats.json") == '{"mean": [0]}'
    local = tmp_path / "staged.tar"
    local.write_bytes(make_shard(shard_keys(0)))
    for name in ("0000.tar", "0001.tar", "val-0000.tar"):
        storage.put_file(local, storage.join(str(out), name))
    (out / ".0002.tar.tmp-123").write_bytes(b"partial")
    assert storage.list_shards(out) == [str(out / "0000.tar"), str(out / "0001.tar")]
    assert storage.list_shards(out, "val") == [str(out / "val-0000.tar")]
    assert storage.size(out / "0001.tar") == local.stat().st_size
    storage.remove(out / "0001.tar")
    assert not storage.exists(out / "0001.tar")
    assert storage.listdir(tmp_path / "nowhere") == []
    assert sorted(p.name for p in out.iterdir()) == [".0002.tar.tmp-123", "0000.tar", "manifests", "val-0000.tar"]


def test_local_reads_answer_as_fsspec_does_without_importing_it(tmp_path: Path) -> None:
    """Local paths skip fsspec (its import costs every command's start); the answers are the ones it gives."""
    folder = tmp_path / "folder"
    folder.mkdir()
    for name in ("b.tar", ".hidden", "a.json"):
        (folder / name).write_bytes(name.encode())
    (folder / "sub").mkdir()
    listing = storage.listdir(folder)
    assert listing == [str(folder / name) for name in (".hidden", "a.json", "b.tar", "sub")]
    assert storage.listdir(f"file://{folder}/") == [
        f"file://{folder}/{name}" for name in (".hidden", "a.json", "b.tar", "sub")
    ]
    assert storage.listdir(folder / "a.json") == [] and storage.listdir(tmp_path / "missing") == []
    assert storage.read_bytes(f"file://{folder}/b.tar") == b"b.tar" and storage.size(folder / "b.tar") == 5
    assert storage.exists(folder / "sub") and not storage.exists(folder / "nothing")
    with pytest.raises(FileNotFoundError, match="nothing"):
        storage.read_bytes(folder / "nothing")
    with pytest.raises(FileNotFoundError, match="no such file or object to remove"):
        storage.remove(folder / "nothing", missing_ok=False)
    storage.remove(folder / "nothing")
    storage.remove(folder / "b.tar", missing_ok=False)
    assert not (folder / "b.tar").exists()
    code = f"import sys; from avts import storage; storage.listdir({str(folder)!r}); print('fsspec' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
    fs = __import__("fsspec").filesystem("file")
    assert sorted(fs.ls(str(folder), detail=False)) == storage.listdir(folder)


def test_missing_s3fs_gives_install_hint() -> None:
    script = (
        "import sys; sys.modules['s3fs'] = None  # as if s3fs were not installed\n"
        "from avts import storage; storage.exists('s3://bucket/shards/0000.tar')"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode != 0
    assert (
        "ImportError: s3://bucket/shards/0000.tar: s3:// URLs need an extra package: "
        "pip install 'avts[s3]'" in result.stderr
    ), result.stderr


# ----------------------------------------------------------------------------------------------- S3


def test_s3_round_trip(bucket: str, tmp_path: Path) -> None:
    stats = storage.join(bucket, "run", "manifests", "stats.json")
    assert not storage.exists(stats)
    storage.write_bytes_atomic(stats, b'{"mean": [1.5]}')
    assert storage.exists(stats) and storage.read_text(stats) == '{"mean": [1.5]}'
    assert storage.size(stats) == len('{"mean": [1.5]}')
    local = tmp_path / "0000.tar"
    data = make_shard(shard_keys(0))
    local.write_bytes(data)
    shard = storage.join(bucket, "run", "shards", "0000.tar")
    storage.put_file(local, shard)
    assert storage.read_bytes(shard) == data
    assert storage.listdir(storage.join(bucket, "run")) == [f"{bucket}/run/manifests", f"{bucket}/run/shards"]
    assert storage.glob(storage.join(bucket, "run", "manifests"), "*.json") == [stats]
    storage.remove(shard)
    assert not storage.exists(shard) and storage.listdir(storage.join(bucket, "run", "shards")) == []
    storage.remove(shard)  # already gone: fine
    with pytest.raises(FileNotFoundError):
        storage.remove(shard, missing_ok=False)


def test_s3_endpoint_comes_from_aws_endpoint_url(bucket: str, moto_endpoint: str) -> None:
    import s3fs

    assert storage.storage_options("s3") == {"endpoint_url": moto_endpoint}
    # botocore itself also honours AWS_ENDPOINT_URL (≥ 1.31): a bare S3FileSystem reaches moto too.
    assert s3fs.S3FileSystem(skip_instance_cache=True).ls(bucket.removeprefix("s3://")) == []


def test_s3_missing_bucket_is_explained(bucket: str) -> None:
    assert not storage.exists("s3://no-such-bucket-avts/x.tar")
    with pytest.raises(FileNotFoundError, match="bucket 'no-such-bucket-avts' does not exist at http://127"):
        storage.read_bytes("s3://no-such-bucket-avts/x.tar")
    with pytest.raises(FileNotFoundError, match="bucket 'no-such-bucket-avts' does not exist"):
        storage.write_bytes_atomic("s3://no-such-bucket-avts/x.json", b"{}")


def test_s3_wrong_credentials_are_explained(moto_servers: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    aws_env(monkeypatch, moto_servers["auth"], key="wrong")
    with pytest.raises(PermissionError, match=r"access denied.*AWS_ACCESS_KEY_ID"):
        storage.list_shards("s3://some-bucket/shards")
    with pytest.raises(PermissionError, match="AWS_SECRET_ACCESS_KEY"):
        storage.exists("s3://some-bucket/shards/0000.tar")


def test_s3_shard_listing_and_brace_expansion(bucket: str, tmp_path: Path) -> None:
    folder = shard_folder(tmp_path)
    prefix = storage.join(bucket, "avts", "shards")
    for path in sorted(folder.iterdir()):
        storage.put_file(path, storage.join(prefix, path.name))
    storage.write_bytes_atomic(storage.join(prefix, "README.md"), b"not a shard")
    expected = [f"{prefix}/{i:04d}.tar" for i in range(3)]
    assert storage.list_shards(prefix) == expected
    assert storage.list_shards(prefix + "/") == expected
    assert storage.list_shards(prefix, "val") == [f"{prefix}/val-0000.tar"]
    assert storage.list_shards(storage.join(bucket, "nothing-here")) == []
    urls = storage.expand_braces(f"{prefix}/{{0000..0003}}.tar")
    assert urls == [*expected, f"{prefix}/0003.tar"]
    assert storage.missing(urls) == [f"{prefix}/0003.tar"]


class FailingFile(io.FileIO):
    """A local file whose reads fail once ``fail_at`` bytes have been read: an upload that breaks midway."""

    fail_at = 0

    def read(self, size: int | None = -1) -> bytes:
        end = os.fstat(self.fileno()).st_size if size is None or size < 0 else self.tell() + size
        if end > self.fail_at:
            raise OSError("disk went away halfway through the upload")
        return super().read(size)


def test_s3_failed_multipart_upload_leaves_no_object(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    local = tmp_path / "0000.tar"
    random_file(local, 12 * MiB)  # ≥ 2 x chunksize: multipart, 5 MiB parts; the 2nd read fails
    FailingFile.fail_at = 6 * MiB
    # s3fs reads the local file with the builtin open(); shadow it in s3fs.core only. (Should s3fs stop using
    # open(), the upload succeeds and pytest.raises below fails loudly rather than the test passing vacuously.)
    monkeypatch.setattr(s3fs.core, "open", lambda path, mode="rb": FailingFile(path, "r"), raising=False)
    final = storage.join(bucket, "shards", "0000.tar")
    with pytest.raises(OSError, match="disk went away"):
        storage.put_file(local, final, chunksize=5 * MiB)
    assert not storage.exists(final)
    assert storage.listdir(storage.join(bucket, "shards")) == []
    assert s3fs.S3FileSystem().list_multipart_uploads(bucket.removeprefix("s3://")) == []  # s3fs aborted it


class StallingProxy:
    """A TCP proxy to ``upstream`` that forwards the first ``limit`` request bytes (over all connections), then
    holds the rest; :meth:`close` cuts the held connections so the server sees truncated requests."""

    def __init__(self, upstream: str, limit: int) -> None:
        self.upstream = ("127.0.0.1", int(upstream.rsplit(":", 1)[1]))
        self.limit, self.sent = limit, 0
        self.stalled, self.released = threading.Event(), threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._spawn(self._accept)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _accept(self) -> None:
        self.listener.settimeout(0.05)
        while not self.released.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(self.upstream)
            self._spawn(self._responses, upstream, client)
            self._spawn(self._requests, client, upstream)

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(1 << 16):
                with self._lock:
                    room = self.limit - self.sent
                    self.sent += min(room, len(data))
                upstream.sendall(data[: max(room, 0)])
                if room < len(data):
                    self.stalled.set()
                    self.released.wait(30)
                    break
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)  # the server now sees the request body end early

    def _responses(self, upstream: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(1 << 16):
                client.sendall(data)
        upstream.close()
        client.close()

    def close(self) -> None:
        self.released.set()
        for thread in self.threads:
            thread.join(10)
        self.listener.close()


def upload_through(endpoint: str, local: Path, url: str) -> None:
    """The uploading process: ``put_file`` with AWS_ENDPOINT_URL pointing at ``endpoint``."""
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    storage.put_file(local, url, chunksize=5 * MiB)


@pytest.mark.parametrize(("size", "cut"), [(3 * MiB, 1 * MiB), (12 * MiB, 7 * MiB)], ids=["put", "multipart"])
def test_s3_killed_upload_leaves_no_object_and_resume_works(
    bucket: str, moto_endpoint: str, tmp_path: Path, size: int, cut: int
) -> None:
    local = tmp_path / "0000.tar"
    data = random_file(local, size)
    final = storage.join(bucket, "shards", "0000.tar")
    proxy = StallingProxy(moto_endpoint, limit=cut)
    uploader = multiprocessing.get_context("fork").Process(target=upload_through, args=(proxy.endpoint, local, final))
    uploader.start()
    try:
        stalled = proxy.stalled.wait(30)
        uploader.kill()  # SIGKILL mid-upload: no cleanup code runs in the uploader
        uploader.join()
        assert stalled, f"the upload never reached {cut} bytes (exit code {uploader.exitcode})"
    finally:
        proxy.close()
    assert not storage.exists(final), "a killed upload left an object under the final name"
    assert storage.list_shards(storage.join(bucket, "shards")) == []
    stale = storage.abort_stale_uploads(storage.join(bucket, "shards"), older_than_s=0)
    assert stale == (1 if size >= 10 * MiB else 0)  # a killed multipart upload leaves invisible parts
    storage.put_file(local, final, chunksize=5 * MiB)  # the resumed run redoes the shard
    assert storage.read_bytes(final) == data


def test_webdataset_streams_s3_shards(bucket: str, tmp_path: Path) -> None:
    pytest.importorskip("webdataset")
    assert "s3" in storage.register_gopen_handlers()
    folder = shard_folder(tmp_path)
    prefix = storage.join(bucket, "shards")
    for path in folder.iterdir():
        storage.put_file(path, storage.join(prefix, path.name))
    urls = storage.expand_braces(f"{prefix}/{{0000..0002}}.tar")
    samples = stream_keys(urls)
    assert samples == [(key, url) for index, url in enumerate(urls) for key in shard_keys(index)]
    with storage.open_shard_stream(urls[1]) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        assert [member.name for member in tar] == [f"{key}.txt" for key in shard_keys(1)]


def test_forked_dataloader_workers_stream_s3(bucket: str, tmp_path: Path) -> None:
    """As in training: the parent reads stats.json from S3 (starting fsspec's IO thread), then forks workers."""
    pytest.importorskip("webdataset")
    import torch
    import webdataset as wds

    for index in range(4):
        (tmp_path / f"{index:04d}.tar").write_bytes(make_shard(shard_keys(index)))
        storage.put_file(tmp_path / f"{index:04d}.tar", storage.join(bucket, "shards", f"{index:04d}.tar"))
    storage.write_bytes_atomic(storage.join(bucket, "manifests", "stats.json"), b"{}")
    assert storage.read_text(storage.join(bucket, "manifests", "stats.json")) == "{}"
    storage.register_gopen_handlers()
    pipeline = wds.DataPipeline(
        wds.SimpleShardList(storage.list_shards(storage.join(bucket, "shards"))),
        wds.split_by_worker,
        wds.tarfile_to_samples(),
        wds.map(lambda s: s["__key__"]),
    )
    context = torch.multiprocessing.get_context("fork")
    loader = torch.utils.data.DataLoader(pipeline, num_workers=2, batch_size=None, multiprocessing_context=context)
    assert sorted(loader) == sorted(key for index in range(4) for key in shard_keys(index))


def test_open_shard_stream_local_and_pipe(tmp_path: Path) -> None:
    pytest.importorskip("webdataset")
    shard = tmp_path / "0000.tar"
    shard.write_bytes(make_shard(shard_keys(0)))
    for source in (str(shard), f"file://{shard}", f"pipe:cat {shard}"):
        with storage.open_shard_stream(source) as stream:
            assert stream.read() == shard.read_bytes(), source


# --------------------------------------------------------------------------------------------- HTTP


def test_webdataset_streams_http_shards(tmp_path: Path) -> None:
    pytest.importorskip("webdataset")
    folder = shard_folder(tmp_path)
    storage.register_gopen_handlers()
    with http_server(folder) as base:
        assert storage.list_shards(base + "/") == [f"{base}/{i:04d}.tar" for i in range(3)]
        urls = storage.expand_braces(f"{base}/{{0000..0002}}.tar")
        assert stream_keys(urls) == [(key, url) for index, url in enumerate(urls) for key in shard_keys(index)]
        assert storage.missing([*urls, f"{base}/0009.tar"]) == [f"{base}/0009.tar"]


def test_http_connection_dropped_mid_shard_warns_and_continues(tmp_path: Path) -> None:
    pytest.importorskip("webdataset")
    import webdataset as wds

    folder = shard_folder(tmp_path)
    storage.register_gopen_handlers()
    with http_server(folder, drop="0001.tar") as base:
        urls = storage.expand_braces(f"{base}/{{0000..0002}}.tar")
        with pytest.warns(UserWarning) as caught:
            samples = stream_keys(urls, handler=wds.warn_and_continue)
    messages = [str(warning.message) for warning in caught]
    assert f"shard {urls[1]}: read failed after {DROP_AFTER} of 20480 bytes" in messages[0], messages
    # tarfile may add "unexpected end of data" for the same shard: every warning names it
    assert len(messages) <= 2 and all(urls[1] in message for message in messages), messages
    assert [key for key, _ in samples] == shard_keys(0) + shard_keys(1)[:3] + shard_keys(2)
