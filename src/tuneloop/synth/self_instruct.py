"""Self-Instruct: a few human seed tasks → many machine tasks, filtered for quality and novelty.

One round: `batch` requests, each showing 8 numbered example tasks (6 sampled from the seeds, 2
from tasks generated so far — fewer while there are none) and asking the model to continue the
list. Candidates pass the filters (length, blacklist, punctuation/non-ASCII start, "Write a
program", the last item of a cut-off answer), then the ROUGE-L novelty check against the pool
(seeds + every accepted task, earlier candidates of the same round included). Only as many new
tasks as --target still needs are classified (is it a classification task?) and given
instances: label first for classification tasks (so labels stay balanced), input first
otherwise; the rest are `over_target`, never sent. Invalid instances are dropped, and a task
left with none (or with one input given different outputs) is dropped whole.

Nothing is lost: every dropped candidate, task and instance is a row of rejects.jsonl with its
reason (rows = `rejected_total` + the dropped instances), and the pool holds only accepted
tasks, so a `too_similar` reject names a task in train.jsonl or the seeds.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.backends import Generator, GenParams
from tuneloop.data.jsonl import read_jsonl_objects
from tuneloop.errors import DataError, ModelError, UsageError
from tuneloop.synth import filters, prompts
from tuneloop.synth.novelty import THRESHOLD, NoveltyPool
from tuneloop.synth.run import (
    BudgetSpent,
    OutGuard,
    Requester,
    SynthRun,
    backend_failure,
    open_generator,
    progress_bar,
)
from tuneloop.synth.stats import SynthStats

PROMPTS = ["instructions", "classify", "instances_input_first", "instances_output_first"]
N_SEED_EXAMPLES, N_MACHINE_EXAMPLES = 6, 2
STALL_ROUNDS = 5  # rounds in a row without a new task → stop ("stalled")


@dataclass
class SeedTask:
    """A human-written task: instruction, its (input, output) instances, classification flag."""

    instruction: str
    instances: list[tuple[str, str]]
    is_classification: bool | None
    where: str


@dataclass
class SelfInstructOptions:
    """Settings of one Self-Instruct run (every field is a CLI option)."""

    target: int = 100
    instances: int = 2
    batch: int = 8
    seed: int = 0
    threshold: float = THRESHOLD
    max_requests: int | None = None
    include_seeds: bool = True
    max_tokens: int = 512
    instance_max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.95
    prompt_dir: str | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _text(row: dict, key: str, where: str, required: bool = True) -> str:
    value = row.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise DataError(f"seed field {key!r} must be a non-empty string, got {value!r}",
                        where=where, fix="see docs/synth.md for the seed formats")
    return value


def load_seeds(path: str | Path) -> list[SeedTask]:
    """Seed tasks: Self-Instruct format (instruction, instances, is_classification) or Alpaca."""
    seeds: list[SeedTask] = []
    for where, row in read_jsonl_objects(path, example='{"instruction": "...", "instances": '
                                         '[{"input": "", "output": "..."}]}'):
        instruction = _text(row, "instruction", where)
        if "instances" in row:
            raw = row["instances"]
            if not isinstance(raw, list) or not raw:
                raise DataError("'instances' must be a non-empty list", where=where,
                                fix='write "instances": [{"input": "...", "output": "..."}]')
            inst = []
            for k, item in enumerate(raw):
                if not isinstance(item, dict):
                    raise DataError(f"instances[{k}] is not an object", where=where)
                inst.append((_text(item, "input", f"{where} instances[{k}]", required=False),
                             _text(item, "output", f"{where} instances[{k}]")))
            flag = row.get("is_classification")
            seeds.append(SeedTask(instruction.strip(), inst,
                                  flag if isinstance(flag, bool) else None, where))
        else:
            seeds.append(SeedTask(instruction.strip(),
                                  [(_text(row, "input", where, required=False),
                                    _text(row, "output", where))], None, where))
    if not seeds:
        raise DataError("seed file has no tasks", where=str(path),
                        fix="add at least one task (Self-Instruct used 175)")
    return seeds


def chat_row(instruction: str, inp: str, out: str, meta: dict[str, Any]) -> dict[str, Any]:
    """A tuneloop chat row: the instruction (+ input) as the user turn, the output as answer."""
    user = instruction + ("\n\n" + inp if inp.strip() else "")
    return {"messages": [{"role": "user", "content": user},
                         {"role": "assistant", "content": out}], "meta": meta}


def _instructions_prompt(examples: list[str], prompt) -> tuple[list[dict], int]:
    lines = [f"{i}. {' '.join(t.split()).rstrip(':')}" for i, t in enumerate(examples, 1)]
    nxt = len(examples) + 1
    return prompt.messages(tasks="\n".join(lines), next=str(nxt)), nxt


def run_self_instruct(seeds_path: str | Path | list[SeedTask],
                      generator: str | dict | Generator, out: str | Path,
                      options: SelfInstructOptions | None = None) -> dict[str, Any]:
    """Bootstrap tasks from seeds (a file, or SeedTask objects) into `out` (resumable)."""
    opt = options or SelfInstructOptions()
    if opt.target < 1 or not 1 <= opt.instances <= 5 or opt.batch < 1:
        raise UsageError(f"need --target ≥ 1, --instances in 1..5 and --batch ≥ 1 (got "
                         f"{opt.target}, {opt.instances}, {opt.batch})")
    if isinstance(seeds_path, list):
        seeds = seeds_path
        if not seeds:
            raise UsageError("no seed tasks given", fix="pass at least one SeedTask")
        seeds_digest = hashlib.sha256(json.dumps(
            [[s.instruction, s.instances, s.is_classification] for s in seeds]).encode()
        ).hexdigest()
    else:
        seeds = load_seeds(seeds_path)
        seeds_digest = hashlib.sha256(Path(seeds_path).read_bytes()).hexdigest()
    out = Path(out)
    guard = OutGuard(out)
    out.mkdir(parents=True, exist_ok=True)
    gen = open_generator(generator, out)
    loaded, hashes = prompts.load_all(PROMPTS, opt.prompt_dir)
    p_instr = GenParams(max_tokens=opt.max_tokens, temperature=opt.temperature, top_p=opt.top_p,
                        seed=opt.seed)
    p_cls = GenParams(max_tokens=8, temperature=0.0, seed=opt.seed)
    p_inst = GenParams(max_tokens=opt.instance_max_tokens, temperature=0.0, seed=opt.seed)
    manifest = {
        "recipe": "self-instruct", "generator": gen.name, "judge": None,
        "params": {"instances": opt.instances, "batch": opt.batch, "seed": opt.seed,
                   "threshold": opt.threshold, "include_seeds": opt.include_seeds,
                   "instructions": p_instr.to_dict(), "classify": p_cls.to_dict(),
                   "instances_gen": p_inst.to_dict(), **opt.extra},
        "limits": {"target": opt.target, "max_requests": opt.max_requests},
        "prompts": hashes,
        "inputs": {"seeds": "<memory>" if isinstance(seeds_path, list) else str(seeds_path),
                   "seeds_sha256": seeds_digest},
    }
    run = SynthRun(out, manifest)
    req = Requester(gen, opt.max_requests)
    stats = SynthStats("self-instruct")
    rng = random.Random(opt.seed)
    pool = NoveltyPool([s.instruction for s in seeds], threshold=opt.threshold)
    machine: list[str] = []
    prog, update = progress_bar("self-instruct", opt.target, opt.progress)

    def finish() -> dict[str, Any]:
        data = stats.to_json({"total": req.count, "by_kind": req.by_kind,
                              "sent_this_invocation": req.sent,
                              "cached_this_invocation": req.count - req.sent})
        data["resumed"] = run.resumed
        run.write_stats(data)
        return data

    def write_seeds() -> None:
        # After the first answer, not before: a generator that cannot be reached must not
        # leave a seeds-only train.jsonl that looks like a result.
        for s in seeds:
            for inp, outp in s.instances:
                run.train.append(chat_row(s.instruction, inp, outp, {
                    "source": "human", "recipe": "self-instruct", "seed": s.where}))
                stats.rows["human"] += 1

    seeds_due = opt.include_seeds
    round_start = (0, 0)
    candidates: list[_Candidate] = []
    try:
        with prog:
            stalled = 0
            while stats.accepted < opt.target:
                room = req.room()
                n = opt.batch if room is None else min(opt.batch, room)
                if n == 0:
                    stats.stopped = "budget"
                    break
                candidates = []
                round_start = (stats.accepted, sum(stats.rejected.values()))
                candidates = _one_round(n, seeds, machine, rng, req, loaded, p_instr, stats,
                                        run)
                if seeds_due:
                    write_seeds()
                    seeds_due = False
                _decide(candidates, machine, req, loaded, p_cls, p_inst, opt, pool, stats, run)
                candidates = []
                update(stats.accepted, stats.accepted, sum(stats.rejected.values()))
                finish()
                stalled = stalled + 1 if stats.accepted == round_start[0] else 0
                if stalled >= STALL_ROUNDS:
                    stats.stopped = "stalled"
                    break
            else:
                stats.stopped = "target"
        if seeds_due:
            write_seeds()
    except BudgetSpent:
        stats.stopped = "budget"
        # Candidates of the last round still waiting for classify/instances requests: not
        # rejected (a rerun with a larger --max-requests decides them), so counted here.
        decided = (stats.accepted - round_start[0]
                   + sum(stats.rejected.values()) - round_start[1])
        stats.extra["undecided_at_stop"] = max(0, len(candidates) - decided)
        if seeds_due:
            write_seeds()
    except ModelError as exc:
        untouched = req.count == 0 and not run.resumed
        run.close()
        if untouched:
            guard.restore(gen)
        else:
            stats.stopped = "error"
            stats.extra["error"] = exc.what
            finish()
        raise backend_failure(exc, out, req.count, untouched) from None
    finally:
        run.close()
    return finish()


@dataclass
class _Candidate:
    """A task that passed the rule filters, with the request that wrote it."""

    text: str
    request_id: str


def _one_round(n: int, seeds: list[SeedTask], machine: list[str], rng: random.Random,
               req: Requester, loaded, params: GenParams, stats: SynthStats,
               run: SynthRun) -> list[_Candidate]:
    """Ask for new tasks `n` times; return the candidates that pass the rule filters (in order).

    Every candidate dropped here is written to rejects.jsonl with its reason.
    """
    msgs, starts = [], []
    for _ in range(n):
        examples = rng.sample([s.instruction for s in seeds], min(N_SEED_EXAMPLES, len(seeds)))
        examples += rng.sample(machine, min(N_MACHINE_EXAMPLES, len(machine)))
        m, nxt = _instructions_prompt(examples, loaded["instructions"])
        msgs.append(m)
        starts.append(nxt)
    replies = req.run("instructions", msgs, params)
    candidates: list[_Candidate] = []
    for reply, first in zip(replies, starts):
        items = filters.parse_numbered(reply.text, first)
        if items and filters.looks_cut_off(reply.text, params.max_tokens):
            stats.reject("cut_off_last_item")
            run.rejects.append({"stage": "instruction", "reason": "cut_off_last_item",
                                "text": items[-1], "request_id": reply.request_id})
            items = items[:-1]
        for item in items:
            reason = filters.instruction_reason(item)
            if reason:
                stats.reject(reason)
                run.rejects.append({"stage": "instruction", "reason": reason, "text": item,
                                    "request_id": reply.request_id})
                continue
            candidates.append(_Candidate(item, reply.request_id))
    return candidates


def _decide(candidates: list[_Candidate], machine: list[str], req: Requester, loaded,
            p_cls: GenParams, p_inst: GenParams, opt: SelfInstructOptions, pool: NoveltyPool,
            stats: SynthStats, run: SynthRun) -> None:
    """Novelty, then instances, for one round's candidates; every one ends accepted or rejected.

    Novelty is decided against the pool (seeds + accepted tasks) and the round's earlier
    candidates. Only the tasks still needed for --target are expanded (classify + instances);
    the rest are `over_target`, never sent. The pool then holds only what was accepted, so a
    `too_similar` reject always names a task in train.jsonl or the seeds: a candidate whose
    nearest was a same-round task that failed its instances is decided again.
    """
    pending = candidates
    over: list[tuple[_Candidate, Any]] = []
    while pending:
        base = len(pool)
        decisions = pool.filter([c.text for c in pending])  # in-round candidates count
        pool.truncate(base)  # … but only accepted tasks stay in the pool
        queue = [(c, d) for c, d in zip(pending, decisions) if d.novel]
        accepted: set[str] = set()
        while queue and stats.accepted < opt.target:
            need = opt.target - stats.accepted
            chunk, queue = queue[:need], queue[need:]
            accepted |= _expand(chunk, req, loaded, p_cls, p_inst, opt, pool, stats, run)
        machine.extend(t for t in (c.text for c, _ in zip(pending, decisions)) if t in accepted)
        over.extend(queue)
        retry = []
        for c, d in zip(pending, decisions):
            if d.novel:
                continue
            if d.nearest < base or d.nearest_text in accepted:
                stats.novelty.append(d.score)
                stats.reject("too_similar")
                run.rejects.append({"stage": "instruction", "reason": "too_similar",
                                    "text": c.text, "request_id": c.request_id,
                                    "nearest": {"task": d.nearest_text, "rouge_l": d.score}})
            else:
                retry.append(c)  # its near twin was dropped: decide it against the pool again
        if stats.accepted >= opt.target:
            over.extend((c, pool.check(c.text)) for c in retry)
            break
        pending = retry
    # Written last: over_target rows are the tail that a rerun with a larger --target redecides.
    for c, d in over:
        stats.novelty.append(d.score)
        stats.reject("over_target")
        run.rejects.append({"stage": "instruction", "reason": "over_target", "text": c.text,
                            "request_id": c.request_id})


def _expand(tasks: list[tuple[_Candidate, Any]], req: Requester, loaded, p_cls: GenParams,
            p_inst: GenParams, opt: SelfInstructOptions, pool: NoveltyPool, stats: SynthStats,
            run: SynthRun) -> set[str]:
    """Classify each task, generate its instances, filter them, write rows or rejects; the
    instructions accepted (each added to the pool, in order)."""
    cls = req.run("classify", [loaded["classify"].messages(instruction=c.text)
                               for c, _ in tasks], p_cls)
    msgs, flags = [], []
    for (c, _), answer in zip(tasks, cls):
        flags.append(filters.is_yes(answer.text))
        name = "instances_output_first" if flags[-1] else "instances_input_first"
        msgs.append(loaded[name].messages(instruction=c.text, n=str(opt.instances)))
    inst = req.run("instances", msgs, p_inst)
    accepted: set[str] = set()
    for (c, d), answer, r, is_cls in zip(tasks, cls, inst, flags):
        pairs = filters.parse_instances(r.text, output_first=is_cls)
        kept, dropped, task_reason = filters.filter_instances(pairs, opt.instances)
        base = {"task": c.text, "request_id": c.request_id,
                "classify_request_id": answer.request_id, "instances_request_id": r.request_id}
        for reason, inp, outp in dropped:
            stats.dropped_instances[reason] += 1
            run.rejects.append({"stage": "instance", "reason": reason, "input": inp,
                                "output": outp, **base})
        if task_reason:
            stats.novelty.append(d.score)
            stats.reject(task_reason)
            run.rejects.append({"stage": "instances", "reason": task_reason,
                                "text": r.text[:2000], "dropped": dict(Counter(
                                    x[0] for x in dropped)), **base})
            continue
        # The nearest task among seeds + accepted ones (what the pool holds now): never a
        # same-round candidate that was later dropped.
        near = pool.check(c.text)
        stats.novelty.append(near.score)
        pool.add(c.text)
        accepted.add(c.text)
        stats.accept_text(c.text)
        stats.classification += is_cls
        nearest = {"task": near.nearest_text, "rouge_l": near.score}
        for k, (inp, outp) in enumerate(kept):
            run.train.append(chat_row(c.text, inp, outp, {
                "source": "machine", "recipe": "self-instruct", "generator": req.name,
                "is_classification": is_cls, "nearest": nearest, "instance": k, **base}))
            stats.rows["machine"] += 1
    return accepted
