"""BART's encoder with a per-token linear head: the BART control of the SRL recipe.

transformers has no ``BartForTokenClassification``. This is the smallest faithful one: BART's own embedding
and encoder (the same names, ``model.shared`` / ``model.encoder``, as in ``BartForConditionalGeneration``, so
it loads the encoder of any BART seq2seq checkpoint) -> dropout -> ``Linear(d_model, num_labels)``, the same
head as ``ForgeForTokenClassification``. It runs the encoder alone, as Forge's token head does (BART's
sequence-classification and QA heads also run the decoder).

This file imports only torch and transformers: it is copied into every saved folder, which then loads with
``AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True)`` on a machine without Forge.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModelForTokenClassification, BartConfig
from transformers.modeling_outputs import BaseModelOutput, TokenClassifierOutput
from transformers.models.bart.modeling_bart import BartEncoder, BartPreTrainedModel, BartScaledWordEmbedding


class BartEncoderModel(BartPreTrainedModel):
    """BART's shared embedding and encoder, without the decoder."""

    _tied_weights_keys = {"encoder.embed_tokens.weight": "shared.weight"}
    _keys_to_ignore_on_load_unexpected = [r"(^|\.)decoder\.", r"(^|\.)lm_head\.", r"final_logits_bias"]

    def __init__(self, config: BartConfig):
        super().__init__(config)
        scale = config.d_model**0.5 if config.scale_embedding else 1.0
        self.shared = BartScaledWordEmbedding(config.vocab_size, config.d_model, config.pad_token_id, embed_scale=scale)
        self.encoder = BartEncoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.shared = value
        self.encoder.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, **kwargs) -> BaseModelOutput:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs)


class BartForTokenClassification(BartPreTrainedModel):
    """BART encoder -> dropout(classifier_dropout) -> linear, one label per token (-100 ignored in the loss)."""

    _tied_weights_keys = {"model.encoder.embed_tokens.weight": "model.shared.weight"}
    _keys_to_ignore_on_load_unexpected = BartEncoderModel._keys_to_ignore_on_load_unexpected

    def __init__(self, config: BartConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = BartEncoderModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout or 0.0)
        self.classifier = nn.Linear(config.d_model, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.shared

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.set_input_embeddings(value)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> TokenClassifierOutput:
        r"""labels: (batch, length) label ids, -100 on tokens that carry no label."""
        kwargs.pop("num_items_in_batch", None)  # the loss is a plain mean over labelled tokens, as in BART's heads
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs)
        logits = self.classifier(self.dropout(hidden.last_hidden_state))  # (batch, length, num_labels)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits.view(-1, self.num_labels).float(), labels.to(logits.device).view(-1), ignore_index=-100
            )
        return TokenClassifierOutput(loss=loss, logits=logits)


# In-process, AutoModelForTokenClassification builds this head for a BartConfig; saved folders also name it in
# config.json's auto_map (the file travels with them).
AutoModelForTokenClassification.register(BartConfig, BartForTokenClassification, exist_ok=True)
BartForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")

__all__ = ["BartEncoderModel", "BartForTokenClassification"]
