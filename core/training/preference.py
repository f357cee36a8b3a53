"""The update objective: next messages, replay and preferences in every batch.

An update ("sleep", `core/learning`) continues a persona's adapter on three kinds of example,
given to `prepare` as dicts:

- text: `{"context", "target"}` (and `"replay": True` for an example the persona learnt
  before): next-message cross-entropy on the target turn, as in `objectives.NextMessage`;
- pair: `{"context", "chosen", "rejected", "weight"}`, target turns: DPO,
  -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))) on what the chosen turn changed in
  the rejected one (an edit: from their first different token to their last, `_pair`), and
  the chosen side of that change is also learnt as next-message tokens;
- unpaired: `{"context", "reply", "desirable", "weight"}`: KTO, weight * (1 - sigmoid(beta *
  (r - z))) for a desirable reply and (1 - sigmoid(beta * (z - r))) for an undesirable one,
  with r = pi - ref and z the batch's mean reward, clamped at 0 and detached.

pi is the summed log-probability of the turn's words under the model being trained, ref under
the model before the update: `reference()` computes those once, before the first step (the
job saves them beside the run, so a resumed update uses the same ones).

Every item the loop batches is one *unit* of new material (a text, or a few preference
examples) together with `replay` share of examples learnt before, packed into one row; so a
share of every batch is replay, whatever the loop's order. An item's loss is its mean
next-message loss per token (replay tokens weighted `replay_weight`: the pull back to what the
persona said before) plus its mean preference loss, counted as one unit.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from convsim.core.data.packing import TokenizedExample, tokenize_examples
from convsim.core.training.memory import lm_head_loss
from convsim.core.training.objectives import LossSum, Setup

__all__ = ["MixItem", "Segment", "Update"]

PREFERENCES_PER_UNIT = 4


@dataclass(frozen=True)
class Segment:
    ids: tuple[int, ...]
    loss_start: int  # first token whose log-probability counts
    lm_weight: float  # weight of its next-message loss (0: a preference side only)
    key: str  # identifies its tokens, for the reference log-probability
    # Leading tokens it shares with the segment before it in its item (a pair's rejected reply
    # shares the chosen one's context): computed once, attended to by both.
    shared: int = 0

    @property
    def tokens(self) -> int:
        return len(self.ids) - self.shared


@dataclass(frozen=True)
class MixItem:
    segments: tuple[Segment, ...]
    pairs: tuple[tuple[int, int, float], ...] = ()  # (chosen, rejected, weight), segment indices
    unpaired: tuple[tuple[int, bool, float], ...] = ()  # (segment, desirable, weight)

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.segments)


class Update:
    """See the module docstring. `replay`: the share of each item's rows that is replay
    (0 = none); `beta`: the preference losses' temperature; `preference_weight`: their weight
    beside the next-message loss; `replay_weight`: a replay token's weight in it."""

    name = "update"

    def __init__(
        self,
        replay: float = 0.4,
        beta: float = 0.1,
        preference_weight: float = 1.0,
        replay_weight: float = 1.0,
    ) -> None:
        if not 0 <= replay < 1:
            raise ValueError(f"replay must be a share from 0 to below 1, not {replay}")
        self.replay = replay
        self.replay_weight = replay_weight
        self.beta = beta
        self.preference_weight = preference_weight
        self.ref: dict[str, float] = {}

    # -- items ----------------------------------------------------------------------------------

    def prepare(self, examples: Sequence[Any], setup: Setup, *, training: bool) -> list[Any]:
        tok, seq_len = setup.tokenizer, setup.config.seq_len
        fresh: list[list[Segment]] = []
        replayed: list[Segment] = []
        preferences: list[tuple[str, list[Segment], bool | None, float]] = []
        for ex in examples:
            kind = ex.get("type", "text")
            if kind == "text":
                text = _segments(tok, ex["context"], [ex["target"]], seq_len, 1.0)
                if text and ex.get("replay"):
                    replayed.append(replace(text[0], lm_weight=self.replay_weight))
                elif text:
                    fresh.append(text)
            elif kind == "pair":
                segs = _segments(tok, ex["context"], [ex["chosen"], ex["rejected"]], seq_len)
                if len(segs) == 2:
                    preferences.append(("pair", _pair(*segs), None, ex.get("weight", 1.0)))
            elif kind == "unpaired":
                segs = _segments(tok, ex["context"], [ex["reply"]], seq_len)
                if segs:
                    weight = ex.get("weight", 1.0)
                    preferences.append(("unpaired", segs, bool(ex["desirable"]), weight))
            else:
                raise ValueError(f"unknown update example type {kind!r}")
        units: list[MixItem] = [MixItem(tuple(s)) for s in fresh]
        for start in range(0, len(preferences), PREFERENCES_PER_UNIT):
            units.append(_unit(preferences[start : start + PREFERENCES_PER_UNIT]))
        if not training:
            return units + [MixItem((s,)) for s in replayed]
        rng = random.Random(setup.config.seed)
        rng.shuffle(units)
        rng.shuffle(replayed)
        if not self.replay or not replayed:
            return units
        # Each unit takes replay until replay is `self.replay` of its tokens.
        out, r = [], 0
        for unit in units:
            segments = list(unit.segments)
            own = unit.tokens
            added = 0
            while added < self.replay / (1 - self.replay) * own:
                segments.append(replayed[r % len(replayed)])
                added += replayed[r % len(replayed)].tokens
                r += 1
            out.append(MixItem(tuple(segments), unit.pairs, unit.unpaired))
        return out

    # -- scoring --------------------------------------------------------------------------------

    def logprobs(self, model: Any, item: MixItem, setup: Setup) -> tuple[list[Any], list[int]]:
        """Per segment of `item`: the summed log-probability of its scored tokens (a tensor,
        with a graph when gradients are on) and how many tokens that is."""
        import torch

        ids: list[int] = []
        positions: list[int] = []
        rows: list[list[int]] = []  # per segment: the row index of each of its tokens
        for seg in item.segments:
            at = list(rows[-1][: seg.shared]) if seg.shared else []
            at += range(len(ids), len(ids) + seg.tokens)
            ids.extend(seg.ids[seg.shared :])
            positions.extend(range(seg.shared, len(seg.ids)))
            rows.append(at)
        device = setup.device
        causal_lm = model.get_base_model()
        text_config = getattr(causal_lm.config, "get_text_config", lambda: causal_lm.config)()
        masks = _fork_masks(rows, positions, text_config, device)
        softcap = getattr(text_config, "final_logit_softcapping", None)
        tensor = torch.tensor([ids], dtype=torch.long, device=device)
        pos = torch.tensor([positions], dtype=torch.long, device=device)
        counts: list[int] = []
        with torch.autocast(device, dtype=setup.dtype, enabled=setup.dtype != torch.float32):
            hidden = causal_lm.model(
                input_ids=tensor, position_ids=pos, attention_mask=masks
            ).last_hidden_state[0]
            # Token u is predicted from the hidden state of token u - 1. One call to the
            # vocabulary projection for the whole item: each call reads all of the head.
            index: list[int] = []
            targets: list[int] = []
            for seg, at in zip(item.segments, rows, strict=True):
                index += at[seg.loss_start - 1 : -1]
                targets += seg.ids[seg.loss_start :]
                counts.append(len(seg.ids) - seg.loss_start)
            losses = lm_head_loss(hidden[torch.tensor(index, dtype=torch.long, device=device)],
                                  causal_lm.lm_head,
                                  torch.tensor(targets, dtype=torch.long, device=device),
                                  softcap, per_row=True)  # fmt: skip
            out = [-part.sum() for part in losses.split(counts)]
        return out, counts

    def reference(self, model: Any, items: Sequence[MixItem], setup: Setup) -> dict[str, float]:
        """The log-probabilities of every preference segment under `model` as it is now (the
        model before the update), kept as this objective's reference and returned."""
        import torch

        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for item in items:
                    wanted = [item.segments[i] for i in _preference_segments(item)]
                    if all(s.key in self.ref for s in wanted):
                        continue
                    # Only the preference segments (replay needs no reference), all of them:
                    # a rejected reply is computed on its chosen twin's context.
                    logps, _ = self.logprobs(model, MixItem(tuple(wanted)), setup)
                    for seg, logp in zip(wanted, logps, strict=True):
                        self.ref[seg.key] = float(logp)
        finally:
            model.train(was_training)
        return dict(self.ref)

    def loss(self, model: Any, batch: Sequence[Any], setup: Setup) -> LossSum:
        import torch
        import torch.nn.functional as F

        total = torch.zeros((), device=setup.device)
        tokens = 0
        for item in batch:
            logps, counts = self.logprobs(model, item, setup)
            tokens += item.tokens
            lm = [(s.lm_weight, lp, n) for s, lp, n in zip(item.segments, logps, counts,
                                                           strict=True) if s.lm_weight]  # fmt: skip
            if lm:
                total = total - sum(w * lp for w, lp, _ in lm) / max(1, sum(n for *_, n in lm))
            losses = []
            reward = {i: logps[i] - self._ref(item.segments[i]) for i in
                      _preference_segments(item)}  # fmt: skip
            for chosen, rejected, weight in item.pairs:
                margin = reward[chosen] - reward[rejected]
                losses.append(-weight * F.logsigmoid(self.beta * margin))
            if item.unpaired:
                z = torch.stack([reward[i] for i, _, _ in item.unpaired]).mean()
                z = z.detach().clamp(min=0)
                for i, desirable, weight in item.unpaired:
                    sign = 1 if desirable else -1
                    losses.append(weight * (1 - torch.sigmoid(sign * self.beta * (reward[i] - z))))
            if losses:
                total = total + self.preference_weight * torch.stack(losses).mean()
        return LossSum(total, len(batch), tokens)

    def _ref(self, segment: Segment) -> float:
        try:
            return self.ref[segment.key]
        except KeyError:
            raise RuntimeError(
                "the update's reference log-probabilities were not computed (call reference())"
            ) from None

    def samples(self, model: Any, examples: Sequence[Any], setup: Setup) -> list[str]:
        return []


