"""A fake Discord: REST v10, the gateway websocket and the attachment CDN, on 127.0.0.1.

The real discord.py talks to it once `discord.http.Route.BASE` is `fake.api_url` and
`DiscordWebSocket.DEFAULT_GATEWAY` is `fake.gateway_url` (Easel's adapter sets both from
`EASEL_DISCORD_API_URL` / `EASEL_DISCORD_GATEWAY_URL`). See shared/reference/testing.md §2.3.

Strict where the real service is strict: the bot token is checked (401 on REST, close 4004 on the gateway),
missing privileged intents close with 4014 when configured, a second interaction acknowledgement gives
40060, a late one 10062 (when `ack_deadline` is set), webhook tokens expire 15 minutes after the
interaction was created (50027), a reply to an unknown message gives 50035, an upload over the limit 413
(40005), and anything not implemented answers Discord's 404 and is recorded as `UNHANDLED ...`.

Every REST call is recorded as `Call(name, params=<JSON body or payload_json> + {"_path": ids},
files={"files[N]": bytes})`; names are listed in `ROUTES` below (discord.py's own method names).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import mimetypes
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

from tests.fakes._base import Call, FakeServer

DISCORD_EPOCH_MS = 1420070400000
TOKEN_TTL = timedelta(minutes=15)
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024

# Permission bits (https://docs.discord.com/developers/topics/permissions)
MANAGE_GUILD = 1 << 5
MEMBER_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 31)
# Privileged gateway intents
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

# Interaction callback types
CB_PONG, CB_MESSAGE, CB_DEFER, CB_DEFER_UPDATE, CB_UPDATE = 1, 4, 5, 6, 7
FLAG_EPHEMERAL = 64
FLAG_LOADING = 128


def snowflake_at(when: datetime, counter: int = 0) -> int:
    return ((int(when.timestamp() * 1000) - DISCORD_EPOCH_MS) << 22) | (counter & 0x3FFFFF)


def snowflake_time(value: int | str) -> datetime:
    return datetime.fromtimestamp(((int(value) >> 22) + DISCORD_EPOCH_MS) / 1000, tz=UTC)


def _iso(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).isoformat()


class DiscordError(Exception):
    """Raised inside a route to answer with Discord's error JSON."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors


@dataclass
class FakeUser:
    id: int
    name: str
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        return {"id": str(self.id), "username": self.name, "discriminator": "0", "global_name": self.name,
                "avatar": None, "bot": self.bot, "public_flags": 0, "flags": 0}


@dataclass
class FakeChannel:
    id: int
    name: str
    guild_id: int | None = None  # None: a DM channel
    recipient: FakeUser | None = None

    @property
    def is_dm(self) -> bool:
        return self.guild_id is None

    def payload(self) -> dict[str, Any]:
        if self.guild_id is None:
            assert self.recipient is not None
            return {"id": str(self.id), "type": 1, "last_message_id": None,
                    "recipients": [self.recipient.payload()], "flags": 0}
        return {"id": str(self.id), "type": 0, "guild_id": str(self.guild_id), "name": self.name,
                "position": 0, "permission_overwrites": [], "nsfw": False, "topic": None,
                "last_message_id": None, "rate_limit_per_user": 0, "parent_id": None, "flags": 0}


@dataclass
class FakeMember:
    user: FakeUser
    guild_id: int
    permissions: int = MEMBER_PERMISSIONS

    @property
    def id(self) -> int:
        return self.user.id

    def payload(self, *, with_user: bool = True, with_permissions: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {"roles": [], "joined_at": _iso(), "deaf": False, "mute": False, "flags": 0,
                                "nick": None, "avatar": None, "premium_since": None, "pending": False,
                                "communication_disabled_until": None}
        if with_user:
            data["user"] = self.user.payload()
        if with_permissions:
            data["permissions"] = str(self.permissions)
        return data


@dataclass
class FakeGuild:
    id: int
    name: str
    owner_id: int
    channels: list[FakeChannel] = field(default_factory=list)
    members: dict[int, FakeMember] = field(default_factory=dict)
    premium_tier: int = 0

    @property
    def channel(self) -> FakeChannel:
        return self.channels[0]

    def payload(self) -> dict[str, Any]:
        everyone = {"id": str(self.id), "name": "@everyone", "permissions": str(MEMBER_PERMISSIONS),
                    "position": 0, "color": 0, "hoist": False, "managed": False, "mentionable": False,
                    "flags": 0, "icon": None, "unicode_emoji": None}
        return {
            "id": str(self.id), "name": self.name, "icon": None, "splash": None, "discovery_splash": None,
            "banner": None, "description": None, "owner_id": str(self.owner_id), "region": None,
            "afk_channel_id": None, "afk_timeout": 300, "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0, "roles": [everyone],
            "emojis": [], "stickers": [], "features": [], "mfa_level": 0, "application_id": None,
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None,
            "public_updates_channel_id": None, "safety_alerts_channel_id": None, "vanity_url_code": None,
            "premium_tier": self.premium_tier, "premium_subscription_count": 0, "preferred_locale": "en-US",
            "nsfw_level": 0, "premium_progress_bar_enabled": False, "max_members": 500000,
            "joined_at": _iso(), "large": False, "unavailable": False,
            "member_count": len(self.members), "members": [m.payload() for m in self.members.values()],
            "channels": [c.payload() for c in self.channels], "threads": [], "voice_states": [],
            "presences": [], "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
        }


@dataclass
class FakeInteraction:
    id: int
    token: str
    type: int
    channel: FakeChannel
    user: FakeUser
    payload: dict[str, Any]
    dispatched_at: float = 0.0  # loop time when dispatched
    acked: bool = False
    ack_type: int | None = None
    original_id: int | None = None  # the message the interaction's @original refers to
    original_loading: bool = False
    source_message_id: int | None = None  # component interactions: the message holding the button
    followup_ids: list[int] = field(default_factory=list)


@dataclass
class _Upload:
    index: int
    filename: str
    content_type: str
    data: bytes


# Route table: (verb, path pattern, call name). Kept in one place so gaps are easy to spot.
ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/users/@me", "get_user"),
    ("GET", "/oauth2/applications/@me", "application_info"),
    ("GET", "/gateway", "get_gateway"),
    ("GET", "/gateway/bot", "get_bot_gateway"),
    ("PUT", "/applications/{app_id}/commands", "bulk_upsert_global_commands"),
    ("GET", "/applications/{app_id}/commands", "get_global_commands"),
    ("PUT", "/applications/{app_id}/guilds/{guild_id}/commands", "bulk_upsert_guild_commands"),
    ("POST", "/channels/{channel_id}/messages", "send_message"),
    ("GET", "/channels/{channel_id}/messages/{message_id}", "get_message"),
    ("PATCH", "/channels/{channel_id}/messages/{message_id}", "edit_message"),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}", "delete_message"),
    ("POST", "/channels/{channel_id}/typing", "send_typing"),
    ("GET", "/channels/{channel_id}", "get_channel"),
    ("POST", "/users/@me/channels", "start_private_message"),
    ("GET", "/guilds/{guild_id}/members/{user_id}", "get_member"),
    ("DELETE", "/users/@me/guilds/{guild_id}", "leave_guild"),
    ("POST", "/interactions/{interaction_id}/{token}/callback", "interaction_callback"),
    ("GET", "/webhooks/{app_id}/{token}/messages/@original", "get_original"),
    ("PATCH", "/webhooks/{app_id}/{token}/messages/@original", "edit_original"),
    ("DELETE", "/webhooks/{app_id}/{token}/messages/@original", "delete_original"),
    ("POST", "/webhooks/{app_id}/{token}", "followup"),
    ("GET", "/webhooks/{app_id}/{token}/messages/{message_id}", "get_followup"),
    ("PATCH", "/webhooks/{app_id}/{token}/messages/{message_id}", "edit_followup"),
    ("DELETE", "/webhooks/{app_id}/{token}/messages/{message_id}", "delete_followup"),
]

