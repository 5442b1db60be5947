"""hub_upload.py: the pre-flight names every broken piece; the upload sends exactly the model files, and the
token never shows. Only the network boundary (huggingface_hub.HfApi) is faked."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from hub_folders import build_folders, load_hub_upload

pytestmark = pytest.mark.xdist_group("forge_hub_folders")

FAKE_TOKEN = "hf_fakeUploadToken0123456789abcdef"
EXPECTED_FILES = [
    "README.md", "config.json", "configuration_forge.py", "generation_config.json", "generation_forge.py", "merges.txt",
    "mixers_forge.py",
    "model.safetensors", "modeling_forge.py", "pipeline_forge.py", "tokenization_forge.py",
    "tokenization_forge_fast.py", "tokenizer.json", "tokenizer_config.json", "vocab.json",
]


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    return build_folders(tmp_path_factory.mktemp("forge_folders"))


@pytest.fixture(scope="module")
def hub_upload():
    return load_hub_upload()


@pytest.fixture()
def good(folders, tmp_path):
    """A copy of a finished summarization folder, with what recipes leave around it."""
    folder = tmp_path / "forge-sum"
    shutil.copytree(folders["summarization"], folder)
    (folder / "checkpoint-4").mkdir()
    (folder / "checkpoint-4" / "optimizer.pt").write_bytes(b"not uploaded")
    (folder / "runs").mkdir()
    (folder / ".forge-save-leftover").write_text("hidden files stay local")
    return folder


class FakeHub:
    """Records what would have gone over the network."""

    def __init__(self, monkeypatch, fail_with: str | None = None):
        import huggingface_hub

        self.calls: list[tuple[str, dict]] = []
        self.sent: dict[str, bytes] = {}
        hub = self

        def create_repo(api, repo_id, **kwargs):
            hub.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

        def create_branch(api, repo_id, **kwargs):
            hub.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

        def upload_folder(api, **kwargs):
            from pathlib import Path

            hub.calls.append(("upload_folder", kwargs))
            if fail_with:
                raise RuntimeError(fail_with)
            root = Path(kwargs["folder_path"])
            hub.sent = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
            return "https://huggingface.co/me/forge-sum/commit/abc123"

        for name, fn in (("create_repo", create_repo), ("create_branch", create_branch),
                         ("upload_folder", upload_folder)):
            monkeypatch.setattr(huggingface_hub.HfApi, name, fn)


def test_static_preflight_passes_on_a_good_folder(hub_upload, good):
    assert hub_upload.preflight(good, load_check=False) == ([], None)
    assert hub_upload.upload_files(good) == EXPECTED_FILES


@pytest.mark.parametrize(
    "breakage, expected",
    [
        ("missing_code_file", [r"code file modeling_forge\.py is missing"]),
        ("bin_weights", [r"pytorch_model\.bin is a pickle file"]),
        ("only_bin_weights", [r"pytorch_model\.bin is a pickle file", r"weights are missing: no model\.safetensors"]),
        ("missing_tokenizer", [r"tokenizer file tokenizer\.json is missing"]),
        ("wrong_auto_map", [r"auto_map\['AutoModelForSeq2SeqLM'\] is 'modeling_forge\.ForgeForQuestionAnswering'"]),
        ("missing_head", [r"auto_map lacks AutoModelForTokenClassification"]),
        ("missing_card", [r"model card README\.md is missing"]),
        ("corrupt_weights", [r"model\.safetensors is not a readable safetensors file"]),
        ("token_in_file", [r"notes\.txt contains what looks like a Hugging Face token"]),
        ("tokenizer_backend_class", [r"tokenizer_class is 'TokenizersBackend'"]),
        ("symlink_out_of_folder", [r"notes\.txt is a symlink to /etc/passwd, outside the folder"]),
        ("symlinked_folder_out_of_folder", [r"extra is a symlink to /etc, outside the folder"]),
        ("relative_symlink_escape", [r"vocab\.json is a symlink to .*outside\.json, outside the folder"]),
        ("fifo", [r"weights\.fifo is not a regular file or folder"]),
    ],
)
def test_preflight_names_each_broken_piece(hub_upload, good, breakage, expected):
    config_path = good / "config.json"
    config = json.loads(config_path.read_text())
    if breakage == "missing_code_file":
        (good / "modeling_forge.py").unlink()
    elif breakage in ("bin_weights", "only_bin_weights"):
        (good / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
        if breakage == "only_bin_weights":
            (good / "model.safetensors").unlink()
    elif breakage == "missing_tokenizer":
        (good / "tokenizer.json").unlink()
    elif breakage == "wrong_auto_map":
        config["auto_map"]["AutoModelForSeq2SeqLM"] = "modeling_forge.ForgeForQuestionAnswering"
    elif breakage == "missing_head":
        del config["auto_map"]["AutoModelForTokenClassification"]
    elif breakage == "missing_card":
        (good / "README.md").unlink()
    elif breakage == "corrupt_weights":
        data = (good / "model.safetensors").read_bytes()
        (good / "model.safetensors").write_bytes(data[: len(data) // 3])
    elif breakage == "token_in_file":
        (good / "notes.txt").write_text(f"login with {FAKE_TOKEN}")
    elif breakage == "symlink_out_of_folder":
        (good / "notes.txt").symlink_to("/etc/passwd")
    elif breakage == "symlinked_folder_out_of_folder":
        (good / "extra").symlink_to("/etc", target_is_directory=True)
    elif breakage == "relative_symlink_escape":
        (good.parent / "outside.json").write_text((good / "vocab.json").read_text())
        (good / "vocab.json").unlink()
        (good / "vocab.json").symlink_to("../outside.json")
    elif breakage == "fifo":
        os.mkfifo(good / "weights.fifo")
    elif breakage == "tokenizer_backend_class":
        tok_config = json.loads((good / "tokenizer_config.json").read_text())
        tok_config["tokenizer_class"] = "TokenizersBackend"
        (good / "tokenizer_config.json").write_text(json.dumps(tok_config))
    config_path.write_text(json.dumps(config))
    problems, report = hub_upload.preflight(good)  # the load check is skipped once a static check fails
    assert report is None
    assert len(problems) == len(expected), problems  # each breakage named once, nothing else blamed
    for pattern in expected:
        assert any(re.search(pattern, p) for p in problems), (pattern, problems)
    assert not any(FAKE_TOKEN in p for p in problems)


def test_symlinks_inside_the_folder_pass(hub_upload, good):
    (good / "vocab.json").rename(good / "checkpoint-4" / "vocab.json")
    (good / "vocab.json").symlink_to("checkpoint-4/vocab.json")  # stays inside the folder
    assert hub_upload.preflight(good, load_check=False) == ([], None)


def test_load_check_catches_code_that_breaks_only_when_loaded(hub_upload, good):
    with open(good / "modeling_forge.py", "a", encoding="utf-8") as f:
        f.write("\nraise RuntimeError('broken on purpose')\n")
    problems, _ = hub_upload.preflight(good)
    assert len(problems) == 1, problems
    problem = problems[0]
    assert "does not load in a fresh process" in problem and "broken on purpose" in problem


def test_upload_sends_exactly_the_model_files_and_never_the_token(hub_upload, good, monkeypatch, capfd):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    hub = FakeHub(monkeypatch)
    readme_before = (good / "README.md").read_text()
    status = hub_upload.main([str(good), "--repo-id", "me/forge-sum", "--private", "--revision", "dev",
                              "--commit-message", "first upload"])
    out, err = capfd.readouterr()
    assert status == 0, err
    assert "loads without Forge as ForgeForConditionalGeneration; pipeline summarization runs" in out
    assert [name for name, _ in hub.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert hub.calls[0][1] == {"repo_id": "me/forge-sum", "private": True, "exist_ok": True, "repo_type": "model"}
    upload = hub.calls[2][1]
    assert (upload["repo_id"], upload["revision"], upload["commit_message"]) == ("me/forge-sum", "dev", "first upload")
    assert sorted(hub.sent) == EXPECTED_FILES  # no checkpoints, logs, hidden files
    assert 'model_id = "me/forge-sum"' in hub.sent["README.md"].decode()  # the snippet points at the repo
    assert (good / "README.md").read_text() == readme_before  # ... without touching the user's card
    for text in [out, err] + [content.decode("utf-8", "replace") for content in hub.sent.values()]:
        assert FAKE_TOKEN not in text
    assert not any(FAKE_TOKEN in p.read_text(errors="replace") for p in good.rglob("*") if p.is_file())


def test_dry_run_uploads_nothing(hub_upload, good, monkeypatch, capfd):
    monkeypatch.setattr(hub_upload, "check_loads", lambda folder, problems: {"model_class": "X", "task": "summarization"})
    hub = FakeHub(monkeypatch)
    assert hub_upload.main([str(good), "--repo-id", "me/forge-sum", "--dry-run"]) == 0
    assert hub.calls == []
    assert "Dry run: nothing uploaded." in capfd.readouterr().out


def test_network_errors_are_reported_without_the_token(hub_upload, good, monkeypatch, capfd):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setattr(hub_upload, "check_loads", lambda folder, problems: {"model_class": "X", "task": "summarization"})
    FakeHub(monkeypatch, fail_with=f"401 Unauthorized for token {FAKE_TOKEN} (Authorization: Bearer {FAKE_TOKEN})")
    assert hub_upload.main([str(good), "--repo-id", "me/forge-sum"]) == 1
    out, err = capfd.readouterr()
    assert "upload to me/forge-sum failed" in err and "401 Unauthorized" in err and "***" in err
    assert FAKE_TOKEN not in out + err


def test_refuses_broken_folders_and_bad_repo_ids(hub_upload, good, monkeypatch, capfd):
    hub = FakeHub(monkeypatch)
    (good / "tokenizer.json").unlink()
    (good / "modeling_forge.py").unlink()
    assert hub_upload.main([str(good), "--repo-id", "me/forge-sum"]) == 1
    err = capfd.readouterr().err
    assert "2 problem(s)" in err and "tokenizer.json" in err and "modeling_forge.py" in err
    assert hub_upload.main([str(good), "--repo-id", "not a repo"]) == 2
    assert hub.calls == []


def test_no_token_is_a_clear_error(hub_upload, good, monkeypatch, capfd):
    monkeypatch.setattr(hub_upload, "check_loads", lambda folder, problems: {"model_class": "X", "task": "summarization"})
    monkeypatch.setattr(hub_upload, "known_token_values", lambda: [])
    hub = FakeHub(monkeypatch)
    assert hub_upload.main([str(good), "--repo-id", "me/forge-sum"]) == 1
    assert "no Hugging Face token found" in capfd.readouterr().err
    assert hub.calls == []
