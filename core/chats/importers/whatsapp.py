"""WhatsApp chat exports: the `.txt` file, or the `.zip` export with or without media.

Header layouts, in every locale variant users report:
  Android  `31/12/20, 23:59 - Name: text`      iOS  `[31/12/2020, 23:59:59] Name: text`
  old iOS  `12/31/20, 11:59:59 PM: Name: text`  Finnish `31.12.2020 klo 23.59 - Name: text`
Dates use `/`, `.` or `-`, 2- or 4-digit years, or the year first; times are 12 h (`PM`, `pm`,
`p. m.`) or 24 h, with `:` or `.`, with or without seconds; any space may be a no-break one.

Contract: one `ParsedChat` per export, messages in file order (the app's order; its notices
may carry slightly earlier times, kept as written), local wall-clock ISO timestamps. The
day/month order comes from the whole file (`date_map`). Header lines without `Name: ` are
system messages (sender None), and so are iOS's own notices, which it writes as
`Group: \\u200e<notice>`. Bodies keep their newlines and are never normalised; invisible
direction marks are stripped from headers, names and non-text placeholders only.

Speed is a requirement (200k messages in a fraction of a second): one decode, ONE regex built
for the layout the first headers show, conversions once per distinct date, time and name.
"""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import accumulate, islice
from pathlib import PurePosixPath
from typing import Any, NamedTuple

from convsim.core.chats.importers.base import (
    ImportOptions,
    Source,
    gc_paused,
    sniffer,
)
from convsim.core.chats.importers.whatsapp_dates import Dates, date_map, iso_time
from convsim.core.chats.importers.whatsapp_phrases import (
    ANDROID_FILE,
    CALL_RECORD,
    EDITED,
    FOLDED_MARKERS,
    IOS_FILE,
    IOS_USER_CONTENT,
    MARKERS,
    NOT_A_NAME,
    NOTICE_STARTS,
    NOTICES,
    OMITTED,
    OMITTED_ENDS,
    TITLE,
)
from convsim.core.chats.messages import (
    CALL,
    MEDIA,
    STICKER,
    SYSTEM,
    TEXT,
    ChatImportError,
    ChatStream,
    ParsedChat,
    ParsedMessage,
    Skipped,
)

NAME = "whatsapp"

_LRM = "\u200e"
_M = "[\u200e\u200f\u202a-\u202e\u2066-\u2069]*"  # invisible direction marks
_NO_MARKS = dict.fromkeys([0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])
_S = "[ \u00a0\u202f]"  # a space, a no-break space or a narrow no-break space
_AMPM = rf"{_S}*[AaPp]\.?{_S}?[Mm]\.?"
# Any two digits for minutes and seconds: a header with an impossible time (`25:61`) is still
# a header, reported as such, not a line of the message before it.
_HM, _SECONDS = r"[0-9]{1,2}[:.][0-9][0-9]", r"[:.][0-9][0-9]"
_SPACES = (" ", "\u00a0", "\u202f")

# Any header at the start of a line. Groups: 1 bracket, 2 first date field, 3 date separator and
# its space, 4 last date field, 5 between date and time, 6 seconds, 7 AM/PM, 8 closing separator.
_PROBE = re.compile(
    rf"{_M}(\[)?{_M}([0-9]{{1,4}})([./-]{_S}?)[0-9]{{1,2}}\3([0-9]{{1,4}})"
    rf"(\.?(?:,{_S}*|{_S}+)(?:klo{_S}+)?){_HM}({_SECONDS})?({_AMPM})?{_M}"
    rf"(\]{_S}|{_S}[-\u2013]{_S}|:{_S}|{_S})"
)
_PROBE_LINES = re.compile("^" + _PROBE.pattern, re.MULTILINE)
_CAPTION_HINT = re.compile(r"\)\n")  # faster than `")\n" in text` on a large text


@sniffer
def sniff(source: Source) -> bool:
    """True when a WhatsApp header is among the first 20 non-empty lines of the file, or of a
    `.txt` member of a zip or folder."""
    if source.is_zip or source.is_dir:
        return any(_looks_like_chat(source.head(m)) for m in _text_members(source))
    return _looks_like_chat(source.head())


