"""MLflow's Model Registry: a training run's model registered as a version of a registered model, with an alias
(`mmtrack select --register`).

The version's source is the run's logged model `model` (MLflow 3: `models:/<model id>`; a run logged by MLflow 2,
whose model is an artifact folder of the run, registers that folder), linked to the run (`run_id`), so
`mlflow.pytorch.load_model("models:/NAME@ALIAS")` and `mlflow.pyfunc.load_model` load it. A version's identity
is its source run and its `identity` tag (the selection rule): registering the same run under the same rule
again reuses that version and only moves the alias.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmtrack.errors import MMTrackError
from mmtrack.tags import SELECTION_RULE_TAG
from mmtrack.tracking.resilience import TrackingUnavailable, is_unreachable

MODEL = "model"  # the name every training run logs its MLflow model under (`RunLogger.log_model`)


@dataclass
class Registration:
    """Version `version` of registered model `name`, from run `run_id`, with alias `alias`."""

    name: str
    version: str
    alias: str
    run_id: str
    source: str
    created: bool  # False: a version of the same run and rule existed and was reused

    @property
    def uri(self) -> str:
        """The model URI that follows the alias: `models:/NAME@ALIAS`."""
        return f"models:/{self.name}@{self.alias}"


def version_url(base: str, name: str, version: str) -> str:
    """The MLflow UI page of a registered model's version (`base`: `stores.ui_base`)."""
    from urllib.parse import quote

    return f"{base.rstrip('/')}/#/models/{quote(name, safe='')}/versions/{version}"


def _registry_error(client, what: str, exc: BaseException) -> MMTrackError:
    """One line for a registry call that failed: the store is unreachable, has no registry, or anything else."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if is_unreachable(exc):
        return TrackingUnavailable(
            f"tracking store {client.tracking_uri} is unreachable while {what} ({first[:200]}); start it or point "
            "--tracking-uri / MLFLOW_TRACKING_URI at a running one"
        )
    code = str(getattr(exc, "error_code", ""))
    if code == "FEATURE_DISABLED" or ("not supported" in first.lower() and "registry" in first.lower()):
        store = getattr(client, "_registry_uri", None) or client.tracking_uri
        return MMTrackError(
            f"the store {store} has no model registry (MLflow: {code or 'not supported'}); register into a store "
            "that has one: a database (sqlite, postgresql, ...) or an MLflow server backed by one"
        )
    return MMTrackError(f"could not {what} ({type(exc).__name__}: {first[:200]})")


def _call(client, what: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except MMTrackError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow raises several types
        raise _registry_error(client, what, exc) from None


def model_source(client, run_id: str) -> tuple[str, str | None]:
    """(source URI, logged model id or None) of the MLflow model `model` that run `run_id` logged: its MLflow 3
    logged model (the latest step if it logged several), else, for runs logged by MLflow 2, the run's `model/`
    artifact folder. A run without one is a one-line error."""
    run = _call(client, f"reading run {run_id}", client.get_run, run_id)
    outputs = getattr(getattr(run, "outputs", None), "model_outputs", None) or []
    steps = {o.model_id: o.step for o in outputs}
    models = [_call(client, f"reading the models of run {run_id}", client.get_logged_model, m) for m in steps]
    if not models:  # not listed among the run's outputs: ask the experiment, as mlflow.register_model does
        found = _call(
            client,
            f"searching the models of run {run_id}",
            client.search_logged_models,
            [run.info.experiment_id],
            filter_string=f"name = '{MODEL}'",
        )
        models = list(found)
    models = [m for m in models if m.name == MODEL and m.source_run_id == run_id]
    if models:
        model = max(models, key=lambda m: steps.get(m.model_id, 0))
        return f"models:/{model.model_id}", model.model_id
    listed = _call(client, f"listing the artifacts of run {run_id}", client.list_artifacts, run_id, MODEL)
    if any(f.path == f"{MODEL}/MLmodel" for f in listed):
        return f"{run.info.artifact_uri.rstrip('/')}/{MODEL}", None
    raise MMTrackError(
        f"run {run_id} has no MLflow model {MODEL!r} to register (it was not trained by mmtrack, or its model was "
        "deleted); choose a selection whose runs logged one"
    )


def _existing(client, name: str, run_id: str, identity: str):
    """The version of `name` from run `run_id` whose rule tag is `identity` (the lowest, if several), or None."""
    found = _call(client, f"searching the versions of {name!r}", client.search_model_versions, f"run_id = '{run_id}'")
    versions = [v for v in found if v.name == name and (v.tags or {}).get(SELECTION_RULE_TAG) == identity]
    return min(versions, key=lambda v: int(v.version), default=None)


def check_registry_names(name: str, alias: str) -> None:
    """A registered model's name and an alias MLflow accepts, checked before anything is registered."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils import validation

    checks = (
        ("--register", name, ("_validate_model_name",)),
        ("--alias", alias, ("_validate_model_alias_name", "_validate_model_alias_name_reserved")),
    )
    for option, value, names in checks:
        for fn in (getattr(validation, n, None) for n in names):  # MLflow's own rules, where this version has them
            try:
                if not value.strip():
                    raise MlflowException(f"{option} cannot be empty")
                if fn is not None:
                    fn(value)
            except MlflowException as exc:
                first = str(exc.message).strip().splitlines()[0]
                raise MMTrackError(f"{option} {value!r} is not a valid name: {first}") from None


def register_model(client, name: str, run_id: str, alias: str, tags: dict[str, str]) -> Registration:
    """Register run `run_id`'s model as a new version of registered model `name` (created if needed) with `tags`,
    and point `alias` at it. When `name` has a version from the same run with the same rule tag
    (`tags[SELECTION_RULE_TAG]`), that version is reused: no new version, only the alias is (re)set."""
    check_registry_names(name, alias)
    existing = _existing(client, name, run_id, tags.get(SELECTION_RULE_TAG, ""))  # the registry answers first
    if existing is not None:
        version, source, created = str(existing.version), existing.source, False
    else:
        source, model_id = model_source(client, run_id)
        from mlflow.exceptions import MlflowException

        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise _registry_error(client, f"creating registered model {name!r}", exc) from None
        except Exception as exc:  # noqa: BLE001
            raise _registry_error(client, f"creating registered model {name!r}", exc) from None
        mv = _call(
            client,
            f"registering run {run_id}'s model as a version of {name!r}",
            client.create_model_version,
            name,
            source,
            run_id=run_id,
            tags=tags,
            model_id=model_id,
        )
        version, created = str(mv.version), True
    _call(
        client,
        f"setting alias {alias!r} of {name!r} to version {version}",
        client.set_registered_model_alias,
        name,
        alias,
        version,
    )
    return Registration(name, version, alias, run_id, source, created)
