"""End to end with the real core: PTB -> TelegramBot -> the services (SQLite ledger, round tree) -> FakeProvider,
and back out to the fake Bot API. Credits are read back through `/quota`, as a user would."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bots.process.app import Core, open_core
from bots.process.config import Settings
from bots.telegram.bot import TelegramBot
from core.errors import SafetyRefusal
from core.ports import GeneratedImage, ImageJob, ProviderEvents
from core.texts import say
from tests.fakes.fake_provider import FakeProvider, png
from tests.fakes.fake_telegram import FakeTelegram
from tests.telegram.conftest import StartBot
from tests.telegram.telegram_support import ErrorLog


@dataclass
class Rig:
    tg: FakeTelegram
    provider: FakeProvider
    settings: Settings
    start_bot: StartBot
    stack: AsyncExitStack
    core: Core | None = None
    bot: TelegramBot | None = None

    async def boot(self, **bot_kwargs: Any) -> TelegramBot:
        """(Re)start the core on the same data dir and a new TelegramBot on it."""
        self.core = await self.stack.enter_async_context(open_core(self.settings, provider=self.provider))
        self.bot = await self.start_bot(self.core.services, self.settings, **bot_kwargs)
        return self.bot

    async def restart(self) -> TelegramBot:
        assert self.bot is not None
        await self.bot.stop()
        await self.stack.aclose()  # closes the core (store, cache, provider)
        self.stack = AsyncExitStack()
        self.provider.closed = False
        return await self.boot()

    async def ask(self, chat: dict[str, Any], user: dict[str, Any], text: str, **kw: Any) -> str:
        """Send a command and return Easel's text answer to it."""
        before = len(self.tg.calls_to("sendMessage"))
        await self.tg.send_message(chat, user, text, **kw)
        sent = await self.tg.wait_for("sendMessage", before + 1)
        return str(sent.params["text"])

    async def image(self, chat: dict[str, Any], user: dict[str, Any], text: str, **kw: Any) -> dict[str, Any]:
        """Send a prompt and return the photo message Easel answered with."""
        before = len(self.tg.calls_to("sendPhoto"))
        await self.tg.send_message(chat, user, text, **kw)
        await self.tg.wait_for("sendPhoto", before + 1)
        assert self.bot is not None
        await self.bot.idle()  # the round is committed, its message known: replies to it now find it
        return self.tg.sent_messages("sendPhoto")[-1]


@pytest.fixture
async def rig(
    tg: FakeTelegram, tg_settings: Callable[..., Settings], start_bot: StartBot
) -> AsyncIterator[Rig]:
    stack = AsyncExitStack()
    rig = Rig(tg, FakeProvider(), tg_settings(EASEL_SHUTDOWN_GRACE="1"), start_bot, stack)
    yield rig
    if rig.bot is not None:
        await rig.bot.stop()
    await rig.stack.aclose()


async def test_generate_then_refine_by_reply_and_branch(rig: Rig) -> None:
    await rig.boot()
    tg = rig.tg
    ann, bob = tg.user("Ann", "ann"), tg.user("Bob")
    group = tg.group_chat()
    first = await rig.image(group, ann, "/imagine a red fox")
    assert first["caption"] == "#1 · a red fox · 9 credits left today"
    assert first["reply_markup"]["inline_keyboard"][0][0]["text"] == "Reroll"
    assert rig.provider.jobs[0].prompt == "a red fox" and rig.provider.jobs[0].parent is None

    second = await rig.image(group, bob, "make it blue", reply_to=first)  # a plain reply: an edit round
    assert second["caption"].startswith("#2 (from #1) · make it blue")
    job = rig.provider.jobs[1]
    assert job.parent is not None and job.parent.response_id == "resp_1"

    # Replying to the first image again branches from it, not from the latest round.
    third = await rig.image(group, ann, "/imagine make it green", reply_to=first)
    assert third["caption"].startswith("#3 (from #1)")
    assert rig.provider.jobs[2].parent is not None and rig.provider.jobs[2].parent.response_id == "resp_1"
    fourth = await rig.image(group, bob, "smaller", reply_to=second)
    assert fourth["caption"].startswith("#4 (from #2)")
    # Each edit is charged to whoever asked: Ann 2 images, Bob 2.
    assert "8 credits left today" in await rig.ask(group, ann, "/quota")
    assert "8 credits left today" in await rig.ask(group, bob, "/quota")


