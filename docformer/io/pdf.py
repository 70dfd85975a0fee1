"""PDF → pages with pypdfium2: every page rendered to RGB; born-digital pages also keep the
words of their text layer, so OCR is skipped for them.

`open_pdf` checks the page count and every page's pixel size from the page tree before any
page is rendered; `iter_pdf_pages` then renders the pages one at a time."""

from __future__ import annotations

from collections.abc import Iterator

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from docformer.document import OCRResult, Page, Word
from docformer.io.errors import (
    DamagedDocument,
    DocumentError,
    EmptyDocument,
    EncryptedDocument,
    ImageTooLarge,
    TooManyPages,
)
from docformer.io.limits import ReadLimits
from docformer.ocr.layout import TextSegment, assign_lines, quad_from_box

TEXT_LAYER_ENGINE = f"pdfium-{pdfium.PDFIUM_INFO.build}/text-layer"
# A page counts as born-digital when its text layer holds at least this many visible
# characters; a stray page number or stamp on a scan must not hide the scanned text from OCR.
MIN_TEXT_LAYER_CHARS = 5
_NEWLINES = {"\r", "\n", "\x02", "\x03"}


def read_pdf_pages(data: bytes, source: str, limits: ReadLimits, dpi: int) -> list[Page]:
    """Every page of the PDF, rendered, all at once (`open_pdf` and `iter_pdf_pages`)."""
    pdf, _ = open_pdf(data, source, limits, dpi)
    return list(iter_pdf_pages(pdf, source, dpi))


def open_pdf(
    data: bytes, source: str, limits: ReadLimits, dpi: int
) -> tuple[pdfium.PdfDocument, list[tuple[int, int]]]:
    """The opened PDF and the pixel size of each page at `dpi`, checked against the page count
    and the per-page pixel limit from the page tree alone: no page is rendered or parsed."""
    # pdfium quietly repairs a file that was cut off and renders what is left, which would
    # silently lose pages; a complete PDF ends with %%EOF (allowing for trailing junk).
    if b"%%EOF" not in data[-2048:]:
        raise DamagedDocument(
            "the PDF ends early (no %%EOF marker): the upload or export was cut off. "
            "Upload the complete file again.",
            source=source,
        )
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as error:
        raise _open_error(error, source) from error
    try:
        return pdf, _page_sizes(pdf, source, limits, dpi)
    except BaseException:
        pdf.close()
        raise


def _open_error(error: pdfium.PdfiumError, source: str) -> DocumentError:
    if error.err_code == pdfium_c.FPDF_ERR_PASSWORD:
        return EncryptedDocument(
            "the PDF is protected by a password; upload a copy saved without a password.",
            source=source,
        )
    if error.err_code == pdfium_c.FPDF_ERR_SECURITY:
        return EncryptedDocument(
            "the PDF uses an encryption scheme that cannot be opened; upload a copy "
            "saved without encryption.",
            source=source,
        )
    if error.err_code == pdfium_c.FPDF_ERR_SUCCESS:
        # pdfium "succeeds" in finding nothing to load: no page tree, or an empty one.
        return EmptyDocument(
            "the PDF has no pages (its page tree is empty or missing); export it again.",
            source=source,
        )
    return DamagedDocument(
        f"the PDF cannot be opened ({error}); the file is damaged. Export it again.",
        source=source,
    )


