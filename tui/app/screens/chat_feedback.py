"""Feedback in the chat screen: what the user says of the persona's messages, stored with its
context so that an update (`core.learning.learn`, the learn screen) can learn from it.

Explicit feedback, on the focused persona message (else the latest one): `+` thumbs up
("good"), `-` thumbs down ("bad"); Ctrl+T's edit of the latest message is stored as the better
reply ("better"). Implicit feedback: Ctrl+R records the reply it replaces ("regenerate"), and
an autocomplete suggestion is recorded when it is sent as it was ("taken"), changed before
sending ("edited", the sent text as the better one) or dismissed with Escape ("dismissed").
Each item carries the transcript before the message, the version the chat uses and, when the
message was a whole best-of-N reply, that reply's candidates. F10 opens the feedback view.

Items are written by a worker (one transaction each, one at a time) that posts
`FeedbackSaved`; a refused item (`FeedbackError`: an empty edit, a model that is gone...)
comes back as `JobFailed` and becomes a notification with its reason. A message with explicit
feedback gets a coloured edge (a CSS class on its bubble) and its mark (👍, 👎, ✎) at its end,
both kept across redraws; implicit feedback is only listed in the view, so regenerating or
typing stays quiet. The edit (Ctrl+T) and regenerate (Ctrl+R) actions live here too: each is
feedback as well as a change to the conversation. A chat that is not
a trained persona (the plain base) stores nothing.
Handlers are `on_<message>` methods: Textual finds those on mixins, not `@on` ones.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

from textual import events, work

from convsim.tui.app.messages import FeedbackSaved, post, reporting

# Explicit kinds: the bubble's class, the notification, the bubble's tooltip and its mark.
MARKS = {
    "good": ("-rated-good", "👍 Noted: more like this.", "👍 you liked this", "👍"),
    "bad": ("-rated-bad", "👎 Noted: less like this.", "👎 you disliked this", "👎"),
    "better": ("-rated-better", "✎ Your edit is kept as the better reply.", "✎ you edited this",
               "✎"),
}  # fmt: skip
NO_PERSONA = "Feedback is for a trained persona: this chat is not one."


@dataclass
class Suggestion:
    """An autocomplete suggestion shown in the draft: the turns it followed, the whole message
    it proposed (the typed part and the completion), whether Tab (or →) took it, and the
    suggestion taken before it in the same draft (a new one follows each accepted one)."""

    turns: list[tuple[str, str]]
    text: str
    accepted: bool = False
    previous: Suggestion | None = None


class FeedbackActions:
    """Needs from the screen: `app`, `persona` (its `model_id`, `speaker`, `me`), `turns`,
    `generating`, `notify`, `query_one`, `query`, `focused`, `_redraw` and `_reply`. The
    screen calls `note_reply` when a reply ends, `suggestion_shown`/`draft_changed`/
    `suggestion_sent` from autocomplete and sending, and `show_marks` after it redraws the
    messages."""

    app: Any
    persona: Any
    turns: list[tuple[str, str]]
    generating: bool
    notify: Any
    query_one: Any
    focused: Any
    _redraw: Any
    _reply: Any

    def _init_feedback(self) -> None:
        # turn index -> (explicit kind, the text it was about): shown while the text is there
        self.feedback_marks: dict[int, tuple[str, str]] = {}
        self.feedback_saved: list[Any] = []  # items stored from this chat, in order
        self._reply_candidates: dict[int, tuple[str, list[dict[str, Any]]]] = {}
        self._suggestion: Suggestion | None = None
        self.redraws = 0  # Ctrl+R presses: a set seed moves on by one each time
        self._feedback_lock = threading.Lock()  # one write at a time

    # -- hooks the chat screen calls ------------------------------------------------------------

    def note_reply(self, start: int, reply: Any) -> None:
        """A reply ended; its messages are `turns[start:]`. Keep its best-of-N candidates."""
        candidates = [
            {"text": text, "score": score}
            for text, score in reply.candidates
            if text and math.isfinite(score)
        ]
        if candidates and reply.messages:
            self._reply_candidates[start] = (reply.text, candidates)

    def action_edit_reply(self) -> None:
        """Ctrl+T: rewrite the persona's latest message; a changed text is stored as the better
        reply ("better") and the conversation continues from it."""
        from convsim.tui.app.screens.chat_widgets import EditDialog

        if self.generating or not self.turns or self.turns[-1][0] != self.persona.speaker:
            self.notify("Edit works on the persona's latest message.")
            return
        index, old = len(self.turns) - 1, self.turns[-1][1]

        def edited(text: str | None) -> None:
            if text:
                if text.strip() != old.strip():
                    self._feedback("better", index, old, better=text)
                self.turns[-1] = (self.persona.speaker, text)
                self._redraw()

        self.app.push_screen(EditDialog(old), edited)

    def action_regenerate(self) -> None:
        """Ctrl+R: draw the persona's latest reply again; the one it replaces is stored as
        "regenerate" (a mild negative)."""
        if self.generating:
            return
        start = self._last_reply_start()
        if start == len(self.turns):
            self.notify("No reply to regenerate yet.")
            return
        reply = "\n".join(text for _, text in self.turns[start:])
        self._feedback("regenerate", start, reply, quiet=True)
        self._forget_from(start)
        del self.turns[start:]
        self._redraw()
        self.redraws += 1
        self._reply(self.redraws)

    def _last_reply_start(self) -> int:
        """Index of the first turn of the persona's latest reply (len(turns) if none)."""
        return self._reply_start(len(self.turns))

    def show_marks(self, bubbles: list[Any] | None = None) -> None:
        """Put the explicit-feedback marks on `bubbles` (the messages' bubbles, one per turn;
        None: those shown now)."""
        from convsim.tui.app.screens.chat_widgets import Bubble

        if bubbles is None:
            bubbles = list(self.query_one("#messages").query(Bubble))
        for i, bubble in enumerate(bubbles):
            kind, text = self.feedback_marks.get(i, ("", ""))
            # A transcript opened (Ctrl+L) replaces the turns: old marks fit no message there.
            shown = kind in MARKS and i < len(self.turns) and self.turns[i][1] == text
            for other, (cls, _, _, _) in MARKS.items():
                bubble.set_class(shown and other == kind, cls)
            bubble.tooltip = MARKS[kind][2] if shown else None
            bubble.set_mark(MARKS[kind][3] if shown else "")

    def _forget_from(self, start: int) -> None:
        """Turns from `start` on are gone: so are their marks and candidates."""
        for table in (self.feedback_marks, self._reply_candidates):
            for key in [k for k in table if k >= start]:
                del table[key]

    # -- explicit: thumbs up and down -----------------------------------------------------------

    def action_feedback_good(self) -> None:
        self._rate("good")

    def action_feedback_bad(self) -> None:
        self._rate("bad")

    def _rate(self, kind: str) -> None:
        index = self._persona_turn()
        if index is None:
            self.notify("+ and - rate a message the persona has finished writing.")
        elif self.persona.model_id is None:
            self.notify(NO_PERSONA)
        else:
            self._feedback(kind, index, self.turns[index][1])

    def _persona_turn(self) -> int | None:
        """The focused persona message's turn index, else the latest persona message's; None
        when there is none, or it is still being written."""
        from convsim.tui.app.screens.chat_widgets import Bubble

        bubbles = list(self.query_one("#messages").query(Bubble))
        focused = self.focused if isinstance(self.focused, Bubble) else None
        if focused is not None and focused in bubbles and focused.speaker == self.persona.speaker:
            index: int | None = bubbles.index(focused)
        else:
            theirs = [i for i, b in enumerate(bubbles) if b.speaker == self.persona.speaker]
            index = theirs[-1] if theirs else None
        if index is None or index >= len(self.turns):
            return None
        return index

    # -- autocomplete ---------------------------------------------------------------------------

    def suggestion_shown(self, partial: str, completion: str) -> None:
        s = self._suggestion
        taken = s if s is not None and s.accepted else (s.previous if s is not None else None)
        self._suggestion = Suggestion(list(self.turns), partial + completion, previous=taken)

    def draft_changed(self, value: str) -> None:
        """The draft changed: Tab took the suggestion when it now reads as the whole of it."""
        s = self._suggestion
        if s is not None and not s.accepted and value == s.text:
            s.accepted = True

    def on_key(self, event: events.Key) -> None:
        # Seen before the draft's own Escape binding runs, so the ghost is still there.
        s = self._suggestion
        if event.key != "escape" or s is None or s.accepted:
            return
        from convsim.tui.app.widgets import GhostInput

        draft = self.query_one("#draft", GhostInput)
        if draft.has_focus and draft.ghost and s.text.startswith(draft.value):
            self._implicit("dismissed", s, None)
            self._suggestion = s.previous

    def suggestion_sent(self, text: str) -> None:
        """The user sent `text`: the latest suggestion taken was sent as it was, or edited."""
        s, self._suggestion = self._suggestion, None
        if s is not None and not s.accepted:
            s = s.previous
        if s is None:
            return
        if text.strip() == s.text.strip():
            self._implicit("taken", s, None)
        else:
            self._implicit("edited", s, text)

    def _implicit(self, kind: str, s: Suggestion, better: str | None) -> None:
        if self.persona.model_id is None or not s.text.strip():
            return
        row = {"kind": kind, "transcript": s.turns, "reply": s.text, "better": better,
               "speaker": self.persona.me}  # fmt: skip
        self._store_feedback(row, None, True)

    # -- storing --------------------------------------------------------------------------------

    def _feedback(
        self, kind: str, index: int, reply: str, better: str | None = None, quiet: bool = False
    ) -> None:
        """Store feedback on the persona's message at turn `index` (its text: `reply`)."""
        if self.persona.model_id is None:
            return
        start = self._reply_start(index)
        noted = self._reply_candidates.get(start)
        # Candidates are whole replies: they go with an item about the whole reply as it was
        # drawn (a reply of one message, or the regenerated reply), not with a part of one.
        candidates = noted[1] if noted and index == start and noted[0] == reply else []
        row = {"kind": kind, "transcript": list(self.turns[:index]), "reply": reply,
               "better": better, "speaker": self.persona.speaker,
               "candidates": candidates}  # fmt: skip
        self._store_feedback(row, None if kind == "regenerate" else index, quiet)

    def _reply_start(self, index: int) -> int:
        """The first turn of the persona's reply that turn `index` belongs to."""
        start = index
        while start and self.turns[start - 1][0] == self.persona.speaker:
            start -= 1
        return start

    @work(thread=True, exit_on_error=False, group="feedback", description="store feedback")
    def _store_feedback(self, row: dict[str, Any], turn: int | None, quiet: bool) -> None:
        from convsim.core.learning.feedback import Feedback
        from convsim.core.training.versions import current

        app: Any = self.app
        screen: Any = self  # a Screen: the mixin is not one itself
        model_id = self.persona.model_id
        with self._feedback_lock, reporting(screen, "Feedback not saved", "feedback"):
            with app.workspace() as ws:
                version = current(ws.store, model_id).version
                item = Feedback(ws.store).add(model_id, version=version, origin="chat", **row)
            post(screen, FeedbackSaved(item, None if quiet else turn))

    def on_feedback_saved(self, message: FeedbackSaved) -> None:
        self.feedback_saved.append(message.item)
        kind, turn = message.item.kind, message.turn
        if turn is None or kind not in MARKS:
            return
        text = message.item.better if kind == "better" else message.item.reply
        if turn < len(self.turns) and self.turns[turn][1] == text:
            self.feedback_marks[turn] = (kind, text)
            self.show_marks()
        self.notify(MARKS[kind][1])

    def action_feedback(self) -> None:
        """The feedback view of this persona (F10)."""
        from convsim.tui.app.screens.feedback import FeedbackScreen

        if self.persona.model_id is None:
            self.notify(NO_PERSONA)
            return
        self.app.push_screen(FeedbackScreen(self.persona.model_id, self.persona.speaker))
