"""``segbench predict``: label maps (and probabilities) of a kept or exported model on new images.

The model is a done run's kept weights (``<results>/models/<run_id>/``, found through its record,
whose sha256 they must match) or a folder written by ``segbench export``. Both hold
``model.safetensors`` and ``config.json``: the resolved config as the record states it, the
DataModule's arguments and what the data held (dimensions, channels, classes). Inference is the
test loop's own: :meth:`models.SegmentationModule.test_step` (sliding windows of the run's patch
size, its ``eval.sw_overlap`` and ``eval.sw_batch_size``, Gaussian blending, softmax, the run's
``eval.tta``; the label maps get its ``eval.postprocess``, :mod:`models.inference`), on cases
that the run's DataModule prepares: its own test cases (``--dataset``), or images of a folder
(``--input``) read as the DataModule reads files and passed through its
:meth:`~datamodules.base.SegDataModule.make_case` (rescaling, z-score inside the field of view).
A DataModule with preprocessing options (``spacing``, ``orientation``, ``intensity``:
``docs/preprocessing.md``) prepares the inputs the same way, and the probabilities are mapped
back to the source grid (inverse resampling and reorientation) before the argmax and
``eval.postprocess``.

Outputs keep the source file's name and size; NIfTI outputs carry the source affine and header
(a DataModule case that was resampled or reoriented: its label file's grid and affine).
Every check (the model, its hash, the inputs' channels, the output folder) happens before anything
is written. See ``docs/predict.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.errors import UserError
from bench.evaluate.plan import collect_cases
from bench.records.record import MODEL_CONFIG, WEIGHTS_FILE, Record
from bench.records.store import DEFAULT_RESULTS, load_record, record_path
from bench.records.weights import load_weights
from datamodules.download import file_digest
from datamodules.readers import (
    CaseLoadError,
    derive_fov,
    image_channels,
    read_array,
    read_natural_image,
    read_volume,
    split_extension,
)
from models.inference import postprocess

MANIFEST = ".segbench-predict.json"
"""The list of files ``predict`` wrote into an output folder; any other file there is refused."""
PROBABILITIES = "probabilities"


class PredictError(UserError):
    """A bad model, input or output folder of ``segbench predict`` / ``export`` (one line)."""


# ---- the model ----------------------------------------------------------------------------


@dataclass
class ModelSource:
    """Where a model's files are: the folder, the weights' expected sha256 (None: not stated)."""

    folder: Path
    sha256: str | None
    record: Record | None = None


def find_model(
    what: str | os.PathLike[str], results: str | os.PathLike[str] = DEFAULT_RESULTS
) -> ModelSource:
    """The model that ``what`` names: a folder holding ``model.safetensors`` and ``config.json``
    (``segbench export``), a record file, or a run id looked up in ``results``.

    Raises:
        PredictError: no such run, not a done train run, no kept weights, or a missing weights file.
    """
    path = Path(what)
    if path.is_dir():
        if not (path / WEIGHTS_FILE).is_file() or not (path / MODEL_CONFIG).is_file():
            raise PredictError(f"{path}: not a model folder (needs {WEIGHTS_FILE} and {MODEL_CONFIG})")
        stated = json.loads((path / MODEL_CONFIG).read_text()).get("sha256")
        return ModelSource(path, stated)
    results = Path(results)
    rec_path = path if str(what).endswith(".json") and path.is_file() else record_path(results, str(what))
    record = load_record(rec_path)
    if record is None:
        raise PredictError(
            f"{what}: no run record {rec_path} (give a run id of --results, a record or a model folder)"
        )
    if record.kind != "train" or not record.done:
        raise PredictError(
            f"{rec_path}: a {record.kind} record with status {record.status}; only done runs keep weights"
        )
    if not record.weights:
        raise PredictError(
            f"{record.run_id}: the run kept no weights (eval.keep_model: none, or recorded before "
            "weights were kept; `segbench run --force` re-trains it)"
        )
    weights = rec_path.parent / str(record.weights["file"])
    if not weights.is_file():
        raise PredictError(f"{weights}: the weights file the record names is missing")
    return ModelSource(weights.parent, str(record.weights["sha256"]), record)


@dataclass
class LoadedModel:
    """A model ready to predict: its config (``config.json``) and the test loop's module."""

    run_id: str
    config: dict[str, Any]
    module: Any  # models.SegmentationModule, in eval mode
    source: ModelSource

    @property
    def data(self) -> dict[str, Any]:
        """What the data held: ``spatial_dims``, ``in_channels``, ``channel_names``,
        ``class_names``, ``num_classes``."""
        return dict(self.config["data"])


