"""transformers' own ModelTesterMixin, run against every Forge head as it runs against BART.

The mixin comes from the sdist of the installed transformers version (see tests/transformers_tests.py); this file only
provides what a model inside transformers provides in ``tests/models/<model>/test_modeling_<model>.py``: a
ModelTester (tiny config + inputs) and the test classes. Each skip names its reason and where BART skips the same.

BART runs through the same mixin here too (``BartReferenceTest``: BartModelTest's four classes, a BartConfig of the
same tiny shape), and the last test checks that every test skipped for a Forge class is skipped for BART as well, on
this machine and this transformers version: a skip of Forge's own would be a gap, not the mixin's choice. Both need
the whole file in one process (``xdist_group``), as the suite runs it.

    PYTHONPATH=$PWD python -m pytest -q tests/test_transformers_common.py -p no:cacheprovider
"""

from __future__ import annotations

import unittest
from unittest import mock

import pytest
import torch
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BartForQuestionAnswering,
    BartForSequenceClassification,
    BartModel,
)

from modeling import (
    ForgeConfig,
    ForgeEncoderModel,
    ForgeForConditionalGeneration,
    ForgeForQuestionAnswering,
    ForgeForSequenceClassification,
    ForgeForTokenClassification,
    ForgeModel,
)
from tests.transformers_tests import import_common_tests

try:
    common = import_common_tests()
except Exception as error:  # noqa: BLE001 - no network / no PyPI: the whole module is skipped, saying why
    pytest.skip(f"transformers' common model tests are unavailable: {error}", allow_module_level=True)

from transformers.models.auto import modeling_auto  # noqa: E402

ids_tensor = common.ids_tensor

# The comparison at the end reads every test's outcome in this file (tests/conftest.py records them here), so the
# file runs in one xdist worker.
pytestmark = pytest.mark.xdist_group("transformers_common")
OUTCOMES: dict[str, tuple[str, str]] = {}  # node id -> (outcome, skip reason)

# The mixin decides what a class is (base model: never trained; QA: gets start/end positions; ...) by looking its
# name up in transformers' own Auto mappings, which `AutoModel.register` does not extend. BART is listed there.
_AUTO_MAPPINGS = {
    "MODEL_MAPPING_NAMES": ("ForgeModel", "ForgeEncoderModel"),
    "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES": ("ForgeForConditionalGeneration",),
    "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES": ("ForgeForSequenceClassification",),
    "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES": ("ForgeForTokenClassification",),
    "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES": ("ForgeForQuestionAnswering",),
}


class ForgeModelTester:
    """Tiny Forge configs and inputs, in the shape of transformers' BartModelTester."""

    def __init__(
        self,
        parent: unittest.TestCase,
        batch_size: int = 13,
        seq_length: int = 7,
        is_training: bool = True,
        vocab_size: int = 99,
        hidden_size: int = 16,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 4,
        intermediate_size: int = 4,
        max_position_embeddings: int = 50,
        encoder_only: bool = False,
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.is_training = is_training
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.encoder_only = encoder_only
        self.pad_token_id, self.bos_token_id, self.eos_token_id = 0, 1, 2

    def shape(self) -> dict:
        """The tiny shape and special tokens, in BART's field names (which ForgeConfig shares)."""
        return dict(
            vocab_size=self.vocab_size,
            d_model=self.hidden_size,
            encoder_layers=self.num_hidden_layers,
            decoder_layers=self.num_hidden_layers,
            encoder_attention_heads=self.num_attention_heads,
            decoder_attention_heads=self.num_attention_heads,
            encoder_ffn_dim=self.intermediate_size,
            decoder_ffn_dim=self.intermediate_size,
            dropout=0.1,
            attention_dropout=0.1,
            max_position_embeddings=self.max_position_embeddings,
            pad_token_id=self.pad_token_id,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            decoder_start_token_id=self.bos_token_id,
        )

    def get_config(self) -> ForgeConfig:
        # The encoder heads run the encoder alone: their tests treat them as encoder-only models (is_encoder_decoder
        # decides whether the mixin feeds decoder inputs and reads encoder_*/decoder_* outputs).
        return ForgeConfig(is_encoder_decoder=not self.encoder_only, **self.shape())

    def prepare_config_and_inputs(self) -> tuple[ForgeConfig, dict[str, torch.Tensor]]:
        # Ids from 3 up (no pad/bos/eos inside), EOS last, as BartModelTester builds them.
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size).clamp(3)
        input_ids[:, -1] = self.eos_token_id
        inputs = {"input_ids": input_ids, "attention_mask": input_ids.ne(self.pad_token_id)}
        if not self.encoder_only:
            decoder_input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size).clamp(3)
            inputs["decoder_input_ids"] = decoder_input_ids
            inputs["decoder_attention_mask"] = decoder_input_ids.ne(self.pad_token_id)
        return self.get_config(), inputs

    def prepare_config_and_inputs_for_common(self) -> tuple[ForgeConfig, dict[str, torch.Tensor]]:
        return self.prepare_config_and_inputs()


