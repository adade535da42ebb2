"""The catalog of words: complete in every language, consistent placeholders and plurals, safe to show on
both platforms, and the only place user-facing sentences live (DESIGN §2 rule 9, §4 Language)."""

from __future__ import annotations

import ast
import re
import string
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from core.texts import DEFAULT_LANGUAGE, pick_language, say
from core.texts import commands as cmd
from core.texts.catalog import LOCALE_DIR, Language, languages, load

ROOT = Path(__file__).resolve().parents[2]
SOME_TIME = datetime(2025, 1, 2, 0, 0, tzinfo=UTC)
OTHERS = [lang for lang in languages() if lang != DEFAULT_LANGUAGE]


def forms(language: Language, msg_id: str) -> tuple[str, ...]:
    entry = language.entries[msg_id]
    return entry.plurals or (entry.singular,)


def fields(text: str) -> set[str]:
    """The `{name}` fields of a message (with their format spec: `{n:.1f}` differs from `{n}`)."""
    return {f"{name}:{spec}" for _, name, spec, _ in string.Formatter().parse(text) if name is not None}


def all_messages() -> list[tuple[str, str, str]]:
    """(language, id, text) for every form of every message in every catalog."""
    return [
        (lang, msg_id, text)
        for lang in languages()
        for msg_id in load(lang).entries
        for text in forms(load(lang), msg_id)
    ]


def sample_params(msg_id: str) -> dict[str, object]:
    """A value per field: a count, a time for `strftime`-style specs (`{resets_at:%H:%M}`), else a string."""
    params: dict[str, object] = {}
    for text in forms(load(DEFAULT_LANGUAGE), msg_id):
        for field in fields(text):
            name, _, spec = field.partition(":")
            params[name] = 2 if name == "count" else SOME_TIME if "%" in spec else f"<{name}>"
    return params


# -- completeness and consistency -------------------------------------------------------------------------


def test_there_is_a_chinese_catalog() -> None:
    assert "zh" in OTHERS


@pytest.mark.parametrize("lang", OTHERS)
def test_every_english_id_is_translated(lang: str) -> None:
    english, other = load(DEFAULT_LANGUAGE), load(lang)
    missing = sorted(
        msg_id for msg_id in english.entries
        if msg_id not in other.entries or not all(forms(other, msg_id))
    )
    assert missing == [], f"{len(missing)} ids lack a {lang} translation: {', '.join(missing)}"


@pytest.mark.parametrize("lang", OTHERS)
def test_no_translation_without_an_english_id(lang: str) -> None:
    stale = sorted(set(load(lang).entries) - set(load(DEFAULT_LANGUAGE).entries))
    assert stale == [], f"{lang} translates ids the English catalog no longer has: {', '.join(stale)}"


@pytest.mark.parametrize("lang", languages())
def test_no_id_is_defined_in_two_files(lang: str) -> None:
    seen: Counter[str] = Counter()
    where: dict[str, list[str]] = {}
    for path in sorted((LOCALE_DIR / lang).glob("*.po")):
        with path.open("rb") as handle:
            for message in read_po(handle, locale=lang):
                if message.id:
                    msg_id = str(message.id[0] if isinstance(message.id, tuple) else message.id)
                    seen[msg_id] += 1
                    where.setdefault(msg_id, []).append(path.name)
    twice = {msg_id: where[msg_id] for msg_id, n in seen.items() if n > 1}
    assert twice == {}, f"ids defined in two {lang} files (the later one silently wins): {twice}"


@pytest.mark.parametrize("lang", OTHERS)
def test_placeholders_match_english(lang: str) -> None:
    english, other = load(DEFAULT_LANGUAGE), load(lang)
    wrong = {}
    for msg_id in english.entries.keys() & other.entries.keys():
        expected = set().union(*(fields(t) for t in forms(english, msg_id)))
        for index, text in enumerate(forms(other, msg_id)):
            if fields(text) != expected:
                wrong[f"{msg_id}[{index}]"] = (sorted(expected), sorted(fields(text)))
    assert wrong == {}, f"placeholders differ from English: {wrong}"


