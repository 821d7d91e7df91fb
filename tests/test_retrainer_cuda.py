"""The trainer on a CUDA GPU with mixed precision (skipped where torch sees no GPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from driftline.retrainer import score_predictor
from driftline.retrainer.model import MLPArchitecture, TabularMLP
from driftline.retrainer.training import TrainedModel, TrainingOptions, train_mlp
from test_retrainer_training import FAST, monitor_for, tabular

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_training_runs_on_the_gpu_under_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bool, torch.dtype]] = []
    build = MLPArchitecture.build

    def build_with_probe(self: MLPArchitecture) -> TabularMLP:
        network = build(self)

        def probe(module: Any, inputs: Any, output: torch.Tensor) -> None:
            if module.training:
                seen.append((torch.is_autocast_enabled("cuda"), output.dtype))

        network.layers[0].register_forward_hook(probe)
        return network

    monkeypatch.setattr(MLPArchitecture, "build", build_with_probe)
    monitor = monitor_for("binary_classification")
    train, holdout = tabular(4000, "binary_classification", seed=21).time_split(0.25)
    options = FAST.model_copy(update={"device": "cuda", "mixed_precision": True})
    model, report = train_mlp(train, monitor, options)

    assert report.device == "cuda" and report.mixed_precision
    expected = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    assert report.precision == expected
    assert seen and all(enabled for enabled, _ in seen)
    assert {dtype for _, dtype in seen} == {getattr(torch, expected)}
    assert all(p.device.type == "cuda" for p in model.network.parameters())
    assert all(p.dtype == torch.float32 for p in model.network.parameters())  # master weights
    assert score_predictor(model, holdout, monitor).metrics["accuracy"] > 0.9


def test_full_precision_on_the_gpu_when_mixed_precision_is_off() -> None:
    monitor = monitor_for("regression")
    train = tabular(1000, "regression", seed=22)
    options = FAST.model_copy(update={"device": "cuda", "mixed_precision": False, "max_epochs": 3})
    _, report = train_mlp(train, monitor, options)
    assert report.device == "cuda"
    assert not report.mixed_precision and report.precision == "float32"


def test_gpu_predictions_match_the_cpu(tmp_path: Path) -> None:
    monitor = monitor_for("multiclass")
    train, holdout = tabular(4000, "multiclass", seed=23).time_split(0.25)
    gpu_model, _ = train_mlp(train, monitor, FAST.model_copy(update={"device": "cuda"}))
    cpu_model, _ = train_mlp(train, monitor, FAST)

    # The same weights give the same probabilities on either device.
    gpu_model.save(tmp_path / "gpu")
    on_cpu = TrainedModel.load(tmp_path / "gpu", device="cpu")
    gpu_scores = gpu_model.predict(holdout.features).scores
    cpu_scores = on_cpu.predict(holdout.features).scores
    assert gpu_scores is not None and cpu_scores is not None
    np.testing.assert_allclose(gpu_scores, cpu_scores, atol=1e-4)

    # Training on the GPU learns as well as on the CPU.
    gpu_accuracy = score_predictor(gpu_model, holdout, monitor).metrics["accuracy"]
    cpu_accuracy = score_predictor(cpu_model, holdout, monitor).metrics["accuracy"]
    assert abs(gpu_accuracy - cpu_accuracy) < 0.03
    agree = np.mean(
        gpu_model.predict(holdout.features).labels == cpu_model.predict(holdout.features).labels
    )
    assert agree > 0.95


def test_auto_picks_the_gpu() -> None:
    monitor = monitor_for("binary_classification")
    options = TrainingOptions(hidden_layers=(8,), max_epochs=1, device="auto")
    model, report = train_mlp(tabular(300, "binary_classification", seed=24), monitor, options)
    assert report.device == "cuda"
    assert next(model.network.parameters()).device.type == "cuda"