_NO_GENERATION_MIXIN = (
    "tests/generation/test_utils.py (GenerationTesterMixin) is not in the transformers sdist; BART inherits it. Forge's "
    "generation tests are in tests/test_modeling.py."
)
_TIED_LIKE_BART = (
    "Tied weights by default, as BART (BartModelTest skips this test: "
    "https://github.com/huggingface/transformers/pull/31771#issuecomment-2210915245)"
)


class _ForgeCommonTests(common.ModelTesterMixin):
    """What both Forge test classes share: the Auto-mapping entries, and the skips that hold for BART too."""

    encoder_only = False

    def setUp(self):
        self.model_tester = ForgeModelTester(self, encoder_only=self.encoder_only)
        for name, classes in _AUTO_MAPPINGS.items():
            patcher = mock.patch.dict(getattr(modeling_auto, name), {f"forge-{name}": classes})
            patcher.start()
            self.addCleanup(patcher.stop)

    def test_tied_weights_keys(self):
        """Forge's own version (the one deviation from BART): the encoder and decoder hold the `shared` MODULE, where
        BART ties three modules' parameters. So `encoder/decoder.embed_tokens.weight` are not declared as tied
        parameters (declared, transformers' loader marks `shared.weight` loaded and stops reporting a checkpoint that
        lacks it: test_model_weights_reload_no_missing_tied_weights catches that) but left out of the weights file
        (`_keys_to_ignore_on_save`). Checked here as the mixin checks: every tensor shared in the state dict is
        accounted for, and only the embedding (with lm_head, a declared tie) is shared."""
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config)
            groups = {}
            for name, tensor in model.state_dict().items():
                groups.setdefault(tensor.data_ptr(), []).append(name)
            shared = [sorted(names) for names in groups.values() if len(names) > 1]
            aliases = sorted(name for name in model.state_dict() if name.endswith("embed_tokens.weight"))
            declared = list(model._tied_weights_keys or {})  # lm_head.weight on the LM head
            source = [name for name in model.state_dict() if name.endswith("shared.weight")]
            self.assertEqual(shared, [sorted([*aliases, *source, *declared])])
            for alias in aliases:
                self.assertIs(model.get_submodule(alias.rsplit(".", 1)[0]), model.get_input_embeddings())
            self.assertTrue(set(aliases) <= set(model._keys_to_ignore_on_save))

    @unittest.skip(reason=_NO_GENERATION_MIXIN)
    def test_generation_tester_mixin_inheritance(self):
        pass


class ForgeSeq2SeqModelTest(_ForgeCommonTests, unittest.TestCase):
    """ForgeModel and ForgeForConditionalGeneration, the way BartModelTest runs BartModel and its LM head."""

    all_model_classes = (ForgeModel, ForgeForConditionalGeneration)
    is_encoder_decoder = True

    @unittest.skip(reason=_TIED_LIKE_BART)
    def test_load_save_without_tied_weights(self):
        pass

