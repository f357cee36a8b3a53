"""Does the persona expect the person's rarer marks as often as they wrote them?

    python benchmarks/token_calibration.py MODEL_ID [MODEL_ID ...] [--messages 300] [--heldout]

Reads `--messages` of the person's trained-on messages (`--heldout`: the held-out ones), drawn
with a fixed seed from the first model's dataset, each after its context, with teacher forcing,
and sums over the message's tokens the probability each model gives to a token with an emoji
(`data.style.features`) and to one with a question mark: the number of such tokens the model
expects, printed beside the number the person wrote. The base model, read the same way in the
same run, is the baseline. A persona whose expected counts match the person's, yet whose
sampled replies hold fewer emoji or questions (`benchmarks/sampling_style.py`), is calibrated
token by token and falls short in what it chooses to write. Runs on the torch copy of the base
(`bases.torch_copy`) with each persona's PEFT adapter, in fp32, on the CPU.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel

from convsim.core.bases.torch_copy import load_for_training
from convsim.core.data.packing import example_fields
from convsim.core.data.style import features
from convsim.core.data.turns import tag_of
from convsim.core.workspace import Workspace


def marks(tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Per vocabulary entry: whether its text holds an emoji, and whether it holds a '?'."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    emoji = torch.tensor([features(t)["emoji"] > 0 for t in texts])
    question = torch.tensor(["?" in t for t in texts])
    return emoji, question


def expected(
    model: Any, tokenizer: Any, examples: list[Any], emoji: Any, question: Any
) -> list[float]:
    """[expected emoji tokens, written, expected '?' tokens, written] over the examples'
    messages (the words after the `[Tag]`, and the newline that ends them)."""
    out = [0.0] * 4
    with torch.no_grad():
        for ex in examples:
            context, target = example_fields(ex)
            before = tokenizer(context + tag_of(target), add_special_tokens=True)["input_ids"]
            ids = tokenizer(context + target, add_special_tokens=True)["input_ids"]
            logits = model(torch.tensor([ids])).logits[0, len(before) - 1 : len(ids) - 1]
            p = logits.float().softmax(-1)
            said = torch.tensor(ids[len(before) :])
            out[0] += float(p[:, emoji].sum())
            out[1] += float(emoji[said].sum())
            out[2] += float(p[:, question].sum())
            out[3] += float(question[said].sum())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_ids", nargs="+")
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--heldout", action="store_true", help="the held-out messages instead")
    args = parser.parse_args()

    with Workspace.open() as ws:
        records = [ws.store.model(m) for m in args.model_ids]
        if records[0].dataset_id is None:
            raise SystemExit(f"model {args.model_ids[0]} has no dataset")
        train, validation, _ = ws.dataset_files(records[0].dataset_id)
        model, tokenizer = load_for_training(Path(records[0].base), ws.locations)
    pool = [ex for ex in (validation if args.heldout else train) if example_fields(ex)[1]]
    examples = random.Random(0).sample(pool, min(args.messages, len(pool)))
    emoji, question = marks(tokenizer)
    print(f"{len(examples)} {'held-out' if args.heldout else 'trained-on'} messages of "
          f"{records[0].person}, teacher-forced; expected tokens against written ones")  # fmt: skip
    print(f"{'model':<14}{'emoji':>18}{'question marks':>22}{'seconds':>10}")
    for name, record in [("base", None), *zip(args.model_ids, records, strict=True)]:
        started = time.perf_counter()
        read = (
            model
            if record is None
            else PeftModel.from_pretrained(model, Path(record.path) / "adapter")
        )
        e, e_real, q, q_real = expected(read.eval(), tokenizer, examples, emoji, question)
        print(f"{name:<14}{f'{e:.1f} of {e_real:.0f}':>18}{f'{q:.1f} of {q_real:.0f}':>22}"
              f"{time.perf_counter() - started:10.0f}", flush=True)  # fmt: skip
        if record is not None:
            model = read.unload()


if __name__ == "__main__":
    main()
