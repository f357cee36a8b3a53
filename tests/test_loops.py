"""Loop detection (`inference.loops`): which messages count as repeats of the recent ones.

Pure functions, no model: forever-chat itself is tested in test_engine.py, but for its retry
policy, checked here on scripted replies.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from convsim.core.inference.engine import Sampling
from convsim.core.inference.loops import (
    REPEAT_WINDOW,
    WINDOW,
    forever,
    is_loop,
    loop_rate,
    normalise,
    repeats,
    squeeze,
)


def test_squeeze_cuts_elongations_to_one_character() -> None:
    assert squeeze("noooo") == "no" and squeeze("lolll") == "lol"
    assert squeeze("ahhahahaha") == "ahahahaha"
    assert squeeze(normalise("Sooo   goood!!")) == "so god"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("hahahah", "ahhahahaha"),  # laughter of another length and phase
        ("haha", "hahahahaha"),
        ("HAHAHA!!", "ahahah"),
        ("lolll", "lol"),
        ("noooo", "nooo"),
        ("no", "nooooo"),
        ("lmaooo", "lmao"),
        ("what", "whatt??"),
        ("k", "kk"),
        ("haha yes", "hahahaha yesss"),  # two words: still no word trigram, characters decide
    ],
)
def test_short_near_repeats_are_loops(old: str, new: str) -> None:
    assert is_loop([old], new)
    assert is_loop(["something else entirely, about dinner", old, "ok"], new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("ok", "sure"),
        ("yes", "no idea"),
        ("lol", "lmao"),
        ("hehe", "haha"),
        ("yes", "yeah"),
        ("no", "nope"),
        ("sure", "sure thing"),
        ("thanks", "thank you"),
        ("good night", "good morning"),
        ("haha yes", "haha"),
        ("see you", "see you soon"),
    ],
)
def test_different_short_replies_are_not_loops(old: str, new: str) -> None:
    assert not is_loop([old], new)


def test_char_ratio_is_the_jaccard_threshold() -> None:
    # "hahaha ok" -> trigrams {hah, aha, "ha ", "a o", " ok"}; "haha" -> {hah, aha}: 2/5 = 0.4.
    assert not is_loop(["hahaha ok"], "haha")
    assert is_loop(["hahaha ok"], "haha", char_ratio=0.4)
    assert not is_loop(["hahaha ok"], "haha", char_ratio=0.41)


def test_only_the_window_counts() -> None:
    history = ["hahaha", "did you eat", "yes pasta", "nice"]
    assert is_loop(history, "ahahaha", window=4)
    assert not is_loop(history, "ahahaha", window=3)
    assert not is_loop(history, "ahahaha", window=0)
    assert not is_loop([], "hahaha")


def test_longer_messages_keep_the_word_checks() -> None:
    assert is_loop(["we should go to the beach tomorrow"], "We should go to the beach!")
    assert not is_loop(["we should go to the beach"], "what time is dinner tonight")
    # Long messages are not compared by characters: shared letters alone are no repeat.
    assert not is_loop(["the rain in spain stays mainly"], "the train in maine stays plainly")


def test_loop_rate_of_looping_and_varied_sequences() -> None:
    laughing = ["hahahah", "ahhahahaha", "hahaha", "lolll", "lol", "ahahahaha", "hahahahha", "lool"]
    # Every message after the first repeats one before it, except the first "lolll".
    assert loop_rate(laughing) == pytest.approx(6 / 7)
    elongated = ["nooo", "noooo", "no", "noooooo", "nooo"]
    assert loop_rate(elongated) == 1.0
    varied = ["ok", "sure", "yes", "no idea", "lol", "what time", "hmm", "see you at 7"]
    assert loop_rate(varied) == 0.0
    # The real default base, loop breaker on (see test_engine.py): the laughter it used to let
    # through now counts.
    seen = ["no", "hahahahha", "hahahahahaha", "ahahahahhahahaha", "hahahah", "ahhahahaha"]
    assert loop_rate(seen) == pytest.approx(4 / 5)


def test_is_loop_stays_cheap() -> None:
    history = ["hahahah", "did you see the game last night", "no I was stuck at work"] * 2
    messages = ["ahhahahaha", "ok", "perfect, 7pm works for me but we should leave early"]
    start = time.perf_counter()
    for _ in range(300):
        for message in messages:
            is_loop(history, message)
    per_call = (time.perf_counter() - start) / 900
    assert per_call < 0.005, f"{per_call * 1e6:.0f} µs per message"  # ~0.2 ms here


def test_repeats_look_further_back_than_loops() -> None:
    history = ["I'll be there at 9."] + [f"something new {i} about {i * 7}" for i in range(20)]
    assert not is_loop(history, "I'll be there at 9")  # 21 messages back: beyond WINDOW
    assert repeats(history, "i'll be there at 9!")  # the same normalised text
    assert not repeats(history, "I'll be there at 10.")
    assert not repeats(history, "I'll be there at 9.", window=len(history) - 1)
    assert REPEAT_WINDOW > len(history) > WINDOW
    assert not repeats(["😂", *history], "👍")  # no words: nothing to compare


class _Scripted:
    """Stands in for the engine in `forever`: each simulate() returns the next scripted text."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = iter(texts)
        self.temperatures: list[float] = []
        self.prompts: list[list[str]] = []  # the messages each call was shown

    def simulate(self, history, speaker, s, cancel):  # type: ignore[no-untyped-def]
        self.temperatures.append(s.temperature)
        self.prompts.append([text for _, text in history])
        reply = SimpleNamespace(text=next(self.texts))
        return SimpleNamespace(result=lambda: reply)