class ForgeEncoderModelTest(_ForgeCommonTests, unittest.TestCase):
    """The encoder-only heads (ForgeEncoderModel, sequence/token classification, extractive QA)."""

    all_model_classes = (
        ForgeEncoderModel,
        ForgeForSequenceClassification,
        ForgeForTokenClassification,
        ForgeForQuestionAnswering,
    )
    is_encoder_decoder = False
    encoder_only = True


# ---------------------------------------------------------------------------------------------------------------
# The control: BART through the same mixin, and the skip comparison
# ---------------------------------------------------------------------------------------------------------------


class BartModelTester(ForgeModelTester):
    """BART of the same tiny shape, with the same inputs (ids from 3 up, EOS last: what BartModelTester builds)."""

    def get_config(self) -> BartConfig:
        return BartConfig(**self.shape())


class BartReferenceTest(common.ModelTesterMixin, unittest.TestCase):
    """transformers' BART on this machine, with BartModelTest's classes and its skips (the generation mixin is absent
    from the sdist for BART as for Forge)."""

    all_model_classes = (BartModel, BartForConditionalGeneration, BartForSequenceClassification, BartForQuestionAnswering)
    is_encoder_decoder = True

    def setUp(self):
        self.model_tester = BartModelTester(self)

    @unittest.skip(reason=_NO_GENERATION_MIXIN)
    def test_generation_tester_mixin_inheritance(self):
        pass

    @unittest.skip(reason=_TIED_LIKE_BART)
    def test_load_save_without_tied_weights(self):
        pass

    def test_inputs_embeds(self):
        """As BartModelTest runs it: without BartForSequenceClassification, which refuses `inputs_embeds`."""
        classes = tuple(c for c in self.all_model_classes if c is not BartForSequenceClassification)
        with mock.patch.object(self, "all_model_classes", classes):
            super().test_inputs_embeds()


_FORGE_CLASSES = ("ForgeSeq2SeqModelTest", "ForgeEncoderModelTest")
# Skips that follow from what a class holds, each run by the other Forge class (checked).
_BY_KIND = {
    "ForgeEncoderModelTest": {
        # the encoder heads have no sequence-to-sequence LM head; BART's four classes include one
        "test_encoder_decoder_loss_no_double_shift": "ForgeSeq2SeqModelTest",
    },
}


def _skipped(test_class: str) -> dict[str, str]:
    """Test name -> skip reason, for one class of this file."""
    return {name: reason for (cls, name), (outcome, reason) in _outcomes().items() if cls == test_class and outcome == "skipped"}


def _outcomes() -> dict[tuple[str, str], tuple[str, str]]:
    """(class, test name) -> (outcome, reason); xdist adds '@<group>' to node ids."""
    return {tuple(node.split("@")[0].split("::")[-2:]): value for node, value in OUTCOMES.items()}


def test_forge_skips_only_what_bart_skips():
    """Every common test that is skipped for a Forge class is skipped for BART too, so no skip hides a gap of Forge's.
    (The reverse may happen: a test BART skips that Forge runs.)"""
    outcomes = _outcomes()
    if not {*_FORGE_CLASSES, "BartReferenceTest"} <= {cls for cls, _ in outcomes}:
        pytest.skip("the comparison needs this whole file's test classes run first, in this process")
    bart = _skipped("BartReferenceTest")
    not_for_bart = {
        f"{test_class}::{name}": reason
        for test_class in _FORGE_CLASSES
        for name, reason in _skipped(test_class).items()
        if name not in bart and name not in _BY_KIND.get(test_class, {})
    }
    assert not not_for_bart, f"skipped for Forge but not for BART: {not_for_bart}"
    for test_class, tests in _BY_KIND.items():
        for name, runner in tests.items():
            assert outcomes.get((test_class, name), ("",))[0] == "skipped", f"{test_class}::{name} no longer skips"
            assert outcomes.get((runner, name), ("",))[0] == "passed", f"{runner}::{name} must run it instead"
