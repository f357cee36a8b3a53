"""What a training run optimises, apart from the loop that optimises it.

Contract: an `Objective` turns dataset examples into items (`prepare`), scores a batch of items
(`loss`: a loss *summed* over `count` units, so the loop averages a step, or a whole validation
pass, by dividing the sums), and may show what the model now writes (`samples`). The loop in
`trainer.py` knows nothing else: it batches `config.batch_size` items per step (scored
`micro_batch_size` items at a time, gradients accumulated), steps the optimiser, evaluates,
checkpoints and resumes. The update objective (next messages, replay, DPO and KTO:
`preference.Update`) is another class with the same three methods.

`NextMessage` is the persona objective: learn to write the target person's next message after
its context. Examples are packed (see `core/data/packing.py`) and the vocabulary projection,
which dominates a 262k-vocabulary model, is computed only at positions that carry loss, a
chunk of them at a time (`memory.lm_head_loss`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from convsim.core.data.packing import PackedRow, example_fields, fold, pack, tokenize_examples
from convsim.core.data.turns import tag_of
from convsim.core.training.memory import lm_head_loss

if TYPE_CHECKING:
    from convsim.core.training.trainer import TrainConfig

__all__ = [
    "OBJECTIVES",
    "LossSum",
    "NextMessage",
    "Objective",
    "Setup",
    "block_causal_mask",
    "objective_named",
]


@dataclass(frozen=True)
class Setup:
    """What every objective call may need besides the model and its items."""

    tokenizer: Any
    config: TrainConfig
    device: str  # "cpu", "cuda" or "mps"
    dtype: Any  # the torch dtype the model runs in (autocast when not float32)


@dataclass(frozen=True)
class LossSum:
    """A batch's loss summed over `count` units (tokens, pairs...): the loop divides sums."""

    total: Any  # a scalar torch tensor, with a graph when gradients are on
    count: int
    tokens: int  # real (non-padding) tokens computed, for tokens/s


class Objective(Protocol):
    name: str

    def prepare(self, examples: Sequence[Any], setup: Setup, *, training: bool) -> list[Any]:
        """Items to batch: training items in a seeded order of the objective's choosing,
        validation items in a fixed order (the loop evaluates the first `eval_rows`)."""
        ...

    def loss(self, model: Any, batch: Sequence[Any], setup: Setup) -> LossSum:
        """The summed loss of `batch` under `model` (a PEFT model), with gradients if enabled."""
        ...

    def samples(self, model: Any, examples: Sequence[Any], setup: Setup) -> list[str]:
        """A few generations from validation examples to show progress; deterministic and
        RNG-free, so watching them never changes the run. May be empty."""
        ...


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


class NextMessage:
    """Cross-entropy on the target turn (or all text, `config.loss_on`), over packed rows."""

    name = "next_message"

    def prepare(self, examples: Sequence[Any], setup: Setup, *, training: bool) -> list[Any]:
        c = setup.config
        tokenized = fold(tokenize_examples(examples, setup.tokenizer, c.loss_on), c.seq_len)
        return list(pack(tokenized, c.seq_len, c.seed if training else None))

    def loss(self, model: Any, batch: Sequence[Any], setup: Setup) -> LossSum:
        import torch
        import torch.nn.functional as F

        rows: Sequence[PackedRow] = batch
        device = setup.device
        length = max(len(r.ids) for r in rows)
        pad = setup.tokenizer.pad_token_id or 0
        ids = torch.full((len(rows), length), pad, dtype=torch.long)
        pos = torch.zeros((len(rows), length), dtype=torch.long)
        sel = torch.zeros((len(rows), length), dtype=torch.bool)
        for b, r in enumerate(rows):
            n = len(r.ids)
            ids[b, :n] = torch.tensor(r.ids)
            pos[b, :n] = torch.tensor(r.positions)
            sel[b, :n] = torch.tensor(r.loss, dtype=torch.bool)
        ids, pos, sel = ids.to(device), pos.to(device), sel.to(device)
        targets = torch.roll(ids, -1, dims=1)[sel]

        causal_lm = model.get_base_model()
        text_config = getattr(causal_lm.config, "get_text_config", lambda: causal_lm.config)()
        masks = _masks(rows, length, text_config, device)
        softcap = getattr(text_config, "final_logit_softcapping", None)
        head = causal_lm.lm_head
        with torch.autocast(device, dtype=setup.dtype, enabled=setup.dtype != torch.float32):
            hidden = causal_lm.model(
                input_ids=ids, position_ids=pos, attention_mask=masks
            ).last_hidden_state
            # The expensive vocabulary projection, only where a token is predicted for loss,
            # and a chunk of positions at a time (`memory.lm_head_loss`).
            if isinstance(head, torch.nn.Linear):
                loss = lm_head_loss(hidden[sel], head, targets, softcap)
            else:  # an adapted or unusual head: all logits at once
                logits = head(hidden[sel]).float()
                if softcap:
                    logits = torch.tanh(logits / softcap) * softcap
                loss = F.cross_entropy(logits, targets, reduction="sum")
        return LossSum(loss, int(sel.sum()), sum(len(r.ids) for r in rows))

    def samples(self, model: Any, examples: Sequence[Any], setup: Setup) -> list[str]:
        """Greedy continuations of the first `config.samples` validation contexts."""
        import torch

        tokenizer = setup.tokenizer
        out = []
        for ex in examples[: setup.config.samples]:
            context, target = example_fields(ex)
            tag = tag_of(target)
            enc = tokenizer(context + tag, return_tensors="pt").to(setup.device)
            with torch.no_grad():
                gen = model.generate(
                    **enc,
                    max_new_tokens=setup.config.sample_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id or 0,
                )
            reply = tokenizer.decode(gen[0, enc["input_ids"].shape[1] :])
            last_line = context.rstrip("\n").rsplit("\n", 1)[-1] if context else ""
            out.append(f"{last_line}\n{tag}{reply.split(chr(10))[0]}".lstrip("\n"))
        return out


def _masks(rows: Sequence[PackedRow], length: int, text_config: Any, device: str) -> Any:
    """The attention mask the model's layers want: one for full attention, and a windowed one
    as well when some layers use sliding-window attention (gemma3)."""
    full = block_causal_mask(rows, length)
    window = getattr(text_config, "sliding_window", None)
    layer_types = set(getattr(text_config, "layer_types", None) or ())
    if "sliding_attention" in layer_types and window:
        sliding = block_causal_mask(rows, length, window)
        return {"full_attention": full.to(device), "sliding_attention": sliding.to(device)}
    return full.to(device)


OBJECTIVES: dict[str, type[Objective]] = {NextMessage.name: NextMessage}
"""Objectives by the name `TrainConfig.objective` records."""


def objective_named(name: str) -> Objective:
    # The update objective builds on this module's pieces, so it registers lazily.
    from convsim.core.training.preference import Update

    try:
        return {**OBJECTIVES, Update.name: Update}[name]()
    except KeyError:
        raise ValueError(
            f"unknown training objective {name!r} (choose from {', '.join(OBJECTIVES)})"
        ) from None
