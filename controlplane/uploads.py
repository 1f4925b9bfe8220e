"""Files a remote client sends, kept by content under ``<home>/uploads/<sha256>/<name>``.

A remote ``mlcp models register`` uploads its exported model, input example and training
data, and ``mlcp evaluate`` its data, then names them in the request by upload id
(``<sha256>/<name>``). The name keeps the suffix readers go by (``.parquet``, ``.npy``...);
the digest makes an upload idempotent (a retry, or the same training set twice, is stored
once) and lets the server check it got exactly what the client hashed. Uploads stay: lineage
and the data-quality gate read training and evaluation data back by path.

    store = UploadStore(settings.home / "uploads", max_bytes=2 << 30)
    with store.writer(sha, "train.parquet") as out:
        for chunk in body:
            out.write(chunk)
    path = store.path(f"{sha}/train.parquet")
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from controlplane.errors import InvalidUpload

SUFFIXES = (".pt2", ".npy", ".parquet", ".csv")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


def upload_name(path: Path | str) -> str:
    """The name a file travels under: its base name, odd characters made ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(path).name)[-200:].lstrip("._-") or "file"
    check_name(name)
    return name


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise InvalidUpload(name, "name it with letters, digits, '._-' (at most 200)")
    if not name.lower().endswith(SUFFIXES):
        raise InvalidUpload(name, f"unsupported file type; send one of {', '.join(SUFFIXES)}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class UploadWriter:
    """Streams one upload to a temporary file, counting and hashing as it goes."""

    def __init__(self, tmp: Path, max_bytes: int, upload: str) -> None:
        self._fh = tmp.open("wb")
        self._digest = hashlib.sha256()
        self.bytes = 0
        self._max = max_bytes
        self._upload = upload

    def write(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        if self.bytes > self._max:
            raise InvalidUpload(self._upload, f"larger than the limit of {self._max} bytes")
        self._digest.update(chunk)
        self._fh.write(chunk)

    def close(self) -> str:
        self._fh.close()
        return self._digest.hexdigest()


class UploadStore:
    """Uploads by content digest and name, under ``root``."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def _location(self, sha256: str, name: str) -> Path:
        if not _DIGEST.match(sha256):
            raise InvalidUpload(sha256, "not a sha256 (64 lowercase hex digits)")
        check_name(name)
        return self.root / sha256 / name

    def exists(self, sha256: str, name: str) -> bool:
        return self._location(sha256, name).is_file()

    @contextmanager
    def writer(self, sha256: str, name: str) -> Iterator[UploadWriter]:
        """Write the upload; it lands (atomically) only if its content hashes to ``sha256``."""
        final = self._location(sha256, name)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=".part-")
        os.close(fd)
        tmp = Path(tmp_name)
        out = UploadWriter(tmp, self.max_bytes, f"{sha256}/{name}")
        try:
            yield out
            got = out.close()
            if got != sha256:
                raise InvalidUpload(f"{sha256}/{name}", f"the content hashes to {got}: resend it")
            tmp.replace(final)
        finally:
            out.close()
            tmp.unlink(missing_ok=True)

    def path(self, upload: str) -> Path:
        """The stored file of an upload id ``<sha256>/<name>``; InvalidUpload if absent."""
        sha256, _, name = upload.partition("/")
        path = self._location(sha256, name)
        if not path.is_file():
            raise InvalidUpload(upload, "not uploaded (PUT /v1/uploads/<sha256>/<name> first)")
        return path
