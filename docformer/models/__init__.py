"""Models of the docformer library, one folder per model (Hugging Face layout)."""
