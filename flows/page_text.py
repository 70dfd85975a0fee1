"""A page's OCR as the text stored for full-text search: `pages.text` and `pages.heading_text`.

The text is the page's words in reading order, one line of text per OCR line (the words'
`line_id`), so what people read in `document_text` keeps the page's lines and a phrase search
does not run from one line into an unrelated one by accident of layout.

The heading lines are what the search ranks highest (`pages.search_vector` weighs them 'A',
the rest of the page 'D'). A line is a heading when it is printed well above the page's usual
size: its height is at least `HEADING_HEIGHT_RATIO` times the page's median line height. Size,
not position, because the first lines of a receipt are as often an address as a title, a
document's title can sit below a logo or an address block. A line's height is the median of its words' box
heights, so one word with a descender, a bracket or an accent does not make a line a heading.
The median line height is the lower median: on a page of two lines, a title and one line of
text, the text line is the measure. On the synthetic receipts and invoices this picks titles
("TAX INVOICE", "Rechnung"), company names and the odd large-printed total, and no body line.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from docformer.document import OCRResult, Word

# Titles are printed at 1.5-2.5 times the body's size; body lines whose box is only taller by
# their descenders and capitals measure up to about 1.3 times.
HEADING_HEIGHT_RATIO = 1.5


def _line_height(line: list[Word]) -> float:
    return statistics.median(word.box[3] - word.box[1] for word in line)


def page_text(ocr: OCRResult) -> tuple[str, str]:
    """(text, heading_text) of one page: every line, and only its heading lines, each line its
    words joined by spaces in reading order, lines joined by newlines; "" for a page with no
    words."""
    lines = [line for line in ocr.lines() if line]
    texts = [" ".join(word.text for word in line) for line in lines]
    heights = [_line_height(line) for line in lines]
    usual = statistics.median_low(heights) if heights else 0.0
    headings = [
        text
        for text, height in zip(texts, heights, strict=True)
        if usual > 0 and height >= HEADING_HEIGHT_RATIO * usual
    ]
    return "\n".join(texts), "\n".join(headings)
