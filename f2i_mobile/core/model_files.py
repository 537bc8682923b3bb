"""Where a model's checkpoint folder is, and what it says of itself, without loading it.

Torch-free, so that `upscale`'s default path can find the graphs it built for a checkpoint in
the user's cache (`f2i_mobile.export.cache`) without importing torch; `models.checkpoint` loads
the folder found here.
"""

from __future__ import annotations

import json
from pathlib import Path

from f2i_mobile.core.errors import F2IError

FORMAT = "f2i-mobile-checkpoint/1"
CONFIG_FILE = "f2i_config.json"
WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_MODEL = "mobile"


def bundled_models() -> dict[str, Path]:
    """The checkpoints that ship with the package, by name."""
    return {p.name: p for p in sorted(WEIGHTS.iterdir()) if (p / CONFIG_FILE).is_file()} \
        if WEIGHTS.is_dir() else {}


def model_folder(name_or_path: str | Path | None = None) -> Path:
    """A checkpoint folder, or the bundled checkpoint of that name (`mobile`), or the bundled
    default for None. Whether the folder holds a checkpoint is `config_header`'s to say."""
    name_or_path = DEFAULT_MODEL if name_or_path is None else name_or_path
    path, bundled = Path(name_or_path), bundled_models()
    if not path.exists() and str(name_or_path) in bundled:
        path = bundled[str(name_or_path)]
    if not path.exists():
        raise F2IError(f"model {name_or_path}: no such folder, and not a bundled model "
                       f"({', '.join(bundled) or 'none installed'})")
    return path


def config_header(folder: Path) -> dict:
    """The checkpoint's header (`format`, `config`, `metadata`) as stored (the config not yet
    validated); a folder without one, or of another format, is one line."""
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise F2IError(f"model folder {folder} does not exist")
    if not path.is_file():
        raise F2IError(f"{folder} is not an f2i-mobile checkpoint (no {CONFIG_FILE})")
    try:
        header = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise F2IError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise F2IError(f"{path}: unknown checkpoint format (expected {FORMAT})")
    return header
