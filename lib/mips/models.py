"""The paper's GeneralRNN: h_0 = 0, h_t = f([h_{t-1}, e(x_t)]), y_t = g(h_t), with f and g small MLPs.

f and g have ReLU between layers and nothing after the last one, so depth 1 is an affine map and the
simplest network is a linear RNN. The concatenation is hidden first, then input: the first ``hidden_dim``
columns of f's first layer are the recurrent weights.

Two choices of representation, both search dimensions (the original code has them as ``vectorize_input``
and the ``cross_entropy`` loss):
- the input encoding e: the raw integers (``integer``), or one indicator per value of a small input
  alphabet (``one-hot``, ``input_alphabet``), so that any function of the current symbol is linear;
- the output head: a regression read by rounding (``regression``), or one logit per value of a small
  output alphabet read by arg-max (``classification``, ``output_alphabet``).

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
    input_alphabet: tuple[int, ...] = ()    # one-hot over these values per input dim; () = raw integers
    output_alphabet: tuple[int, ...] = ()   # one logit per value (classification); () = regression

    def __post_init__(self):
        for name in ("input_alphabet", "output_alphabet"):        # JSON and torch.save give lists back
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.output_alphabet and self.output_dim != 1:
            raise ValueError("a classification head needs output_dim == 1")
        for name in ("input_alphabet", "output_alphabet"):
            values = getattr(self, name)
            if list(values) != sorted(set(values)):
                raise ValueError(f"RNNConfig.{name} must be strictly increasing, got {values}")
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
                         self.output_depth, self.output_width if self.output_depth > 1 else 0,
                         self.input_alphabet, self.output_alphabet)

    @property
    def is_linear(self) -> bool:
        return self.hidden_depth == 1 and self.output_depth == 1

    @property
    def encoding(self) -> str:
        """``one-hot`` or ``integer``: how x_t enters f."""
        return "one-hot" if self.input_alphabet else "integer"

    @property
    def head(self) -> str:
        """``classification`` (arg-max over logits) or ``regression`` (rounded output)."""
        return "classification" if self.output_alphabet else "regression"

    @property
    def n_inputs(self) -> int:
        """Width of the encoded input e(x_t) that f reads."""
        return self.input_dim * max(1, len(self.input_alphabet))

    @property
    def n_outputs(self) -> int:
        """Width of g's output: one logit per class, or the output dimension."""
        return len(self.output_alphabet) or self.output_dim

    def representation(self) -> str:
        """The encoding and head in a few words, e.g. ``one-hot → classification``."""
        return f"{self.encoding} → {self.head}"

    def n_params(self) -> int:
        return sum(p.numel() for p in RNN(self).parameters())

    def label(self) -> str:
        c = self.canonical()
        f = f"f{c.hidden_depth}" + (f"x{c.hidden_width}" if c.hidden_depth > 1 else "")
        g = f"g{c.output_depth}" + (f"x{c.output_width}" if c.output_depth > 1 else "")
        rep = (" 1hot" if c.input_alphabet else "") + (" cls" if c.output_alphabet else "")
        return f"H={c.hidden_dim} {f} {g}{rep}"


def encode_inputs(config: RNNConfig, x: torch.Tensor) -> torch.Tensor:
    """e(x): integer inputs (…, I) as the float vector f reads (…, n_inputs); a value outside a one-hot
    alphabet encodes as all zeros."""
    if not config.input_alphabet:
        return x.float() if not x.is_floating_point() else x
    alphabet = torch.as_tensor(config.input_alphabet, dtype=x.dtype, device=x.device)
    return (x.unsqueeze(-1) == alphabet).flatten(-2).to(torch.float32)


def output_targets(config: RNNConfig, y: torch.Tensor) -> torch.Tensor:
    """What the head is trained against: class indices (…, 1) for a classification head (-1 for a value
    outside the alphabet), else the target values as floats."""
    if not config.output_alphabet:
        return y.float()
    alphabet = torch.as_tensor(config.output_alphabet, dtype=torch.long, device=y.device)
    y = y.long()
    index = torch.searchsorted(alphabet, y)
    hit = alphabet[index.clamp(max=len(alphabet) - 1)] == y
    return torch.where(hit, index, torch.full_like(index, -1))


