"""Cairn's benchmarks (DESIGN section 7); not part of the test suite. See benchmarks/README.md."""
