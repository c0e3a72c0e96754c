"""Your own data, declared in a file with no code: a labelled image folder or CSV manifest, its groups table and
OOD sets become a dataset like the built-in ones (the people who most need a multiplicity audit have their own
images, and should not have to write a loader inside the package).

A declaration is a mapping, inline under a study's `dataset:` or in its own YAML file that the study names
(`dataset: skin.yaml`, relative to the study). Paths are relative to the file that declares them:

    name: skin-lesions               # the dataset's name (param `dataset`; default: the study's or file's name)
    images: data/skin                # an ImageFolder tree root/<class>/<image> (or root/train/<class>/...,
                                     # root/test/<class>/...), or instead:
    manifest: data/skin/labels.csv   # a CSV path,label[,split][,<group columns>...]; paths relative to the CSV
    columns: {path: file, label: diagnosis, split: fold}   # other column names (optional)
    groups_table: data/skin/groups.csv   # path,<group columns>...: groups of a folder's (or manifest's) images
    image_size: 64                   # decoded to image_size x image_size (centre square crop, bilinear)
    channels: 3                      # 3 = RGB; 1 = grayscale (kept as 3 equal channels for the models)
    test_fraction: 0.2               # without a split column or train/ test/ folders: a stratified split,
    split_seed: 0                    # seeded, independent of the training seed
    classes: [benign, malignant]     # class order (default: sorted; numeric labels numerically)
    groups:                          # each -> acc/group/<column>/<value>, measured on the test split
      skin_type: {}                  # categorical: every value found (or {values: [I, II, ...]} in this order)
      age: {bins: [0, 30, 60, 120]}  # numeric: [0,30) [30,60) [60,120] -> 0-30, 30-60, 60-120 (or labels: [...])
    intersections: [[skin_type, age]]    # -> acc/group/skin_type_age/<I_0-30>, ... (combinations with test images)
    fairness_group: skin_type/VI     # the headline group (optional)
    ood:                             # each -> acc/ood/<name>: other folders or manifests with the same labels
      hospital-b: data/hospital-b    # a folder root/<class>/<image>, or a .csv manifest path,label
      phone: {manifest: data/phone.csv}

Checks (one `MMTrackError` line each, before anything trains): missing or unreadable image files (counted,
named), duplicate paths across splits (leakage), labels of an OOD set the training set lacks, a group column
missing, a group value with no test image, a class with no train or no test image. Mixed image modes (grayscale,
RGBA, palette files among RGB ones) are converted, with a warning.

Structure first, pixels later: `plan()` reads only the manifest / folder listing (no image), which is enough for
split sizes and group sizes (`mmtrack datasets show`); `check()` also opens every image's header unless the decoded
cache exists; `load_declared()` decodes through `mmtrack.data._decode`'s content-keyed cache (file names, sizes
and mtimes), so later runs decode no image. The fingerprint hashes the decoded pixels, relative file names,
labels, split and group codes: the same data copied elsewhere keeps it.

Where things live: `schema.py` (the declaration, checked and normalised), `layout.py` (the interface a layout
implements and the checks layouts share), one module per on-disk layout (`image_folder.py`, `manifest.py`) listed
in `layouts.py`, `groups.py` (categorical values, bins, intersections), `plan.py` (classes, split, OOD sets),
`decode.py` (header checks, decoding, the Dataset) and `registry.py` (registration, remembered declarations).

Registration. A study registers its declared dataset when it is built and when it is unpickled (spawned sweep
workers), and its JSON (`Study.to_json`, the experiment tag `mmtrack.study`) carries the declaration with
absolute paths, so a later process can call `register_declared(study["dataset_spec"])`. Every registration is
also remembered under `<cache dir>/declared/<name>.json`; an unknown dataset name is looked up there, so
`mmtrack evaluate` / `mmtrack train --dataset NAME` on this machine find a dataset a study declared.
"""

from mmtrack.data import base
from mmtrack.data.declared.decode import DECLARED_VERSION, check, load_declared
from mmtrack.data.declared.layout import Layout, Listing
from mmtrack.data.declared.layouts import LAYOUTS
from mmtrack.data.declared.plan import Part, Plan, plan
from mmtrack.data.declared.registry import _SPECS, declared_specs, info, register_declared, resolve
from mmtrack.data.declared.schema import KEYS, declaration, is_declaration, normalize

base.add_resolver(resolve)

__all__ = [
    "DECLARED_VERSION",
    "KEYS",
    "LAYOUTS",
    "Layout",
    "Listing",
    "Part",
    "Plan",
    "_SPECS",
    "check",
    "declaration",
    "declared_specs",
    "info",
    "is_declaration",
    "load_declared",
    "normalize",
    "plan",
    "register_declared",
]
