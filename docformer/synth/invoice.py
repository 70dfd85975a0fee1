"""Invoices and purchase orders: a letter-size page with a letterhead, a title, an addressee block
beside a block of numbers and dates, a table of line items, totals on the right and small print.

A purchase order has the same bones; the issuer at the top is the buyer, the block beside it
names the vendor, and its number is a PO number (so it is not an `invoice_number`).
"""

from __future__ import annotations

import datetime as dt

from docformer.synth.businesses import phone, street_address
from docformer.synth.canvas import Canvas, Font
from docformer.synth.malaysia import my_company
from docformer.synth.parts import LineItem, document_number, line_items, logo, print_lines
from docformer.synth.receipt import mark_printed
from docformer.synth.style import Style
from docformer.synth.vocabulary import SERVICES, label

PAGE_RATIOS = (1.414, 1.294)  # A4, US letter


def new_page(style: Style, widths: tuple[int, int] = (860, 1130), max_side: int = 1600) -> Canvas:
    rng = style.rng
    width = rng.randint(*widths)
    height = min(max_side, round(width * rng.choice(PAGE_RATIOS)))
    return Canvas(width, height, margin=round(width * rng.uniform(0.05, 0.09)))


def column(
    canvas: Canvas, rows: list[tuple[str, Font]], x: float, align: str, spacing: float, top: float
) -> float:
    """Print rows from `top` down at x without disturbing the main cursor; return the bottom."""
    saved = canvas.y
    canvas.y = top
    for text, font in rows:
        canvas.row([(text, x, align)], font, spacing)
    bottom, canvas.y = canvas.y, saved
    return bottom


def letterhead(canvas: Canvas, style: Style, company: str, align: str) -> tuple[float, int]:
    """Logo, company name and address; records `company` and `address`. Returns the block's
    bottom and the baseline of the company name's first row."""
    rng = style.rng
    left, right = canvas.margin, canvas.width - canvas.margin
    x = {"left": left, "right": right, "center": canvas.width / 2}[align]
    top = canvas.y
    if rng.random() < 0.5:
        size = rng.randint(50, 100)
        logo_x = {"left": left, "right": right - size, "center": canvas.width / 2 - size / 2}[align]
        if align == "left" and rng.random() < 0.5:
            logo(canvas, style, left, top, size, company, lettered=False)
            x += size + 14
        else:
            logo(canvas, style, logo_x, top, size, company)
            canvas.y += size + 8
    width = (right - left) * 0.55
    head = style.font(rng.uniform(1.3, 2.0), bold=rng.random() < 0.8)
    first_baseline = round(canvas.y + head.getmetrics()[0])
    style.record(
        "company", " ".join(print_lines(canvas, [company], head, x, align, width, style.spacing))
    )
    small = style.font(rng.uniform(0.85, 1.0))
    address = [style.t(line) for line in street_address(rng, style.fake, style.region)]
    style.record(
        "address", " ".join(print_lines(canvas, address, small, x, align, width, style.spacing))
    )
    extra = []
    if rng.random() < 0.7:
        extra.append(f"{style.label('tel')}: {phone(rng, style.fake, style.region)}")
    if rng.random() < 0.5:
        extra.append(style.fake.company_email())
    if rng.random() < 0.3:
        extra.append(f"www.{style.fake.domain_name()}")
    if rng.random() < 0.4:
        tax_id = {
            "MY": "GST Reg No",
            "GB": "VAT No",
            "DE": "USt-IdNr.",
            "FR": "N° TVA",
            "IN": "GSTIN",
            "AU": "ABN",
        }.get(style.region.code, "Tax ID")
        extra.append(f"{tax_id}: {style.region.code}{style.rng.randrange(10**8, 10**10)}")
    if extra and rng.random() < 0.5:
        extra = [" | ".join(extra)] if rng.random() < 0.3 else [" ".join(extra[:2]), *extra[2:]]
    print_lines(canvas, extra, small, x, align, (right - left) * 0.6, style.spacing)
    return max(canvas.y, top), first_baseline


