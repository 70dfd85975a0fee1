"""Office paper other than invoices: forms of label-value pairs, tabular reports, and letters.

They matter less for the fields than receipts and invoices do, but they teach the model layout
in general: values to the right of or below their labels, boxes and check marks, long tables,
paragraphs of running text.
"""

from __future__ import annotations

import datetime as dt

from docformer.synth.businesses import phone, street_address
from docformer.synth.canvas import Canvas
from docformer.synth.invoice import column, letterhead, new_page
from docformer.synth.malaysia import my_company
from docformer.synth.parts import document_number, print_lines
from docformer.synth.style import Style
from docformer.synth.vocabulary import LABELS

FORM_TITLES = [
    "VENDOR REGISTRATION FORM",
    "CREDIT APPLICATION",
    "SUPPLIER INFORMATION FORM",
    "EXPENSE CLAIM FORM",
    "CUSTOMER DETAILS FORM",
    "DELIVERY NOTE",
    "REQUEST FOR QUOTATION",
    "SERVICE REPORT",
    "ACCOUNT OPENING FORM",
]
CLOSINGS = {
    "en": ["Yours sincerely,", "Kind regards,", "Yours faithfully,", "Best regards,"],
    "de": ["Mit freundlichen Grüßen", "Freundliche Grüße"],
    "fr": ["Cordialement,", "Veuillez agréer nos salutations distinguées."],
}
GREETINGS = {
    "en": "Dear {name},",
    "de": "Sehr geehrte Damen und Herren,",
    "fr": "Madame, Monsieur,",
}


def company_name(style: Style) -> str:
    if style.region.code == "MY" and style.rng.random() < 0.5:
        return style.t(my_company(style.rng))
    return style.t(style.fake.company())


def draw_form(style: Style) -> Canvas:
    rng, fake, region = style.rng, style.fake, style.region
    canvas = new_page(style)
    left, right = canvas.margin, canvas.width - canvas.margin
    span = right - left
    body = style.font()
    label_font = style.font(bold=rng.random() < 0.5)
    canvas.row(
        [
            (
                style.t(rng.choice(FORM_TITLES)),
                canvas.width / 2 if rng.random() < 0.6 else left,
                "center" if rng.random() < 0.6 else "left",
            )
        ],
        style.font(rng.uniform(1.4, 2.0), bold=True),
        1.3,
    )
    if rng.random() < 0.6:
        canvas.row([(f"Form No. {document_number(rng)}", right, "right")], style.font(0.85), 1.3)
    canvas.gap(style.size)

    company = company_name(style)
    address = [style.t(line) for line in street_address(rng, fake, region)]
    date = style.printed_date()
    pairs: list[tuple[str, list[str], str | None]] = [
        ("Company Name", [company], "company"),
        ("Address", address, "address"),
        ("Contact Person", [style.t(fake.name())], None),
        ("Telephone", [phone(rng, fake, region)], None),
        ("Email", [fake.company_email()], None),
        ("Registration No", [f"{rng.randrange(10**5, 10**8)}-{rng.choice('ABKTWX')}"], None),
        ("Date", [date], "date"),
    ]
    if rng.random() < 0.5:
        pairs.insert(
            rng.randrange(len(pairs)), ("Bank Account", [f"{rng.randrange(10**9, 10**11)}"], None)
        )
    pairs = [p for p in pairs if p[2] or rng.random() < 0.8]
    if rng.random() < 0.2:  # some forms leave the company out entirely
        pairs = [p for p in pairs if p[2] != "company"]
    mode = rng.choice(["inline", "column", "boxed", "below"])
    value_x = left + span * rng.uniform(0.28, 0.36)
    colon = ":" if rng.random() < 0.7 else ""
    for name, values, field in pairs:
        name = style.t(name)
        canvas.gap(style.size * (0.3 if mode != "below" else 0.6))
        top = canvas.y
        if mode == "inline":
            printed = [f"{name}{colon} {values[0]}"]
            canvas.row([(printed[0], left, "left")], body, style.spacing)
            for value in values[1:]:
                canvas.row(
                    [(value, left + body.getlength(f"{name}{colon} "), "left")], body, style.spacing
                )
            printed = values
        elif mode == "below":
            canvas.row([(f"{name}{colon}", left, "left")], label_font, style.spacing)
            printed = print_lines(canvas, values, body, left + 10, "left", span - 10, style.spacing)
            canvas.hrule(left, right, style="dotted")
        else:
            # Label and first value row share a baseline, so the label is read first.
            baseline = top + max(label_font.getmetrics()[0], body.getmetrics()[0])
            canvas.text(f"{name}{colon}", label_font, left, baseline)
            canvas.y = baseline - body.getmetrics()[0]
            printed = print_lines(
                canvas, values, body, value_x + 6, "left", right - value_x - 12, style.spacing
            )
            if mode == "boxed":
                canvas.rect((value_x, top - 4, right, canvas.y + 3))
                canvas.gap(8)
            else:
                canvas.hrule(value_x, right, canvas.y + 1, 1, "dotted")
                canvas.gap(5)
        if field:
            style.record(field, " ".join(printed))

    canvas.gap(style.size)
    options = rng.sample(
        [
            "Sole proprietor",
            "Partnership",
            "Private limited",
            "Public company",
            "Cash",
            "Cheque",
            "Bank transfer",
            "Yes",
            "No",
        ],
        3,
    )
    x = left
    baseline_top = canvas.y
    box = style.size
    for i, option in enumerate(options):
        canvas.rect((x, baseline_top + 2, x + box, baseline_top + 2 + box), outline=2)
        if i == 0 or rng.random() < 0.3:
            canvas.draw.line(
                [(x + 3, baseline_top + 5), (x + box - 3, baseline_top + box - 1)],
                fill=255,
                width=2,
            )
            canvas.draw.line(
                [(x + box - 3, baseline_top + 5), (x + 3, baseline_top + box - 1)],
                fill=255,
                width=2,
            )
        canvas.y = baseline_top
        _, end = canvas.text(
            style.t(option), body, x + box + 8, baseline_top + body.getmetrics()[0] + 2
        )
        x = end + 30
    canvas.y = baseline_top + box * 2.5
    signature(canvas, style, left, rng.uniform(200, 280))
    return canvas


