"""Where the shared protocol vectors are."""

from pathlib import Path

VECTORS = Path(__file__).resolve().parents[3] / "protocol" / "vectors"
