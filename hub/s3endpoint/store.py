"""Folders as S3 buckets: keys to paths, object metadata, staged writes, listings and multipart uploads.

Every method here blocks (file I/O, MD5): the server calls them in worker threads. Contracts:

- A key maps to the path of the same name under the bucket's folder. Keys that would leave the folder or
  alias another key (`..`, `.`, empty segments) or that name the reserved staging folder are refused
  (`InvalidArgument`); so is a path whose real location, symlinks resolved, is outside the folder.
- A write never shows a partial object: it is staged under the bucket's reserved folder (same file system,
  ignored by the `files` connector) and renamed into place only when complete.
- An object's ETag is the MD5 of its content, or S3's multipart form (`md5(part digests)-N`) when it was
  assembled from parts; its content type and `x-amz-meta-*` are kept beside it. A file changed behind the
  endpoint's back (another size or mtime) is described afresh: MD5 of its content, type guessed from its name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mimetypes
import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from hub.s3endpoint import RESERVED

MIN_PART_SIZE = 5 * 1024 * 1024  # S3 refuses smaller parts, but for the last one (EntityTooSmall)


class S3Error(Exception):
    """An error S3 would answer with: HTTP status, S3's error code, a message, and extra XML fields."""

    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def no_such_key(key: str) -> S3Error:
    """S3's 404 NoSuchKey for `key`."""
    return S3Error(404, "NoSuchKey", "The specified key does not exist.", Key=key)


def no_such_bucket(bucket: str) -> S3Error:
    """S3's 404 NoSuchBucket for `bucket`."""
    return S3Error(404, "NoSuchBucket", "The specified bucket does not exist.", BucketName=bucket)


