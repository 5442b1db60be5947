"""Differentially private fine-tuning (recipes.privacy.dp): DP-SGD with Opacus through the real Trainer, on forge-tiny and
the embedded sentiment sample. What a user relies on: the run trains and reports a spent epsilon within the target,
each example's gradient is clipped before noise, and settings that would void the guarantee are refused."""

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

import modeling  # noqa: F401
from modeling import ForgeConfig, ForgeForSequenceClassification
from recipes.privacy.dp import (
    ACCOUNTANT_FILE, DPConfigError, DPTrainer, length_sorted_passes, trainer_class, unsupported_modules,
)
from recipe_helpers import SAMPLE_DIR, train_small_tokenizer
from recipes import qa, sentiment, srl
from recipes.core.args import ForgeTrainingArguments

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.xdist_group("privacy_dp")]

COMMON = [
    "--config_name", "forge-tiny", "--do_train", "--do_eval", "--per_device_train_batch_size", "8",
    "--per_device_eval_batch_size", "8", "--learning_rate", "1e-3", "--logging_steps", "1", "--report_to", "none",
    "--disable_tqdm", "true", "--dataloader_pin_memory", "false", "--seed", "7",
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    train_small_tokenizer().save_pretrained(path)
    return str(path)


def _files(task, n_train=32, n_eval=8):
    return [
        "--train_file", str(SAMPLE_DIR / task / "train.jsonl"), "--validation_file", str(SAMPLE_DIR / task / "validation.jsonl"),
        "--max_train_samples", str(n_train), "--max_eval_samples", str(n_eval),
    ]


def test_sentiment_dp_run_reports_spent_epsilon_in_metrics_card_and_checkpoint(tmp_path, tokenizer_dir):
    out = tmp_path / "dp"
    metrics_file = out / "all_results.json"
    sentiment.main(
        COMMON + _files("sentiment") + [
            "--tokenizer_name", tokenizer_dir, "--output_dir", str(out), "--max_steps", "4", "--save_steps", "2",
            "--dp_epsilon", "3", "--dp_max_grad_norm", "0.5",
        ]
    )
    results = json.loads(metrics_file.read_text())
    assert 0 < results["train_dp_epsilon"] <= 3.0
    assert results["train_dp_delta"] == pytest.approx(1 / 32)  # default: 1 / training rows
    assert results["train_dp_steps"] == 4 and results["train_dp_sample_rate"] == pytest.approx(8 / 32)
    assert results["train_dp_noise_multiplier"] > 0.5
    card = (out / "README.md").read_text()
    assert "## Differential privacy" in card and f"epsilon = {results['train_dp_epsilon']:.3g}" in card
    # the sentiment recipe's preset default is a BiLSTM encoder, which Opacus cannot clip per example: kept attention
    assert json.loads((out / "config.json").read_text())["encoder_mixer"] == "attention"
    # the checkpoint carries the accountant's ledger (a resumed run counts the privacy already spent) ...
    ledger = json.loads((out / "checkpoint-2" / ACCOUNTANT_FILE).read_text())
    assert sum(entry[2] for entry in ledger["history"]) == 2 and 0 < ledger["epsilon"] < results["train_dp_epsilon"]
    # ... no non-private gradient norm is logged, and the saved model loads as usual
    state = json.loads((out / "trainer_state.json").read_text())
    assert not any("grad_norm" in entry for entry in state["log_history"])
    AutoModelForSequenceClassification.from_pretrained(out)

    # resuming from checkpoint-2 continues the ledger: 2 restored + 2 new steps, the same spent epsilon
    resumed = tmp_path / "resumed"
    sentiment.main(
        COMMON + _files("sentiment") + [
            "--tokenizer_name", tokenizer_dir, "--output_dir", str(resumed), "--max_steps", "4", "--save_steps", "2",
            "--dp_epsilon", "3", "--dp_max_grad_norm", "0.5", "--resume_from_checkpoint", str(out / "checkpoint-2"),
        ]
    )
    again = json.loads((resumed / "all_results.json").read_text())
    assert again["train_dp_steps"] == 4
    assert again["train_dp_epsilon"] == pytest.approx(results["train_dp_epsilon"], rel=1e-6)

    # fine-tuning a saved folder (from_pretrained returns the model in eval mode) is not refused
    tuned = tmp_path / "from_folder"
    sentiment.main(
        COMMON[2:] + _files("sentiment") + [
            "--model_name_or_path", str(out), "--output_dir", str(tuned), "--max_steps", "2", "--dp_epsilon", "8",
        ]
    )
    assert 0 < json.loads((tuned / "all_results.json").read_text())["train_dp_epsilon"] <= 8.0


def _dp_trainer(tmp_path, tokenizer, model, dataset, **overrides):
    args = ForgeTrainingArguments(
        output_dir=str(tmp_path / "t"), per_device_train_batch_size=4, report_to="none", dp_epsilon=8.0,
        dp_max_grad_norm=0.01, max_steps=2, seed=0, **overrides,
    )
    trainer = DPTrainer(model=model, args=args, train_dataset=dataset, data_collator=DataCollatorWithPadding(tokenizer))
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which these tests step through by hand
    return trainer


def _tiny_classifier(tokenizer, **config):
    cfg = ForgeConfig.from_pretrained(
        "forge-tiny", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, num_labels=2,
        dropout=0.0, attention_dropout=0.0, classifier_dropout=0.0, **config,
    )
    return ForgeForSequenceClassification(cfg)


def _features(tokenizer, n=12):
    import datasets

    rows = [json.loads(line) for line in (SAMPLE_DIR / "sentiment" / "train.jsonl").read_text().splitlines()[:n]]
    enc = tokenizer([r["text"] for r in rows], truncation=True, max_length=32)
    return datasets.Dataset.from_dict({**enc, "labels": [int(r["label"]) for r in rows]})


def _batch_to_cut(loader, rows_per_pass, tries=100):
    """A Poisson batch of at least 3 rows; with ``rows_per_pass``, one whose length-sorted passes are not all as
    wide as the batch (the draws come from the OS's entropy, so the test searches instead of seeding)."""
    for _ in range(tries):
        for batch in loader:
            if len(batch["labels"]) < 3:
                continue
            if not rows_per_pass:
                return batch
            passes = length_sorted_passes(batch, rows_per_pass)
            if len(passes) >= 2 and min(part["input_ids"].shape[1] for part in passes) < batch["input_ids"].shape[1]:
                return batch
    raise AssertionError(f"no Poisson batch in {tries} epochs had passes narrower than the batch")


@pytest.mark.parametrize("config, rows_per_pass", [
    ({}, 0),
    ({}, 2),  # the batch sorted by length and cut into passes of 2 rows, each with its own padding
    ({"position_embedding_type": "rotary", "norm_type": "rmsnorm", "ffn_type": "gated"}, 0),
    ({"position_embedding_type": "rotary", "norm_type": "rmsnorm", "ffn_type": "gated"}, 2),
])
def test_each_example_gradient_is_clipped_before_summing(tmp_path, config, rows_per_pass):
    """One step by hand: Opacus' clipped sum == the sum of each example's own gradient (autograd on that example
    alone, padding removed) scaled to norm <= C; fused qkv / kv projections, norms and the shared embedding included;
    the same when the Poisson batch runs as several length-sorted passes."""
    tokenizer = train_small_tokenizer()
    model = _tiny_classifier(tokenizer, **config)
    dataset = _features(tokenizer)
    trainer = _dp_trainer(tmp_path, tokenizer, model, dataset, dp_micro_batch_size=rows_per_pass)
    loader = trainer.get_train_dataloader()
    optimizer = trainer.create_optimizer()
    batch = _batch_to_cut(loader, rows_per_pass)
    model.train()
    trainer.training_step(model, batch)
    params = [p for p in model.parameters() if p.requires_grad]
    if rows_per_pass:
        passes = length_sorted_passes(batch, rows_per_pass)
        assert len(passes) >= 2 and min(part["input_ids"].shape[1] for part in passes) < batch["input_ids"].shape[1]
        # the earlier passes were clipped into the running sum and their per-example gradients freed
        assert all(p.grad_sample.shape[0] == len(passes[-1]["labels"]) for p in params)
    optimizer.clip_and_accumulate()
    clip = trainer.args.dp_max_grad_norm
    expected = [torch.zeros_like(p) for p in params]
    for i in range(len(batch["labels"])):
        length = int(batch["attention_mask"][i].sum())
        out = model(input_ids=batch["input_ids"][i : i + 1, :length], attention_mask=batch["attention_mask"][i : i + 1, :length],
                    labels=batch["labels"][i : i + 1])
        grads = torch.autograd.grad(out.loss, params, allow_unused=True)
        grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        assert norm > clip  # so the check below is about clipping, not about small gradients
        for acc, g in zip(expected, grads):
            acc += g * (clip / (norm + 1e-6))
    for p, want in zip(params, expected):
        torch.testing.assert_close(p.summed_grad, want, atol=1e-6, rtol=1e-3)
    summed_norm = torch.sqrt(sum((p.summed_grad**2).sum() for p in params))
    assert summed_norm <= clip * len(batch["labels"]) + 1e-5


def test_an_empty_poisson_batch_still_takes_a_noise_only_step(tmp_path):
    tokenizer = train_small_tokenizer()
    model = _tiny_classifier(tokenizer)
    trainer = _dp_trainer(tmp_path, tokenizer, model, _features(tokenizer))
    loader = trainer.get_train_dataloader()
    optimizer = trainer.create_optimizer()
    empty = loader.collate_fn([])
    assert set(empty) == {"input_ids", "attention_mask", "labels"} and empty["labels"].shape[0] == 0
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    trainer.training_step(model, empty)
    optimizer.step()
    assert trainer.ledger_steps() == 1 and trainer.spent_epsilon() > 0
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))  # noise moved the weights
    assert all(getattr(p, "grad_sample", None) is None for p in model.parameters())  # cleared for the next step


