"""Chat latency of convsim's Engine on the default base model, CPU, with a fixed prompt head.

    python benchmarks/latency.py [--threads N] [--turns 115]

Every engine below has a ~150-token head of facts (`Engine.set_head`), as memory and notes will
put there. Prints each figure beside its baseline or target, measured in the same run:
- decode tokens/s of the Engine's token loop vs raw llama-cpp-python (`create_completion`,
  streaming) on the same model, threads, prompt and sampling (target: Engine >= 95% of raw);
- time to first token of a reply after a new user message in a ~2,000-token conversation, from
  the `simulate` call (prompt building included) to the first text, with the KV cache kept and
  with it cleared (target with reuse: <= 150 ms); and after the head changed in its last line;
- autocomplete time to first token after each keystroke of a message being typed
  (target: <= 100 ms, median);
- the cost of embeddings (`LlamaModel.embed`): opening the embedding context, its memory, and
  the time per short text.
The base comes from `default_base(Locations.from_env())`: set CONVSIM_BASE_MODELS to reuse a copy.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from convsim.core.bases.prepare import default_base
from convsim.core.inference import llama
from convsim.core.inference.engine import Engine, Sampling
from convsim.core.inference.reply import Progress, Stream
from convsim.core.locations import Locations

PHRASES = [
    "did you see the game last night", "no I was stuck at work until nine",
    "ugh that sucks, want to grab food tomorrow", "yes! the ramen place near the station?",
    "perfect, 7pm works for me", "can you bring the book I lent you",
    "oh right, I totally forgot about it haha", "no worries, just whenever",
]  # fmt: skip
FACTS = [
    "Sam lives in Leeds with two flatmates and a very old cat called Biscuit.",
    "Sam works as a nurse on night shifts three times a week, usually Monday to Wednesday.",
    "Riya and Sam met at university in 2015 and have been close friends ever since.",
    "Sam is vegetarian, loves ramen and spicy food, and hates coriander.",
    "Riya borrowed Sam's copy of The Secret History last month and still has it.",
    "Sam's sister Priya is getting married in June; Sam is a bridesmaid.",
    "Sam writes in lower case, uses 'haha' a lot and rarely uses emoji.",
    "Sam's birthday is on the 3rd of March.",
]
HEAD = "Notes about Sam:\n" + "\n".join(f"- {fact}" for fact in FACTS) + "\n"
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
        HEAD + PROMPT, max_tokens=s.max_tokens, temperature=s.temperature, top_k=s.top_k,
        top_p=s.top_p, min_p=s.min_p, repeat_penalty=s.repeat_penalty, seed=s.seed, stream=True,
    ):  # fmt: skip
        times.append(time.perf_counter())
    return decode_rate(times)


def engine_decode(engine: Engine, s: Sampling) -> float:
    """The Engine's token loop (sampling, end-of-text checks, UTF-8 decoding) without the
    reply's line logic, which would end the reply at its first line."""
    tokens = engine.tokens(engine.head + PROMPT)
    progress = Progress(time.perf_counter(), len(tokens), 0, 0, s.max_tokens)
    times = []
    for _ in engine._pieces(tokens, s, progress, None):
        times.append(time.perf_counter())
    return decode_rate(times)


def first_text(start: float, stream: Stream) -> float:
    """Seconds from `start` (before the surface was called) to the stream's first text."""
    for _ in stream:
        break
    dt = time.perf_counter() - start
    stream.close()
    return dt


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.0f} ms"


