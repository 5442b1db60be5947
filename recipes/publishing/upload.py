"""Check a Forge model folder, then publish it to the Hugging Face Hub.

    python hub_upload.py FOLDER --repo-id USER/NAME [--private] [--revision REV] [--commit-message MSG] [--dry-run]
    forge-hub-upload FOLDER --repo-id USER/NAME ...     # the same command, installed by pip

Nothing leaves the machine until the pre-flight passes:

1. static checks: ``config.json`` with an ``auto_map`` entry for every Forge head (each pointing at a class
   that exists in the folder's code), the code files, safetensors weights and no pickle files, the tokenizer
   files (fast and slow), a model card (README.md) that huggingface_hub can read, and no token in any file;
2. a load check: the folder is loaded in a fresh Python process where Forge is NOT importable, with
   ``trust_remote_code=True`` and ``HF_HUB_OFFLINE=1``, runs one forward pass and its pipeline.

Every problem found is listed (not only the first), and the exit status is 1. Then the repository is
created (``exist_ok``) and the folder's top-level files are uploaded with huggingface_hub. Sub-folders
(Trainer ``checkpoint-*``, ``runs/`` logs) and hidden files stay local. The token comes from the usual
Hugging Face sources (``HF_TOKEN``, ``hf auth login``); it is never printed, written, or passed to the
load check, and it is scrubbed from any error message.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import site
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from .cards import CARD_NAME, known_token_values, redact_secrets
from .export import (
    CODE_FILES,
    MODEL_AUTO_MAP,
    PICKLE_SUFFIXES,
    TOKENIZER_AUTO_MAP,
    TOKENIZER_FILES,
)

LOAD_CHECK_TIMEOUT_S = 600
TEXT_SUFFIXES = (".json", ".md", ".py", ".txt", ".yaml", ".yml", ".jinja", ".cfg")
_MODEL_ID_LINE = re.compile(r'^(model_id = )"[^"\n]*"', re.MULTILINE)



def sample_inputs() -> dict[str, object]:
    """What the load check feeds each pipeline task: the ``sample_input`` of every registered task."""
    from ..core.registry import task_specs

    return {spec.pipeline_task: spec.sample_input for spec in task_specs().values() if spec.sample_input is not None}


def __getattr__(name: str) -> object:
    """``SAMPLE_INPUTS``: read from the task registry when first asked for."""
    if name == "SAMPLE_INPUTS":
        return sample_inputs()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Forge's import names: the installed namespace, and the top-level names a checkout (and Forge 0.1.0's install) uses.
FORGE_NAMES = ("forge", "modeling", "tokenization", "recipes", "model_cards")

# Put in front of every script run in a Python without Forge. `-S` keeps the .pth files of an editable install out,
# but a regular install (`pip install .`, a wheel) puts `forge/` into the very site-packages the fresh process needs
# for torch and transformers, and one folder of a path entry cannot be left out. So Forge's names are refused at
# import, as in a Python that never installed Forge; remote code is imported as `transformers_modules.*`, never
# under these names, so nothing a Hub user would have is hidden.
HIDE_FORGE = f'''
import sys as _sys

class _NoForge:
    """Import finder that makes Forge's packages absent in this process."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in {FORGE_NAMES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (Forge is hidden in this process)", name=name)
        return None

_sys.meta_path.insert(0, _NoForge)
'''

# Runs in the fresh process: load the folder the way a user without Forge would, and use it once.
LOAD_CHECK_SCRIPT = r'''
import json, sys
folder, task, samples = sys.argv[1], sys.argv[2] or None, json.loads(sys.argv[3])
forge_importable = False
for name in ("forge.modeling", "modeling"):
    try:
        __import__(name)
        forge_importable = True
    except ModuleNotFoundError as error:  # absent (the point of the check); a broken Forge must still fail loudly
        if error.name not in (name, name.split(".")[0]):
            raise
import torch
import transformers
from transformers import AutoConfig, AutoTokenizer, pipeline

