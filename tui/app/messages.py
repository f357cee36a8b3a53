"""Every message a worker sends back to the UI thread, in one place.

Workers (`@work(thread=True, ...)` methods on the screens) never touch widgets: they end by
posting one of these with `post`, and the screen's handler updates the widgets on the UI
thread. A failed job posts `JobFailed`, which bubbles up to the app and becomes a notification
(screens that must undo a "busy" state handle it too and let it bubble on). High-rate updates
are merged before they are posted: a reply's tokens arrive as `ReplyText` batches, not one
message per token.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from textual.message import Message
from textual.message_pump import MessagePump


def post(target: MessagePump, message: Message) -> bool:
    """Post `message` to `target` from any thread. False when nobody is left to receive it
    (the screen was closed or the app has quit meanwhile)."""
    try:
        return target.post_message(message)
    except RuntimeError:  # the app's event loop is already closed
        return False


@contextlib.contextmanager
def reporting(target: MessagePump, what: str, group: str) -> Iterator[None]:
    """Inside a worker: an exception ends the block and is posted as `JobFailed(what, ...)`
    instead of ending the worker with a traceback."""
    try:
        yield
    except Exception as exc:
        post(target, JobFailed(what, exc, group))


class JobFailed(Message):
    """A worker's job failed. `what` heads the notification; `group` is the worker group, so
    the screen that started it can tell its own failures apart."""

    def __init__(self, what: str, error: BaseException, group: str) -> None:
        super().__init__()
        self.what = what
        self.error = error
        self.group = group


# -- app ------------------------------------------------------------------------------------


class ThemeLoaded(Message):
    """The theme saved in the store (None when none was saved)."""

    def __init__(self, theme: str | None) -> None:
        super().__init__()
        self.theme = theme


# -- home -----------------------------------------------------------------------------------


class StoreListed(Message):
    """The chats and personas in the store, for the home screen."""

    def __init__(self, chats: list[Any], models: list[Any]) -> None:
        super().__init__()
        self.chats = chats
        self.models = models


class PersonaReady(Message):
    """A persona (engine loaded) to chat with."""

    def __init__(self, persona: Any) -> None:
        super().__init__()
        self.persona = persona


# -- wizard ---------------------------------------------------------------------------------


class FormatDetected(Message):
    """The format of the path being typed (`name`), or why none was found (`problem`)."""

    def __init__(self, path: str, name: str | None, problem: str | None = None) -> None:
        super().__init__()
        self.path = path
        self.name = name
        self.problem = problem


class Imported(Message):
    """Parse reports of the chats an import wrote (or of one stored chat), and who is "me"
    in those of them where the store knows it (chat id -> name)."""

    def __init__(self, reports: list[Any], me: dict[int, str]) -> None:
        super().__init__()
        self.reports = reports
        self.me = me


class ImportProgress(Message):
    """How far the store has got with a large export: `done` (0 to 1) and messages read."""

    def __init__(self, done: float, messages: int) -> None:
        super().__init__()
        self.done = done
        self.messages = messages


class DatasetBuilt(Message):
    """A dataset the wizard asked for (None: `error` says why it could not be built);
    `build` counts the wizard's requests."""

    def __init__(self, record: Any, build: int, error: BaseException | None = None) -> None:
        super().__init__()
        self.record = record
        self.build = build
        self.error = error


class BasesFound(Message):
    """Local base GGUFs, this machine's last measured training speed, the training device and
    whether it trains in bf16."""

    def __init__(self, found: list[Any], rate: float | None, device: str, bf16: bool) -> None:
        super().__init__()
        self.found = found
        self.rate = rate
        self.device = device
        self.bf16 = bf16


# -- training -------------------------------------------------------------------------------


class TrainProgress(Message):
    """One `TrainEvent` of the running job."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


class BaseProgress(Message):
    """A line about preparing the base model (download, conversion) before training starts."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class TrainingEnded(Message):
    """The training job returned (finished or cancelled with a checkpoint)."""

    def __init__(self, outcome: Any) -> None:
        super().__init__()
        self.outcome = outcome


class Exported(Message):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path


# -- chat -----------------------------------------------------------------------------------


class ReplyText(Message):
    """More of the reply being streamed: the pieces that arrived since the last batch, joined
    ("\\n" starts the reply's next message)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ReplyDone(Message):
    """The reply has ended: `reply` is the engine's `Reply` (its final messages and costs)."""

    def __init__(self, reply: Any) -> None:
        super().__init__()
        self.reply = reply


