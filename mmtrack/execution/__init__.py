"""Running a study's configurations: one work-queue contract (`queue.WorkQueue`), two back ends behind it
(`local_queue.FileLockQueue`: flock claims on one machine; `optuna_queue.OptunaQueue`: an Optuna study in a
shared RDB storage, for many machines, `storage` its URLs and its restarts), one worker loop that trains whatever
a queue hands out (`runner`: `execute_group`, `work`) and the entry points that start workers (`launch`:
`sweep`, `run_worker`, `sweep_with_storage`).

Layering: this package talks to MLflow only through `mmtrack.tracking` and is the only user of Optuna's storages;
it imports neither `mlflow` nor the command line. Importing the package is cheap (no torch, MLflow or Optuna):
`mmtrack --help` reads the queue defaults from it; `runner` and `launch` load the rest when used.
"""

from mmtrack.execution.events import Event, EventKind, Summary
from mmtrack.execution.local_queue import FileClaim, FileLockQueue, lock_dir
from mmtrack.execution.optuna_queue import (
    DEFAULT_GRACE,
    DEFAULT_HEARTBEAT,
    DEFAULT_MAX_RETRY,
    OptunaQueue,
    TrialClaim,
    queue_name,
    queue_states,
)
from mmtrack.execution.queue import Claim, WorkQueue, relative_cost
from mmtrack.execution.storage import check_storage

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_HEARTBEAT",
    "DEFAULT_MAX_RETRY",
    "Claim",
    "Event",
    "EventKind",
    "FileClaim",
    "FileLockQueue",
    "OptunaQueue",
    "Summary",
    "TrialClaim",
    "WorkQueue",
    "check_storage",
    "lock_dir",
    "queue_name",
    "queue_states",
    "relative_cost",
]