def build_network(config: dict[str, Any]) -> torch.nn.Module:
    """The run's network, untrained, from ``config.json`` (``model.name`` and its kwargs).

    Raises:
        PredictError: a run trained with click inputs (an ``interactive`` scheme): its network takes
            click maps beside the image, which a prediction of images alone cannot give.
    """
    from models import create_model
    from models.registry import scheme_entry

    scheme = str((config["config"].get("scheme") or {}).get("name", "supervised"))
    if scheme_entry(scheme).meta.get("click_channels", 0):
        raise PredictError(
            f"{config.get('run_id', 'the run')} was trained with click inputs (scheme {scheme!r}); "
            "a kept model of it predicts inside the click loop only: `segbench evaluate --clicks` scores "
            "an interactive method's per-click predictions (docs/evaluate.md)"
        )
    model = config["config"]["model"]
    kwargs = {k: v for k, v in dict(model.get("kwargs") or {}).items() if k != "pretrained_encoder"}
    data = config["data"]
    return create_model(
        model["name"],
        spatial_dims=int(data["spatial_dims"]),
        in_channels=int(data["in_channels"]),
        out_channels=int(data["num_classes"]),
        **kwargs,
    )


def load_model(source: ModelSource, device: str = "cpu") -> LoadedModel:
    """Check the weights' sha256 and load them into the run's network inside the test loop's module.

    Raises:
        PredictError: the weights' sha256 differs from the stated one, or they do not fit the network.
    """
    from models import SegmentationModule

    weights = source.folder / WEIGHTS_FILE
    if source.sha256 is not None:
        got = file_digest(weights)
        if got != source.sha256:
            raise PredictError(
                f"{weights}: sha256 {got[:16]}... does not match the recorded {source.sha256[:16]}... "
                "(the file changed since the run wrote it)"
            )
    config = json.loads((source.folder / MODEL_CONFIG).read_text())
    net = build_network(config)
    try:
        load_weights(net, str(weights), strict=True)
    except (RuntimeError, OSError, ValueError) as e:
        raise PredictError(
            f"{weights}: does not fit model {config['config']['model']['name']!r}: {str(e).splitlines()[0]}"
        ) from e
    cfg = config["config"]
    module = SegmentationModule(
        net,
        torch.nn.Identity(),  # no loss: inference only
        num_classes=int(config["data"]["num_classes"]),
        roi_size=cfg["data"]["patch_size"],
        sw_batch_size=int(cfg["eval"]["sw_batch_size"]),
        sw_overlap=float(cfg["eval"]["sw_overlap"]),
        tta=str(cfg["eval"].get("tta", "none")),
        postprocess=str(cfg["eval"].get("postprocess", "none")),
    )
    module.eval().to(device)
    return LoadedModel(str(config["run_id"]), config, module, source)


def predict_case(model: LoadedModel, image: np.ndarray) -> np.ndarray:
    """Class probabilities ``(C, *spatial)`` float32 of one prepared case ``image (in_channels, *spatial)``
    (normalised as the DataModule normalises), by the test loop's own step."""
    device = next(model.module.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].to(device)
    batch = {
        "image": x,
        "label": torch.zeros((1, 1, *image.shape[1:]), dtype=torch.int64),
        "case_id": ["case"],
    }
    with torch.inference_mode():
        out = model.module.test_step(batch, 0)
    return out["prob"].numpy()


# ---- the inputs -----------------------------------------------------------------------------


@dataclass
class InputCase:
    """One image to predict: where it comes from and how its output is written."""

    case_id: str
    path: Path | None = None  # None: a DataModule case
    ext: str = ".npy"


