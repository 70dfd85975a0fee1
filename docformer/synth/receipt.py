"""Till receipts: narrow, long, mostly centred headers, items, a totals block, payment, small print.

The shapes follow what scanned receipts show: the shop's name (sometimes wrapped over two rows),
a registration number and a tax id, a multi-line address, a title such as "TAX INVOICE", a
block of numbers and dates, line items printed one of four ways, then subtotal / tax / rounding /
total / cash / change, maybe a GST summary, and thanks at the bottom.
"""

from __future__ import annotations

import re

from docformer.synth.businesses import phone, shop_name, street_address
from docformer.synth.canvas import Canvas
from docformer.synth.malaysia import my_company, my_registration, my_tax_id
from docformer.synth.parts import (
    LineItem,
    barcode_bars,
    document_number,
    grid_cells,
    line_items,
    logo,
    print_lines,
)
from docformer.synth.regions import format_time
from docformer.synth.style import Style
from docformer.synth.vocabulary import LABELS, label, shop_items


def draw_receipt(style: Style) -> Canvas:
    rng, region = style.rng, style.region
    width = rng.randint(460, 760)
    margin = rng.randint(12, 40)
    canvas = Canvas(width, 4200, margin)
    left, right, middle = margin, width - margin, width / 2
    body = style.font()
    bold = style.font(bold=True)
    spacing = style.spacing
    align = "center" if rng.random() < 0.78 else "left"
    anchor = middle if align == "center" else left

    company = style.t(
        my_company(rng) if region.code == "MY" else shop_name(rng, style.fake, region)
    )
    if rng.random() < 0.3:
        size = rng.randint(48, 90)
        logo(
            canvas, style, anchor - size / 2 if align == "center" else left, canvas.y, size, company
        )
        canvas.gap(size + 8)
    if rng.random() < 0.08:  # the owner's name printed above the shop's, as some tills do
        canvas.row([(style.t(style.fake.name()), anchor, align)], body, spacing)
    head = style.font(rng.uniform(1.0, 1.7), bold=rng.random() < 0.75)
    style.record(
        "company",
        " ".join(print_lines(canvas, [company], head, anchor, align, right - left, spacing)),
    )
    small = style.font(rng.uniform(0.8, 1.0))
    if region.code == "MY" and rng.random() < 0.7:
        canvas.row([(style.t(my_registration(rng)), anchor, align)], small, spacing)
    address = [style.t(line) for line in street_address(rng, style.fake, region)]
    style.record(
        "address",
        " ".join(print_lines(canvas, address, small, anchor, align, right - left, spacing)),
    )
    contact = []
    if rng.random() < 0.6:
        contact.append(f"{style.label('tel')}: {phone(rng, style.fake, region)}")
    if rng.random() < 0.25:
        contact.append(
            f"FAX: {phone(rng, style.fake, region)}"
            if region.code == "MY"
            else f"{style.label('email')}: {style.fake.company_email()}"
        )
    if contact:
        print_lines(
            canvas,
            [" ".join(contact)] if rng.random() < 0.5 else contact,
            small,
            anchor,
            align,
            right - left,
            spacing,
        )
    if region.code == "MY" and rng.random() < 0.6:
        canvas.row([(style.t(my_tax_id(rng)), anchor, align)], small, spacing)
    elif region.code in {"GB", "DE", "FR"} and rng.random() < 0.5:
        canvas.row(
            [
                (
                    f"{'VAT' if region.code == 'GB' else 'USt-IdNr.' if region.code == 'DE' else 'TVA'}: {region.code}{rng.randrange(10**8, 10**9)}",
                    anchor,
                    align,
                )
            ],
            small,
            spacing,
        )

    separator(canvas, style, left, right)
    if rng.random() < 0.7:
        canvas.row(
            [
                (
                    style.label("receipt_title"),
                    middle if rng.random() < 0.8 else left,
                    "center" if rng.random() < 0.8 else "left",
                )
            ],
            bold,
            spacing,
        )
    meta_block(canvas, style, left, right)
    separator(canvas, style, left, right)

    names = shop_items(region.code, region.language, rng)
    count = min(len(names), rng.choice([1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 9, 12]))
    price_range = (50, 3000) if region.code == "MY" else (99, 4500)
    items = line_items(style, names, count, price_range)
    items_block(canvas, style, items, left, right)
    separator(canvas, style, left, right)
    totals_block(canvas, style, items, left, right)

    if rng.random() < 0.5:
        canvas.gap(style.size * 0.6)
        for line in rng.sample(labels_of(style, "thanks"), rng.randint(1, 3)):
            print_lines(canvas, [style.t(line)], small, middle, "center", right - left, spacing)
    if rng.random() < 0.2:
        canvas.gap(6)
        bar_width = min(right - left, rng.uniform(160, 320))
        canvas.barcode(
            middle - bar_width / 2, canvas.y, bar_width, rng.uniform(30, 60), barcode_bars(rng)
        )
        canvas.gap(70)
    elif rng.random() < 0.08:
        side = rng.uniform(70, 120)
        canvas.grid_code(middle - side / 2, canvas.y + 4, side, grid_cells(rng))
        canvas.gap(side + 12)
    canvas.crop_height(margin)
    return canvas


