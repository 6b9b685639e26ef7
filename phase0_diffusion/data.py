"""MNIST, Fashion-MNIST and CIFAR-10 as in-memory uint8 tensors for small-image diffusion.

``load_images(name, split, root, download)`` looks for data in this order and loads
the first location that holds every file the split needs:

1. ``root`` if given -- and then *only* ``root``, so a typo never silently loads other
   data. Otherwise ``$WM_DATA_DIR/<name>`` (if the variable is set), then
   ``<repo>/data/<name>``.
2. System copies (only when ``root`` is not given): Debian's ``dataset-fashion-mnist``
   installs ``/usr/share/datasets/fashion-mnist``; MNIST is looked for in
   ``/usr/share/datasets/mnist``.
3. torchvision's folder layout under the roots of step 1 (``<root>/MNIST/raw``,
   ``<root>/FashionMNIST/raw``, ``<root>/cifar-10-batches-py``), so data fetched with
   torchvision elsewhere can be pointed at. ``$WM_DATA_DIR`` and ``<repo>/data`` are
   also checked for these folders directly.
4. Only with ``download=True`` (never by default): torchvision downloads into the
   first root of step 1, and the search is repeated.

Otherwise :class:`DataNotFoundError` lists every place looked at and how to add data.

Accepted files: for MNIST / Fashion-MNIST the IDX files ``{train,t10k}-images-idx3-ubyte``
and ``{train,t10k}-labels-idx1-ubyte``, gzipped (``.gz``) or raw. For CIFAR-10 the
python-pickle batches ``data_batch_1..5``, ``test_batch`` and ``batches.meta``, either
in a folder or inside ``cifar-10-python.tar.gz`` (read without extracting). The CIFAR
batches are pickles: only load files you trust.
"""
from __future__ import annotations

import gzip
import os
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.errors import DataError, UserError

DATASETS = ("mnist", "fashion_mnist", "cifar10")
SPLITS = ("train", "test")
REPO_DATA_DIR = Path(__file__).resolve().parents[1] / "data"
# Module-level so tests can point them elsewhere; cifar10 has no Debian package.
SYSTEM_DIRS: dict[str, Path] = {
    "mnist": Path("/usr/share/datasets/mnist"),
    "fashion_mnist": Path("/usr/share/datasets/fashion-mnist"),
}
TORCHVISION_SUBDIRS = {"mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw",
                       "cifar10": "cifar-10-batches-py"}
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CLASSES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck"],
}
IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 0x00000803, 0x00000801


@dataclass
class ImageData:
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    classes: list[str]
    name: str
    source: str  # folder or archive it was read from, or "torchvision download: <dir>"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    def identity(self, split: str) -> dict:
        """What a release records about the data a model saw: name, split, size and a digest of the pixels
        and labels (the same files give the same digest wherever they were read from)."""
        import hashlib
        h = hashlib.sha256(self.images.numpy().tobytes())
        h.update(self.labels.numpy().tobytes())
        return {"name": self.name, "split": split, "images": len(self.images), "shape": list(self.shape),
                "sha256": h.hexdigest()[:16], "source": self.source}


class DataNotFoundError(UserError, FileNotFoundError):
    """No location holds the requested data set (the message says where we looked)."""


