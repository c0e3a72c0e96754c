"""Every MLflow tag name mmtrack writes. The tracking layer writes them; the analysis layer reads them back as
`tags.<name>` columns of a runs table (`column(NAME)`). Renaming one orphans every run already logged."""

from __future__ import annotations

# on training runs
HASH_TAG = "mmtrack.config_hash"  # RunConfig.hash: the sweep's identity of a configuration
CONFIG_NAME_TAG = "mmtrack.config_name"  # the full description, e.g. resnet18-w0.125-lr0.1-...-s0
STUDY_NAME_TAG = "mmtrack.study_name"  # the study a sweep ran the run for
EVAL_N_TAG = "mmtrack.eval_n"  # JSON: metric -> number of test examples behind it (noise floors)
ERROR_TAG = "mmtrack.error"  # why a run FAILED
FAILED_INTERVENTIONS_TAG = "mmtrack.failed_interventions"  # JSON: intervention -> error (the run still FINISHED)
DATA_FINGERPRINT_TAG = "mmtrack.data_fingerprint"
DEVICE_TAG = "mmtrack.device"
THREADS_TAG = "mmtrack.torch_threads"
# the machine behind the numbers (bit-identical results across CPUs are not something PyTorch promises)
CPU_TAG = "mmtrack.env.cpu"  # CPU model name
ISA_TAG = "mmtrack.env.isa"  # the vector instructions torch's CPU kernels use (e.g. AVX512, AVX2)
ENV_TAG = "mmtrack.env"  # JSON: platform, CPUs, interop threads, GPU, determinism settings
MEMORY_FORMAT_TAG = "mmtrack.memory_format"
COMMAND_TAG = "mmtrack.command"
VERSION_TAG_PREFIX = "mmtrack.version."  # + a package name (torch, mlflow, ..., mmtrack, python): its version
PRECISION_TAG = "mmtrack.precision"  # fp32, or bf16 (autocast while training on CUDA)
STACK_TAG = "mmtrack.stack"  # runs trained together as one stacked network share this id
STACK_SEEDS_TAG = "mmtrack.stack_seeds"  # the seeds of that stack, e.g. "0,1,2,3,4" (one seed: trained alone)
STACK_ALONE_TAG = "mmtrack.stack_alone"  # why the seeds of that stack trained one at a time (absent: stacked)
SPOOLED_TAG = (
    "mmtrack.spooled_weights"  # logged from weights kept locally while the server was away (mmtrack.jobs.spool)
)
TRUSTED_PICKLE_TAG = "mmtrack.trusted_pickle"  # evaluate loaded the run's pickled model (--trust-pickle)
# on ensemble runs (`mmtrack ensemble`)
KIND_TAG = "mmtrack.kind"  # "ensemble" on an ensemble run, "imported" on a run of `mmtrack import`
MEMBERS_TAG = "mmtrack.ensemble.members"  # JSON list of the members' run ids
MEMBER_SEEDS_TAG = "mmtrack.ensemble.seeds"  # the members' seeds, e.g. "0,1,2,3,4"
OF_TAG = "mmtrack.ensemble.of"  # the experiment the members come from
# on imported runs (`mmtrack import`; KIND_TAG is "imported")
IMPORTED_FROM_TAG = "mmtrack.import.source"  # the weights file the run's model was read from
WEIGHTS_SHA256_TAG = "mmtrack.import.sha256"  # sha256 of that file (a rerun skips a model already imported)
# on report runs and experiments
REPORT_TAG = "mmtrack.report"  # runs that hold a sheet or selection report, not a model
REPORTS_FOR_TAG = "mmtrack.reports_for"  # on a report run and its experiment: the experiment it reports on
# on experiments
STUDY_TAG = "mmtrack.study"  # the study as JSON (also an Optuna study user attribute)
REVISION_TAG = "mmtrack.revision"
# in a logged dataset's source (MLflow's dataset panel)
DATASET_SOURCE_TAG = "mmtrack.dataset"  # changes whenever finished runs gain metrics (runs caches reload)
# on an `mlflow run` launcher run
LAUNCHED_TAG = "mmtrack.launched_run"  # where the training run was logged
# MLflow's own
RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"
DATASET_CONTEXT_TAG = "mlflow.data.context"  # on a run's dataset input: "training"
# on registered model versions (mmtrack select --register)
SELECTION_RULE_TAG = "mmtrack.selection.rule"  # the rule that chose the model, e.g. "top 50% on acc/ood/x"; with
#                                                the source run, a version's identity (a rerun reuses the version)
SELECTION_EXPERIMENT_TAG = "mmtrack.selection.experiment"  # the experiment the model was selected from
SELECTION_BY_TAG = "mmtrack.selection.by"  # the metrics it was chosen on (--by), comma-separated
SELECTION_SPREAD_TAG = "mmtrack.selection.spread"  # JSON: unseen metric -> Δmax (pp) left among the selected runs
SELECTION_SIZE_TAG = "mmtrack.selection.n_selected"  # how many runs the rule kept
SELECTION_SCORE_TAG = "mmtrack.selection.score"  # the model's mean of the --by metrics, as logged


def column(tag: str) -> str:
    """The runs-table column (`mlflow.search_runs` format) that holds a tag."""
    return f"tags.{tag}"
