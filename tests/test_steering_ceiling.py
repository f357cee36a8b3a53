"""The steering yardstick's arithmetic (benchmarks/steering_ceiling.py): the tilt of a reply
distribution whose samples enumerate it exactly, checked against the tilt written out by hand."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from steering_ceiling import Tilt, _end, report  # noqa: E402


def _two_replies(real: float) -> Tilt:
    """One context: replies A (metric 0) and B (metric 1), equally likely, the samples [A, B];
    the person's real reply has metric `real`, one token, probability 1/2."""
    return Tilt(np.array([[0.0, 1.0]]), np.array([real]), np.array([math.log(2)]), np.array([1]))


@pytest.mark.parametrize("t", [-3.0, -0.5, 0.0, 0.7, 2.0])
def test_the_tilt_is_the_reweighted_distribution(t: float) -> None:
    tilt = _two_replies(real=1.0)
    p_b = math.exp(t) / (1 + math.exp(t))  # B's probability once reweighted by e^(t * metric)
    assert tilt.mean(t)[0] == pytest.approx(p_b)
    assert tilt.rise(t) == pytest.approx(math.exp(-math.log(p_b) - math.log(2)) - 1)
    assert tilt.ess(t) == pytest.approx(1 / (p_b**2 + (1 - p_b) ** 2))


def test_the_tilt_found_for_a_rise_gives_that_rise_on_its_side() -> None:
    tilt = _two_replies(real=0.5)  # moving either way costs the real reply
    for sign in (1, -1):
        t = tilt.at(0.10, sign)
        assert t * sign > 0
        assert tilt.rise(t) == pytest.approx(0.10, abs=1e-9)
        assert tilt.rise(1.01 * t) > 0.10 > tilt.rise(0.99 * t)


def test_a_length_report_gives_verbose_over_brief() -> None:
    words = np.array([[-2.0, -4.0, -8.0], [-1.0, -3.0, -9.0]])  # brief's metric: -(words)
    tilt = Tilt(words, np.array([-4.0, -3.0]), np.array([3.0, 3.0]), np.array([4, 4]))
    r = report("brief", tilt, [0.10])
    assert r["unsteered"] == pytest.approx(words.mean())
    (row,) = r["by_rise"]
    verbose, brief = row["metric"]
    assert verbose < r["unsteered"] < brief
    assert row["length_ratio"] == pytest.approx(verbose / brief)
    assert row["effect"] == pytest.approx(brief - verbose)


def test_a_nudge_side_ends_where_its_rise_reaches_the_limit() -> None:
    table = [
        {"nudge": d, "rise": r, "words": w}
        for d, r, w in [(-2.0, 0.20, 9.0), (-1.0, 0.05, 5.0), (0.0, 0.0, 4.0), (1.0, 0.02, 3.0)]
    ]
    verbose = _end(table, -1, 0.10)  # a third of the way from -1 (5%) to -2 (20%)
    assert verbose == pytest.approx({"nudge": -1.0 - 1 / 3, "rise": 0.10, "words": 5 + 4 / 3})
    assert _end(table, 1, 0.10) == {"nudge": 1.0, "rise": 0.02, "words": 3.0}  # never past it