def test_english_forms_share_their_placeholders() -> None:
    english = load(DEFAULT_LANGUAGE)
    uneven = [m for m in english.entries if len({frozenset(fields(t)) for t in forms(english, m)}) > 1]
    assert uneven == []


def test_messages_with_a_count_have_plural_forms() -> None:
    english = load(DEFAULT_LANGUAGE)
    singular_only = sorted(
        msg_id for msg_id, entry in english.entries.items()
        if "count:" in fields(entry.singular) and len(entry.plurals) != 2
    )
    assert singular_only == [], f"English messages taking {{count}} need msgid_plural and 2 forms: {singular_only}"


@pytest.mark.parametrize("lang", OTHERS)
def test_plural_entries_have_the_languages_number_of_forms(lang: str) -> None:
    language = load(lang)
    header = language.catalog.num_plurals
    wrong = [m for m, e in language.entries.items() if e.plurals and len(e.plurals) != header]
    assert wrong == []


def test_chinese_header_has_one_plural_form() -> None:
    zh = load("zh")
    assert zh.catalog.num_plurals == 1
    assert zh.catalog.plural_expr == "0"


@pytest.mark.parametrize("lang", languages())
def test_every_message_formats(lang: str) -> None:
    for msg_id in load(DEFAULT_LANGUAGE).entries:
        assert say(lang, msg_id, **sample_params(msg_id))


# -- say and pick_language --------------------------------------------------------------------------------


def test_plural_forms_follow_the_count() -> None:
    assert say("en", "credits.left", count=1) == "1 credit left today"
    assert say("en", "credits.left", count=3) == "3 credits left today"
    assert say("en", "credits.left", count=0) == "0 credits left today"
    assert "3" in say("zh", "credits.left", count=3)


def test_numbers_are_plain_digits() -> None:
    for lang in languages():
        assert "12345" in say(lang, "credits.left", count=12345)


def test_unknown_language_falls_back_to_english() -> None:
    assert say("fr", "button.reroll") == "Reroll"
    assert say("xx-YY", "credits.left", count=2) == say("en", "credits.left", count=2)


def test_unknown_id_is_an_error() -> None:
    with pytest.raises(KeyError):
        say("en", "no.such.message")


@pytest.mark.parametrize(
    ("client", "community", "default", "expected"),
    [
        ("zh-CN", None, "en", "zh"),
        ("zh-TW", "en", "en", "zh"),
        ("zh_Hans", None, "en", "zh"),
        ("zh-hant", None, "en", "zh"),
        ("zh", "en", "en", "zh"),
        ("en-US", "zh", "zh", "en"),
        ("en-GB", None, "zh", "en"),
        ("fr", "zh", "en", "zh"),  # not offered: the community's
        ("de-DE", None, "zh", "zh"),  # neither: the operator's default
        (None, None, "en", "en"),
        ("", "auto", "zh", "zh"),  # community `auto`: no language of its own
        ("pt-BR", "ja", "en", "en"),
        (None, None, "fr", "en"),  # a default Easel does not speak: English
    ],
)
def test_pick_language(client: str | None, community: str | None, default: str, expected: str) -> None:
    assert pick_language(client, community, default) == expected


# -- what the platforms show ------------------------------------------------------------------------------


def test_english_button_labels_are_exact() -> None:
    assert say("en", "button.reroll") == "Reroll"
    assert say("en", "button.cancel") == "Cancel"


def test_chinese_button_labels_are_chinese() -> None:
    assert say("zh", "button.reroll") == "重新生成"
    assert say("zh", "button.cancel") == "取消"