def _fork_masks(rows: list[list[int]], positions: list[int], text_config: Any, device: str) -> Any:
    """The attention mask of one item's row: each segment sees its own earlier tokens, which
    for a segment that shares a prefix include the tokens of the segment before it; none sees
    another segment otherwise. Sliding-window layers (gemma3) get the window too."""
    import torch

    length = len(positions)
    allowed = torch.zeros(length, length, dtype=torch.bool)
    for at in rows:
        index = torch.tensor(at)
        allowed[index[:, None], index[None, :]] = torch.ones(len(at), len(at)).tril().bool()
    full = allowed[None, None].to(device)
    window = getattr(text_config, "sliding_window", None)
    if "sliding_attention" in set(getattr(text_config, "layer_types", None) or ()) and window:
        pos = torch.tensor(positions)
        near = (pos[:, None] - pos[None, :]) < window
        return {
            "full_attention": full,
            "sliding_attention": (allowed & near)[None, None].to(device),
        }
    return full


def _segments(
    tokenizer: Any, context: str, targets: list[str], seq_len: int, lm_weight: float = 0.0
) -> list[Segment]:
    """One segment per target turn after `context`, all clipped by as many of the oldest
    context tokens as the longest needs to fit `seq_len` (so a pair's replies keep the same
    context, unless a target alone is longer); none when a target has no words."""
    tokenized = tokenize_examples(
        [{"context": context, "target": t} for t in targets], tokenizer, "target"
    )
    if len(tokenized) != len(targets):
        return []
    cut = max(len(t.ids) for t in tokenized) - seq_len
    if any(cut >= t.loss_start for t in tokenized):  # a target alone is too long: each its own
        return [_segment(_clip(t, len(t.ids) - seq_len), lm_weight) for t in tokenized]
    return [_segment(_clip(t, cut), lm_weight) for t in tokenized]


