"""SMS Backup & Restore XML (Android): `<smses>` holding `<sms>` and `<mms>` elements.

Contract notes:
- Parsed as a stream (iterparse, each message cleared once read), so multi-gigabyte backups with
  base64 MMS attachments do not have to fit in memory.
- The app writes emoji outside the BMP as UTF-16 surrogate-pair character references
  (`&#55357;&#56838;`), which expat rejects; `SurrogateFixingReader` rewrites each pair into the
  reference of the real character (`&#128518;`) on the fly, and a lone half into U+FFFD.
- `date` is epoch milliseconds, rendered in UTC (`readable_date` is in a locale-dependent format
  and the phone's zone, so it is not used).
- sms `type` / mms `msg_box` 1 = received (sender: the contact's name, else the number),
  2 = sent (sender: `options.me_name`, also `ParsedChat.me`); drafts, outbox and failed
  messages were never delivered and are skipped.
- One chat per conversation: the set of other numbers, each reduced to its last ten digits so
  "+1 555-555-0123" and "5555550123" meet. source_key "sms:<numbers joined by ~>"; title = the
  contacts' names.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone

from convsim.core.chats.importers.base import (
    ZIP_ERRORS,
    ImportOptions,
    Source,
    damaged_member,
    sniffer,
)
from convsim.core.chats.messages import (
    MEDIA,
    TEXT,
    ChatImportError,
    ParsedChat,
    ParsedMessage,
    Skipped,
)

NAME = "sms"

_SNIFF_BYTES = 4096
_RECEIVED, _SENT = "1", "2"
_FROM, _TO = "137", "151"  # PduHeaders.FROM / PduHeaders.TO in <addr type="...">
_NO_VALUE = ("", "null", "(Unknown)")
# A UTF-16 surrogate as a decimal or hex character reference (values checked in code).
_SURROGATE_REF = re.compile(rb"&#(?:(5[5-7][0-9]{3})|[xX]([dD][89a-fA-F][0-9a-fA-F]{2}));")
_TRAILING_SURROGATE_REF = re.compile(_SURROGATE_REF.pattern + rb"\Z")
_LONGEST_REF = 8  # "&#56319;" / "&#xDBFF;"
_REPLACEMENT_REF = b"&#65533;"


@sniffer
def sniff(source: Source) -> bool:
    """An XML file whose first bytes open an `<smses>` element (in a folder or zip: any .xml
    member that does)."""
    return bool(_backup_members(source))


def _backup_members(source: Source) -> list[str | None]:
    if not (source.is_dir or source.is_zip):
        return [None] if _is_backup(source.head(size=_SNIFF_BYTES)) else []
    xml = (m for m in source.members() if m.lower().endswith(".xml"))
    return [m for m in xml if _is_backup(source.head(m, _SNIFF_BYTES))]


def _is_backup(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") and b"<smses" in head


def parse(source: Source, options: ImportOptions) -> list[ParsedChat]:
    """One ParsedChat per conversation. Raises ChatImportError (file, line, column) for XML that
    is malformed or truncated, or whose root is not `<smses>`."""
    members: list[str | None] = [None]
    if source.is_dir or source.is_zip:
        members = _backup_members(source)
        if not members:
            raise ChatImportError(
                f"{source.name}: no .xml file with an <smses> element inside; expected an "
                "SMS Backup & Restore backup"
            )
    backup = _Backup()
    for member in members:
        label = f"{member}: " if member and len(members) > 1 else ""
        _read(source, member, backup, label)
    return backup.chats(options.me_name)


# ---- the stream ------------------------------------------------------------------------------


class SurrogateFixingReader:
    """A binary reader that rewrites surrogate-pair character references into the reference of
    the character they encode, holding back a chunk's tail when a reference (or a pair's high
    half) may continue in the next chunk."""

    def __init__(self, raw: io.BufferedIOBase, where: str = "") -> None:
        self._raw = raw
        self._where = where  # for the error a damaged zip member raises
        self._carry = b""
        self._eof = False

    def _raw_read(self, size: int = -1) -> bytes:
        try:
            return self._raw.read(size)
        except ZIP_ERRORS as e:
            raise damaged_member(self._where, e) from e

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            data, self._carry, self._eof = self._carry + self._raw_read(), b"", True
            return fix_surrogate_refs(data)
        while not self._eof:
            chunk = self._raw_read(max(size, 64))
            if not chunk:
                self._eof = True
                break
            buffer = self._carry + chunk
            cut = _safe_end(buffer)
            self._carry = buffer[cut:]
            if cut:
                return fix_surrogate_refs(buffer[:cut])
        data, self._carry = self._carry, b""
        return fix_surrogate_refs(data)


def _safe_end(buffer: bytes) -> int:
    """How much of `buffer` can be fixed now without splitting a reference or a pair."""
    end = len(buffer)
    amp = buffer.rfind(b"&", max(0, end - _LONGEST_REF))
    if amp != -1 and b";" not in buffer[amp:]:
        end = amp  # possibly the start of a reference
    tail = _TRAILING_SURROGATE_REF.search(buffer, max(0, end - _LONGEST_REF), end)
    if tail and _is_high(_ref_value(tail)):
        end = tail.start()  # its low half may be the next chunk's first bytes
    return end


def fix_surrogate_refs(data: bytes) -> bytes:
    """Replace `&#high;&#low;` (decimal or hex) by the combined character's reference and any
    unpaired surrogate reference by U+FFFD's."""
    refs = [(m.start(), m.end(), _ref_value(m)) for m in _SURROGATE_REF.finditer(data)]
    refs = [r for r in refs if 0xD800 <= r[2] <= 0xDFFF]
    if not refs:
        return data
    out, pos, i = [], 0, 0
    while i < len(refs):
        start, end, value = refs[i]
        out.append(data[pos:start])
        following = refs[i + 1] if i + 1 < len(refs) else None
        if _is_high(value) and following and following[0] == end and not _is_high(following[2]):
            combined = 0x10000 + ((value - 0xD800) << 10) + (following[2] - 0xDC00)
            out.append(b"&#%d;" % combined)
            pos, i = following[1], i + 2
        else:
            out.append(_REPLACEMENT_REF)
            pos, i = end, i + 1
    out.append(data[pos:])
    return b"".join(out)


