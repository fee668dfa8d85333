"""The data folder's lock files: who uses the folder, who indexes it, who schedules passes.

All are flock locks: the kernel releases them when the holder exits, even on kill -9, so a crash never
leaves a folder locked. `in-use.lock` is held shared, for as long as they run, by every process that keeps
the folder's stores open (the bot, `findimage schedule`, `index` and `worker`), and exclusively by
`findimage restore` while it replaces them: a restore is refused while any of them runs, and one that
starts during a restore waits until it is done. `index-pass.lock` and `scheduler.lock` keep a second pass
or scheduler out (indexer.lock) and name their holder.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from findimage.errors import EXIT_REFUSED, FindimageError

log = logging.getLogger(__name__)


class AlreadyRunning(FindimageError):
    pass


class DataFolderInUse(FindimageError):
    """A restore would replace files a running findimage process has open."""

    exit_code = EXIT_REFUSED


class ProcessLock:
    """A flock on one file: exclusive (its holder's pid written into it), or shared by any number of holders."""

    def __init__(self, path: str | Path, what: str):
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None
        self._exclusive = False

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def try_acquire(self) -> bool:
        """Take it exclusively if nobody holds it (and write who holds it); False if somebody does."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        self._fd, self._exclusive = fd, True
        return True

    def acquire(self) -> ProcessLock:
        if not self.try_acquire():
            raise AlreadyRunning(f"Another {self.what} is already running ({self.holder() or 'another process'}); "
                                 "not starting a second one.")
        return self

    def share(self) -> bool:
        """Take it shared, waiting while an exclusive holder has it; whether it had to wait."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            waited = False
        except BlockingIOError:
            log.warning("waiting for %s to finish in %s (%s)", self.what, self.path.parent,
                        os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process")
            fcntl.flock(fd, fcntl.LOCK_SH)
            waited = True
        self._fd, self._exclusive = fd, False
        return waited

    def holder(self) -> str | None:
        """Who holds the lock exclusively now ("pid N, since ..."), or None; the lock is not taken."""
        if not self.path.is_file():
            return None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            if self._exclusive:  # the holder it names leaves
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ProcessLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def pass_lock(data_dir: str | Path) -> ProcessLock:
    return ProcessLock(Path(data_dir) / "index-pass.lock", "indexing pass")


def scheduler_lock(data_dir: str | Path) -> ProcessLock:
    return ProcessLock(Path(data_dir) / "scheduler.lock", "scheduled indexer")


def in_use_lock(data_dir: str | Path) -> ProcessLock:
    return ProcessLock(Path(data_dir) / "in-use.lock", "a restore")


@contextlib.contextmanager
def using_data_folder(data_dir: str | Path) -> Iterator[None]:
    """Hold the data folder as one of the processes that use it (shared), waiting while a restore runs."""
    lock = in_use_lock(data_dir)
    lock.share()
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def restoring_data_folder(data_dir: str | Path) -> Iterator[None]:
    """Hold the data folder alone (a restore), refused in one sentence while any findimage process uses it."""
    lock = in_use_lock(data_dir)
    if not lock.try_acquire():
        running = [f"the {what} ({holder})" for what, holder in
                   (("scheduled indexer", scheduler_lock(data_dir).holder()),
                    ("indexing pass", pass_lock(data_dir).holder())) if holder]
        who = ", ".join(running) if running else "the bot, the indexer or a worker"
        raise DataFolderInUse(f"findimage processes are using {data_dir} ({who}): stop the bot and the indexer, "
                              "then restore again.")
    try:
        yield
    finally:
        lock.release()
