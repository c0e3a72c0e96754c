"""Real-dataset loaders on tiny files written in each dataset's published on-disk format."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from realdata_files import MALFORMED, UTK, colour, make_fairface, make_utkface, utk_name

from mmtrack.data import DataOptions, cifar, load_dataset, utkface
from mmtrack.errors import MMTrackError

AGE_CODES = [-1, -1, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 1, 1, 1, 2, -1]  # hand-computed bins of realdata_files.AGES


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTRACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MMTRACK_DATA", raising=False)
    return tmp_path / "cache" / "datasets"


def load_utk(root, size=8):
    return utkface.load_utkface(DataOptions(data_dir=str(root), image_size=size))


def both(ds, attribute):
    return torch.cat([ds.train.groups[attribute], ds.test.groups[attribute]])


# ------------------------------------------------------------------------------------------------- UTKFace


def test_parse_names_and_age_bins():
    table, skipped = utkface.parse_utkface_names(
        [
            "1_0_0_20161219140623097.jpg.chip.jpg",
            "59_1_2_20170104.jpg",
            "61_1_20170109142408075.jpg.chip.jpg",
            "30_2_0_2017.jpg",
            "30_0_5_2017.jpg",
            "x.jpg",
        ]
    )
    assert table[["age", "gender", "race"]].values.tolist() == [[1, 0, 0], [59, 1, 2]]
    assert skipped == ["61_1_20170109142408075.jpg.chip.jpg", "30_2_0_2017.jpg", "30_0_5_2017.jpg", "x.jpg"]
    ages = np.array([0, 11, 12, 18, 19, 58, 59, 116, 117])
    assert utkface.age_codes(ages).tolist() == [-1, -1, 0, 0, 1, 1, 2, 2, -1]


def test_utkface_labels_groups_and_images(tmp_path, caplog):
    make_utkface(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mmtrack.data.utkface"):
        ds = load_utk(tmp_path)
    assert "skipped 3 file(s)" in caplog.text and MALFORMED[0] in caplog.text
    assert ds.classes == ("male", "female") and ds.fairness_group == ("race", "asian")
    assert (len(ds.train), len(ds.test)) == (16, 4)
    assert ds.train.images.shape == (16, 3, 8, 8) and ds.train.images.dtype == torch.uint8
    assert sorted(both(ds, "age").tolist()) == sorted(AGE_CODES)
    assert ds.test.group_values["race"] == ("white", "black", "asian", "indian", "others")
    assert ds.test.group_values["age"] == ("12-19", "19-59", "59-116")
    assert len(ds.test.group_values["race_age"]) == 15
    race, age, race_age = both(ds, "race"), both(ds, "age"), both(ds, "race_age")
    assert torch.equal(race_age, torch.where(age >= 0, race * 3 + age, -1))
    assert (age == -1).sum() == 3  # ages 5, 8, 10 stay in the data without an age group
    n = {
        v: int(ds.train.group_mask("race_age", v).sum() + ds.test.group_mask("race_age", v).sum())
        for v in ("asian_12-19", "asian_19-59", "asian_59-116")
    }
    assert n == {"asian_12-19": 1, "asian_19-59": 2, "asian_59-116": 1}  # asian = i%5==2: ages 12, 30, 70, 44
    # every image's colour encodes its labels: G = 40*race + 20, B = 100*gender + 60
    for split in (ds.train, ds.test):
        mean = split.images.float().mean(dim=(2, 3))
        assert torch.allclose(mean[:, 1], 40.0 * split.groups["race"] + 20, atol=4)
        assert torch.allclose(mean[:, 2], 100.0 * split.labels + 60, atol=4)


def test_split_is_fixed_and_depends_only_on_the_file_set(tmp_path):
    train, test = utkface.split_indices(20)
    assert (len(train), len(test)) == (16, 4) and sorted([*train, *test]) == list(range(20))
    assert [a.tolist() for a in utkface.split_indices(20)] == [train.tolist(), test.tolist()]
    a, b = load_utk(make_utkface(tmp_path / "a").parent), load_utk(make_utkface(tmp_path / "b", reverse=True).parent)
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.test.labels, b.test.labels)
    assert torch.equal(a.train.groups["race_age"], b.train.groups["race_age"])
    assert a.fingerprint == b.fingerprint  # content, not file mtimes


def test_utkface_alternative_folders(tmp_path):
    folder = make_utkface(tmp_path / "x")
    os.makedirs(tmp_path / "nested" / "UTKFace")
    os.rename(folder, tmp_path / "nested" / "UTKFace" / "UTKFace")
    assert len(load_utk(tmp_path / "nested").test) == 4
    os.rename(tmp_path / "nested" / "UTKFace" / "UTKFace", tmp_path / "lower")
    os.makedirs(tmp_path / "low")
    os.rename(tmp_path / "lower", tmp_path / "low" / "utkface")
    assert len(load_utk(tmp_path / "low").train) == 16


def test_load_dataset_and_default_size(tmp_path):
    make_utkface(tmp_path)
    ds = load_dataset("utkface", data_dir=str(tmp_path), image_size=16)
    assert ds.name == "utkface" and ds.image_size == 16 and ds.ood == {}
    assert utkface.load_utkface(DataOptions(data_dir=str(tmp_path))).image_size == utkface.UTK_DEFAULT_SIZE == 64
    assert ds.fingerprint != load_utk(tmp_path, 8).fingerprint


def test_missing_data_errors(tmp_path, caplog):
    with pytest.raises(MMTrackError) as err:
        load_utk(tmp_path)
    msg = str(err.value)
    assert "[age]_[gender]_[race]_[date&time].jpg" in msg and str(tmp_path / "UTKFace") in msg
    assert "https://susanqq.github.io/UTKFace/" in msg
    make_utkface(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mmtrack.data.utkface"):
        ds = load_utk(tmp_path)
    assert ds.ood == {}
    assert "https://github.com/joojs/fairface" in caplog.text and "fairface_label_val.csv" in caplog.text
    assert "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html" in caplog.text and "list_attr_celeba.txt" in caplog.text
    (tmp_path / "fairface").mkdir()
    with pytest.raises(MMTrackError, match="fairface_label_val.csv"):
        load_utk(tmp_path)


def test_corrupt_jpeg_is_reported_by_name(tmp_path):
    folder = make_utkface(tmp_path)
    (folder / "30_0_2_20170101000000000.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(MMTrackError, match=r"30_0_2_20170101000000000\.jpg.*remove or replace"):
        load_utk(tmp_path)


def test_truncated_jpeg_is_reported_by_name(tmp_path):
    folder = make_utkface(tmp_path)
    good = folder / utk_name(0, *UTK[0])
    Image.effect_noise((64, 64), 50).convert("RGB").save(folder / "31_1_3_20170101000000000.jpg", quality=90)
    data = (folder / "31_1_3_20170101000000000.jpg").read_bytes()
    (folder / "31_1_3_20170101000000000.jpg").write_bytes(data[: len(data) // 2])
    assert good.is_file()
    with pytest.raises(MMTrackError, match=r"31_1_3_20170101000000000\.jpg"):
        load_utk(tmp_path)


def test_cache_second_load_decodes_no_jpeg(tmp_path, cache, monkeypatch):
    folder = make_utkface(tmp_path)
    first = load_utk(tmp_path)
    assert len(list(cache.glob("utkface-8-*.pt"))) == 1

    def no_decoding(*args, **kwargs):
        raise RuntimeError("decoded a JPEG")

    monkeypatch.setattr(Image, "open", no_decoding)
    second = load_utk(tmp_path)
    assert torch.equal(first.train.images, second.train.images) and first.fingerprint == second.fingerprint
    # a changed source file (new mtime) misses the cache
    os.utime(folder / utk_name(3, *UTK[3]), ns=(1, 1))
    with pytest.raises(RuntimeError, match="decoded a JPEG"):
        load_utk(tmp_path)
    monkeypatch.undo()
    monkeypatch.setenv("MMTRACK_CACHE", str(cache.parent))
    assert load_utk(tmp_path).fingerprint == first.fingerprint  # same content, new cache entry
    assert len(list(cache.glob("utkface-8-*.pt"))) == 2


def test_unreadable_cache_is_rebuilt(tmp_path, cache):
    make_utkface(tmp_path)
    first = load_utk(tmp_path)
    (path,) = cache.glob("utkface-8-*.pt")
    path.write_bytes(b"garbage")
    assert torch.equal(load_utk(tmp_path).test.images, first.test.images)


def test_training_run_on_tiny_utkface(tmp_path):
    from mmtrack.models import predict_logits
    from mmtrack.training.config import RunConfig
    from mmtrack.training.train import train_model

    make_utkface(tmp_path)
    data = load_utk(tmp_path)
    cfg = RunConfig(dataset="utkface", epochs=1, batch_size=8, width=0.0625, augment="none")
    model = train_model(cfg, data, device=torch.device("cpu"))
    assert predict_logits(model, data.test.images).shape == (4, 2)


# --------------------------------------------------------------------------------------- FairFace, CelebA

CELEBA_ATTRS = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair "
    "Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face "
    "Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair "
    "Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
CELEBA = [
    ("000001.jpg", 0, 1),
    ("000002.jpg", 0, -1),
    ("000003.jpg", 1, 1),
    ("000004.jpg", 2, 1),
    ("000005.jpg", 2, -1),
    ("000006.jpg", 2, 1),
]  # (file, partition, Male)


def make_celeba(root, monkeypatch):
    """CelebA's official layout; torchvision md5-checks the text files, so point its table at these files."""
    from torchvision.datasets import CelebA

    folder = root / "celeba"
    for i, (file, _, male) in enumerate(CELEBA):
        # 10 wide x 14 high (CelebA faces are portrait): the centre 10x10 square is a solid colour, the two
        # 2-row bands above and below are black and must be cropped away, not squashed in
        img = Image.new("RGB", (10, 14), (0, 0, 0))
        img.paste(Image.new("RGB", (10, 10), colour(int(male < 0), i)), (0, 2))
        (folder / "img_align_celeba").mkdir(parents=True, exist_ok=True)
        img.save(folder / "img_align_celeba" / file, format="JPEG", quality=100, subsampling=0)
    n = len(CELEBA)
    attr_rows = []
    for file, _, male in CELEBA:
        values = [-1] * len(CELEBA_ATTRS)
        values[CELEBA_ATTRS.index("Male")] = male
        attr_rows.append(file + " " + " ".join(f"{v:2d}" for v in values))
    texts = {
        "list_attr_celeba.txt": [str(n), " ".join(CELEBA_ATTRS) + " ", *attr_rows],
        "identity_CelebA.txt": [f"{file} {i + 100}" for i, (file, _, _) in enumerate(CELEBA)],
        "list_bbox_celeba.txt": [
            str(n),
            "image_id x_1 y_1 width height",
            *[f"{file} 95 71 226 313" for file, _, _ in CELEBA],
        ],
        "list_landmarks_align_celeba.txt": [
            str(n),
            "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y",
            *[f"{file} 69 109 106 113 77 142 73 152 108 154" for file, _, _ in CELEBA],
        ],
        "list_eval_partition.txt": [f"{file} {part}" for file, part, _ in CELEBA],
    }
    for name, lines in texts.items():
        (folder / name).write_text("\n".join(lines) + "\n")
    table = [
        (fid, md5(folder / name) if (folder / name).is_file() else digest, name)
        for fid, digest, name in CelebA.file_list
    ]
    monkeypatch.setattr(CelebA, "file_list", table)


