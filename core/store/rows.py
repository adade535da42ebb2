"""Rows to records and records to columns: one mapper for every backend (the column names are the same in
the SQLite and the PostgreSQL schema)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from core.events import ChannelKey, Platform
from core.records import CommunityUsage, Facts, PendingNotice, Round, RoundKind, RoundState, TopUser
from core.spec import ImageSpec

# Facts fields and the round columns they are written to (None in a Facts leaves the column alone).
FACT_COLUMNS: dict[str, str] = {
    "mime": "mime",
    "width": "width",
    "height": "height",
    "image_sha": "image_sha",
    "response_id": "response_id",
    "image_call_id": "image_call_id",
    "revised_prompt": "revised_prompt",
    "request_id": "request_id",
    "stream_seq": "stream_seq",
    "background": "bg_mode",
    "progress_message": "progress_message",
    "input_shas": "input_shas",
    "text_tokens_in": "text_tokens_in",
    "image_tokens_in": "image_tokens_in",
    "image_tokens_out": "image_tokens_out",
    "host_tokens_in": "host_tokens_in",
    "host_tokens_out": "host_tokens_out",
    "est_usd": "est_usd",
}

OPEN_STATE_NAMES = ("requested", "queued", "running", "delivering")
FINAL_STATES = frozenset({RoundState.FAILED, RoundState.CANCELLED, RoundState.REFUSED})
SPENDING_STATE_NAMES = ("queued", "running", "delivering", "delivered")


def stamp(moment: datetime) -> str:
    """Timestamps are stored as ISO 8601 in UTC, so that text order is time order."""
    return moment.astimezone(UTC).isoformat()


def moment(value: object) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def shas_to_column(shas: tuple[str, ...]) -> str:
    return json.dumps(list(shas))


def shas_from_column(value: object) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    items = value if isinstance(value, list) else json.loads(str(value))
    return tuple(str(item) for item in items)


def fact_columns(facts: Facts | None) -> dict[str, Any]:
    """The round columns a Facts sets (its None fields are left out)."""
    if facts is None:
        return {}
    columns: dict[str, Any] = {}
    for name, column in FACT_COLUMNS.items():
        value = getattr(facts, name)
        if value is not None:
            if isinstance(value, tuple):
                value = shas_to_column(value)
            columns[column] = int(value) if isinstance(value, bool) else value
    return columns


def _spec(row: Mapping[str, Any]) -> ImageSpec:
    """The stored whole spec (JSON text on SQLite, already a dict from PostgreSQL's jsonb)."""
    stored = row.get("spec") if hasattr(row, "get") else row["spec"]
    if stored is None:
        return ImageSpec.from_row({name: row[name] for name in ("size", "quality", "background", "refs")})
    return ImageSpec.from_json(stored if isinstance(stored, str) else json.dumps(stored))


def round_from_row(row: Mapping[str, Any]) -> Round:
    return Round(
        id=int(row["id"]),
        key=ChannelKey(Platform(row["platform"]), str(row["community"]), str(row["channel"]), str(row["thread"])),
        number=int(row["number"]),
        user_id=str(row["user_id"]),
        user_name=str(row["user_name"] or ""),
        parent_id=None if row["parent_id"] is None else int(row["parent_id"]),
        kind=RoundKind(row["kind"]),
        prompt=str(row["prompt"]),
        spec=_spec(row),
        cost=int(row["cost"]),
        state=RoundState(row["status"]),
        reason=row["reason"],
        input_shas=shas_from_column(row["input_shas"]),
        image_sha=row["image_sha"],
        mime=row["mime"],
        response_id=row["response_id"],
        image_call_id=row["image_call_id"],
        revised_prompt=row["revised_prompt"],
        stream_seq=None if row["stream_seq"] is None else int(row["stream_seq"]),
        background=bool(row["bg_mode"]),
        owner=row["owner"],
        progress_message=row["progress_message"],
        lang=str(row["lang"] or "en"),
        created_at=moment(row["created_at"]),
    )


def notice_from_row(row: Mapping[str, Any]) -> PendingNotice:
    return PendingNotice(
        id=int(row["id"]),
        key=ChannelKey(Platform(row["platform"]), str(row["community"]), str(row["channel"]), str(row["thread"])),
        reply_to=row["reply_to"],
        text=str(row["text"]),
    )


def prompt_snippet(prompt: str, length: int = 40) -> str:
    """The start of a prompt as a notice quotes it (whitespace collapsed): how forgetting finds the notices
    written before notices carried a user id."""
    return " ".join(prompt.split())[:length]


def top_user_from_row(row: Mapping[str, Any]) -> TopUser:
    return TopUser(
        user_id=str(row["user_id"]),
        name=str(row["name"] or row["user_id"]),
        images=int(row["images"]),
        credits=int(row["credits"]),
    )


def community_usage_from_row(row: Mapping[str, Any]) -> CommunityUsage:
    return CommunityUsage(
        platform=str(row["platform"]),
        community=str(row["community"]),
        today_images=int(row["today_images"]),
        today_credits=int(row["today_credits"]),
        month_images=int(row["month_images"]),
        month_credits=int(row["month_credits"]),
        month_usd=float(row["month_usd"]),
    )
