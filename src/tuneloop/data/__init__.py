"""Instruction data: load, validate, curate, split and render records."""
