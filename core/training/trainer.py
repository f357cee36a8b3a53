"""The training loop: LoRA on a causal LM, for any objective (see `objectives.py`).

Contract: `Trainer(model, tokenizer, train, validation, config, run_dir).run()` trains a PEFT LoRA
on `model` (a transformers causal LM, e.g. from `bases.load_for_training`) for `objective`
(default: the one `config.objective` names, next-message prediction), writes checkpoints under
`run_dir/checkpoint` and the final adapter (PEFT format) under `run_dir/adapter`, and reports
progress as `TrainEvent`s through `on_event`. Setting the `cancel` event stops it at the next
step boundary with a checkpoint written; `run(resume=True)` continues from the last checkpoint
exactly where it stopped (a run killed before its first checkpoint starts again from step 0).
With `config.init_adapter` the LoRA starts from a finished run's adapter instead of zero (an
update), with a fresh optimiser and learning-rate warm-up.

The loop knows only what the `Objective` protocol says: items, batches of `batch_size` of them,
and summed losses. It owns the optimiser, schedule, evaluation passes, checkpoints and events,
and runs a step in micro-batches to bound its memory (`memory.py`); `TrainResult.metrics`
records the run's peak memory (`peak_rss_bytes`, and `peak_gpu_bytes` on CUDA).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convsim.core.data.packing import batches
from convsim.core.files import publishing, write_json
from convsim.core.system.devices import choose_device, precision_name
from convsim.core.training.memory import PeakMemory, backward_in_parts
from convsim.core.training.objectives import Objective, Setup, block_causal_mask, objective_named
from convsim.core.training.recipe import TrainConfig, plan_steps

__all__ = [
    "TrainConfig",
    "TrainEvent",
    "TrainResult",
    "Trainer",
    "block_causal_mask",
]


@dataclass(frozen=True)
class TrainEvent:
    """Progress, as plain data. `kind`: start, step, eval, checkpoint, done or cancelled."""

    kind: str
    step: int
    total_steps: int
    epoch: float
    # Losses are means per unit the objective counts (target tokens for next-message).
    loss: float | None = None  # of the last step
    val_loss: float | None = None  # on the validation split
    tokens_per_s: float | None = None  # real (non-padding) tokens per second so far
    eta_s: float | None = None
    samples: tuple[str, ...] = ()
    message: str = ""
    # On "start": the (step, loss) and (step, validation loss) points of the steps already
    # done, so a resumed run's chart begins where the stopped one ended.
    history: tuple[tuple[int, float], ...] = ()
    val_history: tuple[tuple[int, float], ...] = ()


@dataclass
class TrainResult:
    steps: int
    cancelled: bool
    adapter_dir: Path | None
    metrics: dict[str, Any]


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
        objective: Objective | None = None,
    ) -> None:
        config.check()
        self.config = config
        self.tokenizer = tokenizer
        self.run_dir = run_dir
        self.on_event = on_event or (lambda e: None)
        self.cancel = cancel or threading.Event()
        self.objective = objective or objective_named(config.objective)
        self.device, self.dtype = choose_device(config.device, config.precision)
        self.setup = Setup(tokenizer, config, self.device, self.dtype)
        # "fp32", "bf16" or "fp16", for the recipe and the log
        self.precision = precision_name(self.dtype)
        self.micro_batch_size = config.micro_batch_size or (
            config.batch_size if self.device == "cuda" else 1
        )
        self.peak_memory = PeakMemory(self.device)
        self.validation_examples = list(validation)
        self.train_rows = self.objective.prepare(train, self.setup, training=True)
        self.val_rows = self.objective.prepare(validation, self.setup, training=False)[
            : config.eval_rows
        ]
        if not self.train_rows:
            raise ValueError("no training examples: the dataset has no turns by this person")
        self.model = self._wrap(model)
        self.plan = plan_steps(len(self.train_rows), config.batch_size, config.seq_len,
                               self.device, bf16=self.precision == "bf16",
                               steps=config.steps, epochs=config.epochs)  # fmt: skip
        self.steps_per_epoch = self.plan.per_pass
        self.total_steps = self.plan.steps
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
        if self.config.init_adapter:
            self._load_adapter(peft_model, Path(self.config.init_adapter), targets)
        return peft_model

    def _load_adapter(self, peft_model: Any, folder: Path, targets: list[str]) -> None:
        """Start from a saved PEFT adapter; its shape and scale must be what this run trains,
        or the GGUF written afterwards would be scaled wrongly."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        settings_path = folder / "adapter_config.json"
        weights_path = folder / "adapter_model.safetensors"
        for path in (settings_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; init_adapter must be a PEFT adapter")
        saved = json.loads(settings_path.read_text(encoding="utf-8"))
        wanted = {"r": self.config.rank, "lora_alpha": self.config.alpha}
        for key, value in wanted.items():
            if saved.get(key) != value:
                raise ValueError(
                    f"{settings_path}: {key} is {saved.get(key)!r} but this run trains {value!r}"
                )
        if set(saved.get("target_modules") or ()) != set(targets):
            raise ValueError(
                f"{settings_path}: target_modules are {sorted(saved.get('target_modules') or ())}"
                f" but this run trains {sorted(targets)}"
            )
        result: Any = set_peft_model_state_dict(peft_model, load_file(weights_path, self.device))
        missing = [k for k in result.missing_keys if "lora_" in k]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise ValueError(f"{weights_path}: holds no weights for {missing[0]}{more}")

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
        self.peak_memory.start()
        precision = "" if self.precision == "fp32" else f" ({self.precision})"
        rows = f"{len(self.train_rows)} packed rows on {self.device}{precision}"
        again = "no checkpoint was saved: from the first step; " if resume and step == 0 else ""
        message = f"{again}{rows}; {self.total_steps} steps ({self.plan.why})"
        self._emit(
            "start", step, message=message,
            history=tuple((int(s), float(v)) for s, v in self.history["loss"]),
            val_history=tuple((int(s), float(v)) for s, v in self.history["val_loss"]),
        )  # fmt: skip

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
            batch = [self.train_rows[i] for i in order[index]]
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            total, count, batch_tokens = backward_in_parts(
                self.objective, self.model, batch, self.setup, self.micro_batch_size, params
            )
            torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
            optimizer.step()
            scheduler.step()
            busy += time.perf_counter() - started
            tokens += batch_tokens
            step += 1
            loss_value = total / max(1, count)
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
        write_json(self.run_dir / "metrics.json", metrics)
        self._emit("done", step, loss=loss_value, val_loss=metrics["val_loss"])
        return TrainResult(step, False, adapter_dir, metrics)

    def metrics(self, tokens: int, busy: float) -> dict[str, Any]:
        val = self.history["val_loss"]
        return {
            "steps": self.history["loss"][-1][0] if self.history["loss"] else 0,
            "plan": self.plan.why,  # why this many steps (recipe.py)
            "train_loss": self.history["loss"][-1][1] if self.history["loss"] else None,
            "val_loss": val[-1][1] if val else None,
            "val_perplexity": math.exp(val[-1][1]) if val else None,
            "tokens_per_s": tokens / busy if busy else None,
            "train_rows": len(self.train_rows),
            "val_rows": len(self.val_rows),
            # Since `run()` started (the process's, on Linux; see memory.PeakMemory), bytes.
            **self.peak_memory.read(),
            "history": self.history,
        }

    def _emit(self, kind: str, step: int, **kw: Any) -> None:
        epoch = step / self.steps_per_epoch
        self.on_event(TrainEvent(kind, step, self.total_steps, epoch, **kw))

    # -- evaluation ---------------------------------------------------------------------------

    def validation_loss(self) -> float | None:
        """Mean loss per unit over the validation items, the model as it is now (None without
        validation items). Changes nothing: no RNG draws, the training mode is restored."""
        import torch

        if not self.val_rows:
            return None
        was_training = self.model.training
        self.model.eval()
        total, count = 0.0, 0
        size = self.config.batch_size
        try:
            with torch.no_grad():
                for i in range(0, len(self.val_rows), size):
                    batch = self.val_rows[i : i + size]
                    summed = self.objective.loss(self.model, batch, self.setup)
                    total += float(summed.total)
                    count += summed.count
        finally:
            self.model.train(was_training)
        return total / max(1, count)

    def _evaluate(self, step: int) -> None:
        val_loss = self.validation_loss()
        if val_loss is None:
            return
        self.model.eval()
        try:
            samples = self.objective.samples(self.model, self.validation_examples, self.setup)
        finally:
            self.model.train()
        self.history["val_loss"].append([step, val_loss])
        self._emit("eval", step, val_loss=val_loss, samples=tuple(samples))

    # -- checkpoints --------------------------------------------------------------------------

    def _save_checkpoint(self, step: int, optimizer: Any, scheduler: Any) -> None:
        """Written to a temporary folder and swapped in, so a kill mid-write leaves the
        previous checkpoint intact."""
        import io

        import torch
        from peft import get_peft_model_state_dict
        from safetensors.torch import save

        # Serialised in memory (a LoRA and its optimiser state: megabytes) and written by
        # Python, so that a full disk is an OSError (DiskFullError), not a writer's own error.
        with publishing(self.run_dir) as (tmp, publish):
            state = {k: v.detach().cpu().contiguous() for k, v in
                     get_peft_model_state_dict(self.model).items()}  # fmt: skip
            (tmp / "adapter.safetensors").write_bytes(save(state))
            buffer = io.BytesIO()
            torch.save(
                {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state(),
                    "cuda_rng": (
                        torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
                    ),
                },
                buffer,
            )
            (tmp / "state.pt").write_bytes(buffer.getvalue())
            meta = {"step": step, "total_steps": self.total_steps, "history": self.history,
                    "config": self.config.to_json()}  # fmt: skip
            write_json(tmp / "trainer.json", meta)
            publish(self.run_dir / "checkpoint")
        self._emit("checkpoint", step)

    def _load_checkpoint(self, optimizer: Any, scheduler: Any) -> int:
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        folder = self.run_dir / "checkpoint"
        if not (folder / "trainer.json").exists():
            folder = self.run_dir / "checkpoint.old"
            if not (folder / "trainer.json").exists():
                return 0  # killed before its first checkpoint: nothing to load
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
        if self.config.steps is None and self.config.epochs is None:
            # The recipe's length depends on the device: a run resumed elsewhere keeps its own.
            self.total_steps = int(meta.get("total_steps", self.total_steps))
        return int(meta["step"])
