"""Next-reply ranking and held-out perplexity, on llama.cpp.

For each held-out moment the person's true reply competes with 19 distractors; every candidate
c is scored

    score(c) = log p(c | head + context) - log p(c | the person's tag alone)

how much more likely the reply is after this moment than after nothing, so that short generic
replies, likely everywhere, don't win (best-of-N picks its reply by the same score,
`inference.best_of`). The neutral side has no head: a head of the person's messages (the
prompted variant) is part of what the variant knows about them, and its style may count. The
rank of the true reply gives Hits@1 (ranked first) and the reciprocal rank, in two pools:
distractors by other people of the chat (does it write like the person?) and by the person at
other moments (does it answer this moment?). Ties count against the true reply.

The true reply's own log p(reply | context), per token, is the held-out perplexity (over its
first `MAX_REPLY_TOKENS` tokens, like every candidate's score).

Contract: one `rank(model, head, items, tag)` call per variant; it returns one `Ranked` per
item, in order. Everything is scored on the same tokens for every variant: the context and
the tag, then " reply\\n" tokenised on its own (as the model generates it after the tag).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from convsim.core.inference.best_of import continuation

if TYPE_CHECKING:
    from convsim.core.evaluation.heldout import Item
    from convsim.core.inference.llama import LlamaModel

__all__ = ["MAX_REPLY_TOKENS", "Ranked", "rank"]

# A candidate is scored on its first tokens only: the vocabulary projection of every scored
# token is what ranking costs (about 10 ms a token for a 262k vocabulary on 2 CPU cores), and
# a reply's opening says whether it fits the moment.
MAX_REPLY_TOKENS = 32


@dataclass(frozen=True)
class Ranked:
    """The true reply's scores at one held-out moment."""

    nll: float  # -log p(reply | context), summed over its tokens
    tokens: int  # tokens of the reply scored
    rank_others: int  # 1 = first, among itself and the other-people distractors
    rank_same_person: int  # among itself and the person's other messages


class _Scorer:
    """log p(continuation | prefix) on one model, reusing whatever prefix its cache holds."""

    def __init__(self, model: LlamaModel) -> None:
        self.model = model
        self.cached: list[int] = []

    def logprobs(self, prefix: list[int], cont: list[int]) -> list[float]:
        seq = prefix + cont
        keep = 0
        for a, b in zip(self.cached, seq[: len(prefix) - 1], strict=False):
            if a != b:
                break
            keep += 1
        out = self.model.token_logprobs(seq, len(prefix), keep=keep)
        self.cached = seq
        return out


def rank(
    model: LlamaModel,
    head: str,
    items: Sequence[Item],
    tag: str,
    *,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Ranked]:
    """The true reply's perplexity terms and ranks at every item (see the module docstring).
    Items whose context does not fit the model's context are left out."""
    scorer = _Scorer(model)
    neutral_prefix = model.tokenize(f"[{tag}]")
    neutral: dict[str, float] = {}
    conts: dict[str, list[int]] = {}
    out: list[Ranked] = []
    limit = model.n_ctx()

    def cont(text: str) -> list[int]:
        if text not in conts:
            conts[text] = model.tokenize(continuation([text], tag), bos=False)[:MAX_REPLY_TOKENS]
        return conts[text]

    for done, item in enumerate(items):
        if cancel is not None and cancel.is_set():
            break
        prefix = model.tokenize(head + item.context + f"[{tag}]")
        texts = (item.reply, *item.others, *item.same_person)
        if len(prefix) + max(len(cont(t)) for t in texts) > limit:
            continue
        in_context = {t: scorer.logprobs(prefix, cont(t)) for t in dict.fromkeys(texts)}
        for text in in_context:
            if text not in neutral:
                neutral[text] = sum(scorer.logprobs(neutral_prefix, cont(text)))
        score = {t: sum(lp) - neutral[t] for t, lp in in_context.items()}
        true = score[item.reply]
        out.append(
            Ranked(
                nll=-sum(in_context[item.reply]),
                tokens=len(in_context[item.reply]),
                rank_others=1 + sum(score[t] >= true for t in item.others),
                rank_same_person=1 + sum(score[t] >= true for t in item.same_person),
            )
        )
        if progress is not None:
            progress(done + 1, len(items))
    return out
