"""Where a study file comes from: a path, the user's own `studies/NAME.yaml`, or a preset shipped inside the
package (`mmtrack.studies`; in a checkout, studies/), read with `load_study`."""

from __future__ import annotations

from pathlib import Path

import yaml

from mmtrack.errors import MMTrackError
from mmtrack.study.study import Study, parse_study


def preset_dir() -> Path:
    """The preset studies shipped inside the package (`mmtrack.studies`; in a checkout: studies/)."""
    from importlib.resources import files

    return Path(str(files("mmtrack.studies")))


def presets() -> dict[str, Path]:
    """Preset name -> its file, sorted by name."""
    return {p.stem: p for p in sorted(preset_dir().glob("*.yaml"))}


def study_path(name: str | Path) -> Path:
    """The file a study argument means: a path to a file; else, for a bare name (`digits-skewed`), the user's
    own studies/<name>.yaml, else the preset of that name."""
    from mmtrack import settings

    p = Path(name)
    if p.is_file():
        return p
    if p.suffix == "" and len(p.parts) == 1:
        own = settings.studies_dir() / f"{p}.yaml"
        if own.is_file():
            return own
        if str(p) in presets():
            return presets()[str(p)]
    raise MMTrackError(
        f"study file {name} not found; presets: {', '.join(presets()) or 'none'} "
        "(`mmtrack study list`), or write your own with `mmtrack study init NAME`"
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key written twice in one mapping (a parameter varied twice) is an error, not the
    last one silently winning."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is written twice in one mapping (line {key_node.start_mark.line + 1})"
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_study(path: str | Path) -> Study:
    """Load a study file, or a study by name (see `study_path`)."""
    p = study_path(path)
    try:
        raw = yaml.load(p.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise MMTrackError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_study(raw, str(p))
