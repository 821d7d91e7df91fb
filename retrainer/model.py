"""The default network: a multilayer perceptron over the preprocessed feature matrix.

Classification (binary too) has one output per class, read through a softmax;
regression has one output, the standardised target. :class:`MLPArchitecture`
describes the network; it is stored with the weights so that a saved model loads
without the options that trained it.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

__all__ = ["MLPArchitecture", "TabularMLP"]


class MLPArchitecture(BaseModel):
    """Shape of a :class:`TabularMLP`.

    Examples
    --------
    >>> arch = MLPArchitecture(input_dim=6, hidden_layers=(16, 8), n_outputs=2)
    >>> arch.build().architecture == arch
    True
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_dim: int = Field(ge=1)
    hidden_layers: tuple[int, ...] = (128, 64)
    n_outputs: int = Field(ge=1)
    dropout: float = Field(default=0.0, ge=0, lt=1)

    def build(self) -> TabularMLP:
        """A freshly initialised network of this shape."""
        return TabularMLP(self)


class TabularMLP(nn.Module):
    """Linear, ReLU and dropout blocks, then a linear output layer.

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> net = TabularMLP(MLPArchitecture(input_dim=4, hidden_layers=(8,), n_outputs=3))
    >>> net(torch.zeros(5, 4)).shape
    torch.Size([5, 3])
    """

    def __init__(self, architecture: MLPArchitecture) -> None:
        super().__init__()
        self.architecture = architecture
        layers: list[nn.Module] = []
        width = architecture.input_dim
        for hidden in architecture.hidden_layers:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if architecture.dropout > 0:
                layers.append(nn.Dropout(architecture.dropout))
            width = hidden
        layers.append(nn.Linear(width, architecture.n_outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, classes)`` or standardised predictions ``(n, 1)``."""
        out: torch.Tensor = self.layers(x)
        return out
