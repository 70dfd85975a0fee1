"""One document from bytes to pages with OCR: the single path every stage reads documents by.

`DocumentReader` is docTR's predictor in spirit: given a document's bytes it returns the
`Document` with its pages rendered and every page's OCR attached. Digitize (in the flows),
fine-tuning, pre-training, evaluation and `docformer extract` all read through it, so a page is
turned, cached and OCR'd the same way wherever it is read. Where a page's OCR comes from, in
order:

1. OCR supplied with the document (a labelled folder's `<name>.ocr.json`, or the OCR stored with
   an imported label), when the caller gives it;
2. a born-digital PDF page's text layer (`read_document` fills it in);
3. the OCR cache, keyed by (sha256 of the bytes, page index, OCR engine id): any object with
   `get`/`put` (`OCRCacheStore`); `docformer.ocr.cache.FolderOCRCache` keeps it in a folder, the
   flows keep it in the artifact bucket;
4. the OCR engine (PaddleOCR, built on first use), whose result then goes into the cache. Text
   layers are cached too, so a reader that knows a document's page count can find every page's
   OCR without reading the file again (`cached_ocr`).

A page whose OCR was read turned is turned the same way (`docformer.document.attach_ocr`), so image, page size and
word boxes always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from docformer.document import Document, OCRResult, attach_ocr
from docformer.io import DocumentError, ReadLimits, read_document
from docformer.ocr.cache import OCRCacheStore

if TYPE_CHECKING:
    from docformer.ocr.engine import OCREngine, OCRSettings

# PDF rendering resolution: OCR needs detail. A page whose OCR is already known (supplied) only
# feeds the model's image, at most 512 pixels high, so it is rendered much cheaper.
OCR_DPI = 200
IMAGE_DPI = 100


class OCRFailed(DocumentError):
    """The OCR engine failed on one of the document's pages."""

    code = "ocr_error"


class DocumentReader:
    """Reads documents into pages with OCR (see the module docstring).

    `cache` may be None (nothing is kept); `engine` defaults to the process-wide engine for
    `ocr_settings`, built only when a page needs it. `pages_ocred` counts the pages this reader
    has sent to the engine, so a caller can report how much was read now and how much came
    from a cache."""

    def __init__(
        self,
        cache: OCRCacheStore | None = None,
        *,
        engine: OCREngine | None = None,
        ocr_settings: OCRSettings | None = None,
        limits: ReadLimits | None = None,
    ) -> None:
        self.cache = cache
        self._engine = engine
        self._ocr_settings = ocr_settings
        self.limits = limits
        self.pages_ocred = 0

    @property
    def engine_id(self) -> str:
        """The id of the engine's results, known without building the engine (building it
        loads PaddleOCR: seconds a fully cached run must not pay)."""
        if self._engine is not None:
            return self._engine.engine_id
        from docformer.ocr.engine import engine_id

        return engine_id(self._ocr_settings)

    @property
    def engine(self) -> OCREngine:
        if self._engine is None:
            from docformer.ocr import get_engine

            self._engine = get_engine(settings=self._ocr_settings)
        return self._engine

    def read(
        self,
        data: bytes,
        source: str,
        *,
        supplied_ocr: Sequence[OCRResult] | None = None,
        dpi: int | None = None,
    ) -> Document:
        """The document in `data` (named `source` in errors) with every page's OCR. Raises a
        `docformer.io.DocumentError` for a document that cannot be read, `OCRFailed` when the
        engine fails on it. `dpi` defaults to what OCR needs, or less when all OCR is
        supplied."""
        if dpi is None:
            dpi = IMAGE_DPI if supplied_ocr is not None else OCR_DPI
        document = read_document(data, source, limits=self.limits, dpi=dpi)
        if supplied_ocr is not None:
            if len(supplied_ocr) != len(document.pages):
                raise DocumentError(
                    f"{len(supplied_ocr)} OCR results supplied for a document of "
                    f"{len(document.pages)} pages; supply one per page",
                    source=source,
                )
            for page, ocr in zip(document.pages, supplied_ocr, strict=True):
                attach_ocr(page, ocr)
            return document

        engine_id = self.engine_id
        fresh = []  # pages whose OCR is new to the cache
        for page in document.pages:
            if page.has_text_layer:
                fresh.append(page)  # born-digital: the text layer is its OCR; cached alike
            elif page.image is not None and page.ocr is None:
                cached = (
                    self.cache.get(document.sha256, page.index, engine_id) if self.cache else None
                )
                if cached is not None:
                    attach_ocr(page, cached)
                else:
                    fresh.append(page)
        for page in fresh:
            if page.ocr is None:
                try:
                    attach_ocr(page, self.engine.read_page(page.image))
                except Exception as error:  # the engine failing on this page
                    raise OCRFailed(
                        f"page {page.index + 1}: OCR error: {type(error).__name__}: {error}",
                        source=source,
                    ) from error
                self.pages_ocred += 1
            if self.cache is not None:
                self.cache.put(document.sha256, page.index, engine_id, page.ocr)
        return document

    def read_path(self, path: str | Path, **options) -> Document:
        path = Path(path)
        return self.read(path.read_bytes(), str(path), **options)

    def cached_ocr(self, sha256: str, page_count: int) -> list[OCRResult] | None:
        """Every page's OCR of a document already read once, or None when any page is missing
        from the cache: then the document has to be read (`read`)."""
        if self.cache is None or page_count < 1:
            return None
        engine_id = self.engine_id
        results = []
        for index in range(page_count):
            ocr = self.cache.get(sha256, index, engine_id)
            if ocr is None:
                return None
            results.append(ocr)
        return results


__all__ = ["IMAGE_DPI", "OCR_DPI", "DocumentReader", "OCRFailed"]
