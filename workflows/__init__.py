"""Lvyue's engine layer: SpiffWorkflow adapter (``engine``), transactional services and the CLI."""
