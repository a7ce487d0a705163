#!/usr/bin/env bash
# Train the VAE (docs/compatibility.md#autoencoder-training). Set the corpus folders in configs/data/single.yaml or on the command line.
# Resume after a crash or a SLURM requeue with the same command: ckpt_path=last picks up runs/autoencoder.
#   multi-GPU: add trainer.pl_trainer.devices=4   (several nodes: trainer.pl_trainer.num_nodes=2 under srun)
set -euo pipefail
cd "$(dirname "$0")/.."
python train_ae.py --config-name default_ae \
    data.train.slakh2100.data_dir="${SLAKH_DIR:-null}" \
    save_dir=runs/autoencoder \
    ckpt_path=last \
    "$@"