# Every call that posts or edits message content (for "allowed_mentions on every send" checks).
SENDING_CALLS = ("send_message", "edit_message", "interaction_callback", "edit_original", "followup",
                 "edit_followup")


class FakeDiscord(FakeServer):
    """Use as `async with FakeDiscord() as fake:`; point discord.py at `fake.api_url` / `fake.gateway_url`.

    Build the world with `guild()`, `member()`, `dm_channel()` (before or after the bot connects), then drive
    the bot with `slash_command()`, `click_button()`, `user_message()` and `dispatch()`."""

    def __init__(
        self,
        *,
        token: str = "fake-discord-token",  # noqa: S107 - a test token
        privileged_intents: int = PRIVILEGED_INTENTS,
        ack_deadline: float | None = None,
        upload_limit: int = DEFAULT_UPLOAD_LIMIT,
    ) -> None:
        self.token = token
        self.gateway_token = token  # set it apart from `token` to make only the gateway refuse (4004)
        self.privileged_intents = privileged_intents  # enabled in the "developer portal"
        self.identify_hangs = False  # never answer IDENTIFY (a gateway that accepts but stalls)
        self.ack_deadline = ack_deadline  # seconds after dispatch; later callbacks get 10062
        self.upload_limit = upload_limit
        self._ids = itertools.count(1)
        self.app_id = self.new_id()
        self.bot_user = FakeUser(self.new_id(), "Easel", bot=True)
        self.owner = FakeUser(self.new_id(), "owner")
        self.users: dict[int, FakeUser] = {self.bot_user.id: self.bot_user, self.owner.id: self.owner}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.messages: dict[int, dict[str, Any]] = {}  # message id -> payload
        self.deleted: set[int] = set()
        self.cdn: dict[str, tuple[bytes, str]] = {}  # path -> (bytes, content type)
        self.commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self.interactions: dict[str, FakeInteraction] = {}  # by token
        self.identifies: list[dict[str, Any]] = []
        self._sockets: list[web.WebSocketResponse] = []
        self._identified: set[web.WebSocketResponse] = set()
        self._seq = 0
        self._history: list[tuple[int, str, dict[str, Any]]] = []
        self.session_id = secrets.token_hex(8)  # the latest session (one per IDENTIFY)
        self.sessions: dict[str, tuple[int, int]] = {}  # session id -> (shard id, shard count)
        self._shard_of: dict[web.WebSocketResponse, tuple[int, int]] = {}
        self.left_guilds: list[int] = []
        self._rate_limits: dict[str, list[float]] = {}
        super().__init__()

    # ------------------------------------------------------------------ plumbing

    @property
    def api_url(self) -> str:
        return f"{self.origin}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def new_id(self, when: datetime | None = None) -> int:
        return snowflake_at(when or datetime.now(UTC), next(self._ids))

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._cdn)
        for verb, path, name in ROUTES:
            app.router.add_route(verb, "/api/v10" + path, self._wrap(name, getattr(self, "_r_" + name)))
        app.router.add_route("*", "/{tail:.*}", self._unhandled)

    def _wrap(
        self, name: str, handler: Callable[[web.Request, dict[str, Any], list[_Upload]], Awaitable[Any]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def route(request: web.Request) -> web.Response:
            needs_auth = not name.startswith(("interaction_callback", "get_original", "edit_original",
                                              "delete_original", "followup", "get_followup",
                                              "edit_followup", "delete_followup"))
            if needs_auth and request.headers.get("Authorization") != f"Bot {self.token}":
                self.record(Call(f"401 {name}", headers=dict(request.headers)))
                return self._error(DiscordError(401, 0, "401: Unauthorized"))
            body, uploads = await self._read_body(request)
            params: dict[str, Any] = dict(body) if isinstance(body, dict) else {"_list": body}
            params["_path"] = dict(request.match_info)
            params["_query"] = dict(request.query)
            files = {f"files[{u.index}]": u.data for u in uploads}
            pending = self._rate_limits.get(name)
            if pending:
                retry_after = pending.pop(0)
                self.record(Call(f"429 {name}", params, files))
                return self._json({"message": "You are being rate limited.", "retry_after": retry_after,
                                   "global": False}, status=429,
                                  headers={"Via": "1.1 google", "Retry-After": str(retry_after),
                                           "X-RateLimit-Scope": "user"})
            self.record(Call(name, params, files, dict(request.headers)))
            try:
                result = await handler(request, params, uploads)
            except DiscordError as err:
                self.record(Call(f"{err.status} {name}", {"code": err.code, "message": err.message}))
                return self._error(err)
            if result is None:
                return web.Response(status=204)
            return self._json(result)

        return route

    @staticmethod
    def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        # Exactly "application/json": discord.py compares the header string (no charset suffix).
        response = web.Response(body=json.dumps(data).encode(), status=status, headers=headers)
        response.headers["Content-Type"] = "application/json"
        return response

    def _error(self, err: DiscordError) -> web.Response:
        body: dict[str, Any] = {"message": err.message, "code": err.code}
        if err.errors is not None:
            body["errors"] = err.errors
        return self._json(body, status=err.status)

    async def _unhandled(self, request: web.Request) -> web.Response:
        self.record(Call(f"UNHANDLED {request.method} {request.path}"))
        return self._json({"message": "404: Not Found", "code": 0}, status=404)

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[Any, list[_Upload]]:
        if request.content_type.startswith("multipart/"):
            payload: Any = {}
            uploads: list[_Upload] = []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, BodyPartReader), "nested multipart"
                name = part.name or ""
                data = await part.read()
                if name == "payload_json":
                    payload = json.loads(data)
                elif name.startswith("files["):
                    content_type = part.headers.get("Content-Type", "application/octet-stream")
                    if content_type == "application/octet-stream":  # Discord infers it from the name
                        content_type = mimetypes.guess_type(part.filename or "")[0] or content_type
                    uploads.append(_Upload(int(name[6:-1]), part.filename or "", content_type, bytes(data)))
                else:
                    raise AssertionError(f"unexpected multipart field {name!r}")
            return payload, uploads
        raw = await request.read()
        if not raw:
            return {}, []
        assert request.content_type == "application/json", request.content_type
        return json.loads(raw), []

    def rate_limit_next(self, name: str, retry_after: float = 0.01, times: int = 1) -> None:
        """Answer the next `times` calls of `name` with a 429 (with the `Via` header discord.py needs)."""
        self._rate_limits.setdefault(name, []).extend([retry_after] * times)

    async def before_stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001)

    # ------------------------------------------------------------------ the world

    def user(self, name: str) -> FakeUser:
        found = FakeUser(self.new_id(), name)
        self.users[found.id] = found
        return found

    async def guild(self, name: str = "Guild", channels: tuple[str, ...] = ("general",),
                    premium_tier: int = 0) -> FakeGuild:
        """A guild with the bot and the owner in it. Announced at READY, or at once if connected."""
        created = FakeGuild(self.new_id(), name, owner_id=self.owner.id, premium_tier=premium_tier)
        for channel_name in channels:
            channel = FakeChannel(self.new_id(), channel_name, guild_id=created.id)
            created.channels.append(channel)
            self.channels[channel.id] = channel
        created.members[self.bot_user.id] = FakeMember(self.bot_user, created.id)
        # The owner has every permission.
        created.members[self.owner.id] = FakeMember(self.owner, created.id, permissions=(1 << 41) - 1)
        self.guilds[created.id] = created
        if self._identified:  # the bot was just added to it: GUILD_CREATE without `unavailable` (a join)
            joined = {k: v for k, v in created.payload().items() if k != "unavailable"}
            await self.dispatch("GUILD_CREATE", joined)
        return created

    def member(self, guild: FakeGuild, name: str, *, permissions: int = MEMBER_PERMISSIONS,
               user: FakeUser | None = None) -> FakeMember:
        """A member; `permissions` is what the interaction payload will carry (MANAGE_GUILD = moderator)."""
        found = FakeMember(user or self.user(name), guild.id, permissions)
        guild.members[found.id] = found
        return found

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        channel = FakeChannel(self.new_id(), "", guild_id=None, recipient=user)
        self.channels[channel.id] = channel
        return channel

    def _guild_of(self, channel: FakeChannel) -> FakeGuild | None:
        return self.guilds.get(channel.guild_id) if channel.guild_id is not None else None

    # ------------------------------------------------------------------ messages

    def _attachment(self, channel_id: int, upload: _Upload) -> dict[str, Any]:
        attachment_id = self.new_id()
        path = f"/attachments/{channel_id}/{attachment_id}/{upload.filename}"
        self.cdn[path] = (upload.data, upload.content_type)
        return {"id": str(attachment_id), "filename": upload.filename, "size": len(upload.data),
                "url": f"{self.origin}{path}?ex=0&is=0&hm=0", "proxy_url": f"{self.origin}{path}",
                "content_type": upload.content_type, "width": None, "height": None}

    def _message(self, channel: FakeChannel, author: FakeUser, content: str = "", **extra: Any) -> dict[str, Any]:
        message_id = self.new_id()
        data: dict[str, Any] = {
            "id": str(message_id), "channel_id": str(channel.id), "author": author.payload(),
            "content": content, "timestamp": _iso(), "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [],
            "embeds": [], "pinned": False, "type": 0, "flags": 0, "components": [],
        }
        if channel.guild_id is not None:
            data["guild_id"] = str(channel.guild_id)
        data.update(extra)
        return data

    def _with_member(self, data: dict[str, Any], author: FakeUser, channel: FakeChannel) -> dict[str, Any]:
        """MESSAGE_CREATE in a guild carries the author's partial member."""
        guild = self._guild_of(channel)
        if guild is not None and author.id in guild.members:
            return {**data, "member": guild.members[author.id].payload(with_user=False)}
        return data

    def _check_uploads(self, uploads: list[_Upload], limit: int) -> None:
        for upload in uploads:
            if len(upload.data) > limit:
                raise DiscordError(413, 40005, "Request entity too large")

    def _apply_attachments(self, channel_id: int, body: dict[str, Any], uploads: list[_Upload],
                           existing: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Attachments after a create/edit: `attachments` lists kept ones by id and new ones by upload index."""
        by_index = {u.index: u for u in uploads}
        if "attachments" not in body:
            return existing + [self._attachment(channel_id, u) for u in uploads]
        result: list[dict[str, Any]] = []
        kept = {str(a["id"]): a for a in existing}
        for item in body["attachments"] or []:
            key = str(item["id"])
            if key in kept:
                result.append(kept[key])
            elif int(item["id"]) in by_index:
                result.append(self._attachment(channel_id, by_index[int(item["id"])]))
            else:
                raise DiscordError(400, 50035, "Invalid Form Body",
                                   {"attachments": {"_errors": [{"code": "ATTACHMENT_NOT_FOUND"}]}})
        return result

    def _reference(self, channel: FakeChannel, body: dict[str, Any]) -> dict[str, Any]:
        ref = body.get("message_reference")
        if not ref:
            return {}
        target = self.messages.get(int(ref["message_id"]))
        if target is None or int(target["channel_id"]) != channel.id:
            if ref.get("fail_if_not_exists", True):
                raise DiscordError(400, 50035, "Invalid Form Body", {"message_reference": {"_errors": [
                    {"code": "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "message": "Unknown message"}]}})
            return {}
        reference = {"message_id": target["id"], "channel_id": target["channel_id"]}
        if "guild_id" in target:
            reference["guild_id"] = target["guild_id"]
        referenced = {k: v for k, v in target.items() if k != "referenced_message"}
        return {"type": 19, "message_reference": reference, "referenced_message": referenced}

    def _compose(self, channel: FakeChannel, body: dict[str, Any], uploads: list[_Upload],
                 author: FakeUser, **extra: Any) -> dict[str, Any]:
        content = body.get("content") or ""
        if len(content) > 2000:
            raise DiscordError(400, 50035, "Invalid Form Body", {"content": {"_errors": [
                {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}})
        data = self._message(channel, author, content, components=body.get("components") or [],
                             flags=int(body.get("flags") or 0), **extra)
        data.update(self._reference(channel, body))
        data["attachments"] = self._apply_attachments(channel.id, body, uploads, [])
        data["embeds"] = body.get("embeds") or []
        return data

    async def _store_and_echo(self, data: dict[str, Any], channel: FakeChannel) -> dict[str, Any]:
        self.messages[int(data["id"])] = data
        if not int(data.get("flags") or 0) & FLAG_EPHEMERAL:
            author = self.users[int(data["author"]["id"])]
            await self.dispatch("MESSAGE_CREATE", self._with_member(data, author, channel))
        return data

    def _edit(self, data: dict[str, Any], body: dict[str, Any], uploads: list[_Upload]) -> dict[str, Any]:
        if "content" in body:
            content = body["content"] or ""
            if len(content) > 2000:
                raise DiscordError(400, 50035, "Invalid Form Body", {"content": {"_errors": [
                    {"code": "BASE_TYPE_MAX_LENGTH"}]}})
            data["content"] = content
        if "components" in body:
            data["components"] = body["components"] or []
        if "embeds" in body:
            data["embeds"] = body["embeds"] or []
        data["attachments"] = self._apply_attachments(int(data["channel_id"]), body, uploads,
                                                      data["attachments"])
        data["flags"] = int(data.get("flags") or 0) & ~FLAG_LOADING
        data["edited_timestamp"] = _iso()
        return data

    def _channel(self, channel_id: str | int) -> FakeChannel:
        channel = self.channels.get(int(channel_id))
        if channel is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        return channel

    def _stored(self, channel_id: str | int, message_id: str | int) -> dict[str, Any]:
        data = self.messages.get(int(message_id))
        if data is None or int(data["channel_id"]) != int(channel_id):
            raise DiscordError(404, 10008, "Unknown Message")
        return data

    def message(self, message_id: str | int) -> dict[str, Any]:
        """A stored message (raises KeyError if unknown or deleted)."""
        return self.messages[int(message_id)]

    def messages_in(self, channel: FakeChannel) -> list[dict[str, Any]]:
        return [m for m in self.messages.values() if int(m["channel_id"]) == channel.id]

    def attachment_bytes(self, attachment: dict[str, Any]) -> bytes:
        path = attachment["proxy_url"].removeprefix(self.origin)
        return self.cdn[path][0]

    # ------------------------------------------------------------------ REST routes

    async def _r_get_user(self, request: web.Request, params: dict[str, Any], _: list[_Upload]) -> Any:
        return self.bot_user.payload()

    async def _r_application_info(self, request: web.Request, params: dict[str, Any], _: list[_Upload]) -> Any:
        return {"id": str(self.app_id), "name": "Easel", "description": "", "icon": None,
                "bot_public": True, "bot_require_code_grant": False, "owner": self.owner.payload(),
                "verify_key": "0" * 64, "flags": 0, "team": None, "summary": "",
                "interactions_endpoint_url": None}

    async def _r_get_gateway(self, request: web.Request, params: dict[str, Any], _: list[_Upload]) -> Any:
        return {"url": self.gateway_url}

    async def _r_get_bot_gateway(self, request: web.Request, params: dict[str, Any], _: list[_Upload]) -> Any:
        return {"url": self.gateway_url, "shards": 1, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}

    def _store_commands(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Discord answers with description "" for context-menu commands (they have none; discord.py reads it).
        stored = []
        for command in commands:
            stored.append({"description": "", **command, "id": str(self.new_id()),
                           "application_id": str(self.app_id), "version": str(self.new_id()),
                           "type": command.get("type", 1)})
        return stored

    @staticmethod
    def _without_localizations(item: dict[str, Any]) -> dict[str, Any]:
        """A command as GET returns it without `with_localizations=true`: no `*_localizations` fields."""
        out = {k: v for k, v in item.items() if not k.endswith("_localizations")}
        if "options" in item:
            out["options"] = [FakeDiscord._without_localizations(o) for o in item["options"] or []]
        if "choices" in item:
            out["choices"] = [FakeDiscord._without_localizations(c) for c in item["choices"] or []]
        return out

    async def _r_bulk_upsert_global_commands(self, request: web.Request, params: dict[str, Any],
                                             _: list[_Upload]) -> Any:
        self._check_app(params)
        self.commands = self._store_commands(params["_list"])
        return self.commands

    async def _r_get_global_commands(self, request: web.Request, params: dict[str, Any], _: list[_Upload]) -> Any:
        self._check_app(params)
        if params["_query"].get("with_localizations") == "true":
            return self.commands
        return [self._without_localizations(c) for c in self.commands]

    async def _r_bulk_upsert_guild_commands(self, request: web.Request, params: dict[str, Any],
                                            _: list[_Upload]) -> Any:
        self._check_app(params)
        stored = self._store_commands(params["_list"])
        self.guild_commands[int(params["_path"]["guild_id"])] = stored
        return stored

    def _check_app(self, params: dict[str, Any]) -> None:
        if int(params["_path"]["app_id"]) != self.app_id:
            raise DiscordError(403, 50001, "Missing Access")

    async def _r_send_message(self, request: web.Request, params: dict[str, Any], uploads: list[_Upload]) -> Any:
        channel = self._channel(params["_path"]["channel_id"])
        guild = self._guild_of(channel)
        limit = self.upload_limit if guild is None or guild.premium_tier < 2 else 50 * 1024 * 1024
        self._check_uploads(uploads, limit)
        data = self._compose(channel, params, uploads, self.bot_user)
        return await self._store_and_echo(data, channel)

    async def _r_get_message(self, request: web.Request, params: dict[str, Any], _: list[_Upload]) -> Any:
        return self._stored(params["_path"]["channel_id"], params["_path"]["message_id"])

    async def _r_edit_message(self, request: web.Request, params: dict[str, Any], uploads: list[_Upload]) -> Any:
        data = self._stored(params["_path"]["channel_id"], params["_path"]["message_id"])
        if int(data["author"]["id"]) != self.bot_user.id:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        self._check_uploads(uploads, self.upload_limit)
        edited = self._edit(data, params, uploads)
        await self.dispatch("MESSAGE_UPDATE", edited)
        return edited

    async def _r_delete_message(self, request: web.Request, params: dict[str, Any], _: list[_Upload]) -> Any:
        data = self._stored(params["_path"]["channel_id"], params["_path"]["message_id"])
        self._delete(data)
        return None

    def _delete(self, data: dict[str, Any]) -> None:
        self.messages.pop(int(data["id"]), None)
        self.deleted.add(int(data["id"]))

    async def _r_send_typing(self, request: web.Request, params: dict[str, Any], _: list[_Upload]) -> Any:
        self._channel(params["_path"]["channel_id"])
        return None

    async def _r_get_channel(self, request: web.Request, params: dict[str, Any], _: list[_Upload]) -> Any:
        return self._channel(params["_path"]["channel_id"]).payload()

    async def _r_start_private_message(self, request: web.Request, params: dict[str, Any],
                                       _: list[_Upload]) -> Any:
        user = self.users[int(params["recipient_id"])]
        for channel in self.channels.values():
            if channel.recipient is user:
                return channel.payload()
        return self.dm_channel(user).payload()

    async def _r_leave_guild(self, request: web.Request, params: dict[str, Any], _: list[_Upload]) -> Any:
        guild = self.guilds.get(int(params["_path"]["guild_id"]))
        if guild is None:
            raise DiscordError(404, 10004, "Unknown Guild")
        del self.guilds[guild.id]
        self.left_guilds.append(guild.id)
        await self.dispatch("GUILD_DELETE", {"id": str(guild.id)})
        return None

    async def _r_get_member(self, request: web.Request, params: dict[str, Any], _: list[_Upload]) -> Any:
        guild = self.guilds.get(int(params["_path"]["guild_id"]))
        member = guild.members.get(int(params["_path"]["user_id"])) if guild else None
        if member is None:
            raise DiscordError(404, 10007, "Unknown Member")
        return member.payload()

    # ------------------------------------------------------------------ interactions

    def _interaction(self, token: str) -> FakeInteraction:
        found = self.interactions.get(token)
        if found is None:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        if datetime.now(UTC) - snowflake_time(found.id) > TOKEN_TTL:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        return found

    async def _r_interaction_callback(self, request: web.Request, params: dict[str, Any],
                                      uploads: list[_Upload]) -> Any:
        found = self.interactions.get(params["_path"]["token"])
        if found is None or str(found.id) != params["_path"]["interaction_id"]:
            raise DiscordError(404, 10062, "Unknown interaction")
        late = self.ack_deadline is not None and (
            asyncio.get_running_loop().time() - found.dispatched_at > self.ack_deadline)
        if late:
            raise DiscordError(404, 10062, "Unknown interaction")
        if found.acked:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        kind = int(params["type"])
        data = params.get("data") or {}
        found.acked, found.ack_type = True, kind
        channel = found.channel
        message: dict[str, Any] | None = None
        ephemeral = bool(int(data.get("flags") or 0) & FLAG_EPHEMERAL)
        message_type = 20 if found.type == 2 else 0
        if kind == CB_MESSAGE:
            self._check_uploads(uploads, int(found.payload["attachment_size_limit"]))
            message = self._compose(channel, data, uploads, self.bot_user, type=message_type,
                                    webhook_id=str(self.app_id), application_id=str(self.app_id))
            found.original_id = int(message["id"])
            await self._store_and_echo(message, channel)
        elif kind == CB_DEFER:
            flags = FLAG_LOADING | (FLAG_EPHEMERAL if ephemeral else 0)
            message = self._message(channel, self.bot_user, "", type=message_type, flags=flags,
                                    webhook_id=str(self.app_id), application_id=str(self.app_id))
            found.original_id, found.original_loading = int(message["id"]), True
            await self._store_and_echo(message, channel)
        elif kind in (CB_DEFER_UPDATE, CB_UPDATE):
            if found.source_message_id is None:
                raise DiscordError(400, 40043, "Interaction callback type is not valid for this interaction")
            found.original_id = found.source_message_id
            message = self.messages.get(found.source_message_id)
            if message is None:
                raise DiscordError(404, 10008, "Unknown Message")
            if kind == CB_UPDATE:
                self._check_uploads(uploads, int(found.payload["attachment_size_limit"]))
                message = self._edit(message, data, uploads)
                await self.dispatch("MESSAGE_UPDATE", message)
        elif kind != CB_PONG:
            raise DiscordError(400, 50035, f"Invalid Form Body: callback type {kind}")
        response: dict[str, Any] = {"interaction": {
            "id": str(found.id), "type": found.type, "response_message_id": message and message["id"],
            "response_message_loading": kind == CB_DEFER, "response_message_ephemeral": ephemeral}}
        if message is not None:
            response["resource"] = {"type": kind, "message": message}
        return response

    def _original(self, found: FakeInteraction) -> dict[str, Any]:
        if not found.acked or found.original_id is None or found.original_id not in self.messages:
            raise DiscordError(404, 10008, "Unknown Message")
        return self.messages[found.original_id]

    async def _r_get_original(self, request: web.Request, params: dict[str, Any], _: list[_Upload]) -> Any:
        return self._original(self._interaction(params["_path"]["token"]))

    async def _r_edit_original(self, request: web.Request, params: dict[str, Any], uploads: list[_Upload]) -> Any:
        found = self._interaction(params["_path"]["token"])
        data = self._original(found)
        self._check_uploads(uploads, int(found.payload["attachment_size_limit"]))
        found.original_loading = False
        edited = self._edit(data, params, uploads)
        if not int(edited.get("flags") or 0) & FLAG_EPHEMERAL:
            await self.dispatch("MESSAGE_UPDATE", edited)
        return edited

    async def _r_delete_original(self, request: web.Request, params: dict[str, Any], _: list[_Upload]) -> Any:
        found = self._interaction(params["_path"]["token"])
        self._delete(self._original(found))
        found.original_loading = False
        return None

    async def _r_followup(self, request: web.Request, params: dict[str, Any], uploads: list[_Upload]) -> Any:
        found = self._interaction(params["_path"]["token"])
        if not found.acked:
            raise DiscordError(404, 10015, "Unknown Webhook")
        self._check_uploads(uploads, int(found.payload["attachment_size_limit"]))
        if found.original_loading and found.original_id in self.messages:
            # Discord: the first followup after a "thinking" defer replaces the loading message and keeps
            # its visibility (an `ephemeral` flag here is ignored).
            found.original_loading = False
            message = self._edit(self.messages[found.original_id], params, uploads)
            if not int(message.get("flags") or 0) & FLAG_EPHEMERAL:
                await self.dispatch("MESSAGE_UPDATE", message)
            return message
        message = self._compose(found.channel, params, uploads, self.bot_user,
                                webhook_id=str(self.app_id), application_id=str(self.app_id))
        found.followup_ids.append(int(message["id"]))
        return await self._store_and_echo(message, found.channel)

    def _followup_message(self, params: dict[str, Any]) -> dict[str, Any]:
        self._interaction(params["_path"]["token"])
        data = self.messages.get(int(params["_path"]["message_id"]))
        if data is None:
            raise DiscordError(404, 10008, "Unknown Message")
        return data

    async def _r_get_followup(self, request: web.Request, params: dict[str, Any], _: list[_Upload]) -> Any:
        return self._followup_message(params)

    async def _r_edit_followup(self, request: web.Request, params: dict[str, Any], uploads: list[_Upload]) -> Any:
        return self._edit(self._followup_message(params), params, uploads)

    async def _r_delete_followup(self, request: web.Request, params: dict[str, Any], _: list[_Upload]) -> Any:
        self._delete(self._followup_message(params))
        return None

    # ------------------------------------------------------------------ CDN

    async def _cdn(self, request: web.Request) -> web.Response:
        self.record(Call("cdn", {"path": request.path}))
        found = self.cdn.get(request.path)
        if found is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=found[0], content_type=found[1])

    # ------------------------------------------------------------------ gateway

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        self.record(Call("GATEWAY CONNECT", dict(request.query)))
        try:
            await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                await self._on_frame(ws, frame["op"], frame.get("d"))
        finally:
            self._sockets.remove(ws)
            self._identified.discard(ws)
            self._shard_of.pop(ws, None)
        return ws

    async def _on_frame(self, ws: web.WebSocketResponse, op: int, data: Any) -> None:
        if op == 1:
            await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            self.identifies.append(data)
            self.record(Call("GATEWAY IDENTIFY", {k: v for k, v in data.items() if k != "token"}))
            if self.identify_hangs:
                return
            if data.get("token") != self.gateway_token:
                await ws.close(code=4004, message=b"Authentication failed.")
                return
            if int(data.get("intents", 0)) & PRIVILEGED_INTENTS & ~self.privileged_intents:
                await ws.close(code=4014, message=b"Disallowed intent(s).")
                return
            shard_id, shard_count = (int(x) for x in data.get("shard") or (0, 1))
            if not 0 <= shard_id < shard_count:
                await ws.close(code=4010, message=b"Invalid shard.")
                return
            self.session_id = secrets.token_hex(8)
            self.sessions[self.session_id] = (shard_id, shard_count)
            self._shard_of[ws] = (shard_id, shard_count)
            self._identified.add(ws)
            ready = {"v": 10, "user": self.bot_user.payload(), "session_id": self.session_id,
                     "resume_gateway_url": self.gateway_url, "shard": [shard_id, shard_count],
                     "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds
                                if self.shard_for(g, shard_count) == shard_id],
                     "application": {"id": str(self.app_id), "flags": 0}, "private_channels": [],
                     "relationships": [], "presences": [], "geo_ordered_rtc_regions": [], "_trace": []}
            await self._send_dispatch(ws, "READY", ready)
            for found in self.guilds.values():
                if self.shard_for(found.id, shard_count) == shard_id:
                    await self._send_dispatch(ws, "GUILD_CREATE", found.payload())
        elif op == 6:
            self.record(Call("GATEWAY RESUME", {k: v for k, v in data.items() if k != "token"}))
            if data.get("token") != self.gateway_token:
                await ws.close(code=4004, message=b"Authentication failed.")
                return
            shard = self.sessions.get(str(data.get("session_id")))
            if shard is None:
                await ws.send_json({"op": 9, "d": False, "s": None, "t": None})
                return
            self._shard_of[ws] = shard
            self._identified.add(ws)
            for seq, event, payload in self._history:
                if seq > int(data.get("seq") or 0) and self._hears(ws, event, payload):
                    await ws.send_json({"op": 0, "s": seq, "t": event, "d": payload})
            await self._send_dispatch(ws, "RESUMED", {})
        elif op in (3, 4, 8):
            self.record(Call(f"GATEWAY OP {op}", {"d": data}))
        else:
            self.record(Call(f"UNHANDLED GATEWAY OP {op}", {"d": data}))

    async def _send_dispatch(self, ws: web.WebSocketResponse, event: str, data: dict[str, Any]) -> None:
        self._seq += 1
        if event not in ("READY", "RESUMED"):
            self._history.append((self._seq, event, data))
        await ws.send_json({"op": 0, "s": self._seq, "t": event, "d": data})

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a gateway event to the connected bot (kept for replay on RESUME if it is not connected)."""
        self._seq += 1
        self._history.append((self._seq, event, data))
        for ws in list(self._identified):
            if not ws.closed and self._hears(ws, event, data):
                await ws.send_json({"op": 0, "s": self._seq, "t": event, "d": data})

    @staticmethod
    def shard_for(guild_id: int | None, shard_count: int) -> int:
        """Discord's rule: a guild's events go to shard (guild_id >> 22) % count; DMs to shard 0."""
        return 0 if guild_id is None else (int(guild_id) >> 22) % shard_count

    def _hears(self, ws: web.WebSocketResponse, event: str, data: dict[str, Any]) -> bool:
        """Whether the connection `ws` (one shard) receives this event."""
        shard_id, shard_count = self._shard_of.get(ws, (0, 1))
        guild = data.get("id") if event.startswith("GUILD_") and "guild_id" not in data else data.get("guild_id")
        return self.shard_for(int(guild) if guild is not None else None, shard_count) == shard_id

    def shards_connected(self) -> list[tuple[int, int]]:
        """(shard id, count) of every identified connection."""
        return sorted(self._shard_of[ws] for ws in self._identified if ws in self._shard_of)

    async def request_reconnect(self) -> None:
        """op 7 RECONNECT: the client drops the socket and RESUMEs at `resume_gateway_url`."""
        for ws in list(self._identified):
            self._identified.discard(ws)
            await ws.send_json({"op": 7, "d": None, "s": None, "t": None})

    async def close_gateway(self, code: int) -> None:
        """Close the bot's gateway connection with `code` (4004 bad token, 4014 intents, 4000 resumable)."""
        for ws in list(self._identified):
            self._identified.discard(ws)
            await ws.close(code=code, message=b"closed by the fake")

    @property
    def connected(self) -> bool:
        return bool(self._identified)

    # ------------------------------------------------------------------ test drivers

    def _interaction_base(self, kind: int, channel: FakeChannel, user: FakeUser, *,
                          created_ago: float = 0.0, attachment_size_limit: int | None = None,
                          permissions: int | None = None) -> FakeInteraction:
        interaction_id = self.new_id(datetime.now(UTC) - timedelta(seconds=created_ago))
        token = f"itok.{interaction_id}.{secrets.token_hex(16)}"
        guild = self._guild_of(channel)
        limit = attachment_size_limit if attachment_size_limit is not None else self.upload_limit
        payload: dict[str, Any] = {
            "id": str(interaction_id), "application_id": str(self.app_id), "type": kind, "token": token,
            "version": 1, "attachment_size_limit": limit, "channel": channel.payload(),
            "channel_id": str(channel.id), "locale": "en-US", "entitlements": [],
            "app_permissions": str(MEMBER_PERMISSIONS),
        }
        if guild is not None:
            member = guild.members.get(user.id) or FakeMember(user, guild.id)
            member_payload = member.payload(with_permissions=True)
            if permissions is not None:
                member_payload["permissions"] = str(permissions)
            payload.update({"guild_id": str(guild.id), "member": member_payload, "guild_locale": "en-US",
                            "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
                            "authorizing_integration_owners": {"0": str(guild.id)}, "context": 0})
        else:
            payload.update({"user": user.payload(), "context": 1,
                            "authorizing_integration_owners": {"0": str(user.id)}})
        found = FakeInteraction(interaction_id, token, kind, channel, user, payload)
        self.interactions[token] = found
        return found

    async def _dispatch_interaction(self, found: FakeInteraction) -> FakeInteraction:
        found.dispatched_at = asyncio.get_running_loop().time()
        await self.dispatch("INTERACTION_CREATE", found.payload)
        return found

    def command(self, name: str) -> dict[str, Any]:
        for command in self.commands:
            if command["name"] == name:
                return command
        raise AssertionError(f"/{name} is not registered; registered: {[c['name'] for c in self.commands]}")

    async def slash_command(
        self,
        channel: FakeChannel,
        user: FakeUser | FakeMember,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        subcommand: str | None = None,
        created_ago: float = 0.0,
        attachment_size_limit: int | None = None,
        permissions: int | None = None,
        redeliver: FakeInteraction | None = None,
    ) -> FakeInteraction:
        """INTERACTION_CREATE type 2 for a registered command, options checked against its schema.

        `options` maps option names to values: users/members as FakeUser/FakeMember, attachments as a
        `(filename, bytes, content_type)` tuple, anything else as the raw value. `subcommand` selects a
        subcommand (`/quota show`). `redeliver` sends the very same interaction again."""
        if redeliver is not None:
            return await self._dispatch_interaction(redeliver)
        plain_user = user.user if isinstance(user, FakeMember) else user
        found = self._interaction_base(2, channel, plain_user, created_ago=created_ago,
                                       attachment_size_limit=attachment_size_limit, permissions=permissions)
        command = self.command(name)
        schema = command.get("options") or []
        resolved: dict[str, dict[str, Any]] = {}
        if subcommand is not None:
            sub = next((o for o in schema if o["name"] == subcommand and o["type"] == 1), None)
            assert sub is not None, f"/{name} has no subcommand {subcommand!r}"
            opts = self._options(channel, sub.get("options") or [], options or {}, resolved, name)
            data_options = [{"name": subcommand, "type": 1, "options": opts}]
        else:
            data_options = self._options(channel, schema, options or {}, resolved, name)
        found.payload["data"] = {"id": command["id"], "name": name, "type": 1, "options": data_options}
        if resolved:
            found.payload["data"]["resolved"] = resolved
        return await self._dispatch_interaction(found)

    def _options(self, channel: FakeChannel, schema: list[dict[str, Any]], values: dict[str, Any],
                 resolved: dict[str, dict[str, Any]], where: str) -> list[dict[str, Any]]:
        by_name = {o["name"]: o for o in schema}
        for option in schema:
            assert not option.get("required") or option["name"] in values, f"/{where}: {option['name']} required"
        result = []
        for key, given in values.items():
            value = given
            assert key in by_name, f"/{where} has no option {key!r}; it has {sorted(by_name)}"
            option = by_name[key]
            kind = option["type"]
            if option.get("choices"):
                assert value in [c["value"] for c in option["choices"]], f"{key}={value!r} not a choice"
            if kind == 6:  # user
                target = value.user if isinstance(value, FakeMember) else value
                resolved.setdefault("users", {})[str(target.id)] = target.payload()
                guild = self._guild_of(channel)
                if guild is not None and target.id in guild.members:
                    member = guild.members[target.id].payload(with_user=False, with_permissions=True)
                    resolved.setdefault("members", {})[str(target.id)] = member
                value = str(target.id)
            elif kind == 11:  # attachment
                filename, data, content_type = value
                attachment = self._attachment(channel.id, _Upload(0, filename, content_type, data))
                resolved.setdefault("attachments", {})[attachment["id"]] = attachment
                value = attachment["id"]
            elif kind == 4:
                assert isinstance(value, int), f"{key} must be an integer"
            elif kind == 3:
                assert isinstance(value, str), f"{key} must be a string"
            result.append({"name": key, "type": kind, "value": value})
        return result

    async def click_button(self, message: dict[str, Any] | str | int, user: FakeUser | FakeMember,
                           custom_id: str, *, permissions: int | None = None,
                           redeliver: FakeInteraction | None = None) -> FakeInteraction:
        """INTERACTION_CREATE type 3 for a button on a stored message (the button must be there)."""
        if redeliver is not None:
            return await self._dispatch_interaction(redeliver)
        data = self.message(message if not isinstance(message, dict) else message["id"])
        ids = [c.get("custom_id") for row in data["components"] for c in row.get("components", [])]
        assert custom_id in ids, f"no button {custom_id!r} on message {data['id']}; buttons: {ids}"
        channel = self.channels[int(data["channel_id"])]
        plain_user = user.user if isinstance(user, FakeMember) else user
        found = self._interaction_base(3, channel, plain_user, permissions=permissions)
        found.source_message_id = int(data["id"])
        found.payload["message"] = data
        found.payload["data"] = {"custom_id": custom_id, "component_type": 2}
        return await self._dispatch_interaction(found)

    async def user_message(
        self,
        channel: FakeChannel,
        user: FakeUser | FakeMember,
        content: str = "",
        *,
        reply_to: dict[str, Any] | str | int | None = None,
        include_referenced: bool = True,
        attachments: list[tuple[str, bytes, str]] | None = None,
        mention_bot: bool = False,
        message_id: int | None = None,
    ) -> dict[str, Any]:
        """A member (or DM user) posts a message; MESSAGE_CREATE is dispatched.

        `reply_to` makes it a reply; `include_referenced=False` leaves out `referenced_message` so the bot
        must fetch it. `mention_bot` prefixes `<@bot>`. `message_id` re-sends a message id (redelivery)."""
        author = user.user if isinstance(user, FakeMember) else user
        if mention_bot:
            content = f"<@{self.bot_user.id}> {content}"
        data = self._message(channel, author, content)
        if message_id is not None:
            data["id"] = str(message_id)
        mentioned = [u for u in self.users.values() if f"<@{u.id}>" in content or f"<@!{u.id}>" in content]
        guild = self._guild_of(channel)
        data["mentions"] = [
            {**u.payload(), **({"member": guild.members[u.id].payload(with_user=False)}
                               if guild is not None and u.id in guild.members else {})}
            for u in mentioned
        ]
        data["attachments"] = [self._attachment(channel.id, _Upload(i, name, ctype, raw))
                               for i, (name, raw, ctype) in enumerate(attachments or [])]
        if reply_to is not None:
            target = self.message(reply_to if not isinstance(reply_to, dict) else reply_to["id"])
            data["type"] = 19
            data["message_reference"] = {"message_id": target["id"], "channel_id": target["channel_id"],
                                         "type": 0, **({"guild_id": target["guild_id"]}
                                                       if "guild_id" in target else {})}
            if include_referenced:
                data["referenced_message"] = {k: v for k, v in target.items() if k != "referenced_message"}
        self.messages[int(data["id"])] = data
        await self.dispatch("MESSAGE_CREATE", self._with_member(data, author, channel))
        return data

    async def delete_message(self, message: dict[str, Any]) -> None:
        """Someone (a moderator, the author) deletes a message."""
        self._delete(message)
        event = {"id": message["id"], "channel_id": message["channel_id"]}
        if "guild_id" in message:
            event["guild_id"] = message["guild_id"]
        await self.dispatch("MESSAGE_DELETE", event)

    # ------------------------------------------------------------------ test-side queries

    def original(self, interaction: FakeInteraction) -> dict[str, Any] | None:
        """The message an interaction's response currently shows (None if deleted or never sent)."""
        if interaction.original_id is None:
            return None
        return self.messages.get(interaction.original_id)

    def replies(self, interaction: FakeInteraction) -> list[dict[str, Any]]:
        """What the user sees for an interaction: its original response once it is no longer "thinking",
        then its followups (deleted ones left out)."""
        shown = []
        original = self.original(interaction)
        if original is not None and not int(original.get("flags") or 0) & FLAG_LOADING:
            shown.append(original)
        shown += [self.messages[i] for i in interaction.followup_ids if i in self.messages]
        return shown

    @staticmethod
    def is_ephemeral(message: dict[str, Any]) -> bool:
        return bool(int(message.get("flags") or 0) & FLAG_EPHEMERAL)

    def sends(self) -> list[Call]:
        return [c for c in self.calls if c.method in SENDING_CALLS]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0,
                         what: str = "condition") -> None:
        """Wait (without sleeping) until `predicate()` holds; re-checked on every recorded call."""

        async def _wait() -> None:
            async with self._changed:
                while not predicate():
                    if self.app_errors:
                        raise AssertionError(f"client error while waiting for {what}: {self.app_errors!r}")
                    if self.fake_errors:
                        raise AssertionError(self.fake_errors[0])
                    await self._changed.wait()

        try:
            await asyncio.wait_for(_wait(), timeout)
        except TimeoutError:
            seen = [c.method for c in self.calls]
            raise AssertionError(f"timed out waiting for {what}; calls so far: {seen}") from None
