"""Tiny Forge configs and inputs shared by the model tests (the transformers "ModelTester" pattern)."""

from __future__ import annotations

import torch

from modeling import ForgeConfig

VOCAB = 99
PAD, BOS, EOS = 0, 1, 2


def tiny_config(**overrides) -> ForgeConfig:
    """Width 32, 2+2 layers, 4 heads (head_dim 8), vocab 99; dropout off so runs are comparable."""
    kwargs = dict(
        vocab_size=VOCAB,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        dropout=0.0,
        num_labels=3,
    )
    kwargs.update(overrides)
    return ForgeConfig(**kwargs)


def source_batch(batch: int = 3, length: int = 9, padded: bool = True, seed: int = 0) -> dict[str, torch.Tensor]:
    """Encoder inputs ending in EOS; with ``padded`` every row after the first is right-padded a bit more."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, VOCAB, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(batch):
        n = length - 2 * row if padded else length
        input_ids[row, n - 1] = EOS
        input_ids[row, n:] = PAD
        attention_mask[row, n:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def target_ids(batch: int = 3, length: int = 6, seed: int = 1) -> torch.Tensor:
    """Random target tokens (no padding), for labels or decoder inputs."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(5, VOCAB, (batch, length), generator=generator)
