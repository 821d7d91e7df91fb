"""The retrainer's training core: datasets, preprocessing, the MLP, scoring, artifacts.

Synthetic tabular data with numeric and categorical features, missing values and
rare categories, for binary, multiclass and regression tasks; all on the CPU, small
enough that each test takes about a second.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from driftline.retrainer import (
    ArtifactStore,
    HoldoutScore,
    LabelledDataset,
    Predictions,
    Preprocessor,
    challenge,
    from_rows,
    score_predictions,
    score_predictor,
)
from driftline.retrainer.training import (
    TrainedModel,
    TrainingFunctionError,
    TrainingOptions,
    resolve_options,
    train_mlp,
    train_model,
)
from driftline.schemas.monitor import MonitorConfig, MonitorConfigError

REGIONS = np.array(["north", "south", "east", "west"])
FAST = TrainingOptions(
    hidden_layers=(32, 16),
    batch_size=128,
    max_epochs=25,
    patience=4,
    learning_rate=5e-3,
    device="cpu",
)


def monitor_for(task: str, **training: object) -> MonitorConfig:
    return MonitorConfig.from_mapping(
        {
            "model_id": f"retrain-{task}",
            "task": task,
            "features": {
                "x0": "numeric",
                "x1": "numeric",
                "x2": "numeric",
                "region": "categorical",
            },
            "training": training,
        }
    )


def tabular(
    rows: int, task: str, seed: int, *, flipped: bool = False, start: float = 0.0
) -> LabelledDataset:
    """Rows whose label depends on x0, x1 and the region; ``flipped`` inverts the rule."""
    rng = np.random.default_rng(seed)
    x0, x1, x2 = rng.normal(size=(3, rows))
    region = rng.choice(REGIONS, size=rows, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    shift = np.select([region == "north", region == "south"], [1.0, -1.0], 0.0)
    signal = 1.5 * x0 - x1 + shift
    if flipped:
        signal = -signal
    if task == "binary_classification":
        noisy = signal + rng.normal(scale=0.3, size=rows)
        labels: np.ndarray = np.where(noisy > 0, "1", "0")
    elif task == "multiclass":
        noisy = signal + rng.normal(scale=0.3, size=rows)
        labels = np.select([noisy < -1.0, noisy < 1.0], ["low", "mid"], "high")
    else:
        labels = 10.0 + 2.0 * signal + rng.normal(scale=0.3, size=rows)
    x2[rng.random(rows) < 0.05] = np.nan  # x2 is noise, and sometimes missing
    region[rng.random(rows) < 0.03] = None
    return LabelledDataset(
        features={"x0": x0, "x1": x1, "x2": x2, "region": region},
        labels=labels,
        timestamps=start + np.arange(rows, dtype=np.float64),
        event_ids=np.array([f"{seed}-{i:06d}" for i in range(rows)]),
    )


def majority_rate(labels: np.ndarray) -> float:
    _, counts = np.unique(labels, return_counts=True)
    return float(counts.max() / counts.sum())


# --- learning ----------------------------------------------------------------------


def test_binary_mlp_beats_the_majority_baseline_by_far() -> None:
    monitor = monitor_for("binary_classification")
    train, holdout = tabular(3000, "binary_classification", seed=1).time_split(0.25)
    lines: list[str] = []
    model, report = train_model(train, monitor, FAST, log=lines.append)
    score = score_predictor(model, holdout, monitor)
    assert score.rows == len(holdout) == 750
    assert score.metrics["accuracy"] > 0.9 > majority_rate(holdout.labels) + 0.25
    assert score.metrics["roc_auc"] > 0.95
    assert report.device == "cpu" and not report.mixed_precision
    assert report.rows == len(train) == report.train_rows + report.validation_rows
    assert len(report.train_loss) == len(report.validation_loss) == report.epochs_run
    assert sum(line.startswith("epoch ") for line in lines) == report.epochs_run


def test_multiclass_mlp_beats_the_majority_baseline_by_far() -> None:
    monitor = monitor_for("multiclass")
    train, holdout = tabular(3000, "multiclass", seed=2).time_split(0.25)
    model, _ = train_model(train, monitor, FAST)
    predictions = model.predict(holdout.features)
    assert isinstance(model, TrainedModel) and model.classes == ("high", "low", "mid")
    assert predictions.scores is not None
    np.testing.assert_allclose(predictions.scores.sum(axis=1), 1.0, rtol=1e-5)
    score = score_predictions(predictions, holdout, monitor)
    assert score.metrics["accuracy"] > 0.85
    assert score.metrics["accuracy"] > majority_rate(holdout.labels) + 0.3


def test_regression_mlp_rmse_is_far_below_the_label_spread() -> None:
    monitor = monitor_for("regression")
    train, holdout = tabular(3000, "regression", seed=3).time_split(0.25)
    model, _ = train_model(train, monitor, FAST)
    predictions = model.predict(holdout.features)
    assert predictions.scores is None and predictions.labels.dtype == np.float64
    score = score_predictions(predictions, holdout, monitor)
    assert score.metrics["rmse"] < 0.25 * float(np.std(holdout.labels))
    assert set(score.metrics) == {"mae", "rmse", "mape"}


def test_a_model_trained_after_concept_drift_beats_the_old_one_and_is_promoted() -> None:
    monitor = monitor_for("binary_classification")
    before = tabular(2000, "binary_classification", seed=4)
    after = tabular(2500, "binary_classification", seed=5, flipped=True, start=1e6)
    champion, _ = train_model(before, monitor, FAST)
    train, holdout = after.time_split(0.2)
    candidate, _ = train_model(train, monitor, FAST)

    champion_score = score_predictor(champion, holdout, monitor)
    candidate_score = score_predictor(candidate, holdout, monitor)
    assert champion_score.metrics["accuracy"] < 0.2  # the rule flipped
    assert candidate_score.metrics["accuracy"] > 0.9

    result = challenge(candidate_score, champion_score, monitor.training_metric, 0.05)
    assert result.promote
    assert result.decision.startswith("promote: candidate accuracy ")
    assert f"{candidate_score.metrics['accuracy']:.6g}" in result.decision
    assert f"{champion_score.metrics['accuracy']:.6g}" in result.decision
    assert result.metrics["candidate.accuracy"] == candidate_score.metrics["accuracy"]
    assert result.metrics["champion.accuracy"] == champion_score.metrics["accuracy"]
    assert {"candidate.roc_auc", "champion.log_loss"} <= set(result.metrics)

    rejected = challenge(candidate_score, champion_score, "accuracy", 0.95)
    assert not rejected.promote
    assert rejected.decision.startswith("reject: ")
    assert "not more than the margin 0.95" in rejected.decision


def test_early_stopping_stops_on_a_plateau() -> None:
    monitor = monitor_for("binary_classification")
    data = tabular(1500, "binary_classification", seed=6)
    noise = np.where(np.random.default_rng(7).random(len(data)) < 0.5, "1", "0")
    unlearnable = LabelledDataset(
        features=data.features, labels=noise, timestamps=data.timestamps, event_ids=data.event_ids
    )
    options = FAST.model_copy(update={"max_epochs": 60, "patience": 2})
    _, report = train_model(unlearnable, monitor, options)
    assert report.stopped_early
    assert report.epochs_run < 60
    assert report.epochs_run == report.best_epoch + 2
    assert report.best_validation_loss == min(report.validation_loss)


# --- determinism and persistence ---------------------------------------------------


def _weights(model: TrainedModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.network.state_dict().items()}


def test_training_is_deterministic_on_cpu_for_a_seed() -> None:
    monitor = monitor_for("multiclass")
    train, holdout = tabular(1200, "multiclass", seed=8).time_split(0.25)
    options = FAST.model_copy(update={"max_epochs": 4, "dropout": 0.2})
    first, _ = train_mlp(train, monitor, options)
    second, _ = train_mlp(train, monitor, options)
    other, _ = train_mlp(train, monitor, options.model_copy(update={"seed": 1}))
    a, b, c = _weights(first), _weights(second), _weights(other)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    p1, p2 = first.predict(holdout.features), second.predict(holdout.features)
    assert p1.scores is not None and p2.scores is not None
    assert np.array_equal(p1.scores, p2.scores)
    assert np.array_equal(p1.labels, p2.labels)


def test_save_and_load_give_identical_predictions(tmp_path: Path) -> None:
    monitor = monitor_for("regression")
    train, holdout = tabular(800, "regression", seed=9).time_split(0.25)
    model, _ = train_mlp(train, monitor, FAST.model_copy(update={"max_epochs": 3}))
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "model.json",
        "preprocessing.json",
        "weights.pt",
    ]
    loaded = TrainedModel.load(tmp_path / "m")
    assert loaded.preprocessor == model.preprocessor
    assert loaded.architecture == model.architecture
    assert np.array_equal(
        loaded.predict(holdout.features).labels, model.predict(holdout.features).labels
    )
    with pytest.raises(ValueError, match="holds no driftline model"):
        TrainedModel.load(tmp_path / "nothing-here")


def test_the_artifact_store_writes_a_version_once_and_loads_it(tmp_path: Path) -> None:
    monitor = monitor_for("binary_classification")
    train, holdout = tabular(800, "binary_classification", seed=10).time_split(0.25)
    model, _ = train_mlp(train, monitor, FAST.model_copy(update={"max_epochs": 3}))
    store = ArtifactStore(tmp_path / "artifacts")
    assert not store.exists("credit", "v2")
    uri = store.save(model, "credit", "v2", {"request_id": "r-1", "data_to": 5.0})
    assert uri == store.uri_for("credit", "v2") and uri.startswith("file://")
    assert store.exists("credit", "v2")
    stamp = (store.directory_for("credit", "v2") / "weights.pt").stat().st_mtime_ns
    # A second save of the same version (a retried request) changes nothing.
    other, _ = train_mlp(train, monitor, FAST.model_copy(update={"max_epochs": 1, "seed": 3}))
    assert store.save(other, "credit", "v2", {"request_id": "r-1"}) == uri
    assert (store.directory_for("credit", "v2") / "weights.pt").stat().st_mtime_ns == stamp
    assert store.metadata(uri)["metadata"] == {"request_id": "r-1", "data_to": 5.0}
    # No staging directory is left behind.
    assert [p.name for p in (tmp_path / "artifacts" / "credit").iterdir()] == ["v2"]
    loaded = store.load(uri)
    expected = model.predict(holdout.features)
    got = loaded.predict(holdout.features)
    assert expected.scores is not None and got.scores is not None
    assert np.array_equal(got.scores, expected.scores)
    assert isinstance(store.load_predictor(uri), TrainedModel)
    with pytest.raises(ValueError, match="cannot name an artifact directory"):
        store.uri_for("../escape", "v1")
    with pytest.raises(ValueError, match="holds no stored model version"):
        store.load(store.uri_for("credit", "v9"))


# --- preprocessing ------------------------------------------------------------------


def test_preprocessing_json_round_trip_is_exact() -> None:
    monitor = monitor_for("regression", max_categories=2)
    data = tabular(500, "regression", seed=11)
    pre = Preprocessor.fit(data, monitor)
    again = Preprocessor.from_json(pre.to_json())
    assert again == pre
    assert again.to_json() == pre.to_json()
    assert np.array_equal(again.transform(data.features), pre.transform(data.features))
    # The two most frequent regions are kept; the rest share the "other" column.
    assert pre.categorical[0].categories == ("north", "south")
    assert pre.column_names[-4:] == (
        "region=north",
        "region=south",
        "region:other",
        "region:missing",
    )
    x0 = pre.numeric[0]
    assert math.isclose(x0.mean, float(np.mean(data.features["x0"])))
    assert math.isclose(x0.std, float(np.std(data.features["x0"])))


def test_unseen_categories_and_missing_values_are_encoded_and_predicted() -> None:
    monitor = monitor_for("binary_classification")
    train = tabular(1000, "binary_classification", seed=12)
    model, _ = train_mlp(train, monitor, FAST.model_copy(update={"max_epochs": 3}))
    rows: Mapping[str, np.ndarray] = {
        "x0": np.array([np.nan, 0.5, np.inf]),
        "x1": np.array([0.1, None, 0.2], dtype=object),
        "x2": np.array([0.0, 0.0, 0.0]),
        "region": np.array(["atlantis", None, 7], dtype=object),
        "ignored": np.array([1, 2, 3]),
    }
    matrix = model.preprocessor.transform(rows)
    names = model.preprocessor.column_names
    column = {name: matrix[:, i].tolist() for i, name in enumerate(names)}
    assert column["x0"] == [0.0, pytest.approx(column["x0"][1]), 0.0]
    assert column["x0:missing"] == [1.0, 0.0, 1.0]
    assert column["x1:missing"] == [0.0, 1.0, 0.0]
    assert column["region:other"] == [1.0, 0.0, 1.0]
    assert column["region:missing"] == [0.0, 1.0, 0.0]
    assert matrix.dtype == np.float32 and np.isfinite(matrix).all()
    predictions = model.predict(rows)
    assert predictions.scores is not None and np.isfinite(predictions.scores).all()
    assert set(predictions.labels.tolist()) <= {"0", "1"}
    with pytest.raises(ValueError, match="features lack 'region'"):
        model.predict({k: v for k, v in rows.items() if k != "region"})


def test_preprocessor_rejects_a_single_class() -> None:
    data = tabular(50, "binary_classification", seed=13)
    one_class = LabelledDataset(
        features=data.features,
        labels=np.full(len(data), "1"),
        timestamps=data.timestamps,
        event_ids=data.event_ids,
    )
    with pytest.raises(ValueError, match=r"one class only \(\['1'\]\)"):
        Preprocessor.fit(one_class, monitor_for("binary_classification"))


# --- datasets -------------------------------------------------------------------------


def test_from_rows_reads_store_rows_and_skips_unlabelled_ones() -> None:
    monitor = monitor_for("binary_classification")
    t0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    rows = [
        {
            "event_id": "b",
            "timestamp": t0,
            "features_num": {"x0": 1.0, "x1": 2.0, "region": 4.0},
            "features_cat": {},
            "label_value": 1.0,
            "label_class": None,
        },
        {
            "event_id": "a",
            "timestamp": t0.replace(tzinfo=None),
            "features_num": {"x0": 3.0},
            "features_cat": {"region": "north", "x1": "oops"},
            "label_value": None,
            "label_class": "0",
        },
        {
            "event_id": "c",
            "timestamp": t0.timestamp() + 5,
            "features_num": {"x0": 0.0},
            "features_cat": {},
            "label_value": None,
            "label_class": None,
        },
    ]
    data = from_rows(rows, monitor)
    assert data.event_ids.tolist() == ["b", "a"]
    assert data.labels.tolist() == ["1", "0"]
    assert data.timestamps.tolist() == [t0.timestamp(), t0.timestamp()]
    assert data.features["region"].tolist() == ["4", "north"]
    assert data.features["x1"][0] == 2.0 and np.isnan(data.features["x1"][1])
    assert np.isnan(data.features["x2"]).all()
    # Equal times: the event id breaks the tie.
    assert data.sort_by_time().event_ids.tolist() == ["a", "b"]
    with pytest.raises(ValueError, match="no labelled rows among 1 row"):
        from_rows(rows[2:], monitor)
    with pytest.raises(ValueError, match="row 'x': timestamp 'yesterday'"):
        from_rows([{**rows[0], "event_id": "x", "timestamp": "yesterday"}], monitor)


def test_time_split_puts_the_newest_rows_in_the_holdout() -> None:
    data = tabular(100, "regression", seed=14)
    shuffled = data.take(np.random.default_rng(0).permutation(len(data)))
    train, holdout = shuffled.time_split(0.3)
    assert len(train) == 70 and len(holdout) == 30
    assert train.timestamps.max() < holdout.timestamps.min()
    assert np.array_equal(holdout.event_ids, data.event_ids[70:])
    with pytest.raises(ValueError, match=r"holdout_fraction must be in \(0, 1\)"):
        data.time_split(1.0)
    with pytest.raises(ValueError, match="timestamps has 3 rows but labels has 100"):
        LabelledDataset(
            features=data.features,
            labels=data.labels,
            timestamps=np.zeros(3),
            event_ids=data.event_ids,
        )


# --- scoring and the decision -------------------------------------------------------------


def test_challenge_knows_which_direction_is_better() -> None:
    low = HoldoutScore(metrics={"rmse": 1.0, "mae": 0.8}, rows=100)
    high = HoldoutScore(metrics={"rmse": 2.0, "mae": 1.5}, rows=100)
    assert challenge(low, high, "rmse", 0.0).promote
    assert not challenge(high, low, "rmse", 0.0).promote
    assert not challenge(low, low, "rmse", 0.0).promote  # a tie does not promote
    first = challenge(low, None, "rmse", 0.5)
    assert first.promote and first.champion_value is None
    assert first.metrics == {"candidate.rmse": 1.0, "candidate.mae": 0.8}
    assert "no champion" in first.decision
    with pytest.raises(ValueError, match="the candidate has no 'accuracy'"):
        challenge(low, high, "accuracy", 0.0)
    with pytest.raises(ValueError, match="unknown metric 'r2'"):
        challenge(low, high, "r2", 0.0)


def test_binary_scores_give_roc_auc_and_log_loss_of_the_positive_class() -> None:
    monitor = monitor_for("binary_classification")
    holdout = tabular(4, "binary_classification", seed=15)
    truth = holdout.labels
    perfect = np.where(truth[:, None] == np.array(["0", "1"]), 0.9, 0.1)
    score = score_predictions(
        Predictions(labels=truth.copy(), scores=perfect, classes=("0", "1")), holdout, monitor
    )
    assert score.metrics["accuracy"] == 1.0 and score.metrics["roc_auc"] == 1.0
    assert math.isclose(score.metrics["log_loss"], -math.log(0.9))
    with pytest.raises(ValueError, match="3 predictions for a holdout of 4 rows"):
        score_predictions(Predictions(labels=truth[:3]), holdout, monitor)


# --- the monitor's training section and user functions ------------------------------------


class MajorityPredictor:
    """A user's model: always the most frequent training class."""

    def __init__(self, label: str, classes: tuple[str, ...]) -> None:
        self.label = label
        self.classes = classes

    def predict(self, features: Mapping[str, np.ndarray]) -> Predictions:
        n = len(next(iter(features.values())))
        scores = np.tile([1.0 if c == self.label else 0.0 for c in self.classes], (n, 1))
        return Predictions(labels=np.full(n, self.label), scores=scores, classes=self.classes)

    def save(self, directory: Path) -> None:
        (directory / "label.txt").write_text(self.label, encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> MajorityPredictor:
        return cls((directory / "label.txt").read_text(encoding="utf-8"), ("0", "1"))


SEEN_OPTIONS: list[TrainingOptions] = []


def train_majority(
    train: LabelledDataset, monitor: MonitorConfig, options: TrainingOptions
) -> MajorityPredictor:
    """A user's training function, named by import path in the tests' monitor configs."""
    SEEN_OPTIONS.append(options)
    classes, counts = np.unique(train.labels, return_counts=True)
    return MajorityPredictor(str(classes[counts.argmax()]), tuple(classes.tolist()))


def train_nothing(train: LabelledDataset, monitor: MonitorConfig, options: TrainingOptions) -> int:
    """A broken user's training function: returns no predictor."""
    return 42


def train_and_crash(train: LabelledDataset, monitor: MonitorConfig, options: Any) -> Any:
    """A broken user's training function: raises."""
    raise ZeroDivisionError("division by zero in fit")


class Unloadable:
    """A user's model that can be saved but never loaded back."""

    def predict(self, features: Mapping[str, np.ndarray]) -> Predictions:
        return Predictions(labels=np.full(len(next(iter(features.values()))), "1"))

    def save(self, directory: Path) -> None:
        (directory / "model.txt").write_text("1", encoding="utf-8")


def train_unloadable(train: LabelledDataset, monitor: MonitorConfig, options: Any) -> Any:
    """A user's training function whose model has no load(directory)."""
    return Unloadable()


def test_a_user_training_function_named_by_import_path_trains(tmp_path: Path) -> None:
    monitor = MonitorConfig.from_yaml(
        f"""
model_id: user-fn
features: {{x0: numeric, x1: numeric, x2: numeric, region: categorical}}
training:
  function: {__name__}:train_majority
  max_epochs: 7
  promotion_margin: 0.01
"""
    )
    train, holdout = tabular(400, "binary_classification", seed=16).time_split(0.25)
    model, report = train_model(train, monitor, TrainingOptions(device="cpu"))
    assert isinstance(model, MajorityPredictor)
    assert report.function == f"{__name__}:train_majority" and report.rows == len(train)
    assert SEEN_OPTIONS[-1].max_epochs == 7  # the monitor's override reached the function
    score = score_predictor(model, holdout, monitor)
    assert score.metrics["accuracy"] == pytest.approx(float(np.mean(holdout.labels == model.label)))
    store = ArtifactStore(tmp_path)
    uri = store.save(model, "user-fn", "v1", {})
    again = store.load_predictor(uri)
    assert isinstance(again, MajorityPredictor) and again.label == model.label


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_such_module_for_driftline:fit", "cannot import module 'no_such_module_for_driftline'"),
        (f"{__name__}:missing_function", "has no attribute 'missing_function'"),
        (f"{__name__}:train_nothing", "returned int, which is not a predictor"),
        (f"{__name__}:train_and_crash", "raised ZeroDivisionError: division by zero in fit"),
        (f"{__name__}:train_unloadable", "returned Unloadable, which has no load"),
    ],
)
def test_a_bad_training_function_gives_an_error_naming_it(path: str, message: str) -> None:
    monitor = monitor_for("binary_classification", function=path)
    train = tabular(50, "binary_classification", seed=17)
    with pytest.raises(TrainingFunctionError, match=message) as info:
        train_model(train, monitor)
    assert f"training.function {path!r}" in str(info.value)


