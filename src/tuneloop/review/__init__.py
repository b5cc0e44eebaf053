"""Human review of a loop round before it is trained on (`tuneloop review`).

- `items`   the round's files → items: failed cases (cases.jsonl + targets.json's case_chunks)
            and generated rows (synth train.jsonl); bad input stops with file:line;
- `store`   the review's sqlite file (named migrations via index.migrate; one save per item and
            reviewer, a second save replaces the first and the first is kept);
- `app`     the web page reviewers use; `server` checks the bind and runs it;
- `export`  saved reviews → training rows with provenance; `load_reviewed` for `iterate --reviewed`.
"""

from tuneloop.review.export import load_reviewed

__all__ = ["load_reviewed"]
