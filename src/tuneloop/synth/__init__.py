"""Synthetic instruction data: Self-Instruct bootstrapping and document-grounded Q/A.

- `self_instruct.run_self_instruct` — seeds → new tasks (filtered, novel by ROUGE-L) → instances;
- `docs.generate_from_chunks` / `docs.run_docs` — documents → chunks → judged question/answer rows;
- `novelty.NoveltyPool` — rouge_score's ROUGE-L decisions, fast;
- `run.SynthRun` — the output directory: resumable appends, stats, manifest.
"""
