"""The names of what a training run leaves in its folder, torch-free so that the search can name
the trainer's checkpoint in its trial checkpoints without importing torch."""

CHECKPOINT_FILE = "checkpoint.pt"  # Trainer.save_checkpoint's file: from the CLI and in every trial checkpoint
METRICS_FILE = "metrics.json"  # run_training's result: test and last validation metrics, config, history