async def test_a_reply_right_after_the_image_is_an_edit_round(rig: Rig) -> None:
    await rig.boot()
    tg = rig.tg
    ann = tg.user("Ann")
    group = tg.group_chat()
    await tg.send_message(group, ann, "/imagine a tin robot")
    await tg.wait_for("sendPhoto")
    image = tg.sent_messages("sendPhoto")[0]  # replied to at once: the core may not have recorded it yet
    await tg.send_message(group, ann, "make it rusty", reply_to=image)
    await tg.wait_for("sendPhoto", 2)
    assert tg.sent_messages("sendPhoto")[1]["caption"].startswith("#2 (from #1) · make it rusty")
    assert rig.provider.jobs[1].parent is not None


async def test_private_chat_text_and_photo_input(rig: Rig) -> None:
    await rig.boot()
    tg = rig.tg
    ann = tg.user("Ann")
    chat = tg.private_chat(ann)
    made = await rig.image(chat, ann, "a quiet harbour")
    assert made["caption"].startswith("#1 · a quiet harbour")
    await rig.image(chat, ann, "/imagine add a hat", photo=png(120, 80, (5, 6, 7)))
    job = rig.provider.jobs[1]
    assert len(job.inputs) == 1 and job.inputs[0].startswith(b"\x89PNG")
    assert job.parent is None
    # A reply to someone's photo (here: her own) with /imagine edits that photo too.
    photo = await tg.send_message(chat, ann, None, photo=png(60, 60, (9, 9, 9)))
    await rig.image(chat, ann, "/imagine sepia", reply_to=photo)
    assert len(rig.provider.jobs[2].inputs) == 1


