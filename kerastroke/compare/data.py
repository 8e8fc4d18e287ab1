"""Datasets for `kerastroke compare`: bundled with scikit-learn, or a user's .npz file.

Nothing here downloads. The bundled datasets ship inside scikit-learn and are
split once, stratified, with a fixed seed, so every comparison on them sees the
same training and validation samples whatever `--seeds` says.

A user's file is checked completely before any training starts; every problem
raises `DataError` with a one-line message meant to be shown as it is.
"""

import dataclasses
import os
import zipfile

import numpy as np

BUNDLED = ("digits", "breast_cancer", "wine")
NPZ_KEYS = ("x_train", "y_train", "x_val", "y_val")
VALIDATION_FRACTION = 0.2
SPLIT_SEED = 0
MAX_CLASSES = 10_000
FLOAT32_MAX = float(np.finfo(np.float32).max)
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members; an empty zip


class DataError(ValueError):
    """A dataset that cannot be used; `str(error)` is one line for the user."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Training and validation arrays for a classifier on flat features.

    Attributes:
        name: "digits", "breast_cancer", "wine", or the .npz file's path.
        source: One line saying where the arrays came from.
        x_train: float32, shape (samples, features).
        y_train: int32 class labels, shape (samples,).
        x_val: float32, shape (samples, features).
        y_val: int32 class labels, shape (samples,).

    Example:
    >>> dataset = load_bundled("wine")
    >>> dataset.features, dataset.classes
    (13, 3)
    """

    name: str
    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray

    @property
    def features(self):
        return int(self.x_train.shape[1])

    @property
    def classes(self):
        return int(max(self.y_train.max(), self.y_val.max())) + 1

    def describe(self):
        """A JSON-ready summary (no arrays)."""
        return {
            "name": self.name,
            "source": self.source,
            "train_samples": int(len(self.x_train)),
            "val_samples": int(len(self.x_val)),
            "features": self.features,
            "classes": self.classes,
        }


def load_bundled(name):
    """One of scikit-learn's bundled datasets, split 80/20 stratified, standardised.

    Features are standardised with the training split's mean and standard
    deviation only, so the validation split never informs preprocessing.

    Args:
        name: "digits" (1,797 8x8 images, 10 classes), "breast_cancer"
            (569 samples, 30 features, 2 classes) or "wine" (178 samples,
            13 features, 3 classes).

    Example:
    >>> load_bundled("digits").describe()["train_samples"]
    1437
    """
    # Imported here so that a user's .npz file never waits for scikit-learn.
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    loaders = {
        "digits": datasets.load_digits,
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
    }
    if name not in loaders:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(BUNDLED)}")
    x, y = loaders[name](return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=VALIDATION_FRACTION, stratify=y, random_state=SPLIT_SEED
    )
    mean = x_train.mean(axis=0)
    scale = x_train.std(axis=0)
    # Constant features (the digits' blank border pixels) would divide by zero.
    scale[scale == 0] = 1.0
    return Dataset(
        name=name,
        source=f"scikit-learn's bundled {name} dataset, stratified "
        f"{1 - VALIDATION_FRACTION:.0%}/{VALIDATION_FRACTION:.0%} split (seed {SPLIT_SEED}), "
        "standardised with training statistics",
        x_train=((x_train - mean) / scale).astype("float32"),
        y_train=y_train.astype("int32"),
        x_val=((x_val - mean) / scale).astype("float32"),
        y_val=y_val.astype("int32"),
    )


