"""The Gradio UI: one module per tab, the page root, i18n strings and formatting helpers."""