def make_datamodule(
    model: LoadedModel,
    dataset: str | None = None,
    root: str | None = None,
    dataset_kwargs: dict[str, Any] | None = None,
) -> Any:
    """The run's DataModule (its own arguments, as the run built it; not set up), or ``dataset``'s
    with its defaults when that is another dataset; ``root`` replaces the data folder and
    ``dataset_kwargs`` (``segbench evaluate --dataset-arg``) replace single arguments."""
    from datamodules import create_datamodule

    own = model.config["config"]["dataset"]["name"]
    kwargs = dict(model.config.get("datamodule") or {}) if dataset in (None, own) else {}
    kwargs.update(dataset_kwargs or {})
    if root is not None:
        kwargs["root"] = root
    return create_datamodule(dataset or own, **kwargs)


def _file_channels(path: Path, ext: str, spatial_dims: int, in_channels: int) -> tuple[int, int]:
    """(channels, spatial dims) of an input file, read from its header where the format has one."""
    if ext in (".nii", ".nii.gz"):
        import nibabel as nib

        try:
            shape = nib.load(str(path)).shape
        except Exception as e:  # noqa: BLE001 - nibabel raises several types for a broken file
            raise CaseLoadError(f"{path}: cannot read NIfTI ({type(e).__name__}: {e})") from e
        return (shape[3] if len(shape) == 4 else 1), min(len(shape), 3)
    if ext in (".png", ".gif", ".tif", ".tiff"):
        return image_channels(path), 2
    arr = read_array(path).array
    if arr.ndim == spatial_dims:
        return 1, spatial_dims
    return int(arr.shape[0]), arr.ndim - 1


def folder_cases(folder: Path, spatial_dims: int, in_channels: int) -> list[InputCase]:
    """The images of ``folder`` (the formats ``segbench evaluate`` reads), every one checked.

    Raises:
        PredictError: no image, or an image whose channels or dimensions differ from the model's.
    """
    found = collect_cases(folder, "*", (), "--input")
    if not found:
        raise PredictError(f"--input {folder}: no image (.png, .tif, .gif, .nii.gz, .npy, .npz)")
    cases = []
    for cid, path in found.items():
        ext = split_extension(path.name)[1]  # type: ignore[index]
        channels, dims = _file_channels(path, ext, spatial_dims, in_channels)
        if dims != spatial_dims:
            raise PredictError(f"{path}: a {dims}D image; the model is {spatial_dims}D")
        if channels != in_channels:
            raise PredictError(f"{path}: {channels} channel(s); the model was trained on {in_channels}")
        cases.append(InputCase(cid, path, ext))
    return cases


def read_input(case: InputCase, dm: Any) -> tuple[np.ndarray, Any, tuple[float, ...] | None]:
    """``(image (C, *spatial) as stored, NIfTI image or None, spacing)`` of an input file."""
    path, ext = case.path, case.ext
    assert path is not None
    if ext in (".nii", ".nii.gz"):
        import nibabel as nib

        vol = read_volume(path)
        arr = np.moveaxis(vol.array, -1, 0) if vol.array.ndim == 4 else vol.array[None]
        return arr.astype(np.float32), nib.load(str(path)), vol.spacing
    if ext in (".png", ".gif", ".tif", ".tiff"):
        return read_natural_image(path, int(dm.in_channels)), None, None
    f = read_array(path)
    arr = f.array if f.array.ndim == dm.spatial_dims + 1 else f.array[None]
    return arr.astype(np.float32), None, f.spacing


def prepare(
    dm: Any, case_id: str, image: np.ndarray, spacing: Any, affine: np.ndarray | None = None
) -> tuple[np.ndarray, Any]:
    """An input image as the DataModule prepares its own cases (:meth:`make_case`: rescaling,
    z-score inside the field of view, derived where the dataset derives one), and the grid
    transform to map its prediction back (None unless the DataModule resamples or reorients:
    ``docs/preprocessing.md``; its intensity option applies whenever one is set).

    Raises:
        PredictError: the DataModule reorients and the input has no affine (not NIfTI).
    """
    grid = None
    if getattr(dm, "preprocessing", False):
        if getattr(dm, "orientation", None) is not None and affine is None:
            raise PredictError(
                f"{case_id}: the model's data were reoriented (orientation: {dm.orientation}); "
                "give NIfTI inputs, whose affine says how"
            )
        image, grid = dm.prepare_input(image, spacing, affine, where=case_id)
        if grid is not None:
            spacing = grid.spacing
        blank = {"input": np.zeros(image.shape[1:], np.int64)}
        case = dm.make_case(case_id, image, blank, spacing=spacing, normalise=dm.intensity != "ct")
        return case.image, grid
    fov = derive_fov(image) if getattr(dm, "derive_missing_fov", False) else None
    blank = {"input": np.zeros(image.shape[1:], np.int64)}
    return dm.make_case(case_id, image, blank, fov=fov, spacing=spacing).image, grid


