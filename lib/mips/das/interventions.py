"""Interchange interventions declared as data, and the module that performs them (das spec §4.1–4.2).

An :class:`Intervention` says *where* (a hook name and the time step: each pair's swap position), *what*
(the causal variables, one swap group per subspace), *how large* (rotated dimensions per subspace) and
*through which* alignment function. It is kept in every record, so a run can be replayed and swept.
:class:`Interchange` turns it into trainable alignment parameters and a patch function for
:class:`mips.das.models.Patch`; the models themselves know nothing about DAS.

Implemented here rather than with pyvene (not installed): the swap is three lines once the alignment is a
module, our models are not HuggingFace models, and the recurrent case needs the replaced state to feed the
recurrence at exactly one step, which the models' patch point already gives. Explained in
notebooks/das_counting.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mips.das.alignment import ALIGNMENTS, NONLINEARITIES, Alignment
from mips.das.models import Patch

TIMES = ("swap_position",)


@dataclass(frozen=True)
class Intervention:
    """Where, what and how of an interchange intervention.

    hook          the hook point whose state is replaced (``hook_h`` for RNNs,
                  ``blocks.{l}.hook_resid_post`` / ``hook_embed`` for the transformer)
    time          ``swap_position``: one step per pair, the target's swap position (the source state is
                  read at the source's swap position)
    variables     swap groups: ``full`` (all the causal model's variables), a variable name, or names
                  joined by ``+``; group i lives in rotated dims [i·k, (i+1)·k)
    subspace_dim  k, rotated dimensions per group
    alignment     ``orthogonal`` (DAS), ``linear``, ``relaxed`` or ``revnet``
    nonlinearity  ``identity`` or ``tanh`` (atanh before the alignment, tanh after its inverse)
    """

    hook: str = "hook_h"
    time: str = "swap_position"
    variables: tuple[str, ...] = ("full",)
    subspace_dim: int = 16
    alignment: str = "orthogonal"
    nonlinearity: str = "identity"

    def __post_init__(self):
        object.__setattr__(self, "variables", tuple(self.variables))
        if self.time not in TIMES:
            raise ValueError(f"unknown intervention time {self.time!r}; choose one of {', '.join(TIMES)}")
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"unknown alignment {self.alignment!r}; choose one of {', '.join(ALIGNMENTS)}")
        if self.nonlinearity not in NONLINEARITIES:
            raise ValueError(f"unknown nonlinearity {self.nonlinearity!r}; "
                             f"choose one of {', '.join(NONLINEARITIES)}")
        if self.subspace_dim < 1 or not self.variables:
            raise ValueError("an intervention needs at least one variable and subspace_dim >= 1")

    def masks(self, d: int) -> torch.Tensor:
        """(n_variables, d) 0/1 masks: group i owns rotated dims [i·k, (i+1)·k)."""
        k, n = self.subspace_dim, len(self.variables)
        if n * k > d:
            raise ValueError(f"{n} subspace(s) of {k} dims do not fit in a {d}-dim state")
        m = torch.zeros(n, d)
        for i in range(n):
            m[i, i * k:(i + 1) * k] = 1.0
        return m

    @property
    def label(self) -> str:
        vs = "-".join(v.replace("+", "") for v in self.variables)
        nl = "" if self.nonlinearity == "identity" else f"-{self.nonlinearity}"
        return f"{self.hook.replace('.', '')}-{vs}-k{self.subspace_dim}-{self.alignment}{nl}"


class Interchange(nn.Module):
    """One alignment function per model; swaps the masked coordinates of source into target.

    ``h' = f_trg⁻¹( m ⊙ f_src(h_src) + (1 − m) ⊙ f_trg(h_trg) )``; with one model this is DAS, with
    several it is MAS (model alignment search).
    """

    def __init__(self, spec: Intervention, d: int, n_models: int = 1, seed: int = 0):
        super().__init__()
        self.spec = spec
        self.alignments = nn.ModuleList(Alignment(spec.alignment, d, seed + 1000 * i, spec.nonlinearity)
                                        for i in range(n_models))
        self.register_buffer("mask", spec.masks(d))

    def forward(self, h_trg: torch.Tensor, h_src: torch.Tensor, variable: torch.Tensor,
                src_model: int = 0, trg_model: int = 0) -> torch.Tensor:
        return self.swap(h_trg, self.alignments[src_model](h_src), variable, trg_model)

    def swap(self, h_trg: torch.Tensor, z_src: torch.Tensor, variable: torch.Tensor, trg_model: int = 0):
        """The interchange given the source already in aligned coordinates ``z_src = f_src(h_src)``."""
        m = self.mask[variable]
        f_trg = self.alignments[trg_model]
        return f_trg.inverse(m * z_src + (1 - m) * f_trg(h_trg))

    def patch(self, positions: torch.Tensor, h_src: torch.Tensor, variable: torch.Tensor,
              src_model: int = 0, trg_model: int = 0) -> Patch:
        """The patch that applies this interchange at each row's target position."""
        z_src = self.alignments[src_model](h_src)
        return Patch(self.spec.hook, positions, lambda h: self.swap(h, z_src, variable, trg_model))
