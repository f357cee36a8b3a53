""" "Is it really them?": how well a persona imitates its person, measured on the GGUFs users
run (llama.cpp) over the held-out latest sessions of its dataset; and why did it say that?

`suite.run` measures four variants (base, base prompted with the person's messages, tuned,
tuned best-of-N): held-out perplexity and next-reply ranking (`ranking`), style match,
authorship and a real-or-generated detector on generated replies (`imitation`, `classify`),
forever-conversation health (`health`), with bootstrap intervals (`stats`); `report` writes
`eval.json` and a self-contained `report.html` beside the model (`temperature_of` reads the
temperature a report's replies were sampled at, `replies_of` how many there were per moment,
`style_interval` a style feature's interval, `versus_in_context` sentences on the style
features the persona and best-of-N are closer on than the prompted base, `chance_side`
where a difference's interval lies, `forever_sentence` the forever conversation's figures).
`explain` finds the person's real training messages closest to a reply.

Contract: results are plain JSON-able dicts, saved beside the model; deterministic for a seed;
no network, no model downloads. Explanations read the model's dataset and keep their index in
the model's folder.
"""

from convsim.core.evaluation.explain import (
    SIGNALS,
    Explainer,
    ExplainEvent,
    ExplainStopped,
    Explanation,
    Match,
    Said,
    TextEmbedder,
    explain,
    surrounding,
)
from convsim.core.evaluation.report import (
    chance_side,
    forever_sentence,
    replies_of,
    style_interval,
    temperature_of,
    versus_in_context,
)
from convsim.core.evaluation.suite import FULL, QUICK, VARIANTS, SuiteEvent, SuiteStopped, run

__all__ = [
    "FULL",
    "QUICK",
    "SIGNALS",
    "VARIANTS",
    "ExplainEvent",
    "ExplainStopped",
    "Explainer",
    "Explanation",
    "Match",
    "Said",
    "SuiteEvent",
    "SuiteStopped",
    "TextEmbedder",
    "chance_side",
    "explain",
    "forever_sentence",
    "replies_of",
    "run",
    "style_interval",
    "surrounding",
    "temperature_of",
    "versus_in_context",
]
