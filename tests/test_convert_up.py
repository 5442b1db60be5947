"""recipes.convert_up: Universal PropBank head labels grown into the SRL recipe's BIO spans."""

import json

from recipes.convert_up import convert_file

# UD columns, then the roleset column and one label column per predicate (met, approved), as in UP 1.0.
CONLLU = """# newdoc id = doc-1
# sent_id = doc-1-0001
# text = The committee that met approved the plan on Monday.
1	The	the	DET	DT	_	2	det	_	_	_	_	_
2	committee	committee	NOUN	NN	_	5	nsubj	_	_	_	ARG0	ARG0
3	that	that	PRON	WDT	_	4	nsubj	_	_	_	R-ARG0	_
4	met	meet	VERB	VBD	_	2	acl:relcl	_	_	meet.01	V	_
5	approved	approve	VERB	VBD	_	0	root	_	_	approve.01	_	V
6	the	the	DET	DT	_	7	det	_	_	_	_	_
7	plan	plan	NOUN	NN	_	5	obj	_	_	_	_	ARG1
8	on	on	ADP	IN	_	9	case	_	_	_	_	_
9	Monday	Monday	PROPN	NNP	_	5	obl	_	SpaceAfter=No	_	_	ARGM-TMP
10	.	.	PUNCT	.	_	5	punct	_	_	_	_	_

# sent_id = doc-1-0002
# propbank = no-up
1	Hello	hello	INTJ	UH	_	0	root	_	_	hello.01	V

# sent_id = doc-1-0003
1-2	don't	_	_	_	_	_	_	_	_	_
1	do	do	AUX	VBP	_	3	aux	_	_	_	_
2	n't	not	PART	RB	_	3	advmod	_	_	_	ARGM-NEG
3	go	go	VERB	VB	_	0	root	_	_	go.01	V
3.1	go	go	VERB	VB	_	_	_	_	_	_	_
4	!	!	PUNCT	.	_	3	punct	_	_	_	_
"""


def test_heads_become_spans(tmp_path):
    source = tmp_path / "up.conllu"
    source.write_text(CONLLU, encoding="utf-8")
    assert convert_file(source, tmp_path / "out.jsonl") == 3
    met, approved, go = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    # the relative clause holds the predicate "met": its branch is cut from the antecedent's span
    assert met["tags"] == ["B-ARG0", "I-ARG0", "B-R-ARG0", "B-V"] + ["O"] * 6
    # for "approved" the whole noun phrase with its relative clause is ARG0; final punctuation stays O
    assert approved["tags"] == ["B-ARG0", "I-ARG0", "I-ARG0", "I-ARG0", "B-V", "B-ARG1", "I-ARG1",
                                "B-ARGM-TMP", "I-ARGM-TMP", "O"]
    assert (approved["predicate_index"], approved["predicate"], approved["doc_id"]) == (4, "approve.01", "doc-1")
    assert approved["head_tags"][1] == "ARG0" and approved["head_tags"][4] == "V"
    # multi-word token lines and empty nodes are skipped; the no-up sentence gives no row
    assert go["tokens"] == ["do", "n't", "go", "!"] and go["tags"] == ["O", "B-ARGM-NEG", "B-V", "O"]
