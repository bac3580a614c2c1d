"""MIPS: program synthesis via mechanistic interpretability.

Train the smallest RNN that solves an algorithmic task, simplify it, read its hidden states as integers
or bits, fit exact formulas to its update and output maps, emit a Python program, and verify it.
"""

import logging

from mips.tasks import Task, TaskError, all_tasks, get_task

__all__ = ["Task", "TaskError", "all_tasks", "get_task"]
__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
