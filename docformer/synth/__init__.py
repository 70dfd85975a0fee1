"""Synthetic documents with exact ground truth: receipts, invoices, purchase orders, forms,
tables and letters, printed in the styles of several countries and scanned badly on purpose.

    from docformer.synth import generate, render_document
    generate("receipt", n=1000, seed=0, out_dir="data/synth")
"""

from docformer.synth.generator import KINDS, SynthDocument, generate, render_document

__all__ = ["KINDS", "SynthDocument", "generate", "render_document"]