def labels_of(style: Style, key: str) -> list[str]:
    return list(LABELS.get(style.region.language, LABELS["en"]).get(key) or LABELS["en"][key])


def separator(canvas: Canvas, style: Style, left: float, right: float) -> None:
    rng = style.rng
    if rng.random() < 0.75:
        canvas.hrule(
            left, right, style=rng.choice(["dashed", "dashed", "solid", "dotted", "double"])
        )
    else:
        canvas.gap(style.size * 0.5)


def meta_block(canvas: Canvas, style: Style, left: float, right: float) -> None:
    """Receipt number, date and time, cashier: as "Label: value" rows or in a value column."""
    rng = style.rng
    body = style.font()
    date = style.printed_date()
    style.record("date", date)
    time = format_time(rng)
    rows: list[tuple[str, str]] = []
    if rng.random() < 0.8:
        number = document_number(rng)
        name = style.label("receipt_no")
        rows.append((name, number))
        # Only a number the receipt calls an invoice or bill number is an `invoice_number`;
        # receipt, transaction and order numbers are not, and the model must learn the difference.
        if any(key in name.upper() for key in ("INV", "BILL", "CS NO", "RECHNUNG", "FACTURE")):
            style.record("invoice_number", number)
    together = rng.random() < 0.5
    rows.append((style.label("receipt_date"), f"{date} {time}" if together else date))
    if not together and rng.random() < 0.7:
        rows.append((style.label("time"), time))
    if rng.random() < 0.6:
        rows.append(
            (
                style.label("cashier"),
                style.t(
                    rng.choice(
                        [style.fake.first_name(), f"{rng.randrange(1, 99):02d}", "CASHIER", "ADMIN"]
                    )
                ),
            )
        )
    if rng.random() < 0.4:
        rows.append((style.label("terminal"), str(rng.randrange(1, 40))))
    layout = rng.randrange(3)
    column = left + (right - left) * rng.uniform(0.28, 0.42)
    i = 0
    while i < len(rows):
        name, value = rows[i]
        if layout == 2 and i + 1 < len(rows) and rng.random() < 0.6:
            other_name, other_value = rows[i + 1]
            pair = [
                (f"{name}: {value}", left, "left"),
                (f"{other_name}: {other_value}", right, "right"),
            ]
            if canvas.fits(pair, body):
                canvas.row(pair, body, style.spacing)
                i += 2
                continue
        in_column = [(f"{name}", left, "left"), (f": {value}", column, "left")]
        if layout == 1 and canvas.fits(in_column, body):
            canvas.row(in_column, body, style.spacing)
        else:
            canvas.row([(f"{name}: {value}", left, "left")], body, style.spacing)
        i += 1