# What Discord's markdown (and Telegram's auto-linking of @names, used by no parse_mode text) would turn
# into formatting, links, pings or hidden text. Placeholders become a plain "0" first: a {mention} is meant.
# The console's own messages only reach a terminal, where backticks quote what to type.
MARKUP = {
    "bold, underline, strike or spoiler": re.compile(r"\*\*|__|~~|\|\|"),
    "code": re.compile(r"`"),
    "a link": re.compile(r"\]\(|https?://"),
    "a mass or user mention": re.compile(r"@(everyone|here)\b|<@[!&]?\d|<#\d"),
    "an @username Telegram would link": re.compile(r"(?<![\w@])@[A-Za-z]\w{3,}"),
    "italics": re.compile(r"(?<![\w*_])[*_](?=\S)[^*_\n]*?(?<=\S)[*_](?![\w*_])"),
    "a heading, quote, list or subtext line": re.compile(r"^\s*(#{1,3} |> |>>> |-# |[-*+] |\d+\. )", re.M),
}


def test_no_message_contains_unintended_markup() -> None:
    found = []
    for lang, msg_id, text in all_messages():
        if msg_id.startswith("console.") or msg_id.endswith(".console"):
            continue
        bare = re.sub(r"\{[^{}]*\}", "0", text)
        found += [f"{lang}:{msg_id}: {what}" for what, pattern in MARKUP.items() if pattern.search(bare)]
    assert found == []


def test_discord_length_limits() -> None:
    for lang in languages():
        for key, text in cmd.descriptions(lang).items():
            if key.startswith("dc."):
                assert 1 <= len(text) <= 100, (lang, key, text)
            else:
                assert 1 <= len(text) <= 256, (lang, key, text)
        assert len(say(lang, "dc.edit.modal_title")) <= 45
        assert len(say(lang, "dc.edit.field_label")) <= 45
        assert len(say(lang, "dc.edit.field_placeholder")) <= 100
        assert len(say(lang, "button.reroll")) <= 80
        assert len(say(lang, "button.cancel")) <= 80


# -- command descriptions ---------------------------------------------------------------------------------


def test_descriptions_cover_the_contracts_commands() -> None:
    keys = set(cmd.descriptions("en"))
    expected = {f"tg.{name}" for name in ("imagine", "quota", "usage", "cancel", "language", "help")}
    expected |= {"dc.imagine", "dc.edit", "dc.quota", "dc.usage", "dc.language", "dc.edit_image"}
    options = ("prompt", "size", "quality", "background", "image1", "image2", "image3", "image4")
    expected |= {f"dc.imagine.{o}" for o in options}
    expected |= {f"dc.edit.{o}" for o in ("instruction", "image", "image2", "image3", "image4")}
    expected |= {f"dc.quota.{s}" for s in ("show", "set", "grant", "default", "ban", "unban")}
    expected |= {"dc.quota.show.user", "dc.quota.set.user", "dc.quota.set.daily", "dc.quota.grant.user",
                 "dc.quota.grant.credits", "dc.quota.default.daily", "dc.quota.ban.user", "dc.quota.unban.user",
                 "dc.language.language"}
    assert expected <= keys, sorted(expected - keys)
    assert cmd.descriptions("zh").keys() == keys
    assert cmd.description("dc.edit_image") == "Edit image"  # the contract's name


def test_descriptions_are_localised() -> None:
    english, chinese = cmd.descriptions("en"), cmd.descriptions("zh")
    same = sorted(k for k in english if english[k] == chinese[k])
    assert same == [], f"untranslated descriptions: {same}"


def test_discord_localizations() -> None:
    loc = cmd.discord_localizations("dc.imagine.size")
    assert set(loc) == {"zh-CN", "zh-TW"}
    assert loc["zh-CN"] == cmd.description("dc.imagine.size", "zh")
    assert cmd.discord_localizations("cmd.dc.imagine.size") == loc
    with pytest.raises(KeyError):
        cmd.discord_localizations("dc.nope")


def test_telegram_languages_and_commands() -> None:
    assert cmd.telegram_languages() == ["zh"]
    names = [name for name, _ in cmd.telegram_commands("zh")]
    assert names == [name for name, _ in cmd.telegram_commands("en")]
    assert {"imagine", "quota", "usage", "cancel", "language", "help"} <= set(names)
    assert all(re.fullmatch(r"[a-z0-9_]{1,32}", name) for name in names)


