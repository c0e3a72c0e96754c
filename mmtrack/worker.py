"""Old import path, kept for a release: the Optuna work queue now lives in `mmtrack.execution` (optuna_queue,
runner); `ConfigQueue` is `OptunaQueue`."""

from mmtrack.execution.events import Event, Summary  # noqa: F401
from mmtrack.execution.optuna_queue import (  # noqa: F401
    DEFAULT_GRACE,
    DEFAULT_HEARTBEAT,
    DEFAULT_MAX_RETRY,
    check_storage,
    queue_name,
)
from mmtrack.execution.optuna_queue import OptunaQueue as ConfigQueue  # noqa: F401
from mmtrack.execution.optuna_queue import TrialClaim as Claim  # noqa: F401
from mmtrack.execution.runner import raise_interrupt, run_worker, sweep_with_storage, worker_id  # noqa: F401
