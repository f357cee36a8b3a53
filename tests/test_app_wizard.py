"""The import wizard and the training screen when choices change under them: a dataset is only
trained on for the choices it was built for, the same choices reuse it, a failed build says why
where the build is shown, "me" is the one the store knows, and a failed training says why on
the screen (with Stop no longer offered). Real store, real dataset builds, the real app."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from test_app import SIZE, WHATSAPP, wait_for

from convsim.core.workspace import Workspace
from convsim.tui.app import ConvsimApp


def stored_datasets(home: Path) -> list[int]:
    with Workspace.open(home) as ws:
        return [d["id"] for d in ws.store.datasets()]


def test_the_wizard_trains_only_on_the_dataset_of_its_current_choices(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from textual.widgets import Input, Select, Static

    from convsim.tui.app.screens.wizard import ImportWizard

    with Workspace.open(home) as ws:
        (report,) = ws.import_export(WHATSAPP)
        ws.store.set_me(report.chat_id, "Riya")  # Riya also writes the most

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await app.push_screen(ImportWizard(chat_id=report.chat_id))
            wizard = app.screen
            step = wizard.query_one("#wizard")
            await wait_for(pilot, lambda: step.current == "people")
            # "me" as the store knows it; the persona is someone else.
            assert wizard.query_one("#me", Select).value == "Riya"
            assert wizard.query_one("#target", Select).value == "Sam"

            await pilot.press("ctrl+n")
            await wait_for(pilot, lambda: wizard.dataset is not None)
            first = wizard.dataset.id
            await pilot.press("escape")
            await pilot.press("ctrl+n")  # the same choices: the same dataset, none stored anew
            assert step.current == "dataset" and wizard.dataset.id == first
            assert stored_datasets(home) == [first]

            await pilot.press("escape")
            tag = next(i for i in wizard.query(".tag").results(Input) if i.name == "Riya")
            tag.value = "R"
            gate = threading.Event()
            build = Workspace.build_dataset

            def held(self, chat_id, config):
                gate.wait(30)  # a build that takes a while, as on a long chat
                return build(self, chat_id, config)

            monkeypatch.setattr(Workspace, "build_dataset", held)
            await pilot.press("ctrl+n")
            assert wizard.dataset is None  # until the new choices' dataset is built...
            await pilot.press("ctrl+n")
            assert step.current == "dataset"  # ...nothing goes on to training
            builds = wizard.builds
            await pilot.press("escape")
            await pilot.press("ctrl+n")  # the same choices while they build: that build stands
            assert wizard.builds == builds and step.current == "dataset"
            gate.set()
            await wait_for(pilot, lambda: wizard.dataset is not None)
            assert wizard.dataset.id != first
            assert "[R]" in str(wizard.query_one("#dataset-samples", Static).render())

            await pilot.press("escape")
            tag.value = "Sam"  # Sam's own tag: the wizard refuses before building
            await pilot.press("ctrl+n")
            await wait_for(pilot, lambda: app._notifications)
            assert step.current == "people"
            assert (
                list(app._notifications)[-1].message
                == "Riya would have Sam's tag 'Sam'; give them another"
            )

            def refuse(self, chat_id, config):
                raise ValueError("the disk is full")

            monkeypatch.setattr(Workspace, "build_dataset", refuse)
            tag.value = "Riya P"
            await pilot.press("ctrl+n")
            stats = wizard.query_one("#dataset-stats", Static)
            await wait_for(pilot, lambda: "the disk is full" in str(stats.render()))
            assert "Could not build the dataset" in str(stats.render())
            assert stats.has_class("-failure") and wizard.dataset is None
            await pilot.press("ctrl+n")
            assert step.current == "dataset"  # no training on the old dataset

    asyncio.run(drive())
    assert len(stored_datasets(home)) == 2


def test_a_failed_training_says_why_and_stop_is_no_longer_offered(home: Path) -> None:
    from textual.widgets import Static

    from convsim.tui.app.screens.training import TrainingScreen

    with Workspace.open(home) as ws:
        (report,) = ws.import_export(WHATSAPP)

    async def drive() -> None:
        app = ConvsimApp(home)
        async with app.run_test(size=SIZE) as pilot:
            missing = str(home / "no-such-base.gguf")
            screen = TrainingScreen(chat_id=report.chat_id, person="Sam", base=missing)
            assert screen.check_action("cancel", ())  # offered while it starts
            await app.push_screen(screen)
            await wait_for(pilot, lambda: screen.state == "failed")
            title = str(screen.query_one("#train-title", Static).render())
            assert title.startswith("Training failed: ") and "no-such-base.gguf" in title
            assert not screen.check_action("cancel", ())
            assert "ctrl+x" not in {b.binding.key for b in app.active_bindings.values()}

    asyncio.run(drive())
