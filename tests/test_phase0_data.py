"""Offline tests for phase0_diffusion.data: every on-disk format is written small in tmp_path."""
from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from phase0_diffusion import data as D
from common.images import to_model_range, to_uint8
from phase0_diffusion.data import DATASETS, DataNotFoundError, ImageData, load_images, pad_to

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------ file writers
def write_idx(path: Path, arr: np.ndarray, gz: bool) -> Path:
    """Write arr (uint8) as an IDX file: magic 0x0000 08 <ndim>, big-endian dims, bytes."""
    header = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    payload = header + np.ascontiguousarray(arr, np.uint8).tobytes()
    path = path.with_name(path.name + ".gz") if gz else path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def make_idx(folder: Path, split: str = "train", n: int = 4, gz: bool = True):
    prefix = "train" if split == "train" else "t10k"
    images = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = RNG.integers(0, 10, n, dtype=np.uint8)
    write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz)
    return images, labels


def cifar_batches(n_per_batch: int = 2, label_names: list[str] | None = None) -> dict[str, bytes]:
    """Pickled CIFAR batches (bytes keys, as the real python-2 pickles decode) by file name."""
    files = {}
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows = RNG.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = RNG.integers(0, 10, n_per_batch).tolist()
        files[f] = pickle.dumps({b"data": rows, b"labels": labels, b"batch_label": f.encode()})
    if label_names is not None:
        files["batches.meta"] = pickle.dumps({b"label_names": [s.encode() for s in label_names]})
    return files


