"""Wording shown to users, once for every platform. Short, plain text (no markup), says what to do."""

from __future__ import annotations

from core.events import Platform

MAX_CAPTION_PROMPT = 180


def credits_phrase(left: int) -> str:
    return f"{left} credit left today" if left == 1 else f"{left} credits left today"


def snippet(text: str, limit: int = MAX_CAPTION_PROMPT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def caption(number: int, prompt: str, left: int, parent_number: int | None) -> str:
    lineage = f" (from #{parent_number})" if parent_number is not None else ""
    return f"#{number}{lineage} · {snippet(prompt)} · {credits_phrase(left)}"


EMPTY_PROMPT = {
    Platform.TELEGRAM: "Tell me what to draw, e.g. /imagine a red fox in the snow",
    Platform.DISCORD: "Tell me what to draw, e.g. /imagine prompt: a red fox in the snow",
    Platform.CONSOLE: "Type a prompt, e.g. a red fox in the snow",
}

REPLY_HINT = {
    Platform.TELEGRAM: "reply to any of my images with what to change",
    Platform.DISCORD: "reply to any of my images with what to change",
    Platform.CONSOLE: "type `reply N <what to change>`",
}


def queued(position: int) -> str:
    """`position` is the 1-based place in the provider queue."""
    ahead = position - 1
    if ahead <= 0:
        return "Queued: you're next."
    return f"Queued: {ahead} ahead of you."


def help_text(platform: Platform) -> str:
    if platform is Platform.TELEGRAM:
        make = "/imagine <prompt> — make an image (in a private chat, just type the prompt)"
        edit_photo = "Send a photo with the caption /imagine <change>, or reply to a photo with it, to edit it."
        quota = (
            "/quota — your credits · moderators: /quota <user>, /quota set <n> <user>, /quota grant <n> <user>, "
            "/quota default <n>, /quota ban <user>, /quota unban <user> (or reply to the user's message "
            "instead of naming them)"
        )
    elif platform is Platform.DISCORD:
        make = "/imagine prompt: <text> [size] [quality] — make an image"
        edit_photo = "/edit instruction: <text> image: <file> edits an image you upload."
        quota = (
            "/quota show — your credits · moderators (Manage Server): /quota show user:, /quota set user: daily:, "
            "/quota grant user: credits:, /quota default daily:, /quota ban user:, /quota unban user:"
        )
    else:
        make = "<prompt> — make an image"
        edit_photo = "`edit PATH <change>` edits an image file."
        quota = "`quota`, `quota set N USER`, `quota grant N USER`, `quota default N`, `quota ban USER`, `usage`"
    return "\n".join(
        [
            "Easel makes images and refines them with you, round after round.",
            make,
            f"To refine, {REPLY_HINT[platform]}; replying to an older image branches from it.",
            edit_photo,
            "Reroll makes a new image from the same prompt, charged to whoever presses it.",
            quota,
            "/usage — images and credits used here" if platform is not Platform.CONSOLE else "",
            "Failed or refused images cost nothing. Credits reset every day at 00:00 UTC.",
        ]
    ).replace("\n\n", "\n")


INTERRUPTED = (
    "Your image #{number} (“{prompt}”) was interrupted because Easel restarted. It was not charged; please ask again."
)
SHUTTING_DOWN = "Easel is restarting right now and can't take new images. Try again in a minute."
STOPPED_MIDWAY = "Easel had to restart before your image was ready. It was not charged; please ask again."
NOT_MODERATOR = "Only moderators can do that here. Ask a moderator of this community if you need more credits."