# ---- the outputs ----------------------------------------------------------------------------


def check_output(folder: Path) -> dict[str, Any]:
    """The manifest of ``folder`` (empty for a new or empty folder).

    Raises:
        PredictError: ``folder`` is a file, or holds files that ``predict`` did not write.
    """
    if folder.exists() and not folder.is_dir():
        raise PredictError(f"--output {folder}: is a file, not a folder")
    if not folder.exists():
        return {"files": []}
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"files": []}
    ours = set(manifest.get("files", [])) | {MANIFEST}
    foreign = sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and str(p.relative_to(folder)) not in ours
    )
    if foreign:
        raise PredictError(
            f"--output {folder}: holds {len(foreign)} file(s) predict did not write ({foreign[0]} ...); "
            "give a new or empty folder"
        )
    return manifest


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{''.join(path.suffixes)}")
    write(tmp)
    os.replace(tmp, path)


def write_labels(path: Path, labels: np.ndarray, source: Any = None, spacing: Any = None) -> None:
    """A label map: NIfTI with ``source``'s affine and header (none: ``spacing`` on the diagonal),
    a 2D image, ``.npy`` or ``.npz``."""
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
    labels = labels.astype(dtype)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        if source is not None:
            header = source.header.copy()
            header.set_data_dtype(dtype)
            img = nib.Nifti1Image(labels, source.affine, header)
        else:
            img = nib.Nifti1Image(labels, np.diag([*(spacing or (1.0,) * labels.ndim), 1.0]))
        _write_atomic(path, lambda p: nib.save(img, str(p)))
    elif name.endswith((".png", ".gif", ".tif", ".tiff")):
        from PIL import Image

        fmt = {".png": "PNG", ".gif": "GIF", ".tif": "TIFF", ".tiff": "TIFF"}[path.suffix.lower()]
        _write_atomic(path, lambda p: Image.fromarray(labels).save(p, format=fmt))
    elif name.endswith(".npz"):
        _write_atomic(path, lambda p: np.savez_compressed(p, pred=labels))
    else:
        _write_atomic(path, lambda p: np.save(p, labels))


