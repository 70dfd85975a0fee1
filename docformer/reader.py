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

A caller that keeps only small images (extraction: the model's input size; fine-tuning) reads
with `keep_image_size`: the pages then come one at a time from `docformer.io.open_document`,
each rendered, given its OCR and shrunk before the next is rendered, so a 200-page scan costs
one full-resolution page of memory, not 200.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from docformer.document import Document, OCRResult, Page, attach_ocr
from docformer.io import DocumentError, PageStream, ReadLimits, open_document
from docformer.ocr.cache import OCRCacheStore

if TYPE_CHECKING:
    from docformer.ocr.engine import OCREngine, OCRSettings

# PDF rendering resolution: OCR needs detail. A page whose OCR is already known (supplied) only
# feeds the model's image, at most 512 pixels high, so it is rendered much cheaper.
OCR_DPI = 200
IMAGE_DPI = 100
# `keep_image_size` that keeps no page image at all: for a caller that needs only the OCR.
NO_IMAGE = (0, 0)


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
        keep_image_size: tuple[int, int] | None = None,
    ) -> Document:
        """The document in `data` (named `source` in errors) with every page's OCR. Raises a
        `docformer.io.DocumentError` for a document that cannot be read, `OCRFailed` when the
        engine fails on it. `dpi` defaults to what OCR needs, or less when all OCR is
        supplied.

        `keep_image_size` (height, width) reads the document as a stream: each page is
        rendered, given its OCR (turned the way the OCR saw it), and its image resized to that
        size the way `DocFormerV2Processor` resizes it, before the next page is rendered, so
        one full-resolution page is held at a time; `NO_IMAGE` keeps no image at all. Page
        sizes and word boxes stay those of the full page. Without it, every page is rendered
        first and kept at full resolution."""
        if dpi is None:
            dpi = IMAGE_DPI if supplied_ocr is not None else OCR_DPI
        pages = open_document(data, source, limits=self.limits, dpi=dpi)
        try:
            if supplied_ocr is not None and len(supplied_ocr) != len(pages):
                raise DocumentError(
                    f"{len(supplied_ocr)} OCR results supplied for a document of "
                    f"{len(pages)} pages; supply one per page",
                    source=source,
                )
            document = Document(source, pages.sha256, pages.media_type)
            if keep_image_size is None:
                document.pages = list(pages)
                self._attach_all(document, supplied_ocr)
            else:
                self._attach_each(document, pages, supplied_ocr, keep_image_size)
            return document
        finally:
            pages.close()

    def _attach_all(self, document: Document, supplied_ocr: Sequence[OCRResult] | None) -> None:
        """Every page's OCR, the pages all rendered: cached OCR first, then the engine."""
        if supplied_ocr is not None:
            for page, ocr in zip(document.pages, supplied_ocr, strict=True):
                attach_ocr(page, ocr)
            return
        engine_id = self.engine_id
        fresh = [page for page in document.pages if self._attach_cached(document, page, engine_id)]
        for page in fresh:
            self._attach_fresh(document, page, engine_id)

    def _attach_each(
        self,
        document: Document,
        pages: PageStream,
        supplied_ocr: Sequence[OCRResult] | None,
        keep_image_size: tuple[int, int],
    ) -> None:
        """Each page's OCR as the page is rendered, then its image shrunk: nothing here holds
        a page's full-resolution image once the next page is asked for."""
        engine_id = None if supplied_ocr is not None else self.engine_id
        for index, page in enumerate(pages):
            if supplied_ocr is not None:
                attach_ocr(page, supplied_ocr[index])
            elif engine_id is not None and self._attach_cached(document, page, engine_id):
                self._attach_fresh(document, page, engine_id)
            page.image = kept_image(page.image, keep_image_size)
            document.pages.append(page)

    def _attach_cached(self, document: Document, page: Page, engine_id: str) -> bool:
        """Attach the page's OCR from the cache when it is there; whether the page's OCR is
        new to the cache (a text layer, or a page the engine must read)."""
        if page.has_text_layer:
            return True  # born-digital: the text layer is its OCR; cached alike
        if page.image is None or page.ocr is not None:
            return False
        cached = self.cache.get(document.sha256, page.index, engine_id) if self.cache else None
        if cached is None:
            return True
        attach_ocr(page, cached)
        return False

    def _attach_fresh(self, document: Document, page: Page, engine_id: str) -> None:
        """The engine's OCR of a page the cache lacks (none for a text layer), then cached."""
        if page.ocr is None:
            try:
                attach_ocr(page, self.engine.read_page(page.image))
            except Exception as error:  # the engine failing on this page
                raise OCRFailed(
                    f"page {page.index + 1}: OCR error: {type(error).__name__}: {error}",
                    source=document.source,
                ) from error
            self.pages_ocred += 1
        if self.cache is not None:
            self.cache.put(document.sha256, page.index, engine_id, page.ocr)

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


def kept_image(image: Image.Image | None, size: tuple[int, int]) -> Image.Image | None:
    """`image` resized to (height, width) = `size` the way `DocFormerV2Processor.pixel_values`
    resizes it (RGB, bilinear, aspect not kept), so the model's input from the kept image is
    the one from the full page, pixel for pixel; None for `NO_IMAGE`."""
    height, width = (int(v) for v in size)
    if image is None or height <= 0 or width <= 0:
        return None
    return image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)


__all__ = ["IMAGE_DPI", "NO_IMAGE", "OCR_DPI", "DocumentReader", "OCRFailed", "kept_image"]
