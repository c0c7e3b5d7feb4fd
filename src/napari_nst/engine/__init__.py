"""The style-transfer engine: torch only, no napari and no Qt.

``run.iterate`` is the one generator that everything else (API, CLI, napari) drives.
"""


def clear_caches() -> None:
    """Forget what the engine keeps for the process: loaded networks and the files already
    checked against their sha256 (after replacing a weights file, and between tests). Modules not
    imported yet hold nothing, so this imports nothing (no torch)."""
    import sys

    from .methods import REGISTRY

    caches = [("napari_nst.engine.weights", "_digests")]
    caches += [tuple(cache.split(":")) for entry in REGISTRY.values() for cache in entry.caches]
    for module_name, cache in caches:
        module = sys.modules.get(module_name)
        if module is not None:
            getattr(module, cache).clear()