def test_refused_configurations_name_the_problem(tmp_path, tokenizer_dir):
    tokenizer = train_small_tokenizer()
    with pytest.raises(DPConfigError, match="gradient_accumulation_steps"):
        _dp_trainer(tmp_path, tokenizer, _tiny_classifier(tokenizer), _features(tokenizer), gradient_accumulation_steps=2)
    learned = _tiny_classifier(tokenizer, position_embedding_type="learned")
    assert any("ForgeLearnedPositions" in p and "sinusoidal" in p for p in unsupported_modules(learned))
    with pytest.raises(DPConfigError, match="ForgeLearnedPositions"):
        _dp_trainer(tmp_path, tokenizer, learned, _features(tokenizer))
    with pytest.raises(DPConfigError, match="semantic-role-labeling"):
        srl.main(COMMON + _files("srl") + ["--tokenizer_name", tokenizer_dir, "--output_dir", str(tmp_path / "srl"),
                                           "--max_steps", "1", "--dp_epsilon", "8"])
    # without --dp_epsilon nothing changes: the plain Trainer
    args = ForgeTrainingArguments(output_dir=str(tmp_path / "plain"), report_to="none")
    assert trainer_class(args, "semantic-role-labeling").__name__ == "Trainer"


def test_qa_dp_refuses_examples_split_into_several_windows(tmp_path, tokenizer_dir):
    with pytest.raises(DPConfigError, match="windows"):
        qa.main(COMMON + _files("qa", n_train=16) + [
            "--tokenizer_name", tokenizer_dir, "--output_dir", str(tmp_path / "qa"), "--max_steps", "1",
            "--max_seq_length", "96", "--doc_stride", "16", "--max_question_length", "32", "--dp_epsilon", "8",
        ])


