"""Training throughput on the default base: convsim's trainer vs a plain transformers + peft loop.

    python benchmarks/train_speed.py [--steps 6] [--batch 4] [--seq-len 512] [--threads N]
                                     [--device auto] [--precision auto]

Both train the same LoRA (same rank, targets, optimiser) on the same examples (the shipped sample
chat, target "Sam"), each in a fresh child process so its peak memory (max RSS) is its own:

- convsim: examples packed into full rows with block-diagonal masks (no padding), the vocabulary
  projection computed only at positions that carry loss, a chunk of them at a time, and on CPU
  one row per forward/backward pass with gradients accumulated over the batch (memory);
- convsim fp32: the same in float32, when the run above was in bf16 (a CPU with bf16
  instructions, `devices.cpu_bf16`): what training on such a CPU did before it used them;
- baseline: one example per row padded to the longest in the batch, `model(..., labels=...)`
  computing full-vocabulary logits at every position (what a plain transformers+peft script does).

Reported: real (non-padding) tokens per second, after one warm-up step, and peak memory (the
child process's max RSS, model loading included; on CUDA also peak allocated GPU memory); on a
GPU also model FLOPs utilisation (6 * parameters * tokens / time / peak FLOP/s).
Targets from the training issue: convsim >= 2x the baseline's tokens/s on CPU, and the default
run's peak memory <= 4 GB (an 8 GB laptop).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, tempfile, time
from pathlib import Path
def max_rss_mb():  # KiB on Linux, bytes on macOS
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
import torch
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
from convsim.core import bases
from convsim.core.data.dataset import DatasetConfig, build
from convsim.core.chats.importers import parse_export
from convsim.core.locations import Locations
from convsim.core.chats.messages import StoredMessage
from convsim.core.workspace import SAMPLE_CHAT
from convsim.core.system.devices import choose_device, precision_name
from convsim.core.training.trainer import TrainConfig, Trainer

loc = Locations.from_env(Path(args["home"])).ensure()
base = bases.default_base(loc)
model, tok = bases.load_for_training(base, loc)
(chat,) = parse_export(SAMPLE_CHAT)
msgs = [StoredMessage(i, m.timestamp, m.sender, m.text, m.kind)
        for i, m in enumerate(chat.messages)]
examples = build(msgs, DatasetConfig(target="Sam")).train
device, dtype = choose_device(args["device"])
if device != "cuda":
    dtype = torch.float32  # what a plain script trains in off a GPU (convsim: its own below)
steps, batch, seq_len = args["steps"], args["batch"], args["seq_len"]
n_params = sum(p.numel() for p in model.parameters())

if args["mode"] == "convsim":
    cfg = TrainConfig(steps=steps + 1, batch_size=batch, seq_len=seq_len, eval_every=0,
                      checkpoint_every=0, samples=0, device=args["device"],
                      precision=args["precision"])
    times = []
    def on_event(e, last=[None]):
        if e.kind == "step":
            now = time.perf_counter()
            if last[0] is not None:
                times.append(now - last[0])
            last[0] = now
    with tempfile.TemporaryDirectory() as run:
        trainer = Trainer(model, tok, examples, [], cfg, Path(run), on_event=on_event)
        dtype = trainer.dtype
        rows = trainer.train_rows
        from convsim.core.data.packing import batches
        order = batches(rows, batch, cfg.seed, 0)
        real = [sum(len(rows[i].ids) for i in b) for b in order[: steps + 1]]
        loading_mb = max_rss_mb()  # the trainer resets the peak (Linux) when its run starts
        metrics = trainer.run().metrics
        recorded_mb = metrics["peak_rss_bytes"] / 2**20
    # The step after the warm-up step onwards (times[k] is the duration of step k + 2).
    tokens = sum(real[1:])
    seconds = sum(times)
    peak_mb = max(loading_mb, max_rss_mb())
else:
    from peft import LoraConfig, get_peft_model
    model = model.to(device, dtype=dtype)
    peft_model = get_peft_model(model, LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
        target_modules=TrainConfig().target_modules))
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=2e-4)
    texts = [ex.context + ex.target for ex in examples]
    import random
    random.Random(0).shuffle(texts)
    tokens, seconds = 0, 0.0
    peft_model.train()
    for step in range(steps + 1):
        chunk = texts[step * batch:(step + 1) * batch]
        enc = tok(chunk, return_tensors="pt", padding=True, truncation=True,
                  max_length=seq_len).to(device)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=dtype, enabled=device == "cuda"):
            loss = peft_model(**enc, labels=labels).loss
        loss.backward()
        opt.step(); opt.zero_grad()
        if device == "cuda":
            torch.cuda.synchronize()
        if step:  # the first step is warm-up
            seconds += time.perf_counter() - t0
            tokens += int(enc["attention_mask"].sum())
    peak_mb = recorded_mb = max_rss_mb()
peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
print(json.dumps({"tokens_per_s": tokens / seconds, "tokens": tokens, "seconds": seconds,
                  "params": n_params, "device": device, "dtype": precision_name(dtype),
                  "max_rss_mb": peak_mb, "recorded_rss_mb": recorded_mb,
                  "peak_gpu_mb": peak_gpu}))
"""


