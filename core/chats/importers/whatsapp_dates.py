"""WhatsApp header dates and times: ISO conversion, and the day/month order of a whole file
(`date_map`), for `whatsapp.py` and `whatsapp_chunks.py`."""

from __future__ import annotations

import datetime
import re
from itertools import groupby, pairwise

from convsim.core.chats.importers.base import AmbiguousDateOrder, ImportOptions, system_date_order
from convsim.core.chats.messages import ChatImportError

Dates = dict[str, "str | None"]  # raw header date -> 'YYYY-MM-DD', None when impossible


def iso_time(raw: str) -> str | None:
    """'THH:MM:SS' for a header time such as '9:05', '21.05.33' or '12:10 a. m.'; None when
    impossible. 12 a.m. is 00, 12 p.m. is 12, and '00:08 a. m.' is tolerated as 00:08."""
    if len(raw) in (5, 8) and raw[2] == ":" and raw[-3] == ":":  # 'HH:MM', 'HH:MM:SS'
        if raw < "24" and raw[3] < "6" and (len(raw) == 5 or raw[6] < "6"):
            return "T" + raw + (":00" if len(raw) == 5 else "")
        return None
    digits = re.findall("[0-9]+", raw)
    hour = int(digits[0])
    if raw[-1] in "Mm." and hour <= 12:  # 12-hour clock
        hour = hour % 12 + (12 if raw.rstrip(". \u00a0\u202fMm")[-1] in "Pp" else 0)
    if hour > 23 or any(int(d) > 59 for d in digits[1:3]):
        return None
    return f"T{hour:02d}:{digits[1]}:{digits[2] if len(digits) > 2 else '00'}"


def iso_date(year: int, month: int, day: int) -> str | None:
    """'YYYY-MM-DD' (2-digit years are 20xx), or None for an impossible date."""
    try:
        return datetime.date(year + 2000 if year < 100 else year, month, day).isoformat()
    except ValueError:
        return None


def date_map(
    dates: list[str], year_first: bool, options: ImportOptions, path: str
) -> tuple[Dates, str | None]:
    """Raw header date -> 'YYYY-MM-DD' (None when impossible), the day/month order read from
    the whole file: an order under which more dates are impossible loses (13/01 means dmy);
    then the order under which dates never go backwards; then `options.date_order`; then,
    with `options.locale_fallback`, the system locale's order and a warning saying so; else
    AmbiguousDateOrder. So the file wins when it disagrees with the option."""
    fields = {raw: tuple(map(int, re.findall("[0-9]+", raw))) for raw in dict.fromkeys(dates)}
    if year_first:
        return {raw: iso_date(y, m, d) for raw, (y, m, d) in fields.items()}, None
    dmy = {raw: iso_date(y, m, d) for raw, (d, m, y) in fields.items()}
    mdy = {raw: iso_date(y, m, d) for raw, (m, d, y) in fields.items()}
    if dmy == mdy:
        return dmy, None
    bad_dmy, bad_mdy = list(dmy.values()).count(None), list(mdy.values()).count(None)
    if bad_dmy != bad_mdy:
        return (dmy if bad_dmy < bad_mdy else mdy), None
    if bad_dmy == 0:  # both orders read every date: take the one under which none goes back
        days = [raw for raw, _ in groupby(dates)]
        steady = [o for o in (dmy, mdy) if all(o[a] <= o[b] for a, b in pairwise(days))]  # type: ignore[operator]
        if len(steady) == 1:
            return steady[0], None
    order, warning = options.date_order, None
    if order not in (None, "dmy", "mdy"):
        raise ChatImportError(f"{path}: unknown date order {order!r}; expected 'dmy' or 'mdy'")
    if order is None and options.locale_fallback:
        order, where = system_date_order()
        first = "day" if order == "dmy" else "month"
        warning = (
            f"every date reads both as day/month and month/day; read with the {first} first, "
            f"as this system's locale ({where}) writes dates: check the dates; if they are "
            "wrong, forget this chat and import it again with the other date order"
        )
    if order is None:
        raise AmbiguousDateOrder(path)
    return (dmy if order == "dmy" else mdy), warning
