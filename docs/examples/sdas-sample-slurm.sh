#!/bin/bash
# SIA generation as a Slurm job array: task i runs shard i/16 of 10,000 images per category.
# Submit: sbatch docs/examples/sdas-sample-slurm.sh   (resubmitting fills in only what is missing)
#SBATCH --job-name=realnet-sia
#SBATCH --array=0-15
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --time=02:00:00
#SBATCH --requeue
set -euo pipefail
for cat in bottle cable capsule; do
  realnet --device auto sdas sample \
    --model /shared/models/sdas-mvtec --category "$cat" --count 10000 \
    --strength 0.1..0.2 --seed 0 \
    --shard "${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}" \
    --out /shared/sia
done
