"""Helpers for the store contract suite: sample keys, rounds and moderator changes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from core.events import ChannelKey, Platform
from core.records import ModChange, ModVerb, NewRound, Reservation, RoundKind, RoundState
from core.spec import ImageSpec

NOW = datetime(2025, 5, 10, 12, 0, tzinfo=UTC)
TODAY = "2025-05-10"
YESTERDAY_NOON = NOW - timedelta(days=1)
KEY = ChannelKey(Platform.TELEGRAM, "-100", "-100")
OTHER_CHANNEL = ChannelKey(Platform.TELEGRAM, "-100", "-100", "7")
DISCORD = ChannelKey(Platform.DISCORD, "guild-1", "chan-1")

_keys = itertools.count(1)


def idem() -> str:
    return f"idem-{next(_keys)}"


def new_round(
    user_id: str = "ann",
    *,
    key: ChannelKey = KEY,
    prompt: str = "a red fox in the snow",
    kind: RoundKind = RoundKind.GENERATE,
    parent_id: int | None = None,
    spec: ImageSpec | None = None,
    input_shas: tuple[str, ...] = (),
    state: RoundState = RoundState.REQUESTED,
    owner: str | None = None,
    idem_key: str | None = None,
    lang: str = "en",
) -> NewRound:
    return NewRound(
        idem_key=idem_key or idem(),
        key=key,
        user_id=user_id,
        user_name=user_id.title(),
        parent_id=parent_id,
        kind=kind,
        prompt=prompt,
        spec=spec or ImageSpec(),
        input_shas=input_shas,
        state=state,
        owner=owner,
        lang=lang,
    )


def reservation(
    round_id: int,
    cost: int = 1,
    *,
    now: datetime = NOW,
    default_daily: int = 10,
    budget_usd: float | None = None,
    est_usd: float = 0.04,
) -> Reservation:
    return Reservation(
        round_id=round_id, cost=cost, default_daily=default_daily, now=now, budget_usd=budget_usd, est_usd=est_usd
    )


def change(
    verb: ModVerb,
    target: str | None = "ann",
    value: int | None = None,
    *,
    key: ChannelKey = KEY,
    actor: str = "mod",
    now: datetime = NOW,
    text_value: str | None = None,
    idem_key: str | None = None,
) -> ModChange:
    return ModChange(
        platform=key.platform.value,
        community=key.community,
        actor_id=actor,
        verb=verb,
        target=target,
        value=value,
        idem_key=idem_key or idem(),
        now=now,
        text_value=text_value,
    )
