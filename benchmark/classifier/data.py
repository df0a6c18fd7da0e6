"""Digit data for the classifier track: sklearn's bundled 8×8 digits, or real MNIST from local IDX files.

Nothing is downloaded. Pixels are scaled to [-1, 1], the range of the default U[-1, 1] distillation noise
(docs/research/paper.md, "MNIST auxiliary-logit experiment"). numpy only; stages convert to torch.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from benchmark.errors import UserError

__all__ = [
    "DigitData",
    "IDX_FILES",
    "data_fingerprint",
    "find_idx_files",
    "load_digits_split",
    "load_data",
    "load_idx_dataset",
    "read_idx",
]

#: Split -> (images stem, labels stem), the names MNIST ships under (a ".gz" suffix is accepted too).
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: IDX magic numbers: 0x0000, type code 0x08 (unsigned byte), number of dimensions.
_IDX_UBYTE = 0x08


@dataclass(frozen=True)
class DigitData:
    """A train/test split, images flattened to float32 rows in [-1, 1], labels int64 in 0..9."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    #: (height, width) of one image, for convolutional models.
    image_shape: tuple[int, int]

    @property
    def n_features(self) -> int:
        return self.image_shape[0] * self.image_shape[1]


def load_digits_split(test_fraction: float = 0.3, split_seed: int = 0) -> DigitData:
    """sklearn's bundled 8×8 digits (1,797 images), a stratified split, pixels x/8 − 1 ∈ [−1, 1].

    The default 70/30 split with seed 0 gives 1,257 train / 540 test images (docs/research/prototypes.md).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    # Pixel values are 0..16 (counts of set pixels in 4×4 blocks): x/8 − 1 maps them onto [−1, 1].
    x = (bunch.data.astype(np.float32) / 8.0) - 1.0
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=split_seed
    )
    return DigitData("digits", np.ascontiguousarray(x_tr), y_tr, np.ascontiguousarray(x_te), y_te, (8, 8))


def _open_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    if path.suffix == ".gz":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise UserError(f"{path}: not a valid gzip file ({exc})") from None
    return raw


def read_idx(path: Path, expect_dims: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes (MNIST format), checking magic number and size.

    Args:
        path: the file (``.gz`` is decompressed).
        expect_dims: 3 for images (n, rows, cols), 1 for labels (n,).

    Raises:
        UserError: bad magic number, wrong number of dimensions, or a payload size that does not match the
            header (truncated or padded file).
    """
    path = Path(path)
    data = _open_bytes(path)
    if len(data) < 4:
        raise UserError(f"{path}: truncated IDX file ({len(data)} bytes, no header)")
    zero, dtype, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    magic = int.from_bytes(data[:4], "big")
    want = (_IDX_UBYTE << 8) | expect_dims
    if zero != 0 or dtype != _IDX_UBYTE or ndim != expect_dims:
        raise UserError(
            f"{path}: bad IDX magic number 0x{magic:08x}, expected 0x{want:08x} "
            f"(unsigned-byte {'images' if expect_dims == 3 else 'labels'}, {expect_dims} dims)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    payload = int(np.prod(shape, dtype=np.int64))
    got = len(data) - header
    if got != payload:
        what = "truncated" if got < payload else "has trailing bytes"
        raise UserError(
            f"{path}: IDX file {what}: header says shape {shape} = {payload} bytes, file has {got}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def find_idx_files(directory: Path) -> dict[str, tuple[Path, Path]]:
    """Locate the four MNIST IDX files in ``directory`` (plain or ``.gz``; '-' or '.' before 'idx').

    Raises:
        UserError: the directory or any of the four files is missing.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(
            f"settings.idx_path: {directory} is not a directory (expected the four MNIST IDX files)"
        )
    found: dict[str, tuple[Path, Path]] = {}
    for split, stems in IDX_FILES.items():
        pair = []
        for stem in stems:
            variants = [stem, stem.replace("-idx", ".idx")]
            hits = [
                directory / (v + gz)
                for v in variants
                for gz in ("", ".gz")
                if (directory / (v + gz)).is_file()
            ]
            if not hits:
                raise UserError(
                    f"settings.idx_path: {directory} has no {stem} (or {stem}.gz); expected files: "
                    + ", ".join(s for pair_ in IDX_FILES.values() for s in pair_)
                )
            pair.append(hits[0])
        found[split] = (pair[0], pair[1])
    return found


def load_idx_dataset(directory: Path) -> DigitData:
    """Real MNIST from IDX files in ``directory``; pixels x/127.5 − 1 ∈ [−1, 1].

    Raises:
        UserError: missing files, bad magic numbers, truncated files, image/label count mismatch,
            labels outside 0..9, or train and test images of different sizes.
    """
    files = find_idx_files(directory)
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, (img_path, lab_path) in files.items():
        images = read_idx(img_path, 3)
        labels = read_idx(lab_path, 1)
        if images.shape[0] != labels.shape[0]:
            raise UserError(
                f"{lab_path}: {labels.shape[0]} labels but {img_path.name} has {images.shape[0]} images"
            )
        if images.shape[0] == 0:
            raise UserError(f"{img_path}: no images")
        if labels.max() > 9:
            raise UserError(f"{lab_path}: label {int(labels.max())} outside 0..9")
        arrays[split] = (images, labels)
    shape_tr, shape_te = arrays["train"][0].shape[1:], arrays["test"][0].shape[1:]
    if shape_tr != shape_te:
        raise UserError(f"{files['test'][0]}: images are {shape_te}, train images are {shape_tr}")

    def scale(a: np.ndarray) -> np.ndarray:
        # 0..255 grey levels onto [−1, 1], like the noise the students see.
        return np.ascontiguousarray(a.reshape(a.shape[0], -1).astype(np.float32) / 127.5 - 1.0)

    return DigitData(
        "idx",
        scale(arrays["train"][0]),
        arrays["train"][1].astype(np.int64),
        scale(arrays["test"][0]),
        arrays["test"][1].astype(np.int64),
        (int(shape_tr[0]), int(shape_tr[1])),
    )


def data_fingerprint(
    data: str, idx_path: str | None, test_fraction: float, split_seed: int
) -> dict[str, object]:
    """What identifies the data in node specs: the split rule for digits, file sha256s for IDX.

    Hashing the IDX bytes (not the path) means moving the files keeps the cache, and swapping them does not
    silently reuse results from other data.
    """
    if data == "digits":
        return {
            "name": "digits",
            "test_fraction": test_fraction,
            "split_seed": split_seed,
            "image_shape": [8, 8],
        }
    files = find_idx_files(Path(str(idx_path)))
    digests = {}
    for split, paths in files.items():
        for kind, p in zip(("images", "labels"), paths, strict=True):
            digests[f"{split}_{kind}"] = hashlib.sha256(_open_bytes(p)).hexdigest()
    # Read the image header once so the plan knows the input shape without loading everything.
    header = _open_bytes(files["train"][0])[:16]
    rows, cols = int.from_bytes(header[8:12], "big"), int.from_bytes(header[12:16], "big")
    return {"name": "idx", "sha256": digests, "image_shape": [rows, cols]}


def load_data(fingerprint: dict[str, object], idx_path: str | None = None) -> DigitData:
    """Load the data a fingerprint describes (``idx_path`` is needed for IDX data)."""
    if fingerprint["name"] == "digits":
        fraction, seed = fingerprint["test_fraction"], fingerprint["split_seed"]
        return load_digits_split(float(cast(float, fraction)), int(cast(int, seed)))
    data = load_idx_dataset(Path(str(idx_path)))
    return data
