"""The durable inbox through the real PTB and FakeTelegram: a polled batch is confirmed to Telegram (the next
getUpdates offset) only after it is stored; what a previous run left is replayed once at start-up; the
webhook stores before it answers 200; polling errors back off, a revoked token is fatal; stop() is quick and
confirms what was stored."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bots.process.app import Core, open_core
from bots.process.config import Settings
from bots.telegram.bot import BAD_TOKEN_MESSAGE, TelegramBot
from core.events import Platform
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.fake_telegram import FakeTelegram
from tests.telegram.conftest import StartBot
from tests.telegram.telegram_support import ErrorLog, FakeServices

TG = Platform.TELEGRAM


def offsets(tg: FakeTelegram) -> list[int | None]:
    """The offset of each getUpdates call, in order (None: no offset, nothing confirmed)."""
    return [int(c.params["offset"]) if "offset" in c.params else None for c in tg.calls_to("getUpdates")]


async def test_a_batch_is_confirmed_only_after_it_is_stored(
    tg: FakeTelegram, start_bot: StartBot, fake: FakeServices
) -> None:
    fake.inbox_gate = asyncio.Event()  # a slow database: inbox_put waits
    bot = await start_bot()
    await tg.wait_for("getUpdates")
    ann = tg.user("Ann")
    await tg.send_message(tg.private_chat(ann), ann, "/help")
    update_id = tg.last_update["update_id"]
    # The parked poll returned the update, but it is not stored yet: no getUpdates may confirm it meanwhile.
    with pytest.raises(AssertionError, match="timed out"):
        await tg.wait_for("getUpdates", 2, timeout=0.3)
    assert tg.calls_to("sendMessage") == [] and fake.inbox_batches == []
    fake.inbox_gate.set()
    confirm = await tg.wait_for("getUpdates", 2)
    assert confirm.params["offset"] == str(update_id + 1)
    assert fake.inbox_batches == [[str(update_id)]]
    await tg.wait_for("sendMessage")
    await bot.idle()
    assert fake.inbox == {}  # answered: marked done


async def test_a_batch_the_database_refused_is_fetched_again_and_handled_once(
    tg: FakeTelegram, start_bot: StartBot, fake: FakeServices
) -> None:
    fake.inbox_failures = 1  # the first inbox_put raises (a locked database)
    bot = await start_bot(poll_retry=0.05)
    await tg.wait_for("getUpdates")
    ann = tg.user("Ann")
    group = tg.group_chat()
    await tg.send_message(group, ann, "/imagine a lighthouse")
    update_id = tg.last_update["update_id"]
    await tg.wait_for("sendPhoto")
    await bot.idle()
    # Poll 1 fetched it (no offset), the store failed, poll 2 fetched it again (still no offset: not
    # confirmed), poll 3 confirmed it once it was stored.
    assert offsets(tg)[:3] == [None, None, update_id + 1]
    assert len(fake.requests) == 1 and fake.inbox_batches == [[str(update_id)]]
    assert fake.inbox == {}


@pytest.fixture
async def real_core(tg_settings: Callable[..., Settings]) -> AsyncIterator[tuple[Core, FakeProvider]]:
    provider = FakeProvider()
    async with open_core(tg_settings(), provider=provider) as core:
        yield core, provider


async def test_replay_on_start_runs_a_pending_update_exactly_once(
    tg: FakeTelegram, start_bot: StartBot, real_core: tuple[Core, FakeProvider]
) -> None:
    core, provider = real_core
    group, ann = tg.group_chat(), tg.user("Ann")
    # A previous run stored this update and died before confirming it: it is both in the inbox and still
    # pending at Telegram (which sends it again).
    await tg.send_message(group, ann, "/imagine a lighthouse at dusk")
    update = tg.last_update
    await core.services.inbox.put(TG, [(str(update["update_id"]), json.dumps(update))])
    bot = await start_bot(core.services)
    await tg.wait_for("sendPhoto")
    await tg.wait_for("getUpdates", 2)  # the redelivered copy was fetched and confirmed
    await bot.idle()
    assert len(provider.jobs) == 1 and len(tg.calls_to("sendPhoto")) == 1
    assert await core.services.inbox.pending(TG) == []
    await bot.stop()
    assert tg.updates == []

    # Died again after the round but before marking the update done: replayed once more, and the core's
    # idempotency key makes it a no-op (no second image, no second charge, no message).
    await core.services.inbox.put(TG, [(str(update["update_id"]), json.dumps(update))])
    sent_before = len(tg.calls)
    bot = await start_bot(core.services)
    await bot.idle()
    assert len(provider.jobs) == 1
    assert [c.method for c in tg.calls[sent_before:] if c.method.startswith("send")] == []
    assert await core.services.inbox.pending(TG) == []


async def test_a_replayed_update_redelivered_meanwhile_is_handled_once(
    tg: FakeTelegram, start_bot: StartBot, fake: FakeServices
) -> None:
    # FakeServices does not dedupe: this checks that the adapter itself does not feed the copy of an update it is
    # still handling.
    fake.gate = asyncio.Event()
    group, ann = tg.group_chat(), tg.user("Ann")
    await tg.send_message(group, ann, "/imagine a fox")
    update = tg.last_update
    fake.inbox[str(update["update_id"])] = json.dumps(update)
    bot = await start_bot()
    await tg.wait_for("getUpdates", 2)  # the redelivered copy was fetched, stored and confirmed
    fake.gate.set()
    await tg.wait_for("sendPhoto")
    await bot.idle()
    assert len(fake.requests) == 1 and len(tg.calls_to("sendPhoto")) == 1
    assert fake.inbox == {}


async def test_stop_is_quick_and_confirms_what_was_stored(
    tg: FakeTelegram, start_bot: StartBot, fake: FakeServices
) -> None:
    bot = await start_bot()  # the default 25 s long poll
    ann = tg.user("Ann")
    await tg.send_message(tg.private_chat(ann), ann, "/help")
    update_id = tg.last_update["update_id"]
    await tg.wait_for("sendMessage")
    await tg.wait_for("getUpdates", 2)  # parked again, with the confirming offset
    started = time.monotonic()
    await bot.stop()
    assert time.monotonic() - started < 1.0
    last = tg.calls_to("getUpdates")[-1].params
    assert last["offset"] == str(update_id + 1) and last["timeout"] == "0"
    assert tg.updates == [] and fake.inbox == {}
    assert not bot.ready


async def test_stop_before_anything_arrived_does_not_confirm(tg: FakeTelegram, start_bot: StartBot) -> None:
    bot = await start_bot()
    await tg.wait_for("getUpdates")
    await bot.stop()
    assert len(tg.calls_to("getUpdates")) == 1  # nothing accepted: nothing to confirm


async def test_polling_errors_back_off_then_recover(
    tg: FakeTelegram, start_bot: StartBot, fake: FakeServices
) -> None:
    await start_bot(poll_retry=0.05)
    await tg.wait_for("getUpdates")
    for _ in range(2):
        tg.fail_next("getUpdates", 502, "Bad Gateway")
    ann = tg.user("Ann")
    await tg.send_message(tg.private_chat(ann), ann, "/help")  # wakes the parked poll; the next two fail
    await tg.wait_for("sendMessage")
    await tg.wait_for("getUpdates", 4)
    assert offsets(tg)[1:4] == [tg.last_update["update_id"] + 1] * 3  # the stored update stays confirmed
    polls = [t for t in tg.timeline if t.method == "getUpdates"]
    failed = [i for i, t in enumerate(polls) if t.status == 502]
    assert len(failed) == 2
    first, second = failed
    after_first = polls[first + 1].at - polls[first].at
    after_second = polls[second + 1].at - polls[second].at
    assert after_first >= 0.05 and after_second >= 0.05 * 1.5  # back-off grows


async def test_a_revoked_token_while_polling_is_fatal_once(
    tg: FakeTelegram, start_bot: StartBot, error_log: ErrorLog
) -> None:
    fatal: list[str] = []
    told = asyncio.Event()

    def on_fatal(message: str) -> None:
        fatal.append(message)
        told.set()

    bot = await start_bot(on_fatal=on_fatal)
    await tg.wait_for("getUpdates")
    tg.fail_next("getUpdates", 401, "Unauthorized")
    ann = tg.user("Ann")
    await tg.send_message(tg.private_chat(ann), ann, "/help")  # wakes the parked poll; the next one is refused
    await asyncio.wait_for(told.wait(), 5)
    assert fatal == [BAD_TOKEN_MESSAGE] and not bot.ready
    polls = len(tg.calls_to("getUpdates"))
    await bot.stop()
    assert len(tg.calls_to("getUpdates")) == polls  # polling stopped; no confirming call after a fatal error
    assert [r.getMessage() for r in error_log.take()] == [BAD_TOKEN_MESSAGE]  # critical, for the operator


# -- webhook -------------------------------------------------------------------------------------------


async def test_webhook_stores_before_answering_and_refuses_when_it_cannot(
    tg: FakeTelegram, tg_settings: Callable[..., Settings], start_bot: StartBot, fake: FakeServices,
    hook_server: tuple[str, list[TelegramBot]],
) -> None:
    url, holder = hook_server
    settings = tg_settings(EASEL_TELEGRAM_WEBHOOK_URL=url, EASEL_TELEGRAM_WEBHOOK_SECRET="s3cret-hook_ok",
                           EASEL_HTTP_PORT="0")
    bot = await start_bot(settings_=settings)
    holder.append(bot)
    group, ann = tg.group_chat(), tg.user("Ann")
    fake.inbox_failures = 1
    await tg.send_message(group, ann, "/imagine a lighthouse")
    assert tg.webhook_deliveries == [503]  # not stored: Telegram keeps it and sends it again
    assert fake.requests == []
    update: dict[str, Any] = tg.last_update
    await tg.push_update(update)  # Telegram's redelivery
    assert tg.webhook_deliveries == [503, 200]
    assert fake.inbox_batches == [[str(update["update_id"])]]
    await tg.wait_for("sendPhoto")
    await bot.idle()
    assert [r.prompt for r in fake.requests] == ["a lighthouse"]
    assert fake.inbox == {}  # handled: marked done


async def test_webhook_mode_replays_the_inbox_at_start(
    tg: FakeTelegram, tg_settings: Callable[..., Settings], start_bot: StartBot, fake: FakeServices,
    hook_server: tuple[str, list[TelegramBot]],
) -> None:
    url, holder = hook_server
    group, ann = tg.group_chat(), tg.user("Ann")
    await tg.send_message(group, ann, "/help")  # no webhook yet: queued at the fake, never fetched
    update = tg.last_update
    fake.inbox[str(update["update_id"])] = json.dumps(update)
    settings = tg_settings(EASEL_TELEGRAM_WEBHOOK_URL=url, EASEL_TELEGRAM_WEBHOOK_SECRET="s3cret-hook_ok",
                           EASEL_HTTP_PORT="0")
    bot = await start_bot(settings_=settings)
    holder.append(bot)
    answer = await tg.wait_for("sendMessage")
    await bot.idle()
    assert answer.params["text"] == "help for telegram" and not tg.calls_to("getUpdates")
    assert fake.inbox == {}
