"""The YAML monitor config: defaults, durations, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from driftline.schemas.monitor import (
    DEFAULT_THRESHOLDS,
    DRIFT_METHODS,
    MonitorConfig,
    MonitorConfigError,
    parse_duration,
)

FULL = """
model_id: credit
task: binary_classification   # binary_classification | multiclass | regression
features: {income: numeric, age: numeric, region: categorical}
window: 1h                     # s, m, h, d units
allowed_lateness: 10m
drift:
  numeric:     {method: psi, warning: 0.1, critical: 0.25}
  categorical: {method: psi, warning: 0.1, critical: 0.25}
  prediction:  {method: psi, warning: 0.1, critical: 0.25}
  min_samples: 200
  fdr: 0.05
performance: {metric: accuracy, warning_drop: 0.03, critical_drop: 0.05, min_labels: 100}
alerting: {consecutive_windows: 1, cooldown: 2h}
retrain: {on: [performance, data_drift], min_labelled_rows: 1000, cooldown: 6h}
"""


def _error(text: str) -> str:
    with pytest.raises(MonitorConfigError) as info:
        MonitorConfig.from_yaml(text)
    return str(info.value)


def test_the_documented_example_loads(tmp_path: Path) -> None:
    cfg = MonitorConfig.from_yaml(FULL)
    assert cfg.model_id == "credit"
    assert cfg.features == {"income": "numeric", "age": "numeric", "region": "categorical"}
    assert (cfg.window_seconds, cfg.allowed_lateness_seconds) == (3600.0, 600.0)
    assert cfg.alerting.cooldown_seconds == 7200.0
    assert cfg.retrain.cooldown_seconds == 21600.0
    assert cfg.retrain.on == ("performance", "data_drift")  # "on" is a key, not True
    assert cfg.quality.null_rate.warning == 0.05
    assert cfg.bins == 10
    path = tmp_path / "credit.yaml"
    path.write_text(FULL)
    assert MonitorConfig.from_yaml(path) == cfg
    assert MonitorConfig.from_yaml(str(path)) == cfg


def test_defaults_fill_what_is_left_out() -> None:
    cfg = MonitorConfig.from_yaml("model_id: m\nfeatures: {x: numeric}\n")
    assert cfg.task == "binary_classification"
    assert cfg.drift.numeric.method == "psi"
    assert (cfg.drift.min_samples, cfg.drift.fdr) == (200, 0.05)
    assert cfg.performance_metric == "accuracy"
    assert cfg.alerting.consecutive_windows == 1
    reg = MonitorConfig.from_yaml("model_id: m\ntask: regression\nfeatures: {x: numeric}\n")
    assert reg.performance_metric == "mae"


@pytest.mark.parametrize("method", DRIFT_METHODS)
def test_every_statistic_is_a_method_with_default_thresholds(method: str) -> None:
    cfg = MonitorConfig.from_yaml(
        f"model_id: m\ntask: regression\nfeatures: {{x: numeric}}\n"
        f"drift: {{numeric: {{method: {method}}}, prediction: {{method: {method}}}}}\n"
    )
    assert cfg.drift.numeric.method == method
    assert (cfg.drift.numeric.warning, cfg.drift.numeric.critical) == DEFAULT_THRESHOLDS[method]


def test_unknown_key_names_the_key_path() -> None:
    msg = _error("model_id: m\nfeatures: {x: numeric}\ndrift:\n  numeric: {methd: psi}\n")
    assert "drift.numeric.methd: unknown key" in msg
    assert "top_level: unknown key" in _error("model_id: m\nfeatures: {x: numeric}\ntop_level: 1")


@pytest.mark.parametrize("value", ["1x", "ten minutes", "-5m", "h", "true"])
def test_bad_duration_names_the_key(value: str) -> None:
    msg = _error(f"model_id: m\nfeatures: {{x: numeric}}\nalerting: {{cooldown: {value}}}\n")
    assert "alerting.cooldown: invalid duration" in msg


def test_zero_window_is_rejected() -> None:
    msg = _error("model_id: m\nfeatures: {x: numeric}\nwindow: 0s")
    assert "window: window must be longer" in msg


def test_bad_method_names_the_key() -> None:
    msg = _error("model_id: m\nfeatures: {x: numeric}\ndrift: {numeric: {method: kl}}\n")
    assert "drift.numeric.method: 'kl' is not allowed" in msg
    msg = _error("model_id: m\nfeatures: {x: numeric}\ndrift: {categorical: {method: ks}}\n")
    assert "drift.categorical.method: 'ks' needs ordered values" in msg
    msg = _error("model_id: m\nfeatures: {x: numeric}\ndrift: {prediction: {method: wasserstein}}")
    assert "drift.prediction.method" in msg


def test_other_bad_values_name_their_keys() -> None:
    msg = _error(
        "features: {x: numerical}\ndrift: {numeric: {warning: 0.5, critical: 0.2}, fdr: 2}\n"
        "performance: {metric: rmse}\nretrain: {on: [everything]}\n"
    )
    assert "model_id: required key is missing" in msg
    assert "features.x: 'numerical' is not allowed" in msg
    assert "drift.numeric: warning (0.5) must not exceed critical (0.2)" in msg
    assert "drift.fdr:" in msg
    assert "retrain.on.0:" in msg
    assert "performance.metric" in _error(
        "model_id: m\nfeatures: {x: numeric}\nperformance: {metric: rmse}"
    )


def test_yaml_that_is_not_a_mapping() -> None:
    assert "<root>" in _error("- just\n- a list\n")
    assert "<yaml>" in _error("model_id: [unclosed\n")


def test_config_is_frozen() -> None:
    cfg = MonitorConfig.from_yaml(FULL)
    with pytest.raises(ValueError):
        cfg.model_id = "other"


def test_parse_duration() -> None:
    assert parse_duration("30s") == 30.0
    assert parse_duration("1.5h") == 5400.0
    assert parse_duration("2d") == 172800.0
    assert parse_duration(45) == 45.0
    for bad in ("1w", "", "m5", True, None, -1):
        with pytest.raises(ValueError):
            parse_duration(bad)
