"""DRIVE: Digital Retinal Images for Vessel Extraction (Staal et al., IEEE TMI 2004).

Release layout (``root``, or one wrapping folder below it)::

    training/images/NN_training.tif   (21-40)   training/1st_manual/NN_manual1.gif
    training/mask/NN_training_mask.gif
    test/images/NN_test.tif           (01-20)   test/1st_manual/NN_manual1.gif
    test/2nd_manual/NN_manual2.gif              test/mask/NN_test_mask.gif

Gotchas: ``2nd_manual`` GIFs are palette images (mode ``P``, indices {0, 1}), the others mode
``L`` {0, 255}; the readers convert all to grey first. The current grand-challenge download
has no test annotations: test images without any label are left out of the index, and a
seeded ``test_fraction`` of the training images is then held out as test (``split_info()``
says ``"test_source": "held_out"``).

Release files: ``training.zip`` and ``test.zip`` from the grand-challenge page (free
registration, so never downloaded by segbench); placed in ``root`` they are verified (trusted
and recorded on first use) and extracted offline.
"""

from __future__ import annotations

from datamodules.base import CaseRef, SegDataModule
from datamodules.download import Resource
from datamodules.registry import register_dataset

_PAGE = "https://drive.grand-challenge.org/"

_ANNOTATOR_FILES = {"1st": ("1st_manual", "manual1"), "2nd": ("2nd_manual", "manual2")}


@register_dataset("drive")
class DriveDataModule(SegDataModule):
    """DRIVE retinal vessels: 20 training + 20 test RGB fundus images (565x584), FOV masks."""

    task = "retinal vessels, 2D colour fundus"
    spatial_dims = 2
    in_channels = 3
    license = "research and education use only, no redistribution (DRIVE terms); cite Staal et al. 2004"
    default_patch_size = (128, 128)
    folder = "DRIVE"
    num_cases = 40
    annotators = ("1st", "2nd")
    split_note = (
        "official: 20 training (21-40) / 20 test (01-20); k-fold over training for validation "
        "(a download without test labels: 20% of training held out as test)"
    )
    resources = tuple(Resource(_PAGE, name, manual=True) for name in ("training.zip", "test.zip"))
    download_note = (
        "DRIVE needs a free registration at https://drive.grand-challenge.org/: download training.zip "
        "and test.zip into root (segbench verifies and extracts them), or unpack them so that root "
        "holds training/ and test/."
    )

    def list_cases(self) -> list[CaseRef]:
        refs = []
        for split, part in (("train", "training"), ("test", "test")):
            for img in self.find_files(f"{part}/images/*_{part}.tif"):
                num, base = img.name.split("_")[0], img.parent.parent
                labels = {
                    who: base / sub / f"{num}_{stem}.gif"
                    for who, (sub, stem) in _ANNOTATOR_FILES.items()
                    if (base / sub / f"{num}_{stem}.gif").is_file()
                }
                if labels:
                    fov = base / "mask" / f"{num}_{part}_mask.gif"
                    refs.append(CaseRef(f"{num}_{part}", split, {"image": img, "labels": labels, "fov": fov}))
        return refs
