"""Who a chat screen talks to: a loaded engine and the names on both sides. Loading one reads
the store and loads a model, so these functions run in workers, never on the UI thread."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Persona:
    """What a chat screen talks to: a loaded engine, who it speaks as, and who you are."""

    engine: Any
    speaker: str
    me: str
    title: str
    model_id: str | None = None
    chat_id: int | None = None  # the chat it was trained on: its memory
    model_path: Path | None = None  # the persona's folder: its steering vectors live there
    plain_base: bool = False  # the untrained default base (its vectors: `steering.base_folder`)


def persona_from_model(app: Any, model_id: str) -> Persona:
    """Load a trained persona (base + its adapter), with the style of the messages it was
    trained on for best-of-N replies and the tally of its earlier chats' candidates."""
    from convsim.core import training
    from convsim.core.data.style import Profile
    from convsim.core.evaluation.heldout import trained_texts
    from convsim.core.inference import best_of
    from convsim.core.inference.engine import Engine

    with app.workspace() as ws:
        record = ws.store.model(model_id)
        adapter = training.adapter_gguf(ws, model_id)
        tags = training.speaker_tags(ws, record)
        people = ws.store.participants(record.chat_id) if record.chat_id is not None else []
        texts = trained_texts(ws, model_id)
    others = [p for p in people if p.name != record.person]
    mine = [p for p in others if p.is_me] or others
    me = mine[0].name if mine else "You"
    engine = Engine(Path(record.base), [(adapter, 1.0)])
    engine.set_tags(tags)
    if texts:
        engine.set_style(record.person, Profile.of(texts))
        best_of.remember(engine, Path(record.path))
    title = f"{record.person} ({model_id})"
    return Persona(engine, record.person, me, title, model_id, record.chat_id, Path(record.path))


def persona_from_base(app: Any) -> Persona:
    """The plain default base model as a stranger called Friend."""
    from convsim.core.bases.prepare import default_base
    from convsim.core.inference.engine import Engine
    from convsim.core.steering.build import base_folder

    with app.workspace() as ws:
        path = default_base(ws.locations)
        folder = base_folder(ws)  # its steering vectors
    title = "Friend (base model, untrained)"
    return Persona(Engine(path), "Friend", "You", title, model_path=folder, plain_base=True)
