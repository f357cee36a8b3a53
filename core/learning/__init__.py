"""Learning: the persona keeps learning from feedback and new messages, without forgetting.

Contract:
- Feedback (`Feedback`) lives in the store (`feedback`), each item with the transcript before
  the message, the version that wrote it and its best-of-N candidates. Every write checks
  first and is one transaction: a bad item or file line raises `FeedbackError` naming it, and
  nothing is stored half-way.
- `learn(ws, model_id)` is the consolidation job ("sleep"): it continues the current version's
  adapter on the new material (feedback, new sessions of the chat) mixed with replay of what
  the persona learnt before, with a preference objective on feedback
  (`training.preference.Update`), writes a new version (`training.versions`), scores the old
  and the new version on frozen held-out slices of every period learnt (`forgetting`), and
  promotes the new one only within the limits. Progress comes as `LearnEvent`s; a
  `threading.Event` stops it with a checkpoint, and `resume=True` continues. Until an update
  finishes and is promoted, the chat keeps the previous version.
- The constitution (`constitution`, `set_constitution`) is the user's few lines about the
  person. With an OpenAI-compatible endpoint configured (memory's endpoint settings; key in
  the keyring), `judge_pairs` asks it which of two candidate replies fits them better.
  Nothing here opens a connection otherwise.
"""

from __future__ import annotations

from convsim.core.learning.feedback import KINDS, Feedback, FeedbackError, FeedbackItem
from convsim.core.learning.forgetting import Slice, SliceScore, verdict
from convsim.core.learning.judge import constitution, judge_pairs, set_constitution
from convsim.core.learning.sleep import LearnEvent, LearnOutcome, LearnSettings, learn

__all__ = [
    "KINDS",
    "Feedback",
    "FeedbackError",
    "FeedbackItem",
    "LearnEvent",
    "LearnOutcome",
    "LearnSettings",
    "Slice",
    "SliceScore",
    "constitution",
    "judge_pairs",
    "learn",
    "set_constitution",
    "verdict",
]