def readout(config: RNNConfig, raw: torch.Tensor) -> torch.Tensor:
    """The network's integer answer from g's raw output: the rounded value, or the arg-max class's value."""
    if not config.output_alphabet:
        return torch.round(raw)
    alphabet = torch.as_tensor(config.output_alphabet, dtype=raw.dtype, device=raw.device)
    return alphabet[raw.argmax(-1, keepdim=True)]


def head_loss(config: RNNConfig, task_loss: str) -> str:
    """The loss a network of this config trains with: cross-entropy for a classification head."""
    return "cross_entropy" if config.output_alphabet else task_loss


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
        self.hidden_mlp = MLP(c.hidden_dim + c.n_inputs, c.hidden_dim, c.hidden_width, c.hidden_depth)
        self.output_mlp = MLP(c.hidden_dim, c.n_outputs, c.output_width, c.output_depth)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """e(x) in the weights' dtype (see :func:`encode_inputs`)."""
        return encode_inputs(self.config, x).to(self.hidden_mlp.layers[0].weight.dtype)

    def step(self, h: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """One update h_t = f([h_{t-1}, e(x_t)]) for integer inputs x_t (B, I)."""
        return self.hidden_mlp(torch.cat([h, self.encode(x_t)], dim=-1))

    def readout(self, raw: torch.Tensor) -> torch.Tensor:
        """Integer answers from g's raw outputs (see :func:`readout`)."""
        return readout(self.config, raw)

    def run_with_cache(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run a batch (B, T, I) and return every hook: hook_x, hook_h (with h_0), hook_y (g's raw output:
        values, or logits for a classification head)."""
        x = x.to(self.hidden_mlp.layers[0].weight.dtype)
        if x.dim() == 2:
            x = x.unsqueeze(-1)
        e = self.encode(x)
        h = x.new_zeros(x.shape[0], self.config.hidden_dim)
        hs = [h]
        for t in range(x.shape[1]):
            h = self.hidden_mlp(torch.cat([h, e[:, t]], dim=-1))
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
    """Fraction of positions (every time step and output dim) where the rounded output equals the target
    (for ``cross_entropy``: arg-max against class indices)."""
    y = torch.as_tensor(y)
    if loss == "cross_entropy":
        return (y_pred.argmax(-1) == y.squeeze(-1)).float().mean().item()
    return (torch.round(y_pred) == y.to(y_pred.dtype)).float().mean().item()


def network_accuracy(model: RNN, y_pred: torch.Tensor, y) -> float:
    """Fraction of positions where the network's answer (``readout`` of its raw output) equals y."""
    y = torch.as_tensor(y)
    return (model.readout(y_pred) == y.to(y_pred.dtype)).float().mean().item()


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


def input_labels(config: RNNConfig) -> list[str]:
    """Names of the encoded inputs: x1..xI, or [x1=v] indicators for a one-hot encoding."""
    if not config.input_alphabet:
        return [f"x{i + 1}" for i in range(config.input_dim)]
    return [f"[x{i + 1}={v}]" for i in range(config.input_dim) for v in config.input_alphabet]


def weight_layers(model: RNN) -> list[tuple[str, torch.Tensor, list[str]]]:
    """Each layer as one augmented matrix (rows = inputs then a bias row ``1``, columns = outputs), named,
    with row labels: f's first layer reads h_1..h_H then x_1..x_I. For plots and reports."""
    c = model.config
    f, g = list(model.hidden_mlp.layers), list(model.output_mlp.layers)
    out = []
    for name, layers, first_rows in (("f", f, [f"h{i + 1}" for i in range(c.hidden_dim)]
                                      + input_labels(c)),
                                     ("g", g, [f"h{i + 1}" for i in range(c.hidden_dim)])):
        rows = first_rows
        for i, layer in enumerate(layers):
            matrix = torch.cat([layer.weight.detach().T, layer.bias.detach()[None]]).cpu()
            out.append((f"{name} layer {i + 1}", matrix, rows + ["1"]))
            rows = [f"{name}{i + 1}.{j + 1}" for j in range(layer.weight.shape[0])]
    return out
