"""One process at a time on a SQLite data directory: a second `easel run` or `easel console` on the same
`EASEL_DATA_DIR` is refused with a message naming the process that holds it, instead of recovering (and
refunding) the live process's rounds. The lock is the kernel's (flock), so a crashed holder frees it."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from core.errors import ConfigError

LOCK_NAME = "easel.lock"


@contextlib.contextmanager
def hold_data_dir(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / LOCK_NAME
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 64, 0).decode(errors="replace").strip() or "unknown"
            raise ConfigError(
                f"another Easel process (pid {holder}) is using the data directory {data_dir.resolve()}; stop it "
                "first, or give this one its own EASEL_DATA_DIR"
            ) from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(handle)  # closing releases the lock