def _page_sizes(
    pdf: pdfium.PdfDocument, source: str, limits: ReadLimits, dpi: int
) -> list[tuple[int, int]]:
    count = len(pdf)
    if count == 0:
        raise EmptyDocument("the PDF has no pages.", source=source)
    if count > limits.max_pages:
        raise TooManyPages(
            f"{count} pages, more than the limit of {limits.max_pages}; split the PDF into "
            "smaller documents or raise the page limit.",
            source=source,
        )
    scale = dpi / 72.0
    sizes = []
    for index in range(count):
        try:
            # The size from the page's dictionary (crop box and /Rotate), without loading the
            # page's content: what `PdfPage.get_size` says once the page is loaded.
            width_pt, height_pt = pdf.get_page_size(index)
        except pdfium.PdfiumError as error:
            raise DamagedDocument(
                f"page {index + 1} cannot be loaded ({error}); the file is damaged. "
                "Export it again.",
                source=source,
            ) from error
        width, height = round(width_pt * scale), round(height_pt * scale)
        if width * height > limits.max_pixels:
            raise ImageTooLarge(
                f"page {index + 1} is {width_pt:.0f}×{height_pt:.0f} pt, {width}×{height} "
                f"pixels at {dpi} dpi, more than the limit of {limits.max_pixels:,}; read it "
                "at a lower dpi or raise the limit.",
                source=source,
            )
        if width == 0 or height == 0:
            raise EmptyDocument(f"page {index + 1} has no area.", source=source)
        sizes.append((width, height))
    return sizes


def iter_pdf_pages(pdf: pdfium.PdfDocument, source: str, dpi: int) -> Iterator[Page]:
    """The pages of an opened PDF (`open_pdf`), rendered one at a time as they are asked for;
    the PDF is closed when the last one is given or the iteration is abandoned. Nothing here
    keeps a page once it is given, so a reader that lets go of each page's full-resolution
    image holds one at a time."""
    try:
        for index in range(len(pdf)):
            yield _read_page(pdf, index, source, dpi / 72.0)
    finally:
        pdf.close()


def render_page(pdf_page: pdfium.PdfPage, scale: float) -> Image.Image:
    """One page rendered to RGB at `scale` pixels per point."""
    return pdf_page.render(scale=scale).to_pil().convert("RGB")


def _read_page(pdf: pdfium.PdfDocument, index: int, source: str, scale: float) -> Page:
    try:
        pdf_page = pdf[index]
    except pdfium.PdfiumError as error:
        raise DamagedDocument(
            f"page {index + 1} cannot be loaded ({error}); the file is damaged. Export it again.",
            source=source,
        ) from error
    try:
        try:
            image = render_page(pdf_page, scale)
        except pdfium.PdfiumError as error:
            raise DamagedDocument(
                f"page {index + 1} cannot be rendered ({error}); the file is damaged.",
                source=source,
            ) from error
        page = Page(index=index, width=image.width, height=image.height, image=image)
        words = text_layer_words(pdf_page, scale)
        if sum(len(w.text) for w in words) >= MIN_TEXT_LAYER_CHARS:
            page.ocr = OCRResult(page.width, page.height, words, TEXT_LAYER_ENGINE)
            page.has_text_layer = True
        return page
    finally:
        pdf_page.close()


