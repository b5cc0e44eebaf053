"""The human pairwise arena: blind side-by-side votes, ratings with intervals, preference pairs.

- `store`    the arena's sqlite file (WAL, named append-only migrations shared with the index);
- `prompts`  prompt files and `NAME=SPEC` model arguments;
- `answers`  every (prompt, model) answer generated up front through the backends;
- `ratings`  Bradley-Terry with bootstrap intervals, online Elo, win rates, rater agreement;
- `results`  the votes in a database → the results document (`arena results --json`);
- `export`   decisive votes → preference pairs (`prompt`, `chosen`, `rejected`) for DPO;
- `app`      the FastAPI web app raters use; `server` checks the bind and runs it.
"""
