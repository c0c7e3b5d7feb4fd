"""The style-transfer engine: torch only, no napari and no Qt.

``run.iterate`` is the one generator that everything else (API, CLI, napari) drives.
"""
