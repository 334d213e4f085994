"""What a training run reports: JSON lines (``log.jsonl``, one record per logged step with
its ``loss``), TensorBoard scalars when tensorboard is installed, a progress line on a
terminal, and messages for a caller (the Prefect flow passes its logger)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable


class RunLog:
    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        start_step: int,
        enabled: bool,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(run_dir) / "log.jsonl"
        self.enabled, self.say_to = enabled, say
        self.total, self.start_step = total_steps, start_step
        self.t0, self.tb, self.progress = time.perf_counter(), None, None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate_after(start_step)
        try:  # optional: tensorboard is not a dependency
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=start_step + 1)
        except ImportError:
            self.tb = None
        try:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            console = Console(stderr=True)
            if console.is_terminal:
                self.progress = Progress(
                    TextColumn("train"),
                    BarColumn(),
                    TextColumn("{task.completed}/{task.total}"),
                    TextColumn("{task.fields[info]}"),
                    TimeRemainingColumn(),
                    console=console,
                )
                self.task = self.progress.add_task("train", total=total_steps, completed=start_step, info="")
                self.progress.start()
        except ImportError:
            self.progress = None

    def _truncate_after(self, step: int) -> None:
        """A resumed run drops the lines an interrupted run logged after its checkpoint,
        so the log reads as one uninterrupted run."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except ValueError:
                continue  # a line cut by a kill
        self.path.write_text("".join(k + "\n" for k in kept))

    def say(self, message: str) -> None:
        if self.enabled and self.say_to:
            self.say_to(message)

    def record(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"kind": kind, "step": step, **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def step(self, step: int, values: dict[str, Any]) -> None:
        """A logged training step: the JSON line, and the progress line with ETA."""
        elapsed = time.perf_counter() - self.t0
        done = step - self.start_step
        eta = elapsed / done * (self.total - step) if done else 0.0
        self.record("train", step, {**values, "eta_s": round(eta, 1)})
        line = (
            f"step {step}/{self.total} loss {values['loss']:.4f} "
            f"{values['samples_per_s']:.1f} samples/s ETA {eta / 60:.1f} min"
        )
        if self.progress is not None:
            self.progress.update(
                self.task,
                completed=step,
                info=f"loss {values['loss']:.4f} {values['samples_per_s']:.1f} samples/s",
            )
        else:
            self.say(line)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.tb is not None:
            self.tb.close()
