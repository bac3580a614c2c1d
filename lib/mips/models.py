"""The paper's GeneralRNN: h_0 = 0, h_t = f([h_{t-1}, x_t]), y_t = g(h_t), with f and g small MLPs.

f and g have ReLU between layers and nothing after the last one, so depth 1 is an affine map and the
simplest network is a linear RNN. The concatenation is hidden first, then input: the first ``hidden_dim``
columns of f's first layer are the recurrent weights.

Hook names (shapes for a batch of B sequences of length T):
  hook_x  (B, T, input_dim)        the inputs as floats
  hook_h  (B, T + 1, hidden_dim)   hidden states h_0 .. h_T (h_0 = 0)
  hook_y  (B, T, output_dim)       outputs y_1 .. y_T (y_t = g(h_t))
Explained in notebooks/search.ipynb.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class RNNConfig:
    """Architecture of one GeneralRNN. Widths matter only when the matching depth is > 1."""

    input_dim: int
    output_dim: int
    hidden_dim: int
    hidden_depth: int = 1
    hidden_width: int = 0
    output_depth: int = 1
    output_width: int = 0

    def __post_init__(self):
        for name in ("input_dim", "output_dim", "hidden_dim", "hidden_depth", "output_depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"RNNConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_depth > 1 and self.hidden_width < 1:
            raise ValueError("hidden_width must be >= 1 when hidden_depth > 1")
        if self.output_depth > 1 and self.output_width < 1:
            raise ValueError("output_width must be >= 1 when output_depth > 1")

    def canonical(self) -> RNNConfig:
        """The same architecture with irrelevant widths zeroed (depth 1 ignores width)."""
        return RNNConfig(self.input_dim, self.output_dim, self.hidden_dim,
                         self.hidden_depth, self.hidden_width if self.hidden_depth > 1 else 0,
                         self.output_depth, self.output_width if self.output_depth > 1 else 0)

    @property
    def is_linear(self) -> bool:
        return self.hidden_depth == 1 and self.output_depth == 1

    def n_params(self) -> int:
        return sum(p.numel() for p in RNN(self).parameters())

    def label(self) -> str:
        c = self.canonical()
        f = f"f{c.hidden_depth}" + (f"x{c.hidden_width}" if c.hidden_depth > 1 else "")
        g = f"g{c.output_depth}" + (f"x{c.output_width}" if c.output_depth > 1 else "")
        return f"H={c.hidden_dim} {f} {g}"


def mlp_shape(d_in: int, d_out: int, width: int, depth: int) -> list[int]:
    """Layer sizes of an MLP: ``[d_in] + [width] * (depth - 1) + [d_out]``."""
    return [d_in] + [width] * (depth - 1) + [d_out]


class MLP(nn.Module):
    """Linear layers with ReLU between them and none after the last."""

    def __init__(self, d_in: int, d_out: int, width: int, depth: int):
        super().__init__()
        shp = mlp_shape(d_in, d_out, width, depth)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(shp[:-1], shp[1:], strict=True))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            z = layer(z)
            if i < len(self.layers) - 1:
                z = torch.relu(z)
        return z


class RNN(nn.Module):
    """GeneralRNN with hidden MLP f (H+I -> H) and output MLP g (H -> O)."""

    def __init__(self, config: RNNConfig):
        super().__init__()
        self.config = config
        c = config
        self.hidden_mlp = MLP(c.hidden_dim + c.input_dim, c.hidden_dim, c.hidden_width, c.hidden_depth)
        self.output_mlp = MLP(c.hidden_dim, c.output_dim, c.output_width, c.output_depth)

    def step(self, h: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """One update h_t = f([h_{t-1}, x_t])."""
        return self.hidden_mlp(torch.cat([h, x_t], dim=-1))

    def run_with_cache(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run a batch (B, T, I) and return every hook: hook_x, hook_h (with h_0), hook_y."""
        x = x.to(self.hidden_mlp.layers[0].weight.dtype)
        if x.dim() == 2:
            x = x.unsqueeze(-1)
        h = x.new_zeros(x.shape[0], self.config.hidden_dim)
        hs = [h]
        for t in range(x.shape[1]):
            h = self.step(h, x[:, t])
            hs.append(h)
        hook_h = torch.stack(hs, dim=1)
        return {"hook_x": x, "hook_h": hook_h, "hook_y": self.output_mlp(hook_h[:, 1:])}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs y (B, T, O) for inputs x (B, T, I)."""
        return self.run_with_cache(x)["hook_y"]


def save_model(model: RNN, path: Path) -> None:
    """Save weights and config together (a plain dict, loadable with weights_only=True)."""
    torch.save({"config": asdict(model.config), "state_dict": model.state_dict()}, path)


def load_model(path: Path, device: str = "cpu") -> RNN:
    """Inverse of :func:`save_model`."""
    blob = torch.load(path, map_location=device, weights_only=True)
    model = RNN(RNNConfig(**blob["config"]))
    model.load_state_dict(blob["state_dict"])
    return model.to(device)


@torch.no_grad()
def predict(model: RNN, x, batch_size: int = 65_536, device: str = "cpu") -> torch.Tensor:
    """Outputs for integer inputs x (n, T, I) in chunks, as float tensor (n, T, O) on the CPU."""
    x = torch.as_tensor(x)
    outs = [model(x[i:i + batch_size].to(device).float()).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(outs)


def accuracy(y_pred: torch.Tensor, y: torch.Tensor, loss: str = "log") -> float:
    """Fraction of positions (every time step and output dim) where the rounded output equals the target."""
    y = torch.as_tensor(y)
    if loss == "cross_entropy":
        return (y_pred.argmax(-1) == y.squeeze(-1)).float().mean().item()
    return (torch.round(y_pred) == y.to(y_pred.dtype)).float().mean().item()


def weight_blocks(model: RNN) -> list[tuple[str, torch.Tensor]]:
    """Every weight matrix (rows = inputs, columns = outputs) and bias, named; f's first layer is split
    into its recurrent part (from h_{t-1}) and its input part (from x_t). For plots and reports."""
    H = model.config.hidden_dim
    f, g = list(model.hidden_mlp.layers), list(model.output_mlp.layers)
    w0 = f[0].weight.detach().T
    blocks = [("f1 from h", w0[:H]), ("f1 from x", w0[H:]), ("f1 bias", f[0].bias.detach()[None])]
    for name, layers, start in (("f", f[1:], 2), ("g", g, 1)):
        for i, layer in enumerate(layers, start=start):
            blocks += [(f"{name}{i}", layer.weight.detach().T), (f"{name}{i} bias", layer.bias.detach()[None])]
    return [(name, b.cpu()) for name, b in blocks]


def weight_layers(model: RNN) -> list[tuple[str, torch.Tensor, list[str]]]:
    """Each layer as one augmented matrix (rows = inputs then a bias row ``1``, columns = outputs), named,
    with row labels: f's first layer reads h_1..h_H then x_1..x_I. For plots and reports."""
    c = model.config
    f, g = list(model.hidden_mlp.layers), list(model.output_mlp.layers)
    out = []
    for name, layers, first_rows in (("f", f, [f"h{i + 1}" for i in range(c.hidden_dim)]
                                      + [f"x{i + 1}" for i in range(c.input_dim)]),
                                     ("g", g, [f"h{i + 1}" for i in range(c.hidden_dim)])):
        rows = first_rows
        for i, layer in enumerate(layers):
            matrix = torch.cat([layer.weight.detach().T, layer.bias.detach()[None]]).cpu()
            out.append((f"{name} layer {i + 1}", matrix, rows + ["1"]))
            rows = [f"{name}{i + 1}.{j + 1}" for j in range(layer.weight.shape[0])]
    return out