def test_fairface_and_celeba_ood_sets(tmp_path, monkeypatch):
    make_utkface(tmp_path)
    make_fairface(tmp_path)
    make_celeba(tmp_path, monkeypatch)
    ds = load_utk(tmp_path)
    assert set(ds.ood) == {"fairface", "celeba"}
    fair = ds.ood["fairface"]
    assert fair.labels.tolist() == [0, 1, 1, 0] and fair.images.shape == (4, 3, 8, 8)
    mean = fair.images.float().mean(dim=(2, 3))
    assert torch.allclose(mean[:, 1], torch.tensor([20.0, 60, 100, 140]), atol=4)  # CSV order kept
    celeba = ds.ood["celeba"]
    assert celeba.labels.tolist() == [0, 1, 0]  # test partition 000004-6; Male 1 -> male (0)
    expected = torch.tensor([colour(g, i) for i, g in ((3, 0), (4, 1), (5, 0))], dtype=torch.float32)
    assert torch.allclose(celeba.images.float().mean(dim=(2, 3)), expected, atol=4)  # black bands cropped off


def test_celeba_wrong_md5_is_reported(tmp_path, monkeypatch):
    make_utkface(tmp_path)
    make_celeba(tmp_path, monkeypatch)
    with open(tmp_path / "celeba" / "identity_CelebA.txt", "a") as f:
        f.write("000007.jpg 1\n")
    with pytest.raises(MMTrackError, match="md5"):
        load_utk(tmp_path)