def draw_invoice(style: Style, purchase_order: bool = False) -> Canvas:
    rng, region = style.rng, style.region
    canvas = new_page(style)
    left, right = canvas.margin, canvas.width - canvas.margin
    span = right - left
    body = style.font()
    bold = style.font(bold=True)
    company = style.t(
        my_company(rng) if region.code == "MY" and rng.random() < 0.5 else style.fake.company()
    )

    # Letterhead on one side, the title on the other (or a centred letterhead above the title).
    header = rng.choice(["left", "left", "right", "center"])
    top = canvas.y
    bottom, company_baseline = letterhead(canvas, style, company, header)
    title = style.label("po_title" if purchase_order else "invoice_title")
    title_font = style.font(rng.uniform(1.6, 2.6), bold=True)
    if header == "center":
        canvas.gap(style.size)
        canvas.row([(title, canvas.width / 2, "center")], title_font, 1.2)
    else:
        title_x, title_align = (right, "right") if header == "left" else (left, "left")
        # The title's baseline stays above the company's first row, so that reading order
        # (top to bottom by baseline) does not put the title inside the name or the address.
        ascent = title_font.getmetrics()[0]
        title_top = min(top, company_baseline - 1 - ascent)
        column(canvas, [(title, title_font)], title_x, title_align, 1.2, title_top)
    canvas.y = max(canvas.y, bottom) + style.size * rng.uniform(1.0, 2.5)

    # Who it is for, beside the numbers and dates.
    block_top = canvas.y
    to_key = "vendor" if purchase_order else "bill_to"
    party = [style.t(style.fake.company() if rng.random() < 0.6 else style.fake.name())]
    party += [style.t(line) for line in street_address(rng, style.fake, region)]
    left_rows = [(f"{style.label(to_key)}:", bold)] + [(line, body) for line in party]
    left_bottom = column(canvas, left_rows, left, "left", style.spacing, block_top)

    number = document_number(rng)
    date = style.printed_date()
    meta = [
        (style.label("po_no" if purchase_order else "invoice_no"), number),
        (
            style.t(rng.choice(["Date", "Order Date", "PO Date"]))
            if purchase_order
            else style.label("date"),
            date,
        ),
    ]
    if not purchase_order:
        style.record("invoice_number", number)
    style.record("date", date)
    days = rng.choice([7, 14, 30, 45, 60])
    if rng.random() < 0.6:
        meta.append(
            (style.label("due_date"), style.printed_date(style.date + dt.timedelta(days=days)))
        )
    if rng.random() < 0.4:
        meta.append((style.label("customer_no"), f"{rng.randrange(10**3, 10**7)}"))
    if rng.random() < 0.3:
        meta.append(
            (
                style.label("terms"),
                rng.choice([f"Net {days}", f"{days} days", "COD", "Due on receipt"]),
            )
        )
    show_code = rng.random() < 0.25
    if show_code:
        meta.append(("Currency", region.currency_code))
    rng.shuffle(meta)
    value_x = right
    label_x = right - span * rng.uniform(0.2, 0.28)
    saved = canvas.y
    canvas.y = block_top
    for name, value in meta:
        canvas.row([(f"{name}:", label_x, "right"), (value, value_x, "right")], body, style.spacing)
    canvas.y = max(canvas.y, left_bottom, saved) + style.size * rng.uniform(1.0, 2.0)

    # Line items.
    pool = SERVICES[region.language] + (
        [style.fake.catch_phrase() for _ in range(6)] if region.language == "en" else []
    )
    items = line_items(style, pool, rng.randint(1, 9), (500, 250000))
    subtotal = items_table(canvas, style, items)

    # Totals on the right.
    rate = rng.choice([r for r in region.tax_rates if r] or [10.0])
    tax_name = rng.choice(region.tax_names)
    tax = round(subtotal * rate / 100)
    total = subtotal + tax
    label_x = right - span * rng.uniform(0.2, 0.3)
    with_mark = rng.random() < 0.5
    rows = [
        (style.label("subtotal"), subtotal, body),
        (style.t(f"{tax_name} {rate:g}%"), tax, body),
    ]
    rows.append(
        (
            style.label("total") if rng.random() < 0.6 else style.label("balance_due"),
            total,
            style.font(rng.uniform(1.0, 1.3), bold=True),
        )
    )
    for name, cents, font in rows:
        if font is not body and rng.random() < 0.3:
            canvas.hrule(label_x - span * 0.15, right, style=rng.choice(["solid", "double"]))
        amount = style.amount(cents, with_mark)
        name = f"{name}:" if rng.random() < 0.3 else name
        # Keep the label clear of a wide amount by moving it left as far as needed.
        x = min(label_x, right - font.getlength(amount) - 2 * font.getlength(" "))
        canvas.row([(name, x, "right"), (amount, right, "right")], font, style.spacing)
    style.record("tax", style.number(tax))
    style.record("total", style.number(total))
    if show_code:
        style.record("currency", region.currency_code)
    elif style.money.mark and mark_printed(canvas, style.money.mark):
        style.record("currency", style.money.mark)

    # Small print.
    canvas.gap(style.size * 1.5)
    small = style.font(rng.uniform(0.8, 0.95))
    notes = []
    if rng.random() < 0.7:
        notes.append(label(rng, region.language, "payment_note").format(days=days))
    if rng.random() < 0.5:
        iban = f"{region.code}{rng.randrange(10, 99)} {' '.join(f'{rng.randrange(10**4):04d}' for _ in range(4))}"
        notes.append(f"{label(rng, region.language, 'bank')}: {style.fake.company()} {iban}")
    print_lines(canvas, [style.t(n) for n in notes], small, left, "left", span, style.spacing)
    if rng.random() < 0.5 and canvas.y < canvas.height - canvas.margin - style.size * 2:
        canvas.y = canvas.height - canvas.margin - style.size * 1.5
        canvas.row([(style.label("page"), canvas.width / 2, "center")], small, 1.2)
    return canvas


