"""Model artifacts under an artifact root: one directory per model version.

A version lives at ``<root>/<model_id>/<version>/`` and holds what the model's
``save`` writes (for the built-in model: weights, preprocessing JSON and model
metadata) plus ``artifact.json``: the caller's metadata and the import path of
the model's class. It is written into a temporary directory beside it and then
renamed into place, so a reader sees a whole version or none, and saving a version
that already exists changes nothing (unless the caller asks to replace it: the
retrainer does, for the leftover of an attempt that crashed before its registry
row). Versions are addressed by ``file://`` URIs.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from .evaluation import Predictor
from .training import TrainedModel

__all__ = ["ARTIFACT_FILE", "ArtifactStore"]

#: The metadata file of every stored version.
ARTIFACT_FILE = "artifact.json"
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _SAFE.match(value) or value in {".", ".."}:
        raise ValueError(
            f"{kind} {value!r} cannot name an artifact directory: use letters, digits, "
            "'.', '_' and '-' (not starting with '.', '_' or '-')"
        )
    return value


class ArtifactStore:
    """Versioned model artifacts under a local root directory.

    Examples
    --------
    >>> import tempfile
    >>> class Constant:
    ...     def predict(self, features): ...
    ...     def save(self, directory):
    ...         (directory / "value.txt").write_text("1")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     store = ArtifactStore(Path(tmp))
    ...     uri = store.save(Constant(), "credit", "v2", {"request_id": "r1"})
    ...     again = store.save(Constant(), "credit", "v2", {"request_id": "r1"})
    ...     print(uri == again, uri.startswith("file://"), store.exists("credit", "v2"))
    ...     print(store.metadata(uri)["metadata"])
    True True True
    {'request_id': 'r1'}
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()

    def directory_for(self, model_id: str, version: str) -> Path:
        """The directory of a version (whether or not it exists)."""
        return self.root / _check_name("model_id", model_id) / _check_name("version", version)

    def uri_for(self, model_id: str, version: str) -> str:
        """The ``file://`` URI of a version."""
        return self.directory_for(model_id, version).as_uri()

    def exists(self, model_id: str, version: str) -> bool:
        """Whether the version is stored (completely)."""
        return (self.directory_for(model_id, version) / ARTIFACT_FILE).is_file()

    def save(
        self,
        model: Predictor,
        model_id: str,
        version: str,
        metadata: Mapping[str, Any],
        *,
        files: Mapping[str, str] | None = None,
        replace: bool = False,
    ) -> str:
        """Store ``model`` as ``model_id``/``version`` and return its URI.

        ``files`` are extra text files (name to content) stored beside the model.
        Saving a version that already exists leaves it as it is (idempotent), unless
        ``replace``: then the new copy takes its place whole (for a version that no
        registry row refers to yet, such as the leftover of a crashed attempt).

        Raises
        ------
        ValueError
            When a name cannot be a directory or file name, or ``metadata`` is not JSON.
        """
        target = self.directory_for(model_id, version)
        if not replace and self.exists(model_id, version):
            return target.as_uri()
        extra = {_check_name("file", name): text for name, text in (files or {}).items()}
        if ARTIFACT_FILE in extra:
            raise ValueError(f"file {ARTIFACT_FILE!r} is the artifact's own metadata")
        record = {
            "model_id": model_id,
            "version": version,
            "predictor": f"{type(model).__module__}:{type(model).__qualname__}",
            "metadata": dict(metadata),
        }
        try:
            text = json.dumps(record, indent=2, sort_keys=True, default=_json_default)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"artifact metadata is not JSON: {exc}") from exc
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=target.parent))
        try:
            model.save(staging)
            for name, content in extra.items():
                (staging / name).write_text(content, encoding="utf-8")
            (staging / ARTIFACT_FILE).write_text(text, encoding="utf-8")
            try:
                os.rename(staging, target)
            except OSError:
                if not target.exists():
                    raise
                if replace or not self.exists(model_id, version):
                    # the copy to replace, or an incomplete one a crashed writer left:
                    # move it aside first, so the version is never half old, half new
                    discarded = Path(tempfile.mkdtemp(prefix=f".{version}.old.", dir=target.parent))
                    os.rename(target, discarded / version)
                    os.rename(staging, target)
                    shutil.rmtree(discarded, ignore_errors=True)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return target.as_uri()

    def path_of(self, uri: str) -> Path:
        """The directory a ``file://`` URI (or a plain path) names.

        Raises
        ------
        ValueError
            When the URI is not a local file URI or holds no stored version.
        """
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path))
        elif parsed.scheme == "":
            path = Path(uri)
        else:
            raise ValueError(f"artifact URI {uri!r}: only file:// URIs are supported")
        if not (path / ARTIFACT_FILE).is_file():
            raise ValueError(f"artifact URI {uri!r} holds no stored model version")
        return path

    def metadata(self, uri: str) -> dict[str, Any]:
        """The ``artifact.json`` record of a stored version."""
        record: dict[str, Any] = json.loads(
            (self.path_of(uri) / ARTIFACT_FILE).read_text(encoding="utf-8")
        )
        return record

    def load(self, uri: str, device: str = "cpu") -> TrainedModel:
        """Load a built-in model stored at ``uri``.

        Raises
        ------
        ValueError
            When the URI holds no version, or a model not trained by the built-in
            trainer (use :meth:`load_predictor`).
        """
        path = self.path_of(uri)
        return TrainedModel.load(path, device=device)

    def load_predictor(self, uri: str) -> Predictor:
        """Load any stored model: the built-in one, or a user's class via its ``load``.

        A user's predictor class is loaded by calling its ``load(directory)``
        class method.

        Raises
        ------
        ValueError
            When the class cannot be imported or has no ``load``.
        """
        path = self.path_of(uri)
        name = str(self.metadata(uri).get("predictor", ""))
        if name == f"{TrainedModel.__module__}:{TrainedModel.__qualname__}":
            return TrainedModel.load(path)
        module_name, _, qualname = name.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ValueError(f"artifact {uri!r}: cannot import predictor {name!r}: {exc}") from exc
        loader = getattr(target, "load", None)
        if not callable(loader):
            raise ValueError(f"artifact {uri!r}: predictor {name!r} has no load(directory)")
        model = loader(path)
        if not isinstance(model, Predictor):
            raise ValueError(f"artifact {uri!r}: {name}.load returned no predictor")
        return model


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
