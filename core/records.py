"""Domain records the store port speaks in: rounds and their states, balances, policies, usage totals.

Plain frozen values with no database in them; `core.store` maps rows to these and back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from core.events import ChannelKey
from core.spec import ImageSpec

COMMUNITY_DEFAULT = "*"  # the user id of a community's default policy
FORGOTTEN_PROMPT = "[deleted]"  # the prompt of a round whose author asked to be forgotten (`easel forget`)


class RoundState(StrEnum):
    """A round's life, persisted with one write per transition. Recovery and the ledger decide by it:

    requested   claimed, nothing spent, the provider not called
    queued      credits reserved, waiting for a provider slot
    running     the provider was called: it may have made (and billed) an image
    delivering  the image is here and being sent to the chat
    delivered   the image reached the chat: charged, for good
    failed      refunded (the provider failed, or the round was interrupted)
    cancelled   refunded at the user's or a moderator's request, or past its deadline
    refused     refused before anything was reserved (over quota, banned, unknown parent ...)
    """

    REQUESTED = "requested"
    QUEUED = "queued"
    RUNNING = "running"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUSED = "refused"

    @property
    def is_open(self) -> bool:
        return self in OPEN_STATES

    @property
    def may_be_billed(self) -> bool:
        """The provider may have produced (and billed) an image in this state."""
        return self in (RoundState.RUNNING, RoundState.DELIVERING)


OPEN_STATES = frozenset({RoundState.REQUESTED, RoundState.QUEUED, RoundState.RUNNING, RoundState.DELIVERING})


class RoundKind(StrEnum):
    GENERATE = "generate"
    EDIT = "edit"
    REROLL = "reroll"


@dataclass(frozen=True, slots=True)
class Round:
    id: int
    key: ChannelKey
    number: int
    user_id: str
    user_name: str
    parent_id: int | None
    kind: RoundKind
    prompt: str
    spec: ImageSpec
    cost: int
    state: RoundState
    reason: str | None = None
    input_shas: tuple[str, ...] = ()  # reference/input images, in the image store
    image_sha: str | None = None
    mime: str | None = None
    response_id: str | None = None
    image_call_id: str | None = None
    revised_prompt: str | None = None
    stream_seq: int | None = None  # last stream event seen (background rounds resume after it)
    background: bool = False  # the provider runs it in background mode (it survives our restarts)
    owner: str | None = None  # the worker running it
    progress_message: str | None = None  # the chat message showing its progress (Cancel lives there)
    lang: str = "en"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class NewRound:
    """A request to record; `state` is `requested`, or `refused` when it is refused at once."""

    idem_key: str
    key: ChannelKey
    user_id: str
    user_name: str
    parent_id: int | None
    kind: RoundKind
    prompt: str
    spec: ImageSpec
    input_shas: tuple[str, ...] = ()
    state: RoundState = RoundState.REQUESTED
    reason: str | None = None
    owner: str | None = None
    lang: str = "en"


@dataclass(frozen=True, slots=True)
class Facts:
    """What the provider made, written with a round's transition (None leaves a column alone)."""

    mime: str | None = None
    width: int | None = None
    height: int | None = None
    image_sha: str | None = None
    response_id: str | None = None
    image_call_id: str | None = None
    revised_prompt: str | None = None
    request_id: str | None = None
    stream_seq: int | None = None
    background: bool | None = None
    progress_message: str | None = None
    input_shas: tuple[str, ...] | None = None
    text_tokens_in: int | None = None
    image_tokens_in: int | None = None
    image_tokens_out: int | None = None
    host_tokens_in: int | None = None
    host_tokens_out: int | None = None
    est_usd: float | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    daily: int
    banned: bool
    custom: bool  # a moderator set this user's daily credits


@dataclass(frozen=True, slots=True)
class Balance:
    daily: int
    granted: int
    used: int
    banned: bool

    @property
    def left(self) -> int:
        return max(0, self.daily + self.granted - self.used)


@dataclass(frozen=True, slots=True)
class Reservation:
    """What `reserve` asks: charge `cost` for a round if the user may spend it. `budget_usd` (when set) is the
    ceiling on the day's estimated spend across all communities; `est_usd` what this round adds."""

    round_id: int
    cost: int
    default_daily: int
    now: datetime
    budget_usd: float | None = None
    est_usd: float = 0.0


class ModVerb(StrEnum):
    SET_DAILY = "set_daily"
    GRANT = "grant"
    SET_DEFAULT = "set_default"
    BAN = "ban"
    UNBAN = "unban"
    LANGUAGE = "language"


@dataclass(frozen=True, slots=True)
class ModChange:
    """One moderator action, applied atomically with its audit row (the idempotency key makes a redelivered
    command a no-op: `DuplicateRequest`)."""

    platform: str
    community: str
    actor_id: str
    verb: ModVerb
    target: str | None  # a user id; None for community-wide verbs
    value: int | None
    idem_key: str
    now: datetime
    text_value: str | None = None  # e.g. the language code


@dataclass(frozen=True, slots=True)
class UsageTotals:
    images: int
    credits: int
    usd: float


@dataclass(frozen=True, slots=True)
class TopUser:
    user_id: str
    name: str
    images: int
    credits: int


@dataclass(frozen=True, slots=True)
class CommunityUsage:
    platform: str
    community: str
    today_images: int
    today_credits: int
    month_images: int
    month_credits: int
    month_usd: float


@dataclass(frozen=True, slots=True)
class PendingNotice:
    id: int
    key: ChannelKey
    reply_to: str | None
    text: str


@dataclass(frozen=True, slots=True)
class Forgotten:
    rounds: int
    images: list[tuple[str, str]]  # (sha, mime) no longer referenced by anyone else's round
    # the provider's stored responses of the user's rounds and of rounds derived from theirs (they hold the
    # prompt): read before the ids were scrubbed, so the caller can delete them at the provider
    response_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class InboxItem:
    idem_key: str
    payload: str


def day_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def next_reset(moment: datetime) -> datetime:
    start = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start + timedelta(days=1)