# ----------------------------------------------------------------------------- IDX
def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one IDX file (optionally gzipped) into a uint8 array, validating its size."""
    try:
        raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:  # truncated / corrupt gzip
        raise DataError(f"{path}: corrupt or truncated gzip stream ({e})") from e
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: expected an IDX header of {header} bytes, found {len(raw)}")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ValueError(f"{path}: expected IDX magic number {magic:#010x}, found {found:#010x}")
    dims = [int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4)]
    n_bytes = int(np.prod(dims))
    what = "pixels" if ndim == 3 else "labels"
    if len(raw) - header != n_bytes:
        raise DataError(f"{path}: expected {n_bytes} bytes of {what} for shape {tuple(dims)}, "
                         f"found {len(raw) - header}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy()  # copy: writable


def _idx_files(folder: Path, split: str) -> tuple[list[Path], list[str]]:
    """Return (found files [images, labels], names of missing ones); raw preferred over .gz."""
    prefix = "train" if split == "train" else "t10k"
    found, missing = [], []
    for stem in (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"):
        hits = [folder / n for n in (stem, stem + ".gz") if (folder / n).is_file()]
        found.extend(hits[:1])
        if not hits:
            missing.append(f"{stem}[.gz]")
    return found, missing


def _load_idx(name: str, folder: Path, split: str) -> ImageData:
    (img_path, lbl_path), _ = _idx_files(folder, split)
    images = _read_idx(img_path, IDX_IMAGES_MAGIC)
    labels = _read_idx(lbl_path, IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"{img_path} has {len(images)} images but {lbl_path} "
                         f"has {len(labels)} labels")
    return ImageData(torch.from_numpy(images).unsqueeze(1),
                     torch.from_numpy(labels).long(), list(CLASSES[name]), name, str(folder))


# ------------------------------------------------------------------------- CIFAR-10
def _cifar_members(place: Path, split: str) -> tuple[dict[str, bytes] | None, list[str]]:
    """Read the needed CIFAR batch files from a folder or tar.gz; (None, missing) if absent."""
    wanted = CIFAR_BATCHES[split] + ["batches.meta"]
    required = CIFAR_BATCHES[split]  # batches.meta is optional: there is a standard list
    if place.is_file():  # the archive: members live under cifar-10-batches-py/
        try:
            with tarfile.open(place, "r:gz") as tar:
                members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
                missing = [f for f in required if f not in members]
                if missing:
                    return None, missing
                return {f: tar.extractfile(members[f]).read() for f in wanted if f in members}, []
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise DataError(f"{place}: corrupt or truncated tar.gz archive ({e})") from e
    missing = [f for f in required if not (place / f).is_file()]
    if missing:
        return None, missing
    return {f: (place / f).read_bytes() for f in wanted if (place / f).is_file()}, []


def _load_cifar(place: Path, split: str, blobs: dict[str, bytes]) -> ImageData:
    images, labels = [], []
    for f in CIFAR_BATCHES[split]:
        batch = pickle.loads(blobs[f], encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(batch[b"labels"]) != len(data):
            raise DataError(f"{place}/{f}: expected data (N, 3072) and N labels, found data "
                             f"{data.shape} and {len(batch[b'labels'])} labels")
        # Each row is the R, G, B planes of 32x32 pixels, row-major: a plain reshape gives CHW.
        images.append(data.reshape(-1, 3, 32, 32))
        labels.extend(batch[b"labels"])
    classes = list(CLASSES["cifar10"])
    if "batches.meta" in blobs:
        meta = pickle.loads(blobs["batches.meta"], encoding="bytes")
        classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta[b"label_names"]]
    return ImageData(torch.from_numpy(np.concatenate(images)),
                     torch.tensor(labels, dtype=torch.int64), classes, "cifar10", str(place))


# ---------------------------------------------------------------------------- search
def _roots(name: str, root: str | os.PathLike | None) -> list[Path]:
    """Step-1 roots, most explicit first; the first is where a download goes."""
    if root is not None:
        return [Path(root)]
    env = os.environ.get("WM_DATA_DIR")
    return ([Path(env) / name] if env else []) + [REPO_DATA_DIR / name]


def _candidates(name: str, root: str | os.PathLike | None) -> list[Path]:
    """Every folder (or CIFAR archive) to try, in resolution order."""
    roots = _roots(name, root)
    places = roots + ([SYSTEM_DIRS[name]] if root is None and name in SYSTEM_DIRS else [])
    # torchvision lays data out as <dir>/MNIST/raw etc.; without an explicit root also accept
    # that layout one level up, e.g. $WM_DATA_DIR/MNIST/raw after a download into $WM_DATA_DIR.
    bases = roots if root is not None else [b for r in roots for b in (r, r.parent)]
    places += [b / TORCHVISION_SUBDIRS[name] for b in bases]
    if name == "cifar10":  # the archive may sit where the batch folder would
        places += [b / CIFAR_ARCHIVE for b in bases]
    return list(dict.fromkeys(places))  # drop duplicates, keep order


def _search(name: str, split: str,
            root: str | os.PathLike | None) -> tuple[ImageData | None, list[str]]:
    """Load from the first complete location; also return notes on the places that were not."""
    looked = []
    for place in _candidates(name, root):
        if not place.exists():
            looked.append(f"{place} (does not exist)")
            continue
        if name == "cifar10":
            blobs, missing = _cifar_members(place, split)
            if blobs is not None:
                return _load_cifar(place, split, blobs), looked
        elif not place.is_dir():
            missing = ["IDX files (this is not a folder)"]
        else:
            missing = _idx_files(place, split)[1]
            if not missing:
                return _load_idx(name, place, split), looked
        looked.append(f"{place} (missing {', '.join(missing)})")
    return None, looked


def _download(name: str, split: str, target: Path) -> None:
    import torchvision.datasets as tvd  # only needed here; keeps import of this module light

    cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]
    cls(str(target), train=(split == "train"), download=True)


def load_images(name: str, split: str = "train", root: str | os.PathLike | None = None,
                download: bool = False) -> ImageData:
    """Load a whole split as uint8 (N, C, H, W) images and int64 labels (see module doc)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    data, looked = _search(name, split, root)
    if data is None and download:
        target = _roots(name, root)[0]
        _download(name, split, target)
        data, _ = _search(name, split, target)
        if data is not None:
            data.source = f"torchvision download: {data.source}"
    if data is None:
        files = ("cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} or "
                 f"{CIFAR_ARCHIVE}" if name == "cifar10" else
                 "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]")
        raise DataNotFoundError(
            f"{name} ({split}) not found. Looked in:\n  " + "\n  ".join(looked) +
            "\nTo supply it, any of:\n"
            + ("  - apt-get install dataset-fashion-mnist (Debian)\n" if name == "fashion_mnist" else "")
            + f"  - copy the standard files ({files}) into {REPO_DATA_DIR / name}/\n"
            f"  - set WM_DATA_DIR so that $WM_DATA_DIR/{name}/ holds them\n"
            "  - pass data.download=true (download=True) on a machine with internet")
    return data


