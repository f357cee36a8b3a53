"""Privacy scrubbing for message bodies before they become training text.

Contract: `scrub(text)` returns `text` with phone numbers, e-mail addresses, URLs and card-like
numbers replaced by `<phone>`, `<email>`, `<url>` and `<card>`; everything else is left exactly as
it was (no normalisation, no whitespace changes).

The rules lean towards leaving ordinary numbers alone, because a scrubbed time or price makes the
training text worse while a missed phone number in one's own chat is a small leak:
- a phone number has 7 to 15 digits (E.164 allows 15) and either starts with `+`, or is a bare run
  of 10-11 digits, or is written in groups (spaces, dashes, dots, parentheses) whose last group has
  at least 3 digits (or five or more 2-digit groups, the French/Dutch way);
- groups shaped like a date (`17.01.2020`, `2020-01-17`), like a thousands-grouped amount
  (`1 234 567`, `1.234.567`) or glued to `:`/`/`/`.`/`,` digits (times, fractions, decimals) are
  never phone numbers; neither are bare runs of 7-9 digits (amounts, ids, codes);
- a card number is 13-19 digits, bare or grouped with spaces/dashes, that passes the Luhn check;
- a URL starts with `http://`, `https://` or `www.`, and ends before whitespace; trailing
  punctuation (and a closing bracket it did not open) is left outside the placeholder;
- an e-mail address is `local@domain.tld` with a letters-only top-level domain.

One precompiled pattern finds every candidate in a single left-to-right pass, so the earliest
match wins (an address inside a URL is part of the URL; a number inside an address is part of it).
"""

from __future__ import annotations

import re

PHONE = "<phone>"
EMAIL = "<email>"
URL = "<url>"
CARD = "<card>"

__all__ = ["CARD", "EMAIL", "PHONE", "URL", "scrub"]

_EMAIL = r"(?<![\w.%+\-])[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[^\W\d_]{2,}(?![\w\-])"
_URL = r"(?<![\w@.])(?i:https?://|www\.)[^\s<>\"]+"
# Between two digits of one number: a space, dash or dot, or a parenthesis with an optional
# space/dash around it ("(555) 123-4567", "+44 (0) 20").
_SEP = r"(?:[ \-.]|\)[ \-]?|[ \-]?\()"
# ASCII digits only: other scripts' digits are left alone (and would break the Luhn sum).
# Not glued to a word, a `+`, or the digits of a time/date/decimal before or after it.
_NUMBER = (
    r"(?<![\w+])(?<![0-9][.,:/\-])"
    rf"(?:\+|\()?[0-9](?:{_SEP}?[0-9])*"
    r"(?![\w+]|[.,:/\-][0-9])"
)
_CANDIDATE = re.compile(f"(?P<email>{_EMAIL})|(?P<url>{_URL})|(?P<number>{_NUMBER})")

# Every candidate holds a digit, "@", ":" (http://) or "." (www.); many chat lines hold none,
# and scanning for one character class is ~15x faster than the full pattern finding nothing.
_HINT = re.compile(r"[0-9@:.]")
_DIGIT_GROUPS = re.compile(r"[0-9]+")
_DATE = re.compile(
    r"\(?(?:[0-9]{4}([\-./])[0-9]{1,2}\1[0-9]{1,2}|[0-9]{1,2}([\-./])[0-9]{1,2}\2[0-9]{2,4})"
)
_THOUSANDS = re.compile(r"[1-9][0-9]{0,2}(?:([ .])[0-9]{3})(?:\1[0-9]{3})*")
_CARD_SHAPE = re.compile(r"[0-9]+(?:[ \-][0-9]+)*")
_URL_TRAILING = ".,;:!?'\""
_CLOSERS = {")": "(", "]": "[", "}": "{"}


def scrub(text: str) -> str:
    """`text` with phone numbers, e-mails, URLs and card numbers replaced by placeholders."""
    if _HINT.search(text) is None:
        return text
    return _CANDIDATE.sub(_replace, text)


def _replace(match: re.Match[str]) -> str:
    found = match.group()
    if match.group("email") is not None:
        return EMAIL
    if match.group("url") is not None:
        return _replace_url(found)
    return _replace_number(found)


def _replace_url(found: str) -> str:
    """`<url>` followed by whatever trailing punctuation belongs to the sentence, not the URL."""
    # Bracket balance is counted once and updated as characters are peeled off, so a URL ending
    # in thousands of ")" stays linear.
    balance = {
        closer: found.count(closer) - found.count(opener) for closer, opener in _CLOSERS.items()
    }
    end = len(found)
    while end > 0:
        last = found[end - 1]
        if last in _URL_TRAILING:
            end -= 1
        elif balance.get(last, 0) > 0:
            balance[last] -= 1
            end -= 1
        else:
            break
    return URL + found[end:]


def _replace_number(found: str) -> str:
    # "(555-123-4567)": the regex took the opening parenthesis but not the closing one; keep the
    # bracket so the sentence around it stays balanced.
    prefix = ""
    if found.startswith("(") and ")" not in found:
        prefix, found = "(", found[1:]
    if _is_card(found):
        return prefix + CARD
    if _is_phone(found):
        return prefix + PHONE
    return prefix + found


def _is_card(found: str) -> bool:
    if _CARD_SHAPE.fullmatch(found) is None:
        return False
    digits = "".join(_DIGIT_GROUPS.findall(found))
    return 13 <= len(digits) <= 19 and _luhn_valid(digits)


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _is_phone(found: str) -> bool:
    groups = _DIGIT_GROUPS.findall(found)
    digit_count = sum(len(group) for group in groups)
    if not 7 <= digit_count <= 15:
        return False
    if found.startswith("+"):
        return True
    if len(groups) == 1:
        return 10 <= digit_count <= 11
    if _DATE.fullmatch(found) or _THOUSANDS.fullmatch(found):
        return False
    if any(len(group) == 1 for group in groups[1:]):
        return False
    if len(groups[-1]) >= 3:
        return True
    return len(groups) >= 5 and all(len(group) == 2 for group in groups)
