"""Start-up back-off after fatal platform errors, whatever the supervisor does.

Discord resets a bot's token after 1000 logins a day, and Docker's restart policy backs off for about a
minute at most. So each fatal exit is remembered in the data dir, and the next start waits 1, 2, 4 ...
minutes (up to an hour) before connecting; a start that connects cleanly clears the record."""

from __future__ import annotations

import json
import time
from pathlib import Path

FILE = "fatal-exits.json"
WINDOW = 6 * 3600  # fatal exits older than this are forgotten
MAX_DELAY = 3600.0


def delay_before_start(data_dir: Path, now: float | None = None) -> float:
    record = _load(data_dir)
    now = time.time() if now is None else now
    if not record or now - record["last"] > WINDOW:
        return 0.0
    delay = min(MAX_DELAY, 60.0 * 2 ** (record["count"] - 1))
    return max(0.0, record["last"] + delay - now)


def record_fatal(data_dir: Path, now: float | None = None) -> None:
    record = _load(data_dir)
    now = time.time() if now is None else now
    count = record["count"] + 1 if record and now - record["last"] <= WINDOW else 1
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / FILE).write_text(json.dumps({"count": count, "last": now}))


def clear(data_dir: Path) -> None:
    (data_dir / FILE).unlink(missing_ok=True)


def _load(data_dir: Path) -> dict[str, float] | None:
    try:
        data = json.loads((data_dir / FILE).read_text())
        return {"count": float(data["count"]), "last": float(data["last"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None