# ------------------------------------------------------------------------ transforms
def pad_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad uint8 (..., H, W) images, centred, to (..., size, size) (e.g. 28 -> 32).

    Requires uint8 so the pad value 0 is the black background; padding after
    to_model_range would make 0 mid-grey.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"pad_to expects uint8 images (pad value 0 = background), got {images.dtype}")
    h, w = images.shape[-2:]
    if size < h or size < w:
        raise DataError(f"pad_to: size {size} is smaller than the images ({h}x{w})")
    top, left = (size - h) // 2, (size - w) // 2
    out = images.new_zeros(*images.shape[:-2], size, size)
    out[..., top:top + h, left:left + w] = images
    return out


# ------------------------------------------------------------------------ synthetic
SYNTHETIC_CLASSES = ["horizontal bar", "vertical bar", "square", "cross"]


def synthetic_images(n: int, size: int = 16, channels: int = 1, seed: int = 0) -> ImageData:
    """Tiny procedurally drawn shapes (4 classes) for smoke tests that must not depend on any data set."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, channels, size, size, dtype=torch.uint8)
    labels = torch.arange(n) % len(SYNTHETIC_CLASSES)
    for i, c in enumerate(labels.tolist()):
        k = max(2, size // 4)
        r, col = torch.randint(0, size - k, (2,), generator=g).tolist()
        img = images[i]
        if c == 0:
            img[:, r:r + 2, :] = 255
        elif c == 1:
            img[:, :, col:col + 2] = 255
        elif c == 2:
            img[:, r:r + k, col:col + k] = 255
        else:
            img[:, r:r + k, col + k // 2] = 255
            img[:, r + k // 2, col:col + k] = 255
    return ImageData(images, labels, list(SYNTHETIC_CLASSES), "synthetic", f"generated (seed {seed})")


# ----------------------------------------------------------------- what the commands train and measure on

class ImageTensorDataset(torch.utils.data.Dataset):
    """(uint8 image, label) pairs of an ImageData, for the Trainer."""

    def __init__(self, data: ImageData):
        self.images, self.labels = data.images, data.labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]


def build_split(d, channels: int, split: str = "train") -> ImageData:
    """Load (or generate) a split as a DataConfig `d` says, pad and limit it, and check it has `channels`
    channels (a ConfigError naming model.unet.in_channels otherwise)."""
    from common.config import ConfigError
    if d.name == "synthetic":
        data = synthetic_images(d.synthetic_count, d.synthetic_size, channels, seed=0 if split == "train" else 1)
    else:
        data = load_images(d.name, split, root=d.root or None, download=d.download)
    if d.pad_to:
        data.images = pad_to(data.images, d.pad_to)
    if d.limit and split == "train":
        data.images, data.labels = data.images[:d.limit], data.labels[:d.limit]
    if data.shape[0] != channels:
        raise ConfigError("model.unet.in_channels", channels, f"{d.name} images have {data.shape[0]} channel(s): "
                          f"set model.unet.in_channels={data.shape[0]} model.unet.out_channels={data.shape[0]}")
    return data
