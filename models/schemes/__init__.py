"""Training schemes: how a ``SegmentationModule`` is trained (supervised, semi-supervised,
pseudo-labels, scribbles), one file per scheme, registered with
``models.registry.register_scheme``; ``models/__init__.py`` imports every file of this folder.
Build one with ``models.create_scheme(name, **options)`` and pass it as
``SegmentationModule(..., scheme=...)``. The maths is in :mod:`models.schemes.functional`;
the base class and the EMA teacher in :mod:`models.schemes.base`. See ``docs/schemes.md``.
"""

from __future__ import annotations

from models.schemes.base import TeacherScheme, TrainingScheme

__all__ = ["TeacherScheme", "TrainingScheme"]
