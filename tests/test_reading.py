"""Reading documents: formats sniffed from bytes, pages rendered to RGB, PDF text layers, and a
typed error for every kind of bad input. Every input is built here; no OCR runs."""

from __future__ import annotations

import ctypes
import hashlib
import io
import struct
import zlib

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
import pytest
from PIL import Image, ImageDraw

from docformer.io import (
    DamagedDocument,
    DocumentError,
    EmptyDocument,
    EncryptedDocument,
    ImageTooLarge,
    ReadLimits,
    TooLarge,
    TooManyPages,
    UnsupportedFormat,
    read_document,
)

# ---------------------------------------------------------------------------------------------
# Building inputs


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def sample_image(size=(240, 160)) -> Image.Image:
    """Black text-like bars on white, with a red square to check colour channels."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 200, 40), fill="black")
    draw.rectangle((20, 60, 60, 100), fill=(255, 0, 0))
    return image


def text_pdf(words: list[tuple[str, float, float]], size=(595, 842), rotate: int = 0):
    """A born-digital PDF: each word its own Helvetica text object at (x, baseline y) in points.

    Returns the bytes and pdfium's own bounds of each text object (left, bottom, right, top),
    measured independently of the text-page API the reader uses."""
    pdf = pdfium.PdfDocument.new()
    page = pdf.new_page(*size)
    bounds = []
    for text, x, y in words:
        obj = pdfium_c.FPDFPageObj_NewTextObj(pdf.raw, b"Helvetica", ctypes.c_float(12))
        utf16 = ctypes.create_string_buffer((text + "\0").encode("utf-16-le"))
        pdfium_c.FPDFText_SetText(obj, ctypes.cast(utf16, ctypes.POINTER(pdfium_c.FPDF_WCHAR)))
        pdfium_c.FPDFPageObj_Transform(obj, 1, 0, 0, 1, x, y)
        pdfium_c.FPDFPage_InsertObject(page.raw, obj)
        edges = [ctypes.c_float() for _ in range(4)]
        pdfium_c.FPDFPageObj_GetBounds(obj, *(ctypes.byref(e) for e in edges))
        bounds.append(tuple(e.value for e in edges))
    pdfium_c.FPDFPage_GenerateContent(page.raw)
    if rotate:
        page.set_rotation(rotate)
    buffer = io.BytesIO()
    pdf.save(buffer)
    return buffer.getvalue(), bounds


def image_pdf(pages: int = 1, size=(300, 400)) -> bytes:
    """A 'scanned' PDF: pages holding only an image, no text."""
    pdf = pdfium.PdfDocument.new()
    for _ in range(pages):
        page = pdf.new_page(*size)
        image = pdfium.PdfImage.new(pdf)
        bitmap = pdfium.PdfBitmap.from_pil(sample_image())
        image.set_bitmap(bitmap)
        image.set_matrix(pdfium.PdfMatrix().scale(size[0], size[1]))
        page.insert_obj(image)
        page.gen_content()
    buffer = io.BytesIO()
    pdf.save(buffer)
    return buffer.getvalue()


def assemble_pdf(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """PDF bytes from numbered object bodies (1..n), with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s >>\n" % (len(objects) + 1, trailer)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def rc4(key: bytes, data: bytes) -> bytes:
    state = list(range(256))
    j = 0
    for i in range(256):
        j = (j + state[i] + key[i % len(key)]) % 256
        state[i], state[j] = state[j], state[i]
    i = j = 0
    out = bytearray()
    for byte in data:
        i = (i + 1) % 256
        j = (j + state[i]) % 256
        state[i], state[j] = state[j], state[i]
        out.append(byte ^ state[(state[i] + state[j]) % 256])
    return bytes(out)