config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
head = config.architectures[0]
auto_name = {ref.split(".")[-1]: auto for auto, ref in config.auto_map.items()}[head]
model = getattr(transformers, auto_name).from_pretrained(folder, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
batch = tokenizer(["Hello world.", "A second, longer sentence to pad the first."], return_tensors="pt", padding=True)
with torch.no_grad():
    if auto_name == "AutoModelForSeq2SeqLM":
        start = torch.full((2, 1), config.decoder_start_token_id)
        outputs = model(**batch, decoder_input_ids=start)
        model.generate(**batch, max_new_tokens=3)
    else:
        outputs = model(**batch)
tensors = [v for v in outputs.values() if isinstance(v, torch.Tensor)]
if not tensors or not all(torch.isfinite(t).all() for t in tensors):
    raise SystemExit("forward pass produced no outputs or non-finite values")
result = None
if task is not None:
    pipe = pipeline(task, model=folder, trust_remote_code=True)
    sample = samples[task]
    result = pipe(**sample) if isinstance(sample, dict) else pipe(sample)
print(json.dumps({"forge_importable": forge_importable, "model_class": type(model).__name__,
                  "tokenizer_class": type(tokenizer).__name__, "task": task, "pipeline_output": result},
                 default=str))
'''


# ----------------------------------------------------------------------------------------------------------
# A Python without Forge
# ----------------------------------------------------------------------------------------------------------


def python_without_forge(workdir: str | os.PathLike) -> tuple[list[str], dict[str, str]]:
    """Command prefix and environment for a Python that sees the installed packages but not Forge.

    ``-S`` skips ``site``, so no ``.pth`` file runs (the editable install of Forge is one); the
    site-packages folders come back through ``PYTHONPATH`` (a virtual environment's and, with
    ``--system-site-packages``, the base Python's). Offline, no token, and a private module cache for the
    remote code. Scripts run with :func:`run_python_without_forge` also get :data:`HIDE_FORGE`.
    """
    paths = sysconfig.get_paths()
    site_dirs = list(dict.fromkeys([paths["purelib"], paths["platlib"], *site.getsitepackages()]))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(
        PYTHONPATH=os.pathsep.join(site_dirs),
        PYTHONNOUSERSITE="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TOKENIZERS_PARALLELISM="false",
        HF_MODULES_CACHE=str(Path(workdir) / "hf_modules"),
        HF_TOKEN_PATH=str(Path(workdir) / "no-token"),  # never read the login cache
    )
    return [sys.executable, "-S"], env


def run_python_without_forge(code: str, *args: str, timeout: float = LOAD_CHECK_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run ``code`` (with ``args``) in a fresh Python without Forge, cwd and script in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="forge-fresh-") as workdir:
        script = Path(workdir) / "check.py"
        script.write_text(HIDE_FORGE + code, encoding="utf-8")
        prefix, env = python_without_forge(workdir)
        return subprocess.run(
            [*prefix, str(script), *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
        )


# ----------------------------------------------------------------------------------------------------------
# Pre-flight
# ----------------------------------------------------------------------------------------------------------


def upload_files(folder: Path) -> list[str]:
    """The files that go to the Hub: the folder's top-level, non-hidden files, sorted."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def check_entry_types(folder: Path, problems: list[str]) -> None:
    """Only regular files and folders inside ``folder``: a symlink that leaves it (``config.json -> /etc/passwd``)
    would upload the target's content, and a fifo, socket or device is no model file (reading a fifo blocks)."""
    root = folder.resolve()
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue  # hidden entries are never uploaded
        if entry.is_symlink():
            try:
                target = entry.resolve()
            except (OSError, RuntimeError):  # a symlink loop
                problems.append(f"{entry.name} is a symlink that does not resolve (a loop): remove it")
                continue
            if target != root and root not in target.parents:
                problems.append(f"{entry.name} is a symlink to {target}, outside the folder: replace it by a copy of the file")
                continue
        mode = entry.stat().st_mode if entry.exists() else None
        if mode is None:
            problems.append(f"{entry.name} is a broken symlink: remove it")
        elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            problems.append(f"{entry.name} is not a regular file or folder (a fifo, socket or device): remove it")


def _classes_in(path: Path) -> set[str]:
    try:
        return set(re.findall(r"^class (\w+)\b", path.read_text(encoding="utf-8"), re.MULTILINE))
    except OSError:
        return set()


def _check_ref(folder: Path, where: str, ref: str | None) -> str | None:
    """``module.Class`` must name a class defined in ``module.py`` inside the folder."""
    if not isinstance(ref, str) or ref.count(".") != 1:
        return f"{where} is {ref!r}; expected 'module.Class' naming a class in the folder's code"
    module, cls = ref.split(".")
    if not (folder / f"{module}.py").is_file():
        return f"{where} points at {module}.py, which is not in the folder"
    if cls not in _classes_in(folder / f"{module}.py"):
        return f"{where} names class {cls}, which {module}.py does not define"
    return None


def _load_json(folder: Path, name: str, problems: list[str]) -> dict | None:
    path = folder / name
    if not path.is_file():
        problems.append(f"{name} is missing")
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        problems.append(f"{name} is not valid JSON ({err})")
        return None


def check_config(folder: Path, problems: list[str]) -> None:
    """config.json: a Forge config with auto_map for every head, and valid custom pipelines."""
    config = _load_json(folder, "config.json", problems)
    if config is None:
        return
    if config.get("model_type") != "forge":
        problems.append(f"config.json has model_type {config.get('model_type')!r}; a Forge folder says 'forge'")
    auto_map = config.get("auto_map")
    if not isinstance(auto_map, dict):
        problems.append("config.json has no auto_map: save the model with recipes.publishing.export.save_hub_folder")
        auto_map = {}
    for auto_class, expected in MODEL_AUTO_MAP.items():
        actual = auto_map.get(auto_class)
        if actual is None:
            problems.append(f"config.json auto_map lacks {auto_class} (expected {expected!r})")
        elif actual != expected:
            problems.append(f"config.json auto_map[{auto_class!r}] is {actual!r}, expected {expected!r}")
        else:
            error = _check_ref(folder, f"config.json auto_map[{auto_class!r}]", actual)
            if error and (folder / f"{expected.split('.')[0]}.py").is_file():
                problems.append(error)
    architectures = config.get("architectures") or []
    heads = {ref.split(".")[-1] for ref in MODEL_AUTO_MAP.values()}
    if not architectures or architectures[0] not in heads:
        problems.append(f"config.json architectures is {architectures!r}; expected one of {sorted(heads)}")
    for task, info in (config.get("custom_pipelines") or {}).items():
        error = _check_ref(folder, f"config.json custom_pipelines[{task!r}].impl", (info or {}).get("impl"))
        if error and (folder / "pipeline_forge.py").is_file():
            problems.append(error)
        pt = (info or {}).get("pt")
        pt = [pt] if isinstance(pt, str) else list(pt or [])
        if not pt or any(name not in MODEL_AUTO_MAP for name in pt):
            problems.append(f"config.json custom_pipelines[{task!r}].pt is {pt!r}; expected Auto classes from auto_map")


def check_code_files(folder: Path, problems: list[str]) -> None:
    """The .py files remote code needs."""
    for name in CODE_FILES:
        if not (folder / name).is_file():
            problems.append(f"code file {name} is missing (copy it with recipes.publishing.export.copy_code_files)")


def check_weights(folder: Path, files: list[str], problems: list[str]) -> None:
    """Weights in safetensors (readable), and not a single pickle file."""
    for name in files:
        if name.endswith(PICKLE_SUFFIXES):
            problems.append(
                f"{name} is a pickle file (unpickling can run arbitrary code): delete it or move it out of the "
                "folder; Forge weights belong in model.safetensors"
            )
    shards: list[str] = []
    if (folder / "model.safetensors.index.json").is_file():
        index = _load_json(folder, "model.safetensors.index.json", problems) or {}
        shards = sorted(set((index.get("weight_map") or {}).values()))
        for shard in shards:
            if not (folder / shard).is_file():
                problems.append(f"weights shard {shard} (listed in model.safetensors.index.json) is missing")
    elif (folder / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        problems.append("weights are missing: no model.safetensors (or model.safetensors.index.json)")
    from safetensors import safe_open

    for shard in shards:
        if (folder / shard).is_file():
            try:
                with safe_open(folder / shard, framework="pt") as f:
                    if not list(f.keys()):
                        problems.append(f"{shard} holds no tensors")
            except Exception as err:  # a truncated or corrupt file: name it, whatever the exact error
                problems.append(f"{shard} is not a readable safetensors file ({err})")


def check_tokenizer(folder: Path, problems: list[str]) -> None:
    """tokenizer.json (fast), vocab.json + merges.txt (slow), tokenizer_config.json naming the Forge classes."""
    for name in TOKENIZER_FILES:
        if name != "tokenizer_config.json" and not (folder / name).is_file():
            problems.append(f"tokenizer file {name} is missing (save the tokenizer with save_hub_folder)")
    config = _load_json(folder, "tokenizer_config.json", problems)
    if config is None:
        return
    expected = TOKENIZER_AUTO_MAP["AutoTokenizer"]
    actual = (config.get("auto_map") or {}).get("AutoTokenizer")
    if actual is None or list(actual) != list(expected):
        problems.append(f"tokenizer_config.json auto_map['AutoTokenizer'] is {actual!r}, expected {expected!r}")
    if config.get("tokenizer_class") in (None, "TokenizersBackend", "PreTrainedTokenizerFast"):
        problems.append(
            f"tokenizer_config.json tokenizer_class is {config.get('tokenizer_class')!r}; expected 'ForgeTokenizerFast'"
        )


def check_card(folder: Path, problems: list[str]) -> None:
    """README.md: a model card with metadata that huggingface_hub reads."""
    path = folder / CARD_NAME
    if not path.is_file():
        problems.append(f"model card {CARD_NAME} is missing (write it with recipes.publishing.cards.write_model_card)")
        return
    from huggingface_hub import ModelCard

    try:
        card = ModelCard.load(path)
    except Exception as err:
        problems.append(f"model card {CARD_NAME} does not load with huggingface_hub ({err})")
        return
    for field in ("license", "pipeline_tag"):
        if not getattr(card.data, field, None):
            problems.append(f"model card {CARD_NAME} metadata lacks {field}")


def check_secrets(folder: Path, files: list[str], problems: list[str]) -> None:
    """No file that would be uploaded may contain a token (found by pattern or by the value in use)."""
    for name in files:
        if not name.endswith(TEXT_SUFFIXES):
            continue
        try:
            text = (folder / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if redact_secrets(text) != text:
            problems.append(f"{name} contains what looks like a Hugging Face token: remove it before uploading")


def pipeline_task_of(folder: Path) -> str | None:
    """The pipeline a folder serves: its ``custom_pipelines`` entry, else its card's ``pipeline_tag`` (a
    transformers pipeline such as text-classification or zero-shot-classification); None when neither says."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    custom = list(config.get("custom_pipelines") or {})
    if custom:
        return custom[0]
    from huggingface_hub import ModelCard

    tag = ModelCard.load(folder / CARD_NAME).data.pipeline_tag
    return tag if tag in sample_inputs() else None


def check_loads(folder: Path, problems: list[str]) -> dict | None:
    """Load the folder in a fresh process without Forge; run a forward pass and its pipeline."""
    task = pipeline_task_of(folder)
    try:
        proc = run_python_without_forge(
            LOAD_CHECK_SCRIPT, str(folder.resolve()), task or "", json.dumps(sample_inputs())
        )
    except subprocess.TimeoutExpired:
        problems.append(f"loading the folder in a fresh process took longer than {LOAD_CHECK_TIMEOUT_S} s")
        return None
    if proc.returncode != 0:
        tail = "\n    ".join((proc.stderr or proc.stdout).strip().splitlines()[-12:])
        problems.append(
            "the folder does not load in a fresh process with trust_remote_code=True (Forge not installed):\n    "
            + redact_secrets(tail)
        )
        return None
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if report.get("forge_importable"):
        problems.append("the load check could import Forge, so it proves nothing: check PYTHONPATH / .pth files")
    return report


def preflight(folder: str | os.PathLike, *, load_check: bool = True) -> tuple[list[str], dict | None]:
    """All problems that keep ``folder`` from working for a Hub user (empty list: ready), and the load report.

    The load check runs only when the static checks pass (its error would repeat theirs).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder"], None
    problems: list[str] = []
    check_entry_types(folder, problems)
    if problems:  # reading a fifo would block, and a link's target is not ours to read
        return problems, None
    files = upload_files(folder)
    check_config(folder, problems)
    check_code_files(folder, problems)
    check_weights(folder, files, problems)
    check_tokenizer(folder, problems)
    check_card(folder, problems)
    check_secrets(folder, files, problems)
    report = None
    if load_check and not problems:
        report = check_loads(folder, problems)
    return problems, report


# ----------------------------------------------------------------------------------------------------------
# Upload
# ----------------------------------------------------------------------------------------------------------


def _stage(folder: Path, files: list[str], staging: Path, repo_id: str) -> None:
    """Hard-link (or copy) the upload files into ``staging``; point the card's usage snippet at ``repo_id``."""
    for name in files:
        try:
            os.link(folder / name, staging / name)
        except OSError:
            shutil.copy2(folder / name, staging / name)
    card = staging / CARD_NAME
    if card.is_file():
        text = card.read_text(encoding="utf-8")
        updated = _MODEL_ID_LINE.sub(lambda m: f'{m.group(1)}"{repo_id}"', text)
        if updated != text:
            card.unlink()  # a hard link: never write through it into the user's folder
            card.write_text(updated, encoding="utf-8")


def upload(folder: Path, repo_id: str, *, private: bool = False, revision: str | None = None,
           commit_message: str | None = None) -> str:
    """Create ``repo_id`` (exist_ok) and upload the folder's top-level files; returns the commit URL."""
    from huggingface_hub import HfApi

    files = upload_files(folder)
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision is not None and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
    with tempfile.TemporaryDirectory(prefix=".forge-upload-", dir=folder.parent) as staging:
        _stage(folder, files, Path(staging), repo_id)
        info = api.upload_folder(
            folder_path=staging,
            repo_id=repo_id,
            repo_type="model",
            revision=revision,
            commit_message=commit_message or f"Upload Forge model ({len(files)} files)",
        )
    return str(getattr(info, "commit_url", info))


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Check a Forge model folder, then upload it to the Hugging Face Hub.")
    parser.add_argument("folder", type=Path, help="the saved model folder (save_hub_folder + write_model_card)")
    parser.add_argument("--repo-id", required=True, help="target repository, USER/NAME or ORG/NAME")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", default=None, help="branch to push to (created if missing; default main)")
    parser.add_argument("--commit-message", default=None, help="commit message on the Hub")
    parser.add_argument("--dry-run", action="store_true", help="run the pre-flight and list the files; upload nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parse_args(argv)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", args.repo_id):
        print(f"error: --repo-id must look like USER/NAME, got {args.repo_id!r}", file=sys.stderr)
        return 2
    folder = args.folder
    print(f"Pre-flight checks on {folder} ...")
    problems, report = preflight(folder)
    if problems:
        print(f"{folder} is not ready to upload ({len(problems)} problem(s)):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    files = upload_files(folder)
    print(f"OK: loads without Forge as {report['model_class']}; pipeline {report['task'] or '(none)'} runs.")
    print(f"Files for {args.repo_id}: {', '.join(files)}")
    if args.dry_run:
        print("Dry run: nothing uploaded.")
        return 0
    if not known_token_values():
        print("error: no Hugging Face token found: run `hf auth login` or set HF_TOKEN.", file=sys.stderr)
        return 1
    try:
        url = upload(folder, args.repo_id, private=args.private, revision=args.revision,
                     commit_message=args.commit_message)
    except Exception as err:  # network, permissions, quota: report without leaking the token
        print(f"error: upload to {args.repo_id} failed: {redact_secrets(f'{type(err).__name__}: {err}')}",
              file=sys.stderr)
        return 1
    print(f"Uploaded {len(files)} files to {args.repo_id}: {redact_secrets(url)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
