"""The retrainer's core: labelled datasets, preprocessing, training, evaluation, artifacts.

The torch-free parts (:mod:`.dataset`, :mod:`.preprocessing`, :mod:`.evaluation`)
import eagerly; the names from :mod:`.training`, :mod:`.model` and
:mod:`.artifact` import torch on first use, so scoring and dataset code never pay
for it.

Examples
--------
>>> from driftline.retrainer import HoldoutScore, challenge
>>> challenge(HoldoutScore(metrics={"accuracy": 0.8}, rows=10), None, "accuracy", 0.0).promote
True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .dataset import LabelledDataset, check_features, from_rows
from .evaluation import (
    ChallengeResult,
    HoldoutScore,
    Predictions,
    Predictor,
    challenge,
    score_predictions,
    score_predictor,
)
from .preprocessing import CategoricalEncoding, NumericEncoding, Preprocessor

if TYPE_CHECKING:
    from .artifact import ArtifactStore
    from .model import MLPArchitecture, TabularMLP
    from .training import (
        TrainedModel,
        TrainingFunctionError,
        TrainingOptions,
        TrainingReport,
        train_mlp,
        train_model,
    )

__all__ = [
    "ArtifactStore",
    "CategoricalEncoding",
    "ChallengeResult",
    "HoldoutScore",
    "LabelledDataset",
    "MLPArchitecture",
    "NumericEncoding",
    "Predictions",
    "Predictor",
    "Preprocessor",
    "TabularMLP",
    "TrainedModel",
    "TrainingFunctionError",
    "TrainingOptions",
    "TrainingReport",
    "challenge",
    "check_features",
    "from_rows",
    "score_predictions",
    "score_predictor",
    "train_mlp",
    "train_model",
]

_LAZY = {
    "ArtifactStore": "artifact",
    "MLPArchitecture": "model",
    "TabularMLP": "model",
    "TrainedModel": "training",
    "TrainingFunctionError": "training",
    "TrainingOptions": "training",
    "TrainingReport": "training",
    "train_mlp": "training",
    "train_model": "training",
}


def __getattr__(name: str) -> Any:
    """Import the torch-backed names on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