def write_dir(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        (folder / name).write_bytes(blob)


def expected_cifar(files: dict[str, bytes], split: str):
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    batches = [pickle.loads(files[f]) for f in names]
    return (np.concatenate([b[b"data"] for b in batches]),
            np.concatenate([b[b"labels"] for b in batches]))


@pytest.fixture
def no_default_data(tmp_path, monkeypatch):
    """Point every implicit location at empty tmp folders and forbid downloads."""
    monkeypatch.delenv("WM_DATA_DIR", raising=False)
    monkeypatch.setattr(D, "REPO_DATA_DIR", tmp_path / "repo_data")
    monkeypatch.setattr(D, "SYSTEM_DIRS", {"mnist": tmp_path / "sys" / "mnist",
                                           "fashion_mnist": tmp_path / "sys" / "fashion-mnist"})

    def no_download(*args, **kwargs):
        raise AssertionError("tests must never download")

    monkeypatch.setattr(D, "_download", no_download)
    return tmp_path


# ------------------------------------------------------------------ MNIST / Fashion-MNIST
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("split", ["train", "test"])
def test_idx_roundtrip(no_default_data, gz, split):
    root = no_default_data / "mnist_files"
    images, labels = make_idx(root, split, n=5, gz=gz)
    d = load_images("mnist", split, root=root)
    assert isinstance(d, ImageData)
    assert d.images.dtype == torch.uint8 and d.labels.dtype == torch.int64
    assert d.images.shape == (5, 1, 28, 28) and d.shape == (1, 28, 28)
    assert torch.equal(d.images[:, 0], torch.from_numpy(images))
    assert torch.equal(d.labels, torch.from_numpy(labels).long())
    assert d.classes == [str(i) for i in range(10)] and d.num_classes == 10
    assert d.name == "mnist" and d.source == str(root)


def test_splits_are_distinct(no_default_data):
    root = no_default_data / "f"
    train_imgs, _ = make_idx(root, "train", n=6)
    test_imgs, _ = make_idx(root, "test", n=3)
    assert torch.equal(load_images("fashion_mnist", "train", root=root).images[:, 0],
                       torch.from_numpy(train_imgs))
    d = load_images("fashion_mnist", "test", root=root)
    assert torch.equal(d.images[:, 0], torch.from_numpy(test_imgs))
    assert d.classes[0] == "T-shirt/top" and d.classes[-1] == "Ankle boot" and d.num_classes == 10


def test_torchvision_raw_layout(no_default_data):
    root = no_default_data / "tv"
    images, labels = make_idx(root / "FashionMNIST" / "raw", gz=False)
    d = load_images("fashion_mnist", root=root)
    assert torch.equal(d.images[:, 0], torch.from_numpy(images))
    assert d.source == str(root / "FashionMNIST" / "raw")


def test_wm_data_dir(no_default_data, monkeypatch):
    env = no_default_data / "env"
    images, labels = make_idx(env / "mnist")
    tv_images, _ = make_idx(env / "FashionMNIST" / "raw")  # torchvision download into $WM_DATA_DIR
    monkeypatch.setenv("WM_DATA_DIR", str(env))
    d = load_images("mnist")
    assert torch.equal(d.images[:, 0], torch.from_numpy(images))
    assert torch.equal(d.labels, torch.from_numpy(labels).long())
    assert d.source == str(env / "mnist")
    assert torch.equal(load_images("fashion_mnist").images[:, 0], torch.from_numpy(tv_images))


def test_repo_data_and_system_fallback(no_default_data):
    sys_imgs, _ = make_idx(D.SYSTEM_DIRS["fashion_mnist"])
    assert load_images("fashion_mnist").source == str(D.SYSTEM_DIRS["fashion_mnist"])
    repo_imgs, _ = make_idx(D.REPO_DATA_DIR / "fashion_mnist")  # repo data wins over system copy
    d = load_images("fashion_mnist")
    assert torch.equal(d.images[:, 0], torch.from_numpy(repo_imgs))


def test_explicit_root_is_exclusive(no_default_data):
    make_idx(D.SYSTEM_DIRS["fashion_mnist"])
    (no_default_data / "empty").mkdir()
    with pytest.raises(DataNotFoundError):
        load_images("fashion_mnist", root=no_default_data / "empty")


# ------------------------------------------------------------------ CIFAR-10
def check_cifar(d: ImageData, files: dict[str, bytes], split: str) -> None:
    rows, labels = expected_cifar(files, split)
    assert d.images.dtype == torch.uint8 and d.images.shape == (len(rows), 3, 32, 32)
    assert d.shape == (3, 32, 32)
    assert torch.equal(d.labels, torch.from_numpy(labels).long())
    # Pixel (row 5, col 7) of image 1: R, G, B live at offsets 0, 1024, 2048 of the flat row.
    flat = 5 * 32 + 7
    assert d.images[1, :, 5, 7].tolist() == [int(rows[1, c * 1024 + flat]) for c in range(3)]
    assert torch.equal(d.images.reshape(len(rows), -1), torch.from_numpy(rows))


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar_batch_folder(no_default_data, split):
    names = [f"class{i}" for i in range(10)]
    files = cifar_batches(label_names=names)
    root = no_default_data / "c"
    write_dir(root / "cifar-10-batches-py", files)
    d = load_images("cifar10", split, root=root)
    check_cifar(d, files, split)
    assert d.classes == names and d.num_classes == 10
    assert d.source == str(root / "cifar-10-batches-py")


def test_cifar_channel_order_explicit(no_default_data):
    files = cifar_batches(n_per_batch=1)
    rows = np.zeros((1, 3072), np.uint8)
    rows[0, [0 * 1024 + 40, 1 * 1024 + 40, 2 * 1024 + 40]] = [10, 20, 30]  # pixel (1, 8)
    files["test_batch"] = pickle.dumps({b"data": rows, b"labels": [3]})
    write_dir(no_default_data / "c", files)
    d = load_images("cifar10", "test", root=no_default_data / "c")  # files directly in root
    assert d.images[0, :, 1, 8].tolist() == [10, 20, 30]
    assert int(d.images.sum()) == 60
    assert d.classes[0] == "airplane" and d.classes[-1] == "truck"  # no batches.meta: standard


def test_cifar_tar_archive(no_default_data):
    files = cifar_batches(label_names=list("abcdefghij"))
    root = no_default_data / "arch"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    for split in ("train", "test"):
        d = load_images("cifar10", split, root=root)
        check_cifar(d, files, split)
        assert d.classes == list("abcdefghij")
        assert d.source == str(root / "cifar-10-python.tar.gz")
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz"]  # not extracted


# ------------------------------------------------------------------ errors
def test_bad_name_and_split(no_default_data):
    with pytest.raises(ValueError, match="cifar10"):
        load_images("imagenet")
    with pytest.raises(ValueError, match="'train', 'test'"):
        load_images("mnist", "val")
    assert DATASETS == ("mnist", "fashion_mnist", "cifar10")


def test_not_found_message(no_default_data, monkeypatch):
    env = no_default_data / "env"
    monkeypatch.setenv("WM_DATA_DIR", str(env))
    with pytest.raises(DataNotFoundError) as exc:
        load_images("fashion_mnist", download=False)
    assert isinstance(exc.value, FileNotFoundError)
    msg = str(exc.value)
    for place in (env / "fashion_mnist", D.REPO_DATA_DIR / "fashion_mnist",
                  D.SYSTEM_DIRS["fashion_mnist"], env / "FashionMNIST" / "raw"):
        assert str(place) in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "WM_DATA_DIR" in msg and "data.download=true" in msg


def test_partial_folder_is_reported(no_default_data):
    root = no_default_data / "p"
    write_idx(root / "train-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8), gz=True)
    with pytest.raises(DataNotFoundError, match="missing train-labels-idx1-ubyte"):
        load_images("mnist", root=root)


def test_download_only_on_request(no_default_data, monkeypatch):
    calls = []

    def fake_download(name, split, target):  # stands in for torchvision: raw layout in target
        calls.append(target)
        make_idx(target / "MNIST" / "raw")

    monkeypatch.setattr(D, "_download", fake_download)
    with pytest.raises(DataNotFoundError):
        load_images("mnist")
    assert calls == []
    d = load_images("mnist", download=True)
    assert calls == [D.REPO_DATA_DIR / "mnist"]
    assert d.source.startswith("torchvision download") and len(d.images) == 4


def test_truncated_idx(no_default_data):
    root = no_default_data / "t"
    make_idx(root, n=4, gz=False)
    path = root / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:16 + 100])
    with pytest.raises(ValueError, match="expected 3136 bytes of pixels.*found 100") as exc:
        load_images("mnist", root=root)
    assert str(path) in str(exc.value)


