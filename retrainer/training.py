"""Training a model on labelled rows: the built-in MLP or a user's own function.

:func:`train_model` is the one entry point. It resolves the options (the
monitor's ``training:`` overrides win over the options passed in), then either
calls the user's function named by ``training.function`` (``package.module:function``,
called as ``function(train, monitor, options)`` and returning a
:class:`~driftline.retrainer.evaluation.Predictor` whose class has a
``load(directory)`` class method, so the registry can load it back) or trains the built-in
:class:`~driftline.retrainer.model.TabularMLP` with :func:`train_mlp`.

The built-in trainer fits a :class:`~driftline.retrainer.preprocessing.Preprocessor`
on the training rows, carves the newest ``validation_fraction`` of them off as the
validation split for early stopping, and trains with AdamW on shuffled mini-batches
(cross-entropy, or mean squared error on the standardised target). It keeps the
weights of the epoch with the lowest validation loss. On CUDA with
``mixed_precision`` it runs under ``torch.autocast`` (bfloat16 where the GPU
supports it, else float16 with a gradient scaler). It is seeded: the same rows,
options and seed on the CPU give the same weights and predictions.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from driftline.schemas.monitor import MonitorConfig, TrainingConfig
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from .dataset import LabelledDataset
from .evaluation import Predictions, Predictor
from .model import MLPArchitecture, TabularMLP
from .preprocessing import Preprocessor

__all__ = [
    "MODEL_FILE",
    "PREPROCESSING_FILE",
    "WEIGHTS_FILE",
    "Predictions",
    "Predictor",
    "TrainedModel",
    "TrainingFunctionError",
    "TrainingOptions",
    "TrainingReport",
    "load_training_function",
    "resolve_options",
    "train_mlp",
    "train_model",
]

_LOG = logging.getLogger(__name__)

#: File names inside a saved model's directory.
WEIGHTS_FILE = "weights.pt"
PREPROCESSING_FILE = "preprocessing.json"
MODEL_FILE = "model.json"
_FORMAT = "driftline.mlp/1"
_PREDICT_CHUNK = 65_536


class TrainingOptions(BaseModel):
    """Options of the built-in trainer.

    ``validation_fraction`` is the share of the training rows, the newest, used for
    early stopping: training stops after ``patience`` epochs without the validation
    loss improving by more than ``min_delta``. ``device`` ``"auto"`` picks CUDA when
    it is available. ``mixed_precision`` applies on CUDA only. ``num_threads`` sets
    torch's CPU threads (left out: torch's default).

    Examples
    --------
    >>> opts = TrainingOptions()
    >>> opts.hidden_layers, opts.batch_size, opts.max_epochs, opts.patience, opts.device
    ((128, 64), 1024, 20, 3, 'auto')
    >>> TrainingOptions(max_epochs=5).with_overrides(TrainingConfig(max_epochs=2)).max_epochs
    2
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden_layers: tuple[int, ...] = (128, 64)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    learning_rate: float = Field(default=2e-3, gt=0, allow_inf_nan=False)
    batch_size: int = Field(default=1024, ge=1)
    max_epochs: int = Field(default=20, ge=1)
    patience: int = Field(default=3, ge=1)
    min_delta: float = Field(default=1e-4, ge=0, allow_inf_nan=False)
    weight_decay: float = Field(default=1e-4, ge=0, allow_inf_nan=False)
    validation_fraction: float = Field(default=0.1, gt=0, lt=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: bool = True
    num_threads: int | None = Field(default=None, ge=1)

    def with_overrides(self, training: TrainingConfig) -> TrainingOptions:
        """These options with the monitor config's ``training:`` overrides applied."""
        names = ("hidden_layers", "max_epochs", "patience", "learning_rate", "batch_size", "seed")
        changes = {name: getattr(training, name) for name in names}
        return self.model_copy(update={k: v for k, v in changes.items() if v is not None})


class TrainingReport(BaseModel):
    """What a training run did.

    ``train_loss``/``validation_loss`` hold one value per epoch run; ``best_epoch``
    (1-based) is the epoch whose weights were kept. A user's training function
    reports no epochs (``function`` names it).

    Examples
    --------
    >>> r = TrainingReport(epochs_run=2, best_epoch=2, train_loss=(0.7, 0.5),
    ...                    validation_loss=(0.6, 0.55), device="cpu", mixed_precision=False,
    ...                    precision="float32", seconds=0.1, rows=100, train_rows=90,
    ...                    validation_rows=10, stopped_early=False)
    >>> r.best_validation_loss
    0.55
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs_run: int = Field(ge=0)
    best_epoch: int = Field(ge=0)
    train_loss: tuple[float, ...] = ()
    validation_loss: tuple[float, ...] = ()
    device: str
    mixed_precision: bool
    precision: str
    seconds: float = Field(ge=0)
    rows: int = Field(ge=0)
    train_rows: int = Field(ge=0)
    validation_rows: int = Field(ge=0)
    stopped_early: bool
    function: str | None = None

    @property
    def best_validation_loss(self) -> float | None:
        """Validation loss of the kept epoch."""
        if self.best_epoch < 1 or self.best_epoch > len(self.validation_loss):
            return None
        return self.validation_loss[self.best_epoch - 1]


class TrainingFunctionError(ValueError):
    """A user's training function could not be imported, raised, or returned no predictor."""


class TrainedModel:
    """The built-in model: preprocessing plus a :class:`TabularMLP`.

    Examples
    --------
    >>> import tempfile
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=200)
    >>> train = LabelledDataset(features={"x": x}, labels=np.where(x > 0, "1", "0"),
    ...                         timestamps=np.arange(200.0),
    ...                         event_ids=np.array([str(i) for i in range(200)]))
    >>> monitor = MonitorConfig(model_id="m", features={"x": "numeric"})
    >>> opts = TrainingOptions(hidden_layers=(8,), batch_size=32, learning_rate=0.05, device="cpu")
    >>> model, report = train_mlp(train, monitor, opts)
    >>> p = model.predict({"x": np.array([-3.0, 3.0])})
    >>> p.labels.tolist(), p.scores.shape, model.classes
    (['0', '1'], (2, 2), ('0', '1'))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     model.save(Path(tmp))
    ...     again = TrainedModel.load(Path(tmp))
    >>> bool((again.predict({"x": x}).scores == model.predict({"x": x}).scores).all())
    True
    """

    def __init__(
        self, preprocessor: Preprocessor, network: TabularMLP, device: str = "cpu"
    ) -> None:
        self.preprocessor = preprocessor
        self.network = network.to(device).eval()
        self.device = device

    @property
    def task(self) -> str:
        """The monitor task the model was trained for."""
        return self.preprocessor.task

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes of the score columns (empty for regression)."""
        return self.preprocessor.classes

    @property
    def architecture(self) -> MLPArchitecture:
        """The network's shape."""
        return self.network.architecture

    def predict(self, features: Mapping[str, np.ndarray]) -> Predictions:
        """Predict for feature columns (missing values and unseen categories allowed).

        Raises
        ------
        ValueError
            When a feature the model was trained on is missing.
        """
        matrix = self.preprocessor.transform(features)
        outputs = []
        self.network.eval()
        with torch.inference_mode():
            for start in range(0, matrix.shape[0], _PREDICT_CHUNK):
                chunk = torch.from_numpy(matrix[start : start + _PREDICT_CHUNK]).to(self.device)
                out = self.network(chunk).float()
                if self.task != "regression":
                    out = torch.softmax(out, dim=1)
                outputs.append(out.cpu().numpy().astype(np.float64))
        width = self.preprocessor.n_outputs
        result = np.concatenate(outputs) if outputs else np.zeros((0, width))
        if self.task == "regression":
            return Predictions(labels=self.preprocessor.decode_targets(result[:, 0]))
        classes = np.asarray(self.classes, dtype=str)
        return Predictions(
            labels=classes[result.argmax(axis=1)], scores=result, classes=self.classes
        )

    def save(self, directory: Path) -> None:
        """Write weights, preprocessing and metadata into ``directory`` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {name: tensor.detach().cpu() for name, tensor in self.network.state_dict().items()}
        torch.save(state, directory / WEIGHTS_FILE)
        (directory / PREPROCESSING_FILE).write_text(self.preprocessor.to_json(), encoding="utf-8")
        meta = {
            "format": _FORMAT,
            "task": self.task,
            "classes": list(self.classes),
            "architecture": self.architecture.model_dump(mode="json"),
            "torch": torch.__version__,
        }
        (directory / MODEL_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, device: str = "cpu") -> TrainedModel:
        """Read a model written by :meth:`save` onto ``device``.

        Raises
        ------
        ValueError
            When the directory holds no driftline model or a file is damaged.
        """
        directory = Path(directory)
        meta_path = directory / MODEL_FILE
        if not meta_path.is_file():
            raise ValueError(f"{directory} holds no driftline model ({MODEL_FILE} is missing)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{meta_path}: unknown model format {meta.get('format')!r}")
        preprocessor = Preprocessor.from_json(
            (directory / PREPROCESSING_FILE).read_text(encoding="utf-8")
        )
        network = MLPArchitecture.model_validate(meta["architecture"]).build()
        state = torch.load(directory / WEIGHTS_FILE, map_location=device, weights_only=True)
        network.load_state_dict(state)
        return cls(preprocessor, network, device=device)


def resolve_options(options: TrainingOptions | None, monitor: MonitorConfig) -> TrainingOptions:
    """``options`` (or the defaults) with ``monitor.training``'s overrides applied."""
    return (options or TrainingOptions()).with_overrides(monitor.training)


def load_training_function(path: str) -> Callable[..., Any]:
    """Import ``package.module:function``.

    Raises
    ------
    TrainingFunctionError
        Naming the path, when it is malformed, the module does not import, or the
        attribute is missing or not callable.
    """
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise TrainingFunctionError(
            f"training.function {path!r}: write the import path as package.module:function"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise TrainingFunctionError(
            f"training.function {path!r}: cannot import module {module_name!r}: {exc}"
        ) from exc
    function = module
    for part in attribute.split("."):
        if not hasattr(function, part):
            raise TrainingFunctionError(
                f"training.function {path!r}: module {module_name!r} has no attribute {attribute!r}"
            )
        function = getattr(function, part)
    if not callable(function):
        raise TrainingFunctionError(f"training.function {path!r}: {attribute!r} is not callable")
    return function


def train_model(
    train: LabelledDataset,
    monitor: MonitorConfig,
    options: TrainingOptions | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> tuple[Predictor, TrainingReport]:
    """Train a model for ``monitor`` on ``train``: the user's function or the built-in MLP.

    Raises
    ------
    TrainingFunctionError
        When ``training.function`` cannot be imported, raises, or returns no predictor
        (one with ``predict``, ``save`` and a ``load(directory)`` class method).
    ValueError
        When the data cannot train a model (too few rows, one class, missing features).
    """
    resolved = resolve_options(options, monitor)
    path = monitor.training.function
    if path is None:
        return train_mlp(train, monitor, resolved, log=log)
    function = load_training_function(path)
    emit = log or _LOG.info
    emit(f"training {monitor.model_id} with {path} on {len(train)} rows")
    started = time.perf_counter()
    try:
        model = function(train, monitor, resolved)
    except Exception as exc:  # the user's code: its failure is this request's, not ours
        raise TrainingFunctionError(
            f"training.function {path!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    seconds = time.perf_counter() - started
    if isinstance(model, tuple) or not isinstance(model, Predictor):
        raise TrainingFunctionError(
            f"training.function {path!r} returned {type(model).__name__}, which is not a "
            "predictor: return an object with predict(features) -> Predictions and "
            "save(directory)"
        )
    if not callable(getattr(type(model), "load", None)):
        raise TrainingFunctionError(
            f"training.function {path!r} returned {type(model).__name__}, which has no "
            "load(directory) class method: the registry could not load the saved model back"
        )
    emit(f"{path} trained in {seconds:.2f} s")
    report = TrainingReport(
        epochs_run=0,
        best_epoch=0,
        device="user",
        mixed_precision=False,
        precision="unknown",
        seconds=seconds,
        rows=len(train),
        train_rows=len(train),
        validation_rows=0,
        stopped_early=False,
        function=path,
    )
    return model, report


def _device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no CUDA GPU")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def _amp_dtype(device: torch.device, wanted: bool) -> torch.dtype | None:
    if not wanted or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def train_mlp(
    train: LabelledDataset,
    monitor: MonitorConfig,
    options: TrainingOptions | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> tuple[TrainedModel, TrainingReport]:
    """Train the built-in MLP on ``train`` with ``options`` as given (no overrides applied).

    Raises
    ------
    ValueError
        When ``train`` has fewer than 2 rows, one class only, or lacks a feature, or
        CUDA is asked for but missing.
    """
    opts = options or TrainingOptions()
    emit = log or _LOG.info
    if len(train) < 2:
        raise ValueError(f"need at least 2 labelled rows to train, got {len(train)}")
    started = time.perf_counter()
    device = _device(opts.device)
    if opts.num_threads is not None:
        torch.set_num_threads(opts.num_threads)
    preprocessor = Preprocessor.fit(train, monitor)
    fit_part, validation = train.time_split(opts.validation_fraction)
    x_fit, y_fit = _tensors(preprocessor, fit_part, device)
    x_val, y_val = _tensors(preprocessor, validation, device)
    regression = preprocessor.task == "regression"
    loss_fn: nn.Module = nn.MSELoss() if regression else nn.CrossEntropyLoss()
    amp_dtype = _amp_dtype(device, opts.mixed_precision)
    architecture = MLPArchitecture(
        input_dim=preprocessor.width,
        hidden_layers=opts.hidden_layers,
        n_outputs=preprocessor.n_outputs,
        dropout=opts.dropout,
    )
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(opts.seed)
        network = architecture.build().to(device)
        generator = torch.Generator().manual_seed(opts.seed)
        optimizer = torch.optim.AdamW(
            network.parameters(), lr=opts.learning_rate, weight_decay=opts.weight_decay
        )
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        train_losses: list[float] = []
        val_losses: list[float] = []
        best_loss, best_epoch, waited = math.inf, 0, 0
        best_state = copy.deepcopy(network.state_dict())
        autocast_seen = False
        emit(
            f"training {monitor.model_id} ({monitor.task}) on {len(fit_part)} rows, validating "
            f"on {len(validation)}, {preprocessor.width} inputs, device {device.type}"
            + (f", mixed precision {str(amp_dtype).removeprefix('torch.')}" if amp_dtype else "")
        )
        n = x_fit.shape[0]
        for epoch in range(1, opts.max_epochs + 1):
            network.train()
            order = torch.randperm(n, generator=generator).to(device)
            total = torch.zeros((), device=device)
            for start in range(0, n, opts.batch_size):
                batch = order[start : start + opts.batch_size]
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    autocast_seen = autocast_seen or torch.is_autocast_enabled(device.type)
                    out = network(x_fit[batch])
                loss = _loss(loss_fn, out, y_fit[batch], regression)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total += loss.detach() * batch.numel()
            train_loss = float(total.item()) / n
            val_loss = _evaluate(network, loss_fn, x_val, y_val, regression, device, amp_dtype)
            train_losses.append(train_loss)
            val_losses.append(val_loss)
            improved = val_loss < best_loss - opts.min_delta
            if improved:
                best_loss, best_epoch, waited = val_loss, epoch, 0
                best_state = copy.deepcopy(network.state_dict())
            else:
                waited += 1
            emit(
                f"epoch {epoch}/{opts.max_epochs}: train loss {train_loss:.5f}, "
                f"validation loss {val_loss:.5f}" + (" (best)" if improved else "")
            )
            if waited >= opts.patience:
                break
    network.load_state_dict(best_state)
    seconds = time.perf_counter() - started
    stopped_early = len(train_losses) < opts.max_epochs
    emit(
        f"trained {monitor.model_id} in {seconds:.2f} s: {len(train_losses)} epoch(s), "
        f"best epoch {best_epoch}" + (" (early stop)" if stopped_early else "")
    )
    report = TrainingReport(
        epochs_run=len(train_losses),
        best_epoch=best_epoch,
        train_loss=tuple(train_losses),
        validation_loss=tuple(val_losses),
        device=device.type,
        mixed_precision=autocast_seen,
        precision=str(amp_dtype).removeprefix("torch.") if autocast_seen else "float32",
        seconds=seconds,
        rows=len(train),
        train_rows=len(fit_part),
        validation_rows=len(validation),
        stopped_early=stopped_early,
    )
    return TrainedModel(preprocessor, network, device=str(device)), report


def _tensors(
    preprocessor: Preprocessor, data: LabelledDataset, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(preprocessor.transform(data.features)).to(device)
    y = torch.from_numpy(preprocessor.encode_labels(data.labels)).to(device)
    return x, y


def _loss(loss_fn: nn.Module, out: torch.Tensor, target: torch.Tensor, regression: bool) -> Any:
    out = out.float()
    return loss_fn(out[:, 0], target) if regression else loss_fn(out, target)


def _evaluate(
    network: nn.Module,
    loss_fn: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    regression: bool,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> float:
    network.eval()
    total = 0.0
    with torch.inference_mode():
        for start in range(0, x.shape[0], _PREDICT_CHUNK):
            stop = start + _PREDICT_CHUNK
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out = network(x[start:stop])
            total += float(_loss(loss_fn, out, y[start:stop], regression).item()) * (
                min(stop, x.shape[0]) - start
            )
    return total / x.shape[0]