def test_incomplete_ood_folders_are_errors(tmp_path, monkeypatch):
    make_utkface(tmp_path)
    make_fairface(tmp_path)
    (tmp_path / "fairface" / "val" / "10.jpg").unlink()
    with pytest.raises(MMTrackError, match=r"val/10\.jpg"):
        load_utk(tmp_path)
    (tmp_path / "fairface" / "fairface_label_val.csv").unlink()
    (tmp_path / "fairface").rename(tmp_path / "elsewhere")
    (tmp_path / "celeba").mkdir()
    with pytest.raises(MMTrackError, match="list_eval_partition.txt.*mmlab"):
        load_utk(tmp_path)


# ------------------------------------------------------------------------------------------------ CIFAR-10

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_cifar(root, monkeypatch, per_class_train=40, per_class_test=20):
    """CIFAR-10's python batches (pickled dicts, data rows = 1024 R, 1024 G, 1024 B); md5s pointed at them."""
    from torchvision.datasets import CIFAR10

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}

    def batch(name, n_per_class):
        labels = rng.permutation(np.repeat(np.arange(10), n_per_class))
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump(
                {
                    "batch_label": name,
                    "labels": labels.tolist(),
                    "data": data,
                    "filenames": [f"{i}.png" for i in range(len(labels))],
                },
                f,
            )
        arrays[name] = (data.reshape(-1, 3, 32, 32), labels)

    for i in range(1, 6):
        batch(f"data_batch_{i}", per_class_train // 5)
    batch("test_batch", per_class_test)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(
            {"label_names": CIFAR_CLASSES, "num_cases_per_batch": 10 * per_class_train // 5, "num_vis": 3072}, f
        )
    monkeypatch.setattr(
        CIFAR10, "train_list", [[f"data_batch_{i}", md5(folder / f"data_batch_{i}")] for i in range(1, 6)]
    )
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5(folder / "batches.meta")})
    return arrays


