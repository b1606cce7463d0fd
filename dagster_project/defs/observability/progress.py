"""One line per finished step, with its duration, as the run goes: what `cli run` (and so
`make run`) prints, so a reader sees the night move (ingest, dbt, each layer) instead of
minutes of silence or every Dagster event. Off unless a run's config names the logger
(`loggers: {progress: {}}`, which the CLI sets); the UI's runs keep Dagster's own logs."""

from __future__ import annotations

import logging
import sys

import dagster as dg

DONE, FAILED = "STEP_SUCCESS", "STEP_FAILURE"


class StepLines(logging.Handler):
    """Prints `  done    <step>  <seconds> s` (or FAILED) when a step ends."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.started: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None)
        event = meta.get("dagster_event") if isinstance(meta, dict) else None
        if event is None or not event.step_key:
            return
        kind = event.event_type_value
        if kind == "STEP_START":
            self.started[event.step_key] = record.created
        elif kind in (DONE, FAILED):
            seconds = record.created - self.started.pop(event.step_key, record.created)
            word = "done" if kind == DONE else "FAILED"
            print(f"  {word:<7} {event.step_key:<44} {seconds:7.1f} s", file=sys.stdout,
                  flush=True)


@dg.logger(description="one line per finished step with its duration (cli run)")
def progress_logger(init_context) -> logging.Logger:
    logger = logging.getLogger("ds.progress")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.handlers = [StepLines()]
    return logger


@dg.definitions
def loggers() -> dg.Definitions:
    # the console logger stays the default of every run; this one only when configured
    return dg.Definitions(loggers={"console": dg.colored_console_logger,
                                   "progress": progress_logger})
