"""The trainer on a tiny random model and a tokenizer trained on the sample chat (CPU, seconds)."""

from __future__ import annotations

import json
import threading

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from convsim.core.chats.importers import parse_export  # noqa: E402
from convsim.core.chats.messages import StoredMessage  # noqa: E402
from convsim.core.data.dataset import DatasetConfig, build  # noqa: E402
from convsim.core.data.packing import pack, tokenize_examples  # noqa: E402
from convsim.core.training.trainer import TrainConfig, Trainer, TrainEvent, block_causal_mask  # noqa: E402
from convsim.core.workspace import SAMPLE_CHAT  # noqa: E402


@pytest.fixture(scope="module")
def dataset():
    (chat,) = parse_export(SAMPLE_CHAT)
    msgs = [
        StoredMessage(i, m.timestamp, m.sender, m.text, m.kind) for i, m in enumerate(chat.messages)
    ]
    return build(msgs, DatasetConfig(target="Sam", max_context=6))


@pytest.fixture(scope="module")
def tokenizer(dataset):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = [ex.context + ex.target for ex in dataset.train]
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<bos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", pad_token="<pad>", unk_token="<unk>"
    )


def tiny_model(vocab: int, arch: str = "llama"):
    torch.manual_seed(0)
    kw = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
    )
    if arch == "gemma3":
        cfg = transformers.Gemma3TextConfig(
            **kw, sliding_window=16, layer_types=["sliding_attention", "full_attention"]
        )
        return transformers.Gemma3ForCausalLM(cfg)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**kw))


def config(**kw) -> TrainConfig:
    base = dict(
        rank=4,
        alpha=8,
        steps=6,
        seq_len=128,
        batch_size=4,
        eval_every=3,
        checkpoint_every=2,
        samples=1,
        sample_tokens=4,
        learning_rate=5e-3,
        eval_rows=4,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_loss_only_on_target_words(dataset, tokenizer) -> None:
    ex = dataset.train[5]
    (tok,) = tokenize_examples([ex], tokenizer, "target")
    text = tokenizer.decode(tok.ids[tok.loss_start :])
    assert text.strip() == ex.target[len("[Sam]") :].strip()
    (all_,) = tokenize_examples([ex], tokenizer, "all")
    assert all_.loss_start == 1 and tok.ids == all_.ids


def test_packing_has_no_padding_and_keeps_every_target(dataset, tokenizer) -> None:
    toks = tokenize_examples(dataset.train, tokenizer)
    rows = pack(toks, 128, seed=0)
    assert sum(len(r.ids) for r in rows) == sum(min(len(t.ids), 128) for t in toks)
    assert all(len(r.ids) <= 128 for r in rows)
    full = sum(len(r.ids) for r in rows) / (128 * len(rows))
    assert full > 0.9  # rows are nearly full: little wasted compute
    assert sum(r.loss_tokens for r in rows) == sum(
        min(len(t.ids), 128) - 1 - max(0, t.loss_start - 1 - max(0, len(t.ids) - 128)) for t in toks
    ) or all(r.loss_tokens > 0 for r in rows)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_packed_example_computes_as_if_alone(dataset, tokenizer, arch) -> None:
    model = tiny_model(len(tokenizer), arch).eval()
    toks = tokenize_examples(dataset.train[:6], tokenizer)
    rows = pack(toks, 256, seed=None)
    row = next(r for r in rows if len(r.lengths) > 1)
    n0 = row.lengths[0]
    second = torch.tensor([row.ids[n0 : n0 + row.lengths[1]]])
    ids = torch.tensor([row.ids])
    pos = torch.tensor([row.positions])
    mask = block_causal_mask([row], len(row.ids))
    masks = (
        {"full_attention": mask, "sliding_attention": block_causal_mask([row], len(row.ids), 16)}
        if arch == "gemma3"
        else mask
    )
    with torch.no_grad():
        alone = model(second).logits
        packed = model(ids, position_ids=pos, attention_mask=masks).logits[
            :, n0 : n0 + row.lengths[1]
        ]
    assert (alone - packed).abs().max().item() < 1e-4


def test_training_lowers_validation_loss_and_reports_events(dataset, tokenizer, tmp_path) -> None:
    events: list[TrainEvent] = []
    trainer = Trainer(
        tiny_model(len(tokenizer)),
        tokenizer,
        dataset.train,
        dataset.validation,
        config(steps=12, eval_every=6),
        tmp_path / "run",
        on_event=events.append,
    )
    result = trainer.run()
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("step") == 12
    evals = [e for e in events if e.kind == "eval"]
    assert len(evals) == 2 and evals[1].val_loss < evals[0].val_loss
    assert evals[0].samples and evals[0].samples[0].splitlines()[-1].startswith("[Sam]")
    steps = [e for e in events if e.kind == "step"]
    assert all(e.tokens_per_s > 0 and e.eta_s >= 0 for e in steps) and steps[-1].eta_s == 0
    assert (result.adapter_dir / "adapter_config.json").exists()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val_loss"] == evals[-1].val_loss and metrics["steps"] == 12


def test_deterministic_with_a_seed(dataset, tokenizer, tmp_path) -> None:
    losses = []
    for name in ("a", "b"):
        events: list[TrainEvent] = []
        Trainer(
            tiny_model(len(tokenizer)),
            tokenizer,
            dataset.train,
            [],
            config(),
            tmp_path / name,
            on_event=events.append,
        ).run()
        losses.append([e.loss for e in events if e.kind == "step"])
    assert losses[0] == losses[1]


def test_cancel_then_resume_matches_an_uninterrupted_run(dataset, tokenizer, tmp_path) -> None:
    def losses(events):
        return [round(e.loss, 6) for e in events if e.kind == "step"]

    straight: list[TrainEvent] = []
    Trainer(
        tiny_model(len(tokenizer)),
        tokenizer,
        dataset.train,
        [],
        config(),
        tmp_path / "s",
        on_event=straight.append,
    ).run()

    cancel = threading.Event()
    first: list[TrainEvent] = []

    def stop_after_three(e: TrainEvent) -> None:
        first.append(e)
        if e.kind == "step" and e.step == 3:
            cancel.set()

    r = Trainer(
        tiny_model(len(tokenizer)),
        tokenizer,
        dataset.train,
        [],
        config(),
        tmp_path / "r",
        on_event=stop_after_three,
        cancel=cancel,
    ).run()
    assert r.cancelled and r.steps == 3 and r.adapter_dir is None
    second: list[TrainEvent] = []
    r2 = Trainer(
        tiny_model(len(tokenizer)),
        tokenizer,
        dataset.train,
        [],
        config(),
        tmp_path / "r",
        on_event=second.append,
    ).run(resume=True)
    assert not r2.cancelled and r2.steps == 6
    assert losses(first) + losses(second) == losses(straight)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="wiggly").check()
    with pytest.raises(ValueError, match="unknown training settings: bogus"):
        TrainConfig.from_json({"bogus": 1})
