"""`easel forget` deletes the forgotten user's stored responses at the provider (they hold the prompt and the
image): the real command in a subprocess, the real SQLite store and the real `openai` SDK against the fake
OpenAI on 127.0.0.1. A provider failure is reported, never fatal: the local data is erased regardless."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from core.errors import ProviderError
from core.ports import ImageJob
from core.provider.images_api import ImagesProvider
from core.provider.responses import ResponsesProvider
from core.records import Facts, RoundKind
from core.store.sqlite import SqliteStore
from tests.fakes.fake_openai import FakeOpenAI
from tests.provider.support import Events, make_client
from tests.store.support import KEY, NOW, new_round, reservation

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "my secret garden"
ANN, BOB, CAT = "1001", "1002", "1003"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server
        assert not server.fake_errors, server.fake_errors[0]


async def easel(tmp_path: Path, *args: str, **env: str) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EASEL_", "OPENAI_", "DISCORD_", "TELEGRAM_"))}
    clean.update({"EASEL_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT), **env})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.process.cli", *args, cwd=tmp_path, env=clean,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@dataclass
class Seeded:
    own: str  # Ann's round
    reroll: str  # Bob's reroll of Ann's round: it copied her prompt
    expired: str  # Ann's other round, whose response the provider no longer holds
    other: str  # Cat's own round, not Ann's business


async def _generate(provider: ResponsesProvider, prompt: str) -> str:
    made = await provider.create(ImageJob(prompt=prompt, params={"size": "1024x1024"}), Events())
    assert made.response_id is not None
    return made.response_id


async def _seed(tmp_path: Path, fake: FakeOpenAI) -> Seeded:
    """Four real responses at the fake provider, and the rounds that recorded them in a real database."""
    client = make_client(f"{fake.origin}/v1")
    # Background mode, as by default: responses are stored at the provider (without it Easel asks `store: false`).
    provider = ResponsesProvider(client, host_model="gpt-5.5", partial_images=0, retries=0, background=True,
                                 call_timeout=5.0, poll_interval=0.01, max_poll_interval=0.05)
    try:
        ids = Seeded(*[await _generate(provider, p) for p in (PROMPT, PROMPT, "a second one", "cat's own")])
    finally:
        await provider.aclose()
    fake.expire(ids.expired)
    async with SqliteStore(tmp_path / "data" / "easel.db") as store:
        for user, prompt, kind, response_id in (
            (ANN, PROMPT, RoundKind.GENERATE, ids.own),
            (BOB, PROMPT, RoundKind.REROLL, ids.reroll),
            (ANN, "a second one", RoundKind.GENERATE, ids.expired),
            (CAT, "cat's own", RoundKind.GENERATE, ids.other),
        ):
            made = await store.create_round(new_round(user, prompt=prompt, kind=kind), NOW)
            await store.reserve(reservation(made.id))
            facts = Facts(image_sha=f"sha{made.id}", response_id=response_id)
            await store.deliver(made.id, KEY, [f"m{made.id}"], facts, NOW)
    return ids


async def _stored_ids(tmp_path: Path) -> dict[str, str | None]:
    async with SqliteStore(tmp_path / "data" / "easel.db") as store:
        rounds = [await store.get_round(number) for number in range(1, 5)]
    return {r.user_id: r.response_id for r in rounds if r is not None and r.user_id != ANN}


async def test_forget_deletes_the_users_responses_at_the_provider(tmp_path: Path, fake: FakeOpenAI) -> None:
    ids = await _seed(tmp_path, fake)

    code, out, err = await easel(tmp_path, "forget", "telegram", ANN, OPENAI_API_KEY="sk-test",
                                 OPENAI_BASE_URL=f"{fake.origin}/v1")

    assert code == 0, err
    assert "erased the prompts and images of 2 rounds by telegram:1001" in out
    assert "deleted 2 of 3 stored responses at the provider; 1 it no longer held" in out
    assert sorted(fake.deleted) == sorted([ids.own, ids.reroll])  # Bob's reroll held Ann's prompt too
    assert [c.headers.get("authorization") for c in fake.calls if c.method.startswith("DELETE")] == [
        "Bearer sk-test"
    ] * 3
    client = make_client(f"{fake.origin}/v1")
    try:
        for gone in (ids.own, ids.reroll):
            with pytest.raises(openai.NotFoundError):
                await client.responses.retrieve(gone)
        assert (await client.responses.retrieve(ids.other)).id == ids.other  # Cat's is untouched
    finally:
        await client.close()
    assert await _stored_ids(tmp_path) == {BOB: None, CAT: ids.other}


async def test_a_provider_failure_is_reported_and_the_local_data_is_erased(tmp_path: Path, fake: FakeOpenAI) -> None:
    ids = await _seed(tmp_path, fake)
    fake.fail_next("unauthorized", count=3, endpoint="delete")

    code, out, err = await easel(tmp_path, "forget", "telegram", ANN, OPENAI_API_KEY="sk-revoked",
                                 OPENAI_BASE_URL=f"{fake.origin}/v1")

    assert code == 0, err
    assert "erased the prompts and images of 2 rounds by telegram:1001" in out
    assert "deleted 0 of 3 stored responses at the provider; 3 could not be deleted (provider_unavailable" in out
    assert ids.own in out and ids.reroll in out  # named, so the operator can delete them by hand
    assert "sk-revoked" not in out + err
    assert fake.deleted == []
    assert await _stored_ids(tmp_path) == {BOB: None, CAT: ids.other}


async def test_without_a_key_the_ids_are_named_and_nothing_is_sent(tmp_path: Path, fake: FakeOpenAI) -> None:
    ids = await _seed(tmp_path, fake)
    calls = len(fake.calls)

    code, out, err = await easel(tmp_path, "forget", "telegram", ANN)

    assert code == 0, err
    assert "OPENAI_API_KEY is not set" in out and ids.own in out and ids.reroll in out
    assert len(fake.calls) == calls
    assert await _stored_ids(tmp_path) == {BOB: None, CAT: ids.other}


async def test_delete_by_route(fake: FakeOpenAI) -> None:
    """The Responses route deletes (a running background response too) and answers False for an unknown id;
    the Images route stores nothing, so it has nothing to delete and sends nothing."""
    client = make_client(f"{fake.origin}/v1")
    provider = ResponsesProvider(client, host_model="gpt-5.5", partial_images=0, retries=0, background=True,
                                 call_timeout=2.0)
    held = fake.hold("thinking")
    try:
        events = Events()
        job = asyncio.ensure_future(provider.create(ImageJob(prompt="slow", params={}), events))
        call = await fake.wait_for("POST /v1/responses")
        assert call.params.get("background") is True
        while not events.taken:
            await asyncio.sleep(0.01)
        running = events.taken[0][0]
        assert await provider.delete(running) is True
        assert await provider.delete(running) is False  # deleted before: the provider no longer holds it
        held.set()
        with pytest.raises(ProviderError):  # its round ends: the provider no longer holds the response
            await asyncio.wait_for(job, 10)
        images = ImagesProvider(client, image_model="gpt-image-2")
        before = len(fake.calls)
        assert await images.delete("resp_whatever") is False
        assert len(fake.calls) == before
    finally:
        await client.close()
