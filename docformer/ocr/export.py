"""A digitized document's words as archive formats: ALTO XML v4 and hOCR (the searchable PDF
is `docformer.ocr.searchable_pdf`'s).

Both are written from the document model (`Document` → pages → `OCRResult` → words with box,
confidence and line), with lxml:

- **ALTO v4** (4.4): per page a `Page` with its pixel size, one `PrintSpace`, one `TextBlock`
  (PaddleOCR gives lines, not blocks), a `TextLine` per OCR line and a `String` per word with
  `HPOS/VPOS/WIDTH/HEIGHT` in pixels and `WC` (word confidence, 0–1), `SP` between words.
  Each OCR engine id (an engine's, or a PDF's text layer's) is a `Processing` step that the
  pages it read refer to. Coordinates are those of the page image as OCR read it: where OCR
  turned a page upright first (`OCRResult.rotation`), the step's settings say which page and
  by how much (ALTO's `ROTATION` means text turned within a block, which is not this).
  `validate_alto` checks a file against the schema shipped in `schemas/`, offline, and
  `read_alto` reads one back into `OCRResult`s.
- **hOCR** (1.2): `ocr_page` › `ocr_carea` › `ocr_par` › `ocr_line` › `ocrx_word`, with `bbox`, `x_wconf` (0–100) and
  `ppageno`; OCRmyPDF's hOCR parser reads it (the tests check).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from importlib.resources import files

from lxml import etree

from docformer.document import Document, OCRResult, Word
from docformer.grounding import union_box

ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"
ALTO_SCHEMA_FILE = "alto-4-4.xsd"
ALTO_SCHEMA_LOCATION = "http://www.loc.gov/standards/alto/v4/alto-4-4.xsd"
XLINK_LOCATION = "http://www.loc.gov/standards/xlink/xlink.xsd"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XHTML_NS = "http://www.w3.org/1999/xhtml"
SOFTWARE_NAME = "docformer"


def _number(value: float) -> str:
    """Coordinates to two decimals, trailing zeros dropped (boxes are pixels; 1/100 is plenty)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in {"-0", ""} else text


def _engines(document: Document) -> dict[str, str]:
    """Engine id -> Processing ID, in the order the pages name them."""
    engines: dict[str, str] = {}
    for page in document.pages:
        if page.ocr is not None:
            engines.setdefault(page.ocr.engine, f"OCR_{len(engines)}")
    return engines


# ---------------------------------------------------------------------------------------------
# ALTO