def _resize(prob: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Probabilities ``(C, *spatial)`` resized (linear) to ``shape`` (a DataModule with ``scale``)."""
    if prob.shape[1:] == tuple(shape):
        return prob
    from skimage.transform import resize

    return np.stack([resize(p, shape, order=1, preserve_range=True) for p in prob]).astype(np.float32)


def _source_header(affine: Any, spacing: Any) -> Any:
    """A stand-in NIfTI source (its affine and a header) for a DataModule case: the file's affine
    when the case kept it, else ``spacing`` on the diagonal."""
    import nibabel as nib

    aff = np.asarray(affine, dtype=np.float64) if affine is not None else np.diag([*spacing, 1.0])
    return nib.Nifti1Image(np.zeros((1, 1, 1), np.uint8), aff)


# ---- the command ----------------------------------------------------------------------------


@dataclass
class Prediction:
    """What :func:`predict` wrote: ``case_id -> label file`` (and probability files)."""

    labels: dict[str, Path] = field(default_factory=dict)
    probabilities: dict[str, Path] = field(default_factory=dict)


def predict(
    model: LoadedModel,
    output: Path,
    *,
    input_dir: Path | None = None,
    dataset: str | None = None,
    split: str = "test",
    root: str | None = None,
    dataset_kwargs: dict[str, Any] | None = None,
    probabilities: bool = False,
    progress: bool = True,
) -> Prediction:
    """Predict every image of ``input_dir``, or every case of ``dataset``'s ``split``, into ``output``.

    Everything is checked before the first file is written (see the module docstring).

    Raises:
        PredictError: a bad input or output folder (one line naming it).
    """
    if (input_dir is None) == (dataset is None):
        raise PredictError("give --input DIR or --dataset NAME (one of them)")
    data = model.data
    dims, channels = int(data["spatial_dims"]), int(data["in_channels"])
    dm = make_datamodule(model, dataset, root, dataset_kwargs)
    if int(dm.spatial_dims) != dims or int(dm.in_channels) != channels:
        raise PredictError(
            f"--dataset {dataset}: {dm.spatial_dims}D with {dm.in_channels} channel(s); the model is "
            f"{dims}D with {channels}"
        )
    if input_dir is not None:
        cases = folder_cases(Path(input_dir), dims, channels)
    else:
        dm.setup("test")
        if split not in dm.splits:
            raise PredictError(f"--split {split!r}: {dataset} has splits {sorted(dm.splits)}")
        with warnings.catch_warnings(record=True):  # bad cases are left out, as for the run
            warnings.simplefilter("always")
            ids = sorted(dm.good_case_ids(split))
        ext = ".png" if dims == 2 else ".nii.gz"
        cases = [InputCase(cid, None, ext) for cid in ids]
    output = Path(output)
    manifest = check_output(output)
    written = set(manifest.get("files", []))
    output.mkdir(parents=True, exist_ok=True)
    if probabilities:
        (output / PROBABILITIES).mkdir(exist_ok=True)
    out = Prediction()
    for case in tqdm(cases, desc=f"predict {model.run_id}", unit="case", disable=not progress):
        grid = None
        if case.path is not None:
            raw, nifti, spacing = read_input(case, dm)
            affine = None if nifti is None else np.asarray(nifti.affine)
            image, grid = prepare(dm, case.case_id, raw, spacing, affine)
            name, shape = case.path.name, raw.shape[1:]
        else:
            c = dm.case(case.case_id)
            image, nifti, shape = c.image, None, c.image.shape[1:]
            name = f"{case.case_id}{case.ext}"
            spacing = c.spacing
        prob = predict_case(model, image)
        if grid is not None:  # an input file: back to its own grid
            prob = grid.back(prob)
        elif case.path is None and getattr(dm, "maps_back", False):  # back to the case's file grid
            original = dm.to_original(case.case_id, prob)
            prob, shape, spacing = original.prob, original.label.shape, original.spacing
            nifti = _source_header(dm.case(case.case_id).extras.get("original_affine"), spacing)
        prob = _resize(prob, tuple(shape))
        # the run's eval.postprocess, as the test loop applies it (after any resize back)
        labels = postprocess(prob.argmax(0), prob.shape[0], model.module.postprocess)
        target = output / name
        write_labels(target, labels, nifti, spacing)
        out.labels[case.case_id] = target
        written.add(name)
        if probabilities:
            pfile = output / PROBABILITIES / f"{case.case_id}.npy"
            _write_atomic(pfile, lambda p, a=prob: np.save(p, a.astype(np.float32)))
            out.probabilities[case.case_id] = pfile
            written.add(f"{PROBABILITIES}/{pfile.name}")
        (output / MANIFEST).write_text(
            json.dumps({"run_id": model.run_id, "files": sorted(written)}, indent=1)
        )
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``segbench predict`` (docs/predict.md)."""
    parser.add_argument(
        "model", help="a run id (of --results), a record file, or a folder of `segbench export`"
    )
    parser.add_argument(
        "--input", type=Path, default=None, help="folder of images (.png, .tif, .nii.gz, .npy ...)"
    )
    parser.add_argument("--dataset", default=None, help="predict this DataModule's cases instead")
    parser.add_argument("--split", default="test", help="with --dataset: which split (default: test)")
    parser.add_argument("--root", default=None, help="with --dataset: the dataset's folder")
    parser.add_argument(
        "--output", type=Path, required=True, help="folder for the label maps (new, or one predict wrote)"
    )
    parser.add_argument(
        "--probabilities", action="store_true", help="also write probabilities/<case>.npy (C, *spatial)"
    )
    parser.add_argument(
        "--results", default=DEFAULT_RESULTS, help="folder of records (default: %(default)s/)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    """``segbench predict``: 0 when every case was written."""
    model = load_model(find_model(args.model, args.results), args.device)
    out = predict(
        model,
        args.output,
        input_dir=args.input,
        dataset=args.dataset,
        split=args.split,
        root=args.root,
        probabilities=args.probabilities,
        progress=not args.quiet,
    )
    print(f"{len(out.labels)} label map(s) of {model.run_id} written to {args.output}")
    return 0