class ForeverTurn(Message):
    def __init__(self, speaker: str, text: str) -> None:
        super().__init__()
        self.speaker = speaker
        self.text = text


class ForeverEnded(Message):
    pass


class Completion(Message):
    """An autocomplete suggestion `completion` for the draft as it was (`partial`)."""

    def __init__(self, partial: str, completion: str) -> None:
        super().__init__()
        self.partial = partial
        self.completion = completion


class TranscriptSaved(Message):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path


class TranscriptsListed(Message):
    def __init__(self, files: list[Path]) -> None:
        super().__init__()
        self.files = files


class TranscriptLoaded(Message):
    def __init__(self, path: Path, turns: list[tuple[str, str]]) -> None:
        super().__init__()
        self.path = path
        self.turns = turns


# -- forget ---------------------------------------------------------------------------------


class ForgetPlanned(Message):
    """What forgetting would remove (`core.store.forget.ForgetPlan`), its lines to show, and
    the ids of its models that are training now (forgetting them is refused)."""

    def __init__(self, plan: Any, lines: list[str], training: list[str]) -> None:
        super().__init__()
        self.plan = plan
        self.lines = lines
        self.training = training


class Forgotten(Message):
    """A plan was carried out; `erased` is False when the WAL could not be emptied yet."""

    def __init__(self, subject: str, erased: bool) -> None:
        super().__init__()
        self.subject = subject
        self.erased = erased


# -- memory ---------------------------------------------------------------------------------


class MemoryLoaded(Message):
    """A chat's memory for the memory panel: the chat's title, the people to choose from, every
    fact (all statuses: the panel filters) and the unresolved conflicts."""

    def __init__(
        self, title: str, people: list[str], facts: list[Any], conflicts: list[Any]
    ) -> None:
        super().__init__()
        self.title = title
        self.people = people
        self.facts = facts
        self.conflicts = conflicts


class FactChanged(Message):
    """A fact was added, edited, pinned, removed or resolved from the panel (`what` says which,
    as a past participle for the notification)."""

    def __init__(self, fact: Any, what: str) -> None:
        super().__init__()
        self.fact = fact
        self.what = what


class FactLearned(Message):
    """Live extraction learned (or saw again) `fact` during the current chat. The chat screen
    receives it, keeps it, and passes it on to an open memory panel of the same chat."""

    def __init__(self, fact: Any) -> None:
        super().__init__()
        self.fact = fact


class MemoriesUsed(Message):
    """The facts the prompt of the reply being generated carries (empty: none)."""

    def __init__(self, facts: list[Any]) -> None:
        super().__init__()
        self.facts = facts


class SourcesFound(Message):
    """The source messages of a fact or a search hit (`key`), in context: groups of
    (message row, is a source) in chat order; `history` is the fact's audit log (None for a
    message hit)."""

    def __init__(self, key: str, groups: list[list[tuple[Any, bool]]], history: Any) -> None:
        super().__init__()
        self.key = key
        self.groups = groups
        self.history = history


class MemoryIndexing(Message):
    """Search is bringing the chat's index up to date first: `done` of `total` messages
    embedded."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__()
        self.done = done
        self.total = total


class MemorySearched(Message):
    """Search hits for `query`, best first; `note` says when search fell back to keywords."""

    def __init__(self, query: str, hits: list[Any], ms: float, note: str | None = None) -> None:
        super().__init__()
        self.query = query
        self.hits = hits
        self.ms = ms
        self.note = note


class MemoryBuildProgress(Message):
    """Extraction from the chat has read `done` of `total` messages."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__()
        self.done = done
        self.total = total


class MemoryBuilt(Message):
    """Extraction ended (finished or stopped): its `core.memory.extract.BuildReport`."""

    def __init__(self, report: Any) -> None:
        super().__init__()
        self.report = report


# -- steering -------------------------------------------------------------------------------


class SteeringLoaded(Message):
    """The persona's steering vectors (`core.steering.Vector`s, by name) and a line for each
    vector file that could not be used (another model's, damaged)."""

    def __init__(self, vectors: list[Any], problems: list[str]) -> None:
        super().__init__()
        self.vectors = vectors
        self.problems = problems


