"""The fake Discord server plus what the shared fake does not speak yet: message context-menu commands (type 3)
and modals (callback type 9, then a MODAL_SUBMIT interaction)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.fake_discord import DiscordError, FakeChannel, FakeDiscord, FakeInteraction, FakeMember, FakeUser
from tests.fakes.fake_discord import _Upload as Upload

CB_MODAL = 9
TEXT_INPUT = 4


class MenuDiscord(FakeDiscord):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.modals: dict[int, dict[str, Any]] = {}  # by interaction id: the modal Easel opened

    async def _r_interaction_callback(self, request: web.Request, params: dict[str, Any],
                                      uploads: list[Upload]) -> Any:
        if int(params.get("type", 0)) != CB_MODAL:
            return await super()._r_interaction_callback(request, params, uploads)
        found = self.interactions.get(params["_path"]["token"])
        if found is None or str(found.id) != params["_path"]["interaction_id"]:
            raise DiscordError(404, 10062, "Unknown interaction")
        if found.acked:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        data = params["data"]
        assert 1 <= len(data["title"]) <= 45 and data["custom_id"], data
        found.acked, found.ack_type = True, CB_MODAL
        self.modals[found.id] = data
        return {"interaction": {"id": str(found.id), "type": found.type, "response_message_id": None,
                                "response_message_loading": False, "response_message_ephemeral": False}}

    async def message_command(self, channel: FakeChannel, user: FakeUser | FakeMember, name: str,
                              target: dict[str, Any], *, locale: str = "en-US") -> FakeInteraction:
        """INTERACTION_CREATE for a registered message command (type 3) used on `target`."""
        command = self.command(name)
        assert command["type"] == 3, command
        plain_user = user.user if isinstance(user, FakeMember) else user
        found = self._interaction_base(2, channel, plain_user)
        found.payload["locale"] = locale
        found.payload["data"] = {"id": command["id"], "name": name, "type": 3, "target_id": target["id"],
                                 "resolved": {"messages": {target["id"]: target}}}
        return await self._dispatch_interaction(found)

    async def submit_modal(self, opened_by: FakeInteraction, *values: str) -> FakeInteraction:
        """The user fills in the modal opened for `opened_by` (its text inputs, in order) and submits it."""
        modal = self.modals[opened_by.id]
        inputs = [c for row in modal["components"] for c in row["components"] if c["type"] == TEXT_INPUT]
        assert len(inputs) == len(values), inputs
        found = self._interaction_base(5, opened_by.channel, opened_by.user)
        found.payload["locale"] = opened_by.payload["locale"]
        found.payload["data"] = {"custom_id": modal["custom_id"], "components": [
            {"type": 1, "components": [{"type": TEXT_INPUT, "custom_id": c["custom_id"], "value": value}]}
            for c, value in zip(inputs, values, strict=True)]}
        return await self._dispatch_interaction(found)
