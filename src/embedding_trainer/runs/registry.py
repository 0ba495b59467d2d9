"""SQLite run registry, safe with several processes writing at once (WAL, transactions, busy timeout)."""

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from embedding_trainer.utils.errors import ConfigError

STATUSES = ("queued", "running", "success", "failed", "pruned")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'success', 'failed', 'pruned')),
    started_at REAL NOT NULL,
    ended_at REAL,
    updated_at REAL NOT NULL,
    step INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER,
    percent REAL NOT NULL DEFAULT 0,
    overrides TEXT NOT NULL DEFAULT '[]',
    config TEXT,
    output_dir TEXT,
    metrics TEXT,
    model_path TEXT,
    error_type TEXT,
    error_message TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status);
CREATE INDEX IF NOT EXISTS runs_by_task ON runs (task);
"""


class RunRegistry:
    """Rows of the `runs` table in the SQLite file `path` (created on first use).

    Every write is one short transaction; concurrent writers wait up to `timeout_s` for the lock.
    JSON columns: `overrides` (list of strings), `metrics` ({dimension: {metric: value}} for
    `baseline` and `finetuned`), `config` (the resolved config as YAML text).
    """

    def __init__(self, path: str | Path, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as connection:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise ConfigError(
                f"Cannot open the run registry registry.path={self.path}: {error}. Point registry.path at a "
                "writable SQLite file (or registry.path=null to record nothing)."
            ) from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        connection.row_factory = sqlite3.Row
        try:
            connection.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            yield connection
        finally:
            connection.close()

    def _write(self, sql: str, parameters: tuple) -> None:
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                cursor = connection.execute(sql, parameters)
                if cursor.rowcount != 1:
                    raise KeyError(f"no run {parameters[-1]!r} in {self.path}")
                connection.execute("COMMIT")
            except BaseException:
                # A Ctrl-C can land after COMMIT: a ROLLBACK then would fail and hide the interrupt.
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    def start(
        self,
        run_id: str,
        task: str,
        overrides: list[str],
        config: str,
        output_dir: str,
        status: str = "running",
    ) -> None:
        """Record a new run (or restart a queued or resumed one: the row keeps its start time and
        takes the new status and config) as `status`."""
        now = time.time()
        self._write(
            "INSERT INTO runs (run_id, task, status, started_at, updated_at, overrides, config, output_dir) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET status=excluded.status, "
            "updated_at=excluded.updated_at, config=excluded.config, ended_at=NULL, error_type=NULL, "
            "error_message=NULL",
            (run_id, task, status, now, now, json.dumps(list(overrides)), config, output_dir),
        )

    def progress(self, run_id: str, step: int, total_steps: int | None) -> None:
        """Record training progress: `step` of `total_steps` optimizer steps."""
        percent = 100.0 * step / total_steps if total_steps else 0.0
        self._write(
            "UPDATE runs SET step=?, total_steps=?, percent=?, updated_at=? WHERE run_id=?",
            (step, total_steps, round(percent, 2), time.time(), run_id),
        )

    def finish(
        self, run_id: str, status: str, metrics: dict | None = None, model_path: str | None = None
    ) -> None:
        """Record the end of a run that did not raise: `success` or `pruned`, with its metrics."""
        now = time.time()
        self._write(
            "UPDATE runs SET status=?, ended_at=?, updated_at=?, metrics=?, model_path=? WHERE run_id=?",
            (status, now, now, json.dumps(metrics) if metrics is not None else None, model_path, run_id),
        )

    def fail(self, run_id: str, error: BaseException) -> None:
        """Record a run that raised (or was interrupted) as `failed`, with the error's type and message."""
        now = time.time()
        message = str(error) or ("interrupted" if isinstance(error, KeyboardInterrupt) else repr(error))
        self._write(
            "UPDATE runs SET status='failed', ended_at=?, updated_at=?, error_type=?, error_message=? WHERE run_id=?",
            (now, now, type(error).__name__, message, run_id),
        )

    def moved(self, old_dir: str, new_dir: str) -> None:
        """Point the rows of the runs that wrote `old_dir` (and their model paths) at `new_dir`."""
        with self._connect() as connection:
            connection.execute(
                "UPDATE runs SET output_dir=?, model_path=replace(model_path, ?, ?) WHERE output_dir=?",
                (new_dir, old_dir, new_dir, old_dir),
            )

    def folder_removed(self, run_id: str) -> None:
        """Record that the run's folder is gone (removed when its configuration was refused): no
        output_dir, no model path."""
        self._write("UPDATE runs SET output_dir=NULL, model_path=NULL WHERE run_id=?", (run_id,))

    def references(self) -> dict[str, str | None]:
        """Every run's id and its folder (None when it has none), without the heavier columns."""
        with self._connect() as connection:
            rows = connection.execute("SELECT run_id, output_dir FROM runs").fetchall()
        return {row["run_id"]: row["output_dir"] for row in rows}

    def get(self, run_id: str) -> dict:
        """One run as a dict with JSON columns decoded; KeyError if there is none."""
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(f"no run {run_id!r} in {self.path}")
        return _decoded(row)

    def list(
        self, status: str | None = None, task: str | None = None, since: float | None = None
    ) -> list[dict]:
        """Runs, newest first, filtered by status, task and start time (epoch seconds)."""
        clauses, parameters = [], []
        for clause, value in (("status = ?", status), ("task = ?", task), ("started_at >= ?", since)):
            if value is not None:
                clauses.append(clause)
                parameters.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT * FROM runs{where} ORDER BY started_at DESC", parameters
            ).fetchall()
        return [_decoded(row) for row in rows]


def _decoded(row: sqlite3.Row) -> dict:
    run = dict(row)
    run["overrides"] = json.loads(run["overrides"])
    run["metrics"] = json.loads(run["metrics"]) if run["metrics"] else None
    return run
