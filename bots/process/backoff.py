"""Start-up back-off after fatal platform errors, whatever the supervisor does.

Discord resets a bot's token after 1000 logins a day, and Docker's restart policy backs off for about a
minute at most. So each fatal exit is remembered in the data dir, and the next start waits 1, 2, 4 ...
minutes (up to an hour) before connecting; a start that connects cleanly clears the record.

The record keeps a short hash of the platform tokens (never a token): when the operator has changed the
token since the fatal exit (the usual fix for a rejected one), the next start does not wait."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path

FILE = "fatal-exits.json"
WINDOW = 6 * 3600  # fatal exits older than this are forgotten
MAX_DELAY = 3600.0
DIR_MODE = 0o700


def token_fingerprint(*tokens: str | None) -> str:
    """A short one-way hash of the platform tokens, to tell whether they changed. Tokens are long random
    secrets, so 64 bits of a keyed hash reveal nothing usable about them."""
    joined = "\0".join(token or "" for token in tokens).encode()
    return hashlib.blake2b(joined, digest_size=8, person=b"easel-backoff").hexdigest()


def delay_before_start(data_dir: Path, now: float | None = None, *, fingerprint: str | None = None) -> float:
    """Seconds to wait before connecting; 0 when no recent fatal exit, or when `fingerprint` (of the tokens
    now configured) differs from the one recorded with the fatal exit."""
    record = _load(data_dir)
    now = time.time() if now is None else now
    if not record or now - float(record["last"]) > WINDOW:
        return 0.0
    if fingerprint is not None and record.get("token") not in (None, fingerprint):
        return 0.0
    delay = min(MAX_DELAY, 60.0 * 2 ** (float(record["count"]) - 1))
    return max(0.0, float(record["last"]) + delay - now)


def record_fatal(data_dir: Path, now: float | None = None, *, fingerprint: str | None = None) -> None:
    record = _load(data_dir)
    now = time.time() if now is None else now
    same = record is not None and record.get("token") == fingerprint
    recent = record is not None and now - float(record["last"]) <= WINDOW
    count = float(record["count"]) + 1 if record and recent and same else 1
    _make_private_dir(data_dir)
    entry: dict[str, float | str] = {"count": count, "last": now}
    if fingerprint is not None:
        entry["token"] = fingerprint
    (data_dir / FILE).write_text(json.dumps(entry))


def stamp(data_dir: Path, fingerprint: str) -> None:
    """Attach the tokens' fingerprint to the current record (after a fatal exit recorded without one)."""
    record = _load(data_dir)
    if record is not None and record.get("token") != fingerprint:
        (data_dir / FILE).write_text(json.dumps({**record, "token": fingerprint}))


def forget_if_changed(data_dir: Path, fingerprint: str) -> bool:
    """Clear the record when it was made with other tokens; True if it was cleared."""
    record = _load(data_dir)
    if record is None or record.get("token") in (None, fingerprint):
        return False
    clear(data_dir)
    return True


def clear(data_dir: Path) -> None:
    (data_dir / FILE).unlink(missing_ok=True)


def waiting_message(seconds: float, data_dir: Path) -> str:
    """What the log says while Easel waits: why, for how long, and how to skip the wait."""
    return (
        f"the last start failed fatally; waiting {seconds:.0f} s before connecting again, so a restart loop "
        f"cannot exhaust the platform's login limits. A new token starts at once; to skip the wait otherwise, "
        f"delete {data_dir / FILE} and start again"
    )


def _make_private_dir(path: Path) -> None:
    if not path.exists():
        path.mkdir(parents=True, mode=DIR_MODE)
        with contextlib.suppress(OSError):
            os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask


def _load(data_dir: Path) -> dict[str, float | str] | None:
    try:
        data = json.loads((data_dir / FILE).read_text())
        record: dict[str, float | str] = {"count": float(data["count"]), "last": float(data["last"])}
        if isinstance(data.get("token"), str):
            record["token"] = data["token"]
        return record
    except (OSError, ValueError, KeyError, TypeError):
        return None
