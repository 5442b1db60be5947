"""Scrubbing personal data (recipes.privacy.pii, --scrub_pii): planted e-mail addresses, phone numbers, URLs, card and ID
numbers must not survive into the tokenizer vocabulary, the packed pretraining blocks or the model card, the report
counts them without their values, and text without personal data (Chinese included) passes through unchanged."""

import json

import pytest
import torch
from transformers import TrainerCallback

from recipes.privacy.pii import PiiScrubber
from recipe_helpers import SAMPLE_DIR, write_jsonl
from recipes import pretrain
from tokenization import train as tokenizer_train

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.xdist_group("privacy_pii")]

# Distinctive values, repeated so that without scrubbing BPE learns tokens from them.
PLANTED = {
    "EMAIL": "qzxvwmbt.kjhgfd@plughmail.com",
    "PHONE": "+44 20 7946 0777",
    "URL": "https://vxqzplm.example.org/secret/page",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "ID": "DE89 3704 0044 0532 0130 00",
}
FRAGMENTS = ("qzxvwmbt", "kjhgfd", "plughmail", "vxqzplm", "7946", "4111", "3704")


def _texts(n=60):
    rows = [json.loads(line)["text"] for line in (SAMPLE_DIR / "pretrain" / "train.jsonl").read_text().splitlines()]
    zh = [json.loads(line)["text"] for line in (SAMPLE_DIR / "pretrain_zh" / "train.jsonl").read_text().splitlines()]
    planted = [
        f"Write to {PLANTED['EMAIL']} or call {PLANTED['PHONE']}. Details: {PLANTED['URL']} . "
        f"Card {PLANTED['CREDIT_CARD']}, IBAN {PLANTED['ID']}."
        for _ in range(40)
    ] + [f"请联系{PLANTED['EMAIL']}获取资料，电话{PLANTED['PHONE']}。" for _ in range(20)]
    return rows[:n] + zh[:20] + planted


def test_each_type_is_replaced_and_clean_text_is_untouched():
    scrubber = PiiScrubber()
    for kind, value in PLANTED.items():
        text, counts = scrubber.scrub(f"Before {value} after.")
        assert text == f"Before <{kind}> after." and counts[kind] == 1
    text, counts = scrubber.scrub("请联系li.na@example.com获取资料，电话13812345678，身份证11010519491231002X。")
    assert text == "请联系<EMAIL>获取资料，电话<PHONE>，身份证<ID>。"
    assert counts == {"EMAIL": 1, "PHONE": 1, "URL": 0, "CREDIT_CARD": 0, "ID": 1, "IP": 0}
    # an e-mail address is one placeholder, not <URL>@<URL>; quotes around a URL stay
    assert scrubber.scrub("fetch 'http://myhost.com/v1/cats' now")[0] == "fetch '<URL>' now"
    assert scrubber.scrub("mail jane.doe@example.com now")[0] == "mail <EMAIL> now"
    clean = [json.loads(line)["text"] for line in (SAMPLE_DIR / "pretrain_zh" / "train.jsonl").read_text().splitlines()]
    clean += ["The meeting starts at 10:30 on 2024-05-17 in room 1204.", "It cost $1,234.56 including 19% tax.",
              "ISBN 978-3-16-148410-0 is printed on the back.", "模型在 2023 年发布，参数量为 1.3 亿。",
              # real-corpus false positives of plain Presidio: years as German phone numbers, sentence joins as URLs
              "The office ran from 1691 to 1694; the monk lived 344–413 CE.", "Her career spanned 1902-1943.She sang.",
              "Add the plates.Cu them thin, as M.Ph students do."]
    for line in clean:
        assert scrubber.scrub(line)[0] == line


def test_tokenizer_trainer_vocabulary_has_no_planted_values(tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"text": t} for t in _texts()])
    common = ["--train_file", str(corpus), "--vocab_size", "700", "--num_sentinels", "4", "--no_progress", "true"]

    def vocabulary(folder):
        return list(json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"])

    raw = tmp_path / "raw"
    tokenizer_train.main(common + ["--output_dir", str(raw)])
    assert any(f in tok for tok in vocabulary(raw) for f in FRAGMENTS)  # the check below can fail

    scrubbed = tmp_path / "scrubbed"
    tokenizer_train.main(common + ["--output_dir", str(scrubbed), "--scrub_pii", "true"])
    leaked = [tok for tok in vocabulary(scrubbed) if any(f in tok for f in FRAGMENTS)]
    assert not leaked
    report_text = (scrubbed / "pii_report.json").read_text()
    report = json.loads(report_text)
    assert report["replaced"]["EMAIL"] == 60 and report["replaced"]["PHONE"] == 60 and report["replaced"]["ID"] == 40
    assert report["replaced"]["URL"] == 40 and report["replaced"]["CREDIT_CARD"] == 40
    assert not any(value in report_text for value in PLANTED.values())


class _GrabBlocks(TrainerCallback):
    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        self.dataset = train_dataloader.dataset


def test_pretraining_blocks_tokenizer_and_card_have_no_planted_values(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": t} for t in _texts()])
    valid = write_jsonl(tmp_path / "valid.jsonl", [{"text": t} for t in _texts(5)[:5] + _texts()[-3:]])
    out = tmp_path / "out"
    grab = _GrabBlocks()
    torch.set_num_threads(1)
    pretrain.main([
        "--train_file", str(train), "--validation_file", str(valid), "--config_name", "forge-tiny",
        "--vocab_size", "700", "--num_sentinels", "8", "--block_size", "64", "--max_steps", "1",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--eval_strategy", "no",
        "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true", "--output_dir", str(out),
        "--scrub_pii", "true", "--dataloader_pin_memory", "false",
    ], callbacks=[grab])
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    blocks = [tokenizer.decode(list(row["input_ids"])) for row in grab.dataset]
    text = "".join(blocks)
    assert "<EMAIL>" in text and "<PHONE>" in text and "获取资料" in text
    assert not any(value in text for value in PLANTED.values()) and not any(f in text for f in FRAGMENTS)
    assert not [tok for tok in tokenizer.get_vocab() if any(f in tok for f in FRAGMENTS)]
    card = (out / "README.md").read_text()
    assert "## Personal data" in card and "EMAIL 60" in card
    assert not any(value in card for value in PLANTED.values())
    report = json.loads((out / "pii_report.json").read_text())
    assert report["train"]["replaced"]["EMAIL"] == 60 and report["validation"]["texts"] == 8


def test_streaming_with_scrub_pii_is_refused(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": t} for t in _texts(5)])
    with pytest.raises(ValueError, match="--scrub_pii with --streaming"):
        pretrain.main(["--train_file", str(train), "--config_name", "forge-tiny", "--streaming", "true",
                       "--max_steps", "1", "--report_to", "none", "--output_dir", str(tmp_path / "o"), "--scrub_pii", "true"])


def test_cli_scrubs_a_file_and_never_overwrites(tmp_path):
    from recipes.privacy import pii

    source = write_jsonl(tmp_path / "in.jsonl", [{"text": f"mail {PLANTED['EMAIL']}", "id": 1}, {"text": "你好，世界。", "id": 2}])
    target = tmp_path / "out.jsonl"
    report = pii.main(["--input", str(source), "--output", str(target)])
    rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert rows == [{"text": "mail <EMAIL>", "id": 1}, {"text": "你好，世界。", "id": 2}]
    assert report.replaced["EMAIL"] == 1 and (tmp_path / "out.jsonl.pii_report.json").is_file()
    with pytest.raises(SystemExit):
        pii.main(["--input", str(source), "--output", str(target)])
