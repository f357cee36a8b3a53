"""The "is it really them?" suite: its statistics and classifiers, ranking on llama.cpp checked
against the model's own logits, best-of-N, and `convsim eval` end to end on a tiny persona
trained on the sample chat (real SQLite, real llama.cpp, real files)."""

from __future__ import annotations

import io
import json
import math
import re
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from tinymodels import TinyModel

from convsim.core.data.dataset import Example
from convsim.core.data.style import Profile, features, turn_sizes, written
from convsim.core.evaluation import classify, heldout, imitation, ranking, stats, suite
from convsim.core.evaluation.imitation import (
    Authorship,
    detector,
    detector_accuracy,
    style_intervals,
    style_match,
    style_versus,
)
from convsim.core.inference import best_of
from convsim.core.inference.engine import Engine, Sampling
from convsim.core.inference.llama import LlamaModel
from convsim.tui.cli import main

# ---------------------------------------------------------------- statistics and style


def test_ks_statistic_and_bootstrap_intervals() -> None:
    assert stats.ks_statistic([1, 2, 3], [1, 2, 3]) == 0.0
    assert stats.ks_statistic([1, 2, 3], [10, 11]) == 1.0
    assert stats.ks_statistic([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx(0.25)
    values = np.random.default_rng(0).normal(5.0, 1.0, 400)
    low, high = stats.mean_interval(values)
    assert low < values.mean() < high and high - low < 0.4
    assert stats.mean_interval([]) == (pytest.approx(math.nan, nan_ok=True),) * 2
    # Resampled a group at a time: groups of one are `mean_interval`; three copies of each value
    # in a group vary as the values alone, not as three times as many independent ones.
    assert stats.grouped_mean_interval(values, [*range(400)]) == (low, high)
    tripled = np.repeat(values[:100], 3)
    alone = stats.mean_interval(tripled)
    grouped = stats.grouped_mean_interval(tripled, [i // 3 for i in range(300)])
    assert grouped == pytest.approx(stats.mean_interval(values[:100]))
    assert grouped[1] - grouped[0] > 1.4 * (alone[1] - alone[0])
    with pytest.raises(ValueError, match="2 groups for 3 values"):
        stats.grouped_mean_interval([1.0, 2.0, 3.0], [0, 1])
    assert stats.distinct_2(["a b a b", "a b"]) == pytest.approx(2 / 4)


def test_style_ks_has_a_bootstrap_interval_that_narrows_with_more_replies() -> None:
    rng = np.random.default_rng(2)

    def chat(n: int, mean_words: float) -> list[str]:
        return [" ".join(["ok"] * (1 + rng.poisson(mean_words))) for _ in range(n)]

    def spread(n: int, gen_words: float) -> dict[str, tuple[float, float]]:
        turns = [[t] for t in chat(n, gen_words)]
        return style_intervals(turns, chat(n, 4.0), [1] * n, seed=0)

    small, large = spread(30, 4.0), spread(600, 4.0)
    for lo, hi in (small["length"], large["length"]):
        assert 0 <= lo <= hi <= 1
    assert large["length"][1] - large["length"][0] < small["length"][1] - small["length"][0]
    assert large["length"][1] < 0.15  # the same distribution: a small KS, whatever the resample
    apart = spread(200, 12.0)["length"]  # three times as long: far apart in every resample
    assert apart[0] > 0.6
    # Turns are resampled whole: a turn of four copies of a message is one draw, so the KS
    # varies more than over the same 120 messages one to a turn (about twice; seeds 0-3: 1.6
    # to 2.0 times).
    messages, real = chat(30, 4.0), chat(1000, 4.0)
    alone = style_intervals([[t] for t in messages for _ in range(4)], real, [1] * 1000)["length"]
    grouped = style_intervals([[t] * 4 for t in messages], real, [1] * 1000)["length"]
    assert grouped[1] - grouped[0] > 1.3 * (alone[1] - alone[0])
    # Several replies to one moment are resampled together too: four one-message replies to
    # each of 30 moments vary exactly as 30 turns of four messages.
    paired = [i for i in range(30) for _ in range(4)]
    by_moment = style_intervals(
        [[t] for t in messages for _ in range(4)], real, [1] * 1000, moments=paired
    )
    assert by_moment["length"] == grouped
    with pytest.raises(ValueError, match="3 moments for 120 generated turns"):
        style_intervals([[t] for t in messages for _ in range(4)], real, [1], moments=[0, 1, 2])
    # Messages per turn: generated turn sizes against the real ones.
    turns = [["a", "b"]] * 40
    assert style_intervals(turns, ["a"] * 40, [2] * 40)["messages_per_turn"] == (0.0, 0.0)
    assert style_intervals(turns, ["a"] * 40, [1] * 40)["messages_per_turn"] == (1.0, 1.0)
    # The same replies and seed, the same interval.
    turns = [[t] for t in chat(50, 3.0)]
    real = chat(50, 3.0)
    assert style_intervals(turns, real, [1] * 50, 7) == style_intervals(turns, real, [1] * 50, 7)


def test_style_versus_tells_a_real_difference_from_chance() -> None:
    rng = np.random.default_rng(3)

    def chat(n: int, mean_words: float) -> list[str]:
        return [" ".join(["ok"] * (1 + rng.poisson(mean_words))) for _ in range(n)]

    real, moments = chat(150, 4.0), [i for i in range(60) for _ in range(3)]
    alike, also_alike, far = ([[t] for t in chat(180, w)] for w in (4.0, 4.0, 8.0))
    near = style_versus(alike, moments, far, moments, real, [1] * 150)
    difference, (lo, hi) = near["length"]
    assert difference == pytest.approx(
        stats.ks_statistic([len(t[0].split()) for t in alike], [len(t.split()) for t in real])
        - stats.ks_statistic([len(t[0].split()) for t in far], [len(t.split()) for t in real])
    )
    assert difference < 0 and lo <= difference <= hi < 0  # closer, beyond chance
    # Swapped, the same difference the other way; two samples of one distribution: undecided.
    assert style_versus(far, moments, alike, moments, real, [1] * 150)["length"][0] == (
        pytest.approx(-difference)
    )
    lo, hi = style_versus(alike, moments, also_alike, moments, real, [1] * 150)["length"][1]
    assert lo < 0 < hi
    # Messages per turn: one-message turns against real turns of one (identical: 0) or two.
    assert near["messages_per_turn"][0] == 0.0
    versus_two = style_versus(alike, moments, [["a", "b"]] * 180, moments, real, [2] * 150)
    assert versus_two["messages_per_turn"] == (1.0, (1.0, 1.0))  # 1 - 0, in every resample
    with pytest.raises(ValueError, match="one moment per generated turn"):
        style_versus(alike, moments[:-1], far, moments, real, [1] * 150)
    assert all(
        math.isnan(d) for d, _ in style_versus(alike, moments, far, moments, [], []).values()
    )


def test_report_axis_labels_and_figures_not_measured() -> None:
    """Chart ticks read as plain numbers (150, not 1.5e+02); a forever conversation of one-word
    messages has no word pairs, so its distinct-2 is not a number and reads n/a."""
    from convsim.core.evaluation.health import block_figures
    from convsim.core.evaluation.report import bars, forever_sentence

    svg = bars([("perplexity", [("tuned", 130.0, [100.0, 160.0])])], None, None)
    ticks = re.findall(r'class="tick">([^<]*)<', svg)
    assert ticks == ["0", "44", "88", "132", "176"]
    one_word = block_figures(["ok", "yes", "ok", "sure"])
    assert math.isnan(one_word["distinct_2"]) and one_word["exact_repeats"] == 0.25
    report = {"forever": {"turns": 4, "seeds": 1, **one_word, "real_distinct_2": 0.9,
                          "real_exact_repeats": 0.01, "real_loop_rate": 0.0}}  # fmt: skip
    assert forever_sentence(report) == (
        "Forever conversation (4 turns × 1), real chat in brackets: distinct-2 n/a (0.90), "
        f"exact repeats 0.25 (0.01), loops {one_word['loop_rate']:.2f} (0.00)"
    )
    assert forever_sentence({"forever": {"seeds": 0}}) == ""


def test_style_features_and_profile() -> None:
    f = features("haha ok are you coming?? 😂")
    assert f["length"] == 6 and f["emoji"] == 1 and f["laughter"] == 1 and f["question"] == 1
    assert f["lowercase"] == 1 and features("Okay then")["lowercase"] == 0
    assert turn_sizes(["A", "S", "S", "A", "S"], "S") == [2, 1]
    lower_short = Profile.of(["ok", "ya", "lol sure", "nah", "omw", "k"] * 5)
    assert lower_short.log_prob("ya lol") > lower_short.log_prob(
        "Good evening. I would be delighted to attend the event on Saturday, thank you."
    )


def test_naive_bayes_tells_styles_apart_and_not_one_style_from_itself() -> None:
    rng = np.random.default_rng(1)
    words = ["ok", "ya", "lol", "nah", "omw", "sure", "haha", "yep"]
    shouty = ["WHAT!!", "NO WAY!!", "OMG YES!!", "STOP IT!!", "HELLO!!"]
    casual = [" ".join(rng.choice(words, 3)) for _ in range(60)]
    loud = [" ".join(rng.choice(shouty, 2)) for _ in range(60)]
    model = classify.NaiveBayes().fit(casual[:40], loud[:40])
    assert all(model.log_odds(t) > 0 for t in casual[40:])
    assert all(model.log_odds(t) < 0 for t in loud[40:])
    right_a, right_b = classify.cross_validated(casual, loud)
    assert np.mean(right_a + right_b) > 0.95
    more_casual = [" ".join(rng.choice(words, 3)) for _ in range(60)]
    assert np.mean(detector(casual, more_casual)[0]) < 0.75  # one style: near chance
    # 140 generated texts against 40 real: three balanced rounds against the same real ones,
    # a generated text judged at most once (the 20 left over would not fill a fourth round).
    right, which = detector(casual[:40], loud * 2 + loud[:20])
    assert len(right) == len(which) == 3 * 80 and np.mean(right) > 0.95
    assert all(which.count(i) == 3 for i in range(40))
    gen = [w - 40 for w in which if w >= 40]
    assert len(gen) == len(set(gen)) == 120 and all(0 <= j < 140 for j in gen)
    assert detector(casual, []) == ([], [])
    # The suite's figure: turns of one or two messages, two replies to each of 30 moments.
    turns = [loud[j : j + 1 + j % 2] for j in range(60)]
    moments = [j % 30 for j in range(60)]
    told, (low, high), judged = detector_accuracy(casual[:40], turns, moments)
    flat = [x for t in turns for x in t]
    assert told == np.mean(detector(casual[:40], flat)[0]) and told > 0.95
    assert judged == 2 * 80 and low <= told <= high and low > 0.9
    near, _, _ = detector_accuracy(casual[:40], [[t] for t in more_casual], list(range(60)))
    assert near < 0.75
    with pytest.raises(ValueError, match="59 moments for 60"):
        detector_accuracy(casual[:40], turns, moments[:-1])
    nothing, interval, none_judged = detector_accuracy(casual[:40], [], [])
    assert np.isnan(nothing) and np.isnan(interval).all() and none_judged == 0
    author = Authorship.fit(casual[:40], loud[:40], casual[40:], loud[40:])
    scores = author.scores(casual[40:])
    assert np.mean(scores) == pytest.approx(1.0)
    assert np.mean(author.scores(loud[40:])) == pytest.approx(0.0, abs=1e-6)


def test_style_match_compares_generated_with_real() -> None:
    real = ["ok", "ya sure", "lol", "no"] * 5
    same = style_match([["ok", "ya sure"], ["lol", "no"]] * 5, real, [2, 2, 2])
    other = style_match([["Good evening, my friend. How are you today?"]] * 10, real, [2, 2])
    assert same["length"]["ks"] == 0 and same["messages_per_turn"]["ks"] == 0
    assert other["length"]["ks"] == 1 and other["messages_per_turn"]["ks"] == 1
    assert other["lowercase"]["relative_error"] == pytest.approx(1.0)


def test_style_is_measured_on_what_the_person_wrote() -> None:
    assert written("<media>") == "" and written("<sticker 😂>") == "" and written("<call>") == ""
    assert written("<media> what a view!") == "what a view!"
    assert written("Is <media> a tag?") == "Is <media> a tag?"
    # "<media>" alone is lower case and one word: counted, it would make a person who writes
    # in capitals look lower case; a sticker's 😂 would make them laugh.
    real = ["Fine, thanks.", "<media>", "<sticker 😂>", "<media> Look at this view."] * 5
    match = style_match([["Good, you?"], ["<media>", "See you at 5."]] * 5, real, [1, 2, 1])
    assert match["lowercase"]["real_mean"] == 0 and match["lowercase"]["ks"] == 0
    assert match["laughter"]["real_mean"] == 0 and match["emoji"]["real_mean"] == 0
    assert match["length"]["real_mean"] == pytest.approx((2 + 4) / 2)
    assert match["length"]["generated_mean"] == pytest.approx((2 + 4) / 2)
    assert match["messages_per_turn"]["generated_mean"] == pytest.approx(1.5)  # the photo too
    capitals = Profile.of(["Fine, thanks.", "See you then.", "<media>", "<sticker 🙂>"] * 5)
    assert capitals.total == 10
    assert capitals.log_prob("Good.") > capitals.log_prob("good")


def _example(context: str, target: str, session: int, ids: tuple[int, ...], tid: int) -> Example:
    return Example(context, target, session, "2024-01-01T10:00", ids, tid)


def test_material_holds_out_only_validation_and_never_leaks_the_answer() -> None:
    train = [_example(f"[Riya] train {i}\n", f"[Sam] old reply {i}\n", 0, (i * 2,), i * 2 + 1)
             for i in range(30)]  # fmt: skip
    validation = [
        _example(f"[Riya] question {i}\n[Sam] same {i}\n", f"[Sam] answer {i}\n", 1,
                 (100 + 3 * i, 101 + 3 * i), 102 + 3 * i)
        for i in range(25)
    ]  # fmt: skip
    m = heldout.material(train, validation, limit=10)
    assert m.tag == "Sam" and len(m.items) == 10 and m.other_tags == ["Riya"]
    assert m.train_texts[0] == "old reply 0" and len(m.heldout_replies) == 25
    assert 101 in m.heldout_ids and 1 not in m.heldout_ids
    for item in m.items:
        assert len(item.others) == len(item.same_person) == heldout.DISTRACTORS
        context_texts = {t for _, t in item.turns}
        assert item.reply not in item.others + item.same_person
        assert not context_texts & set(item.others + item.same_person)
    with pytest.raises(ValueError, match="no held-out"):
        heldout.material(train, [])


# ---------------------------------------------------------------- llama.cpp


def _direct(model: LlamaModel, prefix: str, reply: str) -> float:
    """log p(" reply\\n" | prefix) from next_logits alone, one token at a time."""
    ids = model.tokenize(prefix)
    cont = model.tokenize(f" {reply}\n", bos=False)
    total = 0.0
    for tok in cont:
        logits = model.next_logits(ids).astype(np.float64)
        top = logits.max()
        total += logits[tok] - top - np.log(np.exp(logits - top).sum())
        ids = [*ids, tok]
    return float(total)


def test_ranking_scores_match_the_logits(tiny: TinyModel) -> None:
    model = LlamaModel(tiny.gguf_path, n_ctx=512, threads=2)
    others = tuple(f"other {i} sea" for i in range(19))
    same = tuple(f"we are {i}" for i in range(19))
    item = heldout.Item("[Riya] hey are we going\n", "yes we are", "t", others, same)
    (ranked,) = ranking.rank(model, "", [item], "Sam")
    direct = _direct(model, item.context + "[Sam]", "yes we are")
    assert ranked.nll == pytest.approx(-direct, rel=1e-3)
    scores = {
        t: _direct(model, item.context + "[Sam]", t) - _direct(model, "[Sam]", t)
        for t in (item.reply, *others)
    }
    expected = 1 + sum(scores[t] >= scores[item.reply] for t in others)
    assert ranked.rank_others == expected
    assert 1 <= ranked.rank_same_person <= 20
    model.close()


def test_ranking_priors_per_pool(tiny: TinyModel) -> None:
    """Other people's messages are scored against the reference (the base model's prior),
    the person's own against the model's own prior, head included; `prior` keeps the latter."""
    model = LlamaModel(tiny.gguf_path, n_ctx=512, threads=2)
    others = tuple(f"sea {i} other" for i in range(19))
    same = tuple(f"we {i} are" for i in range(19))
    item = heldout.Item("[Riya] hey are we going\n", "yes we are", "t", others, same)
    # A made-up reference that puts the true reply above every other-people text.
    reference = {t: 0.0 for t in others} | {item.reply: -1000.0}
    head = "Sam writes: we are we are\n"
    prior: dict[str, float] = {}
    (ranked,) = ranking.rank(model, head, [item], "Sam", reference=reference, prior=prior)
    assert ranked.rank_others == 1
    assert set(prior) == {item.reply, *same}  # others need no own prior then
    for t in (item.reply, *same[:3]):
        assert prior[t] == pytest.approx(_direct(model, head + "[Sam]", t), abs=1e-3)
    in_context = {t: _direct(model, head + item.context + "[Sam]", t) for t in prior}
    score = {t: in_context[t] - prior[t] for t in prior}
    assert ranked.rank_same_person == 1 + sum(score[t] >= score[item.reply] for t in same)
    below = reference | {item.reply: 1000.0}  # and one that puts it below all of them
    assert ranking.rank(model, head, [item], "Sam", reference=below)[0].rank_others == 20
    assert ranking.rank(model, head, [item], "Sam", reference={}) == []  # no reference: left out
    model.close()


def test_best_of_n_returns_the_best_scored_candidate(tiny: TinyModel) -> None:
    engine = Engine(tiny.gguf_path, n_ctx=512, threads=2)
    engine.set_style("Sam", Profile.of(["ok", "ya sure", "lol"]))
    chat = [("Riya", "hey are we going"), ("Sam", "yes we are"), ("Riya", "the place")]
    s = Sampling(seed=3, max_tokens=10, best_of=4)
    reply = engine.simulate(chat, "Sam", s).result()
    texts = [t for t, _ in reply.candidates]
    scores = [score for _, score in reply.candidates]
    assert len(reply.candidates) == 4 and scores == sorted(scores, reverse=True)
    assert reply.text == texts[0] and reply.first_token_s is not None
    singles = {
        engine.simulate(chat, "Sam", Sampling(seed=3 + 7919 * i, max_tokens=10)).result().text
        for i in range(4)
    }
    assert set(texts) == singles  # the candidates are the N seeded samples
    engine.set_style("Sam", Profile.of(["ok", "ya sure", "lol"]))  # forgets the candidates' style
    assert engine.simulate(chat, "Sam", s).result().candidates == reply.candidates
    engine.set_style("Sam", Profile.of(["ok", "ya sure", "lol"]))
    assert "".join(engine.simulate(chat, "Sam", s)) == reply.text  # it streams the same
    engine.close()


def test_best_of_n_holds_back_a_style_the_persona_already_overproduces(tiny: TinyModel) -> None:
    engine = Engine(tiny.gguf_path, n_ctx=512, threads=2)
    person = Profile.of(["ok", "ya sure", "lol", "where r u?", "haha yes 😂"] * 4)
    chat = [("Riya", "hey are we going"), ("Sam", "yes we are"), ("Riya", "the place")]
    s = Sampling(seed=3, max_tokens=10, best_of=4)
    engine.set_style("Sam", person)
    first = dict(engine.simulate(chat, "Sam", s).result().candidates)
    # The candidates' style is counted, after the person's as a prior of PRIOR_REPLIES replies.
    said = [t.replace("\n", " ") for t in first if t]
    assert engine.candidate_styles["Sam"].total == pytest.approx(best_of.PRIOR_REPLIES + len(said))
    # A persona that has written the top candidate's style over and over: that candidate loses
    # against the others by what the persona's profile says about it, the ranking score aside.
    top = max(first, key=first.__getitem__)
    engine.set_style("Sam", person)
    engine.candidate_styles["Sam"] = person.scaled(best_of.PRIOR_REPLIES).plus([top] * 200)
    again = dict(engine.simulate(chat, "Sam", s).result().candidates)
    assert set(again) == set(first)
    assert again[top] < first[top]
    others = [t for t in first if t and _buckets(t) != _buckets(top)]
    assert others and all(again[t] - again[top] > first[t] - first[top] for t in others)
    # Without the person's profile there is no style term and nothing is counted.
    engine.set_style("Sam", None)
    engine.simulate(chat, "Sam", s).result()
    assert "Sam" not in engine.candidate_styles
    engine.close()


def test_best_of_n_keeps_its_tally_from_one_chat_to_the_next(
    tiny: TinyModel, tmp_path: Path
) -> None:
    person = Profile.of(["ok", "ya sure", "lol", "where r u?", "haha yes 😂"] * 4)
    chat = [("Riya", "hey are we going"), ("Sam", "yes we are"), ("Riya", "the place")]
    s = Sampling(seed=3, max_tokens=10, best_of=3)
    saved = tmp_path / best_of.TALLY_FILE
    first = Engine(tiny.gguf_path, n_ctx=512, threads=2)
    first.set_style("Sam", person)
    best_of.remember(first, tmp_path)  # no file yet: the tally starts from the person's profile
    assert "Sam" not in first.candidate_styles and not saved.exists()
    for seed in (3, 4):
        first.simulate(chat, "Sam", replace(s, seed=seed)).result()
    tally = first.candidate_styles["Sam"]
    first.close()
    assert tally.total > best_of.PRIOR_REPLIES
    # The next chat takes it up where the last one left it, and goes on counting.
    second = Engine(tiny.gguf_path, n_ctx=512, threads=2)
    second.set_style("Sam", person)
    best_of.remember(second, tmp_path)
    assert second.candidate_styles["Sam"] == tally
    reply = second.simulate(chat, "Sam", replace(s, seed=5)).result()
    said = [t.replace("\n", " ") for t, _ in reply.candidates if t]
    assert second.candidate_styles["Sam"].total == pytest.approx(tally.total + len(said))
    assert (
        Profile.from_json(json.loads(saved.read_text())["tallies"]["Sam"])
        == (second.candidate_styles["Sam"])
    )
    # Only speakers whose style is set take a tally up; a file this version cannot read is a
    # tally lost, not an error, and is replaced after the next reply.
    second.set_style("Sam", None)
    best_of.remember(second, tmp_path)
    assert "Sam" not in second.candidate_styles
    for junk in ("{not json", '{"version": 1, "tallies": {"Sam": {"total": "x"}}}', "[]"):
        saved.write_text(junk)
        second.set_style("Sam", person)
        best_of.remember(second, tmp_path)
        assert "Sam" not in second.candidate_styles
    second.simulate(chat, "Sam", s).result()
    assert json.loads(saved.read_text())["version"] == best_of.TALLY_VERSION
    second.close()
    with pytest.raises(ValueError, match="not a style profile"):
        Profile.from_json({"total": 1})


def _buckets(reply: str) -> dict[str, dict[int, float]]:
    """A reply's style buckets, as best-of-N counts them (its messages as one text)."""
    return Profile.of([reply.replace("\n", " ")]).counts


def test_a_profile_scales_to_a_prior_and_grows_by_texts() -> None:
    mine, more = ["ok", "ya sure", "lol", "Where are you?"], ["Fine, thanks.", "haha 😂"]
    profile = Profile.of(mine)
    prior = profile.scaled(10)
    assert prior.total == pytest.approx(10)
    for name, seen in profile.counts.items():  # the same distribution, as if from 10 messages
        assert prior.counts[name] == pytest.approx({b: 10 * c / 4 for b, c in seen.items()})
    grown = profile.plus(more)
    assert grown.total == Profile.of(mine + more).total == 6
    assert grown.counts == Profile.of(mine + more).counts
    assert profile.counts == Profile.of(mine).counts  # a new profile: this one is unchanged
    assert Profile.of([]).scaled(10).total == 0


def test_generated_replies_name_their_moment_and_seed(tiny: TinyModel) -> None:
    train = [_example(f"[Riya] train {i}\n", f"[Sam] old {i}\n", 0, (2 * i,), 2 * i + 1)
             for i in range(20)]  # fmt: skip
    validation = [_example(f"[Riya] where are we going {i}\n", f"[Sam] the sea {i}\n", 1,
                           (100 + 2 * i,), 101 + 2 * i) for i in range(3)]  # fmt: skip
    m = heldout.material(train, validation)
    engine = Engine(tiny.gguf_path, n_ctx=512, threads=2)
    s = Sampling(seed=5, max_tokens=8)
    said = suite.generate(engine, m, s, per_moment=2)
    assert said.moments == [0, 1, 2, 0, 1, 2] and len(said.turns) == 6
    assert said.of_message == [k for k, t in zip(said.moments, said.turns, strict=True) for _ in t]
    assert len(said.of_message) == sum(map(len, said.turns)) and len(said.firsts) <= 6
    # The second round's reply to the third moment has seed 5 + 1000 + 2, on that moment.
    alone = engine.simulate(m.items[2].turns, m.tag, Sampling(seed=1007, max_tokens=8),
                            max_messages=imitation.MAX_MESSAGES).result()  # fmt: skip
    assert said.at(2)[1] == said.turns[5] == [x for x in alone.messages if x.strip()]
    stop = threading.Event()
    stop.set()
    assert suite.generate(engine, m, s, stop, per_moment=2).turns == []  # cancelled before one
    engine.close()


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def persona(tiny_persona: tuple[Path, str]) -> tuple[Path, str]:
    return tiny_persona


FIGURES = {"perplexity", "hits_at_1_others", "hits_at_1_same_person", "mrr_others",
           "mrr_same_person", "detector_accuracy", "authorship", "style_ks"}  # fmt: skip


def test_eval_quick_json_shape_report_and_files(persona, monkeypatch, capsys) -> None:
    home, model_id = persona
    monkeypatch.setenv("CONVSIM_HOME", str(home))
    quick = ["eval", model_id, "--quick", "--items", "10", "--best-of", "2", "--forever-turns",
             "12", "--threads", "2", "--temperature", "0.9", "--replies", "2"]  # fmt: skip
    asked: list[tuple[float, int]] = []  # (temperature, best_of) of every reply the suite asks for
    seeds: list[int] = []  # the seed of each best-of-N reply
    simulate = Engine.simulate

    def spy(self: Engine, transcript, speaker, sampling=None, *args, **kwargs):
        asked.append((sampling.temperature, sampling.best_of))
        if sampling.best_of == 2:
            seeds.append(sampling.seed)
        return simulate(self, transcript, speaker, sampling, *args, **kwargs)

    monkeypatch.setattr(Engine, "simulate", spy)
    assert main([*quick, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for variant in ("base", "in_context", "tuned", "best_of_n"):
        v = report[variant]
        assert set(v) >= FIGURES, variant
        assert set(v["style_ks"]) == {"length", "emoji", "lowercase", "punctuation",
                                      "laughter", "question", "messages_per_turn"}  # fmt: skip
        assert 0 <= v["hits_at_1_others"] <= 1 and v["perplexity"] > 1
        assert v["counts"]["ranked"] == report["items"] == 10
        assert v["counts"]["generated_replies"] == 2 * 10  # --replies 2 for each of 10 moments
        lo, hi = v["intervals"]["mrr_others"]
        assert lo <= v["mrr_others"] <= hi
        spread = v["intervals"]["style_ks"]
        assert set(spread) == set(v["style_ks"])
        assert all(None in s or 0 <= s[0] <= s[1] <= 1 for s in spread.values())
        assert None not in spread["length"] and None not in spread["messages_per_turn"]
        if variant in ("tuned", "best_of_n"):  # against in_context, with a paired interval
            diffs = v["style_ks_vs_in_context"]
            assert set(diffs) == set(v["style_ks"])
            for name, d in diffs.items():
                if None not in (d, v["style_ks"][name], report["in_context"]["style_ks"][name]):
                    ks, ic = v["style_ks"][name], report["in_context"]["style_ks"][name]
                    assert d == pytest.approx(ks - ic, abs=2e-4)
                    lo, hi = v["intervals"]["style_ks_vs_in_context"][name]
                    assert -1 <= lo <= hi <= 1
        else:
            assert "style_ks_vs_in_context" not in v
    assert report["temperature"] == 0.9
    # Every variant's replies at 0.9, best-of-N's included; the forever conversation may go
    # hotter only to break a loop (`engine.hotter`).
    assert {t for t, n in asked if n == 2} == {0.9} and len([n for _, n in asked if n == 2]) == 20
    assert [t for t, n in asked if n == 1].count(0.9) >= 3 * 20 + 12
    assert seeds == [*range(10), *range(1000, 1010)]  # a seed of its own for every reply
    assert report["replies_per_moment"] == 2
    assert report["best_of_n"]["ranking_from"] == "tuned" and report["best_of_n"]["n"] == 2
    assert report["best_of_n"]["hits_at_1_others"] == report["tuned"]["hits_at_1_others"]
    # Different models, different numbers: nothing here is a constant.
    assert report["base"]["perplexity"] != report["tuned"]["perplexity"]
    assert report["forever"]["turns"] == 12 and report["forever"]["seeds"] == 1
    assert 0 <= report["forever"]["exact_repeats"] <= 1
    assert 0 < report["forever"]["real_distinct_2"] <= 1
    folder = home / "models" / model_id
    assert json.loads((folder / "eval.json").read_text()) == report
    page = (folder / "report.html").read_text()
    assert page.count("<svg") == 5 and "Sam" in page and "http" not in page.split("<pre>")[0]
    spreads = [report[v]["intervals"]["style_ks"] for v in ("base", "in_context", "tuned",
                                                            "best_of_n")]  # fmt: skip
    style_chart = page.split("<svg")[-1]  # whiskers: a style KS interval per variant and feature
    whiskers = sum(None not in s for x in spreads for s in x.values())
    assert style_chart.count('class="ci"') == whiskers
    assert "2 replies per moment sampled at temperature 0.9" in page
    # The terminal table reads the saved figures.
    assert main(["eval", model_id, "--last"]) == 0
    out = capsys.readouterr().out
    assert "Hits@1 vs other people" in out and "report.html" in out and "temperature 0.9" in out
    assert "on 10 held-out moments (quick), 2 replies per moment" in out
    assert f"{report['tuned']['hits_at_1_others']:.2f}" in out and "Forever conversation" in out
    ks, (lo, hi) = report["tuned"]["style_ks"]["length"], spreads[2]["length"]
    assert f"{ks:.2f} ({lo:.2f}-{hi:.2f})" in out
    closer = sum(d < 0 for d in report["tuned"]["style_ks_vs_in_context"].values() if d is not None)
    line = f"Tuned persona against base + their messages as a prompt: closer to them on {closer} of"
    assert line in out and line in page


def test_eval_refuses_bad_input(persona, monkeypatch, capsys) -> None:
    home, model_id = persona
    monkeypatch.setenv("CONVSIM_HOME", str(home))
    assert main(["eval", "nobody-9", "--quick"]) == 2
    assert "nobody-9" in capsys.readouterr().err
    assert main(["eval", model_id, "--best-of", "1"]) == 2
    assert "--best-of" in capsys.readouterr().err
    assert main(["eval", model_id, "--temperature", "-1"]) == 2
    assert "--temperature must be 0 or more" in capsys.readouterr().err
    assert main(["eval", model_id, "--replies", "0"]) == 2
    assert "--replies must be 1 or more, not 0" in capsys.readouterr().err
    assert main(["eval", model_id, "--seed", "-5"]) == 2
    assert "--seed must be from 0 to 4294967295, not -5" in capsys.readouterr().err
    for command in (["eval", model_id, "--quick"], ["explain", model_id, "--reply", "hi"]):
        with pytest.raises(SystemExit):  # refused before anything runs
            main([*command, "--threads", "0"])
        assert "--threads must be 1 or more, not 0" in capsys.readouterr().err
    (home / "models" / model_id / "eval.json").write_text("{broken")
    assert main(["eval", model_id, "--last"]) == 2
    assert "eval.json: not a report" in capsys.readouterr().err


def test_simulate_best_of_n_on_the_command_line(persona, monkeypatch, capsys, tmp_path) -> None:
    home, model_id = persona
    monkeypatch.setenv("CONVSIM_HOME", str(home))
    transcript = tmp_path / "t.txt"
    transcript.write_text("[Riya] are you coming tonight?\n")
    args = ["simulate", model_id, "--transcript", str(transcript), "--turns", "1", "--seed", "2",
            "--max-tokens", "8", "--threads", "2", "--json"]  # fmt: skip
    assert main([*args, "--best-of", "3"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best["speaker"] == "Sam" and best["text"]
    assert main([*args, "--best-of", "0"]) == 2
    assert "--best-of must be 1 or more" in capsys.readouterr().err
    # `simulate` is the same for the same seed: it keeps no tally. A chat keeps it in the
    # persona's folder, and the next chat takes it up.
    tally = home / "models" / model_id / best_of.TALLY_FILE
    assert not tally.exists()
    totals = []
    for line in ("are you coming tonight?\n", "hey\nwhere are you\n"):
        monkeypatch.setattr("sys.stdin", io.StringIO(line))
        chat = ["chat", model_id, "--as", "Riya", "--max-tokens", "6", "--best-of", "2"]
        assert main([*chat, "--threads", "2"]) == 0
        capsys.readouterr()
        totals.append(Profile.from_json(json.loads(tally.read_text())["tallies"]["Sam"]).total)
    # two candidates for each reply, counted on top of the person's prior
    assert totals[1] > totals[0] > best_of.PRIOR_REPLIES
