"""The ports: what the services need from the outside (store, provider, image store) and what adapters
need from the services. Declared once here; implementations live in `core.store`, `core.provider`, the
services, and the hand-written fakes in `tests/fakes`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from core.events import Actor, ChannelKey, DeskCommand, Platform, RoundRequest, UserRef
from core.outcomes import Notice, RoundView
from core.records import (
    Balance,
    CommunityUsage,
    Facts,
    Forgotten,
    InboxItem,
    ModChange,
    NewRound,
    PendingNotice,
    Reservation,
    Round,
    RoundState,
    TopUser,
    UsageTotals,
)

Clock = Callable[[], datetime]


# -- the store ------------------------------------------------------------------------------------------


class Store(Protocol):
    """Every operation the services need from the database, in domain terms. Each method is one
    transaction. Implementations: `core.store.sqlite.SqliteStore` (embedded default) and
    `core.store.postgres.PostgresStore`; `tests/store` runs one contract suite against both."""

    # lifecycle and health
    async def writable(self) -> bool: ...
    async def checkpoint(self) -> None: ...
    async def backup(self, target: Path) -> None: ...
    async def safety_salt(self) -> str: ...

    # users seen (moderators name them by @username)
    async def remember_user(
        self, platform: Platform, user_id: str, username: str | None, display_name: str, now: datetime
    ) -> None: ...
    async def find_user(self, platform: Platform, ref: UserRef) -> tuple[str, str] | None:
        """(user id, display name) of a known user, by id or (case-insensitive) @username; None if unseen."""
        ...

    # rounds
    async def create_round(self, new: NewRound, now: datetime) -> Round:
        """Record a request with the channel's next number. Raises `DuplicateRequest` for a known idem key."""
        ...

    async def get_round(self, round_id: int) -> Round | None: ...
    async def round_by_number(self, key: ChannelKey, number: int) -> Round | None: ...
    async def round_by_message(self, key: ChannelKey, message_id: str) -> Round | None:
        """The round a platform message shows (a result, or a progress message), if any."""
        ...

    async def derived_rounds(self, round_id: int) -> list[Round]:
        """Rounds rerolled from this one (they copied its prompt)."""
        ...

    async def reserve(self, reservation: Reservation) -> Balance:
        """Atomically: check the ban, the balance and (when set) the day's budget, write the reserve and move
        the round to `queued`. Raises `Banned`, `OverQuota` or `BudgetExhausted` and changes nothing."""
        ...

    async def transition(self, round_id: int, state: RoundState, now: datetime, facts: Facts | None = None) -> bool:
        """Move an open round to an open state (queued -> running -> delivering), writing `facts` with it.
        Returns False (and writes nothing) if the round is no longer open."""
        ...

    async def record_facts(self, round_id: int, facts: Facts, now: datetime) -> None:
        """Write facts without a transition (the stream's sequence number, the progress message)."""
        ...

    async def attach_messages(self, round_id: int, key: ChannelKey, message_ids: Sequence[str]) -> None:
        """Record which messages show a round, before they are visible, so a quick reply resolves."""
        ...

    async def deliver(
        self, round_id: int, key: ChannelKey, message_ids: Sequence[str], facts: Facts, now: datetime
    ) -> None:
        """The image reached the chat: state `delivered`, its messages recorded, the reserve stands."""
        ...

    async def finish(
        self, round_id: int, state: RoundState, reason: str, now: datetime, facts: Facts | None = None
    ) -> int:
        """End an open round as `failed`, `cancelled` or `refused`, refunding its reserve (once). A round
        already delivered is left alone (an image that reached the chat is charged). Returns the refund."""
        ...

    async def open_rounds(self, owner: str | None = None) -> list[Round]:
        """Open rounds, of one owner or of all."""
        ...

    async def adopt_rounds(self, owner: str, now: datetime, stale_after: float) -> list[Round]:
        """Take over the open rounds whose owner is gone (no heartbeat for `stale_after` seconds, or no
        worker row at all) and return them; a live worker's rounds are never touched."""
        ...

    async def heartbeat(self, owner: str, now: datetime) -> None: ...
    async def retire(self, owner: str) -> None:
        """A worker that stops cleanly removes its row (its open rounds become adoptable at once)."""
        ...

    # credits and moderation
    async def balance(
        self, platform: Platform, community: str, user_id: str, day: str, default_daily: int
    ) -> Balance: ...
    async def moderate(self, change: ModChange) -> None:
        """The audit row and the policy change (or for a grant, a ledger row) in one transaction. Raises
        `DuplicateRequest` for a known idempotency key."""
        ...

    async def granted_by(self, platform: Platform, community: str, actor_id: str, day: str) -> int:
        """Credits a moderator granted in a community on a day (the daily grant ceiling)."""
        ...

    async def spend_on(self, day: str) -> float:
        """Estimated USD of rounds reserved or delivered on a day, all communities."""
        ...

    async def community_language(self, platform: Platform, community: str) -> str | None: ...
    async def migrate_community(self, platform: Platform, old: str, new: str) -> None: ...

    # reports
    async def usage_totals(
        self, platform: Platform, community: str, since: str, user_id: str | None = None
    ) -> UsageTotals: ...
    async def top_users(self, platform: Platform, community: str, since: str, limit: int) -> list[TopUser]: ...
    async def community_usage(self, now: datetime, community: str | None = None) -> list[CommunityUsage]: ...

    # notices for users (sent once the adapter is connected)
    async def add_notice(
        self, key: ChannelKey, reply_to: str | None, text: str, now: datetime, user_id: str | None = None
    ) -> None:
        """`user_id`: whom the notice concerns (it may quote their prompt; forgetting them erases it)."""
        ...

    async def pending_notices(self, platform: Platform) -> list[PendingNotice]: ...
    async def notice_sent(self, notice_id: int, now: datetime) -> None: ...

    # the durable inbox of platform updates
    async def inbox_put(self, platform: Platform, items: Sequence[tuple[str, str]], now: datetime) -> None: ...
    async def inbox_done(self, platform: Platform, idem_key: str) -> None: ...
    async def inbox_pending(self, platform: Platform, now: datetime) -> list[InboxItem]: ...

    # privacy
    async def forget_user(self, platform: Platform, user_id: str) -> Forgotten: ...


