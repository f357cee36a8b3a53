"""Is it really them? The imitation targets of the evaluation issue, measured by the suite.

    python benchmarks/imitation.py MODEL_ID [--quick] [--best-of 4] [--replies N] [--last] [--json]

Runs `convsim eval MODEL_ID` (the four variants on the held-out sessions; `--last` reads the
saved report instead) and prints each target beside its baseline measured in the same run:
the base model prompted with the person's own messages ("in_context"), which is what a user
gets without training. Best-of-N's price is the time to the first token of a reply, against
a single sample, on this machine.

The default recipe is measured on two chats: the sample chat (`convsim train 1 --as Sam` after
`convsim import` of `core/chats/samples/sample_whatsapp.txt`) and a second one written for this
benchmark, `benchmarks/chats/marco_lena_long_whatsapp.txt` (2,316 messages over ten months;
its first four months are `marco_lena_whatsapp.txt`; Marco writes in full sentences with
capitals and full stops, Lena in short lower-case messages with emoji): `convsim import` it,
`convsim train CHAT_ID --as Marco`, then run this on the persona. The style row names the
features on which the persona is not closer than in_context, with both KS statistics and
whether the difference is within chance (its paired 95% interval holds 0).

Targets (issue 14):
- Hits@1 against other people's messages >= 0.60 for tuned, and >= 10 points over in_context;
- Hits@1 against the person's own other messages >= 0.25;
- real-or-generated detector accuracy <= 0.65 for tuned, lower still for best-of-N;
- authorship >= 0.5 on the floor (other people) to ceiling (the person) scale;
- style KS <= 0.10 on most features, and below in_context on at least 80% of them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from convsim.core.evaluation.report import chance_side, replies_of


def report_of(args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "convsim.tui.cli", "eval", args.model_id, "--json"]
    if args.last:
        command.append("--last")
    else:
        command += ["--best-of", str(args.best_of)] + (["--quick"] if args.quick else [])
        command += ["--replies", str(args.replies)] if args.replies else []
    print("$ convsim " + " ".join(command[3:]), file=sys.stderr)
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return dict(json.loads(done.stdout))


def targets(r: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(target, measured, baseline, met) rows."""
    t, ic, bo = r["tuned"], r["in_context"], r["best_of_n"]
    ks_t, ks_ic = t["style_ks"], ic["style_ks"]
    features = [f for f in ks_t if ks_t[f] is not None and ks_ic.get(f) is not None]
    within = sum(ks_t[f] <= 0.10 for f in features)
    better = sum(ks_t[f] < ks_ic[f] for f in features)
    spans = t.get("intervals", {}).get("style_ks_vs_in_context", {})
    losses = ", ".join(
        f"{f} {ks_t[f]:.3f} vs {ks_ic[f]:.3f}{chance(spans.get(f))}"
        for f in features
        if ks_t[f] >= ks_ic[f]
    )
    rows = [
        ("Hits@1 vs others >= 0.60", f"{t['hits_at_1_others']:.3f}",
         f"in_context {ic['hits_at_1_others']:.3f}", t["hits_at_1_others"] >= 0.60),
        ("Hits@1 vs others: tuned >= in_context + 0.10",
         f"{t['hits_at_1_others'] - ic['hits_at_1_others']:+.3f}", "",
         t["hits_at_1_others"] >= ic["hits_at_1_others"] + 0.10),
        ("Hits@1 vs same person >= 0.25", f"{t['hits_at_1_same_person']:.3f}",
         f"in_context {ic['hits_at_1_same_person']:.3f}", t["hits_at_1_same_person"] >= 0.25),
        ("detector accuracy <= 0.65 (tuned)", f"{t['detector_accuracy']:.3f}",
         f"in_context {ic['detector_accuracy']:.3f}", t["detector_accuracy"] <= 0.65),
        ("detector: best-of-N below tuned", f"{bo['detector_accuracy']:.3f}",
         f"tuned {t['detector_accuracy']:.3f}", bo["detector_accuracy"] < t["detector_accuracy"]),
        ("authorship >= 0.5", f"{t['authorship']:.3f}", f"in_context {ic['authorship']:.3f}",
         t["authorship"] >= 0.5),
        ("style KS <= 0.10 on most features", f"{within}/{len(features)}", "",
         within > len(features) / 2),
        ("style KS below in_context on >= 80%", f"{better}/{len(features)}",
         f"not on {losses}" if losses else "",
         better >= 0.8 * len(features)),
    ]  # fmt: skip
    return rows


def chance(span: list[Any] | None) -> str:
    """ " (within chance)" when the paired interval of the KS difference holds 0 (a report saved
    before the suite measured it: "")."""
    side = chance_side(span)
    return "" if side is None else " (within chance)" if side == 0 else " (beyond chance)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_id")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--best-of", type=int, default=4)
    ap.add_argument("--replies", type=int, help="replies per moment (the suite's default)")
    ap.add_argument("--last", action="store_true", help="read the saved report, run nothing")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    r = report_of(args)
    rows = targets(r)
    if args.json:
        print(json.dumps({"report": r, "targets": [dict(zip(("target", "measured", "baseline",
              "met"), row, strict=True)) for row in rows]}))  # fmt: skip
        return 0
    print(f"{r['model_id']} ({r['person']}): {r['items']} held-out moments"
          f"{' (quick)' if r['quick'] else ''}, {replies_of(r)}, {r['seconds']:.0f} s")  # fmt: skip
    for target, measured, baseline, met in rows:
        print(f"  {'PASS' if met else 'FAIL'}  {target:<46} {measured:>8}   {baseline}")
    single, best = r["tuned"]["first_message_s"], r["best_of_n"]["first_message_s"]
    if single and best:
        print(f"  best-of-{r['best_of']} costs {best:.2f} s to first token vs {single:.2f} s "
              f"for one sample ({best / single:.1f}x)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