async def test_buttons_work_before_and_after_a_restart(rig: Rig) -> None:
    await rig.boot()
    tg = rig.tg
    ann, bob = tg.user("Ann"), tg.user("Bob")
    group = tg.group_chat()
    image = await rig.image(group, ann, "/imagine a paper crane")
    data = image["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    await tg.press_button(bob, image, data)
    await tg.wait_for("sendPhoto", 2)
    assert [j.prompt for j in rig.provider.jobs] == ["a paper crane", "a paper crane"]

    await rig.restart()
    await tg.press_button(bob, image, data)  # the old message's button, new process
    await tg.wait_for("answerCallbackQuery", 2)
    reroll = await tg.wait_for("sendPhoto", 3)
    assert reroll.params["reply_parameters"]["message_id"] == image["message_id"]
    assert [j.prompt for j in rig.provider.jobs][-1] == "a paper crane"
    assert "8 credits left today" in await rig.ask(group, bob, "/quota")  # rerolls are charged to the presser
    assert "9 credits left today" in await rig.ask(group, ann, "/quota")


async def test_quota_verbs_by_moderator_and_member(rig: Rig) -> None:
    await rig.boot()
    tg = rig.tg
    mod, ann = tg.user("Mod"), tg.user("Ann", "ann")
    group = tg.group_chat(admins=[mod])
    hello = await tg.send_message(group, ann, "hello")
    assert "10 credits left today" in await rig.ask(group, ann, "/quota")

    refused = await rig.ask(group, ann, "/quota grant 50 @ann")
    assert refused.startswith("Only moderators can do that here")
    assert "10 credits left today" in await rig.ask(group, ann, "/quota")

    assert "2 credits left today" in await rig.ask(group, mod, "/quota set 2", reply_to=hello)
    assert "5 credits left today" in await rig.ask(group, mod, "/quota grant 3 @ann")
    assert "5 credits left today" in await rig.ask(group, mod, "/quota @ann")
    assert "5 credits left today" in await rig.ask(group, ann, "/quota")
    assert (await rig.ask(group, ann, "/quota @ann")).startswith("You have 5")  # oneself needs no moderator

    assert "can no longer make images" in await rig.ask(group, mod, f"/quota ban {ann['id']}")
    banned = await rig.ask(group, ann, "/imagine a forbidden fruit")
    assert "block" in banned.lower() or "ban" in banned.lower()
    assert "can make images here again" in await rig.ask(group, mod, "/quota unban @ann")

    assert "4 credits a day" in await rig.ask(group, mod, "/quota default 4")
    newcomer = tg.user("Newcomer")
    assert "4 credits left today" in await rig.ask(group, newcomer, "/quota")
    assert rig.provider.jobs == []


async def test_anonymous_admin_moderates(rig: Rig) -> None:
    await rig.boot()
    tg = rig.tg
    group = tg.group_chat()
    anonymous = tg.user("Group", "GroupAnonymousBot", user_id=1087968824, is_bot=True)
    answer = await rig.ask(group, anonymous, "/quota default 3", sender_chat=group)
    assert "3 credits a day" in answer
    assert "3 credits left today" in await rig.ask(group, tg.user("Ann"), "/quota")
    # The same shared bot id posting as a linked channel is nobody.
    channel = {"id": -100555, "type": "channel", "title": "Linked"}
    await tg.send_message(group, anonymous, "/quota default 99", sender_chat=channel)
    assert "3 credits left today" in await rig.ask(group, tg.user("Cy"), "/quota")


async def test_refusals_charge_nothing(rig: Rig) -> None:
    await rig.boot()
    tg = rig.tg
    mod, ann = tg.user("Mod"), tg.user("Ann", "ann")
    group = tg.group_chat(admins=[mod])
    rig.provider.fail_next(SafetyRefusal("The image service's safety system declined this request."))
    refusal = await rig.ask(group, ann, "/imagine something risky")
    assert refusal == "The image service's safety system declined this request."
    assert "10 credits left today" in await rig.ask(group, ann, "/quota")

    assert "0 credits left today" in await rig.ask(group, mod, "/quota set 0 @ann")
    over = await rig.ask(group, ann, "/imagine one more")
    assert "credit" in over.lower() and "00:00" in over
    assert len(rig.provider.jobs) == 1  # over quota: the provider was never called

    empty = await rig.ask(group, ann, "/imagine")
    assert empty == "Tell me what to draw, e.g. /imagine a red fox in the snow"
    assert not tg.calls_to("sendPhoto")


async def test_same_update_three_times_is_one_round(rig: Rig) -> None:
    await rig.boot()
    tg = rig.tg
    ann = tg.user("Ann")
    group = tg.group_chat()
    await tg.send_message(group, ann, "/imagine only once")
    update = tg.last_update
    await tg.wait_for("sendPhoto")
    await tg.push_update(update)
    await tg.push_update(update)
    assert "9 credits left today" in await rig.ask(group, ann, "/quota")
    assert len(rig.provider.jobs) == 1
    assert len(tg.calls_to("sendPhoto")) == 1


async def test_flood_wait_then_delivered_and_charged_once(rig: Rig) -> None:
    await rig.boot()
    tg = rig.tg
    tg.flood_next("sendPhoto", retry_after=0.05)
    ann = tg.user("Ann")
    group = tg.group_chat()
    await tg.send_message(group, ann, "/imagine under pressure")
    await tg.wait_for("sendPhoto", 2)
    assert [t.status for t in tg.timeline if t.method == "sendPhoto"] == [429, 200]
    assert "9 credits left today" in await rig.ask(group, ann, "/quota")


async def test_delivery_failure_is_refunded(rig: Rig, error_log: ErrorLog) -> None:
    await rig.boot()
    tg = rig.tg
    ann = tg.user("Ann")
    group = tg.group_chat()
    tg.fail_next("sendPhoto", 403, "Forbidden: bot was kicked from the supergroup chat")
    await tg.send_message(group, ann, "/imagine never seen")
    await tg.wait_for("sendPhoto")
    assert rig.bot is not None
    await rig.bot.idle()
    assert "10 credits left today" in await rig.ask(group, ann, "/quota")
    assert [r.getMessage() for r in error_log.take()] == ["round 1 failed unexpectedly"]  # the core logs it


async def test_oversized_input_is_refused_before_getfile(rig: Rig) -> None:
    await rig.boot()
    tg = rig.tg
    ann = tg.user("Ann")
    group = tg.group_chat()
    answer = await rig.ask(group, ann, "/imagine sharpen", photo=png(10, 10), file_size=25_000_000)
    assert answer == "That image is 25.0 MB; the most I can take is 20 MB. Send a smaller one."
    assert tg.calls_to("getFile") == [] and rig.provider.jobs == []
    assert "10 credits left today" in await rig.ask(group, ann, "/quota")


class HugeProvider(FakeProvider):
    """Answers with an image Telegram would refuse as a photo (width + height > 10000)."""

    async def create(self, job: ImageJob, events: ProviderEvents) -> GeneratedImage:
        self.jobs.append(job)
        return GeneratedImage(image=png(9800, 300, (10, 120, 200)), response_id="resp_huge")


async def test_oversized_output_is_reencoded(rig: Rig) -> None:
    rig.provider = HugeProvider()
    await rig.boot()
    tg = rig.tg
    ann = tg.user("Ann")
    group = tg.group_chat()
    image = await rig.image(group, ann, "/imagine a panorama")
    assert sum((image["photo"][-1]["width"], image["photo"][-1]["height"])) <= 10_000
    assert [t.status for t in tg.timeline if t.method == "sendPhoto"] == [200]
    assert "9 credits left today" in await rig.ask(group, ann, "/quota")


async def test_partial_previews_with_the_real_core(rig: Rig) -> None:
    rig.provider.partials = 2
    rig.provider.partial_delay = 0.05  # previews a stream apart, so each is shown (the latest wins otherwise)
    rig.provider.gate = asyncio.Event()
    await rig.boot(preview_interval=0)
    tg = rig.tg
    ann = tg.user("Ann")
    group = tg.group_chat()
    await tg.send_message(group, ann, "/imagine a slow sunrise")
    await tg.wait_for("sendChatAction")
    rig.provider.gate.set()
    await tg.wait_for("editMessageMedia")  # preview 1 was a new photo, preview 2 edits it
    await tg.wait_for("editMessageMedia", 2)  # and the result replaces the preview
    await asyncio.wait_for(rig.bot.idle() if rig.bot else asyncio.sleep(0), 5)
    [final] = tg.sent_messages("sendPhoto")
    assert final["caption"].startswith("#1 · a slow sunrise") and "Reroll" in str(final["reply_markup"])
    assert tg.calls_to("deleteMessage") == []


# -- webhook with the real core --------------------------------------------------------------------------


@pytest.fixture
async def hook() -> AsyncIterator[tuple[str, list[TelegramBot]]]:
    holder: list[TelegramBot] = []

    async def route(request: web.Request) -> web.StreamResponse:
        if not holder:
            return web.Response(status=503)
        return await holder[0].handle_webhook(request)

    app = web.Application()
    app.router.add_post("/telegram/webhook", route)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/telegram/webhook", holder
    await runner.cleanup()


async def test_webhook_with_the_real_core(
    tg: FakeTelegram, tg_settings: Callable[..., Settings], start_bot: StartBot,
    hook: tuple[str, list[TelegramBot]],
) -> None:
    url, holder = hook
    settings = tg_settings(EASEL_TELEGRAM_WEBHOOK_URL=url, EASEL_TELEGRAM_WEBHOOK_SECRET="right-secret",
                           EASEL_HTTP_PORT="0")
    provider = FakeProvider()
    async with open_core(settings, provider=provider) as core:
        bot = await start_bot(core.services, settings)
        holder.append(bot)
        group = tg.group_chat()
        ann = tg.user("Ann")
        await tg.send_message(group, ann, "/imagine via webhook")
        await tg.wait_for("sendPhoto")
        forged = dict(tg.last_update)
        forged["update_id"] += 1
        forged["message"] = {**forged["message"], "message_id": 424242, "text": "/imagine forged"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, json=forged, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}) as response,
        ):
            assert response.status == 403
        await tg.send_message(group, ann, "/quota")
        answer = await tg.wait_for("sendMessage")
        assert "9 credits left today" in answer.params["text"]
        assert [j.prompt for j in provider.jobs] == ["via webhook"]
        assert tg.webhook_deliveries == [200, 200]
        await bot.stop()


