"""Chaos launcher: pay the torch/transformers import once, then fork one `tuneloop` per request.

    python tests/chaos/launcher.py      # then one JSON request per stdin line:
    {"argv": ["train", "CFG.yaml", "--output-dir", "RUN", "--no-progress"], "log": "LOG", "home": "HOME"}

For each request it forks a child that runs the real CLI entry point (tuneloop.cli.main) with
stdout/stderr sent to LOG and TUNELOOP_HOME=HOME, prints {"pid": PID} as soon as the child
exists, and {"pid": PID, "rc": CODE} when it ends (CODE is -N when killed by signal N). The
test sends its signals to PID from outside; nothing in the trainer knows it is being tested.
"""

from __future__ import annotations

import json
import os
import sys


def _child(req: dict) -> int:
    fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ["TUNELOOP_HOME"] = req["home"]
    from tuneloop.cli import main

    try:
        return main(req["argv"])
    except SystemExit as exc:  # click may still exit
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - shown in the log the test reads
        import traceback

        traceback.print_exc()
        return 1


def main() -> None:
    import torch

    torch.set_num_threads(1)
    # The command modules, and what train() imports lazily in every child (peft alone ~0.5 s).
    import accelerate
    import peft
    import safetensors.torch
    import transformers.models.llama.modeling_llama

    import tuneloop.cli
    import tuneloop.train.loop

    del accelerate, peft, safetensors, transformers, tuneloop

    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(req)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"pid": pid, "rc": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
