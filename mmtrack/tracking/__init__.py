"""The tracking layer: the one place that imports MLflow (the `mlflow` package is loaded lazily, inside the
functions that need it).

- `stores`: where the store is and whether it answers (URIs, local SQLite, servers and their login, databases),
  and the MLflow UI address derived from the tracking URI.
- `runs`: experiments, `RunLogger`, paged run searches, the runs-table cache, models, predictions, report runs.
- Tag names (`mmtrack.tags`) are re-exported here.
"""

from mmtrack.tags import *  # noqa: F403 - tag names are part of the tracking layer's API
from mmtrack.tracking.artifacts import PREDICTIONS, load_model, load_predictions, predictions_path, stored_populations
from mmtrack.tracking.resilience import (
    TrackingUnavailable,
    patient_worker,
    patiently,
    server_wait,
    set_server_wait,
    wait_out,
)
from mmtrack.tracking.runs import (
    REPORTS_SUFFIX,
    WEIGHTS,
    RunLogger,
    can_adopt,
    experiment_id,
    experiment_study,
    log_report,
    mark_changed,
    point_launcher,
)
from mmtrack.tracking.search import (
    drop_cache,
    fail_run,
    find_experiment,
    finished_hashes,
    get_run,
    load_runs,
    log_launcher_summary,
    runs_of_config,
    search_all_runs,
)
from mmtrack.tracking.stores import (
    LOCAL_UI,
    MLFLOW_DEFAULT_URIS,
    UI_VIEW,
    check_database,
    check_server,
    connect,
    default_uri,
    file_lock,
    is_local_sqlite,
    is_mlflow_default,
    open_hint,
    quiet_libraries,
    redact,
    resolve_uri,
    tracking_dir,
    ui_base,
    ui_url,
)

__all__ = [
    "LOCAL_UI",
    "MLFLOW_DEFAULT_URIS",
    "PREDICTIONS",
    "REPORTS_SUFFIX",
    "UI_VIEW",
    "WEIGHTS",
    "RunLogger",
    "TrackingUnavailable",
    "patient_worker",
    "patiently",
    "server_wait",
    "set_server_wait",
    "wait_out",
    "can_adopt",
    "check_database",
    "check_server",
    "connect",
    "default_uri",
    "drop_cache",
    "experiment_id",
    "experiment_study",
    "fail_run",
    "file_lock",
    "find_experiment",
    "finished_hashes",
    "get_run",
    "is_local_sqlite",
    "is_mlflow_default",
    "load_model",
    "load_predictions",
    "predictions_path",
    "stored_populations",
    "load_runs",
    "log_launcher_summary",
    "log_report",
    "mark_changed",
    "open_hint",
    "point_launcher",
    "quiet_libraries",
    "redact",
    "resolve_uri",
    "runs_of_config",
    "search_all_runs",
    "tracking_dir",
    "ui_base",
    "ui_url",
]
