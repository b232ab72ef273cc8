"""A CDC change feed spread over files, and the table it must leave: every change applied once,
in sequence order. Shared by the stateful fault tests (DuckDB and the BigQuery emulator)."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Change:
    id: int
    seq: int
    op: str
    """i (insert), u (update) or d (delete)"""
    value: str


@dataclass(frozen=True)
class ChangeFile:
    name: str
    changes: tuple[Change, ...]

    def csv(self) -> str:
        lines = [f"{c.id},{c.seq},{c.op},{c.value}\n" for c in self.changes]
        return "id,seq,op,v\n" + "".join(lines)


def change_files(rng: random.Random, *, files: int, keys: int, per_file: int) -> list[ChangeFile]:
    """Files of changes with a unique sequence each (a global order, like an LSN), shuffled
    across files so that any file may hold the newest or the oldest change of a key."""
    total = files * per_file
    sequences = list(range(1, total + 1))
    rng.shuffle(sequences)
    made = []
    for index in range(files):
        chunk = sorted(sequences[index * per_file : (index + 1) * per_file])
        changes = []
        for seq in chunk:
            op = rng.choices(["i", "u", "d"], weights=[3, 4, 2])[0]
            changes.append(Change(rng.randrange(keys), seq, op, f"v{seq}"))
        made.append(ChangeFile(f"changes-{index:02d}.csv", tuple(changes)))
    return made


def expected_table(files: list[ChangeFile]) -> dict[int, tuple[int, str]]:
    """id -> (seq, value) of every live key after applying each change once, in order."""
    state: dict[int, tuple[int, str] | None] = {}
    for change in sorted((c for f in files for c in f.changes), key=lambda c: c.seq):
        state[change.id] = None if change.op == "d" else (change.seq, change.value)
    return {key: row for key, row in state.items() if row is not None}


def deliveries(
    rng: random.Random, files: list[ChangeFile], *, duplicates: float, runs: int
) -> list[list[ChangeFile]]:
    """Every file at least once, some again, in a random order, cut into `runs` runs."""
    sent = list(files) + [f for f in files if rng.random() < duplicates]
    rng.shuffle(sent)
    runs = min(runs, len(sent))
    cuts = sorted(rng.sample(range(1, len(sent)), runs - 1)) if runs > 1 else []
    bounds = [0, *cuts, len(sent)]
    return [sent[a:b] for a, b in itertools.pairwise(bounds) if sent[a:b]]
