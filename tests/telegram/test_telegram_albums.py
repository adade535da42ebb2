"""Albums (media groups) through the real PTB: one request with every photo as a reference, keyed by the media
group so a redelivered item makes no second round. The collection window is a wait the test releases."""

from __future__ import annotations

import asyncio
from typing import Any

from bots.telegram.bot import TelegramBot
from core.spec import Shape
from tests.fakes.fake_provider import png
from tests.fakes.fake_telegram import FakeTelegram
from tests.telegram.conftest import StartBot
from tests.telegram.telegram_support import FakeServices


class Window:
    """The album window, opened by the test: every album waits for `release()`."""

    def __init__(self) -> None:
        self.released = asyncio.Event()

    async def __call__(self) -> None:
        await self.released.wait()

    def release(self) -> None:
        self.released.set()


async def send_album(
    tg: FakeTelegram, chat: dict[str, Any], user: dict[str, Any], captions: list[str | None], group: str = "mg1",
    **kw: Any,
) -> list[dict[str, Any]]:
    """An album as Telegram sends it: one update per item, all sharing `media_group_id`. Returns the updates."""
    updates = []
    for index, caption in enumerate(captions):
        await tg.send_message(chat, user, caption, photo=png(40 + index, 30, (index * 50, 0, 0)),
                              extra={"media_group_id": group}, **kw)
        updates.append(tg.last_update)
    return updates


async def settle(tg: FakeTelegram, chat: dict[str, Any], count: int) -> None:
    """Send /help after the items and wait for its answer: every item before it has reached the collector."""
    await tg.send_message(chat, tg.user("Sentinel"), "/help")
    await tg.wait_for("sendMessage", count)


async def test_album_is_one_request_with_every_photo(tg: FakeTelegram, start_bot: StartBot, fake: FakeServices) -> None:
    window = Window()
    bot: TelegramBot = await start_bot(album_window=window)
    ann = tg.user("Ann")
    group = tg.group_chat()
    updates = await send_album(tg, group, ann, ["/imagine these three as one poster --size wide", None, None])
    await settle(tg, group, 1)
    assert bot.albums.open_count(group["id"], "mg1") == 3 and fake.requests == []  # still collecting
    window.release()
    sent = await tg.wait_for("sendPhoto")
    await fake.wait_finished()

    [request] = fake.requests
    assert request.prompt == "these three as one poster" and request.options.shape is Shape.WIDE
    assert request.input_image is None and len(request.references) == 3
    assert request.idempotency_key == f"tg:album:{group['id']}:mg1"
    fetched = [await image.fetch(10_000_000) for image in request.references]
    photos = [tg.files[u["message"]["photo"][-1]["file_id"]].data for u in updates]
    assert fetched == photos  # the largest size of each, in album order
    first = updates[0]["message"]["message_id"]
    assert sent.params["reply_parameters"]["message_id"] == first  # the answer replies to the captioned item

    # A redelivered item (a restart before its offset was confirmed) makes no second round.
    await tg.push_update(updates[1])
    await tg.push_update(updates[0])
    await settle(tg, group, 2)
    await asyncio.wait_for(bot.idle(), 5)
    assert len(fake.requests) == 1 and len(tg.calls_to("sendPhoto")) == 1


async def test_album_caption_on_a_later_item_and_reply_to_an_easel_image(
    tg: FakeTelegram, start_bot: StartBot, fake: FakeServices
) -> None:
    window = Window()
    await start_bot(album_window=window)
    ann = tg.user("Ann")
    group = tg.group_chat()
    await tg.send_message(group, ann, "/imagine a room")
    await tg.wait_for("sendPhoto")
    await fake.wait_finished()
    image = tg.sent_messages("sendPhoto")[0]
    await send_album(tg, group, ann, [None, "/imagine put these chairs in it"], reply_to=image)
    await settle(tg, group, 1)
    window.release()
    await tg.wait_for("sendPhoto", 2)
    request = fake.requests[1]
    assert request.prompt == "put these chairs in it" and len(request.references) == 2
    assert request.parent_round == 1 and request.reply_to == str(image["message_id"])  # an edit with references


async def test_album_without_imagine_in_a_group_is_ignored(
    tg: FakeTelegram, start_bot: StartBot, fake: FakeServices
) -> None:
    window = Window()
    bot = await start_bot(album_window=window)
    group = tg.group_chat()
    await send_album(tg, group, tg.user("Ann"), ["holiday pictures", None])
    await settle(tg, group, 1)
    window.release()
    await asyncio.wait_for(bot.idle(), 5)
    assert fake.requests == []