def test_forever_resamples_a_repeat_hotter() -> None:
    start = [("A", "I'll be there at 9.")] + [("B", f"new {i} thing {i * 3}") for i in range(9)]
    s = Sampling(temperature=0.8, seed=0)
    engine = _Scripted(["I'll be there at 9.", "I'll be there at 10."])
    ((who, text),) = forever(engine, start, ["A"], s, turns=1)  # type: ignore[arg-type]
    assert (who, text) == ("A", "I'll be there at 10.") and engine.temperatures[1] > 0.8
    assert engine.prompts == [[t for _, t in start]] * 2
    plain = _Scripted(["I'll be there at 9."])
    assert list(forever(plain, start, ["A"], s, turns=1, break_loops=False)) == [  # type: ignore[arg-type]
        ("A", "I'll be there at 9.")
    ]


def test_a_conversation_that_runs_dry_starts_a_new_session() -> None:
    start = [("A", "good night"), ("B", "good night, too")]
    s = Sampling(temperature=0.8, seed=0)
    # Every try says good night again (a loop); then a try shown no earlier message opens a
    # topic. In the third turn a repeat of the start is still refused: it was said, if no
    # longer shown.
    dry = ["good night, too"] * 4 + ["did you see the match", "yes what a goal"]
    dry += ["good night, too", "see you at the next one"]
    engine = _Scripted(dry)
    said = list(forever(engine, start, ["A", "B"], s, turns=3, retries=3))  # type: ignore[arg-type]
    assert said == [("A", "did you see the match"), ("B", "yes what a goal"),
                    ("A", "see you at the next one")]  # fmt: skip
    assert engine.prompts[:4] == [["good night", "good night, too"]] * 4
    assert engine.prompts[4] == [] and engine.temperatures[4] == 0.8  # not hotter: a new start
    assert engine.prompts[5] == ["did you see the match"]
    assert engine.prompts[6:] == [["did you see the match", "yes what a goal"]] * 2


def test_a_message_that_loops_even_in_a_new_session_is_kept() -> None:
    start = [("A", "I'll be there at 9.")]
    stubborn = _Scripted(["I'll be there at 9."] * 5)
    s = Sampling(temperature=0.8, seed=0)
    assert list(forever(stubborn, start, ["A"], s, turns=1, retries=3)) == [  # type: ignore[arg-type]
        ("A", "I'll be there at 9.")
    ]
    assert len(stubborn.prompts) == 5 and stubborn.prompts[-1] == []
