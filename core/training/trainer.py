"""LoRA training of one person's voice on a causal LM, with nothing computed in vain.

Contract: `Trainer(model, tokenizer, train, validation, config, run_dir).run()` trains a PEFT LoRA
on `model` (a transformers causal LM, e.g. from `base_models.load_for_training`), writes
checkpoints under `run_dir/checkpoint` and the final adapter (PEFT format) under
`run_dir/adapter`, and reports progress as `TrainEvent`s through `on_event`. Setting the `cancel`
event stops it at the next step boundary with a checkpoint written; `run(resume=True)`
continues from the last checkpoint exactly where it stopped.

Cost: examples are packed (see `packing.py`) and the vocabulary projection — which dominates a
262k-vocabulary model — is computed only at positions that carry loss.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from convsim.core.data.packing import (
    PackedRow,
    batches,
    example_fields,
    pack,
    tokenize_examples,
)
from convsim.core.data.turns import tag_of


@dataclass
class TrainConfig:
    """How a LoRA is trained. Saved as JSON beside every run."""

    rank: int = 16  # LoRA rank r
    alpha: float = 32.0  # LoRA alpha; the update is scaled by alpha / rank
    dropout: float = 0.05  # dropout on the LoRA input
    # Linear layers that get a LoRA; these names are shared by gemma3, llama, mistral and qwen.
    target_modules: list[str] = field(
        default_factory=lambda: [
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
        ]
    )  # fmt: skip
    learning_rate: float = 2e-4
    schedule: str = "cosine"  # "cosine", "linear" or "constant", after a linear warm-up
    warmup_steps: int = 10
    steps: int | None = None  # total optimiser steps; None = derived from `epochs`
    epochs: float = 1.0  # passes over the training rows when `steps` is None
    seq_len: int = 512  # tokens per packed row (the model's context window in training)
    batch_size: int = 4  # packed rows per step
    loss_on: str = "target"  # "target": the person's turn only; "all": every token
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 50  # steps between validation passes (0 = only at the end)
    eval_rows: int = 32  # at most this many validation rows per pass
    samples: int = 2  # sample generations per validation pass
    sample_tokens: int = 32  # new tokens per sample generation
    checkpoint_every: int = 50  # steps between checkpoints (0 = only at the end)
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "mps"
    threads: int | None = None  # CPU threads for torch; None = torch's default

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}")
        return cls(**data)

    def check(self) -> None:
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"schedule must be cosine, linear or constant, not {self.schedule!r}")
        if self.loss_on not in ("target", "all"):
            raise ValueError(f"loss_on must be 'target' or 'all', not {self.loss_on!r}")
        if self.rank < 1 or self.batch_size < 1 or self.seq_len < 8:
            raise ValueError("rank and batch_size must be >= 1 and seq_len >= 8")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, not {self.steps}")


@dataclass(frozen=True)
class TrainEvent:
    """Progress, as plain data. `kind`: start, step, eval, checkpoint, done or cancelled."""

    kind: str
    step: int
    total_steps: int
    epoch: float
    loss: float | None = None  # mean loss per target token of the last step
    val_loss: float | None = None  # mean loss per target token on the validation split
    tokens_per_s: float | None = None  # real (non-padding) tokens per second so far
    eta_s: float | None = None
    samples: tuple[str, ...] = ()
    message: str = ""


@dataclass
class TrainResult:
    steps: int
    cancelled: bool
    adapter_dir: Path | None
    metrics: dict[str, Any]


def choose_device(preference: str = "auto") -> tuple[str, Any]:
    """(device, dtype): CUDA with bf16 where supported, else Apple MPS, else CPU, in fp32."""
    import torch

    if preference == "auto":
        if torch.cuda.is_available():
            preference = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            preference = "mps"
        else:
            preference = "cpu"
    if preference == "cuda":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return "cuda", torch.bfloat16 if bf16 else torch.float16
    if preference in ("mps", "cpu"):
        return preference, torch.float32
    raise ValueError(f"device must be auto, cpu, cuda or mps, not {preference!r}")


def block_causal_mask(rows: Sequence[PackedRow], length: int, window: int | None = None) -> Any:
    """(B, 1, L, L) boolean mask: causal within each packed example, nothing across examples;
    `window` also limits how far back a token sees (sliding-window layers). Padding positions
    see only themselves, which keeps softmax finite; they carry no loss."""
    import torch

    mask = torch.zeros(len(rows), 1, length, length, dtype=torch.bool)
    idx = torch.arange(length)
    for b, row in enumerate(rows):
        start = 0
        for n in row.lengths:
            block = idx[:n, None] >= idx[None, :n]
            if window is not None:
                block &= (idx[:n, None] - idx[None, :n]) < window
            mask[b, 0, start : start + n, start : start + n] = block
            start += n
        mask[b, 0, range(start, length), range(start, length)] = True
    return mask


class Trainer:
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        train: Sequence[Any],
        validation: Sequence[Any],
        config: TrainConfig,
        run_dir: Path,
        on_event: Callable[[TrainEvent], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        config.check()
        self.config = config
        self.tokenizer = tokenizer
        self.run_dir = run_dir
        self.on_event = on_event or (lambda e: None)
        self.cancel = cancel or threading.Event()
        self.validation_examples = list(validation)
        self.train_rows = pack(
            tokenize_examples(train, tokenizer, config.loss_on), config.seq_len, config.seed
        )
        self.val_rows = pack(
            tokenize_examples(validation, tokenizer, config.loss_on), config.seq_len, None
        )[: config.eval_rows]
        if not self.train_rows:
            raise ValueError("no training examples: the dataset has no turns by this person")
        self.device, self.dtype = choose_device(config.device)
        self.model = self._wrap(model)
        self.steps_per_epoch = math.ceil(len(self.train_rows) / config.batch_size)
        self.total_steps = config.steps or max(1, round(config.epochs * self.steps_per_epoch))
        self.history: dict[str, list[Any]] = {"loss": [], "val_loss": []}

    # -- model --------------------------------------------------------------------------------

    def _wrap(self, model: Any) -> Any:
        import torch
        from peft import LoraConfig, get_peft_model

        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        torch.manual_seed(self.config.seed)
        model = model.to(self.device, dtype=self.dtype)
        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        targets = [t for t in self.config.target_modules if t in present]
        if not targets:
            raise ValueError(
                f"none of the target modules {self.config.target_modules} exist in this model"
            )
        lora = LoraConfig(
            r=self.config.rank,
            lora_alpha=self.config.alpha,  # type: ignore[arg-type]  # peft accepts floats
            lora_dropout=self.config.dropout,
            target_modules=targets,
            bias="none",
            task_type="CAUSAL_LM",
        )
        peft_model = get_peft_model(model, lora)
        text_config = getattr(model.config, "get_text_config", lambda: model.config)()
        self._window = getattr(text_config, "sliding_window", None)
        self._layer_types = set(getattr(text_config, "layer_types", None) or ())
        self._softcap = getattr(text_config, "final_logit_softcapping", None)
        return peft_model

    def _masks(self, rows: Sequence[PackedRow], length: int) -> Any:
        full = block_causal_mask(rows, length)
        if "sliding_attention" in self._layer_types and self._window:
            sliding = block_causal_mask(rows, length, self._window)
            masks: Any = {"full_attention": full, "sliding_attention": sliding}
            return {k: v.to(self.device) for k, v in masks.items()}
        return full.to(self.device)

    def _loss_sum(self, rows: Sequence[PackedRow]) -> tuple[Any, int, int]:
        """(summed loss over target tokens, target tokens, real tokens) for a batch of rows."""
        import torch
        import torch.nn.functional as F

        length = max(len(r.ids) for r in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(rows), length), pad, dtype=torch.long)
        pos = torch.zeros((len(rows), length), dtype=torch.long)
        sel = torch.zeros((len(rows), length), dtype=torch.bool)
        for b, r in enumerate(rows):
            n = len(r.ids)
            ids[b, :n] = torch.tensor(r.ids)
            pos[b, :n] = torch.tensor(r.positions)
            sel[b, :n] = torch.tensor(r.loss, dtype=torch.bool)
        ids, pos, sel = ids.to(self.device), pos.to(self.device), sel.to(self.device)
        targets = torch.roll(ids, -1, dims=1)[sel]

        causal_lm = self.model.get_base_model()
        with torch.autocast(self.device, dtype=self.dtype, enabled=self.device == "cuda"):
            hidden = causal_lm.model(
                input_ids=ids, position_ids=pos, attention_mask=self._masks(rows, length)
            ).last_hidden_state
            # The expensive vocabulary projection, only where a token is predicted for loss.
            logits = causal_lm.lm_head(hidden[sel]).float()
        if self._softcap:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        loss = F.cross_entropy(logits, targets, reduction="sum")
        return loss, int(sel.sum()), sum(len(r.ids) for r in rows)

    # -- loop ---------------------------------------------------------------------------------

    def _lr_lambda(self, step: int) -> float:
        c = self.config
        if step < c.warmup_steps:
            return (step + 1) / (c.warmup_steps + 1)
        progress = (step - c.warmup_steps) / max(1, self.total_steps - c.warmup_steps)
        if c.schedule == "constant":
            return 1.0
        if c.schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def run(self, resume: bool = False) -> TrainResult:
        import torch

        c = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=c.learning_rate, weight_decay=c.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_lambda)
        step = 0
        if resume:
            step = self._load_checkpoint(optimizer, scheduler)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._emit("start", step, message=f"{len(self.train_rows)} packed rows on {self.device}")

        tokens = 0
        busy = 0.0
        loss_value: float | None = None
        cancelled = False
        self.model.train()
        while step < self.total_steps:
            if self.cancel.is_set():
                cancelled = True
                break
            epoch, index = divmod(step, self.steps_per_epoch)
            order = batches(self.train_rows, c.batch_size, c.seed, epoch)
            rows = [self.train_rows[i] for i in order[index]]
            started = time.perf_counter()
            loss_sum, n_loss, n_tokens = self._loss_sum(rows)
            loss = loss_sum / max(1, n_loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
            optimizer.step()
            scheduler.step()
            busy += time.perf_counter() - started
            tokens += n_tokens
            step += 1
            loss_value = float(loss.detach())
            self.history["loss"].append([step, loss_value])
            rate = tokens / busy if busy else None
            eta = busy / step * (self.total_steps - step) if step else None
            self._emit("step", step, loss=loss_value, tokens_per_s=rate, eta_s=eta)
            last = step == self.total_steps
            if (c.eval_every and step % c.eval_every == 0) or last:
                self._evaluate(step)
            if (c.checkpoint_every and step % c.checkpoint_every == 0) or last:
                self._save_checkpoint(step, optimizer, scheduler)
        if cancelled:
            self._save_checkpoint(step, optimizer, scheduler)
            self._emit("cancelled", step, loss=loss_value, message="stopped; resume to continue")
            return TrainResult(step, True, None, self.metrics(tokens, busy))
        adapter_dir = self.run_dir / "adapter"
        self.model.save_pretrained(adapter_dir)
        metrics = self.metrics(tokens, busy)
        (self.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        self._emit("done", step, loss=loss_value, val_loss=metrics["val_loss"])
        return TrainResult(step, False, adapter_dir, metrics)

    def metrics(self, tokens: int, busy: float) -> dict[str, Any]:
        val = self.history["val_loss"]
        return {
            "steps": self.history["loss"][-1][0] if self.history["loss"] else 0,
            "train_loss": self.history["loss"][-1][1] if self.history["loss"] else None,
            "val_loss": val[-1][1] if val else None,
            "val_perplexity": math.exp(val[-1][1]) if val else None,
            "tokens_per_s": tokens / busy if busy else None,
            "train_rows": len(self.train_rows),
            "val_rows": len(self.val_rows),
            "history": self.history,
        }

    def _emit(self, kind: str, step: int, **kw: Any) -> None:
        epoch = step / self.steps_per_epoch
        self.on_event(TrainEvent(kind, step, self.total_steps, epoch, **kw))

    # -- evaluation ---------------------------------------------------------------------------

    def _evaluate(self, step: int) -> None:
        import torch

        if not self.val_rows:
            return
        self.model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(self.val_rows), self.config.batch_size):
                loss_sum, n, _ = self._loss_sum(self.val_rows[i : i + self.config.batch_size])
                total += float(loss_sum)
                count += n
            samples = self._samples()
        self.model.train()
        val_loss = total / max(1, count)
        self.history["val_loss"].append([step, val_loss])
        self._emit("eval", step, val_loss=val_loss, samples=tuple(samples))

    def _samples(self) -> list[str]:
        """Greedy continuations of a few validation contexts: deterministic and RNG-free, so
        watching samples never changes the training run."""
        import torch

        out = []
        for ex in self.validation_examples[: self.config.samples]:
            context, target = example_fields(ex)
            tag = tag_of(target)
            prompt = context + tag
            enc = self.tokenizer(prompt, return_tensors="pt").to(self.device)
            with torch.no_grad():
                gen = self.model.generate(
                    **enc,
                    max_new_tokens=self.config.sample_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id or 0,
                )
            reply = self.tokenizer.decode(gen[0, enc["input_ids"].shape[1] :])
            last_line = context.rstrip("\n").rsplit("\n", 1)[-1] if context else ""
            out.append(f"{last_line}\n{tag}{reply.split(chr(10))[0]}".lstrip("\n"))
        return out

    # -- checkpoints --------------------------------------------------------------------------

    def _save_checkpoint(self, step: int, optimizer: Any, scheduler: Any) -> None:
        """Written to a temporary folder and swapped in, so a kill mid-write leaves the
        previous checkpoint intact."""
        import torch
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        final = self.run_dir / "checkpoint"
        tmp = self.run_dir / "checkpoint.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        state = {k: v.detach().cpu().contiguous() for k, v in
                 get_peft_model_state_dict(self.model).items()}  # fmt: skip
        save_file(state, tmp / "adapter.safetensors")
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
            tmp / "state.pt",
        )
        (tmp / "trainer.json").write_text(
            json.dumps({"step": step, "history": self.history, "config": self.config.to_json()})
        )
        old = self.run_dir / "checkpoint.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        self._emit("checkpoint", step)

    def _load_checkpoint(self, optimizer: Any, scheduler: Any) -> int:
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        folder = self.run_dir / "checkpoint"
        if not (folder / "trainer.json").exists():
            old = self.run_dir / "checkpoint.old"
            if not (old / "trainer.json").exists():
                raise FileNotFoundError(f"{self.run_dir}: no checkpoint to resume from")
            folder = old
        meta = json.loads((folder / "trainer.json").read_text())
        weights = load_file(folder / "adapter.safetensors", device=self.device)
        set_peft_model_state_dict(self.model, weights)
        state = torch.load(folder / "state.pt", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.history = meta["history"]
        return int(meta["step"])
