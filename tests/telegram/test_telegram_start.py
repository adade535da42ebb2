"""TelegramBot's lifecycle through the real PTB: start-up calls, commands menu, polling, a bad token, a second
poller (409), start-up notices, and webhook mode with the right and a wrong secret."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from bots.process.config import Settings
from bots.telegram.bot import TelegramBot
from core.errors import FatalPlatformError
from core.events import ChannelKey, Platform
from core.records import PendingNotice
from core.texts import say
from tests.fakes.fake_telegram import FakeTelegram
from tests.telegram.conftest import StartBot
from tests.telegram.telegram_support import ErrorLog, FakeServices


async def test_start_registers_commands_and_polls(tg: FakeTelegram, start_bot: StartBot) -> None:
    bot = await start_bot()
    await tg.wait_for("getUpdates")
    assert bot.ready
    methods = [c.method for c in tg.calls]
    assert methods[:5] == ["getMe", "setMyCommands", "setMyCommands", "deleteWebhook", "getUpdates"]
    names = [c["command"] for c in tg.calls_to("setMyCommands")[0].params["commands"]]
    assert names == ["imagine", "cancel", "quota", "usage", "language", "help", "start"]
    poll = tg.calls_to("getUpdates")[0].params
    assert poll["allowed_updates"] == ["message", "callback_query", "my_chat_member"]  # no edited_message
    await bot.stop()
    await bot.stop()  # idempotent
    assert not bot.ready


async def test_command_descriptions_are_localised_per_language(tg: FakeTelegram, start_bot: StartBot) -> None:
    await start_bot()
    calls = tg.calls_to("setMyCommands")
    assert [c.params.get("language_code") for c in calls] == [None, "zh"]  # once per language, default first
    english, chinese = tg.commands_by_language[""], tg.commands_by_language["zh"]
    assert [c["command"] for c in chinese] == [c["command"] for c in english]  # names are the contract's
    described = {c["command"]: c["description"] for c in english}
    assert described["imagine"] == say("en", "cmd.tg.imagine")
    for command in chinese:
        assert command["description"] == say("zh", f"cmd.tg.{command['command']}")
        assert command["description"] != described[command["command"]]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in chinese[0]["description"])


async def test_polling_confirms_updates_and_survives_a_restart(
    tg: FakeTelegram, start_bot: StartBot, fake: FakeServices
) -> None:
    bot = await start_bot()
    ann = tg.user("Ann")
    chat = tg.private_chat(ann)
    await tg.send_message(chat, ann, "/help")
    await tg.wait_for("sendMessage")
    await bot.stop()
    # PTB's last getUpdates confirms what it fetched: a new instance does not see /help again.
    assert tg.updates == []
    await start_bot()
    await tg.send_message(chat, ann, "/start")
    await tg.wait_for("sendMessage", 2)
    assert len(tg.calls_to("sendMessage")) == 2


async def test_bad_token_is_fatal_and_never_shows_the_token(
    tg: FakeTelegram, tg_settings: Callable[..., Settings], fake: FakeServices
) -> None:
    token = "999000:WRONG-token-that-must-not-leak"
    bot = TelegramBot(tg_settings(TELEGRAM_TOKEN=token), fake.services, request_timeout=5.0)
    with pytest.raises(FatalPlatformError) as caught:
        await bot.start()
    assert "TELEGRAM_TOKEN" in str(caught.value)
    assert token not in str(caught.value) and "WRONG" not in repr(caught.value.__cause__)
    assert not bot.ready
    await bot.stop()  # nothing to stop; must not raise


async def test_second_poller_is_fatal_once(tg: FakeTelegram, start_bot: StartBot, error_log: ErrorLog) -> None:
    fatal: list[str] = []
    told = asyncio.Event()

    def on_fatal(message: str) -> None:
        fatal.append(message)
        told.set()

    bot = await start_bot(on_fatal=on_fatal)
    await tg.wait_for("getUpdates")
    # Another process polls with the same token: Telegram ends our parked long poll with 409.
    url = f"{tg.base_url}{tg.token}/getUpdates"
    async with aiohttp.ClientSession() as session, session.post(url, data={"timeout": "0"}) as response:
        assert response.status == 200
    await asyncio.wait_for(told.wait(), 5)
    assert len(fatal) == 1 and "another instance is polling" in fatal[0]
    assert not bot.ready
    await bot.stop()
    assert len(fatal) == 1
    assert any("409" in r.getMessage() for r in error_log.take())  # logged for the operator (critical)


async def test_start_sends_pending_notices(tg: FakeTelegram, start_bot: StartBot, fake: FakeServices) -> None:
    group = tg.group_chat()
    key = ChannelKey(Platform.TELEGRAM, str(group["id"]), str(group["id"]))
    gone = ChannelKey(Platform.TELEGRAM, "-100999", "-100999")
    fake.notices = [
        PendingNotice(7, key, None, "Your image #3 was interrupted and not charged."),
        PendingNotice(8, gone, None, "to a chat that no longer exists"),
    ]
    await start_bot()
    sent = await tg.wait_for("sendMessage")
    assert sent.params["chat_id"] == str(group["id"])
    assert sent.params["text"] == "Your image #3 was interrupted and not charged."
    assert "parse_mode" not in sent.params
    await tg.wait_for("sendMessage", 2)
    for _ in range(50):
        if len(fake.sent_notices) == 2:
            break
        await asyncio.sleep(0)
    assert fake.sent_notices == [7, 8]  # a chat that is gone is dropped, not retried forever


# -- webhook -------------------------------------------------------------------------------------------


async def webhook_bot(
    tg_settings: Callable[..., Settings], start_bot: StartBot, hook: tuple[str, list[TelegramBot]], **kw: Any
) -> TelegramBot:
    url, holder = hook
    settings = tg_settings(EASEL_TELEGRAM_WEBHOOK_URL=url, EASEL_TELEGRAM_WEBHOOK_SECRET="s3cret-hook_ok",
                           EASEL_HTTP_PORT="0")
    started = await start_bot(settings_=settings, **kw)
    holder.append(started)
    return started


async def test_webhook_mode_sets_the_webhook_and_takes_updates(
    tg: FakeTelegram, tg_settings: Callable[..., Settings], start_bot: StartBot, fake: FakeServices,
    hook_server: tuple[str, list[TelegramBot]],
) -> None:
    bot = await webhook_bot(tg_settings, start_bot, hook_server)
    hook = tg.calls_to("setWebhook")[0].params
    assert hook["url"] == hook_server[0]
    assert hook["secret_token"] == "s3cret-hook_ok"
    assert hook["allowed_updates"] == ["message", "callback_query", "my_chat_member"]
    assert not tg.calls_to("getUpdates") and not tg.calls_to("deleteWebhook")
    assert bot.ready
    group = tg.group_chat()
    await tg.send_message(group, tg.user("Ann"), "/imagine a lighthouse")  # POSTed to the webhook
    assert tg.webhook_deliveries == [200]
    await tg.wait_for("sendPhoto")
    assert fake.requests[0].prompt == "a lighthouse"


@pytest.mark.parametrize("header", [None, "wrong-secret", "s3cret-hook_o"])
async def test_webhook_refuses_a_wrong_or_missing_secret(
    tg: FakeTelegram, tg_settings: Callable[..., Settings], start_bot: StartBot, fake: FakeServices,
    hook_server: tuple[str, list[TelegramBot]], header: str | None,
) -> None:
    await webhook_bot(tg_settings, start_bot, hook_server)
    group = tg.group_chat()
    update = {"update_id": 5, "message": {"message_id": 9, "date": 0, "chat": group,
                                          "from": tg.user("Mallory"), "text": "/imagine spoofed",
                                          "entities": [{"type": "bot_command", "offset": 0, "length": 8}]}}
    headers = {"X-Telegram-Bot-Api-Secret-Token": header} if header is not None else {}
    async with aiohttp.ClientSession() as session:
        async with session.post(hook_server[0], json=update, headers=headers) as response:
            assert response.status == 403
        # The real Telegram, with the right secret, is still heard.
        await tg.send_message(group, tg.user("Ann"), "/help")
    await tg.wait_for("sendMessage")
    assert fake.requests == []
    assert [c.params["text"] for c in tg.calls_to("sendMessage")] == ["help for telegram"]


async def test_webhook_rejects_a_body_that_is_not_an_update(
    tg: FakeTelegram, tg_settings: Callable[..., Settings], start_bot: StartBot,
    hook_server: tuple[str, list[TelegramBot]], error_log: ErrorLog,
) -> None:
    await webhook_bot(tg_settings, start_bot, hook_server)
    headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret-hook_ok"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(hook_server[0], data=b"not json", headers=headers) as response,
    ):
        assert response.status == 400
