"""Cross-attention heat map of a trained Forge seq2seq folder: which source tokens each generated token looked at.

    python bench/attention_map.py outputs/translation "Ein Mann fährt Fahrrad." --output map.png
    python bench/attention_map.py outputs/translation "Ein Mann fährt Fahrrad." --layer all --output grid.png

The folder's own generation settings translate (or summarise) the sentence; one more forward pass with the generated
tokens as decoder input and ``output_attentions=True`` (eager attention: the fused kernels compute no weights) gives
the cross-attention of every decoder layer, ``(heads, generated, source)``. Row ``i`` is the step that produced
generated token ``i``. The picture shows one layer averaged over its heads, or every layer side by side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the checkout

import modeling  # noqa: E402,F401 - registers Forge with the Auto classes
import tokenization  # noqa: E402,F401
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer  # noqa: E402


def cross_attention(
    folder: str | Path, source: str, max_new_tokens: int | None = None, num_beams: int | None = None, prefix: str = ""
) -> tuple[list[str], list[str], torch.Tensor]:
    """Source tokens, generated tokens, and cross-attention weights ``(layers, heads, generated, source)``."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, attn_implementation="eager").eval()
    inputs = tokenizer(prefix + source, return_tensors="pt")
    settings = {}  # the folder's generation config, unless overridden
    if max_new_tokens is not None:
        settings["max_new_tokens"] = max_new_tokens
    if num_beams is not None:
        settings["num_beams"] = num_beams
    with torch.no_grad():
        generated = model.generate(**inputs, **settings)[0]  # decoder start token first
        outputs = model(**inputs, decoder_input_ids=generated[None, :-1], output_attentions=True)
    weights = torch.stack([layer[0] for layer in outputs.cross_attentions])  # (layers, heads, generated, source)

    def pieces(ids: torch.Tensor) -> list[str]:
        # One token at a time, as the reader sees it (byte-level pieces decoded, the word-start space dropped).
        return [tokenizer.decode([int(i)]).strip() or repr(tokenizer.decode([int(i)])) for i in ids]

    return pieces(inputs["input_ids"][0]), pieces(generated[1:]), weights


def draw(
    source_tokens: list[str], target_tokens: list[str], weights: torch.Tensor, layer: str, output: Path, title: str
) -> Path:
    """Write the PNG: one heat map (a layer, mean over heads) or a row of them (``layer="all"``)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    layers = list(range(weights.shape[0])) if layer == "all" else [int(layer) % weights.shape[0]]
    cell = 0.32  # inches per token, so that labels stay readable for sentences of any length
    width = max(3.0, cell * len(source_tokens) + 1.5)
    height = max(2.5, cell * len(target_tokens) + 1.5)
    figure, axes = plt.subplots(1, len(layers), figsize=(width * len(layers), height), squeeze=False)
    for ax, index in zip(axes[0], layers):
        image = ax.imshow(weights[index].mean(dim=0).float().numpy(), cmap="viridis", vmin=0.0, aspect="auto")
        ax.set_xticks(range(len(source_tokens)), source_tokens, rotation=90)
        ax.set_yticks(range(len(target_tokens)), target_tokens)
        ax.set_xlabel("source token")
        ax.set_ylabel("generated token")
        ax.set_title(f"layer {index + 1}/{weights.shape[0]}, mean of {weights.shape[1]} heads", fontsize=10)
        figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return output


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="A trained Forge seq2seq folder (translation or summarization recipe output).")
    parser.add_argument("source", help="The source sentence.")
    parser.add_argument("--output", default="attention_map.png", help="PNG to write.")
    parser.add_argument("--layer", default="-1", help="Decoder layer to show (0-based, negative from the end), or 'all'.")
    parser.add_argument("--max_new_tokens", type=int, default=None, help="Default: the folder's generation config.")
    parser.add_argument("--num_beams", type=int, default=None, help="Default: the folder's generation config.")
    parser.add_argument("--source_prefix", default="", help="Prefix the model was trained with, if any.")
    args = parser.parse_args(argv)
    if args.layer != "all":
        try:
            int(args.layer)
        except ValueError:
            parser.error(f"--layer must be an integer or 'all', got {args.layer!r}")
    if not (Path(args.folder) / "config.json").is_file():
        parser.error(f"{args.folder} is not a model folder (no config.json); pass the output_dir of a seq2seq recipe")
    source_tokens, target_tokens, weights = cross_attention(
        args.folder, args.source, args.max_new_tokens, args.num_beams, args.source_prefix
    )
    title = f"{Path(args.folder).name}: cross-attention, {args.source!r}"
    path = draw(source_tokens, target_tokens, weights, args.layer, Path(args.output), title)
    print(f"{' '.join(target_tokens)}\nwrote {path}")
    return path


if __name__ == "__main__":
    main()
