"""The database schema as ordered migrations (sqlite-utils), applied at start-up by `Store.open`.

Never edit a migration that has shipped: add a new one."""

from __future__ import annotations

import secrets
import sqlite3

import sqlite_utils
from sqlite_utils.migrations import Migrations

MIGRATIONS = Migrations("easel")


def _run_script(db: sqlite_utils.Database, script: str) -> None:
    # Not executescript(): it COMMITs first, which would break the migration's transaction.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _run_statements(db: sqlite_utils.Database, script: str) -> None:
    """Like `_run_script`, for scripts with triggers (semicolons inside BEGIN ... END)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {statement.strip()[:80]}")


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


# Round states as the round service names them (core.records.RoundState); the old names map onto them.
_STATES = "'requested', 'queued', 'running', 'delivering', 'delivered', 'failed', 'cancelled', 'refused'"
_OLD_TO_NEW = (
    "CASE status WHEN 'pending' THEN 'requested' WHEN 'reserved' THEN 'queued' "
    "WHEN 'generated' THEN 'delivering' ELSE status END"
)


@MIGRATIONS()
def m003_round_states(db: sqlite_utils.Database) -> None:
    """Explicit round states with a CHECK, the image spec's background and references, several input images,
    what a background round needs to be resumed (stream position, provider mode, owning worker, progress
    message), the user's language; workers with heartbeats; community settings; who a notice is for.

    Runs with foreign keys off (the store turns them off around migrations): `rounds` is rebuilt."""
    _run_statements(db, _M003.replace("{STATES}", _STATES).replace("{OLD_TO_NEW}", _OLD_TO_NEW))
    db.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")


@MIGRATIONS()
def m004_whole_spec(db: sqlite_utils.Database) -> None:
    """The image spec as one JSON value per round, written and read through `ImageSpec` (the columns size,
    quality, background and refs stay, filled from it, for reports): a new image option needs no new column."""
    db.execute("ALTER TABLE rounds ADD COLUMN spec TEXT CHECK (spec IS NULL OR json_valid(spec))")
    db.execute(
        "UPDATE rounds SET spec = json_object('background', background, 'quality', quality, 'references', refs,"
        " 'shape', size)"
    )
    db.execute("UPDATE meta SET value = '4' WHERE key = 'schema'")


_M003 = """
        CREATE TABLE rounds_v3 (
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
            background TEXT NOT NULL DEFAULT 'auto' CHECK (background IN ('auto', 'opaque', 'transparent')),
            refs INTEGER NOT NULL DEFAULT 0 CHECK (refs >= 0),
            cost INTEGER NOT NULL DEFAULT 0 CHECK (cost >= 0),
            status TEXT NOT NULL CHECK (status IN ({STATES})),
            reason TEXT,
            input_shas TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(input_shas)),
            image_sha TEXT,
            mime TEXT,
            width INTEGER,
            height INTEGER,
            response_id TEXT,
            image_call_id TEXT,
            revised_prompt TEXT,
            request_id TEXT,
            stream_seq INTEGER,
            bg_mode INTEGER NOT NULL DEFAULT 0 CHECK (bg_mode IN (0, 1)),
            owner TEXT,
            progress_message TEXT,
            lang TEXT NOT NULL DEFAULT 'en',
            text_tokens_in INTEGER NOT NULL DEFAULT 0,
            image_tokens_in INTEGER NOT NULL DEFAULT 0,
            image_tokens_out INTEGER NOT NULL DEFAULT 0,
            host_tokens_in INTEGER NOT NULL DEFAULT 0,
            host_tokens_out INTEGER NOT NULL DEFAULT 0,
            est_usd REAL NOT NULL DEFAULT 0 CHECK (est_usd >= 0),
            day TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        INSERT INTO rounds_v3 (id, idem_key, platform, community, channel, thread, number, user_id, user_name,
            parent_id, kind, prompt, size, quality, cost, status, reason, input_shas, image_sha, mime, width,
            height, response_id, image_call_id, revised_prompt, request_id, text_tokens_in, image_tokens_in,
            image_tokens_out, host_tokens_in, host_tokens_out, est_usd, day, created_at, updated_at)
        SELECT id, idem_key, platform, community, channel, thread, number, user_id, user_name,
            parent_id, kind, prompt, size, quality, cost, {OLD_TO_NEW}, reason,
            CASE WHEN input_sha IS NULL THEN '[]' ELSE json_array(input_sha) END, image_sha, mime, width,
            height, response_id, image_call_id, revised_prompt, request_id, text_tokens_in, image_tokens_in,
            image_tokens_out, host_tokens_in, host_tokens_out, est_usd, day, created_at, updated_at
        FROM rounds;
        DROP TABLE rounds;
        ALTER TABLE rounds_v3 RENAME TO rounds;
        CREATE INDEX rounds_channel ON rounds (platform, community, channel, number);
        CREATE INDEX rounds_user_day ON rounds (platform, community, user_id, day);
        CREATE INDEX rounds_day ON rounds (day, status);
        CREATE INDEX rounds_parent ON rounds (parent_id);
        CREATE INDEX rounds_open ON rounds (owner, status)
            WHERE status IN ('requested', 'queued', 'running', 'delivering');

        -- A finished round stays finished: recovery, the ledger and Cancel rely on it.
        CREATE TRIGGER rounds_final BEFORE UPDATE OF status ON rounds
        WHEN OLD.status IN ('delivered', 'failed', 'cancelled', 'refused') AND NEW.status <> OLD.status
        BEGIN SELECT RAISE(ABORT, 'a finished round cannot change state'); END;

        -- The ledger is append-only (a community id may move: a Telegram group becoming a supergroup), a
        -- reserve or refund belongs to a round, and a refund gives back exactly the round's reserve.
        CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
        BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
        CREATE TRIGGER ledger_no_update BEFORE UPDATE OF id, round_id, user_id, kind, amount, day ON ledger
        BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
        CREATE TRIGGER ledger_round_rows BEFORE INSERT ON ledger
        WHEN NEW.kind IN ('reserve', 'refund') AND NEW.round_id IS NULL
        BEGIN SELECT RAISE(ABORT, 'a reserve or refund needs its round'); END;
        CREATE TRIGGER ledger_refund_matches BEFORE INSERT ON ledger
        WHEN NEW.kind = 'refund' AND NOT EXISTS (
            SELECT 1 FROM ledger WHERE round_id = NEW.round_id AND kind = 'reserve'
            AND amount = NEW.amount AND user_id = NEW.user_id AND day = NEW.day)
        BEGIN SELECT RAISE(ABORT, 'a refund must match its round''s reserve'); END;

        -- Which worker process is alive: open rounds of a worker without a fresh heartbeat are adopted.
        CREATE TABLE workers (owner TEXT PRIMARY KEY, heartbeat_at TEXT NOT NULL);

        -- Per-community settings a moderator chose (NULL: automatic).
        CREATE TABLE communities (
            platform TEXT NOT NULL,
            community TEXT NOT NULL,
            language TEXT,
            PRIMARY KEY (platform, community)
        );

        -- A message shows a round as its result or as its progress (where Cancel lives).
        ALTER TABLE round_messages ADD COLUMN role TEXT NOT NULL DEFAULT 'result'
            CHECK (role IN ('result', 'progress'));
        CREATE INDEX round_messages_round ON round_messages (round_id);

        -- Whom a notice concerns, so forgetting a user also erases the prompt snippets it quotes.
        ALTER TABLE notices ADD COLUMN user_id TEXT;
        CREATE INDEX notices_pending ON notices (platform, sent_at);
        CREATE INDEX notices_user ON notices (platform, user_id);

        -- A moderator action's text argument (the language code).
        ALTER TABLE audit ADD COLUMN text_value TEXT;

        CREATE INDEX ledger_grants ON ledger (platform, community, actor_id, day) WHERE kind = 'grant';
"""