def test_resume_without_ledger_is_refused(tmp_path, tokenizer_dir):
    """A checkpoint trained without DP carries no ledger: resuming it privately would understate epsilon."""
    from recipes.core.guards import RunMismatchError

    out = tmp_path / "plain"
    common = COMMON + _files("sentiment", n_train=16) + ["--tokenizer_name", tokenizer_dir, "--max_steps", "1",
                                                         "--save_steps", "1"]
    sentiment.main(common + ["--output_dir", str(out)])
    # the recipes refuse resuming it with other arguments, naming --dp_epsilon ...
    with pytest.raises(RunMismatchError, match="dp_epsilon"):
        sentiment.main(common + ["--output_dir", str(tmp_path / "dp"), "--resume_from_checkpoint",
                                 str(out / "checkpoint-1"), "--dp_epsilon", "8"])
    # ... and the DP trainer itself refuses a checkpoint without a ledger, whoever calls it
    tokenizer = train_small_tokenizer()
    trainer = _dp_trainer(tmp_path, tokenizer, _tiny_classifier(tokenizer), _features(tokenizer))
    trainer._resume_from = str(out / "checkpoint-1")
    trainer.get_train_dataloader()
    with pytest.raises(DPConfigError, match="privacy already spent is unknown"):
        trainer.create_optimizer()


