"""The artifact store: snapshots, prepared data, bundles, reports and plots, addressed by URL.

Any fsspec URL: a local directory (the default, ``pipelines.settings``), ``s3://bucket/prefix``
(s3fs: credentials and endpoint from the standard AWS variables), or another scheme. Stages
write here and hand each other the URLs (XCom, MLflow lineage tags), never local paths, so a
task may run on another machine than the one that wrote what it reads.

Every operation that cannot reach the store raises ``ArtifactStoreError`` naming the URL; a
missing object raises ``FileNotFoundError`` naming the URL. Writes of one object are atomic
(a local temporary file renamed; one S3 PUT), so readers never see half an object.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
from fsspec.utils import get_protocol

LOCAL = ("file", "local")
# fail within seconds when the endpoint is down (the task then fails and Airflow retries it)
S3_OPTIONS: dict[str, Any] = {
    "use_listings_cache": False,
    "config_kwargs": {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 2}},
}


class ArtifactStoreError(OSError):
    """The artifact store could not be reached or refused the operation."""


def is_local(url: str) -> bool:
    return get_protocol(str(url)) in LOCAL


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem serving ``url`` and the path within it."""
    url = str(url)
    protocol = get_protocol(url)
    options: dict[str, Any] = {}
    if protocol in LOCAL:
        options = {"auto_mkdir": True}
    elif protocol in ("s3", "s3a"):
        # the endpoint is part of fsspec's instance-cache key: another endpoint, another client
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        options = {**S3_OPTIONS, "endpoint_url": endpoint}
    fs = fsspec.filesystem(protocol, **options)
    return fs, fs._strip_protocol(url)


@contextlib.contextmanager
def reaching(url: str, action: str) -> Iterator[None]:
    """Turn whatever the filesystem raises into an error that names the store URL."""
    try:
        yield
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{action} {url}: not found in the artifact store") from exc
    except ArtifactStoreError:
        raise
    except Exception as exc:
        raise ArtifactStoreError(
            f"artifact store error while trying to {action} {url}: {type(exc).__name__}: {exc}"
        ) from exc


def join(url: str, *parts: str) -> str:
    """``url/part/part`` (URLs and local paths alike)."""
    return "/".join([str(url).rstrip("/"), *(p.strip("/") for p in parts)])


def write_bytes(url: str, data: bytes) -> str:
    fs, path = filesystem(url)
    with reaching(url, "write"):
        if is_local(url):
            folder = Path(path).parent
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, path)
            finally:
                Path(tmp).unlink(missing_ok=True)
        else:
            fs.pipe_file(path, data)
    return str(url)


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    with reaching(url, "read"):
        return fs.cat_file(path)


@contextlib.contextmanager
def opened(url: str) -> Iterator[Any]:
    """``url`` open for binary reading (a stream: large sources are not read whole first)."""
    fs, path = filesystem(url)
    with reaching(url, "read"), fs.open(path, "rb") as handle:
        yield handle


def write_text(url: str, text: str) -> str:
    return write_bytes(url, text.encode())


def read_text(url: str) -> str:
    return read_bytes(url).decode()


def write_parquet(df: pd.DataFrame, url: str) -> str:
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    return write_bytes(url, buffer.getvalue())


def read_parquet(url: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(read_bytes(url)))


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    with reaching(url, "look up"):
        return fs.exists(path)


def list_files(url: str) -> list[str]:
    """The paths, relative to ``url``, of every object under it (sorted; none when absent)."""
    fs, path = filesystem(url)
    base = path.rstrip("/")
    with reaching(url, "list"):
        if not fs.exists(base):
            return []
        return sorted(p[len(base) + 1 :] for p in fs.find(base) if p.rstrip("/") != base)


def delete(url: str) -> None:
    """Remove the object ``url`` (nothing to do when it is absent)."""
    fs, path = filesystem(url)
    with contextlib.suppress(FileNotFoundError), reaching(url, "delete"):
        fs.rm_file(path)


def put_dir(local_dir: str | Path, url: str) -> str:
    """Copy every file under ``local_dir`` to ``url/<relative path>``; returns ``url``."""
    local_dir = Path(local_dir)
    for file in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        write_bytes(join(url, file.relative_to(local_dir).as_posix()), file.read_bytes())
    return str(url)


def get_dir(url: str, local_dir: str | Path) -> Path:
    """Copy every object under ``url`` into ``local_dir``; FileNotFoundError if there is none."""
    fs, path = filesystem(url)
    local_dir = Path(local_dir)
    with reaching(url, "download"):
        found = [p for p in fs.find(path) if p.rstrip("/") != path.rstrip("/")]
        if not found:
            raise FileNotFoundError(path)
        for item in found:
            target = local_dir / item[len(path.rstrip("/")) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(item, str(target))
    return local_dir


@contextlib.contextmanager
def local_copy(url: str) -> Iterator[Path]:
    """A local folder holding a copy of the objects under ``url``, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="tidemill-get-") as tmp:
        yield get_dir(url, Path(tmp) / "copy")


@contextlib.contextmanager
def local_file(url: str) -> Iterator[Path]:
    """A local copy of the single object ``url``, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="tidemill-get-") as tmp:
        target = Path(tmp) / Path(filesystem(url)[1]).name
        target.write_bytes(read_bytes(url))
        yield target


class ArtifactStore:
    """The store's root URL; ``url(*parts)`` addresses objects in it."""

    def __init__(self, url: str | Path) -> None:
        self.root = str(url).rstrip("/")

    def url(self, *parts: str) -> str:
        return join(self.root, *parts)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"
