"""The study's file on disk: an append-only journal of JSON lines that many processes share.

Every change is one line appended under an inter-process lock (``filelock``, an ``flock`` on a
``.lock`` file beside the study, which works across machines on a shared filesystem that
supports it), then flushed to disk: saving a trial costs the same at 10 trials as at 20,000.
Each process remembers how far it has read, and reads only what others appended since.

A crash in the middle of an append leaves a last line without its newline: readers ignore it
(the study warns), and the next writer cuts it off before appending. The whole file is written
anew only to start a study, convert an old one or restart it: into a temporary file beside it,
flushed, renamed over the study (its mode kept; through a symbolic link, the link's target is
replaced, not the link), then the directory is flushed too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from nbopt.errors import ConfigError
from nbopt.tuning._errors import StudyWriteError

# Seconds to wait for another process to finish its write before giving up: a write holds the
# lock for milliseconds, so this only runs out when the lock file is held by a hung process.
LOCK_TIMEOUT = 120.0


class JournalFile:
    """The journal at ``path`` (a symbolic link is followed)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.target = Path(os.path.realpath(self.path))
        self._lock = FileLock(f"{self.target}.lock", timeout=LOCK_TIMEOUT)
        self.offset = 0  # bytes of complete lines already read
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file read
        self._torn = False  # the file ends with a partial line (a crash while writing)

    # -- before the first trial ---------------------------------------------------------------

    def prepare(self) -> None:
        """Check that the study can be written here, changing nothing but a missing directory
        (and temporary files that crashed writers left beside the study).

        Raises:
            ConfigError: the directory is missing (and so is its parent), a part of the path
                is a file, or the directory or the study cannot be written (read-only, full).
        """
        directory = self.target.parent
        if not directory.is_dir():
            if directory.exists() or (directory.parent.exists() and not directory.parent.is_dir()):
                raise ConfigError(self._cannot("a part of its path is a file, not a directory"))
            if not directory.parent.is_dir():
                raise ConfigError(self._cannot(f"its directory {directory.parent} does not exist"))
            try:
                directory.mkdir()
            except OSError as exc:
                raise ConfigError(self._cannot(_reason(exc))) from None
        if self.target.is_dir():
            raise ConfigError(f"study path {self.path} is a directory; name a file in it")
        try:
            with self.locked():
                if self.target.exists():
                    os.close(os.open(self.target, os.O_WRONLY | os.O_APPEND))
                self._remove_stale_temporaries()
                self._probe(directory)
        except OSError as exc:
            raise ConfigError(self._cannot(_reason(exc))) from None

    def _probe(self, directory: Path) -> None:
        """Write, flush and remove a small file beside the study: the directory takes files."""
        probe = self._temporary()
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                _write_all(fd, b"nbopt study write check\n" * 64)
                os.fsync(fd)
            finally:
                os.close(fd)
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

    def _cannot(self, why: str) -> str:
        return f"study path {self.path} cannot be written: {why}; choose a writable path"

    # -- locking ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        """Hold the study's inter-process lock: every read and write of the journal does."""
        try:
            self._lock.acquire(timeout=timeout)
        except Timeout:
            raise StudyWriteError(
                f"study {self.path} stayed locked by another process for {timeout:.0f} s "
                f"(lock file {self._lock.lock_file})"
            ) from None
        try:
            yield
        finally:
            self._lock.release()

    # -- reading ------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.target.exists()

    def read_all(self) -> tuple[bytes, bytes]:
        """The whole file from the start: its complete lines, and a last line without its
        newline if there is one. Later reads continue after the last complete line."""
        self.offset, self._identity = 0, None
        lines, tail, _ = self.read_new()
        return lines, tail

    def read_new(self) -> tuple[bytes, bytes, bool]:
        """What was appended since the last read: complete lines, a partial last line, and
        whether the file was replaced meanwhile (then it is read again from the start)."""
        with open(self.target, "rb") as handle:
            status = os.fstat(handle.fileno())
            identity = (status.st_dev, status.st_ino)
            replaced = self._identity is not None and (
                identity != self._identity or status.st_size < self.offset
            )
            if replaced:
                self.offset = 0
            self._identity = identity
            handle.seek(self.offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1
        self._torn = end < len(data)
        self.offset += end
        return data[:end], data[end:], replaced

    # -- writing ------------------------------------------------------------------------------

    def append(self, lines: list[bytes], durable: bool = True) -> None:
        """Append ``lines`` (each ending with a newline), then (``durable``) flush them to disk;
        hold the lock, and read what others appended first (the offset must be the end of the
        file). Written lines survive the process's crash either way; the flush is for a crash
        of the machine.

        A partial last line left by a crashed writer is cut off first. Raises
        :class:`StudyWriteError` if the disk refuses.
        """
        payload = b"".join(lines)
        try:
            fd = os.open(self.target, os.O_WRONLY | os.O_APPEND)
            try:
                if self._torn:
                    os.ftruncate(fd, self.offset)
                    self._torn = False
                if os.lseek(fd, 0, os.SEEK_END) != self.offset:
                    raise RuntimeError("appending to a journal with lines not read yet")
                _write_all(fd, payload)
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StudyWriteError(f"could not write to study {self.path}: {_reason(exc)}") from None
        self.offset += len(payload)
        self._identity = _identity_of(self.target)

    def replace(self, lines: list[bytes], backup: Path | None = None) -> None:
        """Write a new journal holding ``lines``, atomically; hold the lock.

        The previous file, if any, keeps its mode and owner in the new one; with ``backup`` it
        is kept under that name (a hard link, so the study path never lacks a complete file).
        Temporary files that crashed writers left beside the study are removed.
        """
        self._remove_stale_temporaries()
        temporary = self._temporary()
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                _copy_ownership(self.target, fd)
                _write_all(fd, b"".join(lines))
                os.fsync(fd)
            finally:
                os.close(fd)
            if backup is not None and self.target.exists():
                _keep_copy(self.target, backup)
            os.replace(temporary, self.target)
            _sync_directory(self.target.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise StudyWriteError(f"could not write study {self.path}: {_reason(exc)}") from None
        self.offset = sum(len(line) for line in lines)
        self._identity = _identity_of(self.target)
        self._torn = False

    def _temporary(self) -> Path:
        return self.target.with_name(f".{self.target.name}.{os.getpid()}.tmp")

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of this study: under the lock, none can be in use."""
        for stale in self.target.parent.glob(f".{self.target.name}.*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _keep_copy(original: Path, backup: Path) -> None:
    """``backup`` holds what ``original`` holds now: a hard link, or a copy where the
    filesystem has none."""
    with contextlib.suppress(FileNotFoundError):
        backup.unlink()
    try:
        os.link(original, backup)
    except OSError:
        shutil.copy2(original, backup)


def _identity_of(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


def _copy_ownership(original: Path, fd: int) -> None:
    """Give the new file the mode (and, where allowed, the owner) of the one it replaces."""
    try:
        status = os.stat(original)
    except FileNotFoundError:
        return
    os.fchmod(fd, status.st_mode & 0o7777)
    with contextlib.suppress(OSError, AttributeError):
        os.fchown(fd, status.st_uid, status.st_gid)


def _sync_directory(directory: Path) -> None:
    """Flush a directory entry (a rename) to disk, where the platform allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _reason(exc: OSError) -> str:
    """``read-only file system``, ``no space left on device`` ... from an OSError."""
    if exc.errno == errno.ENOTDIR:
        return "a part of its path is a file, not a directory"
    text = exc.strerror or str(exc)
    return text[0].lower() + text[1:] if text else type(exc).__name__