def _ref_value(match: re.Match[bytes]) -> int:
    return int(match[1]) if match[1] else int(match[2], 16)


def _is_high(value: int) -> bool:
    return 0xD800 <= value <= 0xDBFF


def _read(source: Source, member: str | None, backup: _Backup, label: str) -> None:
    """Stream one backup file into `backup`."""
    where = source.member_name(member)
    with source.open(member) as raw:
        events = ET.iterparse(SurrogateFixingReader(raw, where), events=("start", "end"))
        root: ET.Element | None = None
        depth = record = 0
        try:
            for event, elem in events:
                if event == "start":
                    depth += 1
                    if root is None:
                        root = _check_root(elem, where)
                    continue
                depth -= 1
                if depth == 1 and root is not None:
                    record += 1
                    if elem.tag in ("sms", "mms"):
                        backup.add(elem, f"{label}record {record}")
                    root.clear()  # drop what was read: memory stays flat on big backups
        except ET.ParseError as e:
            line, column = e.position
            reason = str(e).split(": line", 1)[0]
            raise ChatImportError(
                f"{where}: invalid XML at line {line}, column {column} ({reason}); expected a "
                "complete SMS Backup & Restore backup"
            ) from e


def _check_root(elem: ET.Element, where: str) -> ET.Element:
    if elem.tag != "smses":
        raise ChatImportError(
            f"{where}: the root element is <{elem.tag}>; expected <smses>, an "
            "SMS Backup & Restore message backup"
        )
    return elem


# ---- records and conversations ---------------------------------------------------------------


@dataclass
class _Record:
    ms: int
    sent: bool
    peers: list[str]  # normalised numbers of everyone in the conversation but the user
    sender: str | None  # normalised number of who wrote it, when received
    text: str
    attachments: list[str]


