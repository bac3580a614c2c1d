"""Alignment functions: invertible maps in whose coordinates causal variables sit in fixed blocks (das spec §4.2, §6).

DAS learns an invertible f so that the first k coordinates of f(h) hold a causal variable; an interchange
swaps those coordinates between a source and a target state and maps back with f⁻¹:

    h' = f⁻¹( m ⊙ f(h_src) + (1 − m) ⊙ f(h_trg) )

  orthogonal   f(h) = h Q, Q orthogonal (PyTorch's ``parametrizations.orthogonal``): the original DAS (OAF)
  linear       f(h) = h W, W = (A Aᵀ + εI)·diag(s) with |s| ≥ 0.1: a general invertible linear map (LAF)
  relaxed      f(h) = (h ⊙ eˢ) Q: a learned per-axis scale, then a rotation
  revnet       additive-coupling reversible residual blocks (exact inverse), then a rotation

``nonlinearity="tanh"`` applies atanh before f and tanh after f⁻¹ (suits GRU states bounded in (−1, 1)).
Explained in notebooks/das_counting.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations

ALIGNMENTS = ("orthogonal", "linear", "relaxed", "revnet")
NONLINEARITIES = ("identity", "tanh")


class Rotation(nn.Module):
    """An orthogonal d×d matrix Q kept orthogonal by ``torch.nn.utils.parametrizations.orthogonal``."""

    def __init__(self, d: int, generator: torch.Generator):
        super().__init__()
        lin = nn.Linear(d, d, bias=False)
        nn.init.orthogonal_(lin.weight, generator=generator)
        self.lin = parametrizations.orthogonal(lin)

    @property
    def weight(self) -> torch.Tensor:
        return self.lin.weight

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.lin.weight

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.lin.weight.T


class LinearAlignment(nn.Module):
    """W = (A Aᵀ + εI)·diag(s): symmetric positive definite times non-zero per-column signs/scales."""

    def __init__(self, d: int, generator: torch.Generator, eps: float = 0.1):
        super().__init__()
        A = torch.empty(d, d)
        nn.init.orthogonal_(A, generator=generator)
        self.A = nn.Parameter(A)
        self.signs = nn.Parameter(torch.ones(d))
        self.eps = eps

    @property
    def weight(self) -> torch.Tensor:
        s = torch.tanh(self.signs)
        s = s + 0.1 * torch.where(s >= 0, 1.0, -1.0)
        return (self.A @ self.A.T + self.eps * torch.eye(len(self.A), device=self.A.device)) * s[None, :]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.weight

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return torch.linalg.solve(self.weight.T, z.T).T


class RelaxedRotation(nn.Module):
    """f(h) = (h ⊙ exp(s)) Q: a rotation after a learned per-axis scale."""

    def __init__(self, d: int, generator: torch.Generator):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(d))
        self.rot = Rotation(d, generator)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.rot(h * self.log_scale.exp())

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return self.rot.inverse(z) / self.log_scale.exp()


class Coupling(nn.Module):
    """One additive coupling: (a, b) → (a + F(b), b + G(a + F(b))); exactly invertible."""

    def __init__(self, d: int, width: int):
        super().__init__()
        half = d // 2
        self.F = nn.Sequential(nn.Linear(d - half, width), nn.ReLU(), nn.Linear(width, half))
        self.G = nn.Sequential(nn.Linear(half, width), nn.ReLU(), nn.Linear(width, d - half))
        for net in (self.F, self.G):          # start at the identity map
            nn.init.zeros_(net[-1].weight)
            nn.init.zeros_(net[-1].bias)
        self.half = half

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a, b = h[..., : self.half], h[..., self.half:]
        a = a + self.F(b)
        return torch.cat([a, b + self.G(a)], dim=-1)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        a, b = z[..., : self.half], z[..., self.half:]
        b = b - self.G(a)
        return torch.cat([a - self.F(b), b], dim=-1)


class RevNetAlignment(nn.Module):
    """Reversible residual blocks then a rotation: a non-linear alignment with an exact inverse."""

    def __init__(self, d: int, generator: torch.Generator, n_blocks: int = 3):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            self.blocks = nn.ModuleList(Coupling(d, 2 * d) for _ in range(n_blocks))
        self.rot = Rotation(d, generator)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            h = blk(h)
        return self.rot(h)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        h = self.rot.inverse(z)
        for blk in reversed(self.blocks):
            h = blk.inverse(h)
        return h


class Alignment(nn.Module):
    """An alignment function with an optional squashing non-linearity around it."""

    def __init__(self, kind: str, d: int, seed: int = 0, nonlinearity: str = "identity"):
        super().__init__()
        if kind not in ALIGNMENTS:
            raise ValueError(f"unknown alignment {kind!r}; choose one of {', '.join(ALIGNMENTS)}")
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}; choose one of {', '.join(NONLINEARITIES)}")
        g = torch.Generator().manual_seed(seed)
        self.kind, self.nonlinearity = kind, nonlinearity
        self.f = {"orthogonal": Rotation, "linear": LinearAlignment, "relaxed": RelaxedRotation,
                  "revnet": RevNetAlignment}[kind](d, g)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.nonlinearity == "tanh":
            h = torch.atanh(h.clamp(-1 + 1e-6, 1 - 1e-6))
        return self.f(h)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        h = self.f.inverse(z)
        return torch.tanh(h) if self.nonlinearity == "tanh" else h
