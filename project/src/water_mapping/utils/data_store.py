"""The one place where the project reads and writes data.

Everything goes through a base URL: `s3://bucket/prefix` on the stack's object store (the
default, `s3://data`), or `file:///some/dir` when a project runs without one. Keys are
relative paths such as `raw/training/tile_000/blue.tif`, so the same code runs on both.
Endpoints and credentials come from the standard AWS environment, never from code; GDAL
(rasterio) reads the same endpoint from its own variables (AWS_S3_ENDPOINT, ...), which the
stack's client environment sets beside boto3's.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

import boto3
import numpy as np
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

DATA_URL_VARIABLE = "H2OPS_DATA_URL"
DEFAULT_DATA_URL = "s3://data"


class DataStore(Protocol):
    """Bytes under a base URL, addressed by relative keys."""

    base_url: str

    def put_bytes(self, key: str, data: bytes) -> str: ...

    def get_bytes(self, key: str) -> bytes: ...

    def list_keys(self, prefix: str = "") -> list[str]: ...

    def gdal_path(self, key: str) -> str:
        """Where GDAL (rasterio) and pystac find `key`: an s3:// URL or a local path."""
        ...


class S3DataStore:
    """Objects in one bucket, under an optional prefix; boto3 reads AWS_ENDPOINT_URL_S3 itself."""

    def __init__(self, base_url: str) -> None:
        parsed = urlparse(base_url)
        self.base_url = base_url.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self._client = _s3_client()

    def _object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_bytes(self, key: str, data: bytes) -> str:
        url = f"{self.base_url}/{key}"
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._object_key(key), Body=data)
        except ClientError as error:
            raise _server_failed(error, url, self._client.meta.endpoint_url) from error
        return url

    def get_bytes(self, key: str) -> bytes:
        response = self._client.get_object(Bucket=self.bucket, Key=self._object_key(key))
        return response["Body"].read()

    def list_keys(self, prefix: str = "") -> list[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client.get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix):
            keys.extend(item["Key"][len(root) :] for item in page.get("Contents", []))
        return sorted(keys)

    def gdal_path(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._object_key(key)}"


class LocalDataStore:
    """Files under a local folder, for projects that run without an object store."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.root = Path(unquote(urlparse(base_url).path))

    def put_bytes(self, key: str, data: bytes) -> str:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return f"{self.base_url}/{key}"

    def get_bytes(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def list_keys(self, prefix: str = "") -> list[str]:
        if not self.root.exists():
            return []
        keys = (path.relative_to(self.root).as_posix() for path in self.root.rglob("*"))
        return sorted(key for key in keys if key.startswith(prefix) and (self.root / key).is_file())

    def gdal_path(self, key: str) -> str:
        return str(self.root / key)


def open_data_store(base_url: str | None = None) -> DataStore:
    """The store at `base_url`, else at $H2OPS_DATA_URL, else at s3://data."""
    url = base_url or os.environ.get(DATA_URL_VARIABLE) or DEFAULT_DATA_URL
    scheme = urlparse(url).scheme
    if scheme == "s3":
        return S3DataStore(url)
    if scheme == "file":
        return LocalDataStore(url)
    raise ValueError(
        f"unsupported data URL {url!r}: use s3://bucket[/prefix] or file:///folder "
        f"(set {DATA_URL_VARIABLE})"
    )


def put_arrays(store: DataStore, key: str, **arrays: np.ndarray) -> str:
    """Write named arrays as one compressed .npz object; returns its URL."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, allow_pickle=False, **arrays)
    return store.put_bytes(key, buffer.getvalue())


def get_arrays(store: DataStore, key: str) -> dict[str, np.ndarray]:
    """Read the named arrays of one .npz object."""
    with np.load(io.BytesIO(store.get_bytes(key))) as npz:
        return {name: npz[name] for name in npz.files}


def _server_failed(error: ClientError, url: str, endpoint: str) -> Exception:
    """A server-side failure to write, said plainly: S3 servers answer a full disk with a bare
    `InternalError` (rclone) or `XMinioStorageFull`, which reads like a bug in the caller."""
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if status < 500 and error.response.get("Error", {}).get("Code") != "XMinioStorageFull":
        return error
    return OSError(
        f"the object store at {endpoint} failed to write {url} ({error}): the server, not "
        "this code, failed, most often because its disk is full. On the local stack "
        "`nox -s status` and `nox -s logs -- s3` say why; free space and retry the task"
    )


def _s3_client() -> BaseClient:
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
    # Path-style addressing: local S3 servers do not serve bucket names as host names.
    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3})
    # A session of its own: boto3's default session keeps the first credentials it found, so a
    # process whose environment changes (a notebook, a test) would sign with stale keys.
    return boto3.session.Session().client("s3", region_name=region, config=config)