def to_alto(document: Document, *, created: datetime | None = None) -> bytes:
    """ALTO v4 XML of every page's words, lines and boxes (UTF-8 bytes)."""
    a = f"{{{ALTO_NS}}}"
    root = etree.Element(f"{a}alto", nsmap={None: ALTO_NS, "xsi": XSI_NS})
    root.set(f"{{{XSI_NS}}}schemaLocation", f"{ALTO_NS} {ALTO_SCHEMA_LOCATION}")
    description = etree.SubElement(root, f"{a}Description")
    etree.SubElement(description, f"{a}MeasurementUnit").text = "pixel"
    source = etree.SubElement(description, f"{a}sourceImageInformation")
    etree.SubElement(source, f"{a}fileName").text = document.source
    identifier = etree.SubElement(source, f"{a}documentIdentifier")
    identifier.set("documentIdentifierLocation", "sha256")
    identifier.text = document.sha256

    when = (created or datetime.now(UTC)).replace(microsecond=0).isoformat()
    engines = _engines(document)
    for engine, step_id in engines.items():
        step = etree.SubElement(description, f"{a}Processing", ID=step_id)
        etree.SubElement(step, f"{a}processingCategory").text = "contentGeneration"
        etree.SubElement(step, f"{a}processingDateTime").text = when
        turned = [
            f"page {page.index + 1} turned {page.ocr.rotation} degrees counter-clockwise"
            for page in document.pages
            if page.ocr is not None and page.ocr.engine == engine and page.ocr.rotation
        ]
        etree.SubElement(step, f"{a}processingStepSettings").text = "; ".join(
            [f"engine={engine}", "coordinates in pixels of the page image as read", *turned]
        )
        software = etree.SubElement(step, f"{a}processingSoftware")
        etree.SubElement(software, f"{a}softwareName").text = SOFTWARE_NAME
        etree.SubElement(software, f"{a}applicationDescription").text = engine

    layout = etree.SubElement(root, f"{a}Layout")
    for page in document.pages:
        number = page.index + 1
        ocr = page.ocr or OCRResult(page.width, page.height)
        page_element = etree.SubElement(
            layout,
            f"{a}Page",
            ID=f"P{number}",
            PHYSICAL_IMG_NR=str(number),
            WIDTH=str(ocr.width),
            HEIGHT=str(ocr.height),
        )
        if page.ocr is not None:
            page_element.set("PROCESSINGREFS", engines[page.ocr.engine])
        space = etree.SubElement(
            page_element, f"{a}PrintSpace", HPOS="0", VPOS="0",
            WIDTH=str(ocr.width), HEIGHT=str(ocr.height),
        )  # fmt: skip
        lines = [line for line in ocr.lines() if line]
        if not lines:
            continue
        block = etree.SubElement(space, f"{a}TextBlock", ID=f"P{number}_B1")
        _set_box(block, union_box([w.box for line in lines for w in line]))
        for line_number, words in enumerate(lines, 1):
            line_element = etree.SubElement(block, f"{a}TextLine", ID=f"P{number}_L{line_number}")
            _set_box(line_element, union_box([w.box for w in words]))
            for word_number, word in enumerate(words, 1):
                if word_number > 1:
                    etree.SubElement(line_element, f"{a}SP")
                string = etree.SubElement(
                    line_element,
                    f"{a}String",
                    ID=f"P{number}_L{line_number}_W{word_number}",
                    CONTENT=word.text,
                )
                _set_box(string, word.box)
                string.set("WC", f"{min(max(word.confidence, 0.0), 1.0):.4f}")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _set_box(element: etree._Element, box) -> None:
    x0, y0, x1, y1 = box
    element.set("HPOS", _number(x0))
    element.set("VPOS", _number(y0))
    element.set("WIDTH", _number(max(x1 - x0, 0.0)))
    element.set("HEIGHT", _number(max(y1 - y0, 0.0)))


def read_alto(data: bytes) -> list[OCRResult]:
    """The pages of an ALTO v4 file as OCR results: words with boxes, confidences and line ids
    (lines numbered in document order per page), the engine from the page's Processing step.
    A page's turn before OCR is not read back (it is only described in the step's settings)."""
    a = f"{{{ALTO_NS}}}"
    root = etree.fromstring(data, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    engines = {
        step.get("ID"): step.findtext(f"{a}processingSoftware/{a}applicationDescription") or ""
        for step in root.iter(f"{a}Processing")
    }
    pages = []
    for page in root.iter(f"{a}Page"):
        words = []
        for line_id, line in enumerate(page.iter(f"{a}TextLine")):
            for string in line.iter(f"{a}String"):
                x, y = float(string.get("HPOS")), float(string.get("VPOS"))
                w, h = float(string.get("WIDTH")), float(string.get("HEIGHT"))
                words.append(
                    Word(string.get("CONTENT"), (x, y, x + w, y + h),
                         float(string.get("WC", "1")), line_id)
                )  # fmt: skip
        engine = engines.get((page.get("PROCESSINGREFS") or "").split(" ")[0], "")
        pages.append(
            OCRResult(int(float(page.get("WIDTH"))), int(float(page.get("HEIGHT"))), words,
                      engine)
        )  # fmt: skip
    return pages


class _LocalSchemas(etree.Resolver):
    """Resolves the XLink schema ALTO imports to the copy shipped here: no network."""

    def resolve(self, url, pubid, context):
        if url == XLINK_LOCATION or url.endswith("/xlink.xsd"):
            return self.resolve_string(_schema_text("xlink.xsd"), context)
        return None


def _schema_text(name: str) -> bytes:
    return files("docformer.ocr").joinpath("schemas", name).read_bytes()


@cache
def alto_schema() -> etree.XMLSchema:
    """The ALTO v4.4 schema from `schemas/`, its XLink import resolved locally."""
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_LocalSchemas())
    document = etree.fromstring(_schema_text(ALTO_SCHEMA_FILE), parser=parser)
    return etree.XMLSchema(document)


