"""Image options written as flags in a text prompt (Telegram, the console): `--size wide`, `--quality high`,
`--background transparent` (or `--transparent`), `--file`. Flags may stand anywhere and are removed from the
prompt; an unknown flag or value is refused before anything is spent, listing what is valid."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import BadRequest
from core.spec import Background, Quality, Shape, SpecOptions

_VALUED = {"--size": Shape, "--quality": Quality, "--background": Background}
_SWITCHES = ("--transparent", "--file")


@dataclass(frozen=True, slots=True)
class Flags:
    prompt: str
    options: SpecOptions
    send_file: bool = False


def valid_flags() -> str:
    valued = [f"{flag} {'|'.join(v.value for v in kind)}" for flag, kind in _VALUED.items()]
    return ", ".join([*valued, *_SWITCHES])


def parse_flags(text: str) -> Flags:
    words: list[str] = []
    found: dict[str, str] = {}
    send_file = False
    tokens = text.split(" ")
    index = 0
    while index < len(tokens):
        token = tokens[index]
        lowered = token.strip().lower()
        if lowered.startswith("--") and len(lowered) > 2:
            if lowered in _VALUED:
                value = tokens[index + 1].strip().lower() if index + 1 < len(tokens) else ""
                allowed = [v.value for v in _VALUED[lowered]]
                if value not in allowed:
                    raise BadRequest("flags.bad_value", flag=lowered, value=value or "…", choices="|".join(allowed))
                found[lowered] = value
                index += 2
                continue
            if lowered == "--transparent":
                found["--background"] = Background.TRANSPARENT.value
            elif lowered == "--file":
                send_file = True
            else:
                raise BadRequest("flags.unknown", flag=token.strip(), valid=valid_flags())
            index += 1
            continue
        words.append(token)
        index += 1
    options = SpecOptions(
        shape=Shape(found["--size"]) if "--size" in found else None,
        quality=Quality(found["--quality"]) if "--quality" in found else None,
        background=Background(found["--background"]) if "--background" in found else None,
    )
    return Flags(prompt=" ".join(w for w in words if w).strip(), options=options, send_file=send_file)