def is_gray(images: torch.Tensor) -> torch.Tensor:
    return ((images[:, 0] == images[:, 1]) & (images[:, 1] == images[:, 2])).flatten(1).all(1)


def test_cifar10_skewed(tmp_path, monkeypatch):
    arrays = make_cifar(tmp_path, monkeypatch)
    ds = load_dataset("cifar10-skewed", data_dir=str(tmp_path))
    assert ds.classes == tuple(CIFAR_CLASSES) and ds.fairness_group == ("skew", "gs-minority")
    assert (len(ds.train), len(ds.test), ds.image_size) == (400, 200, 32)
    for split, per_class, minority in ((ds.train, 40, 2), (ds.test, 20, 1)):  # round(5% of 40) = 2, of 20 = 1
        gray = is_gray(split.images)
        counts = torch.bincount(split.labels[gray], minlength=10).tolist()
        assert counts == [minority] * 5 + [per_class - minority] * 5
        assert torch.equal(split.groups["color"], gray.long())
        assert int(split.group_mask("skew", "gs-minority").sum()) == 5 * minority
        assert torch.equal(split.group_mask("skew", "gs-minority"), gray & (split.labels < 5))
    # test images: colour ones are the source pixels (CHW order), grayscale ones their luma
    source, labels = arrays["test_batch"]
    assert ds.test.labels.tolist() == labels.tolist()
    colour_ = ~is_gray(ds.test.images)
    assert torch.equal(ds.test.images[colour_], torch.from_numpy(source)[colour_])
    luma = torch.from_numpy(source).float().mul(torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(1)
    assert (ds.test.images[~colour_][:, 0].float() - luma[~colour_]).abs().max() < 1.5  # luma, truncated or rounded
    gs = ds.ood["cifar10-gs"]
    assert set(ds.ood) == {"cifar10-gs"} and is_gray(gs.images).all() and torch.equal(gs.labels, ds.test.labels)
    assert torch.equal(gs.images[~colour_], ds.test.images[~colour_])
    again = cifar.load_cifar10_skewed(DataOptions(data_dir=str(tmp_path)))
    assert torch.equal(again.train.images, ds.train.images) and again.fingerprint == ds.fingerprint


def test_cifar10_errors(tmp_path, monkeypatch):
    with pytest.raises(MMTrackError) as err:
        cifar.load_cifar10_skewed(DataOptions(data_dir=str(tmp_path)))
    assert "data_batch_1" in str(err.value) and "https://www.cs.toronto.edu/~kriz/cifar.html" in str(err.value)
    make_cifar(tmp_path, monkeypatch, per_class_train=5, per_class_test=1)
    with pytest.raises(MMTrackError, match="fixed image size of 32"):
        cifar.load_cifar10_skewed(DataOptions(data_dir=str(tmp_path), image_size=64))
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(MMTrackError, match="md5"):
        cifar.load_cifar10_skewed(DataOptions(data_dir=str(tmp_path)))