def items_block(
    canvas: Canvas, style: Style, items: list[LineItem], left: float, right: float
) -> None:
    rng = style.rng
    body = style.font()
    span = right - left
    qty_x, price_x = left + span * rng.uniform(0.5, 0.6), left + span * rng.uniform(0.7, 0.78)
    layout = rng.choice(["one-row", "two-row", "two-row", "code-two-row", "qty-first"])
    if rng.random() < 0.6:
        header = [
            (style.label("description"), left, "left"),
            (style.label("amount"), right, "right"),
        ]
        if layout in {"one-row", "two-row", "code-two-row"}:
            header += [
                (style.label("qty"), qty_x, "right"),
                (style.label("price"), price_x, "right"),
            ]
        head = style.font(bold=rng.random() < 0.5)
        if not canvas.fits(header, head):  # long labels on a narrow roll: the short ones
            header = [
                (style.t(text), x, align)
                for text, (_, x, align) in zip(["Item", "Amt", "Qty", "U/P"], header, strict=False)
            ]
        if not canvas.fits(header, head):
            header = header[:2]
        canvas.row(header, head, style.spacing)
        if rng.random() < 0.5:
            canvas.hrule(left, right, style=rng.choice(["dashed", "solid"]))
    for item in items:
        amount = style.amount(item.amount_cents)
        unit = style.amount(item.unit_cents)
        if layout == "one-row":
            lines = canvas.wrap(item.description, body, qty_x - left - body.getlength("000 "))
            canvas.row(
                [
                    (lines[0], left, "left"),
                    (str(item.quantity), qty_x, "right"),
                    (unit, price_x, "right"),
                    (amount, right, "right"),
                ],
                body,
                style.spacing,
            )
            for rest in lines[1:]:
                canvas.row([(rest, left, "left")], body, style.spacing)
        elif layout == "qty-first":
            lines = canvas.wrap(
                f"{item.quantity} {item.description}", body, span - body.getlength("00000.00  ")
            )
            canvas.row([(lines[0], left, "left"), (amount, right, "right")], body, style.spacing)
            for rest in lines[1:]:
                canvas.row([(rest, left + body.getlength("00 "), "left")], body, style.spacing)
        else:
            if layout == "code-two-row":
                canvas.row([(item.code, left, "left")], body, style.spacing)
            print_lines(canvas, [item.description], body, left, "left", span, style.spacing)
            quantity = f"{item.quantity}" if rng.random() < 0.5 else f"{item.quantity} X"
            canvas.row(
                [
                    (quantity, left + span * 0.15, "right"),
                    (unit, price_x, "right"),
                    (amount, right, "right"),
                ],
                body,
                style.spacing,
            )


