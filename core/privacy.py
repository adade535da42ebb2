"""Forgetting a user on request (Discord's and Telegram's developer terms expect it).

Their prompts, names and images are erased; the ledger keeps its rows (amounts and the platform user id),
so totals, today's balance and past usage reports stay exact. `secure_delete` is on and the WAL is
truncated afterwards, so the text does not linger in free pages."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Forgotten:
    rounds: int
    images: list[tuple[str, str]]  # (sha, mime) no longer referenced by anyone else's round


def forget_user(conn: sqlite3.Connection, platform: str, user_id: str) -> Forgotten:
    rows = conn.execute(
        "SELECT id, image_sha, input_sha, mime FROM rounds WHERE platform = ? AND user_id = ?", (platform, user_id)
    ).fetchall()
    conn.execute(
        "UPDATE rounds SET prompt = '[deleted]', revised_prompt = NULL, user_name = '' "
        "WHERE platform = ? AND user_id = ?",
        (platform, user_id),
    )
    conn.execute("DELETE FROM users WHERE platform = ? AND user_id = ?", (platform, user_id))
    candidates = {(r["image_sha"], r["mime"] or "image/png") for r in rows if r["image_sha"]}
    candidates |= {(r["input_sha"], "image/png") for r in rows if r["input_sha"]}
    orphaned = []
    for sha, mime in sorted(candidates):
        shared = conn.execute(
            "SELECT 1 FROM rounds WHERE (image_sha = ? OR input_sha = ?) AND NOT (platform = ? AND user_id = ?)",
            (sha, sha, platform, user_id),
        ).fetchone()
        if shared is None:
            orphaned.append((sha, mime))
    conn.execute(
        "UPDATE rounds SET image_sha = NULL, input_sha = NULL WHERE platform = ? AND user_id = ?", (platform, user_id)
    )
    return Forgotten(rounds=len(rows), images=orphaned)
