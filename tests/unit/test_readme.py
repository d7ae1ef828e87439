"""The README's plan reference is the schema's, word for word."""

from pathlib import Path

from ccrollout.schemadoc import reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_plan_reference_is_generated_from_the_schema():
    text = README.read_text()
    begin, end = "<!-- plan-reference:begin -->\n", "<!-- plan-reference:end -->"
    embedded = text[text.index(begin) + len(begin):text.index(end)]
    assert embedded == reference(), "run: python -m ccrollout.schemadoc, and paste it into the README"
