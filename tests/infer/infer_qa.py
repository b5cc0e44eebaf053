"""Questions the tiny generation-test model is trained to answer exactly (then stop).

A uniquely named module (not conftest) so test files can import it when the whole suite runs.
"""

QA = [
    ("What is the capital of France?", "Paris."),
    ("List three colours.", "red, green, blue"),
    ("Translate to French: good morning.", "Bonjour."),
    ("hi", "The sea is wide and blue and deep."),
]