# -- the image store -------------------------------------------------------------------------------------


class ImageStore(Protocol):
    """Content-addressed image bytes (generated images, inputs). Blocking; callers run it off the loop."""

    def put(self, data: bytes, mime: str) -> str: ...
    def get(self, sha: str, mime: str) -> bytes | None: ...
    def delete(self, sha: str, mime: str) -> None: ...


# -- the image provider ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParentImage:
    """The round an edit starts from. `image` may be None when the store no longer holds it; the Responses
    route can still continue from `response_id`."""

    image: bytes | None = field(default=None, repr=False)
    mime: str = "image/png"
    response_id: str | None = None
    image_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class ImageJob:
    prompt: str
    params: Mapping[str, str]  # from `ImageSpec.provider_params`: size, quality, background, output_format
    parent: ParentImage | None = None
    inputs: tuple[bytes, ...] = field(default=(), repr=False)  # reference images, normalised to PNG
    safety_id: str = ""  # stable hash of the end user, sent as safety_identifier
    round_id: int = 0  # for logs only
    model: str | None = None  # overrides the configured image model (e.g. for transparency)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the provider reported them (0 when it did not)."""

    text_input_tokens: int = 0
    image_input_tokens: int = 0
    image_output_tokens: int = 0
    host_input_tokens: int = 0
    host_output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    image: bytes = field(repr=False)
    mime: str = "image/png"
    response_id: str | None = None
    image_call_id: str | None = None
    revised_prompt: str | None = None
    usage: Usage | None = None
    request_id: str | None = None


class ProviderEvents(Protocol):
    """What a provider reports while it works. Calls must return quickly (they schedule, never wait)."""

    async def accepted(self, response_id: str, background: bool) -> None:
        """The provider took the job (background mode: it survives our restarts from now on)."""
        ...

    async def progressed(self, seq: int, stage: str) -> None:
        """A stream event was seen: its sequence number, and the stage (`thinking`, `drawing`)."""
        ...

    async def partial(self, image: bytes, index: int) -> None: ...


class ImageProvider(Protocol):
    """Makes one image. Raises `core.errors.ProviderError` subclasses for every provider failure, and
    `asyncio.CancelledError` passes through. Never retries a call that may already have produced output."""

    @property
    def background(self) -> bool:
        """Whether rounds run in the provider's background mode (and can be resumed and cancelled)."""
        ...

    async def create(self, job: ImageJob, events: ProviderEvents) -> GeneratedImage: ...

    async def resume(self, response_id: str, after_seq: int | None, events: ProviderEvents) -> GeneratedImage:
        """Follow a background response to its end (stream from `after_seq`, else poll). Raises
        `ResponseGone` when the provider no longer holds it."""
        ...

    async def cancel(self, response_id: str) -> None:
        """Ask the provider to stop a background response (best effort)."""
        ...

    async def delete(self, response_id: str) -> bool:
        """Delete a response the provider stores (`easel forget`: it holds the prompt and the image). True when
        it was deleted; False when the provider holds no such response (expired, deleted before, or a route
        that stores none). Raises `core.errors.ProviderError` when the provider could not be asked or refused."""
        ...

    async def aclose(self) -> None: ...


