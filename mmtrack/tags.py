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
KIND_TAG = "mmtrack.kind"  # "ensemble" on an ensemble run
MEMBERS_TAG = "mmtrack.ensemble.members"  # JSON list of the members' run ids
MEMBER_SEEDS_TAG = "mmtrack.ensemble.seeds"  # the members' seeds, e.g. "0,1,2,3,4"
OF_TAG = "mmtrack.ensemble.of"  # the experiment the members come from
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


def column(tag: str) -> str:
    """The runs-table column (`mlflow.search_runs` format) that holds a tag."""
    return f"tags.{tag}"