@pytest.mark.parametrize("position", ["sinusoidal", "rotary", "learned"])
def test_opacus_validates_every_forge_head(position):
    """Opacus' ModuleValidator and the per-example rule check on every head: only learned positions are refused."""
    from modeling import ForgeForConditionalGeneration, ForgeForQuestionAnswering, ForgeForTokenClassification

    config = ForgeConfig.from_pretrained("forge-tiny", num_labels=3, position_embedding_type=position, norm_type="rmsnorm")
    for head in (ForgeForSequenceClassification, ForgeForQuestionAnswering, ForgeForTokenClassification,
                 ForgeForConditionalGeneration):
        problems = unsupported_modules(head(config))
        if position == "learned":
            assert problems and all("ForgeLearnedPositions" in p for p in problems), head.__name__
        else:
            assert problems == [], (head.__name__, problems)


def test_dp_with_lora_trains_only_adapters_privately(tmp_path, tokenizer_dir):
    """--use_lora with --dp_epsilon (DP-LoRA): the adapters and head get per-example gradients, the run reports epsilon."""
    out = tmp_path / "dp-lora"
    sentiment.main(COMMON + _files("sentiment") + [
        "--tokenizer_name", tokenizer_dir, "--output_dir", str(out), "--max_steps", "2", "--save_strategy", "no",
        "--dp_epsilon", "8", "--use_lora"])
    results = json.loads((out / "all_results.json").read_text())
    assert 0 < results["train_dp_epsilon"] <= 8.0 and results["train_dp_steps"] == 2


def test_dp_with_frozen_embeddings_keeps_the_table_and_trains_the_rest(tmp_path, tokenizer_dir):
    """--freeze_embeddings with --dp_epsilon: the token table (no per-example gradient for Opacus to hold) is
    unchanged in the saved folder, the other weights moved, and the run reports its epsilon."""
    start = tmp_path / "start"
    sentiment.main(COMMON + _files("sentiment") + [  # attention: a BiLSTM start (the recipe's default) is refused
        "--tokenizer_name", tokenizer_dir, "--output_dir", str(start), "--max_steps", "1", "--save_strategy", "no",
        "--config_overrides", "encoder_mixer=attention"])
    out = tmp_path / "dp-frozen"
    sentiment.main(COMMON[2:] + _files("sentiment") + [
        "--model_name_or_path", str(start), "--output_dir", str(out), "--max_steps", "2", "--save_strategy", "no",
        "--dp_epsilon", "8", "--freeze_embeddings"])
    before = AutoModelForSequenceClassification.from_pretrained(start).state_dict()
    after = AutoModelForSequenceClassification.from_pretrained(out).state_dict()
    table = next(k for k in after if k.endswith("embed_tokens.weight") or k.endswith("shared.weight"))
    assert torch.equal(before[table], after[table])
    assert any(not torch.equal(before[k], after[k]) for k in after if "layers.0" in k)
    results = json.loads((out / "all_results.json").read_text())
    assert 0 < results["train_dp_epsilon"] <= 8.0 and results["train_dp_steps"] == 2


@pytest.mark.parametrize("mixer, name", [("conv", "ForgeLightweightConv"), ("recurrent", "GRU")])
def test_conv_and_recurrent_mixers_are_refused_by_name(mixer, name):
    """Opacus has no per-example rule for Forge's lightweight convolution or nn.GRU: refused, never trained silently."""
    config = ForgeConfig.from_pretrained("forge-tiny", num_labels=2, encoder_mixer=mixer)
    problems = unsupported_modules(ForgeForSequenceClassification(config))
    assert any(name in p and "mixer" in p for p in problems)
