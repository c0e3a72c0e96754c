"""Old import path, kept for a release: the sweep now lives in `mmtrack.execution` (runner, local_queue)."""

from mmtrack.execution.events import Event, Summary  # noqa: F401
from mmtrack.execution.local_queue import lock_dir  # noqa: F401
from mmtrack.execution.queue import ARCH_COST, relative_cost  # noqa: F401
from mmtrack.execution.runner import execute, run_processes, sweep  # noqa: F401
from mmtrack.settings import cpu_budget  # noqa: F401
