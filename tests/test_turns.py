"""The `[Name] message` turn format (`convsim.core.data.turns`): the one writer and reader every
stage uses, so training text, prompts and transcripts cannot drift apart."""

from __future__ import annotations

import pytest

from convsim.core.data.turns import (
    TagError,
    parse,
    parse_line,
    render,
    render_turn,
    safe_name,
    speaker_tail,
    split_reply,
    tag_of,
)


def test_render_turn_single_line() -> None:
    assert render_turn("Sam", "yeah! want to meet at 7?") == "[Sam] yeah! want to meet at 7?\n"


def test_render_turn_keeps_newlines_and_escapes_bracket_lines() -> None:
    body = "shopping:\r\n[ ] milk\n[Sam] fake tag\nbread [x]\rend"
    assert render_turn("Riya", body) == (
        "[Riya] shopping:\n [ ] milk\n [Sam] fake tag\nbread [x]\nend\n"
    )


def test_render_turn_first_line_bracket_is_not_escaped() -> None:
    assert render_turn("Riya", "[link] here") == "[Riya] [link] here\n"


@pytest.mark.parametrize("tag", ["", "  ", "a]b", "[a", "two\nlines"])
def test_render_turn_rejects_bad_tags(tag: str) -> None:
    with pytest.raises(TagError, match="tag"):
        render_turn(tag, "hi")


def test_safe_name_makes_any_display_name_a_tag() -> None:
    assert safe_name("[b]Bob[/b]") == "(b)Bob(/b)"
    assert safe_name("  Ana \n Lee ") == "Ana Lee"
    assert safe_name(" \n") == "?"
    render_turn(safe_name("x]\r[y"), "ok")  # never raises


def test_parse_undoes_render_including_the_escape() -> None:
    turns = [
        ("Riya", "shopping:\n[ ] milk\n[Sam] fake tag\nbread [x]"),
        ("Sam", "[link] here"),
        ("Riya", "ok"),
    ]
    assert parse(render(turns)) == turns


def test_parse_names_the_line_of_text_before_the_first_turn() -> None:
    with pytest.raises(ValueError, match="line 2: expected a turn"):
        parse("\nhello\n[Sam] hi\n")


def test_parse_line_reads_hand_written_lines_only() -> None:
    assert parse_line("[Riya]  hey there ") == ("Riya", "hey there")
    assert parse_line("[Riya]") == ("Riya", "")
    for not_a_turn in ("Riya: hi", "[] hi", "[a[b] hi", "[Riya hi"):
        assert parse_line(not_a_turn) is None


def test_tag_of_and_speaker_tail() -> None:
    assert tag_of("[Sam] hi [there]\n") == "[Sam]"
    assert speaker_tail("Sam") == "[Sam]"
    assert speaker_tail("Sam", "on my") == "[Sam] on my"
    # A prompt never ends "[Sam] " or on a trailing space: training text has neither.
    assert speaker_tail("Sam", "on my ") == "[Sam] on my"
    with pytest.raises(TagError):
        speaker_tail("S]am")


def test_split_reply_stops_at_another_speaker_and_keeps_own_messages() -> None:
    assert split_reply(" hi there", "Sam", 1) == ([" hi there"], False, False)
    assert split_reply(" hi\n[Riya] yo", "Sam", 1) == ([" hi"], True, False)
    assert split_reply(" hi\n[Sam] again\n[Ri", "Sam", 3) == ([" hi", " again"], True, False)
    assert split_reply(" hi\n[Sa", "Sam", 3) == ([" hi"], False, True)
    assert split_reply(" hi\n[Sam] two\n[Sam] three\n", "Sam", 2)[0] == [" hi", " two"]