def signature(canvas: Canvas, style: Style, x: float, width: float) -> None:
    rng = style.rng
    top = canvas.y
    points, px = [], x + 10
    while px < x + width - 20:
        points.append((px, top + rng.uniform(10, 40)))
        px += rng.uniform(8, 22)
    if len(points) > 1:
        canvas.scribble(points, width=2)
    canvas.y = top + 50
    canvas.hrule(x, x + width, style="solid")
    canvas.row(
        [
            (
                style.t(
                    rng.choice(["Signature", "Authorised Signature", "Signed", "Name & Signature"])
                ),
                x,
                "left",
            )
        ],
        style.font(0.85),
        1.2,
    )


def draw_table(style: Style) -> Canvas:
    rng, region = style.rng, style.region
    canvas = new_page(style)
    left, right = canvas.margin, canvas.width - canvas.margin
    span = right - left
    letterhead(canvas, style, company_name(style), rng.choice(["left", "center"]))
    canvas.gap(style.size)
    title = style.t(
        rng.choice(
            [
                "STATEMENT OF ACCOUNT",
                "PRICE LIST",
                "DELIVERY ORDER",
                "STOCK REPORT",
                "PAYMENT SCHEDULE",
                "SALES SUMMARY",
            ]
        )
    )
    canvas.row([(title, left, "left")], style.font(1.4, bold=True), 1.3)
    date = style.printed_date()
    canvas.row(
        [
            (
                f"{style.t(rng.choice(['Date', 'Statement Date', 'As at', 'Report Date']))}: {date}",
                left,
                "left",
            )
        ],
        style.font(),
        style.spacing,
    )
    style.record("date", date)
    canvas.gap(style.size)

    body = style.font(rng.uniform(0.85, 1.0))
    head = style.font(rng.uniform(0.85, 1.0), bold=True)
    columns = [
        ("Date", "date", "left"),
        ("Reference", "ref", "left"),
        ("Description", "text", "left"),
        ("Amount", "money", "right"),
    ]
    if rng.random() < 0.5:
        columns.insert(3, ("Qty", "int", "right"))
    if rng.random() < 0.4:
        columns.append(("Balance", "balance", "right"))
    share = {"date": 0.15, "ref": 0.14, "text": 0.34, "int": 0.08, "money": 0.15, "balance": 0.15}
    scale = span / sum(share[c[1]] for c in columns)
    edges, x = [], left
    for _, kind, _ in columns:
        edges.append((x, x + share[kind] * scale))
        x += share[kind] * scale
    ascent, descent = body.getmetrics()
    row_height = max(ascent + descent + 10, (ascent + descent) * style.spacing + 6)
    max_rows = int((canvas.height - canvas.margin - canvas.y - 4 * row_height) // row_height) - 1
    rows = max(3, min(max_rows, rng.randint(6, 30)))
    grid = rng.random() < 0.6
    top = canvas.y
    names = [(style.t(name), kind, align) for name, kind, align in columns]

    def cell_x(i: int, align: str) -> float:
        x0, x1 = edges[i]
        return x0 + 5 if align == "left" else x1 - 5

    def print_row(texts: list[str], font) -> None:
        y0 = canvas.y
        canvas.y += 4
        canvas.row(
            [(text, cell_x(i, names[i][2]), names[i][2]) for i, text in enumerate(texts)],
            font,
            style.spacing,
        )
        canvas.y = y0 + row_height
        if grid:
            canvas.hrule(left, right, canvas.y - 1, 1)

    print_row([n for n, _, _ in names], head)
    if not grid:
        canvas.hrule(left, right, canvas.y - 2, 1)
    day = style.date - dt.timedelta(days=rows * 3)
    balance = 0
    total = 0
    for _ in range(rows):
        day += dt.timedelta(days=rng.randint(0, 5))
        cents = round(500 * (1000 ** rng.random()))
        total += cents
        balance += cents
        texts = []
        for i, (_, kind, _) in enumerate(names):
            width = edges[i][1] - edges[i][0] - 10
            if kind == "date":
                texts.append(
                    style.printed_date(day)
                    if body.getlength(style.printed_date(day)) < width
                    else f"{day.day:02d}/{day.month:02d}"
                )
            elif kind == "ref":
                texts.append(
                    f"{rng.choice(['INV', 'DO', 'PO', 'CN', 'RC'])}{rng.randrange(10**4, 10**6)}"
                )
            elif kind == "text":
                words = (
                    style.fake.catch_phrase()
                    if region.language == "en"
                    else rng.choice(LABELS[region.language]["description"])
                    + " "
                    + style.fake.word()
                )
                texts.append((canvas.wrap(style.t(words), body, width) or ["-"])[0])
            elif kind == "int":
                texts.append(str(rng.randint(1, 99)))
            elif kind == "money":
                texts.append(style.amount(cents))
            else:
                texts.append(style.amount(balance))
        print_row(texts, body)
    if grid:
        canvas.hrule(left, right, top - 1, 1)
        for x0, _ in edges[1:]:
            canvas.rect((x0, top - 1, x0 + 1, canvas.y - 1), outline=0, fill=255)
        canvas.rect((left, top - 1, left + 1, canvas.y - 1), outline=0, fill=255)
        canvas.rect((right - 1, top - 1, right, canvas.y - 1), outline=0, fill=255)
    if rng.random() < 0.7:
        money_col = next(i for i, (_, kind, _) in enumerate(names) if kind == "money")
        canvas.gap(6)
        amount = style.amount(total, rng.random() < 0.5)
        total_label = style.t(rng.choice(["TOTAL", "Total", "Grand Total", "Total Due"]))
        canvas.row(
            [
                (total_label, cell_x(money_col - 1, "right"), "right"),
                (amount, cell_x(money_col, "right"), "right"),
            ],
            head,
            style.spacing,
        )
        style.record("total", style.number(total))
    return canvas


def draw_letter(style: Style) -> Canvas:
    rng, fake, region = style.rng, style.fake, style.region
    canvas = new_page(style)
    left, right = canvas.margin, canvas.width - canvas.margin
    span = right - left
    letterhead(canvas, style, company_name(style), rng.choice(["left", "center", "right"]))
    if rng.random() < 0.6:
        canvas.hrule(left, right, style=rng.choice(["solid", "double"]))
    canvas.gap(style.size * rng.uniform(1, 2.5))
    body = style.font()
    date = style.printed_date()
    style.record("date", date)
    recipient = [fake.name(), *(street_address(rng, fake, region))]
    top = canvas.y
    if rng.random() < 0.5:
        canvas.row([(date, right, "right")], body, style.spacing)
        canvas.y = column(
            canvas,
            [(line, body) for line in recipient],
            left,
            "left",
            style.spacing,
            canvas.y + style.size,
        )
    else:
        canvas.y = column(
            canvas, [(line, body) for line in recipient], left, "left", style.spacing, top
        )
        canvas.gap(style.size)
        canvas.row([(date, left, "left")], body, style.spacing)
    canvas.gap(style.size)
    if rng.random() < 0.6:
        canvas.row(
            [
                (
                    f"Re: {fake.catch_phrase() if region.language == 'en' else fake.sentence(nb_words=5).rstrip('.')}",
                    left,
                    "left",
                )
            ],
            style.font(bold=True),
            style.spacing,
        )
        canvas.gap(style.size * 0.5)
    canvas.row(
        [(GREETINGS[region.language].format(name=fake.name()), left, "left")], body, style.spacing
    )
    canvas.gap(style.size * 0.5)
    bottom_limit = canvas.height - canvas.margin - style.size * 9
    for _ in range(rng.randint(2, 5)):
        paragraph = fake.paragraph(nb_sentences=rng.randint(2, 6))
        lines = canvas.wrap(paragraph, body, span)
        if canvas.y + len(lines) * style.size * style.spacing > bottom_limit:
            break
        print_lines(canvas, [paragraph], body, left, "left", span, style.spacing)
        canvas.gap(style.size * 0.6)
    canvas.row([(rng.choice(CLOSINGS[region.language]), left, "left")], body, style.spacing)
    canvas.gap(4)
    signature(canvas, style, left, rng.uniform(180, 260))
    canvas.row([(fake.name(), left, "left")], body, style.spacing)
    if rng.random() < 0.5:
        canvas.row([(fake.job()[:60], left, "left")], body, style.spacing)
    return canvas
