"""Study files: the design of a multiplicity benchmark (dataset, default configuration, axes, seeds, epochs,
interventions) and its expansion into configurations.

Designs:
- `ofat`: the paper's one-factor-at-a-time design: the default configuration, plus each axis varied alone
  around it, crossed with every seed (UTKFace: 9 configurations x 5 seeds = 45 runs).
- `grid`: the full factorial of all axes, crossed with every seed.

`dataset:` names a registered dataset, or declares one from files on disk (a mapping, or a YAML file beside the
study; see `mmtrack.data.declared`). A declared dataset is checked when the study is read (missing, unreadable or
leaking files fail before anything trains), travels inside the Study as `dataset_spec` (absolute paths), and is
registered whenever a Study is built or unpickled: spawned sweep workers receive the pickled Study and RunConfigs,
and RunConfig validates its dataset against the registry. The experiment tag `mmtrack.study` (`to_json`) carries
it too, so a later process registers it with `register_study_dataset(tracking.experiment_study(...))`.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from mmtrack.errors import MMTrackError
from mmtrack.interventions.specs import DEFAULT_SPECS, EvalSettings
from mmtrack.models import catalog
from mmtrack.training.config import AXES, PARAM, SEED_SOURCES, SOURCE_PARAMS, RunConfig

FIXED = tuple(a for a in AXES if a != "epochs")  # any training param but dataset, epochs and seeds (keys of their
# own), when it is not an axis
KEYS = {
    "name": str,
    "dataset": (str, dict),
    "design": str,
    "epochs": int,
    "seeds": list,
    "default": dict,
    "axes": dict,
    "fixed": dict,
    "interventions": list,
    "eval": dict,
    "description": str,
    "selection": dict,
    "sources": list,
}
DESIGNS = ("ofat", "grid", "seed-sources")
SELECTION_KEYS = ("by", "unseen", "top")  # the model-selection experiment `mmtrack report` runs
REQUIRED = ("dataset", "default", "axes", "seeds", "epochs")


@dataclass(frozen=True)
class Study:
    name: str
    dataset: str
    design: str
    epochs: int
    seeds: list[int]
    default: dict
    axes: dict[str, list]
    fixed: dict = field(default_factory=dict)
    interventions: list[str] = field(default_factory=lambda: list(DEFAULT_SPECS))
    eval: dict = field(default_factory=dict)
    description: str = ""
    selection: dict = field(default_factory=dict)  # by, unseen (metric lists), top (percentages): for reports
    dataset_spec: dict | None = None  # a dataset declared in the study (mmtrack.data.declared), normalised
    sources: list[str] | None = None  # design seed-sources: the sources of randomness varied, one at a time

    def __post_init__(self):
        if self.dataset_spec is not None:
            from mmtrack.data.declared import register_declared

            register_declared(self.dataset_spec)

    def __setstate__(self, state: dict) -> None:
        """Unpickling (a spawned sweep worker) registers the declared dataset too, before any RunConfig."""
        for k, v in state.items():
            object.__setattr__(self, k, v)
        self.__post_init__()

    @classmethod
    def from_dict(cls, d: dict) -> Study:
        """The Study of `to_dict()` / the experiment tag `mmtrack.study` (registers its declared dataset)."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def base(self) -> dict:
        """The params every configuration starts from: dataset, epochs, `fixed:` and the default configuration
        (an `epochs` axis overrides the study's epochs)."""
        return {"dataset": self.dataset, "epochs": self.epochs, **self.fixed, **self.default}

    def config(self, params: dict, varied: tuple[str, ...] = ()) -> RunConfig:
        """The RunConfig of `params`. A study's `width` (fixed, or its default) is for the architectures that have
        one: a configuration of another architecture gets the width param's default, unless its own point varies
        width (`varied`), which RunConfig then refuses in one line."""
        if "width" not in varied and not catalog.has_width(params.get("arch", PARAM["arch"].default)):
            params = {**params, "width": PARAM["width"].default}
        return RunConfig(**params)

    def configs(self) -> list[RunConfig]:
        """Every configuration of the study, default configuration first, seeds innermost. Design seed-sources:
        the OFAT configurations, each once per source (in order) at the first seed with that source's seed set to
        each of the seeds (the others held: init, order, augment at the first seed; data and numerics off)."""
        base = self.base()
        if self.design in ("ofat", "seed-sources"):
            points = [(dict(self.default), ())]
            for axis, values in self.axes.items():
                points += [({**self.default, axis: v}, (axis,)) for v in values if v != self.default[axis]]
        else:
            names = list(self.axes)
            points = [(dict(zip(names, combo)), tuple(names)) for combo in itertools.product(*self.axes.values())]
        if self.design == "seed-sources":  # each configuration once per source and seed, the others held
            return [
                self.config({**base, **p, "seed": self.seeds[0], f"{src}_seed": s}, varied)
                for p, varied in points
                for src in self.sources or []
                for s in self.seeds
            ]
        return [self.config({**base, **p, "seed": s}, varied) for p, varied in points for s in self.seeds]

    def reference(self) -> RunConfig:
        """The default configuration (first seed): run names say how a configuration differs from it."""
        return self.config({**self.base(), "seed": self.seeds[0]})

    def eval_settings(self) -> EvalSettings:
        return EvalSettings(**self.eval)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if d["dataset_spec"] is None:
            del d["dataset_spec"]  # built-in datasets: the same JSON as before declarations existed
        if not d["selection"]:
            del d["selection"]
        if d["sources"] is None:
            del d["sources"]  # other designs: the same JSON as before seed-sources existed
        d["seed_param"] = "source_seed" if self.design == "seed-sources" else "seed"
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())  # axis order matters: default-first tables