def _clip(ex: TokenizedExample, cut: int) -> TokenizedExample:
    """`ex` without `cut` tokens after its first (BOS), taken from its context first."""
    if cut <= 0:
        return ex
    start = max(1, ex.loss_start - cut)
    return TokenizedExample((ex.ids[0], *ex.ids[cut + 1 :]), start)


def _segment(ex: TokenizedExample, lm_weight: float) -> Segment:
    digest = hashlib.sha1(repr((ex.ids, ex.loss_start)).encode()).hexdigest()[:20]
    return Segment(ex.ids, max(1, ex.loss_start), lm_weight, digest)


def _pair(chosen: Segment, rejected: Segment) -> list[Segment]:
    """A pair's two segments: the tokens the user changed, from the first token where the
    replies differ to the last, in the chosen reply (learnt as next-message tokens too) and in
    the rejected one, which shares the chosen one's context and first words. The words before
    the change are equal in both; the words after it are the persona's own, and learning them
    again would only make it surer of itself. A deletion scores the token after it."""
    a, b = chosen.ids, rejected.ids
    if chosen.loss_start != rejected.loss_start or a[: chosen.loss_start] != b[: chosen.loss_start]:
        return [chosen, rejected]  # clipped apart (a reply longer than a row): whole replies
    start = chosen.loss_start
    while start < min(len(a), len(b)) - 1 and a[start] == b[start]:
        start += 1
    same = 0  # tokens both end with
    while min(len(a), len(b)) - same > start + 1 and a[-1 - same] == b[-1 - same]:
        same += 1
    return [
        Segment(a[: len(a) - same], start, 1.0, chosen.key + "@change"),
        Segment(b[: len(b) - same], start, 0.0, rejected.key + "@change", start),
    ]


def _unit(preferences: list[tuple[str, list[Segment], bool | None, float]]) -> MixItem:
    segments: list[Segment] = []
    pairs, unpaired = [], []
    for kind, segs, desirable, weight in preferences:
        at = len(segments)
        segments.extend(segs)
        if kind == "pair":
            pairs.append((at, at + len(segs) - 1, weight))  # chosen, [its edit,] rejected
        else:
            unpaired.append((at, bool(desirable), weight))
    return MixItem(tuple(segments), tuple(pairs), tuple(unpaired))


def _preference_segments(item: MixItem) -> list[int]:
    return sorted({i for c, r, _ in item.pairs for i in (c, r)} | {i for i, _, _ in item.unpaired})
