"""The `[Name] message` turn format: the one place that writes it and reads it back.

Every text a model sees, in training and at inference, is a run of turns:

    [Riya] hey are we still going tonight?
    [Sam] yeah! want to meet at 7?
    [Sam]

Contract:
- `render_turn(name, text)` is `[name] text\\n`. Line breaks inside a message stay inside its
  turn (`\\r\\n` and `\\r` become `\\n`); a line after the first that starts with `[` gets one
  leading space (the *escape*), so the `\\n[` that ends a turn at generation time only ever
  appears before a real tag. Names must be non-empty and free of brackets and line breaks
  (`TagError` otherwise); `safe_name` turns any display name into one.
- `parse(text)` reads rendered turns back, joining continuation lines to their turn and undoing
  the escape: `parse(render(turns)) == turns` for valid turns whose texts have no leading or
  trailing whitespace and no line that starts with " [" (which reads as an escaped `[`).
- `parse_line(line)` reads one `[Name] message` line (the form people write by hand).
- `split_reply(raw, speaker, max_messages)` splits generated text that follows `[speaker]` into
  the messages of that speaker's reply.
- `speaker_tail(name, partial)` is what a prompt ends with to make `name` speak (or continue the
  half-typed `partial`).
"""

from __future__ import annotations

from collections.abc import Iterable

Turn = tuple[str, str]  # (name, text)

_FORBIDDEN_IN_NAME = ("[", "]", "\n", "\r")


class TagError(ValueError):
    """A name that cannot be a `[Name]` tag."""


def check_name(name: str, what: str = "tag") -> None:
    """Raise `TagError` (naming `what`) unless `name` can stand between the brackets."""
    if not name.strip() or any(char in name for char in _FORBIDDEN_IN_NAME):
        raise TagError(f"{what} must be non-empty without brackets or line breaks: {name!r}")


def safe_name(name: str) -> str:
    """`name` made usable as a tag: brackets become parentheses, whitespace runs (line breaks
    included) one space; "?" for a name with nothing left."""
    return " ".join(name.replace("[", "(").replace("]", ")").split()) or "?"


def is_name(value: object) -> bool:
    """Whether `value` can name a speaker: text that is not blank and is on one line (a tag
    is made of it with `safe_name`, so brackets may stay)."""
    return isinstance(value, str) and bool(value.strip()) and "\n" not in value


def tag(name: str) -> str:
    """`[name]`, the start of every turn `name` writes."""
    return f"[{name}]"


def tag_of(rendered: str) -> str:
    """The `[Name]` tag a rendered turn starts with."""
    return rendered[: rendered.index("]") + 1]


def render_turn(name: str, text: str) -> str:
    """One turn, `[name] text\\n`, with the escape applied (see the module docstring)."""
    check_name(name)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    escaped = [lines[0]] + [" " + line if line.startswith("[") else line for line in lines[1:]]
    return f"{tag(name)} " + "\n".join(escaped) + "\n"


def render(turns: Iterable[Turn]) -> str:
    """Many turns, in order."""
    return "".join(render_turn(name, text) for name, text in turns)


def speaker_tail(name: str, partial: str = "") -> str:
    """The end of a prompt that hands the turn to `name`: `[name]` alone, or `[name] partial`
    to continue a half-typed message. Training text never has `[name] ` followed by nothing or
    by a trailing space, so a `partial` that ends at a word boundary is cut back to its last
    word (the caller drops the space the model then generates)."""
    check_name(name)
    if not partial:
        return tag(name)
    text = f"{tag(name)} {partial}"
    return text.rstrip() if partial[-1].isspace() else text


def parse_line(line: str) -> Turn | None:
    """(name, text) of a `[Name] message` line, or None when the line is not one."""
    name, sep, text = line.partition("]")
    if not line.startswith("[") or not sep or not name[1:].strip() or "[" in name[1:]:
        return None
    return name[1:].strip(), text.strip()


def parse(text: str) -> list[Turn]:
    """The turns of rendered text. Lines that do not start a turn continue the one before (the
    escape's leading space removed); text before the first turn raises ValueError naming its
    line."""
    turns: list[tuple[str, list[str]]] = []
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        turn = parse_line(line) if line.startswith("[") else None
        if turn is not None:
            turns.append((turn[0], [line[line.index("]") + 1 :].removeprefix(" ")]))
        elif turns:
            turns[-1][1].append(line[1:] if line.startswith(" [") else line)
        elif line.strip():
            raise ValueError(f"line {number}: expected a turn like '[Name] message'")
    return [(name, "\n".join(lines).strip()) for name, lines in turns]


def split_reply(raw: str, speaker: str, max_messages: int) -> tuple[list[str], bool, bool]:
    """Generated text that follows `[speaker]`, as (messages, finished, pending).

    Each message ends at a newline; the next starts only if its line begins with the same
    speaker's tag. `finished`: the text has reached the end of the reply (a newline ending the
    last allowed message, or a line that is not `[speaker] ...`). `pending`: the text ends in a
    line that may still become `[speaker]`, so what follows the last newline is undecided.
    """
    lines = raw.split("\n")
    messages, own = [lines[0]], tag(speaker)
    for i, line in enumerate(lines[1:], start=1):
        if len(messages) >= max_messages:
            return messages, True, False
        if line.startswith(own):
            messages.append(line[len(own) :])
        elif i == len(lines) - 1 and own.startswith(line):
            return messages, False, True
        else:
            return messages, True, False
    return messages, False, False
