"""Shared plumbing for every technique module: data, models, training, evaluation, benchmarks.

A technique module imports what it needs from here and keeps only its own idea:

    from reference_impl.harness import Context, Experiment, train, check_logits
"""

from .bench import Arm, Claim, Context, Experiment, Procedure, run_cli
from .checks import check_logits, check_positive, check_same_shape
from .data import Split, load_split
from .evaluate import Evaluation, evaluate
from .models import ModelSpec, build_model, n_params
from .train import TrainConfig, freeze, predict_logits, seed_everything, train

__all__ = [
    "Arm", "Claim", "Context", "Evaluation", "Experiment", "ModelSpec", "Procedure", "Split", "TrainConfig",
    "build_model", "check_logits", "check_positive", "check_same_shape", "evaluate", "freeze",
    "load_split", "n_params", "predict_logits", "run_cli", "seed_everything", "train",
]