# -- what adapters call ---------------------------------------------------------------------------------

Spawn = Callable[[Awaitable[None]], None]


class RoundsPort(Protocol):
    async def submit(self, request: RoundRequest, view: RoundView) -> None: ...

    async def press(self, action: str, key: ChannelKey, actor: Actor, idempotency_key: str, view: RoundView) -> None:
        """A button under a result or a progress message (`reroll:N`, `cancel:N`)."""
        ...

    async def cancel(self, key: ChannelKey, actor: Actor, message_id: str) -> Notice:
        """Cancel the round whose progress message is `message_id` (Telegram `/cancel` as a reply)."""
        ...

    async def round_id(self, key: ChannelKey, number: int) -> int | None: ...

    async def is_round_message(self, key: ChannelKey, message_id: str) -> bool: ...

    async def resume(self, platform: Platform, view_for: Callable[[Round], RoundView]) -> int:
        """The adapter is connected: follow its background rounds left by a restart, through its views."""
        ...


Pace = Callable[[str, float, float], Awaitable[float]]  # `FleetStore.pace`


@dataclass
class Fleet:
    """How many workers share the bot now (1 on SQLite), kept current by the composition root, and, with
    several, the fleet-wide pacing of a per-bot platform limit (`FleetStore.pace`)."""

    workers: int = 1
    pace: Pace | None = None


@dataclass(frozen=True, slots=True)
class Services:
    """What the composition root hands to adapters."""

    rounds: RoundsPort
    desk: DeskPort
    notices: NoticesPort
    inbox: InboxPort
    fleet: Fleet = field(default_factory=Fleet)


class DeskPort(Protocol):
    async def run(self, command: DeskCommand) -> Notice:
        """Run a moderator or credits command; refusals come back as ephemeral notices. A redelivered command
        raises `core.errors.DuplicateRequest` and changes nothing: adapters answer nothing."""
        ...

    async def migrate_community(self, platform: Platform, old: str, new: str) -> None: ...

    async def seen(self, actor: Actor, community: str) -> None: ...

    def help_text(self, platform: Platform, lang: str) -> str: ...


class NoticesPort(Protocol):
    async def take(self, platform: Platform) -> list[PendingNotice]: ...

    async def sent(self, notice_id: int) -> None: ...


class InboxPort(Protocol):
    async def put(self, platform: Platform, items: list[tuple[str, str]]) -> None: ...

    async def done(self, platform: Platform, idem_key: str) -> None: ...

    async def pending(self, platform: Platform) -> list[str]: ...


# -- several workers on one database ---------------------------------------------------------------------


class Slots(Protocol):
    """The fair gate in front of the provider: at most a fixed number of calls in flight, the rest wait in
    FIFO order and are told their 1-based place when it changes. `core.slots.FairSlots` (one process) and
    `core.shared_slots.SharedSlots` (every worker on one PostgreSQL) implement it."""

    @property
    def waiting(self) -> int: ...

    @property
    def in_use(self) -> int: ...

    async def acquire(self, on_position: Callable[[int], None]) -> None:
        """Wait for a slot; raises `core.slots.QueueFull` when the queue is at its limit. `on_position` must
        not block."""
        ...

    def release(self) -> None: ...


class UserCap(Protocol):
    """How many rounds one user may have queued or running at once (`EASEL_USER_CONCURRENCY`); a round counts
    from `enter` until its image is in the chat (`leave`). `core.guards.LocalCap` (one process) and
    `core.shared_caps.SharedCap` (every worker on one PostgreSQL) implement it."""

    async def enter(self, user: tuple[str, str], round_id: int) -> bool:
        """Count round `round_id` of `user`; False (nothing counted) when they are at the cap."""
        ...

    def leave(self, user: tuple[str, str]) -> None:
        """One round of `user` no longer counts; must not block."""
        ...

    def active(self, user: tuple[str, str]) -> int:
        """The user's rounds in progress, as last seen (for the refusal's wording)."""
        ...


