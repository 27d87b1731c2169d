"""Where the bytes of attachments live, named by their SHA-256: the same file uploaded twice is kept once.

Two backends behind one small interface: a local folder (the default, under ``instance/attachments``) and
S3-compatible object storage (``LVYUE_ATTACHMENTS_S3_BUCKET``, through boto3, installed with the ``s3`` extra).
Blobs are written before the database row that names them is committed, so a failed transaction can leave a
blob nobody refers to (harmless: nothing serves a file without its row); a row never names a missing blob.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from .config import AttachmentSettings, attachment_settings

SHA256_RE = re.compile(r"[0-9a-f]{64}")
CHUNK = 256 * 1024


class StorageError(Exception):
    """The storage could not be reached or refused the request (a local folder raises OSError instead)."""


class Storage(Protocol):
    def put(self, sha256: str, source: BinaryIO, content_type: str) -> None:
        """Keep the bytes of ``source`` (read from its current position) under ``sha256``; a no-op if kept."""

    def exists(self, sha256: str) -> bool: ...

    def open(self, sha256: str) -> BinaryIO:
        """The stored bytes as a readable stream (the caller closes it). FileNotFoundError if missing."""


def _checked(sha256: str) -> str:
    if not isinstance(sha256, str) or not SHA256_RE.fullmatch(sha256):
        raise ValueError("not a SHA-256 in lowercase hex")
    return sha256


class LocalStorage:
    """``<folder>/ab/abcdef…``: written to a temporary file in the same folder, then renamed into place."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)

    def _path(self, sha256: str) -> Path:
        sha256 = _checked(sha256)
        return self.folder / sha256[:2] / sha256

    def put(self, sha256: str, source: BinaryIO, content_type: str) -> None:
        target = self._path(sha256)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o640)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        return self._path(sha256).open("rb")


class S3Storage:
    """One object per blob: ``<prefix>ab/abcdef…`` in ``bucket``, written only if it is not there yet."""

    def __init__(self, bucket: str, client, prefix: str = "") -> None:
        self.bucket, self.client, self.prefix = bucket, client, prefix

    @classmethod
    def from_settings(cls, settings: AttachmentSettings) -> S3Storage:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:  # pragma: no cover - the s3 extra is part of dev installs
            raise RuntimeError("LVYUE_ATTACHMENTS_S3_BUCKET is set but boto3 is not installed: "
                               "pip install 'lvyue[s3]'") from None
        client = boto3.client("s3", endpoint_url=settings.s3_endpoint, region_name=settings.s3_region,
                              aws_access_key_id=settings.s3_access_key, aws_secret_access_key=settings.s3_secret_key,
                              config=Config(s3={"addressing_style": "path"} if settings.s3_endpoint else {},
                                            retries={"max_attempts": 3, "mode": "standard"}))
        return cls(settings.s3_bucket or "", client, settings.s3_prefix)

    def _key(self, sha256: str) -> str:
        sha256 = _checked(sha256)
        return f"{self.prefix}{sha256[:2]}/{sha256}"

    def put(self, sha256: str, source: BinaryIO, content_type: str) -> None:
        if self.exists(sha256):
            return
        with _s3_errors():
            self.client.upload_fileobj(source, self.bucket, self._key(sha256),
                                       ExtraArgs={"ContentType": content_type})

    def exists(self, sha256: str) -> bool:
        key = self._key(sha256)
        try:
            with _s3_errors():
                self.client.head_object(Bucket=self.bucket, Key=key)
        except FileNotFoundError:
            return False
        return True

    def open(self, sha256: str) -> BinaryIO:
        key = self._key(sha256)
        with _s3_errors():
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]


@contextlib.contextmanager
def _s3_errors() -> Iterator[None]:
    """botocore's errors as FileNotFoundError (no such object) or StorageError (anything else)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            raise FileNotFoundError("no such object in the bucket") from None
        raise StorageError(f"S3 storage: {err}") from err
    except BotoCoreError as err:
        raise StorageError(f"S3 storage: {err}") from err


_made: dict[AttachmentSettings, Storage] = {}
_lock = threading.Lock()


def from_settings(settings: AttachmentSettings | None = None) -> Storage:
    """The storage the settings (default: the environment's) name; one per distinct configuration."""
    settings = settings or attachment_settings()
    with _lock:
        found = _made.get(settings)
        if found is None:
            found = S3Storage.from_settings(settings) if settings.s3_bucket else LocalStorage(settings.folder)
            _made[settings] = found
        return found
