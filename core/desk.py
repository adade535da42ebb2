"""The quota desk: credits answers, moderator verbs and usage reports, as one command value and one
dispatcher. Adapters parse their platform's syntax into a `DeskCommand`; the desk decides.

Authority comes from the platform (`Actor.is_moderator`, asked of the platform on every command) plus
`EASEL_OPERATORS`; it is checked before a target user is resolved, and a refused action changes nothing.
Moderators cannot raise their own allowance or grant to themselves, nor give more than
`EASEL_MAX_DAILY_CREDITS`; operators can. Every change is audited and keyed by the platform's idempotency
key, so a redelivered command is applied once."""

from __future__ import annotations

from core import texts, words
from core.errors import BadRequest, NotModerator, UserFacingError
from core.events import Actor, ChannelKey, DeskCommand, Platform, Verb
from core.outcomes import Notice
from core.people import People
from core.ports import Clock, Store
from core.records import COMMUNITY_DEFAULT, ModChange, ModVerb, day_of, next_reset
from core.settings import Settings
from core.spec import ImageSpec
from core.texts import say

HARD_LIMIT = 100_000  # no allowance or grant beyond this, even for operators


class Desk:
    def __init__(self, settings: Settings, store: Store, people: People, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.people = people
        self.clock = clock

    async def seen(self, actor: Actor, community: str) -> None:
        await self.people.seen(actor)

    def help_text(self, platform: Platform, lang: str) -> str:
        return say(lang, f"help.{platform.value}")

    async def run(self, command: DeskCommand) -> Notice:
        """Run one command; refusals come back as ephemeral notices in the asker's language. A redelivered
        command (a known idempotency key) raises `DuplicateRequest`: the adapter answers nothing, once more."""
        lang = await self.people.language(command.actor, command.key)
        try:
            await self.people.seen(command.actor)
            return await self._dispatch(command, lang)
        except UserFacingError as error:
            return Notice(error.text(lang), ephemeral=True)

    async def _dispatch(self, c: DeskCommand, lang: str) -> Notice:
        if c.verb is Verb.SHOW:
            return await self._show(c, lang)
        if c.verb is Verb.USAGE:
            return await self._usage(c, lang)
        if c.verb is Verb.LANGUAGE and c.language is None:
            current = await self.people.community_language(c.key)
            return Notice(say(lang, "desk.language_is", language=say(lang, f"language.{current or 'auto'}")))
        self.people.require_moderator(c.actor)  # before any target is resolved
        if c.verb is Verb.LANGUAGE:
            return await self._language(c, lang)
        if c.verb is Verb.DEFAULT:
            daily = self._amount(c, minimum=0)
            await self._apply(c, ModVerb.SET_DEFAULT, None, daily)
            return Notice(say(lang, "desk.default_set", count=daily))
        if c.target is None:
            raise BadRequest("desk.need_target")
        if self.people.is_self(c.actor, c.target) and not self.people.is_operator(c.actor) and c.verb in (
            Verb.SET, Verb.GRANT
        ):
            raise NotModerator("desk.not_yourself", reason="self_grant")
        user_id, name = await self.people.resolve(c.key.platform, c.target)
        if user_id == c.actor.user_id and not self.people.is_operator(c.actor) and c.verb in (Verb.SET, Verb.GRANT):
            raise NotModerator("desk.not_yourself", reason="self_grant")
        if c.verb is Verb.SET:
            daily = self._amount(c, minimum=0)
            await self._apply(c, ModVerb.SET_DAILY, user_id, daily)
            report = await self._report(c.key, user_id, name, lang)
            return Notice(say(lang, "desk.daily_set", name=name, count=daily) + " " + report)
        if c.verb is Verb.GRANT:
            credits = self._amount(c, minimum=1)
            await self._check_grant_ceiling(c, user_id, credits)
            await self._apply(c, ModVerb.GRANT, user_id, credits)
            report = await self._report(c.key, user_id, name, lang)
            return Notice(say(lang, "desk.granted", name=name, count=credits) + " " + report)
        banned = c.verb is Verb.BAN
        await self._apply(c, ModVerb.BAN if banned else ModVerb.UNBAN, user_id, None)
        if banned:
            return Notice(say(lang, "desk.banned", name=name))
        return Notice(say(lang, "desk.unbanned", name=name) + " " + await self._report(c.key, user_id, name, lang))

    def _amount(self, c: DeskCommand, minimum: int) -> int:
        value = c.amount if c.amount is not None else -1
        ceiling = HARD_LIMIT if self.people.is_operator(c.actor) else self.settings.max_daily_credits
        if not minimum <= value <= HARD_LIMIT:
            raise BadRequest("desk.amount_range", low=minimum, high=ceiling)
        if value > ceiling:
            raise NotModerator("desk.over_ceiling", reason="over_ceiling", high=ceiling)
        return value

    async def _check_grant_ceiling(self, c: DeskCommand, user_id: str, credits: int) -> None:
        if self.people.is_operator(c.actor):
            return
        day = day_of(self.clock())
        balance = await self.store.balance(c.key.platform, c.key.community, user_id, day, self.settings.daily_credits)
        ceiling = self.settings.max_daily_credits
        if balance.granted + credits > ceiling:
            raise NotModerator("desk.grant_ceiling", reason="over_ceiling", high=ceiling,
                               left=max(0, ceiling - balance.granted))

    async def _apply(self, c: DeskCommand, verb: ModVerb, target: str | None, value: int | None,
                     text_value: str | None = None) -> None:
        await self.store.moderate(
            ModChange(
                platform=c.key.platform.value,
                community=c.key.community,
                actor_id=c.actor.user_id,
                verb=verb,
                target=target if target != COMMUNITY_DEFAULT else None,
                value=value,
                idem_key=c.idempotency_key,
                now=self.clock(),
                text_value=text_value,
            )
        )

    async def _language(self, c: DeskCommand, lang: str) -> Notice:
        code = (c.language or "").strip().lower()
        if code != texts.AUTO and code not in texts.languages():
            raise BadRequest("desk.language_invalid", choices=", ".join([texts.AUTO, *texts.languages()]))
        chosen = None if code == texts.AUTO else code
        await self._apply(c, ModVerb.LANGUAGE, None, None, text_value=chosen)
        self.people.language_changed(c.key, chosen)
        shown = chosen or lang
        return Notice(say(shown, "desk.language_set", language=say(shown, f"language.{code}")))

    async def _show(self, c: DeskCommand, lang: str) -> Notice:
        if self.people.is_self(c.actor, c.target):
            return Notice(await self._report(c.key, c.actor.user_id, "", lang), ephemeral=True)
        self.people.require_moderator(c.actor)
        assert c.target is not None
        user_id, name = await self.people.resolve(c.key.platform, c.target)
        if user_id == c.actor.user_id:
            name = ""
        return Notice(await self._report(c.key, user_id, name, lang), ephemeral=True)

    async def _report(self, key: ChannelKey, user_id: str, name: str, lang: str) -> str:
        now = self.clock()
        bal = await self.store.balance(key.platform, key.community, user_id, day_of(now), self.settings.daily_credits)
        left = words.credits_left(lang, bal.left)
        own = name == ""
        msg = "desk.report_own" if own else "desk.report_other"
        lines = [say(lang, msg, name=name, left=left, daily=bal.daily, used=bal.used)]
        if bal.granted:
            lines.append(say(lang, "desk.report_granted", count=bal.granted))
        if bal.banned:
            lines.append(say(lang, "desk.report_banned"))
        lines.append(say(lang, "desk.report_reset", time=f"{next_reset(now):%H:%M}"))
        costs = self.settings.cost_table
        low, high = ImageSpec().cost(costs), max(costs.values())
        if high > 1:  # say what an image costs when some cost more than one credit
            lines.append(say(lang, "desk.report_costs", low=low, high=high))
        return " ".join(lines)

    async def _usage(self, c: DeskCommand, lang: str) -> Notice:
        now = self.clock()
        today, month = day_of(now), day_of(now)[:8] + "01"
        platform, community = c.key.platform, c.key.community
        if not self.people.is_moderator(c.actor):
            mine_today = await self.store.usage_totals(platform, community, today, c.actor.user_id)
            mine_month = await self.store.usage_totals(platform, community, month, c.actor.user_id)
            text = say(lang, "usage.own", today=self._totals(lang, mine_today), month=self._totals(lang, mine_month))
            return Notice(text, ephemeral=True)
        all_today = await self.store.usage_totals(platform, community, today)
        all_month = await self.store.usage_totals(platform, community, month)
        text = say(lang, "usage.community", today=self._totals(lang, all_today), month=self._totals(lang, all_month))
        top = await self.store.top_users(platform, community, month, 5)
        detail = None
        if top:
            entries = ", ".join(
                say(lang, "usage.top_entry", name=u.name or u.user_id, credits=u.credits, images=u.images) for u in top
            )
            detail = say(lang, "usage.top", entries=entries)
        return Notice(text, ephemeral=True, detail=detail)

    @staticmethod
    def _totals(lang: str, totals: object) -> str:
        from core.records import UsageTotals

        assert isinstance(totals, UsageTotals)
        return say(lang, "usage.totals", images=totals.images, credits=totals.credits, usd=f"{totals.usd:.2f}")

    async def migrate_community(self, platform: Platform, old: str, new: str) -> None:
        """A Telegram group became a supergroup: its rounds, credits and policies move to the new id."""
        await self.store.migrate_community(platform, old, new)
