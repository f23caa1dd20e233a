"""Import CompressAI's coding modules without its datasets.

``import compressai`` runs a package ``__init__`` that imports every part of CompressAI, its point-cloud
datasets and data-transform registry included, and through them torch_geometric, torchvision and
pandas: about 5 s of start-up and 200 MB of memory that no vidsieve command uses (every CLI call, every
ingester, every Ray worker would pay them). vidsieve uses CompressAI's entropy models, layers, models,
rANS coder and zoo; this module registers the ``compressai`` package without running its ``__init__``
(its submodules import as usual, on first use) and stands in for the one part of it those submodules
need: the choice of entropy coder. The data-transform registry is registered empty, its decorator
working as CompressAI's does. Nothing changes when ``compressai`` was imported before vidsieve.
"""

from __future__ import annotations

import importlib.util
import sys
import types


def install() -> None:
    if "compressai" in sys.modules:
        return
    spec = importlib.util.find_spec("compressai")
    if spec is None or not spec.submodule_search_locations:
        return  # not installed: the import that needs it will say so
    pkg = importlib.util.module_from_spec(spec)
    coders = ["ans"]
    state = {"coder": "ans"}

    def available_entropy_coders():
        return list(coders)

    def get_entropy_coder():
        return state["coder"]

    def set_entropy_coder(name):
        if name not in coders:
            raise ValueError(f'Invalid entropy coder "{name}", choose from ({", ".join(coders)}).')
        state["coder"] = name

    pkg.available_entropy_coders = available_entropy_coders
    pkg.get_entropy_coder = get_entropy_coder
    pkg.set_entropy_coder = set_entropy_coder
    sys.modules["compressai"] = pkg

    transforms = types.ModuleType("compressai.registry.transforms")
    transforms.TRANSFORMS = {}

    def register_transform(name):
        def decorator(cls):
            transforms.TRANSFORMS[name] = cls
            return cls
        return decorator

    transforms.register_transform = register_transform
    transforms.__all__ = ["TRANSFORMS", "register_transform"]
    sys.modules["compressai.registry.transforms"] = transforms
