"""The preset studies (`mmtrack study list`), shipped inside the package as `mmtrack.studies`: YAML files only."""
