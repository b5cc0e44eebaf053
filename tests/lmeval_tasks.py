"""lm-evaluation-harness task files for the parity tests: a multiple-choice task over
examples/mc-style JSONL rows that mirrors tuneloop's PROMPT_FORMAT and " " delimiter exactly."""

from __future__ import annotations

from pathlib import Path


def mc_task_yaml(name: str, data: Path, metrics: tuple[str, ...] = ("acc",)) -> str:
    """The task's YAML text: `Question: ...\\nAnswer:` then each choice after one space."""
    metric_list = "".join(f"  - metric: {m}\n    aggregation: mean\n    higher_is_better: true\n"
                          for m in metrics)
    return (f"task: {name}\n"
            "dataset_path: json\n"
            "dataset_kwargs:\n"
            "  data_files:\n"
            f"    test: {data}\n"
            "test_split: test\n"
            "output_type: multiple_choice\n"
            'doc_to_text: "Question: {{question}}\\nAnswer:"\n'
            "doc_to_choice: choices\n"
            "doc_to_target: answer\n"
            'target_delimiter: " "\n'
            f"metric_list:\n{metric_list}")
