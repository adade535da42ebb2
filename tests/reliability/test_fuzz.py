"""Hypothesis-generated hostile updates and gateway payloads through the real adapters and the real core (with
the hand-written FakeProvider): schema-valid shapes with adversarial content (odd ids, message_id 0, anonymous
admins, channel posts, bots, random command arguments and callback data, overlapping entities, long and
exotic unicode, replies to unknown messages). No handler exception, no ERROR log, each handled quickly.

Hypothesis generates the cases up front (generate phase only, a fixed seed); they are then fed to the
running bot one by one, so a failure names the exact payload."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.fakes.fake_provider import FakeProvider
from tests.reliability.conftest import settle, write_summary
from tests.reliability.stacks import discord_stack, telegram_stack

LONG = [pytest.mark.slow, pytest.mark.timeout(600)]  # about a minute on 2 cores
SEED = int(os.environ.get("EASEL_RELIABILITY_SEED", "7"))
FAST, SLOW = 300, 10_000
WORDS = st.sampled_from(["/imagine", "/imagine@easel_bot", "/quota", "/usage", "/help", "/start", "set", "grant",
                         "default", "ban", "unban", "@ann", "@nobody", "-5", "0", "999999999999", "2147483648",
                         "@everyone", "<b>", "*", "_"])
TEXT = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(WORDS, st.text(max_size=12)), max_size=6).map(" ".join),
    st.sampled_from(["x" * 5000, "\u202e\u200b" * 300, "🎨" * 2000, ""]),
)


def collect(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    found: list[Any] = []

    @seed(SEED)
    @settings(max_examples=count, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def gather(value: Any) -> None:
        found.append(value)

    gather()
    return found


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture
def errors() -> Any:
    handler = Errors()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


def _tg_case() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({
        "kind": st.sampled_from(["message", "message", "message", "callback", "edited"]),
        "chat": st.sampled_from(["group", "private", "group"]),
        "sender": st.sampled_from(["member", "admin", "bot", "anonymous_admin", "channel", "none"]),
        "text": TEXT,
        "message_id": st.one_of(st.integers(1, 2**31), st.sampled_from([0, 2**63 - 1])),
        "reply": st.sampled_from([None, "bot", "user", "unknown"]),
        "entities": st.lists(st.tuples(st.integers(-2, 80), st.integers(0, 80),
                                       st.sampled_from(["bot_command", "mention", "text_mention", "bold", "url"])),
                             max_size=4),
        "data": st.one_of(st.text(max_size=70), st.sampled_from(["e:reroll:1", "e:reroll:-1", "e:reroll:99999999",
                                                                 "e:reroll:abc", "e:", "e:reroll:" + "9" * 30])),
    })


@pytest.mark.usefixtures("unpaced_groups")  # hostile input is the subject, not the 20-a-minute group pacing
@pytest.mark.parametrize("count", [FAST, pytest.param(SLOW, marks=LONG, id="10000")])
async def test_fuzzed_telegram_updates(tmp_path: Path, errors: Errors, count: int) -> None:
    cases = collect(_tg_case(), count)
    async with telegram_stack(tmp_path / "data", provider=FakeProvider(), EASEL_USER_CONCURRENCY=100,
                              EASEL_DAILY_CREDITS=100000) as s:
        tg = s.tg
        admin, member = tg.user("Admin", "admin"), tg.user("Member", "ann")
        group = tg.group_chat("G", admins=[admin])
        private = tg.private_chat(member)
        bot_msg = {"message_id": 1, "date": 0, "chat": group, "from": tg.bot_user, "text": "#1"}
        senders = {"member": member, "admin": admin, "bot": tg.user("Bot", "somebot", is_bot=True),
                   "anonymous_admin": tg.user("Group", "GroupAnonymousBot", user_id=1087968824, is_bot=True),
                   "channel": tg.user("Telegram", "Channel_Bot", user_id=136817688, is_bot=True), "none": None}
        slowest, update_id = 0.0, 10**6
        for case in cases:
            update_id += 1
            update = _tg_update(case, update_id, group, private, senders, bot_msg, member)
            if case["kind"] == "callback":
                tg.callbacks[update["callback_query"]["id"]] = {}
            started = time.perf_counter()
            await s.deliver(update)
            await settle(s.tasks, timeout=5)
            slowest = max(slowest, time.perf_counter() - started)
            assert not tg.app_errors, (case, tg.app_errors)
            assert not errors.lines, (case, errors.lines)
        assert not tg.fake_errors
    write_summary(f"fuzz-telegram-{count}", seed=SEED, updates=len(cases), slowest_ms=round(slowest * 1000, 1))
    assert slowest < 1.0


def _tg_update(case: dict[str, Any], update_id: int, group: dict[str, Any], private: dict[str, Any],
               senders: dict[str, Any], bot_msg: dict[str, Any], member: dict[str, Any]) -> dict[str, Any]:
    chat = group if case["chat"] == "group" else private
    message: dict[str, Any] = {"message_id": case["message_id"], "date": 1, "chat": chat, "text": case["text"]}
    sender = senders[case["sender"]]
    if sender is not None:
        message["from"] = sender
    if case["sender"] == "anonymous_admin":
        message["sender_chat"] = group
    elif case["sender"] == "channel":
        message["sender_chat"] = {"id": -1_009_000_000_001, "type": "channel", "title": "C"}
    if case["reply"] == "bot":
        message["reply_to_message"] = {**bot_msg, "chat": chat}
    elif case["reply"] == "user":
        message["reply_to_message"] = {"message_id": 2, "date": 0, "chat": chat, "from": member, "text": "hi"}
    elif case["reply"] == "unknown":
        message["reply_to_message"] = {"message_id": 3, "date": 0, "chat": chat}
    entities = []
    for offset, length, kind in case["entities"]:
        entity: dict[str, Any] = {"type": kind, "offset": offset, "length": length}
        if kind == "text_mention":
            entity["user"] = member
        if kind == "url":
            entity["url"] = "http://127.0.0.1/x"
        entities.append(entity)
    if entities:
        message["entities"] = entities
    if case["kind"] == "callback":
        query = {"id": f"fz{update_id}", "from": sender or member, "chat_instance": "c", "data": case["data"],
                 "message": {**bot_msg, "chat": chat}}
        return {"update_id": update_id, "callback_query": query}
    if case["kind"] == "edited":
        return {"update_id": update_id, "edited_message": {**message, "edit_date": 2}}
    return {"update_id": update_id, "message": message}


def _dc_case() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({
        "kind": st.sampled_from(["imagine", "quota", "message", "message"]),
        "text": TEXT,
        "size": st.sampled_from([None, "square", "portrait", "landscape"]),
        "quality": st.sampled_from([None, "low", "medium", "high"]),
        "sub": st.sampled_from(["show", "set", "grant", "default", "ban", "unban"]),
        "number": st.integers(-(2**53), 2**53),
        "moderator": st.booleans(),
        "mention": st.booleans(),
        "reply": st.sampled_from([None, "unknown", "user"]),
    })


@pytest.mark.parametrize("count", [FAST, pytest.param(SLOW, marks=LONG, id="10000")])
async def test_fuzzed_discord_payloads(tmp_path: Path, errors: Errors, count: int) -> None:
    from tests.fakes.fake_discord import MANAGE_GUILD, MEMBER_PERMISSIONS

    cases = collect(_dc_case(), count)
    async with discord_stack(tmp_path / "data", provider=FakeProvider(), EASEL_USER_CONCURRENCY=100,
                             EASEL_DAILY_CREDITS=100000) as d:
        fake = d.fake
        guild = await fake.guild("G")
        member = fake.member(guild, "ann")
        mod = fake.member(guild, "mod", permissions=MEMBER_PERMISSIONS | MANAGE_GUILD)
        other = await fake.user_message(guild.channel, member, "just chatting")
        slowest = 0.0
        for case in cases:
            who = mod if case["moderator"] else member
            before = len(fake.calls)
            started = time.perf_counter()
            if case["kind"] == "imagine":
                options = {"prompt": case["text"] or "x"}
                options.update({k: case[k] for k in ("size", "quality") if case[k]})
                asked = await fake.slash_command(guild.channel, who, "imagine", options)
                await fake.wait_until(lambda: _done(fake, asked), what="imagine answered")
            elif case["kind"] == "quota":
                options = _quota_options(case, member)
                asked = await fake.slash_command(guild.channel, who, "quota", options, subcommand=case["sub"])
                await fake.wait_until(lambda: _done(fake, asked), what="quota answered")
            else:
                reply = None if case["reply"] is None else other
                await fake.user_message(guild.channel, who, case["text"], mention_bot=case["mention"],
                                        reply_to=reply)
            await settle(d.tasks, timeout=5)
            slowest = max(slowest, time.perf_counter() - started)
            assert not errors.lines, (case, errors.lines)
            assert not fake.fake_errors, case
            assert not [c.method for c in fake.calls[before:] if c.method.startswith("UNHANDLED")], case
    write_summary(f"fuzz-discord-{count}", seed=SEED, payloads=len(cases), slowest_ms=round(slowest * 1000, 1))
    assert slowest < 1.0


def _quota_options(case: dict[str, Any], member: Any) -> dict[str, Any]:
    sub = case["sub"]
    options: dict[str, Any] = {} if sub in ("show", "default") else {"user": member}
    if sub in {"set", "default"}:
        options["daily"] = case["number"]
    elif sub == "grant":
        options["credits"] = case["number"]
    return options


def _done(fake: Any, interaction: Any) -> bool:
    shown = fake.replies(interaction)
    return bool(shown) and not shown[0]["content"].startswith(("Drawing", "Queued"))
