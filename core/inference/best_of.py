"""Best-of-N persona replies: sample N candidates, keep the one that fits the moment and the
person best.

A candidate c after conversation x is scored

    score(c) = log p(c | x) - log p(c | no conversation)
               + STYLE_WEIGHT * (log person(style(c)) - log persona(style(c)))

The first two terms (the ranking score of the evaluation suite: how much more likely the reply
is after *this* conversation than after none) favour replies that answer the moment over short
generic ones that fit any moment, which plain likelihood prefers. The style term compares how
often the person writes a reply of this style (`data.style.Profile.log_prob` of their real
messages; `Engine.set_style`) with how often the persona does (the same profile of every
candidate generated for that speaker before this reply, `Engine.candidate_styles`, starting
from the person's own as if from `PRIOR_REPLIES` replies): a style the persona under-produces
is favoured and one it over-produces held back, so the kept replies drift towards the person's
mix of styles. Scoring by the person's profile alone would favour their most common style every
time and leave out what they do now and then (questions, emoji, laughter); the term is 0 when
no profile is set.

Contract: `simulate` returns a `Stream` like `Engine.simulate`, of the best candidate, with
every candidate and its score in `Reply.candidates` (best first), and adds the candidates to
`Engine.candidate_styles` (so the same call twice may keep different candidates; `set_style`
starts afresh; `remember` keeps the tallies in the persona's folder from one chat to the next).
The candidates are generated in full before the first piece streams, so the time to first
token is the time of all N plus their scoring. Seeds: candidate i samples with
`seed + 7919 * i` when a seed is given. "No conversation" is the head and the speaker's tag
alone, scored in the engine's second context (`Engine.neutral_model`) so that the
conversation's cache survives. A control vector steers the candidates and their score in the
conversation, not the neutral score.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from convsim.core.data.style import Profile
from convsim.core.data.turns import speaker_tail, tag
from convsim.core.files import write_json
from convsim.core.inference.reply import Progress, Stream

if TYPE_CHECKING:
    from convsim.core.data.turns import Turn
    from convsim.core.inference.engine import Engine, Sampling
    from convsim.core.inference.llama import LlamaModel

__all__ = [
    "PRIOR_REPLIES",
    "STYLE_WEIGHT",
    "TALLY_FILE",
    "continuation",
    "logprob_after",
    "remember",
    "simulate",
]

STYLE_WEIGHT = 1.0
PRIOR_REPLIES = 10  # the persona's style starts as the person's, weighed as this many replies
TALLY_FILE = "best_of_styles.json"  # in a persona's folder: its tallies between chats (`remember`)
TALLY_VERSION = 1


def remember(engine: Engine, folder: Path) -> None:
    """Keep `engine`'s tallies of its candidates' styles (`Engine.candidate_styles`) in the
    persona's `folder` (`TALLY_FILE`) from one chat to the next: take up the tallies saved
    there for the speakers whose style is set (`Engine.set_style` first), and write them all
    after every best-of-N reply (replacing the file whole). A file that cannot be read only
    loses its tallies, which start again from the person's profile: it holds counts derived
    from generated replies, nothing of the user's."""
    path = engine.tally_file = folder / TALLY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != TALLY_VERSION:
            return
        saved = {str(t): Profile.from_json(p) for t, p in data["tallies"].items()}
    except (OSError, AttributeError, KeyError, TypeError, ValueError):
        return  # no file yet, or not one this version wrote
    for tagged, tally in saved.items():
        if tagged in engine.styles:
            engine.candidate_styles[tagged] = tally


def continuation(messages: Sequence[str], speaker: str) -> str:
    """The text a model writes after `[speaker]` to send `messages`, up to the line break that
    ends the last one."""
    return " " + f"\n{tag(speaker)} ".join(messages) + "\n"


def logprob_after(
    model: LlamaModel, prefix: list[int], cont: list[int], steer_from: int = 0
) -> float:
    """log p(cont | prefix), summed over `cont`'s tokens. The prefix but its last token must be
    in `model`'s cache already (it was just evaluated), so only `cont` costs."""
    seq = prefix + cont
    keep = len(prefix) - 1
    return float(sum(model.token_logprobs(seq, len(prefix), keep=keep, steer_from=steer_from)))


def _neutral_score(engine: Engine, speaker: str, cont: list[int]) -> float:
    neutral = engine.neutral_model()
    prefix = neutral.tokenize(engine.head + speaker_tail(speaker))
    if len(prefix) + len(cont) > neutral.n_ctx():
        return 0.0  # too long to score without the conversation: the context term alone
    neutral.token_logprobs(prefix, len(prefix))  # the head stays cached between candidates
    return logprob_after(neutral, prefix, cont)


def simulate(
    engine: Engine,
    transcript: Sequence[Turn],
    speaker: str,
    sampling: Sampling,
    cancel: threading.Event | None,
    max_messages: int,
) -> Stream:
    """The best of `sampling.best_of` replies of `speaker` after `transcript` (see the module
    docstring)."""
    started = time.perf_counter()
    single = replace(sampling, best_of=1)
    replies = []
    for i in range(sampling.best_of):
        seed = None if sampling.seed is None else sampling.seed + 7919 * i
        stream = engine.simulate(
            transcript, speaker, replace(single, seed=seed), cancel, max_messages=max_messages
        )
        replies.append(stream.result())
        if cancel is not None and cancel.is_set():
            break
    tagged = engine.tag(speaker)
    tail = speaker_tail(tagged)
    # The prompt the candidates were generated after.
    prompt, trimmed, steer_from = engine.reply_prompt(
        transcript, tail, sampling.max_tokens * max_messages
    )
    person = engine.styles.get(tagged)
    persona = None
    if person is not None:
        persona = engine.candidate_styles.get(tagged) or person.scaled(PRIOR_REPLIES)
    said = [" ".join(reply.messages) for reply in replies]  # each candidate as one text
    scored: list[tuple[str, float]] = []
    for reply, text in zip(replies, said, strict=True):
        if not reply.messages:
            scored.append(("", float("-inf")))
            continue
        cont = engine.model.tokenize(continuation(reply.messages, tagged), bos=False)
        pmi = logprob_after(engine.model, prompt, cont, steer_from)
        pmi -= _neutral_score(engine, tagged, cont)
        style = person.log_prob(text) - persona.log_prob(text) if person and persona else 0.0
        scored.append((reply.text, pmi + STYLE_WEIGHT * style))
    if persona is not None:
        engine.candidate_styles[tagged] = persona.plus(said)
        if engine.tally_file is not None:
            tallies = {t: p.to_json() for t, p in engine.candidate_styles.items()}
            write_json(engine.tally_file, {"version": TALLY_VERSION, "tallies": tallies})
    scored.sort(key=lambda c: c[1], reverse=True)
    best = scored[0][0] if scored else ""
    progress = Progress(
        started=started,
        prompt_tokens=len(prompt),
        head_tokens=replies[0].head_tokens if replies else 0,
        trimmed_turns=trimmed,
        cap=sampling.max_tokens * max_messages,
        reused_tokens=replies[0].reused_tokens if replies else 0,
        generated_tokens=sum(r.generated_tokens for r in replies),
        capped=False,  # a capped candidate already ends at a whole word
        candidates=scored,
    )
    progress.first_token_s = time.perf_counter() - started if best else None
    return Stream(_pieces(best, tagged), progress, tagged, max_messages, True, cancel)


def _pieces(text: str, speaker: str) -> Generator[str, None, None]:
    if text:
        yield continuation(text.split("\n"), speaker)
