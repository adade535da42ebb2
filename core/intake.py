"""Intake: a request becomes a recorded round. The prompt is cleaned and checked, the parent (or the rerolled
round) resolved, the image spec decided (an edit keeps its parent's options unless the request sets new ones),
and the round written as `requested`, or as `refused` when it is refused at once."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from core import words
from core.errors import BadRequest, UnknownRound, UserFacingError
from core.events import ChannelKey, RoundRequest
from core.ports import Clock, Store
from core.records import NewRound, Round, RoundKind, RoundState
from core.spec import MAX_REFERENCES

# Format characters that only ever confuse the model or the chat (bidirectional overrides and isolates,
# invisible separators) go; ZWJ/ZWNJ and variation selectors stay: Persian, Indic scripts and emoji need them.
_KEEP_FORMAT = {"\u200c", "\u200d", "\ufe0f", "\ufe0e"}


@dataclass(frozen=True, slots=True)
class Plan:
    round: Round
    parent: Round | None
    refusal: UserFacingError | None = None


def clean_prompt(request: RoundRequest, max_chars: int) -> str:
    prompt = "".join(
        ch
        for ch in request.prompt
        if ch in "\n\t" or ch in _KEEP_FORMAT or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co")
    ).strip()
    if request.reroll_of is not None:
        return prompt
    if len(request.inputs) > MAX_REFERENCES:
        raise BadRequest("round.too_many_images", count=MAX_REFERENCES)
    if not prompt:
        if request.input_image is not None or request.reply_to is not None or request.parent_round:
            raise BadRequest("round.empty_instruction")
        raise BadRequest(f"round.empty_prompt.{request.key.platform.value}")
    if len(prompt) > max_chars:
        raise BadRequest("round.prompt_too_long", length=len(prompt), limit=max_chars)
    return prompt


async def plan(store: Store, clock: Clock, request: RoundRequest, prompt: str, lang: str, worker: str) -> Plan:
    """Resolve the parent (or the rerolled round), decide the image spec, and record the round. A known
    idempotency key raises `DuplicateRequest` (the store's)."""
    key = request.key
    parent: Round | None = None
    refusal: UserFacingError | None = None
    kind = RoundKind.EDIT if request.input_image is not None else RoundKind.GENERATE
    spec = request.options.resolve(None, references=len(request.inputs))
    input_shas: tuple[str, ...] = ()
    if request.reroll_of is not None:
        kind = RoundKind.REROLL
        source = await store.get_round(request.reroll_of)
        if source is None or not same_channel(source.key, key) or source.state is not RoundState.DELIVERED:
            refusal = UnknownRound("round.reroll_gone")
        elif source.prompt == words.FORGOTTEN:
            refusal = UnknownRound("round.reroll_forgotten")
        else:
            prompt, spec, input_shas = source.prompt, source.spec, source.input_shas
            parent = await store.get_round(source.parent_id) if source.parent_id else None
    elif request.reply_to is not None or request.parent_round is not None:
        kind = RoundKind.EDIT
        parent = await _parent(store, request)
        if parent is None:
            refusal = UnknownRound(f"round.parent_unknown.{key.platform.value}")
        else:
            spec = request.options.resolve(parent.spec, references=len(request.inputs))
    new = NewRound(
        idem_key=request.idempotency_key,
        key=key,
        user_id=request.actor.user_id,
        user_name=request.actor.display_name,
        parent_id=parent.id if parent else None,
        kind=kind,
        prompt=prompt,
        spec=spec,
        input_shas=input_shas,
        state=RoundState.REFUSED if refusal is not None else RoundState.REQUESTED,
        reason=refusal.reason if refusal is not None else None,
        owner=worker,
        lang=lang,
    )
    claimed = await store.create_round(new, clock())
    return Plan(round=claimed, parent=parent, refusal=refusal)


async def _parent(store: Store, request: RoundRequest) -> Round | None:
    """The image an edit starts from: named by the round id the replied-to message carries, else by the
    message itself; it must be of this channel and have an image (delivered, or on its way to the chat)."""
    parent = await store.get_round(request.parent_round) if request.parent_round is not None else None
    if parent is None and request.reply_to is not None:
        parent = await store.round_by_message(request.key, request.reply_to)
    if parent is None or not same_channel(parent.key, request.key):
        return None
    return parent if parent.state in (RoundState.DELIVERING, RoundState.DELIVERED) else None


def same_channel(a: ChannelKey, b: ChannelKey) -> bool:
    return (a.platform, a.community, a.channel) == (b.platform, b.community, b.channel)
