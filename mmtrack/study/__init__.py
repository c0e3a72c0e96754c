"""Studies: the design of a multiplicity benchmark, read from a YAML file (`study`: `Study`, `parse_study`, the
declared-dataset registration) and found by path, own folder or preset name (`presets`: `load_study`), and prepared once for a sweep or a worker (`prepared`: `StudyPlan`).

A new study key goes in `study.KEYS` with its check beside the others (`_check_*`)."""

from mmtrack.study.prepared import StudyPlan
from mmtrack.study.presets import load_study, preset_dir, presets, study_path
from mmtrack.study.study import FIXED, KEYS, REQUIRED, Study, parse_study, register_study_dataset

__all__ = [
    "FIXED",
    "KEYS",
    "REQUIRED",
    "Study",
    "StudyPlan",
    "load_study",
    "parse_study",
    "preset_dir",
    "presets",
    "register_study_dataset",
    "study_path",
]
