"""State-tracking tasks with their algebra: automata, finite groups, the task catalog, sampling.

>>> from workbench.tasks import make_task
>>> task = make_task("group:S3")
>>> batch = task.sample(batch_size=4, length=10, generator=torch.Generator().manual_seed(0))
>>> batch.tokens.shape, batch.labels.shape        # [B, T] int64 each
>>> task.group.character_table(), task.group.irreps()

Group convention (see ``groups.py``): ``table[a, b] = id(a·b)``, ``(a·b)(i) = a[b[i]]``; the
word-problem state is ``s_t = g_t · s_{t-1}``; element id 0 is the identity.
"""
from .automata import Automaton
from .catalog import MAX_FSM_STATES, MAX_MODULUS, TASK_SPECS_HELP, make_task
from .groups import GROUP_NAMES_HELP, MAX_ORDER, Decomposition, Group, cycle_string, parse_cycles
from .sampling import CHANCE_LENGTH, Batch, Task

__all__ = [
    "Automaton", "Batch", "Task", "Group", "Decomposition", "make_task", "TASK_SPECS_HELP",
    "GROUP_NAMES_HELP", "MAX_ORDER", "MAX_MODULUS", "MAX_FSM_STATES", "CHANCE_LENGTH",
    "cycle_string", "parse_cycles",
]
