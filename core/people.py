"""Who is who: users seen (so moderators can name them), moderators and operators, the communities Easel
serves, and the language each person is answered in."""

from __future__ import annotations

import time
from collections.abc import Callable

from core.errors import NotModerator, NotOpen, UnknownUser
from core.events import Actor, ChannelKey, Platform, UserRef
from core.ports import Clock, Store
from core.settings import Settings
from core.texts import pick_language

LANGUAGE_TTL = 30.0  # seconds a community's language is cached (a moderator's change here is seen at once)


class People:
    def __init__(
        self, settings: Settings, store: Store, clock: Clock, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.monotonic = monotonic
        self._seen: dict[tuple[str, str], tuple[str | None, str]] = {}
        self._languages: dict[tuple[str, str], tuple[float, str | None]] = {}

    def is_operator(self, actor: Actor) -> bool:
        return self.settings.is_operator(actor.platform, actor.user_id)

    def is_moderator(self, actor: Actor) -> bool:
        return actor.is_moderator or self.is_operator(actor)

    def require_moderator(self, actor: Actor) -> None:
        if not self.is_moderator(actor):
            raise NotModerator("desk.not_moderator")

    def require_open(self, key: ChannelKey, actor: Actor) -> None:
        """`EASEL_COMMUNITIES`: outside the listed communities only operators are served."""
        allowed = self.settings.communities
        if allowed and (key.platform, key.community) not in allowed and not self.is_operator(actor):
            raise NotOpen("service.private")

    def serves(self, platform: Platform, community: str) -> bool:
        allowed = self.settings.communities
        return not allowed or (platform, community) in allowed

    async def seen(self, actor: Actor) -> None:
        """Remember a user's name so moderators can write `@name`; writes only when something changed."""
        cache_key = (actor.platform.value, actor.user_id)
        value = (actor.username.lower() if actor.username else None, actor.display_name)
        if self._seen.get(cache_key) == value:
            return
        await self.store.remember_user(actor.platform, actor.user_id, value[0], actor.display_name, self.clock())
        self._seen[cache_key] = value

    def forget(self, platform: Platform, user_id: str) -> None:
        self._seen.pop((platform.value, user_id), None)

    async def resolve(self, platform: Platform, target: UserRef) -> tuple[str, str]:
        """A moderator's target as (user id, name). Call only after the moderator check: an answer here tells
        whether Easel has seen a username."""
        found = await self.store.find_user(platform, target)
        if found is not None:
            return found[0], target.display_name or found[1] or found[0]
        if target.user_id is not None:
            return target.user_id, target.display_name or target.user_id
        raise UnknownUser("desk.unknown_user", name=(target.username or "").lstrip("@"))

    def is_self(self, actor: Actor, target: UserRef | None) -> bool:
        if target is None:
            return True
        if target.user_id is not None:
            return target.user_id == actor.user_id
        name = (target.username or "").lstrip("@").lower()
        return bool(name) and actor.username is not None and actor.username.lower() == name

    async def community_language(self, key: ChannelKey) -> str | None:
        cache_key = (key.platform.value, key.community)
        cached = self._languages.get(cache_key)
        now = self.monotonic()
        if cached is not None and now - cached[0] < LANGUAGE_TTL:
            return cached[1]
        language = await self.store.community_language(key.platform, key.community)
        self._languages[cache_key] = (now, language)
        return language

    def language_changed(self, key: ChannelKey, language: str | None) -> None:
        self._languages[(key.platform.value, key.community)] = (self.monotonic(), language)

    async def language(self, actor: Actor, key: ChannelKey) -> str:
        """The requester's client language when Easel speaks it, else the community's, else the operator's."""
        return pick_language(actor.locale, await self.community_language(key), self.settings.language)