def totals_block(
    canvas: Canvas, style: Style, items: list[LineItem], left: float, right: float
) -> None:
    rng, region = style.rng, style.region
    body = style.font()
    label_x, label_align = (
        (left, "left")
        if rng.random() < 0.5
        else (left + (right - left) * rng.uniform(0.55, 0.7), "right")
    )
    mark_in_label = rng.random() < 0.35  # "TOTAL (RM):" rather than "RM 9.00"
    colon = ":" if rng.random() < 0.5 else ""

    def money_row(name: str, cents: int, font=body, mark: bool = False) -> str:
        amount = style.amount(cents, with_mark=mark and not mark_in_label)
        if mark and mark_in_label and style.money.mark:
            name = f"{name} ({style.money.mark})"
        for cells in (
            [(f"{name}{colon}", label_x, label_align), (amount, right, "right")],
            [(f"{name}{colon}", left, "left"), (amount, right, "right")],
        ):
            if canvas.fits(cells, font):
                canvas.row(cells, font, style.spacing)
                return amount
        # Too long for one row of this roll: the label, then the amount below it.
        print_lines(canvas, [f"{name}{colon}"], font, left, "left", right - left, style.spacing)
        canvas.row([(amount, right, "right")], font, style.spacing)
        return amount

    subtotal = sum(item.amount_cents for item in items)
    if rng.random() < 0.5 or len(items) > 1:
        money_row(style.label("subtotal"), subtotal)
    if rng.random() < 0.1:
        discount = round(subtotal * rng.choice([0.05, 0.1, 0.2]))
        money_row(style.label("discount"), -discount)
        subtotal -= discount
    tax_name = rng.choice(region.tax_names)
    rate = rng.choice(region.tax_rates)
    if region.prices_include_tax:
        tax = round(subtotal * rate / (100 + rate))
        before_rounding = subtotal
    else:
        tax = round(subtotal * rate / 100)
        before_rounding = subtotal + tax
    rate_text = f"{rate:g}%"
    show_tax = rng.random() < 0.75
    if show_tax and not region.prices_include_tax:
        money_row(style.t(f"{tax_name} {rate_text}" if rng.random() < 0.7 else tax_name), tax)
        style.record("tax", style.number(tax))
    total = before_rounding
    if region.cash_rounding > 1 and rng.random() < 0.75:
        total = region.cash_rounding * round(before_rounding / region.cash_rounding)
        money_row(style.label("rounding"), total - before_rounding)
    big = style.font(rng.uniform(1.0, 1.4), bold=rng.random() < 0.7)
    total_label = style.label(
        "total_rounded" if total != before_rounding and rng.random() < 0.5 else "total"
    )
    money_row(total_label, total, big, mark=rng.random() < 0.6)
    style.record("total", style.number(total))
    if show_tax and region.prices_include_tax:
        text = label(rng, region.language, "tax_incl").format(tax=f"{tax_name} {rate_text}")
        money_row(style.t(text), tax)
        style.record("tax", style.number(tax))
    if rng.random() < 0.85:
        if rng.random() < 0.7:
            tendered = (
                next(
                    n
                    for n in (500, 1000, 2000, 5000, 10000, 20000, 50000, 10**6, 10**9)
                    if n >= total
                )
                if rng.random() < 0.7
                else total
            )
            money_row(style.label("cash"), tendered)
            money_row(style.label("change"), tendered - total)
        else:
            money_row(style.label("card"), total)
            canvas.row(
                [(f"**** **** **** {rng.randrange(10**4):04d}", label_x, label_align)],
                body,
                style.spacing,
            )
    if region.code == "MY" and show_tax and rng.random() < 0.5:
        gst_summary(canvas, style, tax_name, rate, total - tax, tax, left, right)
    if style.money.mark and mark_printed(canvas, style.money.mark):
        style.record("currency", style.money.mark)


def gst_summary(
    canvas: Canvas,
    style: Style,
    tax_name: str,
    rate: float,
    net: int,
    tax: int,
    left: float,
    right: float,
) -> None:
    body = style.font()
    span = right - left
    mark = style.money.mark or "RM"
    canvas.gap(style.size * 0.4)
    canvas.row(
        [
            (style.t(f"{tax_name} Summary"), left, "left"),
            (style.t(f"Amount({mark})"), left + span * 0.72, "right"),
            (style.t(f"Tax({mark})"), right, "right"),
        ],
        body,
        style.spacing,
    )
    code = "SR" if rate else "ZR"
    canvas.row(
        [
            (f"{code} @ {rate:g}%", left, "left"),
            (style.amount(net), left + span * 0.72, "right"),
            (style.amount(tax), right, "right"),
        ],
        body,
        style.spacing,
    )


def mark_printed(canvas: Canvas, mark: str) -> bool:
    """Whether the currency mark is on the page ("RM", "RM9.00", "(RM):", "Amount(RM)", "9,00 €")."""
    pattern = re.compile(rf"(?:^|\(){re.escape(mark)}(?:$|\)|\d|-)")
    return any(pattern.search(word) for segment in canvas.segments for word, _ in segment.words)