class SteerBuildProgress(Message):
    """One `core.steering.BuildEvent` of the vector being built."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


class SteerRemoved(Message):
    """The vector `name` was deleted from the persona's folder, or `error` says why not."""

    def __init__(self, name: str, error: str | None) -> None:
        super().__init__()
        self.name = name
        self.error = error


class SteerBuildEnded(Message):
    """Building a vector ended: `vector` (a `core.steering.Vector`) when it was saved, else
    `error` says why not (stopped, a bad name or pole, ...)."""

    def __init__(self, vector: Any | None, error: str | None) -> None:
        super().__init__()
        self.vector = vector
        self.error = error


# -- evaluate -------------------------------------------------------------------------------


class EvalLoaded(Message):
    """The persona's last saved suite report (`eval.json`), None when it was never evaluated;
    `folder` is the model's folder, where the report files live."""

    def __init__(self, report: dict[str, Any] | None, folder: Path) -> None:
        super().__init__()
        self.report = report
        self.folder = folder


class EvalProgress(Message):
    """A stage of the suite moved on: a `core.evaluation.SuiteEvent` (stage, done, total)."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


class EvalEnded(Message):
    """The suite ended: its `report` (saved beside the model), or None when it was stopped."""

    def __init__(self, report: dict[str, Any] | None) -> None:
        super().__init__()
        self.report = report


# -- explain --------------------------------------------------------------------------------


class ExplainProgress(Message):
    """Building the persona's index of training messages (first use): a
    `core.evaluation.ExplainEvent` (stage, done, total)."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


class ExplainFound(Message):
    """The person's real messages closest to the reply: a `core.evaluation.Explanation`."""

    def __init__(self, explanation: Any) -> None:
        super().__init__()
        self.explanation = explanation


class ExplainContext(Message):
    """A match in its chat: the messages around `message_id` (`core.evaluation.Said`s, in
    chat order) of chat `chat_id`."""

    def __init__(self, message_id: int, chat_id: int, lines: list[Any]) -> None:
        super().__init__()
        self.message_id = message_id
        self.chat_id = chat_id
        self.lines = lines


# -- learning: feedback and updates ---------------------------------------------------------


class FeedbackSaved(Message):
    """A feedback item (`core.learning.FeedbackItem`) was stored; `turn` is the index of the
    chat turn it is about (None: an autocomplete suggestion, which is no turn yet)."""

    def __init__(self, item: Any, turn: int | None) -> None:
        super().__init__()
        self.item = item
        self.turn = turn


class FeedbackListed(Message):
    """A persona's feedback items, oldest first, for the feedback view."""

    def __init__(self, items: list[Any]) -> None:
        super().__init__()
        self.items = items


class FeedbackRemoved(Message):
    """Feedback items were deleted (their ids)."""

    def __init__(self, ids: list[int]) -> None:
        super().__init__()
        self.ids = ids


class LearnLoaded(Message):
    """What the learn screen shows before an update: the feedback no update has learnt yet
    (`FeedbackItem`s), every version (`core.training.versions.Version`s, oldest first) and the
    number of the one the chat uses."""

    def __init__(self, unused: list[Any], versions: list[Any], current: int) -> None:
        super().__init__()
        self.unused = unused
        self.versions = versions
        self.current = current


class LearnProgress(Message):
    """One `core.learning.LearnEvent` of the running update."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


class LearnEnded(Message):
    """The update returned: its `core.learning.LearnOutcome` (done or cancelled), or None with
    `nothing` saying why there was nothing to learn."""

    def __init__(self, outcome: Any | None, nothing: str | None = None) -> None:
        super().__init__()
        self.outcome = outcome
        self.nothing = nothing


class VersionUsed(Message):
    """The chat now uses `version` (a rollback, or an update kept anyway)."""

    def __init__(self, version: int, kept: bool) -> None:
        super().__init__()
        self.version = version
        self.kept = kept


class JudgeLoaded(Message):
    """What the learn screen's judge needs: the configured endpoint ("url (model)", None when
    there is none) and whether the persona has a constitution."""

    def __init__(self, endpoint: str | None, has_constitution: bool) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.has_constitution = has_constitution


class LearnRefused(Message):
    """The update could not start or gather its material: `reason` is the line to show (the
    judge's endpoint failed, no constitution to judge by)."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class ConstitutionRead(Message):
    """A persona's constitution as stored ("" when none is written)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ConstitutionSaved(Message):
    """The constitution was written (`text` as stored; "" when it was removed)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
