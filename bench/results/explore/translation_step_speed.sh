#!/usr/bin/env bash
# Session 11: why did translation from the pretrained folder make half the steps per minute of the scratch run?
# 60 steps of the translation recipe, same flags, three starts, one after the other (log: translation_step_speed.log).
#   PRETRAINED=outputs/pt60_lr1e3/pretrained-forge TOK8K=outputs/quality/tokenizer-translation DATA=../shared/data \
#     bash bench/results/explore/translation_step_speed.sh
set -u
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
D=$DATA/translation
COMMON="--train_file $D/train.jsonl --validation_file $D/validation.jsonl --do_train --max_steps 60 --source_lang de
 --target_lang en --max_source_length 64 --max_target_length 64 --train_sampling_strategy group_by_length
 --pad_to_multiple_of 8 --report_to none --disable_tqdm true --seed 42 --dataloader_pin_memory false --logging_steps 20
 --save_strategy no --overwrite_output_dir"
for cfg in "pretrained|--model_name_or_path $PRETRAINED" "scratch8k|--config_name forge-small --tokenizer_name $TOK8K" \
           "scratch16k|--config_name forge-small --tokenizer_name $PRETRAINED"; do
  name=${cfg%%|*}; flags=${cfg#*|}
  echo "== $name load $(cut -d' ' -f1-3 /proc/loadavg)"
  python -m recipes.translation $flags $COMMON --output_dir /tmp/trs_$name > /tmp/trs_$name.log 2>&1
  python -c "import json; r=json.load(open('/tmp/trs_$name/train_results.json')); print('$name', round(r['train_runtime'],1), 's for 60 steps', r.get('train_samples_per_second'))"
done