def _type_name(t) -> str:
    if isinstance(t, tuple):
        return " or ".join(map(_type_name, t))
    return {str: "a string", int: "an integer", list: "a list", dict: "a mapping"}[t]


def register_study_dataset(study: dict | str | None) -> str | None:
    """Register the dataset a study declares, from its dict or JSON (the experiment tag `mmtrack.study`): what
    `mmtrack evaluate` calls before loading a run's dataset. Returns the declared name (None: nothing declared)."""
    if isinstance(study, str):
        study = json.loads(study)
    spec = (study or {}).get("dataset_spec")
    if not spec:
        return None
    from mmtrack.data.declared import register_declared

    return register_declared(spec)


def _check_keys(raw, source: str) -> None:
    if not isinstance(raw, dict):
        raise MMTrackError(f"{source}: expected a mapping of keys ({', '.join(KEYS)})")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise MMTrackError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(KEYS)}")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise MMTrackError(f"{source}: missing key(s) {', '.join(missing)}")
    for key, typ in KEYS.items():
        if key in raw and not (isinstance(raw[key], typ) and not (typ is int and isinstance(raw[key], bool))):
            raise MMTrackError(f"{source}: {key} must be {_type_name(typ)}, got {raw[key]!r}")
    design = raw.get("design", "ofat")
    if design not in DESIGNS:
        raise MMTrackError(f"{source}: design must be one of {', '.join(DESIGNS)}, got {design!r}")
    sources = raw.get("sources")
    if sources is not None and design != "seed-sources":
        raise MMTrackError(f"{source}: sources apply to design: seed-sources only")
    if sources is not None and (
        not sources or any(s not in SEED_SOURCES for s in sources) or len(set(sources)) != len(sources)
    ):
        raise MMTrackError(
            f"{source}: sources must list distinct sources of randomness among {', '.join(SEED_SOURCES)}, got {sources!r}"
        )