def text_layer_words(page: pdfium.PdfPage, scale: float) -> list[Word]:
    """Words of a page's text layer with boxes in rendered-page pixels, lines in reading order.

    pdfium reports characters in content order with the spaces and line breaks it inferred
    from their positions ("generated" characters); words end at spaces, segments at line
    breaks, wide gaps, or where the next character jumps back or off the baseline. Text may run
    sideways on the rendered page (a /Rotate'd page, a landscape table), so all of that is
    judged in the text's own reading frame and only the final boxes go back to page pixels.
    """
    to_pixels = _page_to_pixels(page, scale)
    textpage = page.get_textpage()
    try:
        pieces: list[tuple[str, Box] | None] = []  # None marks a line break
        for i in range(textpage.count_chars()):
            char = chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, i))
            if char in _NEWLINES:
                pieces.append(None)
            elif char.isspace() or not char.isprintable():
                pieces.append((" ", (0.0, 0.0, 0.0, 0.0)))
            else:
                box = to_pixels(*textpage.get_charbox(i))
                if box[2] - box[0] > 0 or box[3] - box[1] > 0:
                    pieces.append((char, box))
    finally:
        textpage.close()

    turns = _reading_frame(pieces)
    segments: list[TextSegment] = []
    seg_words: list[Word] = []
    chars: list[str] = []
    boxes: list[Box] = []
    # Top and bottom of the segment's glyphs so far, grown glyph by glyph: rebuilding it from the
    # whole segment for each glyph made a long line cost time quadratic in its glyphs.
    band: list[float] = []

    def end_word() -> None:
        if chars:
            seg_words.append(Word("".join(chars), _union(boxes), 1.0))
            chars.clear()
            boxes.clear()

    def end_segment() -> None:
        end_word()
        band.clear()
        if seg_words:
            segments.append(TextSegment(list(seg_words), quad_from_box(_union(seg_words))))
            seg_words.clear()

    for piece in pieces:
        if piece is None:
            end_segment()
            continue
        char, pixel_box = piece
        if char == " ":
            end_word()
            continue
        box = _turn(pixel_box, turns)
        if boxes or seg_words:
            last = boxes[-1] if boxes else seg_words[-1].box
            # Compare with the whole segment's band, not the last glyph: a comma or a
            # hyphen alone does not show where the line sits.
            centre_y = (box[1] + box[3]) / 2
            height = max(band[1] - band[0], box[3] - box[1])
            off_baseline = not (band[0] - 0.2 * height <= centre_y <= band[1] + 0.2 * height)
            jumps_back = box[0] < last[0] - 0.5 * height
            # A wide gap splits segments, so text columns never share one.
            far_right = box[0] - last[2] > 2.0 * height
            if off_baseline or jumps_back or far_right:
                end_segment()
        chars.append(char)
        boxes.append(box)
        band[:] = [min(band[0], box[1]), max(band[1], box[3])] if band else [box[1], box[3]]
    end_segment()

    words = assign_lines(segments)
    for word in words:
        word.box = _turn(word.box, -turns)
    return words


Box = tuple[float, float, float, float]


def _union(items) -> Box:
    boxes = [item.box if isinstance(item, Word) else item for item in items]
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _turn(box: Box, turns: int) -> Box:
    """Box in a frame turned by `turns` quarter turns: each maps a point (x, y) to (y, -x)."""
    corners = [(box[0], box[1]), (box[2], box[3])]
    for _ in range(turns % 4):
        corners = [(y, -x) for x, y in corners]
    (ax, ay), (bx, by) = corners
    return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)


def _reading_frame(pieces: list[tuple[str, Box] | None]) -> int:
    """Quarter turns that make most of the page's text run left to right."""
    votes = [0, 0, 0, 0]
    previous = None
    for piece in pieces:
        if piece is None or piece[0] == " ":
            previous = None
            continue
        box = piece[1]
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        if previous is not None:
            dx, dy = centre[0] - previous[0], centre[1] - previous[1]
            # Text running +x needs 0 turns, +y 1 turn, -x 2 turns, -y 3 turns.
            direction = (0 if dx > 0 else 2) if abs(dx) >= abs(dy) else (1 if dy > 0 else 3)
            votes[direction] += 1
        previous = centre
    return max(range(4), key=lambda k: votes[k])


def _page_to_pixels(page: pdfium.PdfPage, scale: float):
    """Map a PDF box (left, bottom, right, top in points) to rendered pixels (x0, y0, x1, y1),
    origin top-left, honouring the crop box and the page's /Rotate."""
    left, bottom, right, top = page.get_cropbox()
    width, height = right - left, top - bottom
    rotation = page.get_rotation()

    def point(x: float, y: float) -> tuple[float, float]:
        u, v = x - left, top - y  # unrotated, origin top-left, in points
        if rotation == 90:
            u, v = height - v, u
        elif rotation == 180:
            u, v = width - u, height - v
        elif rotation == 270:
            u, v = v, width - u
        return u * scale, v * scale

    def convert(l: float, b: float, r: float, t: float) -> tuple[float, float, float, float]:  # noqa: E741
        (ax, ay), (bx, by) = point(l, b), point(r, t)
        return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)

    return convert
