"""Next-reply ranking and held-out perplexity, on llama.cpp.

For each held-out moment the person's true reply competes with 19 distractors; every candidate
c is scored by how much more likely it is after this moment than before any,

    score(c) = log p(c | head + context) - log p(c | prior)

so that short generic replies, likely everywhere, don't win. The prior depends on the pool, so
that each pool asks one question:
- among the person's own messages at other moments ("does it answer this moment?") the prior is
  the model's own, with its head and the person's tag alone: how it expects the person to
  write cancels, and only the fit to the moment counts (best-of-N picks its reply by this
  score too, `inference.best_of`);
- among other people's messages ("does it write like them?") the prior is the `reference`: the
  base model after the person's tag alone, which knows nothing of them. What the variant knows
  of how the person writes, from a head of their messages (the prompted variant) or from its
  adapter (the tuned one), counts; with the model's own prior instead, a tuned model's style
  would cancel against itself while a prompt's would not.
The rank of the true reply gives Hits@1 (ranked first) and the reciprocal rank in each pool.
Ties count against the true reply.

The true reply's own log p(reply | context), per token, is the held-out perplexity (over its
first `MAX_REPLY_TOKENS` tokens, like every candidate's score).

Contract: one `rank(model, head, items, tag, reference=...)` call per variant; it returns one
`Ranked` per item, in order. `prior` is a memo of the model's own prior; the base model ranked
with no head fills the reference of the other variants that way (`prior=reference`).
Everything is scored on the same tokens for every variant: the context and the tag, then
" reply\\n" tokenised on its own (as the model generates it after the tag).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
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
    reference: Mapping[str, float] | None = None,
    prior: dict[str, float] | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Ranked]:
    """The true reply's perplexity terms and ranks at every item (see the module docstring).
    `reference`: log p(text | the person's tag) on the base model, for every candidate text
    (None: the model's own prior serves both pools). `prior`: a dict to keep the model's own
    prior in, filled as texts are scored. Items whose context does not fit the model's context,
    or whose texts the reference lacks, are left out."""
    scorer = _Scorer(model)
    prior_prefix = model.tokenize(head + f"[{tag}]")
    prior = {} if prior is None else prior
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
        if reference is not None and not all(t in reference for t in (item.reply, *item.others)):
            continue
        logprobs = {t: scorer.logprobs(prefix, cont(t)) for t in dict.fromkeys(texts)}
        in_context = {t: sum(lp) for t, lp in logprobs.items()}
        own = texts if reference is None else (item.reply, *item.same_person)
        for text in own:
            if text not in prior:
                prior[text] = sum(scorer.logprobs(prior_prefix, cont(text)))
        ref = prior if reference is None else reference
        out.append(
            Ranked(
                nll=-in_context[item.reply],
                tokens=len(logprobs[item.reply]),
                rank_others=_rank(in_context, ref, item.reply, item.others),
                rank_same_person=_rank(in_context, prior, item.reply, item.same_person),
            )
        )
        if progress is not None:
            progress(done + 1, len(items))
    return out


def _rank(
    in_context: Mapping[str, float], prior: Mapping[str, float], true: str, pool: Sequence[str]
) -> int:
    """1 + how many of `pool` score at least as high as `true`."""
    score = {t: in_context[t] - prior[t] for t in (true, *pool)}
    return 1 + sum(score[t] >= score[true] for t in pool)