@runtime_checkable
class FleetStore(Protocol):
    """What several workers on one database need besides `Store`: shared provider slots, claims on the durable
    inbox, a leader lock, and wake-ups between workers. PostgreSQL only: with SQLite one process holds the data
    directory, so the in-process `FairSlots` and the plain inbox replay are exact and these are not offered.

    Leases are tied to the worker's heartbeat (`Store.heartbeat`): a ticket or a claim of a worker silent for
    `stale_after` seconds (or retired) is void, so a dead worker's slots and updates are taken over."""

    async def slot_reset(self, owner: str) -> None:
        """Drop every slot ticket of `owner` (a worker restarting under the same name)."""
        ...

    async def slot_enqueue(
        self, owner: str, capacity: int, queue_limit: int, now: datetime, stale_after: float
    ) -> tuple[int, int] | None:
        """Queue a ticket and grant what the cap allows, FIFO. Returns (ticket, place): place 0 means granted,
        otherwise its 1-based place among the waiting tickets of every worker. None when the queue is full."""
        ...

    async def slot_poll(self, owner: str, ticket: int, capacity: int, now: datetime, stale_after: float) -> int:
        """Grant what the cap allows (FIFO) and return the ticket's place: 0 granted, -1 unknown (voided)."""
        ...

    async def slot_release(self, ticket: int, capacity: int, now: datetime, stale_after: float) -> None:
        """Give the ticket's slot back and grant the next waiting tickets (FIFO) at once."""
        ...

    async def slot_granted(self, ticket: int) -> asyncio.Event:
        """An event set when a grant of `ticket` is announced by any worker (or when announcements may have
        been lost). Take it right after queueing, then wait on it with a timeout; only the granted ticket's
        waiter wakes, not every waiter of the fleet."""
        ...

    def slot_announced(self, ticket: int) -> bool:
        """Whether a grant of `ticket` was announced (then it holds a slot: no need to ask the database)."""
        ...

    async def slot_counts(self) -> tuple[int, int]:
        """(granted, waiting) over every worker."""
        ...

    async def user_hold(
        self, user: tuple[str, str], round_id: int, owner: str, limit: int, now: datetime, stale_after: float
    ) -> tuple[int | None, int]:
        """Count round `round_id` of `user` fleet-wide unless they have `limit` already (holds of gone workers
        and of ended rounds do not count). Returns (hold id or None when at the cap, the user's holds now)."""
        ...

    async def user_release(self, hold: int) -> None: ...

    async def pace(self, name: str, per_second: float, burst: float) -> float:
        """Take one send from the fleet-wide allowance `name` (`per_second`, bursts of `burst`): the seconds
        to wait before sending. Every worker's sends count against the one allowance, however they are
        spread."""
        ...

    async def live_workers(self, now: datetime, stale_after: float) -> int:
        """Workers whose heartbeat is younger than `stale_after` seconds."""
        ...

    async def user_reset(self, owner: str) -> None:
        """Drop every hold of `owner` (a worker restarting under the same name)."""
        ...

    async def inbox_claim(
        self, platform: Platform, owner: str, limit: int, now: datetime, stale_after: float = 30.0
    ) -> list[InboxItem]:
        """Claim up to `limit` unhandled updates (unclaimed, or claimed by a worker that is gone), oldest first.
        An update from a user whose other updates a live worker is handling is left to that worker, so one
        user's updates are handled in order."""
        ...

    async def signal(self, channel: str) -> asyncio.Event:
        """An event set at the next wake-up on `channel` (`inbox`) from any worker. Take it before
        checking the state it guards, then wait on it (with a timeout: a lost connection loses wake-ups)."""
        ...

    async def try_lead(self, name: str) -> bool:
        """Hold (or keep holding) the fleet-wide lock `name` on a connection of its own; True while held. It is
        released when this process dies (its connection closes) or calls `resign`."""
        ...

    async def resign(self, name: str) -> None: ...


class Leadership(Protocol):
    """Whether this worker is the one that polls a platform's update stream."""

    @property
    def leading(self) -> bool: ...

    async def wait_leading(self) -> None:
        """Return once this worker leads."""
        ...

    async def wait_lost(self) -> None:
        """Return once this worker no longer leads."""
        ...


@runtime_checkable
class SharedInboxPort(InboxPort, Protocol):
    """The inbox when several workers share it: updates are claimed, not replayed, and only the leader polls."""

    @property
    def leadership(self) -> Leadership: ...

    async def claim(self, platform: Platform, limit: int) -> list[str]:
        """Payloads this worker now handles, oldest first."""
        ...

    async def wait(self, patience: float) -> None:
        """Return at the next update stored by any worker, or after `patience` seconds."""
        ...
