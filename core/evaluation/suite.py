""" "Is it really them?": the imitation-quality suite of one persona.

Four variants, measured on the same held-out moments (the dataset's latest sessions):
`base` (the base model), `in_context` (the base after a prompt of the person's trained-on
messages: "just ask an LLM to write like them"), `tuned` (base + the persona's LoRA) and
`best_of_n` (tuned, each reply the best of N, `inference.best_of`). Each gets:

- `perplexity` of the person's real replies, and next-reply ranking (`ranking`): Hits@1 and
  MRR among 20, against other people's messages (`*_others`, scored against the base model's
  prior: what the variant knows of the person's style counts) and the person's own at other
  moments (`*_same_person`, against the variant's own prior: only the fit to the moment).
  Ranking scores the real replies, not generated ones, so `best_of_n` repeats `tuned`'s
  figures (`ranking_from: "tuned"`);
- on the replies generated at each moment (`imitation`; `Sizes.replies` per moment, each with
  its own seed: more replies, a steadier style figure): `style_ks` and `style_relative_error` per
  feature, `authorship` (0 = other people, 1 = the person's held-out messages) and
  `detector_accuracy` (real vs generated, cross-validated; 0.5 = indistinguishable), and
  `first_message_s`, the mean time to a reply's first token on this machine;
- `tuned` and `best_of_n` also get `style_ks_vs_in_context`: per feature, their KS less
  in_context's (negative: closer to the person), with a paired interval
  (`imitation.style_versus`): one across 0 means this many replies and real messages cannot
  tell the two apart on that feature;
- `intervals`: bootstrap 95% intervals, `[low, high]` per figure (`style_ks` and
  `style_ks_vs_in_context`: per feature; style, authorship and the detector resample a
  moment's replies together);
  `counts`: what the figures cover.

`forever` holds the forever-conversation health of the tuned persona (`health`).

Contract: `run(ws, model_id, ...)` returns the report as plain JSON-able data and saves it as
`eval.json` and a self-contained `report.html` (`report`) in the model's folder. `--quick`
sizes (`QUICK`) keep a run to minutes on a 2-core laptop; `FULL` is the measurement.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convsim.core.data.style import Profile
from convsim.core.evaluation import health, heldout, imitation, ranking, stats

if TYPE_CHECKING:
    from convsim.core.workspace import Workspace

__all__ = [
    "FULL",
    "QUICK",
    "VARIANTS",
    "Replies",
    "Sizes",
    "SuiteEvent",
    "SuiteStopped",
    "generate",
    "persona_head",
    "run",
]

VARIANTS = ("base", "in_context", "tuned", "best_of_n")
PROMPT_HEADER = "Messages written by {name}:\n"


@dataclass
class Replies:
    """Generated replies: `turns[j]` (its messages) answers held-out moment `moments[j]`."""

    turns: list[list[str]]
    moments: list[int]
    firsts: list[float]  # seconds to each reply's first token, where it came

    @property
    def of_message(self) -> list[int]:
        """The moment of each message of `turns`, in order."""
        return imitation.message_moments(self.turns, self.moments)

    def at(self, moment: int) -> list[list[str]]:
        """The turns that answer `moment`, in the order they were generated."""
        return [t for t, k in zip(self.turns, self.moments, strict=True) if k == moment]


@dataclass(frozen=True)
class Sizes:
    items: int  # held-out moments ranked and replied to
    forever_turns: int
    forever_seeds: int
    replies: int = 1  # generated replies per moment and variant


QUICK = Sizes(items=24, forever_turns=100, forever_seeds=1)
# Three replies a moment: on one, a rare habit (a laugh, an emoji) moves a style KS by a whole
# message, and the persona against the prompted base flipped between runs.
FULL = Sizes(items=80, forever_turns=500, forever_seeds=3, replies=3)


class SuiteStopped(Exception):
    """The `cancel` event stopped the suite; nothing was saved."""


@dataclass(frozen=True)
class SuiteEvent:
    """Progress: `stage` ("ranking tuned", "replies base"...), `done` of `total` in it."""

    stage: str
    done: int
    total: int


def persona_head(texts: list[str], name: str, count: Callable[[str], int], budget: int) -> str:
    """A prompt of the person's messages, newest last, as many as fit in `budget` tokens."""
    header = PROMPT_HEADER.format(name=name)
    lines: list[str] = []
    used = count(header)
    for text in reversed(texts):
        line = f"[{name}] {text}\n"
        cost = count(line)
        if used + cost > budget:
            break
        lines.append(line)
        used += cost
    return header + "".join(reversed(lines))


