"""Issue 12, honest progress on Telegram: while the model thinks, the progress message shows the round's stage
and the time since the request, edited at a platform-safe pace (never more often than every 10 s per message,
at most one ticker edit per 6 s across a group), through the real python-telegram-bot against FakeTelegram.

Time is a fake clock (the pacer's and the flood gate's); the ticker's sleeps return after a millisecond, so a
round of minutes runs in well under a second, and every decision is taken against the fake clock. The shown
elapsed time (m:ss) is the fake time of each edit."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from itertools import pairwise

import pytest

from bots.telegram.bot import TelegramBot
from bots.telegram.view import elapsed_text
from core.events import RoundRequest
from core.outcomes import Button, Preview, Refusal, RoundInfo, RoundResult, RoundView, Stage
from tests.fakes.fake_provider import png
from tests.fakes.fake_telegram import FakeTelegram
from tests.telegram.telegram_support import FakeServices

T0 = 1000.0
PROGRESS = ("sendMessage", "editMessageText")
ELAPSED = re.compile(r"(\d+):(\d\d)")


class FakeClock:
    """The pacer's clock: `now` moves only when the test says so."""

    def __init__(self, tg: FakeTelegram) -> None:
        self.now = T0
        self.tg = tg

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0.001)  # the ticker looks at the fake clock again almost at once

    async def at(self, t: float) -> None:
        """Wait until the fake time reaches T0 + t (a script's step)."""
        while self.now < T0 + t:
            await asyncio.sleep(0.001)

    async def run_to(self, t: float, step: float = 1.0) -> None:
        """Move the clock to T0 + t, a second at a time, letting the bot act at each step: the next step
        comes only once the fake has seen no new request for a few milliseconds (a loaded machine is slow
        to send, and the fake time must not run ahead of it)."""
        while self.now < T0 + t:
            self.now = min(self.now + step, T0 + t)
            await self.quiet()

    async def quiet(self, checks: int = 3) -> None:
        seen, stable = -1, 0
        while stable < checks:
            await asyncio.sleep(0.003)
            count = len(self.tg.calls)
            stable = stable + 1 if count == seen else 0
            seen = count


def install(bot: TelegramBot, tg: FakeTelegram) -> FakeClock:
    clock = FakeClock(tg)
    bot.pacer.clock = clock
    bot.pacer.sleep = clock.sleep
    bot.pacer.gate.clock = clock
    return clock


def progress(tg: FakeTelegram, chat_id: int) -> list[tuple[str, str]]:
    """(method, text) of the successful text sends and edits to the chat, in order."""
    calls = [c for c in tg.calls if c.method in PROGRESS and str(c.params.get("chat_id")) == str(chat_id)]
    statuses = [t.status for t in tg.timeline if t.chat_id == str(chat_id) and t.method in PROGRESS]
    return [(c.method, str(c.params["text"])) for c, status in zip(calls, statuses, strict=True) if status == 200]


def seconds(text: str) -> int:
    match = ELAPSED.search(text)
    assert match is not None, text
    return int(match[1]) * 60 + int(match[2])


def result(number: int = 1) -> RoundResult:
    return RoundResult(round_id=number, number=number, image=png(64, 48), width=64, height=48,
                       caption=f"#{number} · done", buttons=(Button("Reroll", f"reroll:{number}"),))


Script = Callable[[RoundView], Awaitable[None]]


def scripted(fake: FakeServices, script: Script, lang: str = "en") -> None:
    async def on_submit(request: RoundRequest, view: RoundView) -> None:
        number = len(fake.requests)
        await view.begin(RoundInfo(number, number, lang, Button("Cancel", f"cancel:{number}")))
        await script(view)

    fake.on_submit = on_submit


def cancel_shown(call_params: dict[str, object]) -> bool:
    return "'Cancel'" in str(call_params.get("reply_markup"))