PASSWORD_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def encrypted_pdf(user_password: bytes = b"secret", owner_password: bytes = b"owner") -> bytes:
    """A real password-protected PDF: standard security handler, revision 2 (RC4, 40 bits),
    PDF 1.7 §7.6.3 algorithms 2-4, with its content stream encrypted."""
    file_id = hashlib.md5(b"docformer-test").digest()
    permissions = -4
    owner_key = hashlib.md5((owner_password + PASSWORD_PAD)[:32]).digest()[:5]
    owner_entry = rc4(owner_key, (user_password + PASSWORD_PAD)[:32])
    file_key = hashlib.md5(
        (user_password + PASSWORD_PAD)[:32] + owner_entry + struct.pack("<i", permissions) + file_id
    ).digest()[:5]
    user_entry = rc4(file_key, PASSWORD_PAD)
    content = b"BT /F1 24 Tf 72 700 Td (Confidential) Tj ET"
    object_key = hashlib.md5(file_key + struct.pack("<I", 4)[:3] + b"\x00\x00").digest()[:10]
    stream = rc4(object_key, content)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P %d >>"
        % (owner_entry.hex().encode(), user_entry.hex().encode(), permissions),
    ]
    return assemble_pdf(
        objects,
        b"/Encrypt 6 0 R /ID [<%s> <%s>]" % (file_id.hex().encode(), file_id.hex().encode()),
    )


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header declaring a huge image, followed by almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def tiff_claiming(width: int, height: int) -> bytes:
    """A little-endian G4 fax TIFF whose one directory declares a huge page."""
    entries = [
        (256, 4, 1, width),  # ImageWidth (LONG)
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 1),  # BitsPerSample
        (259, 3, 1, 4),  # Compression: CCITT group 4
        (262, 3, 1, 0),  # Photometric: white is zero
        (273, 4, 1, 8),  # StripOffsets
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, 4),  # StripByteCounts
    ]
    ifd_offset = 12
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHII", tag, kind, count, value)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + b"\x00" * 4 + ifd


# ---------------------------------------------------------------------------------------------
# Images


@pytest.mark.parametrize(
    ("fmt", "media_type", "options"),
    [
        ("PNG", "image/png", {}),
        ("JPEG", "image/jpeg", {"quality": 95}),
        ("BMP", "image/bmp", {}),
        ("WEBP", "image/webp", {"lossless": True}),
        ("TIFF", "image/tiff", {"compression": "tiff_lzw"}),
        ("GIF", "image/gif", {}),
    ],
)
def test_raster_formats_are_sniffed_from_bytes_not_names(fmt, media_type, options):
    data = encode(sample_image(), fmt, **options)
    doc = read_document(data, "misnamed.pdf")
    assert doc.media_type == media_type
    assert doc.sha256 == hashlib.sha256(data).hexdigest()
    assert doc.source == "misnamed.pdf"
    [page] = doc.pages
    assert (page.index, page.width, page.height) == (0, 240, 160)
    assert page.image.mode == "RGB" and page.image.size == (240, 160)
    assert not page.has_text_layer and page.ocr is None
    pixels = np.asarray(page.image).astype(int)
    assert np.abs(pixels[30, 100] - [0, 0, 0]).max() < 40  # black bar
    assert np.abs(pixels[80, 40] - [255, 0, 0]).max() < 40  # red square
    assert np.abs(pixels[140, 220] - [255, 255, 255]).max() < 40  # paper


def test_exif_orientation_is_applied():
    image = sample_image()  # 240 wide, 160 high, red square at the left
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display needs a 90° clockwise turn
    data = encode(image.rotate(90, expand=True), "JPEG", exif=exif.tobytes(), quality=95)
    page = read_document(data, "phone.jpg").pages[0]
    assert page.image.size == (240, 160)
    assert np.asarray(page.image)[80, 40, 0] > 200 > np.asarray(page.image)[80, 40, 1]


def test_grey_palette_cmyk_and_alpha_become_rgb():
    base = sample_image()
    grey = read_document(encode(base.convert("L"), "PNG"), "g").pages[0].image
    palette = read_document(encode(base.convert("P"), "PNG"), "p").pages[0].image
    cmyk = read_document(encode(base.convert("CMYK"), "TIFF"), "c.tif").pages[0].image
    cmyk_jpeg = read_document(encode(base.convert("CMYK"), "JPEG", quality=95), "c.jpg")
    for image in (grey, palette, cmyk, cmyk_jpeg.pages[0].image):
        assert image.mode == "RGB"
        pixels = np.asarray(image).astype(int)
        assert pixels[30, 100].max() < 60 and pixels[140, 220].min() > 200
    assert np.abs(np.asarray(cmyk).astype(int)[80, 40] - [255, 0, 0]).max() < 40

    # Black text on a transparent background: transparent pixels must become paper, not ink.
    transparent = Image.new("RGBA", (100, 50), (0, 0, 0, 0))
    ImageDraw.Draw(transparent).rectangle((10, 10, 40, 30), fill=(0, 0, 0, 255))
    image = read_document(encode(transparent, "PNG"), "t.png").pages[0].image
    assert np.asarray(image)[45, 90].min() == 255 and np.asarray(image)[20, 20].max() == 0


