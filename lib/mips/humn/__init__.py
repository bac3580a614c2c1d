"""Hierarchical goal pursuit (the "thinking model", HUMN): a sibling chapter of the book.

A PyTorch re-implementation of PVirie's Hierarchical Unified Model for actionable interpretation:
a stack of layers, each a cortex (goal-conditioned step proposer), a hippocampus (context buffer) and an
abstraction that picks the pivots the next layer plans over. Modules:

- ``algebra``: states, actions and ``State + Action``; ``kernels``: the table and the neural slot memory;
- ``cortex``: hindsight examples and the step proposer; ``hippocampus``; ``abstraction``: skip and entropy;
- ``model``: ``HUMN`` with ``react``, ``think`` and ``observe``;
- ``graph``, ``cartpole``, ``device``: the chapter's three pages.
"""

from mips.humn.algebra import GoalAlgebra, OneHotAlgebra
from mips.humn.cortex import Cortex, Hindsight, Trainer, TrainerConfig, hindsight, pivot_windows
from mips.humn.hippocampus import Hippocampus
from mips.humn.kernels import SlotKernel, SlotKernelConfig, TableKernel
from mips.humn.model import HUMN, MaxSubStepReached

__all__ = ["GoalAlgebra", "OneHotAlgebra", "Cortex", "Hindsight", "Trainer", "TrainerConfig", "hindsight",
           "pivot_windows", "Hippocampus", "SlotKernel", "SlotKernelConfig", "TableKernel", "HUMN",
           "MaxSubStepReached"]
