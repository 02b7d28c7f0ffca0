"""The search platform: YAML spaces -> Ray Tune (Optuna or grid, ASHA) -> MLflow -> reports."""