def test_sixteen_bit_grey_is_scaled_not_clipped():
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (32, 1))
    image = Image.fromarray(ramp)  # Pillow mode I;16
    assert image.mode == "I;16"
    for fmt in ("TIFF", "PNG"):
        page = read_document(encode(image, fmt), f"ramp.{fmt}").pages[0]
        row = np.asarray(page.image)[0, :, 0].astype(int)
        assert row[0] == 0 and row[-1] == 255
        assert abs(row[128] - 128) <= 2  # mid-grey stays mid-grey
        assert np.all(np.diff(row) >= 0)


def test_multipage_g4_tiff_yields_every_page():
    pages = []
    for i in range(3):
        page = Image.new("1", (400, 300), 1)
        ImageDraw.Draw(page).rectangle((20 + 50 * i, 20, 60 + 50 * i, 60), fill=0)
        pages.append(page)
    data = encode(pages[0], "TIFF", compression="group4", save_all=True, append_images=pages[1:])
    doc = read_document(data, "fax.tif")
    assert doc.media_type == "image/tiff"
    assert [p.index for p in doc.pages] == [0, 1, 2]
    for i, page in enumerate(doc.pages):
        pixels = np.asarray(page.image)
        assert page.image.mode == "RGB" and page.image.size == (400, 300)
        assert pixels[40, 40 + 50 * i].max() == 0 and pixels[200, 300].min() == 255
    with pytest.raises(TooManyPages):
        read_document(data, "fax.tif", limits=ReadLimits(max_pages=2))


# ---------------------------------------------------------------------------------------------
# PDF


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


TEXT_WORDS = [
    ("Invoice", 72, 760),
    ("INV-2024-0042", 130, 760),
    ("Total", 72, 700),
    ("due:", 108, 700),
    ("$1,234.56", 140, 700),
    ("Thank", 72, 640),
    ("you", 112, 640),
]


def test_born_digital_pdf_keeps_its_text_layer_with_boxes_in_page_pixels():
    data, bounds = text_pdf(TEXT_WORDS)
    doc = read_document(data, "invoice.pdf", dpi=100)
    assert doc.media_type == "application/pdf"
    [page] = doc.pages
    scale = 100 / 72
    assert abs(page.width - 595 * scale) <= 1 and abs(page.height - 842 * scale) <= 1
    assert page.image.size == (page.width, page.height) and page.image.mode == "RGB"
    assert page.has_text_layer and page.ocr is not None
    assert page.ocr.engine.startswith("pdfium-")
    words = page.ocr.words
    assert [w.text for w in words] == [w[0] for w in TEXT_WORDS]
    assert [w.line_id for w in words] == [0, 0, 1, 1, 1, 2, 2]
    for word, (left, bottom, right, top) in zip(words, bounds, strict=True):
        expected = (left * scale, (842 - top) * scale, right * scale, (842 - bottom) * scale)
        assert iou(word.box, expected) > 0.8, (word, expected)
    # The words sit on ink in the rendered page.
    grey = np.asarray(page.image.convert("L"))
    for word in words:
        x0, y0, x1, y1 = (int(round(v)) for v in word.box)
        assert grey[y0:y1, x0:x1].min() < 100


def test_rotated_pdf_page_maps_text_boxes_like_the_rendering():
    data, _ = text_pdf(TEXT_WORDS, rotate=90)
    page = read_document(data, "turned.pdf", dpi=72).pages[0]
    assert (page.width, page.height) == (842, 595)
    pdf = pdfium.PdfDocument(data)
    pdf_page = pdf[0]
    raw_page = pdf_page.raw
    grey = np.asarray(page.image.convert("L"))
    for word in page.ocr.words:
        x0, y0, x1, y1 = (int(round(v)) for v in word.box)
        assert x1 - x0 < y1 - y0  # text runs downwards on a page turned 90°
        assert grey[y0:y1, x0:x1].min() < 100
    # pdfium's own page-to-device mapping agrees with the word boxes.
    first = page.ocr.words[0]
    dx, dy = ctypes.c_int(), ctypes.c_int()
    pdfium_c.FPDF_PageToDevice(
        raw_page, 0, 0, 842, 595, 0, 72.0, 760.0, ctypes.byref(dx), ctypes.byref(dy)
    )
    assert first.box[0] - 3 <= dx.value <= first.box[2] + 3
    assert abs(dy.value - first.box[1]) <= 3
    pdf.close()