def rss() -> int:
    """Resident memory of this process in bytes (Linux), else 0."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def decode_speed(base: Path, threads: int) -> None:
    """The same model opened twice, runs alternated, best of 3 each."""
    from llama_cpp import Llama

    from convsim.convert.llama_logs import quiet_llama_logs
    from convsim.core.inference.llama.machine import model_params_without_amx

    with quiet_llama_logs(), model_params_without_amx():  # as convsim loads it
        raw = Llama(str(base), n_ctx=512, n_threads=threads, verbose=False)
    engine = Engine(base, n_ctx=512, threads=threads)
    engine.set_head(HEAD)
    raw_rates, engine_rates = [], []
    for _ in range(3):
        raw.reset()
        raw_rates.append(raw_decode(raw, DECODE))
        engine.model.reset()
        engine_rates.append(engine_decode(engine, DECODE))
    r, e = max(raw_rates), max(engine_rates)
    print(f"decode: engine {e:.1f} tok/s | raw llama-cpp-python {r:.1f} tok/s "
          f"-> {100 * e / r:.0f}% (target >= 95%)")  # fmt: skip
    raw.close()
    engine.close()


def reply_latency(engine: Engine, chat: list[tuple[str, str]], s: Sampling) -> None:
    engine.simulate(chat, "Sam", s).result()  # fills the cache, as the previous turn would
    with_reuse, without, evaluated = [], [], []
    prompt = head = 0
    for message in ["ok see you there then", "wait which station", "lol fine"]:
        chat += [("Sam", engine.simulate(chat, "Sam", s).result().text), ("Riya", message)]
        t0 = time.perf_counter()
        stream = engine.simulate(chat, "Sam", s)
        with_reuse.append(first_text(t0, stream))
        reply = stream.result()
        prompt, head = reply.prompt_tokens, reply.head_tokens
        evaluated.append(reply.prompt_tokens - reply.reused_tokens)
        assert reply.trimmed_turns == 0, "the conversation was trimmed: raise n_ctx"
        engine.model.reset()
        t0 = time.perf_counter()
        without.append(first_text(t0, engine.simulate(chat, "Sam", s)))
    print(f"reply first token, {prompt}-token prompt ({head}-token head): "
          f"with KV reuse {ms(statistics.median(with_reuse))} "
          f"(evaluated {max(evaluated)} new tokens at most; target <= 150 ms) | "
          f"without reuse {ms(statistics.median(without))}")  # fmt: skip
    # The head's last fact changes (as memory retrieval may do): everything after it is new.
    engine.simulate(chat, "Sam", s).result()
    engine.set_head(HEAD.replace("3rd of March", "4th of March"))
    t0 = time.perf_counter()
    stream = engine.simulate(chat, "Sam", s)
    changed = first_text(t0, stream)
    reply = stream.result()
    print(f"reply first token after the head's last line changed: {ms(changed)} "
          f"(reused {reply.reused_tokens} tokens, evaluated "
          f"{reply.prompt_tokens - reply.reused_tokens})")  # fmt: skip
    engine.set_head(HEAD)


def autocomplete_latency(engine: Engine, chat: list[tuple[str, str]], s: Sampling) -> None:
    typed = "are you still coming tonight"
    engine.simulate(chat, "Sam", s).result()
    keystrokes = []
    for n in range(4, len(typed) + 1):
        t0 = time.perf_counter()
        keystrokes.append(first_text(t0, engine.autocomplete(chat, "Riya", typed[:n], s)))
    print(f"autocomplete first token after a keystroke: median "
          f"{ms(statistics.median(keystrokes))}, max {ms(max(keystrokes))} "
          f"over {len(keystrokes)} keystrokes (target <= 100 ms)")  # fmt: skip


def embedding_cost(engine: Engine) -> None:
    texts = [f"{PHRASES[i % len(PHRASES)]} ({i})" for i in range(32)]
    before = rss()
    t0 = time.perf_counter()
    engine.model.embed(texts[:1])
    first = time.perf_counter() - t0
    grown = rss() - before
    t0 = time.perf_counter()
    vectors = engine.model.embed(texts)
    batch = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.model.embed(texts[:1])
    one = time.perf_counter() - t0
    print(f"embeddings ({vectors.shape[1]} floats): opening the context + first text "
          f"{ms(first)}, +{grown / 2**20:.0f} MB resident | one text {ms(one)}, "
          f"{len(texts)} texts {ms(batch)} ({ms(batch / len(texts))} each)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=llama.default_threads())
    ap.add_argument("--turns", type=int, default=115, help="conversation length (~2,000 tokens)")
    args = ap.parse_args()
    base = default_base(Locations.from_env())
    print(f"model {base.name}, {args.threads} threads, head {len(FACTS)} facts")
    decode_speed(base, args.threads)
    engine = Engine(base, n_ctx=4096, threads=args.threads)
    engine.set_head(HEAD)
    chat = conversation(args.turns)
    s = Sampling(seed=0, max_tokens=24)
    reply_latency(engine, chat, s)
    autocomplete_latency(engine, chat, s)
    embedding_cost(engine)
    engine.close()


if __name__ == "__main__":
    main()