async def test_a_long_round_shows_its_stage_and_elapsed_time_every_10_s(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    clock = install(bot, tg)

    async def script(view: RoundView) -> None:
        await view.queued(2)
        await clock.at(20)
        await view.started()
        await view.stage(Stage.THINKING)
        await clock.at(70)
        await view.stage(Stage.DRAWING)
        await clock.at(100)
        await view.deliver(result())

    scripted(fake, script)
    chat = tg.private_chat(ann := tg.user("Ann"))
    await tg.send_message(chat, ann, "a lighthouse in a storm")
    await tg.wait_for("sendMessage")
    await clock.run_to(100)
    await fake.wait_finished()
    await clock.run_to(160)  # after the result: the ticker is gone
    await asyncio.wait_for(bot.idle(), 5)

    shown = progress(tg, chat["id"])
    assert shown[0] == ("sendMessage", "Queued: 1 ahead of you.")  # at once, without elapsed time
    ticks = [text for method, text in shown[1:]]
    assert all(method == "editMessageText" for method, _ in shown[1:])
    assert ticks[0].startswith("Queued for 0:1") and ticks[0].endswith(": 1 request ahead of you.")
    assert 15 <= seconds(ticks[0]) < 18
    assert "Working on it…" not in ticks  # the ticker had taken over: the stage shows at its next edit
    stages = [text.split("…")[0].split(" for")[0] for text in ticks]
    assert stages == sorted(stages, key=["Queued", "Thinking", "Drawing"].index)  # queued, thinking, drawing
    assert {"Queued", "Thinking", "Drawing"} == set(stages)
    times = [seconds(text) for text in ticks]
    gaps = [b - a for a, b in pairwise(times)]
    assert all(gap >= 10 for gap in gaps), times  # never more often than every 10 s
    assert all(gap <= 13 for gap in gaps), times  # and it keeps going (every 10 s while young)
    first_thinking = next(t for t, s in zip(times, stages, strict=True) if s == "Thinking")
    first_drawing = next(t for t, s in zip(times, stages, strict=True) if s == "Drawing")
    assert 25 <= first_thinking <= 28 and 70 <= first_drawing <= 80  # a new stage shows at the next allowed edit
    assert times[-1] < 100  # nothing after delivery
    for call in tg.calls_to("editMessageText"):
        assert cancel_shown(call.params)  # Cancel stays while the round runs
    (media,) = tg.calls_to("editMessageMedia")  # the progress message became the result
    assert "Cancel" not in str(media.params["reply_markup"])
    last_media = max(i for i, c in enumerate(tg.calls) if c.method == "editMessageMedia")
    assert not [c.method for c in tg.calls[last_media:] if c.method in PROGRESS]  # the ticker stopped


@pytest.mark.parametrize("waited", [False, True], ids=["no-wait", "waited"])
@pytest.mark.parametrize("group", [False, True], ids=["private", "group"])
async def test_a_quick_round_gets_no_ticker_edits(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices, group: bool, waited: bool
) -> None:
    clock = install(bot, tg)

    async def script(view: RoundView) -> None:
        if waited:
            await view.queued(3)
        await view.started()
        await view.stage(Stage.THINKING)
        await clock.at(12)  # 12 s: under the ticker's 15 s
        await view.stage(Stage.DRAWING)
        await view.deliver(result())

    scripted(fake, script)
    ann = tg.user("Ann")
    chat = tg.group_chat() if group else tg.private_chat(ann)
    await tg.send_message(chat, ann, "/imagine a quick sketch")
    if waited:
        await tg.wait_for("sendMessage")
    await clock.run_to(12)
    await fake.wait_finished()
    await clock.run_to(60)
    await asyncio.wait_for(bot.idle(), 5)
    calls = [t.method for t in tg.timeline if t.chat_id == str(chat["id"]) and t.method != "sendChatAction"]
    if waited:  # the waiting message, "working", the result into it
        assert calls == ["sendMessage", "editMessageText", "editMessageMedia"], calls
        assert [c.params["text"] for c in tg.calls_to("editMessageText")] == ["Working on it…"]
    else:
        assert calls == ["sendPhoto"], calls


async def test_a_round_that_did_not_wait_gets_a_progress_message_with_cancel_after_15_s(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    clock = install(bot, tg)

    async def script(view: RoundView) -> None:
        await view.started()
        await view.stage(Stage.THINKING)
        await clock.at(50)
        assert view.progress_message() is not None  # /cancel can reply to it
        await view.deliver(result())

    scripted(fake, script)
    group = tg.group_chat()
    msg = await tg.send_message(group, tg.user("Ann"), "/imagine a cathedral of glass")
    await clock.run_to(50)
    await fake.wait_finished()
    await clock.run_to(120)
    await asyncio.wait_for(bot.idle(), 5)

    shown = progress(tg, group["id"])
    assert shown[0][0] == "sendMessage" and 15 <= seconds(shown[0][1]) < 18
    assert shown[0][1].startswith("Thinking… 0:1")
    (sent,) = tg.calls_to("sendMessage")
    assert sent.params["reply_parameters"]["message_id"] == msg["message_id"]
    assert cancel_shown(sent.params)
    times = [seconds(text) for _, text in shown]
    assert all(b - a >= 10 for a, b in pairwise(times)), times
    assert len(times) >= 3 and times[-1] < 50
    assert tg.calls_to("sendPhoto") == [] and tg.calls_to("deleteMessage") == []
    (media,) = tg.calls_to("editMessageMedia")
    final = tg.messages[(group["id"], int(media.params["message_id"]))]
    assert "Cancel" not in str(final.get("reply_markup"))  # the button goes with the end of the round


async def test_rounds_in_one_group_share_its_pace(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    clock = install(bot, tg)
    release = asyncio.Event()

    async def script(view: RoundView) -> None:
        await view.started()
        await release.wait()
        await view.deliver(result(len(fake.results) + 1))

    scripted(fake, script)
    group = tg.group_chat()
    # Three rounds for 78 s: the chat stays under the real limiter's 20 calls a minute in real time too.
    users = [tg.user(name) for name in ("Ann", "Bob", "Cy")]
    for user in users:
        await tg.send_message(group, user, f"/imagine a portrait of {user['first_name']}")
    await fake.wait_until(lambda: len(fake.requests) == len(users))
    await clock.run_to(78)
    release.set()
    await fake.wait_finished(len(users))
    await asyncio.wait_for(bot.idle(), 5)

    shown = progress(tg, group["id"])
    times = sorted(seconds(text) for _, text in shown)  # every round started at T0: comparable times
    assert len(tg.calls_to("sendMessage")) == 3 and len(shown) >= 3 * 2  # every round is shown, and ticks on
    assert all(b - a >= 6 for a, b in pairwise(times)), times  # one per 6 s in the chat
    for start in range(0, 78):
        assert len([t for t in times if start <= t < start + 60]) <= 10  # half of Telegram's 20 a minute


async def test_a_flood_hold_skips_ticks(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    clock = install(bot, tg)

    async def script(view: RoundView) -> None:
        await view.queued(2)
        await view.started()
        await clock.at(90)
        await view.deliver(result())

    scripted(fake, script)
    tg.flood_next("editMessageText", retry_after=30)  # "Working on it…" is refused: the chat is held 30 s
    chat = tg.private_chat(ann := tg.user("Ann"))
    await tg.send_message(chat, ann, "a slow one")
    await tg.wait_for("editMessageText")
    await clock.run_to(90)
    await fake.wait_finished()
    await asyncio.wait_for(bot.idle(), 5)

    refused = [t for t in tg.timeline if t.method == "editMessageText" and t.status == 429]
    assert len(refused) == 1
    times = [seconds(text) for method, text in progress(tg, chat["id"]) if method == "editMessageText"]
    assert times and times[0] >= 30, times  # nothing while the chat was held
    assert all(b - a >= 10 for a, b in pairwise(times)), times
    assert len(tg.calls_to("editMessageMedia")) == 1


async def test_a_preview_stops_the_ticker(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    clock = install(bot, tg)

    async def script(view: RoundView) -> None:
        await view.queued(2)
        await view.started()
        await clock.at(30)
        await view.partial(Preview(png(16, 16), 0, 1))
        await clock.at(90)
        await view.deliver(result())

    scripted(fake, script)
    chat = tg.private_chat(ann := tg.user("Ann"))
    await tg.send_message(chat, ann, "a painted fox")
    await tg.wait_for("sendMessage")
    await clock.run_to(90)
    await fake.wait_finished()
    await asyncio.wait_for(bot.idle(), 5)

    times = [seconds(text) for method, text in progress(tg, chat["id"]) if "…" in text and ":" in text]
    assert times and max(times) < 30  # the ticker showed the thinking, then the preview took over
    assert [c.method for c in tg.calls if c.method == "editMessageMedia"] == ["editMessageMedia"] * 2


async def test_the_ticker_speaks_the_rounds_language_and_stops_at_a_refusal(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    clock = install(bot, tg)

    async def script(view: RoundView) -> None:
        await view.queued(3)
        await clock.at(20)
        await view.started()
        await view.stage(Stage.DRAWING)
        await clock.at(45)
        await view.refuse(Refusal("已取消", "cancelled", ephemeral=False))

    scripted(fake, script, lang="zh")
    chat = tg.private_chat(ann := tg.user("Ann"))
    await tg.send_message(chat, ann, "一只猫")
    await tg.wait_for("sendMessage")
    await clock.run_to(45)
    await fake.wait_finished()
    await clock.run_to(120)
    await asyncio.wait_for(bot.idle(), 5)

    texts = [text for method, text in progress(tg, chat["id"]) if method == "editMessageText"]
    assert texts[0].startswith("已排队 0:1") and texts[0].endswith("：前面还有 2 个请求。")
    assert any(text.startswith("绘制中… ") for text in texts)
    assert texts[-1] == "已取消"  # the last edit: the refusal, and nothing after it
    assert "Cancel" not in str(tg.calls_to("editMessageText")[-1].params.get("reply_markup"))


def test_elapsed_text_is_m_ss() -> None:
    assert [elapsed_text(s) for s in (0, 5.9, 65, 600, 3725)] == ["0:00", "0:05", "1:05", "10:00", "62:05"]
