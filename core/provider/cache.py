"""Content-addressed image files under `EASEL_DATA_DIR/images`, with a retention limit.

Image bytes never go into SQLite: rounds keep the SHA-256 of their image. Files are written atomically
(temp file + rename), so a crash leaves either the whole file or none."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from core.provider.pictures import extension_for

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PruneReport:
    removed: int
    kept: int
    bytes_kept: int


class ImageCache:
    """Synchronous on purpose: the studio calls it through `asyncio.to_thread`."""

    def __init__(self, root: Path, *, max_age_days: float, max_bytes: int) -> None:
        self.root = root
        self.max_age = max_age_days * 86400
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._total: int | None = None  # bytes on disk, counted once, then kept up to date by put/prune

    def _path(self, sha: str, mime: str) -> Path:
        return self.root / sha[:2] / f"{sha}.{extension_for(mime)}"

    def put(self, data: bytes, mime: str) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self._path(sha, mime)
        if path.exists():
            os.utime(path)  # touched: retention counts from the last use
            return sha
        path.parent.mkdir(parents=True, exist_ok=True)
        # A unique temp name per call: two rounds may store the same image at the same moment.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._grown(len(data))
        return sha

    def _grown(self, size: int) -> None:
        """The size cap holds on every write, not only at the hourly prune."""
        with self._lock:
            if self._total is None:
                self._total = self._measure()
            else:
                self._total += size
            over = self.max_bytes > 0 and self._total > self.max_bytes
        if over:
            self.prune()

    def _measure(self) -> int:
        total = 0
        for path in self.root.glob("*/*"):
            with contextlib.suppress(FileNotFoundError):  # another thread's temp file, renamed meanwhile
                total += path.stat().st_size
        return total

    def get(self, sha: str, mime: str) -> bytes | None:
        try:
            return self._path(sha, mime).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, sha: str, mime: str) -> None:
        self._path(sha, mime).unlink(missing_ok=True)

    def prune(self, now: float | None = None) -> PruneReport:
        """Delete files older than the retention age, then the oldest until the total fits the cap."""
        now = time.time() if now is None else now
        files: list[tuple[float, int, Path]] = []
        removed = 0
        for path in self.root.glob("*/*"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            if path.suffix == ".tmp" or now - stat.st_mtime > self.max_age:
                path.unlink(missing_ok=True)
                removed += 1
            else:
                files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        files.sort()
        while files and total > self.max_bytes:
            _, size, path = files.pop(0)
            path.unlink(missing_ok=True)
            total -= size
            removed += 1
        with self._lock:
            self._total = total
        if removed:
            log.info("image cache pruned: %d files removed, %d kept (%d bytes)", removed, len(files), total)
        return PruneReport(removed=removed, kept=len(files), bytes_kept=total)
