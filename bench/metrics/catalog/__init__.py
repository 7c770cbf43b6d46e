"""The registered per-case metrics: one module per metric (or family of keys).

Importing :mod:`bench.metrics` imports every module of this folder, so that their
``@register_metric`` decorators run: adding a metric is one new file here (the pure function
and its registration) plus its test, with no list to edit. Modules are imported in name order;
the order of the keys in rows and tables is each registration's ``position``, not the file name.
Only this folder is imported this way, and names are then looked up in the registry.
"""

from __future__ import annotations

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
