"""The UI's pages, one module per kind of page."""
