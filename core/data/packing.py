"""Turn dataset examples into packed token rows for training: no padding, no wasted positions.

Each example (context + target text) is tokenised once, with the tokenizer's BOS, exactly as
llama.cpp will see it at inference. Examples are packed greedily into rows of at most `seq_len`
tokens; each keeps its own position ids and a block-diagonal causal mask, so a packed example
is computed exactly as if it were alone (checked in the tests). An example longer than
`seq_len` loses its oldest context tokens, never its target.

Examples of one session overlap: when a later example's context reaches back as far as an
earlier one's, the earlier example's text begins the later one. `fold` computes them once: an
example whose tokens begin another's is dropped and its loss positions carried into the other
(when that fits in `seq_len`), so every target is still learnt after exactly the tokens it had
(contexts are of random length, so on real chats about one example in three folds: 23% fewer
tokens; a token that both would learn, after the same tokens, is learnt once).

Loss positions: with `loss_on="target"` only the tokens of the target turn after its `[Tag]`
(the words and the closing newline) carry loss, and the tag of the turn after it when the
example knows it (`next_tag`): that is where the model learns whether the person sends another
message or hands over, which the words alone never teach. With `"all"`, every token after BOS
does. The trainer computes the vocabulary projection only at those positions.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from convsim.core.data.turns import tag_of


@dataclass(frozen=True, slots=True)
class TokenizedExample:
    ids: tuple[int, ...]
    # Index of the first token that carries loss; everything from there on does.
    loss_start: int
    # Earlier [start, end) token spans that carry loss too: targets folded in (`fold`).
    earlier: tuple[tuple[int, int], ...] = ()

    def carries_loss(self, i: int) -> bool:
        """Whether token `i` is a training target."""
        return i >= self.loss_start or any(a <= i < b for a, b in self.earlier)


@dataclass(frozen=True, slots=True)
class PackedRow:
    ids: list[int]
    positions: list[int]
    # Per token: 1 where the NEXT token is a training target (already shifted for causal LM).
    loss: list[int]
    lengths: list[int]  # the packed examples' lengths, in order

    @property
    def loss_tokens(self) -> int:
        return sum(self.loss)


def tokenize_examples(
    examples: Iterable[Any], tokenizer: Any, loss_on: str = "target"
) -> list[TokenizedExample]:
    """Tokenise `context + target` of each example (objects with those two str attributes or
    dict keys). Uses the tokenizer's offsets to find where the loss starts."""
    if loss_on not in ("target", "all"):
        raise ValueError(f"loss_on must be 'target' or 'all', not {loss_on!r}")
    out = []
    for ex in examples:
        context, target = example_fields(ex)
        text = context + target + _next_tag(ex)
        enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        ids = enc["input_ids"]
        if loss_on == "all":
            start = 1 if ids and ids[0] == tokenizer.bos_token_id else 0
        else:
            # The words of the target begin right after its "[Tag]".
            boundary = len(context) + len(tag_of(target))
            # The first token ending past the tag; one that straddles it ("] hi") counts, since
            # it carries words. Special tokens have empty (0, 0) offsets and never qualify.
            offsets = enc["offset_mapping"]
            start = next((i for i, (_, end) in enumerate(offsets) if end > boundary), len(ids))
        if start < len(ids):
            out.append(TokenizedExample(tuple(ids), start))
    return out


def fold(examples: Sequence[TokenizedExample], seq_len: int) -> list[TokenizedExample]:
    """`examples` with each one whose tokens begin another's folded into that one (as long as
    it fits in `seq_len`): the same targets, each after the same tokens, computed once. In
    token order, so an example's extensions come right after it."""
    ordered = sorted(examples, key=lambda e: e.ids)
    out: list[TokenizedExample] = []
    carried: tuple[tuple[int, int], ...] = ()  # loss spans of the examples folded so far
    for i, ex in enumerate(ordered):
        if carried:
            ex = TokenizedExample(ex.ids, ex.loss_start, carried + ex.earlier)
        after = ordered[i + 1] if i + 1 < len(ordered) else None
        n = len(ex.ids)
        if after is not None and n < len(after.ids) <= seq_len and after.ids[:n] == ex.ids:
            carried = (*ex.earlier, (ex.loss_start, n))
        else:
            carried = ()
            out.append(ex)
    return out


def example_fields(ex: Any) -> tuple[str, str]:
    """(context, target) of a dataset example: an `Example` or its JSON-lines dict."""
    if isinstance(ex, dict):
        return ex["context"], ex["target"]
    return ex.context, ex.target


def _next_tag(ex: Any) -> str:
    """The tag of the turn after the target ("" when unknown): an `Example` or its dict."""
    return str(ex.get("next_tag", "") if isinstance(ex, dict) else getattr(ex, "next_tag", ""))


def _clip(ex: TokenizedExample, seq_len: int) -> TokenizedExample:
    """Keep BOS and the last `seq_len - 1` tokens when an example is too long."""
    if len(ex.ids) <= seq_len:
        return ex
    cut = len(ex.ids) - (seq_len - 1)
    spans = tuple((max(1, a - cut + 1), b - cut + 1) for a, b in ex.earlier if b - cut + 1 > 1)
    return TokenizedExample(ex.ids[:1] + ex.ids[cut:], max(1, ex.loss_start - cut + 1), spans)


def pack(
    examples: Sequence[TokenizedExample], seq_len: int, seed: int | None = 0
) -> list[PackedRow]:
    """Pack examples into rows of at most `seq_len` tokens (first-fit over a seeded shuffle,
    longest first within it, so rows end up nearly full)."""
    if seq_len < 8:
        raise ValueError(f"seq_len must be at least 8, not {seq_len}")
    items = [_clip(e, seq_len) for e in examples]
    if seed is not None:
        random.Random(seed).shuffle(items)
    items.sort(key=lambda e: -len(e.ids))  # stable: ties keep the shuffled order
    rows: list[list[TokenizedExample]] = []
    room: list[int] = []
    for ex in items:
        n = len(ex.ids)
        for i, free in enumerate(room):
            if free >= n:
                rows[i].append(ex)
                room[i] -= n
                break
        else:
            rows.append([ex])
            room.append(seq_len - n)
    return [_row(r) for r in rows]


def _row(examples: list[TokenizedExample]) -> PackedRow:
    ids: list[int] = []
    positions: list[int] = []
    loss: list[int] = []
    for ex in examples:
        n = len(ex.ids)
        ids.extend(ex.ids)
        positions.extend(range(n))
        # Token i predicts token i+1: position i carries loss iff token i+1 is a target.
        loss.extend(1 if i + 1 < n and ex.carries_loss(i + 1) else 0 for i in range(n))
    return PackedRow(ids, positions, loss, [len(e.ids) for e in examples])


def batches(rows: Sequence[PackedRow], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Row indices per step for one epoch: a seeded shuffle, then groups of `batch_size`.
    Rows of one batch are concatenated into a single packed sequence by the trainer, so a batch
    is at most `batch_size * seq_len` tokens with no padding at all."""
    order = list(range(len(rows)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
