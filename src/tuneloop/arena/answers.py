"""Every (prompt, model) answer generated before the first battle, so voting never waits.

Answers come from `tuneloop.backends.make_generator` (an in-process model reference or any
OpenAI-compatible endpoint) with the backend's on-disk cache on, and are stored in the arena
database: a restarted arena generates only what is missing, and export reads answers from there.
"""

from __future__ import annotations

from tuneloop.arena.prompts import with_system
from tuneloop.arena.store import ArenaStore
from tuneloop.backends import GenParams, make_generator, parse_spec
from tuneloop.errors import ModelError
from tuneloop.progress import eta_progress

Messages = list[dict[str, str]]
CHUNK = 16  # prompts per backend call: progress moves, a failure loses little


def ensure_answers(store: ArenaStore, prompts: dict[str, Messages], models: dict[str, str],
                   params: GenParams, *, system_prompts: dict[str, str] | None = None,
                   progress: bool = True) -> int:
    """Generate and store the missing answers of every model; return how many were generated.

    A model listed in `system_prompts` answers prompts that have no system turn with that one.
    """
    system_prompts = system_prompts or {}
    todo = {name: store.missing_answers(list(prompts), name) for name in models}
    total = sum(len(ids) for ids in todo.values())
    if total == 0:
        return 0
    with eta_progress(enabled=progress) as bar:
        task = bar.add_task("answers", total=total)
        for name, ids in todo.items():
            if not ids:
                continue
            spec = parse_spec(models[name])
            spec.setdefault("cache", True)
            generator = make_generator(spec)
            bar.update(task, description=f"answers from {name}")
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start:start + CHUNK]
                texts = generator.generate(
                    [with_system(prompts[p], system_prompts.get(name)) for p in chunk], params)
                if len(texts) != len(chunk):
                    raise ModelError(f"{name} returned {len(texts)} answers for {len(chunk)} "
                                     "prompts", where=models[name],
                                     fix="check the backend; each prompt needs one answer")
                store.put_answers(name, dict(zip(chunk, texts)), params.to_dict())
                bar.advance(task, len(chunk))
    return total
