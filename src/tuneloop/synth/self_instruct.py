"""Self-Instruct: a few human seed tasks → many machine tasks, filtered for quality and novelty.

One round: `batch` requests, each showing 8 numbered example tasks (6 sampled from the seeds, 2
from tasks generated so far — fewer while there are none) and asking the model to continue the
list. Candidates pass the filters (length, blacklist, punctuation/non-ASCII start, "Write a
program", the last item of a cut-off answer), then the ROUGE-L novelty check against the pool
(seeds + everything accepted, earlier candidates of the same round included). Each new task is
classified (is it a classification task?), then gets instances: label first for classification
tasks (so labels stay balanced), input first otherwise. Invalid instances are dropped, and a task
left with none (or with one input given different outputs) is dropped whole.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.backends import Generator, GenParams
from tuneloop.data.jsonl import read_jsonl_objects
from tuneloop.errors import DataError, UsageError
from tuneloop.synth import filters, prompts
from tuneloop.synth.novelty import THRESHOLD, NoveltyPool
from tuneloop.synth.run import BudgetSpent, Requester, SynthRun, open_generator, progress_bar
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

    try:
        with prog:
            if opt.include_seeds:
                for s in seeds:
                    for inp, outp in s.instances:
                        run.train.append(chat_row(s.instruction, inp, outp, {
                            "source": "human", "recipe": "self-instruct", "seed": s.where}))
                        stats.rows["human"] += 1
            stalled = 0
            while stats.accepted < opt.target:
                room = req.room()
                n = opt.batch if room is None else min(opt.batch, room)
                if n == 0:
                    stats.stopped = "budget"
                    break
                new = _one_round(n, seeds, machine, rng, req, loaded, p_instr, pool, stats, run)
                before = stats.accepted
                _expand(new, req, loaded, p_cls, p_inst, opt, stats, run)
                update(stats.accepted, stats.accepted, sum(stats.rejected.values()))
                finish()
                stalled = stalled + 1 if stats.accepted == before else 0
                if stalled >= STALL_ROUNDS:
                    stats.stopped = "stalled"
                    break
            else:
                stats.stopped = "target"
    except BudgetSpent:
        stats.stopped = "budget"
    finally:
        run.close()
    return finish()


def _one_round(n: int, seeds: list[SeedTask], machine: list[str], rng: random.Random,
               req: Requester, loaded, params: GenParams, pool: NoveltyPool, stats: SynthStats,
               run: SynthRun) -> list[dict[str, Any]]:
    """Ask for new tasks `n` times; return the candidates that pass every filter (in order)."""
    msgs, starts = [], []
    for _ in range(n):
        examples = rng.sample([s.instruction for s in seeds], min(N_SEED_EXAMPLES, len(seeds)))
        examples += rng.sample(machine, min(N_MACHINE_EXAMPLES, len(machine)))
        m, nxt = _instructions_prompt(examples, loaded["instructions"])
        msgs.append(m)
        starts.append(nxt)
    replies = req.run("instructions", msgs, params)
    candidates: list[tuple[str, str]] = []
    for reply, first in zip(replies, starts):
        items = filters.parse_numbered(reply.text, first)
        if items and filters.looks_cut_off(reply.text, params.max_tokens):
            stats.reject("cut_off_last_item")
            items = items[:-1]
        for item in items:
            reason = filters.instruction_reason(item)
            if reason:
                stats.reject(reason)
                run.rejects.append({"stage": "instruction", "reason": reason, "text": item,
                                    "request_id": reply.request_id})
                continue
            candidates.append((item, reply.request_id))
    decisions = pool.filter([c[0] for c in candidates])
    new = []
    for (text, rid), d in zip(candidates, decisions):
        stats.novelty.append(d.score)
        if not d.novel:
            stats.reject("too_similar")
            run.rejects.append({"stage": "instruction", "reason": "too_similar", "text": text,
                                "request_id": rid, "nearest": {"task": d.nearest_text,
                                                               "rouge_l": d.score}})
            continue
        machine.append(text)
        new.append({"instruction": text, "request_id": rid,
                    "nearest": {"task": d.nearest_text, "rouge_l": d.score}})
    return new


def _expand(tasks: list[dict[str, Any]], req: Requester, loaded, p_cls: GenParams,
            p_inst: GenParams, opt: SelfInstructOptions, stats: SynthStats, run: SynthRun) -> None:
    """Classify each new task, generate its instances, filter them, write rows or rejects."""
    if not tasks:
        return
    cls = req.run("classify", [loaded["classify"].messages(instruction=t["instruction"])
                               for t in tasks], p_cls)
    msgs = []
    for t, c in zip(tasks, cls):
        t["is_classification"] = filters.is_yes(c.text)
        name = "instances_output_first" if t["is_classification"] else "instances_input_first"
        msgs.append(loaded[name].messages(instruction=t["instruction"], n=str(opt.instances)))
    inst = req.run("instances", msgs, p_inst)
    for t, c, r in zip(tasks, cls, inst):
        if stats.accepted >= opt.target:  # expanded together with the last needed ones
            stats.reject("over_target")
            continue
        pairs = filters.parse_instances(r.text, output_first=t["is_classification"])
        kept, dropped, task_reason = filters.filter_instances(pairs, opt.instances)
        stats.dropped_instances.update(dropped)
        base = {"task": t["instruction"], "request_id": t["request_id"],
                "classify_request_id": c.request_id, "instances_request_id": r.request_id}
        if task_reason:
            stats.reject(task_reason)
            run.rejects.append({"stage": "instances", "reason": task_reason,
                                "text": r.text[:2000], "dropped": dict(dropped), **base})
            continue
        stats.accept_text(t["instruction"])
        stats.classification += t["is_classification"]
        for k, (inp, outp) in enumerate(kept):
            run.train.append(chat_row(t["instruction"], inp, outp, {
                "source": "machine", "recipe": "self-instruct", "generator": req.name,
                "is_classification": t["is_classification"], "nearest": t["nearest"],
                "instance": k, **base}))
            stats.rows["machine"] += 1