def test_truncated_gzip_and_bad_magic(no_default_data):
    root = no_default_data / "g"
    make_idx(root, n=4, gz=True)
    path = root / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz"):
        load_images("mnist", root=root)
    write_idx(root / "train-labels-idx1-ubyte", np.zeros((4, 28, 28), np.uint8), gz=False)
    with pytest.raises(ValueError, match="magic"):  # raw file preferred over .gz
        load_images("mnist", root=root)


def test_mismatched_counts(no_default_data):
    root = no_default_data / "m"
    make_idx(root, n=4)
    write_idx(root / "train-labels-idx1-ubyte", np.zeros(3, np.uint8), gz=True)
    with pytest.raises(ValueError) as exc:
        load_images("mnist", root=root)
    assert "train-images-idx3-ubyte" in str(exc.value) and "train-labels-idx1-ubyte" in str(exc.value)


# ------------------------------------------------------------------ transforms
def test_model_range_roundtrip():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    y = to_model_range(x)
    assert y.dtype == torch.float32 and y.min() == -1.0 and y.max() == 1.0
    assert torch.equal(to_uint8(y), x)
    out = to_uint8(torch.tensor([-3.0, -1.0, 0.0, 1.0, 5.0]))
    assert out.dtype == torch.uint8 and out.tolist() == [0, 0, 128, 255, 255]


def test_pad_to():
    x = torch.randint(1, 256, (3, 1, 28, 28), dtype=torch.uint8)
    y = pad_to(x, 32)
    assert y.shape == (3, 1, 32, 32) and y.dtype == torch.uint8
    assert torch.equal(y[..., 2:30, 2:30], x)
    mask = torch.ones(32, 32, dtype=torch.bool)
    mask[2:30, 2:30] = False
    assert (y[..., mask] == 0).all()
    assert torch.equal(pad_to(x, 28), x)
    with pytest.raises(ValueError):
        pad_to(x, 16)
    with pytest.raises(TypeError):
        pad_to(to_model_range(x), 32)


def test_corrupt_cifar_archive(no_default_data):
    root = no_default_data / "bad"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(gzip.compress(b"not a tar")[:15])
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz"):
        load_images("cifar10", root=root)
