"""Open a landed file for streaming reads, wherever it lives: local disk or S3 (s3://, s3a://)."""

from __future__ import annotations

import io
import os
from datetime import datetime
from typing import IO, Any

from streaming.config import is_s3


def split_s3_uri(uri: str) -> tuple[str, str]:
    """Return (bucket, key) of an s3:// or s3a:// URI; split by hand because keys may hold '?' and '#'."""
    bucket, _, key = uri.split("://", 1)[1].partition("/")
    return bucket, key


def local_path(uri: str) -> str:
    """Return the filesystem path of a plain path or a file: URI.

    Spark's file source hands out Hadoop `Path` strings (file:/x, not percent-encoded: a file named `a%41`
    stays `a%41`), so the URI is cut, never unquoted.
    """
    for prefix in ("file://", "file:"):
        if uri.startswith(prefix):
            return uri[len(prefix) :]
    return uri


def _s3() -> Any:
    """The S3 client; boto3 is imported here, on first use, so a worker reading local files never loads it (0.3 s)."""
    from streaming.adapters import aws

    return aws.client("s3")


class FileReadError(RuntimeError):
    """A listed file exists but cannot be read (403, a KMS key, Glacier, an I/O error): the batch must fail.

    Quarantining it would commit the file, and one IAM or KMS mistake would skip data forever; failing keeps it
    uncommitted, so it is read again once access is fixed. The message names the file, never its content.
    """

    def __init__(self, message: str, uri: str) -> None:
        super().__init__(message)
        self.uri = uri

    @classmethod
    def of(cls, uri: str, detail: str) -> FileReadError:
        return cls(f"cannot read {uri} ({detail}); nothing of it is committed: fix access and it is read again", uri)

    @classmethod
    def from_message(cls, message: str) -> FileReadError:
        """Rebuilt from its text (how it crosses from a Spark executor to the driver)."""
        return cls(message, message.removeprefix("cannot read ").rpartition(" (")[0])


# S3 error codes that mean "this object cannot be read", as opposed to a transient failure worth a retry.
_MISSING = ("NoSuchKey", "NotFound", "404", "NoSuchBucket")
_FORBIDDEN = ("AccessDenied", "403", "InvalidObjectState")


def open_uri(uri: str) -> IO[bytes]:
    """Open `uri` for sequential binary reading without loading it into memory.

    Like a local file, an S3 object that is gone or forbidden raises FileNotFoundError / PermissionError (OSError):
    the caller quarantines a gone file and fails the batch on a forbidden one; other S3 errors propagate unchanged
    (a retry may succeed).
    """
    if is_s3(uri):
        from botocore.exceptions import ClientError

        bucket, key = split_s3_uri(uri)
        try:
            body = _s3().get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise FileNotFoundError(f"s3 object not found ({code}): {uri}") from exc
            if code in _FORBIDDEN:
                raise PermissionError(f"s3 object not readable ({code}): {uri}") from exc
            raise
        return io.BufferedReader(body, 1 << 20)
    return open(local_path(uri), "rb")


def exists(uri: str) -> bool:
    """Whether a landed file is there (S3: a HEAD of the object)."""
    if is_s3(uri):
        from botocore.exceptions import ClientError

        bucket, key = split_s3_uri(uri)
        try:
            _s3().head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in _MISSING:
                return False
            raise
        return True
    return os.path.isfile(local_path(uri))


# S3 user metadata on a file moved back from the archive: the time it first landed (CopyObject sets LastModified
# to the moment of the copy, and S3 cannot set it).
LANDED_AT = "bronze-landed-at"


def move(source: str, target: str, *, landed: datetime | None = None) -> None:
    """Move one file within a file system (S3: copy, then delete the original; same bucket or not).

    `landed`: the modification time the file keeps, as its time (locally) or as LANDED_AT metadata (S3).
    """
    if is_s3(source):
        bucket, key = split_s3_uri(source)
        to_bucket, to_key = split_s3_uri(target)
        s3 = _s3()
        extra: dict[str, Any] = {}
        if landed is not None:
            extra = {"Metadata": {LANDED_AT: landed.isoformat()}, "MetadataDirective": "REPLACE"}
        s3.copy_object(Bucket=to_bucket, Key=to_key, CopySource={"Bucket": bucket, "Key": key}, **extra)
        s3.delete_object(Bucket=bucket, Key=key)
        return
    destination = local_path(target)
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    os.replace(local_path(source), destination)
    if landed is not None:
        os.utime(destination, (landed.timestamp(), landed.timestamp()))
