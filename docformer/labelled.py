"""The labelled-folder format: how labelled documents are kept on disk.

A folder holds documents and, beside each, files of the same name:

    <name>.<pdf|png|jpg|jpeg|tif|tiff>   the document itself
    <name>.json                          its key fields: one flat JSON object {field: value},
                                         values are strings as printed (numbers are accepted
                                         and turned into strings; null means "not present")
    <name>.ocr.json                      optional: the OCR of its pages, so OCR can be skipped:
                                         one `OCRResult.to_dict()` object for a one-page
                                         document (what the writer writes), a JSON list of
                                         them in page order for more pages (readers accept a
                                         list of one too). Boxes are in the pixels of that
                                         page's `width` x `height`; a page rendered at another
                                         size scales them by the ratio of sizes.

Anything else in the folder (e.g. SROIE's `<id>.lines.csv`) is ignored. Field names shared by
training and evaluation: company, date, address, total, invoice_number, tax, currency.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from docformer.document import OCRResult

DOCUMENT_SUFFIXES = (".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
OCR_SUFFIX = ".ocr.json"
FIELDS_SUFFIX = ".json"

# File signatures, to name written files by what they are.
MAGIC = (
    (b"%PDF", ".pdf"),
    (b"\x89PNG", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)


class LabelledFolderError(ValueError):
    """A file in a labelled folder that does not follow the format."""


@dataclass
class LabelledExample:
    name: str
    document_path: Path
    fields: dict[str, str]
    ocr_pages: list[OCRResult] | None = None  # None when the folder has no OCR for it


def read_fields(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise LabelledFolderError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise LabelledFolderError(
            f"{path}: expected a flat JSON object {{field: value}}, got {type(data).__name__}"
        )
    fields = {}
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise LabelledFolderError(
                f"{path}: field {key!r} must be a string or a number, got {type(value).__name__}; the object must be flat"
            )
        fields[str(key)] = value if isinstance(value, str) else str(value)
    return fields


def read_ocr(path: Path) -> list[OCRResult]:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise LabelledFolderError(f"{path}: not valid JSON ({error})") from error
    pages = data if isinstance(data, list) else [data]
    try:
        return [OCRResult.from_dict(page) for page in pages]
    except (KeyError, TypeError, ValueError) as error:
        raise LabelledFolderError(
            f"{path}: not an OCR result or a list of them ({error!r})"
        ) from error


def iter_labelled_folder(
    path: str | Path, require_fields: bool = True
) -> Iterator[LabelledExample]:
    """The folder's documents sorted by name. A document without `<name>.json` is an error, or
    has empty fields when `require_fields` is False (unlabelled documents for pre-training)."""
    folder = Path(path)
    if not folder.is_dir():
        raise LabelledFolderError(f"{folder}: not a folder")
    documents: dict[str, Path] = {}
    for file in sorted(folder.iterdir()):
        if file.is_file() and file.suffix.lower() in DOCUMENT_SUFFIXES:
            if file.stem in documents:
                raise LabelledFolderError(
                    f"{folder}: two documents named {file.stem!r} ({documents[file.stem].name}, {file.name})"
                )
            documents[file.stem] = file
    for name in sorted(documents):
        fields_path = folder / f"{name}{FIELDS_SUFFIX}"
        if fields_path.is_file():
            fields = read_fields(fields_path)
        elif require_fields:
            raise LabelledFolderError(f"{documents[name]}: no {fields_path.name} beside it")
        else:
            fields = {}
        ocr_path = folder / f"{name}{OCR_SUFFIX}"
        yield LabelledExample(
            name, documents[name], fields, read_ocr(ocr_path) if ocr_path.is_file() else None
        )


def suffix_for(data: bytes) -> str:
    for magic, suffix in MAGIC:
        if data.startswith(magic):
            return suffix
    raise LabelledFolderError("document bytes are not PDF, PNG, JPEG or TIFF")


def write_labelled_example(
    folder: str | Path,
    name: str,
    image_or_pdf_bytes: bytes | Image.Image,
    fields: dict[str, str],
    ocr_pages: list[OCRResult] | None = None,
) -> Path:
    """Write one example; the document's extension follows its bytes (an Image is saved as PNG).
    Returns the document's path."""
    if "/" in name or name.startswith(".") or not name:
        raise LabelledFolderError(f"bad example name {name!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(image_or_pdf_bytes, Image.Image):
        import io

        buffer = io.BytesIO()
        image_or_pdf_bytes.save(buffer, "PNG")
        data = buffer.getvalue()
    else:
        data = bytes(image_or_pdf_bytes)
    document = folder / f"{name}{suffix_for(data)}"
    document.write_bytes(data)
    flat = {str(k): str(v) for k, v in fields.items() if v is not None}
    (folder / f"{name}{FIELDS_SUFFIX}").write_text(
        json.dumps(flat, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
    if ocr_pages is not None:
        # One page is written as the bare object (what `OCRResult.from_json` reads), more as a list.
        pages = [page.to_dict() for page in ocr_pages]
        payload = pages[0] if len(pages) == 1 else pages
        text = json.dumps(payload, ensure_ascii=False) + "\n"
        (folder / f"{name}{OCR_SUFFIX}").write_text(text, encoding="utf-8")
    return document