def run(
    ws: Workspace,
    model_id: str,
    *,
    quick: bool = False,
    best_of: int = 4,
    seed: int = 0,
    temperature: float | None = None,
    threads: int | None = None,
    prompt_tokens: int = 768,
    items: int | None = None,
    forever_turns: int | None = None,
    replies: int | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[SuiteEvent], None] | None = None,
) -> dict[str, Any]:
    """The suite's report for `model_id` (see the module docstring); saved beside the model.
    `items`, `forever_turns` and `replies` override the size's moments, forever turns (0: none)
    and replies per moment;
    `temperature` the sampling default's, for every generated reply.
    Setting `cancel` stops it soon after (`SuiteStopped`, nothing saved)."""
    from convsim.core.evaluation import report as html
    from convsim.core.inference.engine import Engine, Sampling

    started = time.perf_counter()
    sizes = QUICK if quick else FULL
    if items is not None:
        sizes = replace(sizes, items=items)
    if forever_turns is not None:
        sizes = replace(sizes, forever_turns=forever_turns,
                        forever_seeds=sizes.forever_seeds if forever_turns else 0)  # fmt: skip
    if replies is not None:
        sizes = replace(sizes, replies=replies)
    if sizes.items < 1 or sizes.replies < 1:
        raise ValueError(f"the suite needs a moment and a reply: {sizes.items}, {sizes.replies}")
    m, base_path, adapter = heldout.of_model(ws, model_id, limit=sizes.items, seed=seed)
    record = ws.store.model(model_id)
    say = progress or (lambda e: None)

    def stage(name: str) -> Callable[[int, int], None]:
        return lambda done, total: say(SuiteEvent(name, done, total))

    sampling = Sampling(seed=seed)
    if temperature is not None:
        sampling = replace(sampling, temperature=temperature)
    ranked: dict[str, list[ranking.Ranked]] = {}
    generated: dict[str, Replies] = {}

    # log p(text | the person's tag) on the base model: the prior of the other-people pool of
    # every variant, filled while the base model (no head) is ranked.
    reference: dict[str, float] = {}

    def measure(engine: Engine, variant: str, head: str, s: Sampling, rank: bool) -> None:
        engine.set_head(head)
        if rank:
            own = {"prior": reference} if variant == "base" else {"reference": reference}
            ranked[variant] = ranking.rank(
                engine.model, engine.head, m.items, m.tag, cancel=cancel,
                progress=stage(f"ranking {variant}"), **own,
            )  # fmt: skip
        generated[variant] = generate(
            engine, m, s, cancel, stage(f"replies {variant}"), sizes.replies
        )

    base = Engine(base_path, n_ctx=2048, threads=threads)
    try:
        measure(base, "base", "", sampling, True)
        count = lambda text: len(base.model.tokenize(text, bos=False))  # noqa: E731
        head = persona_head(m.train_texts, m.tag, count, prompt_tokens)
        measure(base, "in_context", head, sampling, True)
    finally:
        base.close()
    tuned = Engine(base_path, [(adapter, 1.0)], n_ctx=2048, threads=threads)
    try:
        measure(tuned, "tuned", "", sampling, True)
        tuned.set_style(m.tag, Profile.of(m.train_texts))
        best = replace(sampling, best_of=best_of)
        measure(tuned, "best_of_n", "", best, False)
        forever = health.forever_health(
            tuned, m.items[0].turns, [m.tag, *(m.other_tags[:1] or ["Friend"])], sampling,
            _chat_texts(ws, record.chat_id), turns=sizes.forever_turns,
            seeds=sizes.forever_seeds, cancel=cancel, progress=stage("forever conversation"),
        )  # fmt: skip
    finally:
        tuned.close()
    if cancel is not None and cancel.is_set():
        raise SuiteStopped(f"the evaluation of {model_id} was stopped")
    ranked["best_of_n"] = ranked["tuned"]
    author = _authorship(ws, record.person, record.chat_id, m)
    out: dict[str, Any] = {
        "model_id": model_id,
        "person": record.person,
        "quick": quick,
        "seed": seed,
        "temperature": sampling.temperature,
        "best_of": best_of,
        "items": len(m.items),
        "replies_per_moment": sizes.replies,
    }
    for variant in VARIANTS:
        out[variant] = _figures(ranked[variant], generated[variant], m, author, seed)
    for variant in ("tuned", "best_of_n"):
        _versus_in_context(out[variant], generated[variant], generated["in_context"], m, seed)
    out["best_of_n"]["ranking_from"] = "tuned"
    out["best_of_n"]["n"] = best_of
    out["forever"] = {k: _clean(v) if isinstance(v, float) else v for k, v in forever.items()}
    out["seconds"] = round(time.perf_counter() - started, 1)
    folder = Path(record.path)
    html.save(out, folder)
    return out


