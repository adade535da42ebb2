"""A strict fake of the Telegram Bot API (testing.md §1.3), for the real python-telegram-bot over loopback.

Strict where a real server is strict: the token is checked in every path, unknown methods get 404, errors are
`{ok: false, error_code, description}` with Telegram's codes and wording, reply targets must exist, photos are
capped at 10 MB and width + height <= 10000, `getFile` refuses files over 20 MB, `getUpdates` answers 409 while a
webhook is set or when a newer poller takes over. Faults on demand: `flood_next` (429 with
`parameters.retry_after`), `migrate` (a group upgraded to a supergroup), `fail_next` (any code).

Test side: `user()`, `private_chat()`, `group_chat()`, `send_message()`, `press_button()`, `push_update()`,
then `await wait_for("sendPhoto")` and assert on `Call.params` / `Call.files`. Parameters arrive as PTB sends
them: plain strings, except the JSON fields in `JSON_FIELDS`, which are decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes._base import Call, FakeServer

JSON_FIELDS = frozenset({
    "reply_parameters", "reply_markup", "media", "allowed_updates", "entities", "caption_entities",
    "link_preview_options", "commands", "scope",
})
# Real limits (platform-limits.md T-e, T-f, T-g, T-h).
PHOTO_MAX_BYTES = 10 * 1024 * 1024
PHOTO_MAX_SIDE_SUM = 10_000
DOCUMENT_MAX_BYTES = 50 * 1024 * 1024
GETFILE_MAX_BYTES = 20 * 1024 * 1024
TEXT_MAX = 4096
CAPTION_MAX = 1024
CALLBACK_DATA_MAX = 64
ANONYMOUS_ADMIN_ID = 1087968824
ADMIN_RIGHTS = (
    "can_be_edited", "is_anonymous", "can_manage_chat", "can_delete_messages", "can_manage_video_chats",
    "can_restrict_members", "can_promote_members", "can_change_info", "can_invite_users", "can_post_stories",
    "can_edit_stories", "can_delete_stories",
)
SENDABLE = frozenset({"sendMessage", "sendPhoto", "sendDocument", "sendChatAction"})


class ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


@dataclass
class StoredFile:
    data: bytes
    path: str
    unique_id: str
    declared_size: int | None = None  # pretend the file is this large (oversized-input tests)

    @property
    def size(self) -> int:
        return self.declared_size if self.declared_size is not None else len(self.data)


@dataclass
class Timed:
    """When each call arrived (monotonic), for flood-wait assertions."""

    method: str
    at: float
    status: int = 200
    chat_id: str | None = None  # the `chat_id` parameter as sent, if any (flood control is per chat)


@dataclass
class ChatState:
    chat: dict[str, Any]
    creator: int | None = None
    admins: set[int] = field(default_factory=set)
    migrated_to: int | None = None


class FakeTelegram(FakeServer):
    def __init__(self, token: str = "999000:TEST-token_abc", bot_username: str = "easel_bot") -> None:  # noqa: S107
        self.token = token
        bot_id = int(token.split(":", 1)[0])
        self.bot_user: dict[str, Any] = {
            "id": bot_id, "is_bot": True, "first_name": "Easel", "username": bot_username,
            "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False,
            "can_connect_to_business": False, "has_main_web_app": False,
        }
        self.updates: list[dict[str, Any]] = []
        self.last_update: dict[str, Any] = {}
        self._update_ids = itertools.count(1)
        self._ids = itertools.count(1000)
        self._file_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        # (chat, bot message) -> the message id it was sent in reply to, even when that message is unknown
        # to the fake (sent with allow_sending_without_reply): lets tests follow an answer edited in place.
        self.reply_origin: dict[tuple[int, int], int] = {}
        self.deleted: list[tuple[int, int]] = []
        self.files: dict[str, StoredFile] = {}
        self.chats: dict[int, ChatState] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.callbacks: dict[str, dict[str, Any]] = {}  # id -> answer params once answered, else {}
        self.commands: list[dict[str, Any]] = []  # the default list (no language_code)
        self.commands_by_language: dict[str, list[dict[str, Any]]] = {}  # "" is the default list
        self.left_chats: list[int] = []
        self.webhook_url = ""
        self.webhook_secret: str | None = None
        self.webhook_deliveries: list[int] = []
        self.allowed_updates: list[str] = []
        self.timeline: list[Timed] = []
        self.downloads: list[str] = []
        self._injected: dict[str, list[ApiError]] = {}
        self._poll_generation = 0
        self._updates_changed = asyncio.Condition()
        self._stopping = False
        self._session: aiohttp.ClientSession | None = None
        super().__init__()

    # ------------------------------------------------------------------ wiring
    def setup_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        app.router.add_route("*", "/{tail:.*}", self._not_found)

    @property
    def root(self) -> str:
        """What `EASEL_TELEGRAM_API_URL` should be set to."""
        return self.origin

    @property
    def base_url(self) -> str:
        return f"{self.origin}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.origin}/file/bot"

    async def __aenter__(self) -> FakeTelegram:
        await super().__aenter__()
        return self

    async def before_stop(self) -> None:
        self._stopping = True
        async with self._updates_changed:
            self._updates_changed.notify_all()
        if self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------------ faults on demand
    def fail_next(self, method: str, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        self._injected.setdefault(method, []).append(ApiError(code, description, parameters))

    def flood_next(self, method: str, retry_after: float = 1) -> None:
        """The next call to `method` gets 429 with `parameters.retry_after` (PTB raises RetryAfter). Tests may
        pass a fraction of a second; real Telegram sends whole seconds."""
        self.fail_next(method, 429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})

    def set_webhook_conflict(self) -> None:
        """Terminate a parked long poll as a newer poller would (409)."""
        self._poll_generation += 1
        self._wake_pollers()

    # ------------------------------------------------------------------ HTTP handlers
    async def _not_found(self, request: web.Request) -> web.Response:
        self.record(Call(f"UNHANDLED {request.method} {request.path_qs}"))
        return _error(ApiError(404, "Not Found"))

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _error(ApiError(401, "Unauthorized"))
        path = request.match_info["path"]
        self.downloads.append(path)
        self.record(Call("download", {"path": path}))
        for stored in self.files.values():
            if stored.path == path:
                return web.Response(body=stored.data, content_type="application/octet-stream")
        return _error(ApiError(404, "Not Found"))

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            self.record(Call("unauthorized", {}))
            return _error(ApiError(401, "Unauthorized"))
        method = request.match_info["method"]
        params, files = await _read_params(request)
        self.record(Call(method, params, files, dict(request.headers)))
        chat = params.get("chat_id")
        timed = Timed(method, time.monotonic(), chat_id=str(chat) if chat is not None else None)
        self.timeline.append(timed)
        handler = getattr(self, f"_m_{method}", None)
        try:
            injected = self._injected.get(method)
            if injected:
                raise injected.pop(0)
            if handler is None:
                raise ApiError(404, "Not Found")
            result = await handler(params, files)
        except ApiError as exc:
            timed.status = exc.code
            return _error(exc)
        return web.json_response({"ok": True, "result": result})

    # ------------------------------------------------------------------ bot identity and setup
    async def _m_getMe(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        return self.bot_user

    async def _m_setMyCommands(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        commands = p.get("commands")
        if not isinstance(commands, list) or not commands:
            raise ApiError(400, "Bad Request: commands must be non-empty")
        for command in commands:
            name = command.get("command", "")
            if not (1 <= len(name) <= 32 and name.islower() and name.replace("_", "").isalnum()):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(command.get("description", "")) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        language = p.get("language_code") or ""
        if language and not (len(language) == 2 and language.isalpha() and language.islower()):
            raise ApiError(400, "Bad Request: invalid language code specified")
        self.commands_by_language[language] = commands
        if not language:
            self.commands = commands
        return True

    async def _m_deleteMyCommands(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        language = p.get("language_code") or ""
        self.commands_by_language.pop(language, None)
        if not language:
            self.commands = []
        return True

    async def _m_setWebhook(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        url = p.get("url", "")
        secret = p.get("secret_token")
        if secret is not None and not (
            1 <= len(secret) <= 256 and all(c.isascii() and (c.isalnum() or c in "_-") for c in secret)
        ):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if url and not url.startswith(("https://", "http://127.0.0.1")):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook_url, self.webhook_secret = url, secret
        if p.get("allowed_updates") is not None:
            self.allowed_updates = list(p["allowed_updates"])
        if _truthy(p.get("drop_pending_updates")):
            self.updates.clear()
        self._wake_pollers()
        return True

    async def _m_deleteWebhook(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        self.webhook_url, self.webhook_secret = "", None
        if _truthy(p.get("drop_pending_updates")):
            self.updates.clear()
        return True

    async def _m_getWebhookInfo(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        return {"url": self.webhook_url, "has_custom_certificate": False, "pending_update_count": len(self.updates)}

    # ------------------------------------------------------------------ updates
    async def _m_getUpdates(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        if self.webhook_url:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; use "
                                "deleteWebhook to delete the webhook first")
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake_pollers()  # a newer poller terminates a parked older one, as Telegram does
        offset = int(p.get("offset") or 0)
        limit = int(p.get("limit") or 100)
        timeout = float(p.get("timeout") or 0)
        if p.get("allowed_updates") is not None:
            self.allowed_updates = list(p["allowed_updates"])
        if offset:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]  # confirmed
        deadline = time.monotonic() + timeout
        async with self._updates_changed:
            while True:
                if generation != self._poll_generation:
                    raise ApiError(409, "Conflict: terminated by other getUpdates request; make sure that only "
                                        "one bot instance is running")
                pending = [u for u in self.updates if self._allowed(u)][:limit]
                remaining = deadline - time.monotonic()
                if pending or remaining <= 0 or self._stopping:
                    return pending
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._updates_changed.wait(), remaining)

    def _allowed(self, update: dict[str, Any]) -> bool:
        kind = next(k for k in update if k != "update_id")
        if self.allowed_updates:
            return kind in self.allowed_updates
        return kind not in {"chat_member", "message_reaction", "message_reaction_count"}

    def _wake_pollers(self) -> None:
        async def wake() -> None:
            async with self._updates_changed:
                self._updates_changed.notify_all()

        asyncio.get_running_loop().create_task(wake())

    async def push_update(self, update: Mapping[str, Any]) -> dict[str, Any]:
        """Deliver an update: POST it to the webhook if one is set (with the secret header), else queue it
        for `getUpdates`. An update that already has an `update_id` is delivered again as is (redelivery)."""
        body = dict(update)
        body.setdefault("update_id", next(self._update_ids))
        self.last_update = body
        if self.webhook_url:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            headers = {"X-Telegram-Bot-Api-Secret-Token": self.webhook_secret} if self.webhook_secret else {}
            async with self._session.post(self.webhook_url, json=body, headers=headers) as response:
                self.webhook_deliveries.append(response.status)
        else:
            self.updates.append(body)
            self._wake_pollers()
        return body

    # ------------------------------------------------------------------ test-side builders
    def user(self, first_name: str = "Ann", username: str | None = None, user_id: int | None = None,
             is_bot: bool = False) -> dict[str, Any]:
        uid = user_id if user_id is not None else next(self._ids) * 7
        user: dict[str, Any] = {"id": uid, "is_bot": is_bot, "first_name": first_name}
        if username:
            user["username"] = username
        self.users[uid] = user
        return user

    def private_chat(self, user: Mapping[str, Any]) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        if "username" in user:
            chat["username"] = user["username"]
        self.chats[chat["id"]] = ChatState(chat)
        return chat

    def group_chat(self, title: str = "Artists", *, admins: Sequence[Mapping[str, Any]] = (),
                   creator: Mapping[str, Any] | None = None, supergroup: bool = True,
                   forum: bool = False) -> dict[str, Any]:
        chat_id = -(1_000_000_000_000 + next(self._ids)) if supergroup else -next(self._ids)
        chat: dict[str, Any] = {"id": chat_id, "type": "supergroup" if supergroup else "group", "title": title}
        if forum:
            chat["is_forum"] = True
        state = ChatState(chat, creator=creator["id"] if creator else None, admins={a["id"] for a in admins})
        self.chats[chat_id] = state
        return chat

    def put_file(self, data: bytes, *, declared_size: int | None = None, kind: str = "photos",
                 ext: str = "jpg") -> tuple[str, StoredFile]:
        n = next(self._file_ids)
        file_id = f"AgAD-file-{n}"
        stored = StoredFile(data, f"{kind}/file_{n}.{ext}", f"uniq{n}", declared_size)
        self.files[file_id] = stored
        return file_id, stored

    def _photo_sizes(self, data: bytes, declared_size: int | None = None) -> list[dict[str, Any]]:
        width, height = _image_size(data)
        thumb_id, thumb = self.put_file(b"thumbnail-not-the-photo")
        big_id, big = self.put_file(data, declared_size=declared_size)
        scale = 90 / max(width, height, 1)
        return [  # smallest first, like Telegram: a bot that reads photo[0] gets the thumbnail
            {"file_id": thumb_id, "file_unique_id": thumb.unique_id, "file_size": thumb.size,
             "width": max(1, round(width * scale)), "height": max(1, round(height * scale))},
            {"file_id": big_id, "file_unique_id": big.unique_id, "file_size": big.size,
             "width": width, "height": height},
        ]

    def _document(self, data: bytes, mime: str, name: str, declared_size: int | None = None) -> dict[str, Any]:
        file_id, stored = self.put_file(data, declared_size=declared_size, kind="documents",
                                        ext=name.rsplit(".", 1)[-1])
        return {"file_id": file_id, "file_unique_id": stored.unique_id, "file_name": name, "mime_type": mime,
                "file_size": stored.size}

    def _next_message_id(self, chat_id: int) -> int:
        del chat_id
        return next(self._ids)

    def _store(self, message: dict[str, Any]) -> dict[str, Any]:
        self.messages[(message["chat"]["id"], message["message_id"])] = message
        return message

    async def send_message(
        self, chat: Mapping[str, Any], user: Mapping[str, Any] | None, text: str | None = None, *,
        photo: bytes | None = None, document: bytes | tuple[bytes, str, str] | None = None,
        reply_to: Mapping[str, Any] | None = None, sender_chat: Mapping[str, Any] | None = None,
        file_size: int | None = None, thread_id: int | None = None, via_bot: Mapping[str, Any] | None = None,
        message_id: int | None = None, edited: bool = False, extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A user's message arrives. `/commands` get their `bot_command` entity (PTB's CommandHandler needs it).
        `text` becomes the caption when a photo or document is attached. `file_size` overrides the declared
        size of the attachment. Returns the message; the update is `self.updates[-1]` (polling)."""
        message: dict[str, Any] = {
            "message_id": message_id if message_id is not None else self._next_message_id(chat["id"]),
            "date": int(time.time()), "chat": dict(chat),
        }
        if user is not None:
            message["from"] = dict(user)
        if sender_chat is not None:
            message["sender_chat"] = dict(sender_chat)
        if via_bot is not None:
            message["via_bot"] = dict(via_bot)
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        if reply_to is not None:
            message["reply_to_message"] = _one_level(reply_to)
        text_key, entities_key = "text", "entities"
        if photo is not None:
            message["photo"] = self._photo_sizes(photo, file_size)
            text_key, entities_key = "caption", "caption_entities"
        elif document is not None:
            data, mime, name = document if isinstance(document, tuple) else (document, "image/png", "image.png")
            message["document"] = self._document(data, mime, name, file_size)
            text_key, entities_key = "caption", "caption_entities"
        if text is not None:
            message[text_key] = text
            if text.startswith("/"):
                command = text.split(maxsplit=1)[0]
                message[entities_key] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        if extra:
            message.update(extra)
        if not edited:
            self._store(message)
        else:
            message["edit_date"] = int(time.time())
        await self.push_update({"edited_message" if edited else "message": message})
        return message

    async def press_button(self, user: Mapping[str, Any], message: Mapping[str, Any], data: str) -> dict[str, Any]:
        """A user taps an inline button under `message` (a message the bot sent)."""
        query_id = f"cbq{next(self._callback_ids)}"
        self.callbacks[query_id] = {}
        stored = self.messages.get((message["chat"]["id"], message["message_id"]), message)
        query = {"id": query_id, "from": dict(user), "message": dict(stored), "chat_instance": "ci-1", "data": data}
        update = await self.push_update({"callback_query": query})
        return update

    async def add_bot(self, chat: Mapping[str, Any], by: Mapping[str, Any]) -> dict[str, Any]:
        """`by` adds the bot to a group: a `my_chat_member` update (status left -> member)."""
        bot = dict(self.bot_user)
        change = {"chat": dict(chat), "from": dict(by), "date": int(time.time()),
                  "old_chat_member": {"status": "left", "user": bot},
                  "new_chat_member": {"status": "member", "user": bot}}
        return await self.push_update({"my_chat_member": change})

    async def migrate(self, chat: Mapping[str, Any], by: Mapping[str, Any]) -> dict[str, Any]:
        """Upgrade a group to a supergroup: sends to the old id fail with `migrate_to_chat_id`, and the old
        group gets the service message that announces the move. Returns the new supergroup chat."""
        old = self.chats[chat["id"]]
        new_id = -(1_000_000_000_000 + next(self._ids))
        new_chat = {"id": new_id, "type": "supergroup", "title": chat.get("title", "")}
        self.chats[new_id] = ChatState(new_chat, creator=old.creator, admins=set(old.admins))
        old.migrated_to = new_id
        await self.send_message(chat, by, None, extra={"migrate_to_chat_id": new_id})
        return new_chat

    def sent_messages(self, method: str | None = None) -> list[dict[str, Any]]:
        """Messages the bot sent (stored results), oldest first."""
        bot_id = self.bot_user["id"]
        found = [m for m in self.messages.values() if m.get("from", {}).get("id") == bot_id]
        if method == "sendPhoto":
            found = [m for m in found if "photo" in m]
        return sorted(found, key=lambda m: m["message_id"])

    # ------------------------------------------------------------------ sending
    def _chat(self, p: Mapping[str, Any]) -> ChatState:
        raw = p.get("chat_id")
        try:
            chat_id = int(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ApiError(400, "Bad Request: chat not found") from None
        state = self.chats.get(chat_id)
        if state is None and chat_id in self.users:  # a user who never opened a private chat with the bot
            raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        if state is None:
            raise ApiError(400, "Bad Request: chat not found")
        if state.migrated_to is not None:
            raise ApiError(400, "Bad Request: group chat was upgraded to a supergroup chat",
                           {"migrate_to_chat_id": state.migrated_to})
        return state

    def _new_message(self, p: Mapping[str, Any]) -> dict[str, Any]:
        state = self._chat(p)
        chat_id = state.chat["id"]
        message: dict[str, Any] = {"message_id": self._next_message_id(chat_id), "date": int(time.time()),
                                   "chat": dict(state.chat), "from": dict(self.bot_user)}
        if p.get("message_thread_id"):
            message["message_thread_id"] = int(p["message_thread_id"])
            message["is_topic_message"] = True
        reply = p.get("reply_parameters")
        if reply is not None:
            self.reply_origin[(chat_id, message["message_id"])] = int(reply["message_id"])
            target_chat = int(reply.get("chat_id", chat_id))
            target = self.messages.get((target_chat, int(reply["message_id"])))
            if target is not None:
                message["reply_to_message"] = _one_level(target)
            elif not reply.get("allow_sending_without_reply"):
                raise ApiError(400, "Bad Request: message to be replied not found")
        if p.get("reply_markup") is not None:
            message["reply_markup"] = _check_markup(p["reply_markup"])
        return message

    async def _m_sendMessage(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        text = p.get("text", "")
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > TEXT_MAX:
            raise ApiError(400, "Bad Request: message is too long")
        _check_parse_mode(p, text)
        message = self._new_message(p)
        message["text"] = text
        return self._store(message)

    def _caption(self, p: Mapping[str, Any], message: dict[str, Any]) -> None:
        caption = p.get("caption")
        if caption:
            if len(caption) > CAPTION_MAX:
                raise ApiError(400, "Bad Request: message caption is too long")
            _check_parse_mode(p, caption)
            message["caption"] = caption

    def _upload(self, p: Mapping[str, Any], f: Mapping[str, bytes], name: str) -> bytes:
        value = p.get(name)
        if name in f:
            return f[name]
        if isinstance(value, str) and value.startswith("attach://") and value[9:] in f:
            return f[value[9:]]
        if isinstance(value, str) and value in self.files:
            return self.files[value].data
        raise ApiError(400, f"Bad Request: there is no {name} in the request")

    def _check_photo(self, data: bytes) -> None:
        if len(data) > PHOTO_MAX_BYTES:
            raise ApiError(413, "Request Entity Too Large")
        width, height = _image_size(data)
        if width + height > PHOTO_MAX_SIDE_SUM:
            raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")

    async def _m_sendPhoto(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        data = self._upload(p, f, "photo")
        self._check_photo(data)
        message = self._new_message(p)
        message["photo"] = self._photo_sizes(data)
        self._caption(p, message)
        return self._store(message)

    async def _m_sendDocument(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        data = self._upload(p, f, "document")
        if len(data) > DOCUMENT_MAX_BYTES:
            raise ApiError(413, "Request Entity Too Large")
        message = self._new_message(p)
        message["document"] = self._document(data, "application/octet-stream", "image")
        self._caption(p, message)
        return self._store(message)

    async def _m_sendChatAction(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        self._chat(p)
        if p.get("action") not in {"typing", "upload_photo", "record_video", "upload_video", "record_voice",
                                   "upload_voice", "upload_document", "choose_sticker", "find_location",
                                   "record_video_note", "upload_video_note"}:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    # ------------------------------------------------------------------ editing
    def _target(self, p: Mapping[str, Any]) -> dict[str, Any]:
        state = self._chat(p)
        message = self.messages.get((state.chat["id"], int(p.get("message_id") or 0)))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if message.get("from", {}).get("id") != self.bot_user["id"]:
            raise ApiError(400, "Bad Request: message can't be edited")
        return message

    def _apply_markup(self, p: Mapping[str, Any], message: dict[str, Any]) -> None:
        # Telegram drops an inline keyboard that an edit does not repeat.
        if p.get("reply_markup") is not None:
            message["reply_markup"] = _check_markup(p["reply_markup"])
        else:
            message.pop("reply_markup", None)

    async def _m_editMessageMedia(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        message = self._target(p)
        media = p.get("media") or {}
        # Bot API 9.x: editMessageMedia may also add media to a text message (a placeholder becomes a photo).
        if media.get("type") != "photo":
            raise ApiError(400, "Bad Request: unsupported media type in the fake")
        data = self._upload({"photo": media.get("media")}, f, "photo")
        self._check_photo(data)
        message.pop("document", None)
        message.pop("text", None)
        message.pop("entities", None)
        message["photo"] = self._photo_sizes(data)
        message.pop("caption", None)
        self._caption(media, message)
        self._apply_markup(p, message)
        message["edit_date"] = int(time.time())
        return message

    async def _m_editMessageCaption(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        message = self._target(p)
        if "photo" not in message and "document" not in message:
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        old = (message.get("caption"), message.get("reply_markup"))
        new_markup = _check_markup(p["reply_markup"]) if p.get("reply_markup") is not None else None
        if old == (p.get("caption") or None, new_markup):
            raise ApiError(400, _NOT_MODIFIED)
        message.pop("caption", None)
        self._caption(p, message)
        self._apply_markup(p, message)
        return message

    async def _m_editMessageText(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        message = self._target(p)
        if "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        text = p.get("text", "")
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        new_markup = _check_markup(p["reply_markup"]) if p.get("reply_markup") is not None else None
        if (message["text"], message.get("reply_markup")) == (text, new_markup):
            raise ApiError(400, _NOT_MODIFIED)
        _check_parse_mode(p, text)
        message["text"] = text
        self._apply_markup(p, message)
        return message

    async def _m_editMessageReplyMarkup(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        message = self._target(p)
        new_markup = _check_markup(p["reply_markup"]) if p.get("reply_markup") is not None else None
        if message.get("reply_markup") == new_markup:
            raise ApiError(400, _NOT_MODIFIED)
        self._apply_markup(p, message)
        return message

    async def _m_deleteMessage(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        state = self._chat(p)
        key = (state.chat["id"], int(p.get("message_id") or 0))
        if key not in self.messages:
            raise ApiError(400, "Bad Request: message to delete not found")
        del self.messages[key]
        self.deleted.append(key)
        return True

    async def _m_leaveChat(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        state = self._chat(p)
        self.left_chats.append(state.chat["id"])
        return True

    # ------------------------------------------------------------------ callbacks, files, members
    async def _m_answerCallbackQuery(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        query_id = p.get("callback_query_id", "")
        if query_id not in self.callbacks or self.callbacks[query_id]:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        self.callbacks[query_id] = dict(p)
        return True

    async def _m_getFile(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        stored = self.files.get(p.get("file_id", ""))
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if stored.size > GETFILE_MAX_BYTES:
            raise ApiError(400, "Bad Request: file is too big")
        return {"file_id": p["file_id"], "file_unique_id": stored.unique_id, "file_size": stored.size,
                "file_path": stored.path}

    def _member(self, state: ChatState, user_id: int) -> dict[str, Any]:
        user = self.bot_user if user_id == self.bot_user["id"] else self.users.get(user_id)
        if user is None:
            raise ApiError(400, "Bad Request: user not found")
        if user_id == state.creator:
            return {"status": "creator", "user": user, "is_anonymous": False}
        if user_id in state.admins:
            return {"status": "administrator", "user": user, **dict.fromkeys(ADMIN_RIGHTS, False),
                    "can_manage_chat": True, "can_delete_messages": True}
        return {"status": "member", "user": user}

    async def _m_getChatMember(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        state = self._chat(p)
        try:
            user_id = int(p.get("user_id", ""))
        except ValueError:
            raise ApiError(400, "Bad Request: invalid user_id specified") from None
        return self._member(state, user_id)

    async def _m_getChatAdministrators(self, p: dict[str, Any], f: dict[str, bytes]) -> Any:
        state = self._chat(p)
        ids = ([state.creator] if state.creator else []) + sorted(state.admins)
        return [self._member(state, uid) for uid in ids]


_NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply markup are "
                 "exactly the same as a current content and reply markup of the message")


def _error(exc: ApiError) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": exc.code, "description": exc.description}
    if exc.parameters:
        body["parameters"] = exc.parameters
    return web.json_response(body, status=exc.code)


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Decode PTB's encoding: form or multipart; strings raw, known JSON fields decoded (testing.md §1.2)."""
    params: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    if request.method == "POST" and request.can_read_body:
        form = await request.post()
        for name, value in form.items():
            if isinstance(value, web.FileField):
                files[name] = value.file.read()
            elif name in JSON_FIELDS:
                params[name] = json.loads(str(value))
            else:
                params[name] = str(value)
    for name, value in request.query.items():
        params.setdefault(name, json.loads(value) if name in JSON_FIELDS else value)
    return params, files


def _truthy(value: Any) -> bool:
    return str(value).lower() in {"true", "1"}


def _one_level(message: Mapping[str, Any]) -> dict[str, Any]:
    reply = dict(message)
    reply.pop("reply_to_message", None)  # Telegram never nests replies
    return reply


def _check_markup(markup: Any) -> dict[str, Any]:
    if not isinstance(markup, dict) or not isinstance(markup.get("inline_keyboard"), list):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    for row in markup["inline_keyboard"]:
        for button in row:
            if not button.get("text"):
                raise ApiError(400, "Bad Request: text buttons are unallowed in the inline keyboard")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(data.encode()) <= CALLBACK_DATA_MAX:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
    return markup


def _check_parse_mode(p: Mapping[str, Any], text: str) -> None:
    # Only the failure mode that matters (S-9): unbalanced Markdown is a 400, so no reply at all.
    mode = p.get("parse_mode")
    if mode in {"Markdown", "MarkdownV2"} and (text.count("*") % 2 or text.count("_") % 2):
        raise ApiError(400, "Bad Request: can't parse entities: Can't find end of the entity")


def _image_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a huge test image warns as a bomb; only the header is read
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Exception:
        return (512, 512)