def test_the_training_section_is_validated_and_overrides_the_options() -> None:
    with pytest.raises(MonitorConfigError, match=r"training\.max_epoch: unknown key"):
        monitor_for("binary_classification", max_epoch=3)
    with pytest.raises(MonitorConfigError, match=r"package\.module:function"):
        monitor_for("binary_classification", function="not a path")
    with pytest.raises(MonitorConfigError, match=r"training\.metric: 'rmse' is not a multiclass"):
        monitor_for("multiclass", metric="rmse")
    monitor = monitor_for("regression", hidden_layers=[16], batch_size=64, seed=5)
    assert monitor.training_metric == "mae"
    assert monitor_for("binary_classification", metric="roc_auc").training_metric == "roc_auc"
    options = resolve_options(TrainingOptions(max_epochs=9, seed=1), monitor)
    assert (options.hidden_layers, options.batch_size, options.seed, options.max_epochs) == (
        (16,),
        64,
        5,
        9,
    )


def test_the_dataset_and_scoring_modules_do_not_import_torch() -> None:
    code = (
        "import sys, driftline.retrainer, driftline.retrainer.evaluation, "
        "driftline.retrainer.dataset, driftline.retrainer.preprocessing\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_cuda_is_refused_with_a_clear_error_when_there_is_no_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    data = tabular(50, "binary_classification", seed=18)
    with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
        train_mlp(data, monitor_for("binary_classification"), TrainingOptions(device="cuda"))


def test_a_versions_reference_performance_is_its_holdouts_not_its_training_fit() -> None:
    """A model that memorised its training rows (right on every one) and is right on
    70% of the holdout: the profile judges its live windows against the 70%, so the
    learned thresholds do not alert on an honest model for not being perfect."""
    from driftline.retrainer.worker import training_profile

    rng = np.random.default_rng(3)

    def dataset(n: int, start: float) -> LabelledDataset:
        return LabelledDataset(
            features={"x": rng.normal(size=n)},
            labels=rng.integers(0, 2, n).astype(str),
            timestamps=start + np.arange(n, dtype=np.float64),
            event_ids=np.array([f"e{start}-{i}" for i in range(n)]),
        )

    train, holdout = dataset(3_000, 0.0), dataset(1_000, 10_000.0)
    known = {float(x): label for x, label in zip(train.features["x"], train.labels, strict=True)}
    right = rng.random(len(holdout)) < 0.7
    holdout_guess = {
        float(x): (label if ok else str(1 - int(label)))
        for x, label, ok in zip(holdout.features["x"], holdout.labels, right, strict=True)
    }

    class Memorised:
        def predict(self, features: Mapping[str, Any]) -> Predictions:
            said = [known.get(float(x), holdout_guess.get(float(x), "0")) for x in features["x"]]
            return Predictions(labels=np.array(said))

    monitor = MonitorConfig(model_id="m", features={"x": "numeric"}, window="10m")
    fitted = training_profile(Memorised(), train, monitor, "v2")
    honest = training_profile(Memorised(), train, monitor, "v2", holdout)
    assert fitted.reference_performance.metrics["accuracy"].value == 1.0  # type: ignore[union-attr]
    accuracy = honest.reference_performance.metrics["accuracy"]  # type: ignore[union-attr]
    assert accuracy.n == 1_000 and abs(accuracy.value - right.mean()) < 1e-12  # type: ignore[operator]
    assert honest.features == fitted.features  # drift is still judged against training data
    assert honest.performance_spread["accuracy"].windows == 3  # 10,000-11,000 s: 3 windows


def test_a_retrained_versions_profile_has_the_monitors_segment_slices() -> None:
    """With a segments section, the store's rows carry each event's segment to the
    version's profile: slices of the training rows over the version's bins, each
    slice's reference performance from the holdout rows of that slice."""
    from driftline.detectors.segments import rebin
    from driftline.retrainer.dataset import from_rows
    from driftline.retrainer.worker import training_profile

    rng = np.random.default_rng(5)
    n = 4_000
    countries = rng.choice(["de", "fr", "it"], n, p=[0.6, 0.3, 0.1])
    rows = [
        {
            "event_id": f"e{i}",
            "timestamp": 1_767_225_600.0 + i,
            "features_num": {"x": float(rng.normal())},
            "features_cat": {},
            "segment": {"country": str(countries[i])} if i % 10 else {},
            "label_value": None,
            "label_class": str(int(countries[i] == "de")),
        }
        for i in range(n)
    ]
    monitor = MonitorConfig.from_mapping(
        {
            "model_id": "m",
            "features": {"x": "numeric"},
            "window": "10m",
            "segments": {"keys": ["country"], "max_values": 2},
        }
    )
    data = from_rows(rows, monitor)
    assert data.segments["country"][:3].tolist() == ["", countries[1], countries[2]]
    train, holdout = data.time_split(0.25)

    class AlwaysOne:
        def predict(self, features: Mapping[str, Any]) -> Predictions:
            return Predictions(labels=np.full(len(features["x"]), "1"))

    profile = training_profile(AlwaysOne(), train, monitor, "v2", holdout)
    slices = profile.segments["country"]
    assert list(slices) == ["de", "fr", "_other"]  # it and the events without one pooled
    for value, part in slices.items():
        mine = train.segments["country"] == value
        if value == "_other":
            mine = ~np.isin(train.segments["country"], ["de", "fr"])
        assert part.features["x"] == rebin(profile.features["x"], train.features["x"][mine])
        held = holdout.segments["country"] == value
        if value == "_other":
            held = ~np.isin(holdout.segments["country"], ["de", "fr"])
        accuracy = part.reference_performance.metrics["accuracy"]  # type: ignore[union-attr]
        assert accuracy.n == int(held.sum())
        assert accuracy.value == pytest.approx(float(np.mean(holdout.labels[held] == "1")))
    assert slices["de"].reference_performance.metrics["accuracy"].value == 1.0  # type: ignore[union-attr]


@pytest.mark.parametrize("task", ["binary_classification", "multiclass"])
def test_a_retrained_versions_calibration_comes_from_its_holdout(task: str) -> None:
    """Label-free estimation of a retrained version: the calibration is fitted on the
    holdout's rows (the model is over-confident on rows it trained on), for the whole
    model and its slices; a multiclass version calibrates its predicted class's score."""
    from driftline.retrainer.worker import training_profile

    rng = np.random.default_rng(9)
    classes = ("0", "1") if task == "binary_classification" else ("a", "b", "c")

    def dataset(n: int, start: float) -> LabelledDataset:
        return LabelledDataset(
            features={"x": rng.normal(size=n)},
            labels=rng.choice(classes, n),
            timestamps=start + np.arange(n, dtype=np.float64),
            event_ids=np.array([f"e{start}-{i}" for i in range(n)]),
            segments={"country": rng.choice(["de", "fr"], n)},
        )

    class Confident:
        def predict(self, features: Mapping[str, Any]) -> Predictions:
            n = len(features["x"])
            scores = rng.dirichlet(np.ones(len(classes)) * 0.3, size=n)
            labels = np.array(classes)[scores.argmax(axis=1)]
            return Predictions(labels=labels, scores=scores, classes=classes)

    monitor = MonitorConfig.from_mapping(
        {
            "model_id": "m",
            "task": task,
            "features": {"x": "numeric"},
            "window": "10m",
            "performance": {"estimation": {}},
            "segments": {"keys": ["country"]},
        }
    )
    train, holdout = dataset(3_000, 0.0), dataset(1_500, 10_000.0)
    profile = training_profile(Confident(), train, monitor, "v2", holdout)
    assert profile.calibration is not None and profile.calibration.n == 1_500
    for part in profile.segments["country"].values():
        assert part.calibration == profile.calibration