async def test_group_upgraded_to_supergroup_keeps_quotas_and_rounds(rig: Rig) -> None:
    await rig.boot()
    tg = rig.tg
    owner, ann = tg.user("Owner"), tg.user("Ann")
    group = tg.group_chat(creator=owner, supergroup=False)
    assert "3 credits a day" in await rig.ask(group, owner, "/quota default 3")
    await rig.image(group, ann, "/imagine before the move")
    supergroup = await tg.migrate(group, owner)
    await rig.ask(supergroup, owner, "/help")  # a sentinel: updates are handled in order
    assert rig.bot is not None
    await rig.bot.idle()
    assert "2 credits left today" in await rig.ask(supergroup, ann, "/quota")


async def test_album_with_the_real_core_and_too_many_photos(rig: Rig) -> None:
    released = asyncio.Event()

    async def window() -> None:
        await released.wait()

    bot = await rig.boot(album_window=window)
    tg = rig.tg
    ann = tg.user("Ann")
    chat = tg.private_chat(ann)

    async def album(group: str, count: int, caption: str) -> None:
        released.clear()
        for index in range(count):
            await tg.send_message(chat, ann, caption if index == 0 else None, photo=png(30 + index, 30),
                                  extra={"media_group_id": group})
        await rig.ask(chat, ann, "/quota")  # every item has reached the collector
        released.set()

    await album("g1", 3, "/imagine one poster from these")
    await tg.wait_for("sendPhoto")
    await asyncio.wait_for(bot.idle(), 5)
    job = rig.provider.jobs[0]
    assert job.prompt == "one poster from these" and len(job.inputs) == 3
    before = await rig.ask(chat, ann, "/quota")

    await album("g2", 5, "/imagine too many")
    refusal = await tg.wait_for("sendMessage", 4)
    assert refusal.params["text"] == say("en", "round.too_many_images", count=4)
    assert len(rig.provider.jobs) == 1  # refused before anything was spent
    assert await rig.ask(chat, ann, "/quota") == before


