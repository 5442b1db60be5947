#!/usr/bin/env bash
# DP probe: frozen embeddings, eps 3 planned for 1 epoch at batch 256; stopped after ~45 steps; train loss every 5 steps.
cd /work/main
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
P=/work/run/outputs/pt60_lr1e3/pretrained-forge; D=/work/shared/data
for lr in $LRS; do
  rm -rf /tmp/dpp_$lr
  timeout ${SECS:-150} python -m recipes.sentiment --model_name_or_path $P --train_file $D/sentiment/train.jsonl --validation_file $D/sentiment/validation.jsonl --class_names negative,positive --max_seq_length 64 --do_train --num_train_epochs 1 --per_device_train_batch_size ${BS:-256} --learning_rate $lr --lr_scheduler_type constant --warmup_steps 0 --eval_strategy no --save_strategy no --logging_steps 5 --report_to none --disable_tqdm true --overwrite_output_dir --dataloader_pin_memory false --freeze_embeddings --dp_epsilon 3 --output_dir /tmp/dpp_$lr > /tmp/dpp_$lr.log 2>&1
  echo "lr $lr"; python -c "
import json
rows=[json.loads(l) for l in open('/tmp/dpp_$lr/train_log.jsonl')] if __import__('os').path.exists('/tmp/dpp_$lr/train_log.jsonl') else []
print([(r.get('step'), round(r['loss'],3)) for r in rows if 'loss' in r])"
  grep -o "noise multiplier [0-9.]*\|stays fixed; [0-9.]*M" /tmp/dpp_$lr.log
done