def items_table(canvas: Canvas, style: Style, items: list[LineItem]) -> int:
    """A table with a header; ruled, boxed, banded or plain. Returns the sum of the amounts."""
    rng = style.rng
    left, right = canvas.margin, canvas.width - canvas.margin
    span = right - left
    body = style.font()
    head = style.font(bold=rng.random() < 0.7)
    ruling = rng.choice(["grid", "band", "rules", "plain"])
    numbered = rng.random() < 0.4
    # Right edges of the number columns, from the right: amount, unit price, quantity.
    amount_x = right - 6
    price_x = amount_x - span * rng.uniform(0.16, 0.2)
    qty_x = price_x - span * rng.uniform(0.14, 0.18)
    desc_x = left + 6 + (span * 0.07 if numbered else 0)
    desc_width = qty_x - desc_x - span * 0.1
    pad = 5
    header = [
        (style.label("description"), desc_x, "left"),
        (style.label("qty"), qty_x, "right"),
        (style.label("price"), price_x, "right"),
        (style.label("amount"), amount_x, "right"),
    ]
    if numbered:
        header.append(("#" if rng.random() < 0.5 else "No.", left + 6, "left"))
    if not canvas.fits(header, head):
        short = ["Item", "Qty", "Price", "Amount", "#"]
        header = [
            (style.t(text), x, align) for text, (_, x, align) in zip(short, header, strict=False)
        ]
    widest = {x: 0.0 for _, x, _ in header}  # per column, to put vertical rules clear of the text
    row_tops = [canvas.y]
    canvas.y += pad
    if ruling == "band":
        h_ascent, h_descent = head.getmetrics()
        canvas.rect(
            (left, canvas.y - pad, right, canvas.y + (h_ascent + h_descent) * style.spacing + pad),
            outline=0,
            fill=rng.choice([20, 30, 45]),
        )
    canvas.row(header, head, style.spacing)
    for text, x, _ in header:
        widest[x] = max(widest[x], head.getlength(text))
    canvas.y += pad
    row_tops.append(canvas.y)
    for i, item in enumerate(items, 1):
        canvas.y += pad
        lines = canvas.wrap(item.description, body, desc_width)
        cells = [
            (lines[0], desc_x, "left"),
            (str(item.quantity), qty_x, "right"),
            (style.amount(item.unit_cents), price_x, "right"),
            (style.amount(item.amount_cents), amount_x, "right"),
        ]
        if numbered:
            cells.append((str(i), left + 6, "left"))
        canvas.row(cells, body, style.spacing)
        for text, x, _ in cells:
            widest[x] = max(widest[x], body.getlength(text))
        for rest in lines[1:]:
            canvas.row([(rest, desc_x, "left")], body, style.spacing)
        canvas.y += pad
        row_tops.append(canvas.y)
    # A vertical rule goes left of each number column, if it clears the column before it.
    separators = [x - widest[x] - 6 for x in (qty_x, price_x, amount_x)]
    clear = separators[0] > desc_x + widest[desc_x] + 4 and all(
        separators[i + 1] > [qty_x, price_x][i] + 2 for i in range(2)
    )
    if ruling == "grid" and clear:
        for y in row_tops:
            canvas.hrule(left, right, y - 1, 1)
        if numbered:
            separators.append(desc_x - 5)
        for x in [left, *separators, right - 1]:
            canvas.rect((x, row_tops[0] - 1, x + 1, row_tops[-1]), outline=0, fill=255)
    elif ruling != "plain":
        canvas.hrule(left, right, row_tops[1] - 1, 1)
        canvas.hrule(left, right, row_tops[-1] - 1, 1)
    canvas.y += style.size
    return sum(item.amount_cents for item in items)
