"""The Discord adapter: connects discord.py to the studio. `easel run` builds one `DiscordBot` per process.

Modules: discord_commands (the command tree), discord_interactions (slash commands and buttons),
discord_messages (replies and mentions), discord_views (rendering a round), discord_common (translation).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket

from bots.discord.commands import CatalogTranslator, build_tree
from bots.discord.common import AttachmentFetcher, plain
from bots.discord.communities import CommunityGate
from bots.discord.interactions import InteractionHandlers
from bots.discord.messages import MessageHandler
from bots.discord.registration import register_commands
from bots.discord.views import EaselButton, MessageRoundView
from bots.process.config import Settings
from core.errors import FatalPlatformError
from core.events import Platform
from core.ports import Services
from core.records import Round

log = logging.getLogger(__name__)

INTENTS_HELP = (
    "Discord refused the connection because the bot asks for the privileged Message Content intent, which "
    "is not enabled. Enable it in the Discord Developer Portal (Applications -> your app -> Bot -> "
    "Privileged Gateway Intents -> Message Content Intent), then start Easel again."
)
LOGIN_HELP = (
    "Discord rejected DISCORD_TOKEN ({detail}). Copy the bot token from the Discord Developer Portal "
    "(Applications -> your app -> Bot -> Reset Token) into DISCORD_TOKEN, then start Easel again."
)


def intents() -> discord.Intents:
    chosen = discord.Intents.none()
    chosen.guilds = True
    chosen.guild_messages = True
    chosen.dm_messages = True
    chosen.message_content = True  # privileged: needed to read replies (README)
    return chosen


class EaselClient(discord.Client):
    """The one client of a process. Unsharded (shard 0 of 1, as discord.py connects by default), or, with
    `EASEL_DISCORD_SHARDS`, one shard (`shard_id`/`shard_count`); `ShardedEaselClient` runs several."""

    def __init__(self, bot: DiscordBot, fetcher: AttachmentFetcher, *, guild_ready_timeout: float,
                 **shard_options: Any) -> None:
        # Easel never joins voice: skip discord.py's start-up warnings about missing voice libraries.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        super().__init__(
            intents=intents(),
            allowed_mentions=discord.AllowedMentions.none(),  # no @everyone/@here/roles/users/reply pings
            guild_ready_timeout=guild_ready_timeout,
            max_ratelimit_timeout=60.0,  # a longer rate-limit wait fails (and refunds) instead of hanging
            **shard_options,
        )
        self.bot = bot
        self.gate = CommunityGate(bot.settings)
        self.handlers = InteractionHandlers(bot.services, fetcher, self.gate)
        self.messages = MessageHandler(self, bot.services, fetcher, self.gate)
        self.tree = build_tree(self, self.handlers)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(EaselButton)
        await self.tree.set_translator(CatalogTranslator())
        if self.bot.registers_commands:
            await register_commands(self, self.tree)

    async def on_ready(self) -> None:
        await self.bot.send_notices()

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self.gate.on_join(self, guild)

    async def on_message(self, message: discord.Message) -> None:
        await self.messages.on_message(message)

    async def on_easel_press(self, interaction: discord.Interaction, action: str) -> None:
        await self.handlers.press(interaction, action)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        log.exception("Discord event %s failed", event_method)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # Discord allows one IDENTIFY per 5 s (max_concurrency 1); the first one goes at once.
        if not initial:
            await asyncio.sleep(self.bot.identify_interval)


class ShardedEaselClient(EaselClient, discord.AutoShardedClient):
    """Several shards in one process (`EASEL_DISCORD_SHARDS=0,1/4`): discord.py's AutoShardedClient with the
    listed `shard_ids` out of `shard_count` (it then connects to the configured gateway URL)."""


def make_client(bot: DiscordBot, fetcher: AttachmentFetcher, guild_ready_timeout: float) -> EaselClient:
    shards = bot.settings.discord_shards
    if shards is None:
        return EaselClient(bot, fetcher, guild_ready_timeout=guild_ready_timeout)
    if len(shards.ids) == 1:
        return EaselClient(bot, fetcher, guild_ready_timeout=guild_ready_timeout, shard_id=shards.ids[0],
                           shard_count=shards.total)
    return ShardedEaselClient(bot, fetcher, guild_ready_timeout=guild_ready_timeout, shard_ids=list(shards.ids),
                              shard_count=shards.total)


class DiscordBot:
    connect_timeout = 120.0  # seconds from login to READY before start-up gives up

    def __init__(self, settings: Settings, services: Services, *, on_fatal: Callable[[str], None] | None = None,
                 guild_ready_timeout: float = 2.0, identify_interval: float = 5.0) -> None:
        self.settings = settings
        self.identify_interval = identify_interval
        self.services = services
        self.on_fatal = on_fatal
        self.guild_ready_timeout = guild_ready_timeout
        self._session: aiohttp.ClientSession | None = None
        self._client: EaselClient | None = None
        self._gateway: asyncio.Task[None] | None = None
        self._stopping = False
        self._notices_lock = asyncio.Lock()

    @property
    def registers_commands(self) -> bool:
        """One worker registers the application commands: the one that runs shard 0 (or every shard)."""
        shards = self.settings.discord_shards
        return shards is None or 0 in shards.ids

    @property
    def ready(self) -> bool:
        client = self._client
        return client is not None and client.is_ready() and not client.is_closed()

    @property
    def client(self) -> EaselClient:
        if self._client is None:
            raise RuntimeError("DiscordBot.start() has not been called")
        return self._client

    async def start(self) -> None:
        """Log in, register the commands, connect, and return once the gateway is ready.
        Raises FatalPlatformError for a bad token or missing intents (the process must exit)."""
        token = self.settings.discord_token
        if not token:
            raise FatalPlatformError("DISCORD_TOKEN is not set")
        # The only way to point discord.py elsewhere: class attributes (one bot per process).
        discord.http.Route.BASE = self.settings.discord_api_url
        if self.settings.discord_gateway_url:
            DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.settings.discord_gateway_url)
        self._stopping = False
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60, sock_connect=10))
        fetcher = AttachmentFetcher(self._session, self.settings.discord_api_url)
        self._client = make_client(self, fetcher, self.guild_ready_timeout)
        try:
            await self._client.login(token)
            self._gateway = asyncio.create_task(self._client.connect(reconnect=True), name="easel-discord")
            ready = asyncio.create_task(self._client.wait_until_ready())
            await asyncio.wait({self._gateway, ready}, timeout=self.connect_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                ready.cancel()
                if not self._gateway.done():
                    raise FatalPlatformError(f"The Discord gateway did not become ready within "
                                             f"{self.connect_timeout:g} s; check EASEL_DISCORD_GATEWAY_URL and "
                                             "the network.")
                error = self._gateway.exception() if not self._gateway.cancelled() else None
                raise FatalPlatformError(fatal_message(error))
        except discord.LoginFailure:
            await self.stop()
            raise FatalPlatformError(LOGIN_HELP.format(detail="401 Unauthorized")) from None
        except FatalPlatformError:
            await self.stop()
            raise
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            await self.stop()
            raise FatalPlatformError(
                f"Could not reach Discord at {self.settings.discord_api_url} ({type(exc).__name__}); "
                "check EASEL_DISCORD_API_URL and the network."
            ) from None
        except BaseException:  # cancelled while starting (a signal): leave nothing running
            await self.stop()
            raise
        self._gateway.add_done_callback(self._gateway_ended)
        log.info("Discord: connected as %s", self._client.user)

    async def stop(self) -> None:
        """Close the connection; safe to call twice or after a failed start."""
        self._stopping = True
        if self._client is not None and not self._client.is_closed():
            await self._client.close()
        if self._gateway is not None:
            await asyncio.gather(self._gateway, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _gateway_ended(self, task: asyncio.Task[None]) -> None:
        if self._stopping or task.cancelled():
            return
        message = fatal_message(task.exception())
        log.critical("%s", message)
        if self.on_fatal is not None:
            self.on_fatal(message)

    def view_for_round(self, item: Round) -> MessageRoundView:
        """A view for a round picked up after a restart: it answers in the round's channel, replying to the
        message that showed its progress (or the channel itself)."""
        channel = self.client.get_partial_messageable(int(item.key.thread or item.key.channel))
        anchor = item.progress_message if (item.progress_message or "").isdigit() else None
        message = channel.get_partial_message(int(anchor)) if anchor else channel.get_partial_message(0)
        return MessageRoundView(cast(discord.Message, message), lang=self.settings.language)

    async def send_notices(self) -> None:
        """Messages the core kept for this platform (e.g. "your round was interrupted and not charged")."""
        async with self._notices_lock:
            try:
                pending = await self.services.notices.take(Platform.DISCORD)
            except Exception:
                log.exception("could not read pending notices")
                return
            for notice in pending:
                await self._send_notice(notice.id, notice.key.channel, notice.reply_to, notice.text)

    async def _send_notice(self, notice_id: int, channel_id: str, reply_to: str | None, text: str) -> None:
        client = self.client
        channel = client.get_partial_messageable(int(channel_id))
        reference = None
        if reply_to is not None:
            reference = discord.MessageReference(message_id=int(reply_to), channel_id=int(channel_id),
                                                 fail_if_not_exists=False)
        try:
            await channel.send(plain(text), reference=reference)  # type: ignore[arg-type]
        except (discord.NotFound, discord.Forbidden):
            log.warning("notice %s: channel %s is gone or closed to Easel; dropped", notice_id, channel_id)
        except discord.HTTPException:
            log.exception("notice %s not sent; kept for the next start", notice_id)
            return
        await self.services.notices.sent(notice_id)


def fatal_message(error: BaseException | None) -> str:
    """What the operator must do, for an error that ended the gateway connection."""
    if isinstance(error, discord.PrivilegedIntentsRequired):
        return INTENTS_HELP
    if isinstance(error, discord.ConnectionClosed):
        if error.code == 4014:
            return INTENTS_HELP
        if error.code == 4004:
            return LOGIN_HELP.format(detail="gateway close code 4004")
        return f"Discord closed the gateway connection for good (close code {error.code})."
    if isinstance(error, discord.LoginFailure):
        return LOGIN_HELP.format(detail="401 Unauthorized")
    if error is None:
        return "The Discord connection ended unexpectedly."
    return f"The Discord connection failed ({type(error).__name__})."