def generate(
    engine: Any,
    m: heldout.Material,
    s: Any,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
    per_moment: int = 1,
) -> Replies:
    """`per_moment` replies to each moment, a round through the moments at a time, each with
    seed `s.seed` + 1000 × its round + the moment; stops early when `cancel` is set."""
    out = Replies([], [], [])
    total = per_moment * len(m.items)
    for k in range(per_moment):
        for i, item in enumerate(m.items):
            if cancel is not None and cancel.is_set():
                return out
            reply = engine.simulate(
                item.turns, m.tag, replace(s, seed=s.seed + 1000 * k + i), cancel,
                max_messages=imitation.MAX_MESSAGES,
            ).result()  # fmt: skip
            out.turns.append([x for x in reply.messages if x.strip()])
            out.moments.append(i)
            if reply.first_token_s is not None:
                out.firsts.append(reply.first_token_s)
            if progress is not None:
                progress(len(out.turns), total)
    return out


def _chat_texts(ws: Workspace, chat_id: int | None) -> list[str]:
    from convsim.core.chats.messages import TEXT

    if chat_id is None or not ws.store.has_chat(chat_id):
        return []
    return [msg.text for msg in ws.store.messages(chat_id) if msg.kind == TEXT and msg.text]


def _authorship(
    ws: Workspace, person: str, chat_id: int | None, m: heldout.Material, cap: int = 20000
) -> imitation.Authorship:
    """The person's messages against everyone else's in the store, held-out ones left out."""
    from convsim.core.chats.messages import TEXT

    mine: list[str] = []
    theirs: list[str] = []
    for chat in ws.store.chats():
        for msg in ws.store.messages(chat.id):
            if msg.kind != TEXT or not msg.text or msg.id in m.heldout_ids:
                continue
            (mine if msg.sender == person else theirs).append(msg.text)
    rng = np.random.default_rng(0)
    mine, theirs = (
        [t[i] for i in sorted(rng.choice(len(t), min(cap, len(t)), replace=False))]
        for t in (mine, theirs)
    )
    if not mine or not theirs:
        mine, theirs = m.train_texts, [t for item in m.items for t in item.others]
    return imitation.Authorship.fit(mine, theirs, m.heldout_replies, m.heldout_others)


