"""Background mode on the Responses route against the fake: the response id is reported at once, a dropped
or stalled stream resumes after the last sequence number (no preview twice), resuming falls back to polling,
a round is picked up by a new provider (a restart), an expired response is `ResponseGone`, Cancel calls the
endpoint. Durations are scripted with the fake's holds, never slept."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from core.errors import ProviderError, ResponseGone, SafetyRefusal
from core.ports import GeneratedImage, ParentImage
from core.provider.responses import ResponsesProvider
from tests.fakes.fake_openai import FakeOpenAI, color, pixel
from tests.provider.support import Events, ignore_partials, job, make_client

MakeProvider = Callable[..., ResponsesProvider]
CREATE = "POST /v1/responses"


def gets(fake: FakeOpenAI, response_id: str) -> list[dict[str, str]]:
    return [call.params for call in fake.calls_to(f"GET /v1/responses/{response_id}")]


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until `condition` holds (bounded; no sleeping on the clock)."""
    for _ in range(20_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_create_runs_in_the_background_and_reports_id_stage_and_sequence(
    fake: FakeOpenAI, make_background: MakeProvider, events: Events
) -> None:
    result = await make_background().create(job(), events)

    assert pixel(result.image) == color(1)
    assert result.response_id == "resp_fake_1"
    assert events.taken == [("resp_fake_1", True)]
    assert events.seqs == list(range(len(events.seqs)))  # every event, in order, once
    stages = [stage for _, stage in events.progress]
    assert stages[:2] == ["thinking", "thinking"] and stages[-1] == "drawing"
    assert stages == sorted(stages, key=["thinking", "drawing"].index)  # never back to thinking
    assert events.indexes == [0, 1]
    body = fake.calls_to(CREATE)[0].params
    assert body["background"] is True and body["stream"] is True
    assert fake.billed == 1


async def test_dropped_stream_resumes_after_the_last_sequence_without_duplicate_previews(
    fake: FakeOpenAI, make_background: MakeProvider, events: Events
) -> None:
    fake.fail_next("stream_drop", endpoint="responses", after_partials=1)  # cut before the second preview

    result = await make_background().create(job(), events)

    assert pixel(result.image) == color(1)
    assert events.indexes == [0, 1]
    assert events.seqs == list(range(len(events.seqs)))
    (resumed,) = gets(fake, "resp_fake_1")
    first_preview_seq = 5  # created, in_progress, item added, call in_progress, generating, partial 0
    assert resumed == {"stream": "true", "starting_after": str(first_preview_seq)}
    assert len(fake.calls_to(CREATE)) == 1 and fake.billed == 1


async def test_stalled_stream_resumes_after_the_per_call_timeout(
    fake: FakeOpenAI, make_background: MakeProvider, events: Events
) -> None:
    fake.fail_next("stream_hang", endpoint="responses", after_partials=1)

    result = await make_background(call_timeout=0.3).create(job(), events)

    assert pixel(result.image) == color(1)
    assert events.indexes == [0, 1]
    assert gets(fake, "resp_fake_1")[0]["starting_after"] == "5"


async def test_resume_keeps_failing_so_the_response_is_polled(
    fake: FakeOpenAI, make_background: MakeProvider, events: Events
) -> None:
    fake.fail_next("stream_drop", endpoint="responses", after_partials=1)
    fake.fail_next("stream_drop", endpoint="retrieve", count=3, after_seq=0)  # every resumed stream breaks

    result = await make_background(resume_attempts=3).create(job(), events)

    assert pixel(result.image) == color(1)
    assert events.indexes == [0]  # the second preview was never seen: polling has none
    calls = gets(fake, "resp_fake_1")
    assert [c.get("stream") for c in calls[:3]] == ["true"] * 3
    assert all("stream" not in c for c in calls[3:]) and len(calls) >= 4
    assert fake.billed == 1


async def test_without_previews_the_background_response_is_polled(
    fake: FakeOpenAI, make_background: MakeProvider, events: Events
) -> None:
    thinking = fake.hold("thinking")
    provider = make_background(partial_images=0)
    task = asyncio.create_task(provider.create(job(), events))
    await fake.wait_for("GET /v1/responses/resp_fake_1", count=2)  # still thinking: polled again
    assert fake.run("resp_fake_1").status == "in_progress"
    thinking.set()

    result = await task

    assert pixel(result.image) == color(1)
    assert events.taken == [("resp_fake_1", True)]
    body = fake.calls_to(CREATE)[0].params
    assert body["background"] is True and "stream" not in body
    assert "partial_images" not in body["tools"][0]


async def test_a_new_provider_resumes_a_round_after_a_restart(
    fake: FakeOpenAI, make_background: MakeProvider, events: Events
) -> None:
    drawing = fake.hold("drawing")
    task = asyncio.create_task(make_background().create(job(), events))
    await until(lambda: len(events.got) == 2)
    task.cancel()  # the process dies with the stream open; the provider keeps working
    with pytest.raises(asyncio.CancelledError):
        await task
    (response_id, _), last_seq = events.taken[0], events.seqs[-1]

    sdk = make_client(f"{fake.origin}/v1")
    after = Events()
    try:
        restarted = ResponsesProvider(sdk, host_model="gpt-5.5", background=True, call_timeout=2.0,
                                      poll_interval=0.01)
        resumed = asyncio.create_task(restarted.resume(response_id, last_seq, after))
        await fake.wait_for(f"GET /v1/responses/{response_id}")
        drawing.set()
        result = await resumed
    finally:
        await sdk.close()

    assert pixel(result.image) == color(1)
    assert result.response_id == response_id and result.image_call_id == "ig_fake_1"
    assert after.got == []  # previews before the restart are not shown again
    assert after.seqs[0] == last_seq + 1
    assert gets(fake, response_id) == [{"stream": "true", "starting_after": str(last_seq)}]
    assert len(fake.calls_to(CREATE)) == 1 and fake.billed == 1


async def test_resume_without_a_sequence_number_polls(fake: FakeOpenAI, make_background: MakeProvider) -> None:
    first = await make_background().create(job(), ignore_partials)
    assert first.response_id is not None

    again = await make_background().resume(first.response_id, None, Events())

    assert again.image == first.image
    assert gets(fake, first.response_id) == [{}]


@pytest.mark.parametrize("how", ["clock", "expire", "unknown"])
async def test_a_response_the_provider_forgot_is_gone(
    fake: FakeOpenAI, make_background: MakeProvider, events: Events, how: str
) -> None:
    fake.hold("thinking")
    task = asyncio.create_task(make_background().create(job(), events))
    await until(lambda: bool(events.taken))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    response_id = events.taken[0][0]
    if how == "clock":
        fake.advance(601)  # the provider keeps background responses about ten minutes
    elif how == "expire":
        fake.expire(response_id)
    else:
        response_id = "resp_never_made"

    for after_seq in (3, None):
        with pytest.raises(ResponseGone):
            await make_background().resume(response_id, after_seq, Events())


async def test_cancel_calls_the_endpoint_and_the_round_ends_cancelled(
    fake: FakeOpenAI, make_background: MakeProvider, events: Events
) -> None:
    fake.hold("thinking")
    provider = make_background()
    task = asyncio.create_task(provider.create(job(), events))
    await until(lambda: bool(events.taken))

    await provider.cancel("resp_fake_1")

    assert fake.calls_to("POST /v1/responses/resp_fake_1/cancel")
    assert fake.run("resp_fake_1").status == "cancelled"
    with pytest.raises(ProviderError) as caught:
        await task
    assert caught.value.msg_id == "provider.cancelled"
    assert fake.billed == 0 and len(fake.calls_to(CREATE)) == 1


async def test_cancel_is_best_effort(fake: FakeOpenAI, make_background: MakeProvider) -> None:
    await make_background().cancel("resp_unknown")  # 404: logged, not raised
    done = await make_background().create(job(), ignore_partials)
    assert done.response_id is not None
    await make_background().cancel(done.response_id)  # already completed: nothing to stop
    assert fake.run(done.response_id).status == "completed"


async def test_failures_before_the_response_exists_are_retried_as_before(
    fake: FakeOpenAI, make_background: MakeProvider
) -> None:
    fake.fail_next("rate_limit", retry_after_ms=20)

    result = await make_background().create(job(), ignore_partials)

    assert len(fake.calls_to(CREATE)) == 2 and pixel(result.image) == color(1)


async def test_a_failed_image_call_in_a_background_response_is_a_safety_refusal(
    fake: FakeOpenAI, make_background: MakeProvider
) -> None:
    fake.fail_next("ig_failed", stage="output")

    with pytest.raises(SafetyRefusal) as caught:
        await make_background().create(job(), ignore_partials)

    assert caught.value.msg_id == "provider.safety.output"
    assert len(fake.calls_to(CREATE)) == 1 and fake.billed == 0


async def test_edit_rounds_continue_from_the_parent_and_fall_back_to_its_image(
    fake: FakeOpenAI, make_background: MakeProvider
) -> None:
    provider = make_background()
    first = await provider.create(job(), ignore_partials)
    parent = ParentImage(image=first.image, response_id=first.response_id)

    second = await provider.create(job("make it night", parent=parent), ignore_partials)
    fake.expire(str(first.response_id))
    third = await provider.create(job("now snow", parent=parent), ignore_partials)

    bodies = fake.bodies(CREATE)
    assert bodies[1]["previous_response_id"] == first.response_id
    assert bodies[2]["previous_response_id"] == first.response_id  # refused: expired
    assert "previous_response_id" not in bodies[3]
    assert fake.input_images(fake.calls_to(CREATE)[3]) == [first.image]
    assert isinstance(second, GeneratedImage) and pixel(third.image) == color(3)
