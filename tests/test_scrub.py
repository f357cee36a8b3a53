"""Tests for privacy scrubbing (`core/data/scrub.py`)."""

from __future__ import annotations

import time

import pytest

from convsim.core.data.scrub import CARD, EMAIL, PHONE, URL, scrub


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call +1 (555) 123-4567 now", f"call {PHONE} now"),
        ("+44 20 7946 0958", PHONE),
        ("ring +44 (0) 20 7946 0958.", f"ring {PHONE}."),
        ("+4915112345678", PHONE),
        ("+1-555-123-4567", PHONE),
        ("(555) 123-4567", PHONE),
        ("555-123-4567", PHONE),
        ("555.123.4567", PHONE),
        ("555 123 4567", PHONE),
        ("1-800-555-1234", PHONE),
        ("new number 555-1234!", f"new number {PHONE}!"),
        ("07911 123456", PHONE),
        ("020 7946 0958", PHONE),
        ("06 12 34 56 78", PHONE),
        ("5551234567", PHONE),
        ("Phone:5551234567", f"Phone:{PHONE}"),
        ("(call 555-123-4567)", f"(call {PHONE})"),
        ("(555-123-4567)", f"({PHONE})"),
        ("home: 555 1234, work: 555 9876", f"home: {PHONE}, work: {PHONE}"),
    ],
)
def test_phone_numbers(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail bob@example.com", f"mail {EMAIL}"),
        ("bob.smith+chat@mail.example.co.uk.", f"{EMAIL}."),
        ("<jo_99@uni-x.edu>", f"<{EMAIL}>"),
        ("user@www.example.com", EMAIL),
        ("zoë@exämple.de", EMAIL),
    ],
)
def test_email_addresses(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see https://example.com/a?b=1&c=2, ok", f"see {URL}, ok"),
        ("HTTP://EXAMPLE.COM", URL),
        ("www.example.com/page.", f"{URL}."),
        ("(www.example.com)", f"({URL})"),
        ("https://en.wikipedia.org/wiki/Foo_(bar)).", f"{URL})."),
        ("[http://a.com/[x]]!", f"[{URL}]!"),
        ("https://user@host.com/p", URL),
        ("https://example.com/call/5551234567", URL),
        ('"https://example.com"', f'"{URL}"'),
    ],
)
def test_urls(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pay 4111 1111 1111 1111 now", f"pay {CARD} now"),
        ("4111-1111-1111-1111", CARD),
        ("4111111111111111", CARD),
        ("amex 3782 822463 10005", f"amex {CARD}"),
        ("5555555555554444.", f"{CARD}."),
    ],
)
def test_card_numbers(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "see you at 7:30",
        "see you at 19:30:15",
        "born 2020-01-17",
        "on 17.01.2020 10:30",
        "on 01/17/2020",
        "on 12-25-2020",
        "2020-01-17T10:00:00",
        "it was 12.50",
        "€1,234,567.89 total",
        "1.234.567 people",
        "1 234 567 people",
        "in 1999 and 2024",
        "code 482913",
        "1000000 views",
        "987654321",
        "score 3-2",
        "192.168.1.1",
        "10.0.0.138",
        "v1.2.3",
        "4111 1111 1111 1112",
        "1234567890123456",
        "room 12, floor 3",
        "1 2 3 4 5 6 7 8 9",
        "10 20 30 40",
        "call me later",
        "email me @ home",
        "٥٥٥١٢٣٤٥٦٧",
        "",
    ],
)
def test_ordinary_text_and_numbers_are_untouched(text: str) -> None:
    assert scrub(text) == text


def test_mixed_message_keeps_everything_else_byte_for_byte() -> None:
    text = "Hi\u00a0Sam 👋🏽\nmail a@b.io, call +1 555 123 4567 at 7:30\n\n(ok?) see www.x.org!"
    assert scrub(text) == (
        f"Hi\u00a0Sam 👋🏽\nmail {EMAIL}, call {PHONE} at 7:30\n\n(ok?) see {URL}!"
    )


@pytest.mark.parametrize(
    "text",
    [
        "1" * 100_000,
        "1-" * 50_000,
        "(1" * 50_000,
        "a." * 50_000,
        "x@" + "a-" * 50_000,
        "http://x" + ")" * 100_000,
    ],
)
def test_pathological_input_is_linear(text: str) -> None:
    # Catastrophic backtracking would take minutes here; a linear scan takes milliseconds.
    start = time.perf_counter()
    scrub(text)
    assert time.perf_counter() - start < 1.0
