"""The session-17 table of DialogSum beam settings (dialogsum_beam_settings.md) from the re-evaluation folders.

    python bench/results/explore/dialogsum_beam_settings.py [OUTPUTS_DIR]   # default: outputs

Each folder is `python -m recipes.summarization --model_name_or_path MODEL --do_eval ... --length_penalty LP
--no_repeat_ngram_size N --output_dir outputs/NAME` (commands in bench/results/session17_queue.log's steps and in
bench/results/explore/README.md, "Session 17").
"""
import json, os, re, statistics as st, sys

OUT = sys.argv[1] if len(sys.argv) > 1 else "outputs"
rows=[('seed42','dialogsum_copy_eval_ngram0',1.0,0),('seed42','dialogsum_copy_eval_ngram3',1.0,3),('seed42','dialogsum_copy_eval_lp1.5',1.5,0),('seed42','dialogsum_copy_eval_lp2.0',2.0,0),('seed42','dialogsum_copy_eval_lp3.0',3.0,0),('seed42','dialogsum_copy_eval_lp2.0_ngram4',2.0,4),('seed42','dialogsum_copy_eval_lp2.0_ngram6',2.0,6),
('seed43','dialogsum_s17_seed43/summarization-forge-scratch-seed43',1.0,0),('seed43','dialogsum_seed43_eval_lp2.0',2.0,0),
('seed43','dialogsum_seed43_eval_lp2.0_ngram4',2.0,4),('seed43','dialogsum_seed43_eval_lp2.0_ngram6',2.0,6)]
print('| model | length_penalty | no_repeat_ngram_size | ROUGE-1 / 2 / L | words per summary | summaries with a tag repeated 3x in a row |')
print('|---|---:|---:|---|---:|---:|')
for m,d,lp,ng in rows:
    f=f'{OUT}/{d}/eval_results.json'
    if not os.path.exists(f): continue
    res=json.load(open(f)); p=[json.loads(l)['prediction'] for l in open(f'{OUT}/{d}/eval_predictions.jsonl')]
    loops=sum(1 for x in p if re.search(r'(#Person\d#)\s*\1\s*\1',x))
    print(f"| {m} | {lp} | {ng} | {res['eval_rouge1']:.2f} / {res['eval_rouge2']:.2f} / **{res['eval_rougeL']:.2f}** | {st.mean(len(x.split()) for x in p):.1f} | {loops} |")
