"""The docs' examples as tests (README.md and docs/*.md, through Sybil): see tests/docs_examples.py."""

from tests.docs_examples import docs_page, docs_sybil

__all__ = ["docs_page"]  # the fixture every page's blocks share

pytest_collect_file = docs_sybil().pytest()
