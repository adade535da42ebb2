"""The round service end to end through the real store, with the hand-written fake provider."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bots.process.app import Core, open_core
from bots.process.config import Settings
from core.errors import ProviderBusy, SafetyRefusal
from core.events import (
    Actor,
    ChannelKey,
    DeskCommand,
    InputImage,
    Platform,
    Quality,
    RoundRequest,
    Shape,
    SpecOptions,
    UserRef,
    Verb,
)
from core.outcomes import Preview
from core.records import Balance, day_of
from tests.fakes.fake_provider import FakeProvider, png
from tests.fakes.recording_view import RecordingView

KEY = ChannelKey(Platform.CONSOLE, "c1", "ch1")
ALICE = Actor(Platform.CONSOLE, "1", "Alice", username="alice")
BOB = Actor(Platform.CONSOLE, "2", "Bob", username="bob")


def request(prompt: str, idem: str, actor: Actor = ALICE, **kw: object) -> RoundRequest:
    return RoundRequest(key=KEY, actor=actor, prompt=prompt, idempotency_key=idem, **kw)  # type: ignore[arg-type]


async def run(core: Core, req: RoundRequest) -> RecordingView:
    view = RecordingView()
    await core.rounds.submit(req, view)
    return view


async def credits_left(core: Core, actor: Actor = ALICE) -> int:
    return (await balance(core, KEY, actor.user_id)).left


async def balance(core: Core, key: ChannelKey, user_id: str) -> Balance:
    day = day_of(datetime.now(UTC))
    return await core.store.balance(key.platform, key.community, user_id, day, core.settings.daily_credits)


async def test_generate_delivers_and_charges(core: Core, provider: FakeProvider) -> None:
    view = await run(core, request("a red fox", "k1"))
    assert view.refusal is None and view.result is not None
    assert view.events == ["started", "deliver"]
    assert view.result.number == 1
    assert "#1" in view.result.caption and "9 credits left today" in view.result.caption
    assert view.result.buttons[0].label == "Reroll"
    assert provider.jobs[0].prompt == "a red fox" and provider.jobs[0].params["size"] == "1024x1024"
    assert await credits_left(core) == 9
    assert await core.rounds.is_round_message(KEY, view.message_ids[0])


async def test_edit_round_passes_parent_response_and_image(core: Core, provider: FakeProvider) -> None:
    first = await run(core, request("a red fox", "k1"))
    assert first.result is not None
    second = await run(core, request("make it blue", "k2", reply_to=first.message_ids[0]))
    assert second.result is not None and second.result.number == 2
    job = provider.jobs[1]
    assert job.parent is not None and job.parent.response_id == "resp_1"
    assert job.parent.image == first.result.image
    assert "(from #1)" in second.result.caption


async def test_branching_from_an_older_round(core: Core, provider: FakeProvider) -> None:
    first = await run(core, request("a fox", "k1"))
    second = await run(core, request("blue", "k2", reply_to=first.message_ids[0]))
    third = await run(core, request("green", "k3", reply_to=first.message_ids[0]))
    assert second.result and third.result
    assert provider.jobs[1].parent and provider.jobs[2].parent
    assert provider.jobs[2].parent.response_id == "resp_1"  # branched from #1, not from #2


async def test_reply_to_unknown_message_is_refused_and_free(core: Core, provider: FakeProvider) -> None:
    view = await run(core, request("blue", "k1", reply_to="999"))
    assert view.refusal is not None and view.refusal.reason == "unknown_round"
    assert provider.jobs == []
    assert await credits_left(core) == 10


async def test_duplicate_idempotency_key_does_nothing(core: Core, provider: FakeProvider) -> None:
    views = [await run(core, request("a fox", "same")) for _ in range(3)]
    assert views[0].result is not None
    assert views[1].events == [] and views[2].events == []
    assert len(provider.jobs) == 1
    assert await credits_left(core) == 9


async def test_concurrent_duplicates_run_once(core: Core, provider: FakeProvider) -> None:
    views = [RecordingView() for _ in range(5)]
    await asyncio.gather(*(core.rounds.submit(request("a fox", "same"), v) for v in views))
    assert len(provider.jobs) == 1
    assert sum(1 for v in views if v.result) == 1


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (SafetyRefusal("declined"), "safety"),
        (ProviderBusy("busy, try in 5 s", retry_after=5), "provider_busy"),
    ],
)
async def test_provider_failure_is_refused_and_refunded(
    core: Core, provider: FakeProvider, error: Exception, reason: str
) -> None:
    provider.fail_next(error)
    view = await run(core, request("a fox", "k1"))
    assert view.refusal is not None and view.refusal.reason == reason
    assert view.refusal.text == str(error)
    assert await credits_left(core) == 10


async def test_unexpected_error_gets_generic_apology_and_refund(core: Core, provider: FakeProvider) -> None:
    provider.fail_next(RuntimeError("secret internals sk-abc"))
    view = await run(core, request("a fox", "k1"))
    assert view.refusal is not None and "sk-abc" not in view.refusal.text
    assert "nothing was charged" in view.refusal.text
    assert await credits_left(core) == 10


async def test_delivery_failure_refunds(core: Core) -> None:
    view = RecordingView(fail_delivery=ConnectionError("platform down"))
    await core.rounds.submit(request("a fox", "k1"), view)
    assert view.events[-1] == "refuse"
    assert await credits_left(core) == 10


async def test_over_quota_refusal_states_left_and_reset(make_settings: Callable[..., Settings]) -> None:
    provider = FakeProvider()
    async with open_core(make_settings(EASEL_DAILY_CREDITS=1), provider=provider) as core:
        assert (await run(core, request("one", "k1"))).result is not None
        view = await run(core, request("two", "k2"))
        assert view.refusal is not None and view.refusal.reason == "over_quota"
        assert "you have 0 left today" in view.refusal.text and "UTC" in view.refusal.text
        assert len(provider.jobs) == 1


async def test_costs_follow_the_table(core: Core, provider: FakeProvider) -> None:
    view = await run(core, request("big", "k1", options=SpecOptions(shape=Shape.LANDSCAPE, quality=Quality.HIGH)))
    assert view.result is not None and view.result.credits_left == 4
    assert provider.jobs[0].params["size"] == "1536x1024" and provider.jobs[0].params["quality"] == "high"


async def test_empty_and_long_prompts_refused(core: Core, provider: FakeProvider) -> None:
    empty = await run(core, request("  \x00 ", "k1"))
    assert empty.refusal is not None and empty.refusal.reason == "bad_request"
    long = await run(core, request("x" * 5000, "k2"))
    assert long.refusal is not None and "4000" in long.refusal.text
    assert provider.jobs == []


async def test_reroll_same_prompt_same_parent_charged_to_presser(core: Core, provider: FakeProvider) -> None:
    first = await run(core, request("a fox", "k1"))
    second = await run(core, request("blue", "k2", reply_to=first.message_ids[0]))
    assert second.result is not None
    view = RecordingView()
    await core.rounds.press(second.result.buttons[0].action, KEY, BOB, "press-1", view)
    assert view.result is not None
    job = provider.jobs[2]
    assert job.prompt == "blue" and job.parent is not None and job.parent.response_id == "resp_1"
    assert await credits_left(core, BOB) == 9 and await credits_left(core, ALICE) == 8


async def test_forged_button_is_refused(core: Core, provider: FakeProvider) -> None:
    view = RecordingView()
    await core.rounds.press("reroll:99999", KEY, ALICE, "p1", view)
    assert view.refusal is not None and provider.jobs == []
    view2 = RecordingView()
    await core.rounds.press("delete:everything", KEY, ALICE, "p2", view2)
    assert view2.refusal is not None


async def test_photo_input_is_validated_before_anything_is_spent(core: Core, provider: FakeProvider) -> None:
    async def fetch_garbage(limit: int) -> bytes:
        return b"<html>not an image</html>"

    view = await run(core, request("make it blue", "k1", input_image=InputImage(fetch=fetch_garbage)))
    assert view.refusal is not None and view.refusal.reason == "bad_image"
    assert provider.jobs == [] and await credits_left(core) == 10


async def test_oversized_photo_refused_before_download(core: Core, provider: FakeProvider) -> None:
    fetched = []

    async def fetch(limit: int) -> bytes:
        fetched.append(limit)
        return png()

    view = await run(core, request("blue", "k1", input_image=InputImage(fetch=fetch, declared_bytes=10**9)))
    assert view.refusal is not None and view.refusal.reason == "bad_image" and fetched == []


async def test_photo_edit_sends_normalised_png(core: Core, provider: FakeProvider) -> None:
    async def fetch(limit: int) -> bytes:
        return png(32, 16)

    view = await run(core, request("blue", "k1", input_image=InputImage(fetch=fetch)))
    assert view.result is not None
    assert provider.jobs[0].inputs and provider.jobs[0].inputs[0].startswith(b"\x89PNG")


async def test_partials_arrive_as_progress(make_settings: Callable[..., Settings]) -> None:
    provider = FakeProvider(partials=2)
    async with open_core(make_settings(), provider=provider) as core:
        view = await run(core, request("a fox", "k1"))
        assert view.events == ["started", "partial", "partial", "deliver"]
        assert [p.index for p in view.previews] == [0, 1]


async def test_queue_reports_positions_and_caps_concurrency(make_settings: Callable[..., Settings]) -> None:
    provider = FakeProvider(gate=asyncio.Event())
    async with open_core(make_settings(EASEL_PROVIDER_CONCURRENCY=1), provider=provider) as core:
        actors = [Actor(Platform.CONSOLE, str(i), f"u{i}") for i in range(3)]
        views = [RecordingView() for _ in actors]
        tasks = [
            asyncio.create_task(core.rounds.submit(request("p", f"k{i}", a), v))
            for i, (a, v) in enumerate(zip(actors, views, strict=True))
        ]
        while not (views[1].positions and views[2].positions):
            await asyncio.sleep(0)
        assert views[1].positions == [1] and views[2].positions == [2]
        assert provider.gate is not None
        provider.gate.set()
        await asyncio.gather(*tasks)
        assert provider.peak_in_flight == 1
        # Its place only ever goes down (it may get the slot before a "1" is worth showing).
        assert views[2].positions[0] == 2 and views[2].positions == sorted(views[2].positions, reverse=True)
        assert all(v.result for v in views)


async def test_per_user_cap(make_settings: Callable[..., Settings]) -> None:
    provider = FakeProvider(gate=asyncio.Event())
    async with open_core(make_settings(EASEL_USER_CONCURRENCY=1), provider=provider) as core:
        first = RecordingView()
        task = asyncio.create_task(core.rounds.submit(request("p", "k1"), first))
        while not provider.jobs:
            await asyncio.sleep(0)
        second = await run(core, request("p2", "k2"))
        assert second.refusal is not None and second.refusal.reason == "busy"
        assert provider.gate is not None
        provider.gate.set()
        await task
        assert first.result is not None and await credits_left(core) == 9


async def test_replies_resolve_after_restart(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings()
    async with open_core(settings, provider=FakeProvider()) as core:
        first = await run(core, request("a fox", "k1"))
    provider = FakeProvider()
    async with open_core(settings, provider=provider) as core:
        second = await run(core, request("blue", "k2", reply_to=first.message_ids[0]))
        assert second.result is not None and second.result.number == 2
        assert provider.jobs[0].parent is not None and provider.jobs[0].parent.response_id == "resp_1"


async def test_shutdown_drain_refunds_and_tells(make_settings: Callable[..., Settings]) -> None:
    provider = FakeProvider(gate=asyncio.Event())
    async with open_core(make_settings(), provider=provider) as core:
        view = RecordingView()
        task = asyncio.create_task(core.rounds.submit(request("p", "k1"), view))
        while not provider.jobs:
            await asyncio.sleep(0)
        cancelled = await core.rounds.drain(grace=0.01)
        assert cancelled == 1
        assert task.cancelled() or task.done()
        assert view.refusal is not None and view.refusal.reason == "interrupted"
        assert await credits_left(core) == 10
        late = await run(core, request("p", "k2"))
        assert late.refusal is not None and late.refusal.reason == "busy"


async def test_naming_yourself_is_your_own_report(core: Core) -> None:
    await core.desk.seen(BOB, KEY.community)
    notice = await core.desk.run(DeskCommand(Verb.SHOW, KEY, BOB, "show-1", target=UserRef(username="bob")))
    assert notice.text.startswith("You have 10 credits left today")


async def test_migration_keeps_credits_when_new_chat_already_has_a_policy(core: Core, provider: FakeProvider) -> None:
    old = ChannelKey(Platform.TELEGRAM, "-1", "-1")
    new = ChannelKey(Platform.TELEGRAM, "-1009", "-1009")
    mod = Actor(Platform.TELEGRAM, "9", "Mod", is_moderator=True)
    user = Actor(Platform.TELEGRAM, "5", "Ann")
    view = RecordingView()
    await core.rounds.submit(RoundRequest(key=old, actor=user, prompt="fox", idempotency_key="m1"), view)
    await core.desk.run(DeskCommand(Verb.DEFAULT, old, mod, "d-old", amount=3))
    # set in the supergroup before the upgrade was seen
    await core.desk.run(DeskCommand(Verb.DEFAULT, new, mod, "d-new", amount=7))
    await core.desk.migrate_community(Platform.TELEGRAM, "-1", "-1009")
    report = await balance(core, new, "5")
    assert (report.daily, report.used, report.left) == (7, 1, 6)
    assert await core.rounds.is_round_message(new, view.message_ids[0])


async def test_slow_preview_rendering_never_eats_the_provider_budget(make_settings: Callable[..., Settings]) -> None:
    """A platform that takes longer to show a preview than the provider's whole time budget must not make
    Easel abandon (and refund) an image the provider already made."""
    import time

    release = asyncio.Event()

    class SlowPlatform(RecordingView):
        async def partial(self, preview: Preview) -> None:
            await release.wait()
            await super().partial(preview)

    provider = FakeProvider(partials=3)
    async with open_core(make_settings(EASEL_PROVIDER_TIMEOUT=1), provider=provider) as core:
        view = SlowPlatform()
        started = time.monotonic()
        task = asyncio.create_task(core.rounds.submit(request("a fox", "k1"), view))
        while not (provider.jobs and provider.in_flight == 0):
            await asyncio.sleep(0.01)
        assert core.rounds.deps.slots.in_use == 0  # the provider slot is free while the preview is still showing
        await asyncio.sleep(max(0.0, 1.2 - (time.monotonic() - started)))  # past the provider's budget
        release.set()
        await task
        assert view.refusal is None and view.result is not None
        assert [p.index for p in view.previews] == [0]  # later previews were superseded by the result
        assert await credits_left(core) == 9


async def test_unavailable_provider_is_probed_by_one_request_at_a_time(core: Core, provider: FakeProvider) -> None:
    from core.errors import ProviderUnavailable

    provider.fail_next(ProviderUnavailable("provider.unavailable"))
    first = await run(core, request("a fox", "k1"))
    assert first.refusal is not None and first.refusal.reason == "provider_unavailable"
    provider.gate = asyncio.Event()
    probe = RecordingView()
    probing = asyncio.create_task(core.rounds.submit(request("a cat", "k2", actor=BOB), probe))
    while provider.in_flight == 0:
        await asyncio.sleep(0)
    third = await run(core, request("a dog", "k3"))
    assert third.refusal is not None and third.refusal.reason == "provider_unavailable"
    assert len(provider.jobs) == 2  # the third request did not reach the provider while the probe ran
    provider.gate.set()
    await probing
    assert probe.result is not None  # the probe succeeded: the gate is open again
    assert (await run(core, request("a bird", "k4"))).result is not None
    assert await credits_left(core) == 9 and await credits_left(core, BOB) == 9
