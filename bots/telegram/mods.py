"""Who moderates a Telegram chat (DESIGN §4): its creator and administrators, asked of the Bot API.

- Asked fresh for each moderator command; an answer is reused for at most `ttl` seconds (a burst of
  commands), so a demoted admin loses the power within seconds, never after a stale cache.
- Anonymous admins post as the group itself: `sender_chat.id == chat.id` (platform-limits S-7). A message
  sent on behalf of a channel (a linked channel, or any other) is not a moderator, and the shared anonymous
  admin bot id (1087968824) is never trusted by itself.
- In a private chat nobody is a platform moderator; `EASEL_OPERATORS` is applied by the core.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from telegram import Bot, Message
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import TelegramError

log = logging.getLogger(__name__)

MODERATOR_STATUSES = frozenset({ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR})


class ModeratorCheck:
    def __init__(self, bot: Bot, ttl: float = 3.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.bot = bot
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[tuple[int, int], tuple[float, bool]] = {}

    async def is_moderator(self, message: Message) -> bool:
        chat = message.chat
        if chat.type == ChatType.PRIVATE:
            return False
        if message.sender_chat is not None:
            return message.sender_chat.id == chat.id
        if message.from_user is None:
            return False
        return await self.is_admin(chat.id, message.from_user.id)

    async def is_admin(self, chat_id: int, user_id: int) -> bool:
        now = self.clock()
        cached = self._cache.get((chat_id, user_id))
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            member = await self.bot.get_chat_member(chat_id, user_id)
        except TelegramError as error:
            log.warning("getChatMember failed (%s); treating the user as a member", type(error).__name__)
            return False
        answer = member.status in MODERATOR_STATUSES
        if len(self._cache) > 1000:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[(chat_id, user_id)] = (now + self.ttl, answer)
        return answer
