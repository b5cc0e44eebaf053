"""Evaluation: test suites and checks, held-out loss, multiple-choice loglik, compare."""
