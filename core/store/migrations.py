"""The database schema as ordered migrations (sqlite-utils), applied at start-up by `Store.open`.

Never edit a migration that has shipped: add a new one."""

from __future__ import annotations

import secrets

import sqlite_utils
from sqlite_utils.migrations import Migrations

MIGRATIONS = Migrations("easel")


def _run_script(db: sqlite_utils.Database, script: str) -> None:
    # Not executescript(): it COMMITs first, which would break the migration's transaction.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


@MIGRATIONS()
def m001_initial(db: sqlite_utils.Database) -> None:
    _run_script(
        db,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

        -- One row per request for an image, whatever became of it. `idem_key` makes redelivery a no-op.
        CREATE TABLE rounds (
            id INTEGER PRIMARY KEY,
            idem_key TEXT NOT NULL UNIQUE,
            platform TEXT NOT NULL,
            community TEXT NOT NULL,
            channel TEXT NOT NULL,
            thread TEXT NOT NULL DEFAULT '',
            number INTEGER NOT NULL,
            user_id TEXT NOT NULL,
            user_name TEXT NOT NULL DEFAULT '',
            parent_id INTEGER REFERENCES rounds(id),
            kind TEXT NOT NULL CHECK (kind IN ('generate', 'edit', 'reroll')),
            prompt TEXT NOT NULL,
            size TEXT NOT NULL,
            quality TEXT NOT NULL,
            cost INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL CHECK (status IN
                ('pending', 'reserved', 'running', 'generated', 'delivered', 'failed', 'refused')),
            reason TEXT,
            input_sha TEXT,
            image_sha TEXT,
            mime TEXT,
            width INTEGER,
            height INTEGER,
            response_id TEXT,
            image_call_id TEXT,
            revised_prompt TEXT,
            request_id TEXT,
            text_tokens_in INTEGER NOT NULL DEFAULT 0,
            image_tokens_in INTEGER NOT NULL DEFAULT 0,
            image_tokens_out INTEGER NOT NULL DEFAULT 0,
            host_tokens_in INTEGER NOT NULL DEFAULT 0,
            host_tokens_out INTEGER NOT NULL DEFAULT 0,
            est_usd REAL NOT NULL DEFAULT 0,
            day TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX rounds_channel ON rounds (platform, community, channel, number);
        CREATE INDEX rounds_user_day ON rounds (platform, community, user_id, day);
        CREATE INDEX rounds_open ON rounds (status) WHERE status IN ('pending', 'reserved', 'running', 'generated');

        -- Which platform messages show which round: how "a reply to message X" finds its parent.
        CREATE TABLE round_messages (
            platform TEXT NOT NULL,
            channel TEXT NOT NULL,
            message_id TEXT NOT NULL,
            round_id INTEGER NOT NULL REFERENCES rounds(id),
            PRIMARY KEY (platform, channel, message_id)
        );

        -- Append-only credit ledger. A round has at most one reserve and one refund (UNIQUE), so a double
        -- charge or a double refund cannot be written. Grants carry the moderator's idempotency key.
        CREATE TABLE ledger (
            id INTEGER PRIMARY KEY,
            round_id INTEGER REFERENCES rounds(id),
            platform TEXT NOT NULL,
            community TEXT NOT NULL,
            user_id TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('reserve', 'refund', 'grant')),
            amount INTEGER NOT NULL CHECK (amount >= 0),
            day TEXT NOT NULL,
            actor_id TEXT,
            idem_key TEXT UNIQUE,
            created_at TEXT NOT NULL,
            UNIQUE (round_id, kind)
        );
        CREATE INDEX ledger_user_day ON ledger (platform, community, user_id, day);

        -- Moderator policy. user_id '*' is the community default.
        CREATE TABLE policies (
            platform TEXT NOT NULL,
            community TEXT NOT NULL,
            user_id TEXT NOT NULL,
            daily INTEGER,
            banned INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL,
            updated_by TEXT NOT NULL,
            PRIMARY KEY (platform, community, user_id)
        );

        -- Who changed what, when. `idem_key` makes a redelivered moderator command a no-op.
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            platform TEXT NOT NULL,
            community TEXT NOT NULL,
            actor_id TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT,
            value INTEGER,
            idem_key TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        );

        -- Users seen, so moderators can name them (`@username`).
        CREATE TABLE users (
            platform TEXT NOT NULL,
            user_id TEXT NOT NULL,
            username TEXT,
            display_name TEXT NOT NULL DEFAULT '',
            seen_at TEXT NOT NULL,
            PRIMARY KEY (platform, user_id)
        );
        CREATE INDEX users_username ON users (platform, username COLLATE NOCASE);

        -- Messages the core wants an adapter to send once it is connected (e.g. after a crash).
        CREATE TABLE notices (
            id INTEGER PRIMARY KEY,
            platform TEXT NOT NULL,
            community TEXT NOT NULL,
            channel TEXT NOT NULL,
            thread TEXT NOT NULL DEFAULT '',
            reply_to TEXT,
            text TEXT NOT NULL,
            created_at TEXT NOT NULL,
            sent_at TEXT
        );
        """,
    )
    db.execute("INSERT INTO meta (key, value) VALUES ('schema', '1')")
    # The key of the HMAC that turns user ids into the provider's safety_identifier: never leaves the DB.
    db.execute("INSERT INTO meta (key, value) VALUES ('safety_salt', ?)", [secrets.token_hex(32)])


@MIGRATIONS()
def m002_inbox(db: sqlite_utils.Database) -> None:
    # Platform updates written before the platform is told they arrived (Telegram: the getUpdates offset), so
    # a crash between "received" and "handled" loses nothing: the adapter replays what is left at start-up.
    _run_script(
        db,
        """
        CREATE TABLE inbox (
            platform TEXT NOT NULL,
            idem_key TEXT NOT NULL,
            payload TEXT NOT NULL,
            received_at TEXT NOT NULL,
            PRIMARY KEY (platform, idem_key)
        );
        CREATE INDEX inbox_received ON inbox (platform, received_at);
        """,
    )
