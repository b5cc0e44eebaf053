"""OpenAI-compatible serving: app factory, batching engine, bind-safety checks."""