def no_such_upload(upload_id: str) -> S3Error:
    """S3's 404 NoSuchUpload for `upload_id`."""
    return S3Error(404, "NoSuchUpload", "The specified multipart upload does not exist.", UploadId=upload_id)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a HEAD of an object answers: its key, size, modification time, ETag and content type."""

    key: str
    size: int
    mtime: float
    etag: str
    """Without the quotes S3 puts around it on the wire."""
    content_type: str = "binary/octet-stream"
    metadata: dict[str, str] = field(default_factory=dict)


class Staged:
    """A file being written under a bucket's staging folder: hashes what it is given (MD5 for the ETag,
    SHA-256 for the signed payload hash). `discard()` removes it; the store's `commit` renames it into place."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"tmp-{secrets.token_hex(12)}"
        self._file: BinaryIO = open(self.path, "xb")  # noqa: SIM115 - closed by close() / discard()
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        """Append a chunk, hashing it."""
        self._file.write(chunk)
        self.md5.update(chunk)
        self.sha256.update(chunk)
        self.size += len(chunk)

    def close(self) -> None:
        """Close the file, keeping it for the commit."""
        self._file.close()

    def discard(self) -> None:
        """Close and remove the file."""
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class Folders:
    """{bucket name: folder}: the buckets the endpoint serves."""

    def __init__(self, buckets: Mapping[str, str | os.PathLike[str]]) -> None:
        self.roots = {name: Path(folder).absolute() for name, folder in buckets.items()}

    def prepare(self) -> None:
        """Create missing bucket folders, as the `files` connector creates the folder it watches."""
        for root in self.roots.values():
            root.mkdir(parents=True, exist_ok=True)

    # ---- paths -----------------------------------------------------------------------------------------------

    def root(self, bucket: str) -> Path:
        """The bucket's folder; NoSuchBucket when it is not served or no longer exists."""
        root = self.roots.get(bucket)
        if root is None or not root.is_dir():
            raise no_such_bucket(bucket)
        return root

    def path(self, bucket: str, key: str) -> Path:
        """The file of `key`. Refuses keys that would leave the folder, alias another key or name the staging
        folder, and paths whose real location (symlinks resolved) is outside the folder."""
        root = self.root(bucket)
        parts = key.split("/")
        if not key or len(key.encode()) > 1024 or "\x00" in key:
            raise S3Error(400, "KeyTooLongError" if key else "InvalidArgument", "Invalid key.", Key=key)
        if any(part in ("", ".", "..") for part in parts) or parts[0] == RESERVED:
            raise S3Error(
                400,
                "InvalidArgument",
                "This endpoint stores objects as files: a key may not have empty, '.' or '..' segments, "
                f"nor start with {RESERVED}/.",
                Key=key,
            )
        path = root.joinpath(*parts)
        self._inside(root, path.parent, key)
        return path

    @staticmethod
    def _inside(root: Path, path: Path, key: str) -> None:
        real_root = os.path.realpath(root)
        real = os.path.realpath(path)
        if real != real_root and not real.startswith(real_root + os.sep):
            raise S3Error(403, "AccessDenied", "The key leads outside the bucket's folder.", Key=key)

    def staging(self, bucket: str) -> Path:
        """The bucket's staging folder (hidden from listings), where uploads are written before they are renamed into
        place."""
        return self.root(bucket) / RESERVED

    def _meta_path(self, bucket: str, key: str) -> Path:
        return self.staging(bucket) / "meta" / (hashlib.sha256(key.encode()).hexdigest() + ".json")

    # ---- objects ---------------------------------------------------------------------------------------------

    def head(self, bucket: str, key: str) -> ObjectInfo:
        """What S3 answers to a HEAD of the object; NoSuchKey when there is no such file inside the bucket."""
        path = self.path(bucket, key)
        try:
            self._inside(self.root(bucket), path, key)
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError, S3Error):
            raise no_such_key(key) from None
        if not path.is_file():
            raise no_such_key(key)
        meta = self._read_meta(bucket, key)
        if meta is not None and meta.get("size") == st.st_size and meta.get("mtime_ns") == st.st_mtime_ns:
            return ObjectInfo(key, st.st_size, st.st_mtime, meta["etag"], meta["content_type"], meta["metadata"])
        etag = _md5_file(path)
        content_type = mimetypes.guess_type(key)[0] or "binary/octet-stream"
        self._write_meta(bucket, key, st.st_size, st.st_mtime_ns, etag, content_type, {})
        return ObjectInfo(key, st.st_size, st.st_mtime, etag, content_type)

    def commit(
        self, bucket: str, key: str, staged: Path, etag: str, content_type: str, metadata: Mapping[str, str]
    ) -> ObjectInfo:
        """Rename a complete staged file into place as `key`; its metadata is written first, so a reader that
        sees the object (or the `files` mapping that fires on the rename) sees its ETag too."""
        path = self.path(bucket, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._inside(self.root(bucket), path.parent, key)
            if path.is_dir():
                raise S3Error(409, "InvalidRequest", "The key names a folder that holds other objects.", Key=key)
            st = staged.stat()
            self._write_meta(bucket, key, st.st_size, st.st_mtime_ns, etag, content_type, metadata)
            os.replace(staged, path)
        except (FileExistsError, NotADirectoryError):
            raise S3Error(
                409, "InvalidRequest", "A prefix of the key is an object: a file cannot also be a folder.", Key=key
            ) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                staged.unlink()
        return ObjectInfo(key, st.st_size, st.st_mtime, etag, content_type, dict(metadata))

    def delete(self, bucket: str, key: str) -> None:
        """Remove `key`; a key that does not exist is not an error (S3 answers 204 either way)."""
        path = self.path(bucket, key)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
            path.unlink()
        with contextlib.suppress(FileNotFoundError):
            self._meta_path(bucket, key).unlink()

    def copy_to_staging(self, bucket: str, key: str, target_bucket: str, byte_range: tuple[int, int] | None) -> Staged:
        """Copy an object (or `byte_range`, both ends included) into a staged file of `target_bucket`."""
        path = self.path(bucket, key)
        self.head(bucket, key)
        staged = Staged(self.staging(target_bucket))
        try:
            with open(path, "rb") as src:
                remaining = None
                if byte_range is not None:
                    src.seek(byte_range[0])
                    remaining = byte_range[1] - byte_range[0] + 1
                while chunk := src.read(1 << 20 if remaining is None else min(1 << 20, remaining)):
                    staged.write(chunk)
                    if remaining is not None:
                        remaining -= len(chunk)
            staged.close()
        except BaseException:
            staged.discard()
            raise
        return staged

    def _read_meta(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            meta: dict[str, Any] = json.loads(self._meta_path(bucket, key).read_text())
        except (OSError, ValueError):
            return None
        return meta if meta.get("key") == key else None

    def _write_meta(
        self,
        bucket: str,
        key: str,
        size: int,
        mtime_ns: int,
        etag: str,
        content_type: str,
        metadata: Mapping[str, str],
    ) -> None:
        target = self._meta_path(bucket, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{secrets.token_hex(6)}")
        record = {
            "key": key,
            "size": size,
            "mtime_ns": mtime_ns,
            "etag": etag,
            "content_type": content_type,
            "metadata": dict(metadata),
        }
        tmp.write_text(json.dumps(record))
        os.replace(tmp, target)

    # ---- listings --------------------------------------------------------------------------------------------

    def listing(
        self, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> tuple[list[ObjectInfo], list[str], str | None]:
        """Objects and common prefixes after `after`, in S3's order (UTF-8 bytes), at most `max_keys` of them
        together; and the marker to continue from when there are more (else None)."""
        root = self.root(bucket)
        keys = sorted(self._keys(root, prefix), key=str.encode)
        after_bytes = after.encode()
        contents: list[ObjectInfo] = []
        prefixes: list[str] = []
        last = ""
        for key in keys:
            if key.encode() <= after_bytes or (after.endswith(delimiter or "\x00") and key.startswith(after)):
                continue
            rest = key[len(prefix) :]
            entry = key
            if delimiter and delimiter in rest:
                entry = prefix + rest[: rest.index(delimiter) + len(delimiter)]
                if prefixes and prefixes[-1] == entry:
                    continue
            if len(contents) + len(prefixes) >= max_keys:
                return contents, prefixes, last
            if entry != key:
                prefixes.append(entry)
            else:
                try:
                    contents.append(self.head(bucket, key))
                except S3Error:  # removed meanwhile
                    continue
            last = entry
        return contents, prefixes, None

    def _keys(self, root: Path, prefix: str) -> list[str]:
        start = root.joinpath(*prefix.split("/")[:-1]) if "/" in prefix else root
        real_root = os.path.realpath(root)
        out = []
        for dirpath, dirnames, filenames in os.walk(start):
            if os.path.realpath(dirpath) == real_root and RESERVED in dirnames:
                dirnames.remove(RESERVED)
            rel = os.path.relpath(dirpath, root)
            base = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            for name in filenames:
                key = base + name
                if key.startswith(prefix) and os.path.isfile(os.path.join(dirpath, name)):
                    out.append(key)
        return out

    # ---- multipart uploads -----------------------------------------------------------------------------------

    def create_upload(self, bucket: str, key: str, content_type: str, metadata: Mapping[str, str]) -> str:
        """Start a multipart upload of `key`: its new id (its parts are staged under it)."""
        self.path(bucket, key)
        upload_id = secrets.token_hex(16)
        folder = self.staging(bucket) / "uploads" / upload_id
        folder.mkdir(parents=True)
        (folder / "upload.json").write_text(
            json.dumps({"key": key, "content_type": content_type, "metadata": dict(metadata)})
        )
        return upload_id

    def upload(self, bucket: str, key: str, upload_id: str) -> tuple[Path, dict[str, Any]]:
        """The folder and description of an upload in progress; NoSuchUpload if there is none for this key."""
        folder = self.staging(bucket) / "uploads" / upload_id
        try:
            if not upload_id.isalnum():
                raise FileNotFoundError(upload_id)
            info: dict[str, Any] = json.loads((folder / "upload.json").read_text())
        except (OSError, ValueError):
            raise no_such_upload(upload_id) from None
        if info["key"] != key:
            raise no_such_upload(upload_id)
        return folder, info

    def store_part(self, bucket: str, key: str, upload_id: str, number: int, staged: Staged) -> str:
        """Keep a complete staged part; returns its ETag (the MD5 of the part)."""
        folder, _ = self.upload(bucket, key, upload_id)
        etag = staged.md5.hexdigest()
        (folder / f"{number:05d}.etag").write_text(etag)
        os.replace(staged.path, folder / f"{number:05d}.part")
        return etag

    def complete_upload(self, bucket: str, key: str, upload_id: str, parts: Sequence[tuple[int, str]]) -> ObjectInfo:
        """Join the named parts, in order, into the object; the ETag is S3's `md5(part digests)-N`."""
        folder, info = self.upload(bucket, key, upload_id)
        if not parts:
            raise S3Error(400, "MalformedXML", "The XML you provided was not well-formed.")
        numbers = [n for n, _ in parts]
        if numbers != sorted(set(numbers)):
            raise S3Error(400, "InvalidPartOrder", "The list of parts was not in ascending order.")
        digests = b""
        files = []
        for i, (number, etag) in enumerate(parts):
            part = folder / f"{number:05d}.part"
            try:
                stored = (folder / f"{number:05d}.etag").read_text()
            except FileNotFoundError:
                stored = ""
            if not stored or stored != etag.strip('"'):
                raise S3Error(400, "InvalidPart", "One or more of the specified parts could not be found.")
            if i < len(parts) - 1 and part.stat().st_size < MIN_PART_SIZE:
                raise S3Error(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size.")
            digests += bytes.fromhex(stored)
            files.append(part)
        staged = Staged(self.staging(bucket))
        try:
            for part in files:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, staged._file, 1 << 20)
            staged.close()
        except BaseException:
            staged.discard()
            raise
        etag = f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(parts)}"
        result = self.commit(bucket, key, staged.path, etag, info["content_type"], info["metadata"])
        shutil.rmtree(folder, ignore_errors=True)
        return result

    def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        """Remove an upload in progress and its parts; NoSuchUpload if there is none for this key."""
        folder, _ = self.upload(bucket, key, upload_id)
        shutil.rmtree(folder, ignore_errors=True)


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
