"""A study prepared once: what a sweep or a worker needs of it, computed when it starts and handed to the queues
and the executor, so no claim expands the configurations or parses the interventions again."""

from __future__ import annotations

from dataclasses import dataclass

from mmtrack.interventions.specs import EvalSettings, Intervention, parse
from mmtrack.study.study import Study
from mmtrack.training.config import RunConfig


@dataclass(frozen=True)
class StudyPlan:
    """The study, its configurations (default first, seeds innermost), its parsed interventions, its evaluation
    settings and its reference configuration (run names say how a configuration differs from it). Frozen and
    picklable: spawned workers receive it whole (the Study inside registers a declared dataset on unpickling)."""

    study: Study
    configs: tuple[RunConfig, ...]
    interventions: tuple[Intervention, ...]
    settings: EvalSettings
    reference: RunConfig

    @classmethod
    def of(cls, study: Study | StudyPlan) -> StudyPlan:
        """The plan of `study` (a plan is returned as it is)."""
        if isinstance(study, StudyPlan):
            return study
        return cls(
            study=study,
            configs=tuple(study.configs()),
            interventions=tuple(parse(study.interventions)),
            settings=study.eval_settings(),
            reference=study.reference(),
        )

    @property
    def name(self) -> str:
        return self.study.name

    @property
    def dataset(self) -> str:
        return self.study.dataset
