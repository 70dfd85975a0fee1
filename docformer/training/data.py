"""Training data: labelled folders (and in-memory documents) -> pages the model can read.

A page for training is a pair (image, OCRResult): the image already turned the way the OCR saw
it (`ocr.rotation`) and shrunk to the model's image size as soon as it is read, since the
processor resizes to that size anyway and a full-resolution scan costs tens of megabytes. Boxes
stay in the OCR's page pixels (`ocr.width` x `ocr.height`); the processor normalises them.

Documents are read by `docformer.reader.DocumentReader`, the one path every stage reads by:
the OCR is `<name>.ocr.json` beside the document (exact OCR of synthetic documents, or OCR made
earlier), else a PDF's text layer, else the OCR cache folder, else PaddleOCR (then cached).
`load_pages(..., ocr_files=False)` ignores the `.ocr.json` files and has the engine read every
page, which is how a model is trained on what the OCR reads of synthetic pages rather than on
the renderer's exact words (the labels are values, aligned to whatever words the OCR read).

Two shapes of data:
- `load_pages` -> a list of `TrainingExample` (name, pages, fields) held in memory: fine-tuning
  and evaluation sets (hundreds to a few thousand documents).
- `load_corpus` -> `CorpusPages`, a lazy sequence of pages for pre-training: only the file
  paths are kept and each page is read from disk when drawn, so a corpus of tens of thousands of
  pages does not have to fit in memory (decoding one page costs a few milliseconds, small next
  to a training step).

`split_examples` cuts a validation set by a hash of each example's name, so an example stays on
its side of the split when files are added or removed; `split_examples_covering` does the same
but holds out only examples labelled on every field trained, and leaves the others out.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from PIL import Image

from docformer.document import Document, OCRResult, attach_ocr
from docformer.io import read_document
from docformer.labelled import OCR_SUFFIX, LabelledExample, iter_labelled_folder
from docformer.labelled import read_ocr as read_ocr_file
from docformer.ocr.cache import FolderOCRCache
from docformer.reader import IMAGE_DPI, DocumentReader

if TYPE_CHECKING:
    from docformer.ocr import OCREngine

TrainingPage = tuple[Image.Image | None, OCRResult]

# (height, width). The largest preset's image size: a model with a smaller one shrinks it again.
DEFAULT_IMAGE_SIZE: tuple[int, int] = (512, 384)
# Pre-training needs at least two words on a page (one to hide, one to keep).
MIN_PRETRAINING_WORDS = 2


@dataclass
class TrainingExample:
    """One labelled document: its name, its pages (image, OCR) in order and its fields.

    Build it from anything: `load_pages` reads labelled folders, `from_document` takes a
    `Document` whose pages carry OCR (the flows rebuild those from the database and the OCR
    cache), or pass the pages directly."""

    name: str
    pages: list[TrainingPage]
    fields: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_document(
        cls,
        document: Document,
        fields: dict[str, str] | None = None,
        name: str | None = None,
        image_size: Sequence[int] | None = DEFAULT_IMAGE_SIZE,
    ) -> TrainingExample:
        pages = []
        for page in document.pages:
            if page.ocr is None:
                raise ValueError(f"{document.source}: page {page.index} has no OCR result")
            pages.append((shrink_image(page.image, image_size), page.ocr))
        return cls(name or document.source, pages, dict(fields or {}))


def shrink_image(image: Image.Image | None, image_size: Sequence[int] | None) -> Image.Image | None:
    """RGB image resized to (height, width) = image_size, the way the processor resizes it."""
    if image is None or image_size is None:
        return image
    height, width = (int(v) for v in image_size)
    return image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)


# --- labelled documents -> pages -------------------------------------------------------------


def _read_pages(
    example: LabelledExample, image_size: Sequence[int] | None, reader: DocumentReader
) -> list[TrainingPage]:
    """The pages of one labelled document, images shrunk to `image_size`."""
    document = reader.read_path(example.document_path, supplied_ocr=example.ocr_pages)
    return [(shrink_image(page.image, image_size), page.ocr) for page in document.pages]


def _iter_folders(
    folders: Iterable[str | Path], require_fields: bool, limit: int | None
) -> Iterator[LabelledExample]:
    count = 0
    for folder in folders:
        for example in iter_labelled_folder(folder, require_fields=require_fields):
            if limit is not None and count >= limit:
                return
            count += 1
            yield example


def load_pages(
    folders: str | Path | Iterable[str | Path],
    ocr_cache: str | Path | None = None,
    limit: int | None = None,
    *,
    image_size: Sequence[int] | None = DEFAULT_IMAGE_SIZE,
    require_fields: bool = True,
    engine: OCREngine | None = None,
    ocr_files: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[TrainingExample]:
    """Every document of the labelled folders (sorted by name, folder after folder), at most
    `limit` of them, with pages read and OCR'd (see the module docstring) and images shrunk to
    `image_size` (height, width; None keeps them as read). `ocr_files=False` ignores
    `.ocr.json` files and OCRs every page (through the cache when one is given)."""
    folders = [folders] if isinstance(folders, str | Path) else list(folders)
    cache = FolderOCRCache(ocr_cache) if ocr_cache is not None else None
    reader = DocumentReader(cache, engine=engine)
    examples = []
    for count, labelled in enumerate(_iter_folders(folders, require_fields, limit), start=1):
        if not ocr_files:
            labelled.ocr_pages = None
        pages = _read_pages(labelled, image_size, reader)
        examples.append(TrainingExample(labelled.name, pages, labelled.fields))
        if progress is not None and count % 100 == 0:
            progress(f"read {count} documents")
    return examples


# --- the pre-training corpus ---------------------------------------------------------------


@dataclass(frozen=True)
class PageRef:
    """Where one corpus page lives: the document and page index, and the file its OCR is in
    (`.ocr.json`, where it is page `ocr_index` of a list, or a cache file). `ocr` holds the
    result itself only when there is no file to read it back from."""

    document_path: Path
    page_index: int
    ocr_path: Path | None = None
    ocr_index: int = 0
    ocr: OCRResult | None = None


class CorpusPages(Sequence[TrainingPage]):
    """A lazy sequence of (image, OCRResult) pages: each is read from disk when indexed."""

    def __init__(self, refs: Sequence[PageRef], image_size: Sequence[int] | None):
        self.refs = list(refs)
        self.image_size = image_size
        self.documents = len({ref.document_path for ref in self.refs})

    def __len__(self) -> int:
        return len(self.refs)

    def ocr_at(self, index: int) -> OCRResult:
        """The OCR of page `index` without reading its image."""
        ref = self.refs[index]
        if ref.ocr is not None:
            return ref.ocr
        if ref.ocr_path.name.endswith(OCR_SUFFIX):
            return read_ocr_file(ref.ocr_path)[ref.ocr_index]
        return OCRResult.from_json(ref.ocr_path.read_text(encoding="utf-8"))

    def __getitem__(self, index: int) -> TrainingPage:  # type: ignore[override]
        ref = self.refs[index]
        ocr = self.ocr_at(index)
        document = read_document(
            ref.document_path.read_bytes(), str(ref.document_path), dpi=IMAGE_DPI
        )
        page = document.pages[ref.page_index]
        attach_ocr(page, ocr)
        return shrink_image(page.image, self.image_size), ocr


def load_corpus(
    folders: str | Path | Iterable[str | Path],
    ocr_cache: str | Path | None = None,
    limit: int | None = None,
    *,
    image_size: Sequence[int] | None = DEFAULT_IMAGE_SIZE,
    min_words: int = MIN_PRETRAINING_WORDS,
    engine: OCREngine | None = None,
    progress: Callable[[str], None] | None = None,
) -> CorpusPages:
    """Pages of the documents in `folders` (labels optional, ignored) for pre-training; pages
    with fewer than `min_words` OCR words are left out. Documents without `.ocr.json` are OCR'd
    now (through the cache when one is given)."""
    folders = [folders] if isinstance(folders, str | Path) else list(folders)
    cache = FolderOCRCache(ocr_cache) if ocr_cache is not None else None
    reader = DocumentReader(cache, engine=engine)
    refs = []
    for count, labelled in enumerate(_iter_folders(folders, False, limit), start=1):
        if labelled.ocr_pages is not None:
            ocr_path = labelled.document_path.with_name(f"{labelled.name}{OCR_SUFFIX}")
            for index, ocr in enumerate(labelled.ocr_pages):
                if len(ocr.words) >= min_words:
                    refs.append(PageRef(labelled.document_path, index, ocr_path, index))
        else:
            document = reader.read_path(labelled.document_path)
            for page in document.pages:
                if len(page.ocr.words) < min_words:
                    continue
                if cache is not None:  # the reader cached every page's OCR: read it back later
                    path = cache.path(document.sha256, page.index, reader.engine_id)
                    refs.append(PageRef(labelled.document_path, page.index, path))
                else:
                    refs.append(PageRef(labelled.document_path, page.index, ocr=page.ocr))
        if progress is not None and count % 1000 == 0:
            progress(f"indexed {count} documents, {len(refs)} pages")
    return CorpusPages(refs, image_size)


# --- splits ------------------------------------------------------------------------------------

Named = TypeVar("Named")


def _hash_unit(name: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_examples(
    examples: Sequence[Named], val_fraction: float, seed: int = 0
) -> tuple[list[Named], list[Named]]:
    """(train, validation): an example (anything with a `.name`) goes to validation when a hash
    of (seed, name) falls below `val_fraction`, so adding files never moves the others. With two
    or more examples and 0 < val_fraction < 1, neither side is left empty (the example whose
    hash is nearest the boundary moves). Order within each side is the input order."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError("val_fraction must be between 0 and 1")
    units = [_hash_unit(example.name, seed) for example in examples]
    in_val = [u < val_fraction for u in units]
    if len(examples) >= 2 and 0.0 < val_fraction < 1.0:
        if not any(in_val):
            in_val[min(range(len(units)), key=units.__getitem__)] = True
        elif all(in_val):
            in_val[max(range(len(units)), key=units.__getitem__)] = False
    train = [e for e, v in zip(examples, in_val, strict=True) if not v]
    val = [e for e, v in zip(examples, in_val, strict=True) if v]
    return train, val


