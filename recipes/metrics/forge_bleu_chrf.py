"""sacreBLEU BLEU and chrF on detokenized text, as a local `evaluate` metric (works offline).

Load with ``evaluate.load("<path>/forge_bleu_chrf.py")``. Predictions are strings; references are a list
of strings per prediction (several references allowed, the same count for every prediction).
"""

import datasets
import evaluate
import sacrebleu

_DESCRIPTION = "Corpus BLEU and chrF computed by sacrebleu on detokenized text (sacrebleu's default 13a tokenizer)."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of detokenized hypothesis strings.
    references: list of lists of reference strings (one list per prediction, same length for all).
    tokenize: sacrebleu tokenizer for BLEU (default "13a").
    lowercase: case-insensitive BLEU (default False).
Returns:
    bleu: corpus BLEU (0-100); chrf: corpus chrF (0-100); plus BLEU details (precisions, brevity_penalty,
    sys_len, ref_len).
"""


class ForgeBleuChrf(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Post, 2018. A Call for Clarity in Reporting BLEU Scores.",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references, tokenize="13a", lowercase=False):
        if not predictions:
            raise ValueError("forge_bleu_chrf: no predictions to score.")
        n_refs = {len(refs) for refs in references}
        if len(n_refs) != 1:
            raise ValueError("forge_bleu_chrf: every prediction needs the same number of references.")
        # sacrebleu wants one stream per reference position: [[ref0 of each], [ref1 of each], ...]
        streams = [[refs[i] for refs in references] for i in range(n_refs.pop())]
        bleu = sacrebleu.corpus_bleu(predictions, streams, tokenize=tokenize, lowercase=lowercase)
        chrf = sacrebleu.corpus_chrf(predictions, streams)
        return {
            "bleu": bleu.score,
            "chrf": chrf.score,
            "precisions": list(bleu.precisions),
            "brevity_penalty": bleu.bp,
            "sys_len": bleu.sys_len,
            "ref_len": bleu.ref_len,
        }