def _figures(
    ranked: list[ranking.Ranked],
    replies: Replies,
    m: heldout.Material,
    author: imitation.Authorship,
    seed: int,
) -> dict[str, Any]:
    nll = np.array([r.nll for r in ranked])
    tok = np.array([r.tokens for r in ranked])
    pools = {
        "others": np.array([r.rank_others for r in ranked], dtype=float),
        "same_person": np.array([r.rank_same_person for r in ranked], dtype=float),
    }
    figures: dict[str, Any] = {}
    intervals: dict[str, Any] = {}  # figure -> [low, high]; "style_ks": feature -> [low, high]

    def put(name: str, value: float, interval: tuple[float, float]) -> None:
        figures[name] = _clean(value)
        intervals[name] = [_clean(interval[0]), _clean(interval[1])]

    def ppl(idx: np.ndarray) -> float:
        return math.exp(nll[idx].sum() / max(tok[idx].sum(), 1))

    def mean(values: Any) -> float:
        return float(np.mean(values)) if len(values) else math.nan

    everything = np.arange(len(ranked))
    put("perplexity", ppl(everything) if len(ranked) else math.nan,
        stats.bootstrap(len(ranked), ppl, seed=seed))  # fmt: skip
    for pool, ranks in pools.items():
        hits, rr = (ranks == 1).astype(float), 1.0 / ranks
        put(f"hits_at_1_{pool}", mean(hits), stats.mean_interval(hits, seed))
        put(f"mrr_{pool}", mean(rr), stats.mean_interval(rr, seed))
    turns, moments = replies.turns, replies.moments
    messages = [x for t in turns for x in t]
    scores = author.scores(messages)
    put("authorship", mean(scores), stats.grouped_mean_interval(scores, replies.of_message, seed))
    told, told_interval, judged = imitation.detector_accuracy(
        m.heldout_replies, turns, moments, seed
    )
    put("detector_accuracy", told, told_interval)
    style = imitation.style_match(turns, m.heldout_replies, m.real_turn_sizes)
    figures["style_ks"] = {k: _clean(v["ks"]) for k, v in style.items()}
    spread = imitation.style_intervals(
        turns, m.heldout_replies, m.real_turn_sizes, seed, moments=moments
    )
    intervals["style_ks"] = {k: [_clean(lo), _clean(hi)] for k, (lo, hi) in spread.items()}
    figures["style_relative_error"] = {k: _clean(v["relative_error"]) for k, v in style.items()}
    figures["style_means"] = {
        k: {"generated": _clean(v["generated_mean"]), "real": _clean(v["real_mean"])}
        for k, v in style.items()
    }
    firsts = replies.firsts
    figures["first_message_s"] = _clean(float(np.mean(firsts))) if firsts else None
    figures["intervals"] = intervals
    figures["counts"] = {
        "ranked": len(ranked),
        "perplexity_tokens": int(tok.sum()),
        "generated_replies": len(turns),
        "generated_messages": len(messages),
        "real_messages": len(m.heldout_replies),
        "detector_texts": judged,
    }
    return figures


def _versus_in_context(
    figures: dict[str, Any], mine: Replies, theirs: Replies, m: heldout.Material, seed: int
) -> None:
    """`style_ks_vs_in_context` (per feature: this variant's KS less in_context's; negative
    is closer) and its paired interval (`imitation.style_versus`)."""
    versus = imitation.style_versus(
        mine.turns, mine.moments, theirs.turns, theirs.moments,
        m.heldout_replies, m.real_turn_sizes, seed,
    )  # fmt: skip
    figures["style_ks_vs_in_context"] = {k: _clean(d) for k, (d, _) in versus.items()}
    figures["intervals"]["style_ks_vs_in_context"] = {
        k: [_clean(lo), _clean(hi)] for k, (_, (lo, hi)) in versus.items()
    }


def _clean(x: float) -> float | None:
    """A JSON-safe number: NaN and infinities become null."""
    return round(float(x), 4) if x is not None and math.isfinite(float(x)) else None
