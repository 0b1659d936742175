"""Regenerate the generated docs pages: `python docs/generate.py` (a test checks them)."""

from pathlib import Path

from triggers.settings import reference_markdown

DOCS = Path(__file__).parent

if __name__ == "__main__":
    (DOCS / "configuration.md").write_text(reference_markdown())
