"""Every reader, one module per format. Importing this package registers them all."""

from importlib import import_module
from pathlib import Path

# Import every module in this folder so that a new reader file is registered by existing;
# tests/ingest/test_registry.py checks that each module registers at least one reader.
for _p in sorted(Path(__file__).parent.glob("*.py")):
    if _p.stem != "__init__":
        import_module(f"{__name__}.{_p.stem}")
