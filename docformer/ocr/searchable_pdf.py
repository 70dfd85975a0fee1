"""A searchable PDF of a digitized document: the original pages, untouched, under an invisible
text layer of our own OCR words, each word placed on its box.

Which library does what, and why:

- **The page images** are never decoded and encoded again, so their pixels stay the ones that
  were scanned. A PDF's own pages are kept as they are (pikepdf adds to them); a raster file
  becomes PDF pages with img2pdf, which embeds JPEG, PNG and TIFF data losslessly (JPEG's DCT
  bytes as they are, PNG's and TIFF's samples as Flate or CCITT) and turns a page by its EXIF
  orientation with `/Rotate`. A raster file img2pdf will not take (an alpha channel) or cannot
  show as it was read (an EXIF orientation that mirrors) is embedded as the decoded page
  image, as PNG: lossless with respect to what OCR read.
- **The text layer** is drawn by OCRmyPDF's renderer (`ocrmypdf.fpdf_renderer`, the one its own
  hOCR path uses): each line on its baseline, each word stretched to its box, text render
  mode 3 (invisible), in fonts chosen for cost (`docformer.ocr.layer_fonts`). We build its
  `OcrElement` tree straight from our words rather than going through hOCR text, which would
  only be parsed back. No tesseract and
  no Ghostscript: OCRmyPDF is used as a library, not as its pipeline. Its pipeline with our
  engine as an OCR plugin was the other way; it was not taken because it rasterises and reads
  every page itself, where ours are already read (and cached in the bucket), and works on files
  in a temporary folder per run, a cost per document the flows do not need.
- **Placing the layer** on the page is pikepdf's: the layer page becomes a form XObject drawn
  over the page with one matrix that undoes the turn OCR gave the page (`OCRResult.rotation`),
  scales pixels to points, and undoes the page's own `/Rotate`.
- **PDF/A-2b**: `pikepdf.pdfa.save` declares it (XMP, sRGB output intent), writes, and validates
  what it wrote; a document that does not pass (the source PDF's own content breaks a rule) is
  saved as a plain PDF and says why (`SearchablePDF.pdfa_problem`).

A born-digital PDF, every page of which has its own text layer, is returned byte for byte.
"""

from __future__ import annotations

import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pikepdf
from pikepdf import Matrix

from docformer.document import Document, OCRResult, Page
from docformer.ocr.layer_fonts import LAYER_FONTS_LOCK, font_manager_for

logger = logging.getLogger(__name__)

PDF_MEDIA_TYPE = "application/pdf"
PDFA_FLAVOUR = "2b"
# Pixels per point of the text layer as drawn: one pixel is one point, so the layer's
# coordinates are the OCR boxes' own, and the placement matrix does all the scaling.
LAYER_DPI = 72.0


@dataclass(frozen=True)
class SearchablePDF:
    """The PDF's bytes and what they are."""

    data: bytes
    pdfa: bool  # validated PDF/A-2b
    pdfa_problem: str | None  # why not, when it was tried and failed
    pages_with_layer: int  # pages that received our text layer
    kept_as_is: bool = False  # born-digital: the source PDF unchanged


def searchable_pdf(document: Document, original: bytes) -> SearchablePDF:
    """The searchable PDF of `document`, read from `original` (its bytes) with every page's OCR.

    Page images are not needed: pages carry their `OCRResult` (boxes in the pixels OCR saw)
    and, for PDFs, `has_text_layer`. Raises ValueError when the pages of `original` and of
    `document` do not match.
    """
    is_pdf = document.media_type == PDF_MEDIA_TYPE
    if is_pdf and all(page.has_text_layer for page in document.pages):
        return SearchablePDF(
            original, pdfa=False, pdfa_problem=None, pages_with_layer=0, kept_as_is=True
        )

    pdf = pikepdf.open(io.BytesIO(original)) if is_pdf else _raster_to_pdf(document, original)
    with pdf:
        if len(pdf.pages) != len(document.pages):
            raise ValueError(
                f"{document.source}: the file has {len(pdf.pages)} pages, the document "
                f"{len(document.pages)}"
            )
        to_layer = [
            page
            for page in document.pages
            if not page.has_text_layer and page.ocr is not None and page.ocr.words
        ]
        if to_layer:
            _add_text_layers(pdf, to_layer)
        return _save(pdf)


# ---------------------------------------------------------------------------------------------
# the pages


