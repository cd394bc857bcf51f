"""One storage API for local paths and URLs: ``s3://``, ``gs://``, ``http(s)://``, ``memory://`` … via fsspec.

What ingest and train need, and nothing more:

- paths: :func:`is_remote`, :func:`join`, :func:`parent`;
- reads: :func:`exists`, :func:`size`, :func:`read_bytes`, :func:`read_text`, :func:`listdir`, :func:`glob`,
  :func:`list_shards`, :func:`expand_braces`, :func:`missing`;
- writes that publish only complete objects: :func:`write_bytes_atomic`, :func:`put_file`, :func:`remove`,
  :func:`abort_stale_uploads`;
- shard streaming for webdataset: :func:`open_shard_stream` and :func:`register_gopen_handlers`.

Local paths keep the usual semantics (temporary name, fsync, ``os.replace``). On object stores a PUT, and a
multipart upload once *completed*, is atomic: the object appears under its name only when the whole upload
has succeeded, so shards are uploaded straight to their final key (S3 has no rename; staging under a
temporary key would double the requests and leave that key behind after a kill). Backends without that
guarantee (sftp, ftp, hdfs, webdav …) stage under a hidden temporary name and then move.

Credentials and endpoint come from the standard variables: s3fs/botocore read ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``AWS_DEFAULT_REGION``; the endpoint is
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (see :func:`storage_options`). ``s3://`` needs the optional
``s3fs`` package (``pip install 'avts[s3]'``).

Importing this module is cheap: fsspec, s3fs, aiohttp and webdataset are imported when first used (a run on local
folders never imports them: ~50 ms less start-up for every ingest worker).
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import io
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

import braceexpand

if TYPE_CHECKING:
    import fsspec

# A scheme of two or more letters followed by ':' (so ``C:\data`` stays a local path); ``file:`` is local.
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]+):", re.IGNORECASE)
_ANGLE_RANGE = re.compile(r"<(\d+)\.\.(\d+)>")
TRAIN_SHARD = re.compile(r"^\d+\.tar$")
VAL_SHARD = re.compile(r"^val-\d+\.tar$")
TEST_SHARD = re.compile(r"^test-\d+\.tar$")
_SHARD_NAMES = {"train": TRAIN_SHARD, "val": VAL_SHARD, "test": TEST_SHARD}
# Listings that name only what a server chose to link (an HTML index), not everything that exists.
_PARTIAL_LISTING_PROTOCOLS = frozenset({"http", "https"})

# Backends whose single upload is atomic (the object appears only when the upload completes).
ATOMIC_UPLOAD_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"})
# Schemes that :func:`register_gopen_handlers` routes through fsspec by default.
GOPEN_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory", "http", "https")
# What to install for a protocol whose fsspec backend is missing.
_INSTALL_HINT = {
    "s3": "pip install 'avts[s3]'  (or: pip install s3fs)",
    "s3a": "pip install 'avts[s3]'  (or: pip install s3fs)",
    "gs": "pip install gcsfs",
    "gcs": "pip install gcsfs",
    "az": "pip install adlfs",
    "abfs": "pip install adlfs",
    "abfss": "pip install adlfs",
    "http": "pip install aiohttp",
    "https": "pip install aiohttp",
}
_CREDENTIALS_HINT = (
    "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN or AWS_PROFILE) "
    "and that AWS_ENDPOINT_URL points at the right server"
)


class ShardReadError(IOError):
    """A remote shard could not be read to its end (connection dropped, truncated body, server error)."""


# ----------------------------------------------------------------------------------------------- paths


def protocol(spec: str) -> str | None:
    """The URL scheme of ``spec`` in lower case (``"s3"``, ``"http"``, ``"pipe"`` …), or None for a local path."""
    match = _SCHEME.match(str(spec))
    if match is None or match.group(1).lower() == "file":
        return None
    return match.group(1).lower()


def is_remote(spec: str | os.PathLike) -> bool:
    """True for URLs that are not local files (``s3://``, ``http://``, ``pipe:`` …); False for paths, ``file://``."""
    return protocol(str(spec)) is not None


def join(base: str | os.PathLike, *names: str) -> str:
    """``base/name/…`` with ``/`` for URLs and the OS separator for local paths."""
    base = str(base)
    if _SCHEME.match(base) is None:  # a path (``file://`` URLs are joined as URLs: a path join would eat a slash)
        return str(Path(base).joinpath(*names))
    return "/".join([base.rstrip("/"), *(name.strip("/") for name in names)])


def parent(spec: str | os.PathLike) -> str:
    """The folder holding ``spec``: ``s3://b/p/shards/0000.tar`` → ``s3://b/p/shards``."""
    spec = str(spec)
    if not is_remote(spec):
        return str(Path(spec).parent)
    head, _, _ = spec.rstrip("/").rpartition("/")
    if head.endswith(":/"):  # the root of a bucket: keep s3://bucket
        return spec.rstrip("/")
    return head


def as_local_path(spec: str | os.PathLike) -> Path:
    """The local path of a plain path or a ``file://`` URL."""
    spec = str(spec)
    if is_remote(spec):
        raise ValueError(f"{spec} is not a local path")
    return Path(re.sub(r"^file://", "", spec, flags=re.IGNORECASE))


def basename(spec: str | os.PathLike) -> str:
    """The last part of a path or URL (``s3://b/p/0001.tar`` → ``0001.tar``)."""
    return str(spec).rstrip("/").rpartition("/")[2] if is_remote(spec) else Path(spec).name


# ------------------------------------------------------------------------------------ filesystems, errors


def storage_options(proto: str | None) -> dict[str, Any]:
    """Keyword arguments for the fsspec filesystem of ``proto``, taken from the standard environment variables.

    For S3 the endpoint is ``AWS_ENDPOINT_URL_S3`` or else ``AWS_ENDPOINT_URL`` (unless
    ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true``). botocore ≥ 1.31 reads these variables itself; passing the
    value explicitly also works with older botocore and makes the endpoint part of fsspec's instance-cache key,
    so a process that changes it gets a client for the new endpoint. Credentials are left to botocore.
    """
    if proto not in ("s3", "s3a"):
        return {}
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return {"endpoint_url": endpoint} if endpoint else {}


def filesystem(url: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for ``url`` and the path inside it; a clear ImportError when its backend is missing."""
    url = str(url)
    proto = protocol(url)
    if proto == "pipe":
        raise ValueError(f"{url}: a pipe: source can only be streamed (open_shard_stream), not browsed")
    from fsspec.core import url_to_fs

    try:
        return url_to_fs(url, **storage_options(proto))
    except ImportError as error:
        hint = _INSTALL_HINT.get(proto or "", "install the fsspec backend for this protocol")
        raise ImportError(f"{url}: {proto}:// URLs need an extra package: {hint} ({error})") from error
    except ValueError as error:
        if "Protocol not known" in str(error):
            raise ValueError(f"{url}: unknown storage protocol {proto!r} (fsspec knows no such backend)") from error
        raise


def _error_code(error: BaseException) -> str:
    """The S3 error code behind an s3fs exception (``NoSuchBucket``, ``InvalidAccessKeyId`` …), if any."""
    cause = error.__cause__ or error.__context__
    response = getattr(cause, "response", None) or getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _endpoint(url: str) -> str:
    if protocol(url) in ("s3", "s3a"):
        return storage_options("s3").get("endpoint_url") or "the default AWS endpoint"
    return url


def explain(error: Exception, url: str) -> Exception:
    """A clearer exception of the same kind for ``error`` raised while accessing ``url`` (a missing bucket,
    wrong or missing credentials, an unreachable endpoint); other errors get the URL prepended."""
    name = type(error).__name__
    text = str(error)
    if isinstance(error, FileNotFoundError) and (
        _error_code(error) == "NoSuchBucket" or "bucket does not exist" in text
    ):
        bucket = url.split("://", 1)[-1].split("/", 1)[0]
        return FileNotFoundError(f"{url}: bucket {bucket!r} does not exist at {_endpoint(url)}")
    if isinstance(error, PermissionError):
        return PermissionError(f"{url}: access denied ({text}); {_CREDENTIALS_HINT}")
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return PermissionError(f"{url}: no usable AWS credentials ({text}); {_CREDENTIALS_HINT}")
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError") or isinstance(
        error, ConnectionError
    ):
        return ConnectionError(f"{url}: cannot reach {_endpoint(url)} ({text})")
    if type(error) in (OSError, FileNotFoundError, IsADirectoryError, NotADirectoryError) and url not in text:
        return type(error)(f"{url}: {text}")
    return error


@contextlib.contextmanager
def _explained(url: str) -> Iterator[None]:
    """Re-raise storage errors for ``url`` through :func:`explain` (the original stays as ``__cause__``)."""
    try:
        yield
    except (ImportError, ValueError, ShardReadError):
        raise
    except Exception as error:
        clearer = explain(error, url)
        if clearer is error:
            raise
        raise clearer from error


# ----------------------------------------------------------------------------------------------- reads


def exists(url: str | os.PathLike) -> bool:
    """True when the file or object exists (never answered from a stale listing cache).

    A missing bucket is simply False; wrong credentials raise :class:`PermissionError`.
    """
    url = str(url)
    if not is_remote(url):  # local paths skip fsspec, as writes do: importing it costs every command ~0.05 s
        return as_local_path(url).exists()
    fs, path = filesystem(url)
    with _explained(url):
        fs.invalidate_cache(path)
        return bool(fs.exists(path))


def size(url: str | os.PathLike) -> int:
    """Size in bytes of a file or object."""
    url = str(url)
    if not is_remote(url):  # the OS's errors name the path; explain() is for object stores
        return as_local_path(url).stat().st_size
    fs, path = filesystem(url)
    with _explained(url):
        fs.invalidate_cache(path)
        return int(fs.size(path))


def read_bytes(url: str | os.PathLike) -> bytes:
    """The whole content of a file or object."""
    url = str(url)
    if not is_remote(url):
        return as_local_path(url).read_bytes()
    fs, path = filesystem(url)
    with _explained(url):
        return fs.cat_file(path)


def read_text(url: str | os.PathLike, encoding: str = "utf-8") -> str:
    """The whole content of a text file or object (e.g. ``stats.json``)."""
    return read_bytes(url).decode(encoding)


def listdir(url: str | os.PathLike) -> list[str]:
    """The entries directly inside a folder or prefix, as sorted paths/URLs spelled like ``url``.

    A folder that does not exist (or an empty prefix) gives ``[]``; a missing bucket raises FileNotFoundError.
    """
    url = str(url)
    base = url.rstrip("/") or url
    if not is_remote(url):
        try:
            return sorted(join(base, name) for name in os.listdir(as_local_path(url)))
        except (FileNotFoundError, NotADirectoryError):
            return []
    fs, path = filesystem(url)
    with _explained(url):
        try:
            names = fs.ls(path.rstrip("/") or path, detail=False, refresh=True)
        except FileNotFoundError as error:
            if _error_code(error) == "NoSuchBucket" or "bucket does not exist" in str(error):
                raise
            return []
    return sorted(
        join(base, str(name).rstrip("/").rpartition("/")[2])
        for name in names
        if str(name).rstrip("/") != path.rstrip("/")
    )


def glob(url: str | os.PathLike, pattern: str) -> list[str]:
    """The entries of folder ``url`` whose name matches the shell ``pattern`` (not recursive), sorted."""
    return [entry for entry in listdir(url) if fnmatch.fnmatchcase(basename(entry), pattern)]


def list_shards(folder: str | os.PathLike, split: str = "train") -> list[str]:
    """The shards in a folder or prefix: ``NNNN.tar`` for ``split="train"``, ``val-NNNN.tar`` for ``"val"``,
    ``test-NNNN.tar`` for ``"test"``.

    Only complete shards are listed: writers publish a shard under its final name when it is whole, and the
    hidden ``.NNNN.tar.tmp-*`` names of unfinished local shards do not match.
    """
    if split not in _SHARD_NAMES:
        raise ValueError(f"split must be one of {', '.join(map(repr, _SHARD_NAMES))}, not {split!r}")
    wanted = _SHARD_NAMES[split]
    return [entry for entry in listdir(folder) if wanted.match(basename(entry))]


def expand_braces(spec: str) -> list[str]:
    """Expand ``{0000..0003}`` (and the ``<0000..0003>`` form) in a path or URL, keeping zero padding.

    ``s3://b/p/{0000..0002}.tar`` → ``[s3://b/p/0000.tar, s3://b/p/0001.tar, s3://b/p/0002.tar]``.
    """
    return list(braceexpand.braceexpand(_ANGLE_RANGE.sub(r"{\1..\2}", spec)))


def missing(urls: Iterable[str]) -> list[str]:
    """The given files/objects that do not exist, checked with one listing per folder (not one request each).

    Where a folder cannot be listed, each URL is checked on its own. An HTTP "listing" is only the links of
    an index page (many servers have none), so there a URL missing from it is also checked on its own.
    """
    by_folder: dict[str, list[str]] = {}
    for url in urls:
        by_folder.setdefault(parent(url), []).append(url)
    absent: list[str] = []
    for folder, members in by_folder.items():
        try:
            present = {basename(entry) for entry in listdir(folder)}
            complete = protocol(folder) not in _PARTIAL_LISTING_PROTOCOLS
        except FileNotFoundError:  # listdir raises it only for a missing bucket: say so, not "N missing"
            raise
        except (NotImplementedError, ValueError, OSError):
            present, complete = set(), False
        absent.extend(url for url in members if basename(url) not in present and (complete or not exists(url)))
    return absent


# ---------------------------------------------------------------------------------------------- writes


def _local_temp(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex}")


def _replace_local(final: Path, fill: Any) -> None:
    """Write a hidden temporary file beside ``final`` with ``fill(handle)``, fsync it, rename it over ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = _local_temp(final)
    try:
        with temp.open("wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)


def _staged(fs: fsspec.AbstractFileSystem, path: str, upload: Any) -> None:
    """For backends without atomic uploads: upload to a hidden temporary name, then move it into place."""
    head, _, name = path.rstrip("/").rpartition("/")
    temp = f"{head}/.{name}.tmp-{uuid.uuid4().hex}"
    try:
        upload(temp)
        fs.mv(temp, path)
    finally:
        with contextlib.suppress(OSError):
            if fs.exists(temp):
                fs.rm(temp)


def write_bytes_atomic(url: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` so that readers see either no object / the old one, or the whole new one.

    Local: hidden temporary file + fsync + ``os.replace``. S3/GCS/Azure/memory: one upload (a PUT, or for
    large data a multipart upload that s3fs aborts on error), which makes the object visible only when
    complete. Other fsspec backends: a temporary name, then a move.
    """
    url = str(url)
    if not is_remote(url):
        _replace_local(as_local_path(url), lambda handle: handle.write(data))
        return
    fs, path = filesystem(url)
    with _explained(url):
        if protocol(url) in ATOMIC_UPLOAD_PROTOCOLS:
            fs.pipe_file(path, data)
        else:
            _staged(fs, path, lambda temp: fs.pipe_file(temp, data))
        fs.invalidate_cache(path)


def put_file(local_path: str | os.PathLike, url: str | os.PathLike, **kwargs: Any) -> None:
    """Publish a finished local file (a shard, a parquet manifest) at ``url``, all or nothing.

    Same guarantees as :func:`write_bytes_atomic`, without reading the file into memory. ``kwargs`` go to the
    backend's ``put_file`` (e.g. ``chunksize=`` for s3fs: files of at least 2 x chunksize, 50 MiB by default,
    are sent as a multipart upload of chunksize parts).
    """
    url, source_path = str(url), Path(local_path)
    if not source_path.is_file():
        raise FileNotFoundError(f"{source_path}: no such file to upload to {url}")
    if not is_remote(url):

        def copy(handle: BinaryIO) -> None:
            with source_path.open("rb") as source:
                shutil.copyfileobj(source, handle, 1 << 22)

        _replace_local(as_local_path(url), copy)
        return
    fs, path = filesystem(url)
    with _explained(url):
        if protocol(url) in ATOMIC_UPLOAD_PROTOCOLS:
            fs.put_file(str(source_path), path, **kwargs)
        else:
            _staged(fs, path, lambda temp: fs.put_file(str(source_path), temp, **kwargs))
        fs.invalidate_cache(path)


def remove(url: str | os.PathLike, missing_ok: bool = True) -> None:
    """Delete one file or object; a missing one is fine unless ``missing_ok=False``.

    (S3 answers a DELETE of a missing key with success, so ``missing_ok=False`` costs one extra request.)
    """
    url = str(url)
    if not is_remote(url):
        try:
            as_local_path(url).unlink()
        except FileNotFoundError:
            if not missing_ok:
                raise FileNotFoundError(f"{url}: no such file or object to remove") from None
        return
    fs, path = filesystem(url)
    with _explained(url):
        fs.invalidate_cache(path)
        if not missing_ok and not fs.exists(path):
            raise FileNotFoundError(f"{url}: no such file or object to remove")
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)
        fs.invalidate_cache(path)


def abort_stale_uploads(url: str | os.PathLike, older_than_s: float = 3600.0) -> int:
    """Abort S3 multipart uploads under the prefix ``url`` started more than ``older_than_s`` seconds ago.

    A process killed during a multipart upload leaves no object, but its uploaded parts stay (invisible,
    billed) until aborted, like the ``.tmp-*`` files of a killed local run. Call this where ingest removes
    partial files, before any worker starts (an upload still in progress elsewhere would be cancelled if it
    is older than ``older_than_s``). Not S3: nothing to do, returns 0. Returns how many were aborted.
    """
    url = str(url)
    if protocol(url) not in ("s3", "s3a"):
        return 0
    fs, path = filesystem(url)
    bucket, _, prefix = path.partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""  # a folder: not run/shards_b for run/shards
    aborted = 0
    with _explained(url):
        for upload in fs.list_multipart_uploads(bucket):
            started = upload.get("Initiated")
            age = time.time() - started.timestamp() if started is not None else float("inf")
            if upload["Key"].startswith(prefix) and age >= older_than_s:
                fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                aborted += 1
    return aborted


# ------------------------------------------------------------------------------------ shard streaming


class ShardStream(io.RawIOBase):
    """A read-only stream over one shard that names the shard in every error.

    Any failure while reading (a dropped connection, a server error) and a body shorter than the size the
    server announced become one :class:`ShardReadError` saying which shard, after how many bytes. After
    that the stream reads as ended, so a tar reader stops at the next header.
    """

    def __init__(self, url: str, raw: Any, expected_size: int | None) -> None:
        super().__init__()
        self.url = url
        self.expected_size = expected_size
        self.bytes_read = 0
        self._raw = raw
        self._failed = False

    @property
    def name(self) -> str:
        """The shard URL (tar readers and error messages show it)."""
        return self.url

    def readable(self) -> bool:
        """Always True: shards are read, never written, through this stream."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` with the next bytes of the shard; 0 at its end (or after a reported failure)."""
        if self._failed:
            return 0
        try:
            chunk = self._raw.read(len(buffer))
        except Exception as error:
            self._fail(f"{type(error).__name__}: {error}", error)
        if not chunk and self.expected_size is not None and self.bytes_read < self.expected_size:
            self._fail("the server closed the stream early", None)
        buffer[: len(chunk)] = chunk
        self.bytes_read += len(chunk)
        return len(chunk)

    def _fail(self, reason: str, cause: BaseException | None) -> NoReturn:
        self._failed = True
        with contextlib.suppress(Exception):
            self._raw.close()  # give the connection back now, not when the error is garbage-collected
        of = f" of {self.expected_size}" if self.expected_size is not None else ""
        raise ShardReadError(
            f"shard {self.url}: read failed after {self.bytes_read}{of} bytes ({reason}); "
            "the rest of this shard cannot be read"
        ) from cause

    def close(self) -> None:
        """Close the underlying connection or file."""
        if not self.closed:
            with contextlib.suppress(Exception):
                self._raw.close()
        super().close()

    def __repr__(self) -> str:
        return f"<shard {self.url}>"

    __str__ = __repr__


def open_shard_stream(url: str | os.PathLike) -> BinaryIO:
    """Open a shard for one sequential read: local path, ``pipe:`` command, or any fsspec URL.

    HTTP(S) is streamed with one GET (``block_size=0``, so servers without range support such as
    ``python -m http.server`` work); object stores are read in large ranged blocks by their fsspec file.
    Errors opening or reading name the shard (see :class:`ShardStream`).
    """
    url = str(url)
    proto = protocol(url)
    if proto is None:
        return as_local_path(url).open("rb")  # the caller owns the stream
    if proto == "pipe":
        wds_gopen = importlib.import_module("webdataset.gopen")  # imports torch: only where pipe: is used
        return wds_gopen.gopen(url, "rb")
    fs, path = filesystem(url)
    with _explained(url):
        expected = fs.size(path)
        http = proto in ("http", "https")
        raw = fs.open(path, "rb", block_size=0, size=expected) if http else fs.open(path, "rb")
    return ShardStream(url, raw, int(expected) if expected is not None else None)  # type: ignore[return-value]


def _gopen_handler(url: str, mode: str = "rb", bufsize: int = 8192, **_: Any) -> BinaryIO:
    """webdataset gopen handler for fsspec URLs (read only: shards are published with :func:`put_file`)."""
    if mode != "rb":
        raise ValueError(f"{url}: writing through gopen is not atomic; write locally and use avts.storage.put_file")
    return open_shard_stream(url)


def _backend_available(proto: str) -> bool:
    import fsspec

    try:
        fsspec.get_filesystem_class(proto)
    except (ImportError, ValueError):
        return False
    return True


def register_gopen_handlers(schemes: Iterable[str] = GOPEN_SCHEMES) -> list[str]:
    """Route these URL schemes in ``webdataset.gopen`` through fsspec, so that ``wds.SimpleShardList`` +
    ``wds.tarfile_to_samples`` (and ``wds.WebDataset``) stream ``s3://…`` shards. Returns the schemes routed.

    webdataset 1.0.2 has no fsspec fallback: ``s3://`` has no handler at all, ``http(s)://`` runs ``curl`` and
    ``gs://`` runs ``gsutil``. A scheme whose fsspec backend is not installed keeps webdataset's handler, except
    ``s3``/``s3a``, which then fail with an install hint. Idempotent. Call it at import time of the module that
    builds the pipeline, so DataLoader workers (forked or spawned) have it too.
    """
    wds_gopen = importlib.import_module("webdataset.gopen")  # imports torch: call from the trainer only

    routed = []
    for scheme in schemes:
        if _backend_available(scheme) or scheme not in wds_gopen.gopen_schemes:
            wds_gopen.gopen_schemes[scheme] = _gopen_handler
            routed.append(scheme)
    return routed