def validate_alto(data: bytes) -> list[str]:
    """Schema errors of an ALTO file ("line N: message"); empty when it is valid ALTO v4."""
    schema = alto_schema()
    document = etree.fromstring(data, parser=etree.XMLParser(no_network=True))
    if schema.validate(document):
        return []
    return [f"line {error.line}: {error.message}" for error in schema.error_log]


# ---------------------------------------------------------------------------------------------
# hOCR


def to_hocr(document: Document) -> bytes:
    """hOCR (XHTML) of every page: pages, lines and words with boxes and confidences."""
    h = f"{{{XHTML_NS}}}"
    html = etree.Element(f"{h}html", nsmap={None: XHTML_NS})
    html.set("{http://www.w3.org/XML/1998/namespace}lang", "und")
    head = etree.SubElement(html, f"{h}head")
    etree.SubElement(head, f"{h}title").text = document.source
    etree.SubElement(head, f"{h}meta", {"http-equiv": "Content-Type",
                                        "content": "text/html;charset=utf-8"})  # fmt: skip
    engines = ", ".join(_engines(document)) or "none"
    etree.SubElement(head, f"{h}meta", name="ocr-system", content=f"{SOFTWARE_NAME} ({engines})")
    etree.SubElement(head, f"{h}meta", name="ocr-capabilities",
                     content="ocr_page ocr_carea ocr_par ocr_line ocrx_word")  # fmt: skip
    etree.SubElement(head, f"{h}meta", name="ocr-number-of-pages", content=str(len(document.pages)))
    body = etree.SubElement(html, f"{h}body")
    for page in document.pages:
        number = page.index + 1
        ocr = page.ocr or OCRResult(page.width, page.height)
        page_element = etree.SubElement(
            body, f"{h}div", {"class": "ocr_page", "id": f"page_{number}"}
        )
        # The page as OCR read it (turned upright where it had to be): hOCR has no property for
        # a whole page's turn (`textangle` is text turned within the page), so it is not said.
        page_element.set("title", f"bbox 0 0 {ocr.width} {ocr.height}; ppageno {page.index}")
        lines = [line for line in ocr.lines() if line]
        if not lines:
            continue
        # One area and one paragraph per page, as Tesseract nests them (PaddleOCR gives no
        # blocks): hOCR readers such as OCRmyPDF's look for lines inside paragraphs.
        page_box = _hocr_box(union_box([w.box for line in lines for w in line]))
        area = etree.SubElement(
            page_element, f"{h}div",
            {"class": "ocr_carea", "id": f"block_{number}_1", "title": f"bbox {page_box}"},
        )  # fmt: skip
        paragraph = etree.SubElement(
            area, f"{h}p",
            {"class": "ocr_par", "id": f"par_{number}_1", "title": f"bbox {page_box}"},
        )  # fmt: skip
        for line_number, words in enumerate(lines, 1):
            line_element = etree.SubElement(
                paragraph,
                f"{h}span",
                {
                    "class": "ocr_line",
                    "id": f"line_{number}_{line_number}",
                    "title": f"bbox {_hocr_box(union_box([w.box for w in words]))}",
                },
            )
            for word_number, word in enumerate(words, 1):
                word_element = etree.SubElement(
                    line_element,
                    f"{h}span",
                    {
                        "class": "ocrx_word",
                        "id": f"word_{number}_{line_number}_{word_number}",
                        "title": f"bbox {_hocr_box(word.box)}; "
                        f"x_wconf {round(word.confidence * 100)}",
                    },
                )
                word_element.text = word.text
                word_element.tail = " "
    return etree.tostring(
        html,
        xml_declaration=True,
        encoding="UTF-8",
        pretty_print=True,
        doctype='<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
        '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">',
    )


def _hocr_box(box) -> str:
    """hOCR boxes are whole pixels: the rounded-out box, so it still covers the word."""
    import math

    x0, y0, x1, y1 = box
    return f"{math.floor(x0)} {math.floor(y0)} {math.ceil(x1)} {math.ceil(y1)}"


__all__ = ["alto_schema", "read_alto", "to_alto", "to_hocr", "validate_alto"]
