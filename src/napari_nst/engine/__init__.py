"""The style-transfer engine: torch only, no napari and no Qt.

``run.iterate`` is the one generator that everything else (API, CLI, napari) drives.
"""


def clear_caches() -> None:
    """Forget what the engine keeps for the process: loaded networks and the files already
    checked against their sha256 (after replacing a weights file, and between tests). Modules not
    imported yet hold nothing, so this imports nothing (no torch)."""
    import sys

    for module_name, cache in (("weights", "_verified"),
                               ("methods.optimize.gatys", "_features_cache"),
                               ("methods.predict.magenta_weights", "_loaded_models"),
                               ("methods.universal.networks", "_loaded")):
        module = sys.modules.get(f"{__name__}.{module_name}")
        if module is not None:
            getattr(module, cache).clear()
