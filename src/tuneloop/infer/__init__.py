"""Inference: batched generation, streaming, and the chat REPL (all with the training template)."""