ENGLISH_WORD = re.compile(r"[A-Za-z]{2,}")


def english_words(texts: list[str]) -> list[str]:
    """Latin words a Chinese-speaking member would read, besides the brand name (numbers are digits)."""
    return [w for t in texts for w in ENGLISH_WORD.findall(t) if w != "Easel"]


async def test_a_chinese_speaking_member_sees_the_whole_round_in_chinese(
    tg: FakeTelegram, tg_settings: Callable[..., Settings], start_bot: StartBot
) -> None:
    """Queued, working, preview, result caption and buttons for `language_code` zh-hans, through PTB and the real
    core, while an English-speaking member is answered in English at the same time."""
    gate = asyncio.Event()
    provider = FakeProvider(partials=1, gate=gate)
    async with AsyncExitStack() as stack:
        settings = tg_settings(EASEL_PROVIDER_CONCURRENCY="1", EASEL_SHUTDOWN_GRACE="1")
        bot = await Rig(tg, provider, settings, start_bot, stack).boot(preview_interval=0)
        bob, li = tg.user("Bob"), {**tg.user("Li"), "language_code": "zh-hans"}
        english, chinese = tg.group_chat("Painters"), tg.group_chat("画室")
        await tg.send_message(english, bob, "/imagine a red fox")
        await tg.wait_for("sendChatAction")  # Bob's round holds the only provider slot
        await tg.send_message(chinese, li, "/imagine 雪地里的一只红狐狸")
        await tg.wait_for("sendMessage")  # Li waits behind it
        gate.set()
        await tg.wait_for("editMessageMedia", 2)  # each round: its preview becomes its result
        await asyncio.wait_for(bot.idle(), 5)
        await bot.stop()

    def shown_in(chat: dict[str, Any]) -> list[str]:
        shown: list[str] = []
        for call in tg.calls:
            params = call.params
            if params.get("chat_id") not in (chat["id"], str(chat["id"])):
                continue
            shown += [str(params[k]) for k in ("text", "caption") if params.get(k)]
            media = params.get("media")
            if isinstance(media, dict) and media.get("caption"):
                shown.append(str(media["caption"]))
            markup = params.get("reply_markup")
            if isinstance(markup, dict):
                shown += [str(b["text"]) for row in markup.get("inline_keyboard", []) for b in row]
        return shown

    seen = shown_in(chinese)
    assert say("zh", "progress.next") in seen  # queued
    assert say("zh", "progress.working") in seen  # running
    assert say("zh", "progress.preview") in seen  # the preview
    assert say("zh", "button.cancel") in seen and say("zh", "button.reroll") in seen
    assert any("雪地里的一只红狐狸 · " in s for s in seen), seen  # the result's caption
    assert english_words(seen) == [], seen
    assert any(s.startswith("#1 · a red fox · 9 credits left today") for s in shown_in(english))
    assert "Reroll" in shown_in(english)