def split_examples_covering(
    examples: Sequence[Named],
    val_fraction: float,
    seed: int,
    fields: Sequence[str],
    labelled: Callable[[Named], Collection[str]] | None = None,
) -> tuple[list[Named], list[Named], list[Named]]:
    """(train, validation, left out): `split_examples`, where only an example whose labels
    name every one of `fields` may be in validation. An empty value names its field: "not on
    this document" is a label too. `labelled(example)` says which names its labels give
    (default: the keys of `.fields`); a value not checked by a person should not count.

    An example that does not, and whose hash sends it to validation, is left out of both
    sides. Training on it instead would move it across the split: once its labels are
    completed, the same hash holds it out, and a model that learnt from it would be scored on
    it. The others fall as the hash says; with two or more kept, neither side is left empty
    when a covering example can fill it (the nearest the boundary moves). When every example
    covers `fields`, this is `split_examples` exactly."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError("val_fraction must be between 0 and 1")
    units = [_hash_unit(example.name, seed) for example in examples]
    named = labelled or (lambda example: example.fields)
    covers = [set(fields) <= set(named(example)) for example in examples]
    hashed_val = [u < val_fraction for u in units]
    kept = [i for i in range(len(examples)) if covers[i] or not hashed_val[i]]
    in_val = {i: hashed_val[i] for i in kept}
    if len(kept) >= 2 and 0.0 < val_fraction < 1.0:
        if not any(in_val.values()):
            candidates = [i for i in kept if covers[i]]
            if candidates:
                in_val[min(candidates, key=units.__getitem__)] = True
        elif all(in_val.values()):
            in_val[max(kept, key=units.__getitem__)] = False
    train = [examples[i] for i in kept if not in_val[i]]
    val = [examples[i] for i in kept if in_val[i]]
    left_out = [e for i, e in enumerate(examples) if i not in in_val]
    return train, val, left_out


def corpus_texts_of_pages(pages: Sequence[TrainingPage]) -> Iterator[str]:
    """One text per OCR line: what a tokenizer is trained on when only pages are at hand."""
    if isinstance(pages, CorpusPages):
        ocr_results = (pages.ocr_at(i) for i in range(len(pages)))  # no image decoding
    else:
        ocr_results = (ocr for _, ocr in pages)
    for ocr in ocr_results:
        for line in ocr.lines():
            yield " ".join(word.text for word in line)


def describe_sizes(pages: Sequence[TrainingPage]) -> dict[str, int]:
    """Corpus sizes for training reports: pages, and documents where known."""
    documents = getattr(pages, "documents", None)
    sizes = {"pages": len(pages)}
    if documents is not None:
        sizes["documents"] = int(documents)
    return sizes


def _write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temporary, path)


def dump_json(path: str | Path, payload: object) -> None:
    """Writes JSON atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "CorpusPages",
    "PageRef",
    "TrainingExample",
    "TrainingPage",
    "corpus_texts_of_pages",
    "describe_sizes",
    "dump_json",
    "load_corpus",
    "load_pages",
    "shrink_image",
    "split_examples",
    "split_examples_covering",
]
