"""Tests for the training-dataset builder (`core/data/dataset.py`)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from convsim.core.chats.messages import CALL, DELETED, MEDIA, STICKER, SYSTEM, TEXT, StoredMessage
from convsim.core.data.dataset import (
    SYSTEM_TAG,
    Dataset,
    DatasetConfig,
    Example,
    build,
    render_sessions,
)

START = datetime(2020, 1, 17, 9, 0)


class Chat:
    """Builds a chronological list of StoredMessages; `wait` advances the clock."""

    def __init__(self) -> None:
        self.messages: list[StoredMessage] = []
        self.clock = START

    def wait(self, minutes: float) -> Chat:
        self.clock += timedelta(minutes=minutes)
        return self

    def say(self, sender: str | None, text: str, kind: str = TEXT) -> Chat:
        self.clock += timedelta(minutes=1)
        stamp = self.clock.isoformat(timespec="seconds")
        self.messages.append(StoredMessage(len(self.messages) + 1, stamp, sender, text, kind))
        return self


def riya_sam() -> Chat:
    """Two sessions of a Riya/Sam chat, the second starting after a 5-hour silence."""
    return (
        Chat()
        .say("Riya", "hey are we still going tonight?")
        .say("Sam", "yeah! want to meet at 7?")
        .say("Riya", "sounds perfect")
        .say("Riya", "see you then :)")
        .wait(300)
        .say("Sam", "home safe?")
        .say("Riya", "yes! thanks for tonight")
    )


def long_chat(sessions: int, turns: int) -> list[StoredMessage]:
    """`sessions` sessions of `turns` alternating Ana/Ben messages, 6 hours apart."""
    chat = Chat()
    for s in range(sessions):
        chat.wait(360)
        for t in range(turns):
            chat.say("Ana" if t % 2 else "Ben", f"s{s} t{t}")
    return chat.messages


def lines_in(text: str) -> int:
    return text.count("\n")


# --- sessions and rendering --------------------------------------------------------------


def test_sessions_render_exactly_and_split_at_the_gap() -> None:
    sessions = render_sessions(riya_sam().messages, DatasetConfig(target="Sam"))
    assert sessions == [
        "[Riya] hey are we still going tonight?\n"
        "[Sam] yeah! want to meet at 7?\n"
        "[Riya] sounds perfect\n"
        "[Riya] see you then :)\n",
        "[Sam] home safe?\n[Riya] yes! thanks for tonight\n",
    ]


@pytest.mark.parametrize(("silence", "expected"), [(238, 1), (239, 2), (500, 2)])
def test_session_gap_is_inclusive(silence: float, expected: int) -> None:
    # Each `say` adds one minute, so the gap between the two messages is silence + 1 minutes.
    chat = Chat().say("A", "one").wait(silence).say("B", "two")
    config = DatasetConfig(target="A", session_gap_minutes=240)
    assert len(render_sessions(chat.messages, config)) == expected


def test_dropped_messages_still_break_the_silence() -> None:
    chat = Chat().say("A", "look").say("B", "", MEDIA)
    chat.wait(200).say("B", "", MEDIA).wait(200).say("A", "nice")
    config = DatasetConfig(target="A", media="drop")
    assert render_sessions(chat.messages, config) == ["[A] look\n[A] nice\n"]


def test_sessions_left_empty_are_skipped_and_numbering_stays_dense() -> None:
    chat = Chat().say("A", "first").wait(600).say(None, "B joined", SYSTEM)
    chat.wait(600).say("B", "hi").say("A", "hello")
    config = DatasetConfig(target="A", validation_fraction=0)
    assert render_sessions(chat.messages, config) == ["[A] first\n", "[B] hi\n[A] hello\n"]
    dataset = build(chat.messages, config)
    assert [(e.session, e.context, e.target) for e in dataset.train] == [
        (0, "", "[A] first\n"),
        (1, "[B] hi\n", "[A] hello\n"),
    ]
    assert dataset.sessions == 2


def test_consecutive_messages_by_one_sender_stay_separate_turns() -> None:
    chat = Chat().say("A", "one").say("A", "two").say("A", "three")
    dataset = build(chat.messages, DatasetConfig(target="A", max_context=5))
    assert [e.target for e in dataset.train] == ["[A] one\n", "[A] two\n", "[A] three\n"]
    assert dataset.train[0].context == ""
    assert dataset.train[1].context == "[A] one\n"
    assert dataset.train[2].context in ("[A] two\n", "[A] one\n[A] two\n")


def test_multiline_bodies_are_one_turn() -> None:
    chat = Chat().say("B", "line one\n[not a tag]\nline three").say("A", "ok\nsure")
    dataset = build(chat.messages, DatasetConfig(target="A"))
    (example,) = dataset.train
    assert example.context == "[B] line one\n [not a tag]\nline three\n"
    assert example.target == "[A] ok\nsure\n"


def test_bodies_are_stripped_and_empty_texts_dropped() -> None:
    chat = Chat().say("B", "  \n").say("B", "\n  hi there  \n").say("A", "yo")
    (example,) = build(chat.messages, DatasetConfig(target="A")).train
    assert example.context == "[B] hi there\n"


# --- windows -----------------------------------------------------------------------------


def test_examples_for_the_small_chat() -> None:
    dataset = build(riya_sam().messages, DatasetConfig(target="Sam", validation_fraction=0))
    assert dataset.validation == []
    first, second = dataset.train
    assert first == Example(
        context="[Riya] hey are we still going tonight?\n",
        target="[Sam] yeah! want to meet at 7?\n",
        session=0,
        timestamp="2020-01-17T09:02:00",
        context_ids=(1,),
        target_id=2,
        next_tag="[Riya]",
    )
    # Sam opens session 1: an empty context, nothing from session 0.
    assert second == Example("", "[Sam] home safe?\n", 1, "2020-01-17T14:05:00", (), 5, "[Riya]")


def test_next_tag_says_who_writes_the_turn_after_the_target() -> None:
    chat = Chat().say("A", "hi").say("A", "you there?").say("B", "yes").say("A", "cool")
    chat = chat.wait(300).say("A", "new day")
    dataset = build(chat.messages, DatasetConfig(target="A", validation_fraction=0))
    # Another message of A's, a hand-over to B, the session's last turn, a session alone.
    assert [e.next_tag for e in dataset.train] == ["[A]", "[B]", "", ""]


def test_window_lengths_vary_within_bounds_and_stay_in_session() -> None:
    messages = long_chat(sessions=3, turns=40)
    dataset = build(messages, DatasetConfig(target="Ana", max_context=6, validation_fraction=0))
    lengths = []
    for example in dataset.train:
        position = int(example.target.split(" t")[1])  # index of the turn in its session
        length = lines_in(example.context)
        assert 1 <= length <= min(6, position)
        assert f"s{example.session} t{position - length}" in example.context
        assert all(f"] s{example.session} t" in line for line in example.context.splitlines())
        lengths.append(length)
    assert set(lengths) == {1, 2, 3, 4, 5, 6}


def test_window_reaches_the_session_opening() -> None:
    # The second turn of a session can only see the opener: its window must include it.
    messages = long_chat(sessions=2, turns=2)
    dataset = build(messages, DatasetConfig(target="Ana", validation_fraction=0))
    assert [e.context for e in dataset.train] == ["[Ben] s0 t0\n", "[Ben] s1 t0\n"]


def test_every_example_is_a_contiguous_slice_of_its_session() -> None:
    chat = riya_sam()
    chat.say("Sam", "[joke]\nline").say("Riya", "", STICKER).say("Sam", "x", MEDIA)
    for s in range(4):
        chat.wait(300)
        for t in range(15):
            chat.say("Sam" if t % 3 else "Riya", f"s{s} t{t}")
    messages = chat.messages
    config = DatasetConfig(target="Sam", max_context=4)
    dataset = build(messages, config)
    sessions = render_sessions(messages, config)
    assert dataset.sessions == len(sessions) == 6
    for example in dataset.train + dataset.validation:
        window = example.context + example.target
        session = sessions[example.session]
        start = session.find(window)
        assert start >= 0, window
        assert start == 0 or session[start - 1] == "\n"
        if example.context == "":
            assert start == 0  # an empty context only for the session's opening turn


# --- train / validation split ------------------------------------------------------------


def test_validation_is_the_latest_sessions_with_no_overlap() -> None:
    messages = long_chat(sessions=10, turns=6)
    dataset = build(messages, DatasetConfig(target="Ana", validation_fraction=0.3))
    train_sessions = {e.session for e in dataset.train}
    validation_sessions = {e.session for e in dataset.validation}
    assert train_sessions == set(range(7))
    assert validation_sessions == {7, 8, 9}
    assert max(e.timestamp for e in dataset.train) < min(e.timestamp for e in dataset.validation)
    held_out = "".join(e.context + e.target for e in dataset.validation)
    assert all(f"s{s} " not in held_out for s in train_sessions)


def test_one_session_means_no_validation() -> None:
    dataset = build(long_chat(1, 10), DatasetConfig(target="Ana", validation_fraction=0.5))
    assert len(dataset.train) == 5
    assert dataset.validation == []


def test_two_sessions_give_validation_at_least_one() -> None:
    dataset = build(long_chat(2, 10), DatasetConfig(target="Ana", validation_fraction=0.01))
    assert {e.session for e in dataset.train} == {0}
    assert {e.session for e in dataset.validation} == {1}


def test_training_always_keeps_a_session() -> None:
    dataset = build(long_chat(3, 4), DatasetConfig(target="Ana", validation_fraction=0.99))
    assert {e.session for e in dataset.train} == {0}
    assert {e.session for e in dataset.validation} == {1, 2}


def test_validation_fraction_zero_turns_validation_off() -> None:
    dataset = build(long_chat(5, 4), DatasetConfig(target="Ana", validation_fraction=0))
    assert len(dataset.train) == 10
    assert dataset.validation == []


def test_sessions_without_target_turns_are_not_held_out() -> None:
    chat = Chat().say("A", "hi").wait(600).say("A", "again").wait(600).say("B", "only B")
    dataset = build(chat.messages, DatasetConfig(target="A"))
    assert [e.session for e in dataset.train] == [0]
    assert [e.session for e in dataset.validation] == [1]


# --- determinism -------------------------------------------------------------------------


def test_same_seed_same_dataset_other_seed_other_windows() -> None:
    messages = long_chat(sessions=3, turns=30)
    config = DatasetConfig(target="Ana", seed=7)
    assert build(messages, config) == build(messages, DatasetConfig(target="Ana", seed=7))
    other = build(messages, DatasetConfig(target="Ana", seed=8))
    assert [e.target for e in other.train] == [e.target for e in build(messages, config).train]
    assert [e.context for e in other.train] != [e.context for e in build(messages, config).train]


def test_appending_messages_keeps_earlier_windows() -> None:
    messages = long_chat(sessions=4, turns=12)
    config = DatasetConfig(target="Ana", validation_fraction=0)
    before = build(messages[:30], config).train
    after = build(messages, config).train
    assert after[: len(before) - 1] == before[:-1]
    # The last window too; only who writes after it may be known now.
    assert replace(after[len(before) - 1], next_tag="") == replace(before[-1], next_tag="")


# --- media, system, scrubbing ------------------------------------------------------------


def placeholder_chat() -> list[StoredMessage]:
    chat = Chat().say("B", "look").say("B", "beach!", MEDIA).say("B", "", MEDIA)
    chat.say("B", "😀", STICKER).say("B", "", STICKER).say("B", "Missed voice call", CALL)
    chat.say("B", "", DELETED).say(None, "B changed the subject", SYSTEM).say("A", "wow")
    return chat.messages


def test_media_placeholders() -> None:
    (session,) = render_sessions(placeholder_chat(), DatasetConfig(target="A"))
    assert session == (
        "[B] look\n[B] <media> beach!\n[B] <media>\n[B] <sticker 😀>\n[B] <sticker>\n"
        "[B] <call>\n[B] <deleted>\n[A] wow\n"
    )


def test_media_drop_and_system_placeholder() -> None:
    config = DatasetConfig(target="A", media="drop", system="placeholder")
    (session,) = render_sessions(placeholder_chat(), config)
    assert session == f"[B] look\n[{SYSTEM_TAG}] B changed the subject\n[A] wow\n"
    assert build(placeholder_chat(), config).messages_used == 3


def test_sender_less_messages_follow_the_system_setting() -> None:
    chat = Chat().say(None, "").say(None, "who am I", TEXT).say("A", "hi")
    kept = render_sessions(chat.messages, DatasetConfig(target="A", system="placeholder"))
    assert kept == ["[system] <system>\n[system] who am I\n[A] hi\n"]
    dropped = build(chat.messages, DatasetConfig(target="A")).train[0]
    assert dropped.context == ""


def test_target_media_turns_are_examples_too() -> None:
    chat = Chat().say("B", "send it").say("A", "", MEDIA)
    (example,) = build(chat.messages, DatasetConfig(target="A")).train
    assert example.target == "[A] <media>\n"


def test_scrubbing_on_and_off() -> None:
    chat = Chat().say("B", "mail me at bob@example.com or call +1 555 123 4567")
    chat.say("A", "see https://example.com/x at 7:30 on 2020-01-17")
    plain = build(chat.messages, DatasetConfig(target="A")).train[0]
    assert plain.context == "[B] mail me at bob@example.com or call +1 555 123 4567\n"
    assert plain.target == "[A] see https://example.com/x at 7:30 on 2020-01-17\n"
    scrubbed = build(chat.messages, DatasetConfig(target="A", scrub=True)).train[0]
    assert scrubbed.context == "[B] mail me at <email> or call <phone>\n"
    assert scrubbed.target == "[A] see <url> at 7:30 on 2020-01-17\n"


# --- tags, targets and config ------------------------------------------------------------


def test_custom_and_default_tags() -> None:
    chat = Chat().say("Bob [work]", "hi").say("Riya Sharma", "hey").say("Mum\nx", "hello")
    chat.say("Riya Sharma", "bye")
    config = DatasetConfig(target="Riya Sharma", tags={"Riya Sharma": "Riya"}, max_context=1)
    dataset = build(chat.messages, config)
    assert render_sessions(chat.messages, config) == [
        "[Bob (work)] hi\n[Riya] hey\n[Mum x] hello\n[Riya] bye\n"
    ]
    assert [e.target for e in dataset.train] == ["[Riya] hey\n", "[Riya] bye\n"]


def test_unknown_target_names_it_and_lists_senders() -> None:
    with pytest.raises(ValueError) as info:
        build(riya_sam().messages, DatasetConfig(target="Sammy"))
    assert str(info.value) == "target 'Sammy' sent no message here; senders: 'Riya', 'Sam'"


def test_a_stored_tag_for_someone_not_in_the_messages_still_builds() -> None:
    """`learn` rebuilds a persona's dataset with the tags it was made with: one naming someone
    absent from these messages is no error there (a new dataset refuses it: `convsim dataset`)."""
    config = DatasetConfig(target="Sam", tags={"Sam Jones": "S"})
    assert build(riya_sam().messages, config).train


def test_target_tag_clash_is_refused() -> None:
    config = DatasetConfig(target="Sam", tags={"Riya": "Sam"})
    with pytest.raises(ValueError, match="'Sam' is also used by Riya"):
        build(riya_sam().messages, config)


def test_bad_timestamp_and_kind_are_reported_with_the_message_id() -> None:
    bad_time = [StoredMessage(4, "17/01/2020 10:00", "A", "hi", TEXT)]
    with pytest.raises(ValueError, match="message 4 has timestamp '17/01/2020 10:00'"):
        build(bad_time, DatasetConfig(target="A"))
    bad_kind = [StoredMessage(5, "2020-01-17T10:00:00", "A", "hi", "poll")]
    with pytest.raises(ValueError, match="message 5 has unknown kind 'poll'"):
        build(bad_kind, DatasetConfig(target="A"))


def test_config_json_round_trip() -> None:
    config = DatasetConfig(target="Sam", tags={"Riya": "R"}, max_context=4, scrub=True, seed=3)
    data = json.loads(json.dumps(config.to_json()))
    assert data["tags"] == {"Riya": "R"}
    assert data["session_gap_minutes"] == 240
    assert DatasetConfig.from_json(data) == config


def test_saved_config_keys_from_a_newer_convsim_are_ignored_and_reported() -> None:
    # Reading a saved config is tolerant (it used to refuse unknown keys): a dataset written
    # by a newer convsim still opens, and the keys it could not honour are listed.
    config = DatasetConfig.from_json({"target": "Sam", "colour": "red"})
    assert config == DatasetConfig(target="Sam") and config.ignored_keys == ("colour",)
    with pytest.raises(ValueError, match="dataset settings lack target"):
        DatasetConfig.from_json({"colour": "red"})


def test_config_overrides_refuse_unknown_keys() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset setting: colour \(valid: .*max_context"):
        DatasetConfig(target="Sam").with_overrides(colour="red")
    changed = DatasetConfig(target="Sam").with_overrides(max_context=3)
    assert changed == DatasetConfig(target="Sam", max_context=3)
    with pytest.raises(ValueError, match="max_context must be at least 1"):
        DatasetConfig(target="Sam").with_overrides(max_context=0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target": ""}, "target"),
        ({"media": "keep"}, "media"),
        ({"system": "keep"}, "system"),
        ({"session_gap_minutes": 0}, "session_gap_minutes"),
        ({"max_context": 0}, "max_context"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"tags": {"Riya": "[R]"}}, "tag for 'Riya'"),
    ],
)
def test_config_validation(changes: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"target": "Sam", **changes}
    with pytest.raises(ValueError, match=message):
        DatasetConfig(**values)  # type: ignore[arg-type]


# --- stats -------------------------------------------------------------------------------


def test_stats() -> None:
    chat = riya_sam().say("Sam", "", MEDIA)
    dataset = build(chat.messages, DatasetConfig(target="Sam", media="drop"))
    assert isinstance(dataset, Dataset)
    stats = dataset.stats()
    train_chars = len("[Riya] hey are we still going tonight?\n[Sam] yeah! want to meet at 7?\n")
    validation_chars = len("[Sam] home safe?\n")
    target_chars = len("[Sam] yeah! want to meet at 7?\n[Sam] home safe?\n")
    assert stats == {
        "train_examples": 1,
        "validation_examples": 1,
        "train_sessions": 1,
        "validation_sessions": 1,
        "sessions": 2,
        "messages_used": 6,
        "target_turns": 2,
        "train_token_estimate": round(train_chars / 3.5),
        "train_token_folded": round(train_chars / 3.5),
        "validation_token_estimate": round(validation_chars / 3.5),
        "target_token_estimate": round(target_chars / 3.5),
    }


def test_folded_token_count_counts_an_example_that_begins_another_once() -> None:
    # One session: Sam's second turn sees his first, so the first example (context + target)
    # begins the second. A second session says the same words again: a repeat keeps its weight.
    chat = Chat().say("Riya", "hi").say("Sam", "hey").say("Riya", "ok?").say("Sam", "fine")
    chat.wait(600).say("Riya", "hi").say("Sam", "hey")
    dataset = build(chat.messages, DatasetConfig(target="Sam", validation_fraction=0))
    texts = [e.context + e.target for e in dataset.train]
    assert texts == [
        "[Riya] hi\n[Sam] hey\n",
        "[Riya] hi\n[Sam] hey\n[Riya] ok?\n[Sam] fine\n",
        "[Riya] hi\n[Sam] hey\n",
    ]
    stats = dataset.stats()
    assert stats["train_token_estimate"] == round(sum(map(len, texts)) / 3.5)
    assert stats["train_token_folded"] == round((len(texts[0]) + len(texts[1])) / 3.5)


@pytest.mark.parametrize(
    ("text", "caption"),
    [
        ("<Media omitted>", ""),
        ("\u200eimage omitted", ""),
        ("<attached: 00000012-PHOTO-2020-01-01.jpg>", ""),
        ("IMG-20200101-WA0001.jpg (file attached)\nlook at this!", "look at this!"),
        ("<photo>", ""),
        ("sunset from the pier", "sunset from the pier"),
        ("", ""),
    ],
)
def test_media_placeholders_are_not_captions(text: str, caption: str) -> None:
    from convsim.core.data.dataset import media_caption

    assert media_caption(text) == caption