# -- the boundary: no user-facing English outside the catalog ---------------------------------------------

SCANNED = ("core", "bots")
SKIPPED = (
    "core/texts/",  # the catalog itself
    "bots/process/",  # the operator's CLI, start-up summary and logs: not chat users
)
LOG_OBJECTS = {"log", "logger", "logging", "warnings"}
ARGPARSE_CALLS = {"ArgumentParser", "add_argument", "add_parser", "add_subparsers", "add_argument_group"}
SQL_VERBS = {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "CREATE", "ALTER", "DROP", "PRAGMA", "REPLACE"}
OPERATOR_CALLS = {"option"}  # core.settings: a setting's doc, for the README and env.example


def user_facing_errors() -> set[str]:
    """UserFacingError and its subclasses (by name), read from core/errors.py."""
    tree = ast.parse((ROOT / "core/errors.py").read_text(encoding="utf-8"))
    names = {"UserFacingError"}
    grew = True
    while grew:
        grew = False
        for node in tree.body:
            if (
                isinstance(node, ast.ClassDef)
                and node.name not in names
                and any(isinstance(b, ast.Name) and b.id in names for b in node.bases)
            ):
                names.add(node.name)
                grew = True
    return names | {"UsageError"}  # bots/telegram/args.py: its message is shown to the user


def _callee(call: ast.Call) -> tuple[str, str]:
    """(object, attribute) of `obj.attr(...)`, or ("", name) of `name(...)`."""
    func = call.func
    if isinstance(func, ast.Attribute):
        base = func.value
        while isinstance(base, ast.Attribute | ast.Call):
            base = base.func if isinstance(base, ast.Call) else base.value
        return (base.id if isinstance(base, ast.Name) else "", func.attr)
    return ("", func.id if isinstance(func, ast.Name) else "")


def _allowed_nodes(tree: ast.AST, shown_errors: set[str]) -> set[int]:
    """ids of nodes whose strings are not for chat users: docstrings, logs, operator errors, argparse."""
    allowed: set[int] = set()

    def allow(node: ast.AST) -> None:
        allowed.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                allow(body[0])
        elif isinstance(node, ast.Call):
            obj, name = _callee(node)
            if obj in LOG_OBJECTS or name in ARGPARSE_CALLS or name in OPERATOR_CALLS:
                allow(node)
            elif name and name[0].isupper() and name.endswith(("Error", "Exception")) and name not in shown_errors:
                allow(node)  # an operator's or a developer's error: ConfigError, FatalPlatformError, ValueError ...
        elif isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            _, name = _callee(node.exc)
            if name not in shown_errors:
                allow(node)
        elif isinstance(node, ast.Assert):
            allow(node)
    _allow_operator_helpers(tree, allowed)
    return allowed


def _allow_operator_helpers(tree: ast.AST, allowed: set[int]) -> None:
    """Constants, variables and functions that feed operator messages (`LOGIN_HELP`, `fatal_message` in
    `raise FatalPlatformError(fatal_message(error))`) hold operator words too."""
    if not isinstance(tree, ast.Module):
        return
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) in allowed}
    grew = True
    while grew:
        grew = False
        for node in ast.walk(tree):
            parts: list[ast.AST] = []
            if isinstance(node, ast.FunctionDef) and node.name in used:
                parts = [n for n in ast.walk(node) if isinstance(n, ast.Return) and n.value is not None]
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in used for t in node.targets):
                parts = [node.value]
            for part in parts:
                if id(part) not in allowed:
                    allowed.update(id(n) for n in ast.walk(part))
                    used |= {n.id for n in ast.walk(part) if isinstance(n, ast.Name)}
                    grew = True