def load_npz(path):
    """A user's arrays from an .npz file with x_train, y_train, x_val, y_val.

    The arrays are used as given (no scaling). `x_*` must be 2-D numeric
    arrays (samples, features) with the same number of features; `y_*` 1-D
    non-negative integer class labels, one per sample of the matching `x_*`.
    The file is read with `allow_pickle=False`: it can hold no code.

    Raises:
        DataError: The file is missing, not an .npz archive (a zip of .npy
            files), lacks a key, holds arrays of the wrong kind, dimensions or
            lengths, values beyond float32's range, or validation labels that
            the training labels never have.

    Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "mine.npz")
    >>> np.savez(path, x_train=np.ones((4, 3)), y_train=[0, 1, 0, 1],
    ...          x_val=np.ones((2, 3)), y_val=[1, 0])
    >>> load_npz(path).describe()["classes"]
    2
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not an .npz file")
    _check_archive(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for a file it cannot parse
        raise DataError(f"{path}: not a readable .npz file ({_one_line(exc)})") from None
    with archive:
        missing = [key for key in NPZ_KEYS if key not in archive.files]
        if missing:
            found = ", ".join(archive.files) or "nothing"
            raise DataError(f"{path}: missing array {', '.join(missing)} (found: {found})")
        arrays = {}
        for key in NPZ_KEYS:
            try:
                arrays[key] = archive[key]
            except ValueError as exc:
                if "pickle" not in str(exc):
                    raise DataError(f"{path}: cannot read {key} ({_one_line(exc)})") from None
                # numpy's advice to set allow_pickle would run code from the file: say what it is.
                raise DataError(
                    f"{path}: cannot read {key}: it holds Python objects (dtype object), "
                    "not numbers; save numeric arrays"
                ) from None
            except Exception as exc:  # truncated or corrupt members
                raise DataError(f"{path}: cannot read {key} ({_one_line(exc)})") from None
    for split in ("train", "val"):
        _check_features(path, f"x_{split}", arrays[f"x_{split}"])
        _check_labels(path, f"y_{split}", arrays[f"y_{split}"])
        if len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
            raise DataError(
                f"{path}: x_{split} has {len(arrays[f'x_{split}'])} samples but "
                f"y_{split} has {len(arrays[f'y_{split}'])}; they must match"
            )
    if arrays["x_train"].shape[1] != arrays["x_val"].shape[1]:
        raise DataError(
            f"{path}: x_train has {arrays['x_train'].shape[1]} features but x_val has "
            f"{arrays['x_val'].shape[1]}; they must match"
        )
    unseen = np.setdiff1d(arrays["y_val"], arrays["y_train"])
    if unseen.size:
        shown = ", ".join(str(int(label)) for label in unseen[:10]) + (", ..." if unseen.size > 10 else "")
        raise DataError(
            f"{path}: y_val has labels that y_train never has ({shown}); "
            "a model cannot learn a class it never sees in training"
        )
    top = int(max(arrays["y_train"].max(), arrays["y_val"].max()))
    if top < 1:
        raise DataError(f"{path}: the labels hold a single class (0); a classifier needs two or more")
    if top >= MAX_CLASSES:
        # Labels must be class indices: a label of 10**6 would build a million-unit output layer.
        raise DataError(
            f"{path}: the largest label is {top}; labels must be class indices 0..{MAX_CLASSES - 1}"
        )
    return Dataset(
        name=path,
        source=f"the user's file {path}, used as given",
        x_train=arrays["x_train"].astype("float32"),
        y_train=arrays["y_train"].astype("int32"),
        x_val=arrays["x_val"].astype("float32"),
        y_val=arrays["y_val"].astype("int32"),
    )


def _check_archive(path):
    """Checks that `path` is a zip of .npy members before numpy reads it.

    numpy's own errors for other files are misleading: a text file is refused
    with advice about `allow_pickle`, and a zip member that is not a .npy
    file comes back as raw bytes.
    """
    try:
        with open(path, "rb") as file:
            head = file.read(6)
    except OSError as error:
        raise DataError(f"{path}: cannot read it ({error.strerror or error})") from None
    if head == _NPY_MAGIC:
        raise DataError(
            f"{path}: holds a single array, not an .npz archive with {', '.join(NPZ_KEYS)} "
            "(save one with numpy.savez)"
        )
    if head[:4] not in _ZIP_MAGICS:
        raise DataError(
            f"{path}: not an .npz archive (numpy.savez writes a zip of .npy arrays; "
            "this file is not a zip)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                if not member.filename.endswith(".npy"):
                    raise DataError(
                        f"{path}: member {member.filename!r} is not a .npy array; an .npz "
                        "holds only .npy files (save one with numpy.savez)"
                    )
                with archive.open(member) as stream:
                    if stream.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
                        raise DataError(
                            f"{path}: member {member.filename!r} is named .npy but is not a "
                            ".npy array (save the file with numpy.savez)"
                        )
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({_one_line(exc)})") from None


def _check_features(path, key, x):
    if x.ndim != 2:
        raise DataError(
            f"{path}: {key} must be 2-D (samples, features) but has shape {x.shape}; "
            "reshape it, e.g. x.reshape(len(x), -1)"
        )
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: {key} must hold numbers but has dtype {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"{path}: {key} is empty (shape {x.shape})")
    wide = x.astype("float64")
    if not np.isfinite(wide).all():
        raise DataError(f"{path}: {key} contains NaN or infinite values")
    largest = float(np.abs(wide).max())
    if largest > FLOAT32_MAX:
        # The model computes in float32: such values would become infinities.
        raise DataError(
            f"{path}: {key} holds values up to {largest:.3g}, beyond float32's range "
            f"(±{FLOAT32_MAX:.3g}); scale the features down"
        )


def _check_labels(path, key, y):
    if y.ndim != 1:
        raise DataError(
            f"{path}: {key} must be 1-D integer class labels but has shape {y.shape}; "
            "for one-hot labels pass y.argmax(axis=1)"
        )
    if y.size == 0:
        raise DataError(f"{path}: {key} is empty")
    whole = y.dtype.kind in "biu" or (
        y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all()
    )
    if not whole:
        raise DataError(f"{path}: {key} must hold integer class labels but has dtype {y.dtype}")
    if y.min() < 0:
        raise DataError(f"{path}: {key} has a negative label ({y.min()}); labels are 0, 1, 2, ...")


def _one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
