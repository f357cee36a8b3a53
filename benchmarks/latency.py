"""Chat latency of convsim's Engine on the default base model, CPU.

    python benchmarks/latency.py [--threads N] [--turns 150]

Prints, once:
- decode tokens/s of the Engine's token loop vs raw llama-cpp-python (`create_completion`,
  streaming) on the same model, threads and sampling (target: Engine >= 95% of raw);
- time to first token of a reply after a new user message in a ~2,000-token conversation,
  with the KV cache kept and with it cleared (target with reuse: <= 150 ms);
- autocomplete time to first token after each keystroke of a message being typed
  (target: <= 100 ms, median).
The base comes from `default_base(Locations.from_env())`: set CONVSIM_BASE_MODELS to reuse a copy.
"""

from __future__ import annotations

import argparse
import statistics
import time

from convsim.core.bases.prepare import default_base
from convsim.core.inference import llama
from convsim.core.inference.engine import Engine, Sampling
from convsim.core.locations import Locations

PHRASES = [
    "did you see the game last night", "no I was stuck at work until nine",
    "ugh that sucks, want to grab food tomorrow", "yes! the ramen place near the station?",
    "perfect, 7pm works for me", "can you bring the book I lent you",
    "oh right, I totally forgot about it haha", "no worries, just whenever",
]  # fmt: skip
PROMPT = "[Riya] tell me the whole story from the start, every detail\n[Sam] ok so"
DECODE = Sampling(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, seed=7, max_tokens=96)


def conversation(n_turns: int) -> list[tuple[str, str]]:
    return [
        ("Riya" if i % 2 == 0 else "Sam", f"{PHRASES[i % len(PHRASES)]} ({i})")
        for i in range(n_turns)
    ]


def decode_rate(times: list[float]) -> float:
    """Tokens/s between the first and the last token (prompt evaluation excluded)."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def raw_decode(llm: object, s: Sampling) -> float:
    times = []
    for _ in llm.create_completion(  # type: ignore[attr-defined]
        PROMPT, max_tokens=s.max_tokens, temperature=s.temperature, top_k=s.top_k,
        top_p=s.top_p, min_p=s.min_p, repeat_penalty=s.repeat_penalty, seed=s.seed, stream=True,
    ):  # fmt: skip
        times.append(time.perf_counter())
    return decode_rate(times)


def engine_decode(engine: Engine, s: Sampling) -> float:
    times = []
    for _ in engine._pieces(engine.tokens(PROMPT), s, s.max_tokens, None):
        times.append(time.perf_counter())
    return decode_rate(times)


def first_piece(pieces: object) -> float:
    t0 = time.perf_counter()
    for _ in pieces:  # type: ignore[attr-defined]
        break
    dt = time.perf_counter() - t0
    pieces.close()  # type: ignore[attr-defined]
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=llama.default_threads())
    ap.add_argument("--turns", type=int, default=115, help="conversation length (~2,000 tokens)")
    args = ap.parse_args()
    base = default_base(Locations.from_env())
    print(f"model {base.name}, {args.threads} threads")

    # 1. Decode speed: the same model opened twice, runs alternated, best of 3 each.
    from llama_cpp import Llama

    from convsim.convert.llama_logs import quiet_llama_logs

    with quiet_llama_logs():
        raw = Llama(str(base), n_ctx=512, n_threads=args.threads, verbose=False)
    engine = Engine(base, n_ctx=512, threads=args.threads)
    raw_rates, engine_rates = [], []
    for _ in range(3):
        raw.reset()
        raw_rates.append(raw_decode(raw, DECODE))
        engine.llm.reset()
        engine_rates.append(engine_decode(engine, DECODE))
    r, e = max(raw_rates), max(engine_rates)
    print(f"decode: engine {e:.1f} tok/s, raw llama-cpp-python {r:.1f} tok/s "
          f"-> {100 * e / r:.0f}% (target >= 95%)")  # fmt: skip
    raw.close()
    engine.close()

    # 2. Reply latency after a new message in a long conversation.
    engine = Engine(base, n_ctx=4096, threads=args.threads)
    chat = conversation(args.turns)
    s = Sampling(seed=0, max_tokens=24)
    engine.reply(chat, "Sam", s)  # fills the cache, as the previous turn of a chat would
    with_reuse, without = [], []
    for message in ["ok see you there then", "wait which station", "lol fine"]:
        chat += [("Sam", engine.reply(chat, "Sam", s)), ("Riya", message)]
        with_reuse.append(first_piece(engine.simulate(chat, "Sam", s)))
        reused, prompt = engine.stats.reused_tokens, engine.stats.prompt_tokens
        engine.llm.reset()
        without.append(first_piece(engine.simulate(chat, "Sam", s)))
    print(f"reply first token, {prompt}-token conversation: "
          f"with KV reuse {1000 * statistics.median(with_reuse):.0f} ms "
          f"(evaluated {prompt - reused} new tokens; target <= 150 ms), "
          f"without {1000 * statistics.median(without):.0f} ms")  # fmt: skip

    # 3. Autocomplete after each keystroke of a message typed into the same conversation.
    typed = "are you still coming tonight"
    engine.reply(chat, "Sam", s)
    keystrokes = []
    for n in range(4, len(typed) + 1):
        keystrokes.append(first_piece(engine.autocomplete(chat, "Riya", typed[:n], s)))
    print(f"autocomplete first token after a keystroke: median "
          f"{1000 * statistics.median(keystrokes):.0f} ms, max {1000 * max(keystrokes):.0f} ms "
          f"over {len(keystrokes)} keystrokes (target <= 100 ms)")  # fmt: skip


if __name__ == "__main__":
    main()