def _text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(str(v.value) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def user_sentences() -> list[str]:
    shown_errors = user_facing_errors()
    found = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(SKIPPED):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            allowed = _allowed_nodes(tree, shown_errors)
            # The pieces of an f-string are judged as the whole f-string, not one by one.
            allowed |= {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
            for node in ast.walk(tree):
                if id(node) in allowed:
                    continue
                words = (_text(node) or "").split()
                if not words or words[0] in SQL_VERBS:
                    continue  # SQL (core/store) ends with `?` placeholders
                if len(words) >= 6 and words[-1].endswith((".", "!", "?")):
                    text = " ".join(words)
                    found.append(f"{rel}:{getattr(node, 'lineno', 0)}: {text[:80]}")
    return found


# Short UI labels ("Reroll", "Drawing… (preview)") are no sentences: they are caught where they are shown, as a
# keyword argument that platforms show, or a positional text argument of a call that sends or shows text.
SHOWN_KEYWORDS = {"text", "caption", "content", "label", "placeholder", "title", "description"}
SHOWN_POSITIONAL: dict[str, int | None] = {  # callee -> the shown argument's index (None: any)
    "send_message": None, "edit_message_text": None, "reply_text": None, "send_text": None,
    "Refusal": 0, "Notice": 0, "Button": 0, "InlineKeyboardButton": 0, "say": 0,
}
IDENTIFIER = re.compile(r"[a-z0-9_.:/-]*")  # a message id, a reason, a file name, a callback prefix


def _label(text: str) -> bool:
    """Words a person would read: a Latin word of 3+ letters outside placeholders, in something that is not an
    identifier-like token (ids, reasons and file names are lower case without spaces)."""
    bare = re.sub(r"\{[^{}]*\}", "", text).strip()
    return bool(re.search(r"[A-Za-z]{3,}", bare)) and not IDENTIFIER.fullmatch(bare)


def shown_labels(tree: ast.AST, allowed: set[int]) -> list[tuple[int, str]]:
    """(line, text) of labels shown by calls, directly or through a module constant (`caption=PREVIEW`)."""
    constants = {
        target.id: node.value
        for node in getattr(tree, "body", [])
        if isinstance(node, ast.Assign) and _text(node.value) is not None
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or id(node) in allowed:
            continue
        _, name = _callee(node)
        args: list[ast.expr] = [k.value for k in node.keywords if k.arg in SHOWN_KEYWORDS]
        if name in SHOWN_POSITIONAL:
            index = SHOWN_POSITIONAL[name]
            args += node.args if index is None else node.args[index: index + 1]
        for arg in args:
            text = _text(constants.get(arg.id, arg) if isinstance(arg, ast.Name) else arg)
            if text is not None and _label(text):
                found.append((getattr(arg, "lineno", 0), text))
    return found


def user_labels() -> list[str]:
    shown_errors = user_facing_errors()
    found = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(SKIPPED):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            labels = shown_labels(tree, _allowed_nodes(tree, shown_errors))
            found += [f"{rel}:{line}: {text[:80]}" for line, text in labels]
    return found


def test_the_scan_sees_a_shown_label() -> None:
    tree = ast.parse(
        'bot.send_message(chat, "Working on it…")\nButton(label="Reroll")\nRefusal(text, "error")\n'
        'send_photo(chat, data, caption=f"{n} · {p}", filename="preview.png")\nview.say(say("en", "apology"))\n'
        'WORKING = "Working…"\nbot.edit_message_text(WORKING, chat_id=chat)'
    )
    assert sorted(text for _, text in shown_labels(tree, set())) == ["Reroll", "Working on it…", "Working…"]


def test_the_scan_sees_a_user_sentence() -> None:
    tree = ast.parse('log.info("This is a log line that is long enough.")\nX = "Please try again in a minute or two."')
    allowed = _allowed_nodes(tree, user_facing_errors())
    texts = [_text(n) for n in ast.walk(tree) if id(n) not in allowed and _text(n)]
    assert texts == ["Please try again in a minute or two."]


def test_the_scan_runs_over_the_tree() -> None:
    assert isinstance(user_sentences(), list)
    assert isinstance(user_labels(), list)


def test_no_user_sentence_outside_the_catalog() -> None:
    found = user_sentences() + user_labels()
    assert found == [], f"{len(found)} user-facing words outside the catalog:\n" + "\n".join(found)