def parse(source: Source, options: ImportOptions) -> list[ParsedChat]:
    """Parse the export (see the module docstring): one chat, or one per chat text in a zip or
    folder. Raises ChatImportError naming the file."""
    if not (source.is_zip or source.is_dir):
        return [_parse_member(source, None, options)]
    return [_parse_member(source, member, options) for member in _chat_members(source)]


def _parse_member(source: Source, member: str | None, options: ImportOptions) -> ParsedChat:
    # The member's own name, the folders it is in (iOS names every chat `_chat.txt`, in a
    # folder named after the chat), then the zip's or folder's name.
    inside = PurePosixPath(member) if member else None
    folders = [p.name for p in inside.parents if p.name] if inside else []
    stems = [inside.stem, *folders] if inside else []
    stems.append(source.path.stem)
    where = source.member_name(member)
    chat = _parse_text(_read(source, member), where, source.name, options)
    chat.title = title_of(stems)
    return chat


def stream(source: Source, options: ImportOptions) -> ChatStream | None:
    """A large plain-text export as a stream of batches (bounded memory), else None: see
    `whatsapp_chunks`."""
    from convsim.core.chats.importers import whatsapp_chunks

    return whatsapp_chunks.stream(source, options)


def _looks_like_chat(head: bytes) -> bool:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head[: len(head) // 2 * 2].decode("utf-16", "replace")
    else:
        text = head.decode("utf-8", "replace")
    lines = [line for line in text.lstrip("\ufeff").splitlines()[:200] if line.strip()]
    headers = [line for line in lines[:20] if _layout(_PROBE.match(line))]
    # Markdown hard breaks on every message: signal-export's chat.md, not a WhatsApp export.
    return bool(headers) and sum(h.endswith("  ") for h in headers) * 2 < len(headers)


def _text_members(source: Source) -> list[str]:
    """The first 20 `.txt` members that could hold the chat (macOS resource forks left out)."""
    txt = (m for m in source.members() if m.lower().endswith(".txt"))
    return [m for m in txt if "__MACOSX/" not in m and "/._" not in "/" + m][:20]


def _chat_members(source: Source) -> list[str]:
    """The chat texts inside a zip or folder, found by content: every one with the app's own
    name (`_chat.txt`, `WhatsApp Chat with X.txt`: a folder of several exports), and only
    those, so an attached `.txt` that looks alike is not taken for a chat; else every one that
    looks like a chat (exports renamed by hand)."""
    found = [m for m in _text_members(source) if _looks_like_chat(source.head(m))]
    if not found:
        raise ChatImportError(
            f"{source.name}: no WhatsApp chat found inside; expected a .txt file such as "
            "_chat.txt or 'WhatsApp Chat with NAME.txt' with lines like "
            "'31/12/2020, 23:59 - Name: text'"
        )
    names = {m: PurePosixPath(m) for m in found}
    own = [
        m
        for m, n in names.items()
        if n.name == "_chat.txt" or "WhatsApp" in n.name or TITLE.search(n.stem)
    ]
    return own or found


def _read(source: Source, member: str | None) -> str:
    """The whole text, CRLF turned into LF, with a newline put in front so that every header
    follows one (cheaper than a `^` anchor for the regex engine)."""
    data = source.read_bytes(member)
    if not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        try:
            return (b"\n" + data.removeprefix(b"\xef\xbb\xbf")).decode("utf-8")
        except UnicodeDecodeError:
            pass  # read_text raises the error that names the line and byte
    return "\n" + source.read_text(member).replace("\r\n", "\n")


class Layout(NamedTuple):
    """What one file's headers look like, learnt from its first ones."""

    bracketed: bool
    date_sep: str  # "/", "." or "-", with the space that may follow it
    year_first: bool
    join: str  # between date and time: ", ", " ", " klo "...
    seconds: bool
    ampm: bool
    close: str  # "] ", " - ", ": "


def _layout(m: re.Match[str] | None) -> Layout | None:
    """The layout of a probe match, or None when it is not a plausible header."""
    if m is None or (m[1] is not None) != (m[8][0] == "]"):
        return None
    if m[8] in _SPACES and not m[5].startswith("."):
        return None  # no separator before the name: only after `13. 6. 2018.` dates
    year_first = len(m[2]) == 4  # else day or month first, then a 2- or 4-digit year
    if not (len(m[4]) <= 2 if year_first else len(m[2]) <= 2 and len(m[4]) in (2, 4)):
        return None
    return Layout(m[1] is not None, m[3], year_first, m[5], bool(m[6]), bool(m[7]), m[8])


def _literal(text: str) -> str:
    """A regex for `text` in which any kind of space matches any other."""
    return "".join(_S if c in " \u00a0\u202f" else re.escape(c) for c in text)


@lru_cache(maxsize=32)
def header_regex(layout: Layout) -> re.Pattern[str]:
    """The one regex for a layout. It starts with a newline, so the engine hops from line to
    line, and holds only what the layout has (about twice as fast as a general one). Groups:
    date, time with its seconds and AM/PM, and the sender name when the line has `Name: `."""
    sep, n2, n4 = _literal(layout.date_sep), "[0-9]{1,2}", "[0-9]{4}"
    date = f"{n4}{sep}{n2}{sep}{n2}" if layout.year_first else f"{n2}{sep}{n2}{sep}[0-9]{{2,4}}"
    time = _HM + (f"(?:{_SECONDS})?" if layout.seconds else "") + (_AMPM if layout.ampm else "")
    opening = r"\[" + _M if layout.bracketed else ""
    return re.compile(
        rf"\n{_M}{opening}({date}){_literal(layout.join)}({time}){_M}{_literal(layout.close)}"
        r"(?:([^\n:]+): )?"
    )


def _parse_text(text: str, where: str, path: str, options: ImportOptions) -> ParsedChat:
    """Cut `text` (which starts with a newline) into messages."""
    layout = layout_of(text, where)
    with gc_paused():
        parts = split(text, layout, last=True)
        dmap, warning = date_map(parts[1::4], layout.year_first, options, path)
        messages, skipped = messages_of(parts, text, layout, dmap, 1)
    chat = ParsedChat(format=NAME, title="", messages=messages, skipped=skipped)
    chat.warnings += [warning] if warning else []
    return chat


def layout_of(text: str, where: str) -> Layout:
    """The layout most of the first 20 headers of `text` have; ChatImportError if none."""
    first = [lay for m in islice(_PROBE_LINES.finditer(text), 20) if (lay := _layout(m))]
    if not first:
        what = "empty file" if not text.strip() else "no WhatsApp message header found"
        raise ChatImportError(
            f"{where}: line 1: {what}; expected lines like '31/12/2020, 23:59 - Name: text' "
            "or '[31/12/2020, 23:59:59] Name: text'"
        )
    return max(first, key=first.count)


def split(text: str, layout: Layout, last: bool) -> list[Any]:
    """[before, date, time, name, body, date...] of a text that starts with a newline; the
    file's own final newline (`last`: this text ends the file) is not part of a body."""
    parts = header_regex(layout).split(text)
    if last and parts[-1].endswith("\n"):
        parts[-1] = parts[-1][:-1]
    return parts


def messages_of(
    parts: list[Any], text: str, layout: Layout, dmap: Dates, line: int
) -> tuple[list[ParsedMessage], list[Skipped]]:
    """The messages of `split(text)`, and what was skipped, named by line (`text` starts with
    the newline before file line `line`)."""
    captions = not layout.bracketed and bool(_CAPTION_HINT.search(text))
    messages, bad = _messages(parts, dmap, layout.bracketed, captions)
    skipped = [
        Skipped(f"line {n}", "text before the first message header")
        for n, before in enumerate(parts[0][1:].split("\n"), line)
        if before.strip()
    ]
    if bad:  # find the header lines: each body runs to the next header
        first_line = parts[0].count("\n") + line
        lines = list(accumulate((b.count("\n") + 1 for b in parts[4::4]), initial=first_line))
        skipped += [Skipped(f"line {lines[i]}", "impossible date or time in header") for i in bad]
    return messages, skipped


def _messages(
    parts: list[Any], dmap: Dates, ios: bool, captions: bool
) -> tuple[list[ParsedMessage], list[int]]:
    """The hot loop, one ParsedMessage per header (keep it lean); times and names are converted
    when first seen. `captions`: an Android `(file attached)` line may have a caption under it.
    Returns the messages and the indices of headers whose date or time is impossible."""
    out: list[ParsedMessage] = []
    bad: list[int] = []
    tmap: dict[str, str | None] = {}
    nmap: dict[str | None, str | None] = {None: None}
    append, marker, msg, notice_starts = out.append, MARKERS.get, ParsedMessage, NOTICE_STARTS
    notices: list[tuple[int, str, str]] = []  # (index, sender, body) of notices with a sender
    # Endings of `<attached: …>`, `(file attached)`, `<… edited>` and iOS `… omitted`.
    tails = (">", ")", *OMITTED_ENDS) if ios else (">", ")")
    it = iter(parts)
    next(it)
    for date, time, name, body in zip(it, it, it, it, strict=False):
        try:
            stamp = dmap[date] + tmap[time]  # type: ignore[operator]
        except (KeyError, TypeError):  # a time not seen yet, or an impossible date or time
            if time not in tmap:
                tmap[time] = iso_time(time)
            day, clock = dmap[date], tmap[time]
            if day is None or clock is None:
                bad.append(len(out) + len(bad))
                continue
            stamp = day + clock
        try:
            sender = nmap[name]
        except KeyError:
            sender = nmap[name] = _sender(name)
        if sender is None:
            line = body if name is None else f"{name}: {body}"
            append(msg(stamp, None, line.translate(_NO_MARKS), SYSTEM))
            continue
        if body[:12] in notice_starts and body.startswith(NOTICES):  # "sent" by the group
            notices.append((len(out), sender, body))
            append(msg(stamp, None, body.translate(_NO_MARKS), SYSTEM))
            continue
        hit = marker(body)
        if hit is not None:
            append(msg(stamp, sender, hit[1], hit[0]))
        elif body.endswith(tails) or (ios and body[:1] == _LRM) or (captions and ")\n" in body):
            kind, text, meta = _classify(body, ios)
            append(msg(stamp, None if kind == SYSTEM else sender, text, kind, meta))
        else:
            append(msg(stamp, sender, body))
    if notices:  # a "notice" by someone who also writes is their own words
        writers = {m.sender for m in out}
        for i, sender, body in notices:
            if sender in writers:
                out[i] = msg(out[i].timestamp, sender, body)
    return out, bad


def _classify(body: str, ios: bool) -> tuple[str, str, dict[str, Any] | None]:
    """Kind, text and meta of a body that may end with a marker. Placeholders keep their text
    (less invisible marks) and name their files in meta["attachments"]."""
    meta: dict[str, Any] = {}
    edited = EDITED.search(body)
    if edited:
        body, meta["edited"] = body[: edited.start()], True
    kind, files = TEXT, None
    if hit := MARKERS.get(body):  # a marker behind an edit
        kind, body = hit
    elif hit := FOLDED_MARKERS.get(body.casefold()):  # `<media omitted>`: kept as written
        kind = hit[0]
    elif m := IOS_FILE.match(body):
        kind, files = (STICKER if "-STICKER-" in m[2] else MEDIA), [m[2]]
    elif m := ANDROID_FILE.match(body):
        kind, files = (STICKER if m[1].startswith("STK-") else MEDIA), [m[1]]
    elif m := OMITTED.match(body):
        kind = STICKER if m[2].lower().startswith("sticker") else MEDIA
        files = [m[1].split(" \u2022 ")[0].translate(_NO_MARKS)] if m[1] else None
    elif ios and CALL_RECORD.match(body):
        kind = CALL
    elif ios and body.startswith(_LRM) and not body.startswith(IOS_USER_CONTENT):
        kind = SYSTEM
    if files:
        meta["attachments"] = files
    return kind, body if kind == TEXT else body.translate(_NO_MARKS), meta or None


def _sender(raw: str) -> str | None:
    """The sender name without invisible marks, or None when the would-be name is the start
    of a system line (`X changed the subject from "a: b" to "c"`, longer than 50 chars)."""
    name = raw.translate(_NO_MARKS).strip()
    if not name or len(name) > 50 or NOT_A_NAME.search(name):
        return None
    return name


def title_of(stems: list[str]) -> str:
    """The chat name from 'WhatsApp Chat with Riya' or 'WhatsApp Chat - Riya' (the member's
    name first, then the archive's), else the first stem that is not iOS's generic `_chat`."""
    for stem in stems:
        if m := TITLE.search(stem):
            return m[1].strip()
    return next((s for s in stems if s != "_chat"), stems[-1])
