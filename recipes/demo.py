r"""Try Forge models in the browser: a local Gradio page with one tab per task folder.

    python -m recipes.demo outputs/main_job               # every task folder the main job wrote
    python -m recipes.demo outputs/main_job/qa --port 7861  # one folder

Text in, the pipeline's answer out (SRL spans and the QA answer highlighted; a length slider for translation
and summarization). The page is ``recipes/demo_app.py``, which needs only gradio and transformers; the same
file becomes a Hugging Face Space with :func:`write_space` (``save_hub_folder(..., space=...)`` calls it).
Needs the ``demo`` extra: ``pip install -e ".[demo]"``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

__all__ = ["SPACE_DIR", "SPACE_REQUIREMENTS", "write_space", "main"]

SPACE_DIR = "space"
# What the Space installs: the app's own imports, and what the folder's trust_remote_code files import.
SPACE_REQUIREMENTS = ("gradio>=5,<7", "transformers>=5.0,<6", "torch>=2.4", "tokenizers>=0.21", "numpy")


def write_space(model_dir: str | Path, model_id: Optional[str] = None) -> Path:
    """Write ``<model_dir>/space/``: ``app.py`` (the demo page), ``requirements.txt`` and the Space's README.

    ``model_id`` is the Hub repo the Space loads (upload the model there first, e.g. with hub_upload.py);
    without it the app loads ``model_dir`` itself (the folder above ``space/``), which is how it runs locally:
    ``python outputs/x/space/app.py``. Publish with
    ``huggingface-cli upload --repo-type space USER/NAME outputs/x/space``.
    """
    model_dir = Path(model_dir)
    space = model_dir / SPACE_DIR
    space.mkdir(parents=True, exist_ok=True)
    app = (Path(__file__).with_name("demo_app.py")).read_text(encoding="utf-8")
    default = repr(model_id) if model_id else 'str(Path(__file__).resolve().parent.parent)'
    app = app.replace(
        "root = os.environ.get(\"FORGE_MODEL\") or (sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parent))",
        f"root = os.environ.get(\"FORGE_MODEL\") or (sys.argv[1] if len(sys.argv) > 1 else {default})\n"
        "    if not Path(root).exists():  # a Hub repo id: fetch the folder (code files included) once\n"
        "        from huggingface_hub import snapshot_download\n\n"
        "        root = snapshot_download(root)",
    )
    (space / "app.py").write_text(app, encoding="utf-8")
    (space / "requirements.txt").write_text("\n".join(SPACE_REQUIREMENTS) + "\n", encoding="utf-8")
    front = ["---", f"title: {model_dir.name} (Forge demo)", "sdk: gradio", "app_file: app.py"]
    if model_id:
        front += ["models:", f"  - {model_id}"]
    (space / "README.md").write_text(
        "\n".join(front + ["---", "", f"Try the Forge model `{model_id or model_dir.name}` in the browser: "
                           "text in, the pipeline's answer out.", ""]),
        encoding="utf-8",
    )
    return space


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recipes.demo", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("path", help="a Forge model folder, or a folder of them (e.g. outputs/main_job)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: reachable from other machines)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also open a temporary public gradio.live link")
    args = parser.parse_args(argv)
    try:
        from .demo_app import build_app, find_task_folders
    except ImportError as error:
        raise SystemExit(f"error: the demo needs gradio ({error}); install it with: pip install -e \".[demo]\"") from None
    path = Path(args.path)
    if not path.is_dir():
        raise SystemExit(f"error: {path} is not a folder; pass a Forge model folder or a main-job output folder.")
    folders = find_task_folders(path)
    if not folders:
        raise SystemExit(f"error: no task folder in {path} (a folder whose config.json names its pipeline task).")
    import transformers

    transformers.utils.logging.disable_progress_bar()  # loading each folder's weights is instant
    print("Tabs: " + ", ".join(f"{task} ({folder})" for task, folder in folders), flush=True)
    app = build_app(folders)
    for attempt in range(3):
        try:
            app.launch(server_name=args.host, server_port=args.port, share=args.share)
            return
        except ValueError as error:
            # gradio probes its own URL with a 3-second timeout to detect Colab-like hosts; a busy machine can miss
            # it, and gradio then refuses to serve without a public link. The server is fine: close and retry.
            if "localhost is not accessible" not in str(error) or attempt == 2:
                raise
            app.close()


if __name__ == "__main__":
    main()
