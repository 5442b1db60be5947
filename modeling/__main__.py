"""`python -m modeling`: print the parameter count of each size preset (the table quoted in README)."""

from . import PRESETS, preset_parameter_counts


def main() -> None:
    """Print a Markdown table: preset, shape, parameters."""
    print("| preset | d_model | layers (enc+dec) | heads | ffn | vocab | parameters |")
    print("|---|---|---|---|---|---|---|")
    for name, count in preset_parameter_counts().items():
        p = PRESETS[name]
        print(
            f"| {name} | {p['d_model']} | {p['encoder_layers']}+{p['decoder_layers']} | {p['encoder_attention_heads']} "
            f"| {p['encoder_ffn_dim']} | {p['vocab_size']} | {count / 1e6:.1f}M |"
        )


if __name__ == "__main__":
    main()