def _raster_to_pdf(document: Document, original: bytes) -> pikepdf.Pdf:
    """PDF pages holding the raster file's own image data (img2pdf), or the decoded pages as
    PNG where img2pdf refuses the file or would show it otherwise than it was read."""
    import img2pdf

    if _exif_mirrored(original):
        # img2pdf turns pages by their EXIF orientation (a /Rotate) but cannot mirror them; the
        # page OCR read was mirrored, so only its decoded pixels match the words' boxes.
        return pikepdf.open(io.BytesIO(img2pdf.convert(_decoded_pages_as_png(document, original))))
    try:
        data = img2pdf.convert(original, rotation=img2pdf.Rotation.ifvalid)
    except (img2pdf.ImageOpenError, img2pdf.AlphaChannelError, ValueError, OSError) as error:
        logger.info(
            "%s: img2pdf cannot embed the file as it is (%s); embedding decoded pages",
            document.source,
            error,
        )
        data = img2pdf.convert(_decoded_pages_as_png(document, original))
    return pikepdf.open(io.BytesIO(data))


def _exif_mirrored(original: bytes) -> bool:
    """Whether the image's EXIF orientation mirrors it (2, 4, 5, 7), read from the header."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(original)) as image:
            return image.getexif().get(0x0112, 1) in (2, 4, 5, 7)
    except (OSError, ValueError, SyntaxError):
        return False


def _decoded_pages_as_png(document: Document, original: bytes) -> list[bytes]:
    from docformer.io.images import read_image_pages
    from docformer.io.limits import ReadLimits

    pages = []
    for image in read_image_pages(original, document.source, ReadLimits()):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        pages.append(buffer.getvalue())
    return pages


# ---------------------------------------------------------------------------------------------
# the text layer


def _ocr_element(ocr: OCRResult):
    """OCRmyPDF's page element for one page's OCR: lines in reading order, words with boxes
    and confidences (the same tree its hOCR parser builds)."""
    from ocrmypdf.models.ocr_element import BoundingBox, OcrClass, OcrElement

    lines = []
    for line_words in ocr.lines():
        words = [
            OcrElement(
                ocr_class=OcrClass.WORD,
                bbox=_clamped_box(word.box, ocr),
                text=word.text,
                confidence=word.confidence,
            )
            for word in line_words
            if word.text.strip()
        ]
        if not words:
            continue
        lines.append(
            OcrElement(
                ocr_class=OcrClass.LINE,
                bbox=BoundingBox(
                    min(w.bbox.left for w in words),
                    min(w.bbox.top for w in words),
                    max(w.bbox.right for w in words),
                    max(w.bbox.bottom for w in words),
                ),
                children=words,
            )
        )
    return OcrElement(
        ocr_class=OcrClass.PAGE,
        bbox=BoundingBox(0, 0, ocr.width, ocr.height),
        children=lines,
        dpi=LAYER_DPI,
    )


def _clamped_box(box, ocr: OCRResult):
    """The word's box inside the page, never empty (the renderer rejects inverted boxes, and a
    box reaching past the page edge would carry its text off the page)."""
    from ocrmypdf.models.ocr_element import BoundingBox

    x0, y0 = min(max(box[0], 0.0), ocr.width), min(max(box[1], 0.0), ocr.height)
    x1, y1 = min(max(box[2], x0), ocr.width), min(max(box[3], y0), ocr.height)
    return BoundingBox(x0, y0, max(x1, x0 + 0.01), max(y1, y0 + 0.01))


def _render_layers(pages: list[Page]) -> pikepdf.Pdf:
    """One invisible-text page per OCR'd page, drawn by OCRmyPDF's fpdf2 renderer."""
    from ocrmypdf.fpdf_renderer.renderer import Fpdf2MultiPageRenderer

    elements = [(page.index, _ocr_element(page.ocr), LAYER_DPI) for page in pages]
    text = "".join(word.text for page in pages for word in page.ocr.words)
    with tempfile.TemporaryDirectory(prefix="docformer-layer-") as folder:
        path = Path(folder) / "layer.pdf"
        with LAYER_FONTS_LOCK:
            fonts = font_manager_for(text)
            Fpdf2MultiPageRenderer(elements, fonts, invisible_text=True).render(path)
        # Read into memory: the file goes with the folder.
        return pikepdf.open(io.BytesIO(path.read_bytes()))


def _add_text_layers(pdf: pikepdf.Pdf, pages: list[Page]) -> None:
    layers = _render_layers(pages)
    for layer_page, page in zip(layers.pages, pages, strict=True):
        target = pdf.pages[page.index]
        form = pdf.copy_foreign(layer_page.as_form_xobject())
        name = target.add_resource(form, pikepdf.Name.XObject, prefix="OCR")
        matrix = layer_to_page_matrix(page.ocr, target)
        # Wrapped in q/Q both ways so the page's own graphics state cannot leak into the layer
        # nor the layer's into anything drawn after it.
        target.contents_coalesce()
        target.contents_add(pikepdf.Stream(pdf, b"q\n"), prepend=True)
        target.contents_add(pikepdf.Stream(pdf, b"Q\nq\n" + _draw(matrix, name) + b"Q\n"))


def _draw(matrix: Matrix, name: pikepdf.Name) -> bytes:
    a, b, c, d, e, f = (float(v) for v in matrix.shorthand)
    return f"{a:.6f} {b:.6f} {c:.6f} {d:.6f} {e:.4f} {f:.4f} cm\n{name} Do\n".encode()


def layer_to_page_matrix(ocr: OCRResult, page: pikepdf.Page) -> Matrix:
    """The matrix that takes the text layer's space (OCR pixels as points, y up, on the page as
    OCR saw it) to the PDF page's user space.

    Three steps, composed by mapping three points: undo the turn OCR gave the image
    (`ocr.rotation` degrees counter-clockwise, PIL's `rotate(expand=True)`); scale the rendered
    pixels to the displayed page's points (the page as rendered: crop box, then `/Rotate`);
    undo `/Rotate` (clockwise) back to user space.
    """
    turned = ocr.rotation % 360
    turned_w, turned_h = float(ocr.width), float(ocr.height)
    rendered_w, rendered_h = (turned_h, turned_w) if turned in (90, 270) else (turned_w, turned_h)

    # Both may be inherited from the page tree; pikepdf resolves that (and a missing crop box is
    # the media box), as pdfium does when it renders.
    crop = page.cropbox
    llx, lly, urx, ury = (float(v) for v in crop)
    llx, urx = min(llx, urx), max(llx, urx)
    lly, ury = min(lly, ury), max(lly, ury)
    box_w, box_h = urx - llx, ury - lly
    page_turn = int(page.rotation) % 360
    shown_w, shown_h = (box_h, box_w) if page_turn in (90, 270) else (box_w, box_h)

    def to_user(u: float, v: float) -> tuple[float, float]:
        # layer point (y up) -> OCR pixel (y down) on the turned image
        x, y = u, turned_h - v
        # -> pixel on the image as rendered, before OCR turned it
        if turned == 90:
            x, y = rendered_w - y, x
        elif turned == 180:
            x, y = rendered_w - x, rendered_h - y
        elif turned == 270:
            x, y = y, rendered_h - x
        # -> displayed page, points, y up
        sx, sy = x * shown_w / rendered_w, shown_h - y * shown_h / rendered_h
        # -> user space, undoing /Rotate (the page is shown turned clockwise)
        if page_turn == 90:
            ux, uy = box_w - sy, sx
        elif page_turn == 180:
            ux, uy = box_w - sx, box_h - sy
        elif page_turn == 270:
            ux, uy = sy, box_h - sx
        else:
            ux, uy = sx, sy
        return llx + ux, lly + uy

    e, f = to_user(0.0, 0.0)
    ax, ay = to_user(1.0, 0.0)
    cx, cy = to_user(0.0, 1.0)
    return Matrix(ax - e, ay - f, cx - e, cy - f, e, f)


# ---------------------------------------------------------------------------------------------
# saving


def _save(pdf: pikepdf.Pdf) -> SearchablePDF:
    """PDF/A-2b when the document passes pikepdf's validator, else a plain PDF and the reason."""
    from pikepdf.pdfa import PdfaError
    from pikepdf.pdfa import save as save_pdfa

    layered = sum(1 for page in pdf.pages if _has_ocr_layer(page))
    buffer = io.BytesIO()
    try:
        save_pdfa(pdf, buffer, PDFA_FLAVOUR, output_intent="sRGB")
        return SearchablePDF(buffer.getvalue(), True, None, layered)
    except PdfaError as error:
        problem = _describe(error)
    buffer = io.BytesIO()
    pdf.save(buffer, compress_streams=True, object_stream_mode=pikepdf.ObjectStreamMode.generate)
    return SearchablePDF(buffer.getvalue(), False, problem, layered)


def _has_ocr_layer(page: pikepdf.Page) -> bool:
    xobjects = page.resources.get(pikepdf.Name.XObject, {})
    return any(str(name).startswith("/OCR") for name in xobjects)


def _describe(error: Exception) -> str:
    report = getattr(error, "report", None)
    findings = getattr(report, "findings", None) or []
    text = "; ".join(str(finding) for finding in list(findings)[:3]) or str(error)
    return text[:500]


__all__ = ["SearchablePDF", "layer_to_page_matrix", "searchable_pdf"]