def measure(mode: str, args: argparse.Namespace, home: str, precision: str | None = None) -> dict:
    spec = {
        "mode": mode,
        "precision": precision or args.precision,
        "home": home,
        "steps": args.steps,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "threads": args.threads,
        "device": args.device,
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"{mode} run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    import os

    from convsim.core.system.devices import PRECISIONS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps (after 1 warm-up)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--home", help="convsim home to reuse (default base + torch cache)")
    parser.add_argument("--peak-tflops", type=float, help="device peak, for MFU on a GPU")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or tmp
        ours = measure("convsim", args, home)
        runs = [(f"convsim {ours['dtype']}", ours)]
        if ours["device"] == "cpu" and ours["dtype"] == "bf16":
            runs.append(("convsim fp32", measure("convsim", args, home, "fp32")))
        base = measure("baseline", args, home)
        runs.append((f"baseline {base['dtype']}", base))
    for name, r in runs:
        line = (
            f"{name:<16} {r['tokens_per_s']:>8.1f} real tokens/s  ({r['tokens']} tokens in "
            f"{r['seconds']:.1f} s)  peak memory {r['max_rss_mb'] / 1024:.2f} GB"
            f" ({r['max_rss_mb']:.0f} MB RSS)"
        )
        if r["peak_gpu_mb"] is not None:
            line += f"  peak GPU {r['peak_gpu_mb']:.0f} MB"
        if args.peak_tflops:
            mfu = 6 * r["params"] * r["tokens_per_s"] / (args.peak_tflops * 1e12)
            line += f"  MFU {100 * mfu:.1f}%"
        print(line)
    speedup = ours["tokens_per_s"] / base["tokens_per_s"]
    print(
        f"device {ours['device']}, {args.threads} threads, batch {args.batch}, "
        f"seq_len {args.seq_len}"
    )
    print(f"speed-up: {speedup:.2f}x (target >= 2x) -> {'PASS' if speedup >= 2 else 'FAIL'}")
    if len(runs) == 3:
        fp32 = runs[1][1]
        print(
            f"bf16 on this CPU: {ours['tokens_per_s'] / fp32['tokens_per_s']:.2f}x the tokens/s of"
            f" fp32, peak memory {ours['max_rss_mb'] / 1024:.2f} against "
            f"{fp32['max_rss_mb'] / 1024:.2f} GB"
        )
    peak_gb = ours["max_rss_mb"] / 1024
    print(
        f"convsim peak memory: {peak_gb:.2f} GB (the run recorded "
        f"{ours['recorded_rss_mb'] / 1024:.2f} GB; target <= 4 GB) -> "
        f"{'PASS' if peak_gb <= 4 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