def _check_design(raw: dict, source: str) -> None:
    """axes, default, fixed and seeds, against each other."""
    axes, default = raw["axes"], raw["default"]
    for axis, values in axes.items():
        if axis == "seed" or axis in SOURCE_PARAMS:
            raise MMTrackError(
                f"{source}: {axis} cannot be an axis: the seeds are the rows of every sheet (`seeds:`)"
                + ("" if axis == "seed" else "; `design: seed-sources` varies one source of randomness at a time")
            )
        if axis not in AXES:
            raise MMTrackError(f"{source}: unknown axis {axis!r}; axes are: {', '.join(AXES)}")
        if not isinstance(values, list) or not values:
            raise MMTrackError(f"{source}: axes.{axis} must be a non-empty list of values")
        if len(set(map(str, values))) != len(values):
            raise MMTrackError(f"{source}: axes.{axis} lists a value twice")
        if axis not in default:
            raise MMTrackError(f"{source}: default has no value for axis {axis!r}")
        if default[axis] not in values:
            raise MMTrackError(f"{source}: default {axis}={default[axis]!r} is not among axes.{axis} {values}")
    extra = sorted(set(default) - set(axes))
    if extra:
        raise MMTrackError(
            f"{source}: default sets {', '.join(extra)} which are not axes; use `fixed:` for values held constant"
        )
    fixed = raw.get("fixed", {})
    twice = sorted(set(fixed) & set(axes))
    if twice:
        raise MMTrackError(
            f"{source}: {', '.join(twice)} both fixed and varied; hold a parameter under `fixed:` or vary it under "
            "`axes:`, not both"
        )
    bad = sorted(set(fixed) - set(FIXED))
    if bad:
        raise MMTrackError(f"{source}: fixed may set {', '.join(FIXED)}, got {', '.join(bad)}")
    seeds = raw["seeds"]
    if (
        not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise MMTrackError(f"{source}: seeds must be a non-empty list of distinct non-negative integers, got {seeds}")


def _check_eval_and_selection(raw: dict, source: str) -> None:
    eval_keys = {f.name for f in fields(EvalSettings)}
    unknown_eval = sorted(set(raw.get("eval", {})) - eval_keys)
    if unknown_eval:
        raise MMTrackError(
            f"{source}: unknown eval setting(s) {', '.join(unknown_eval)}; allowed: {', '.join(sorted(eval_keys))}"
        )
    for key, value in raw.get("selection", {}).items():
        if key not in SELECTION_KEYS:
            raise MMTrackError(f"{source}: unknown selection key {key!r}; allowed: {', '.join(SELECTION_KEYS)}")
        kind = (int, float) if key == "top" else str
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(x, kind) and not isinstance(x, bool) for x in value)
        ):
            what = "percentages" if key == "top" else "metric names"
            raise MMTrackError(f"{source}: selection.{key} must be a non-empty list of {what}, got {value!r}")


def _check_runnable(study: Study, source: str) -> None:
    """Every axis value, the interventions and the eval settings as the runs will read them: RunConfig and the
    intervention parser name what is allowed, so their messages are used (with the study's key in front)."""
    base = {**study.base(), "seed": study.seeds[0]}
    archs = set(study.axes.get("arch", [])) | {base.get("arch", PARAM["arch"].default)}
    sets_width = "width" in study.fixed or "width" in study.default or "width" in study.axes
    known = all(isinstance(a, str) and catalog.source(a) for a in archs)
    if sets_width and known and not any(catalog.has_width(a) for a in archs):
        raise MMTrackError(
            f"{source}: width applies to mmtrack's ResNets ({', '.join(catalog.RESNETS)}) only; this study's "
            f"architectures ({', '.join(sorted(archs))}) have none: remove width"
        )
    try:
        study.config(base)
    except MMTrackError as exc:
        raise MMTrackError(f"{source}: {exc.message}") from None
    for axis, values in study.axes.items():
        for v in values:
            try:
                study.config({**base, axis: v}, (axis,))
            except MMTrackError as exc:
                raise MMTrackError(f"{source}: axes.{axis}: {exc.message}") from None
            except TypeError:
                raise MMTrackError(f"{source}: axes.{axis} value {v!r} has the wrong type") from None
    from mmtrack.interventions.specs import parse

    try:
        parse(study.interventions)
    except MMTrackError as exc:
        raise MMTrackError(f"{source}: interventions: {exc.message}") from None
    try:
        study.eval_settings()
    except MMTrackError as exc:
        raise MMTrackError(f"{source}: {exc.message}") from None


def parse_study(raw: dict, source: str = "study") -> Study:
    """Validate a study mapping (from YAML) and build a Study; errors name the file and the key."""
    _check_keys(raw, source)
    _check_design(raw, source)
    _check_eval_and_selection(raw, source)
    name = raw.get("name") or Path(source).stem
    fixed = raw.get("fixed", {})
    dataset, spec = raw["dataset"], None
    from mmtrack.data import declared

    if declared.is_declaration(dataset):  # own data: check the files now, so that bad data trains nothing
        spec = declared.declaration(
            dataset, Path(source).parent, str(Path(source).resolve()) if source != "study" else source, name
        )
        declared.check(spec, fixed.get("image_size"))
        dataset = spec["name"]
    study = Study(
        name=name,
        dataset=dataset,
        design=raw.get("design", "ofat"),
        epochs=raw["epochs"],
        seeds=list(raw["seeds"]),
        default=dict(raw["default"]),
        axes=dict(raw["axes"]),
        fixed=dict(fixed),
        interventions=list(raw.get("interventions", DEFAULT_SPECS)),
        eval=dict(raw.get("eval", {})),
        description=raw.get("description", ""),
        selection=dict(raw.get("selection", {})),
        dataset_spec=spec,
        sources=list(raw.get("sources", SEED_SOURCES)) if raw.get("design") == "seed-sources" else None,
    )
    _check_runnable(study, source)
    return study