def test_scanned_pdf_pages_have_no_text_layer():
    doc = read_document(image_pdf(pages=2), "scan.pdf", dpi=72)
    assert [p.index for p in doc.pages] == [0, 1]
    for page in doc.pages:
        assert not page.has_text_layer and page.ocr is None
        assert page.image.size == (300, 400)
        assert np.asarray(page.image).min() < 50  # the scanned bars were rendered


def test_pdf_limits_apply_before_rendering():
    with pytest.raises(TooManyPages) as error:
        read_document(image_pdf(pages=3), "long.pdf", limits=ReadLimits(max_pages=2))
    assert "3 pages" in str(error.value)
    poster, _ = text_pdf([("Poster", 72, 72)], size=(14400, 14400))
    with pytest.raises(ImageTooLarge):
        read_document(poster, "poster.pdf", dpi=200)


# ---------------------------------------------------------------------------------------------
# Bad inputs


def test_encrypted_pdf_fixture_is_real():
    pdf = pdfium.PdfDocument(encrypted_pdf(), password="secret")
    assert "Confidential" in pdf[0].get_textpage().get_text_range()
    pdf.close()


def truncated_pdf() -> bytes:
    data, _ = text_pdf(TEXT_WORDS)
    return data[: len(data) * 2 // 3]


def corrupt_jpeg() -> bytes:
    data = encode(sample_image((800, 600)), "JPEG", quality=90)
    return data[: len(data) // 2]


def empty_pdf() -> bytes:
    buffer = io.BytesIO()
    pdfium.PdfDocument.new().save(buffer)
    return buffer.getvalue()


BAD_INPUTS = {
    "zero bytes": (b"", EmptyDocument),
    "whitespace": (b"  \n\t ", EmptyDocument),
    "pdf without pages": (empty_pdf(), EmptyDocument),
    "html named pdf": (
        b"<!DOCTYPE html><html><body>Session expired</body></html>",
        UnsupportedFormat,
    ),
    "elf named pdf": (b"\x7fELF\x02\x01\x01" + b"\x00" * 120, UnsupportedFormat),
    "zip": (b"PK\x03\x04" + b"\x00" * 60, UnsupportedFormat),
    "truncated pdf": (truncated_pdf(), DamagedDocument),
    "garbage pdf": (b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\n%%EOF\n", DamagedDocument),
    "encrypted pdf": (encrypted_pdf(), EncryptedDocument),
    "corrupt jpeg": (corrupt_jpeg(), DamagedDocument),
    "jpeg header only": (b"\xff\xd8\xff\xe0" + b"\x13" * 50, DamagedDocument),
    "png bomb": (png_claiming(50000, 50000), ImageTooLarge),
    "tiff bomb": (tiff_claiming(50000, 50000), ImageTooLarge),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_every_bad_input_gets_its_typed_error(case):
    data, expected = BAD_INPUTS[case]
    with pytest.raises(expected) as error:
        read_document(data, f"uploads/{case}.pdf")
    assert isinstance(error.value, DocumentError)
    assert error.value.source == f"uploads/{case}.pdf"
    assert len(error.value.message) > 30  # says what is wrong and what to do
    assert error.value.code


def test_bomb_below_pillows_own_threshold_is_caught_by_our_limit():
    with pytest.raises(ImageTooLarge):
        read_document(png_claiming(5000, 5000), "b.png", limits=ReadLimits(max_pixels=10_000_000))


def test_unsupported_format_says_what_the_file_is():
    with pytest.raises(UnsupportedFormat, match="HTML page"):
        read_document(b"<html><head></head></html>", "scan.pdf")
    with pytest.raises(UnsupportedFormat, match="executable"):
        read_document(b"\x7fELF" + b"\x00" * 60, "scan.pdf")


def test_too_many_bytes():
    with pytest.raises(TooLarge):
        read_document(encode(sample_image(), "PNG"), "big.png", limits=ReadLimits(max_bytes=100))