@dataclass
class _Backup:
    """What has been read so far; conversations are formed at the end, once the user's own
    numbers (known only from MMS address lists) and every contact name have been seen."""

    records: list[_Record] = field(default_factory=list)
    skipped: list[tuple[list[str], Skipped]] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    shown: dict[str, str] = field(default_factory=dict)  # normalised -> as first written
    own: set[str] = field(default_factory=set)

    def add(self, elem: ET.Element, pos: str) -> None:
        box = elem.get("type") if elem.tag == "sms" else elem.get("msg_box")
        peers = self._peers(elem) or _addr_peers(elem, box == _SENT, self.shown)
        ms = _epoch_ms(elem.get("date"))
        if not peers:
            self.skipped.append((peers, Skipped(pos, "no address; expected a phone number")))
        elif ms is None:
            reason = f"date {elem.get('date')!r} is not epoch milliseconds"
            self.skipped.append((peers, Skipped(pos, reason)))
        elif box not in (_RECEIVED, _SENT):
            reason = f"{elem.tag} box {box}: a draft, outbox or failed message, never delivered"
            self.skipped.append((peers, Skipped(pos, reason)))
        elif elem.tag == "sms":
            self._add_sms(elem, pos, peers, ms, box == _SENT)
        else:
            self._add_mms(elem, pos, peers, ms, box == _SENT)

    def _peers(self, elem: ET.Element) -> list[str]:
        """Normalised numbers of the `address` attribute (`~`-separated in group MMS), learning
        how each is written and, from `contact_name`, what it is called."""
        raw = [a.strip() for a in (elem.get("address") or "").split("~")]
        raw = [a for a in raw if a not in _NO_VALUE]
        contact = (elem.get("contact_name") or "").strip()
        # Group MMS list names in address order, ", "-separated; one number keeps its whole name.
        names = [contact] if len(raw) == 1 else [n.strip() for n in contact.split(", ")]
        aligned = len(names) == len(raw)
        peers = []
        for i, address in enumerate(raw):
            key = _normalise(address)
            self.shown.setdefault(key, address)
            if aligned and names[i] not in _NO_VALUE:
                self.names.setdefault(key, names[i])
            peers.append(key)
        return list(dict.fromkeys(peers))

    def _add_sms(self, elem: ET.Element, pos: str, peers: list[str], ms: int, sent: bool) -> None:
        body = elem.get("body") or ""
        if not body.strip():
            self.skipped.append((peers, Skipped(pos, "empty message body")))
            return
        self.records.append(_Record(ms, sent, peers, None if sent else peers[0], body, []))

    def _add_mms(self, elem: ET.Element, pos: str, peers: list[str], ms: int, sent: bool) -> None:
        texts, files = _parts(elem)
        addrs = _addrs(elem, self.shown)
        senders = [a for a, kind in addrs if kind == _FROM]
        if sent:
            self.own.update(senders)
        else:
            # Recipients that are not in the conversation list are the user's own number(s).
            self.own.update(a for a, kind in addrs if kind == _TO and a not in peers)
        if not texts and not files:
            self.skipped.append((peers, Skipped(pos, "MMS without text or attachments")))
            return
        sender = None if sent else (senders[0] if senders else peers[0])
        self.records.append(_Record(ms, sent, peers, sender, "\n".join(texts), files))

    def chats(self, me: str) -> list[ParsedChat]:
        """Group records into conversations, in order of each one's first record."""
        by_key: dict[str, ParsedChat] = {}
        for record in sorted(self.records, key=lambda r: r.ms):  # stable: ties keep file order
            chat = self._chat(by_key, record.peers, me)
            sender = me if record.sent else self._name(record.sender or record.peers[0])
            kind = MEDIA if record.attachments else TEXT
            meta = {"attachments": record.attachments} if record.attachments else None
            chat.messages.append(ParsedMessage(_iso(record.ms), sender, record.text, kind, meta))
        for peers, skip in self.skipped:
            if peers or by_key:
                self._chat(by_key, peers, me).skipped.append(skip)
        return [chat for chat in by_key.values() if chat.messages]

    def _chat(self, by_key: dict[str, ParsedChat], peers: list[str], me: str) -> ParsedChat:
        others = sorted({p for p in peers if p not in self.own}) or sorted(set(peers))
        if not others:  # a skipped record with no address: file it with the first chat
            return next(iter(by_key.values()))
        key = "~".join(others)
        if key not in by_key:
            names = [self._name(p) for p in others]
            by_key[key] = ParsedChat(
                NAME, ", ".join(names), [], source_key=f"sms:{key}", participants=names, me=me
            )
        return by_key[key]

    def _name(self, key: str) -> str:
        return self.names.get(key) or self.shown.get(key, key)


def _parts(elem: ET.Element) -> tuple[list[str], list[str]]:
    """The text parts and the attachment file names of an MMS (the SMIL layout is neither)."""
    texts, files = [], []
    for part in elem.iter("part"):
        content_type = (part.get("ct") or "").lower()
        if content_type == "application/smil":
            continue
        if content_type == "text/plain":
            if part.get("text"):
                texts.append(part.get("text") or "")
            continue
        names = (part.get(a) or "" for a in ("name", "cl", "fn"))
        files.append(next((n for n in names if n not in _NO_VALUE), content_type or "attachment"))
    return texts, files


def _addr_peers(elem: ET.Element, sent: bool, shown: dict[str, str]) -> list[str]:
    """For an MMS without an `address` attribute: everyone in <addrs> but a sent one's sender."""
    addrs = _addrs(elem, shown)
    return list(dict.fromkeys(a for a, kind in addrs if not (sent and kind == _FROM)))


def _addrs(elem: ET.Element, shown: dict[str, str]) -> list[tuple[str, str]]:
    """(normalised number, PDU type) of each <addr>, noting in `shown` how each number is
    written; the "insert-address-token" placeholder (this phone) is dropped."""
    found = []
    for addr in elem.iter("addr"):
        address = (addr.get("address") or "").strip()
        if address not in _NO_VALUE and address != "insert-address-token":
            shown.setdefault(_normalise(address), address)
            found.append((_normalise(address), addr.get("type") or ""))
    return found


def _normalise(address: str) -> str:
    """Digits only, at most the last ten (drops country and trunk prefixes); names such as
    short-code senders ("AMAZON") and e-mail addresses are lower-cased instead."""
    digits = re.sub(r"\D", "", address)
    if not digits or re.search(r"[^\d\s+().\-/]", address):
        return address.strip().lower()
    return digits[-10:]


def _epoch_ms(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    number = int(value)
    # Some writers put seconds in <mms date>; no real message predates 1973 in milliseconds.
    number = number * 1000 if number < 100_000_000_000 else number
    return number if number < 253402300800000 else None


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, timezone.utc).replace(tzinfo=None).isoformat()
