"""Resume chains: a run, the run that resumed it, the run that resumed that one, ...

A run whose controller died can be resumed once, as a new run whose header names it
(`resume_of`). That new run can die too and be resumed in its turn, so the runs of one plan
form a chain A -> B -> C. Only the latest link describes the pump as it is now: resuming an
earlier link again would reconcile an old journal against a counter that a later link has
cleared and refilled, and deliver the rest of the plan a second time (issue 9: 45 mL for a
35 mL plan). So a run that was resumed is never resumed again; its chain goes on from its
latest link, and the volume the chain has delivered is everything every link delivered.

Two records say that a run was resumed, so either one is enough:
- the resume claim `<run_id>.resume` in the journal directory, taken atomically (O_CREAT |
  O_EXCL) before the pump is even opened, so two resumes started at once cannot both win;
- the `resume_of` field in the header of the run that resumed it (durable once that run's
  journal exists; also what journals copied without their claims still show).

A claim whose resumed run never wrote a journal (its process was killed in between, before it
touched the pump's settings) is not taken over automatically: the refusal names the file to
remove once nobody else is resuming.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pumpctl.errors import PumpctlError
from pumpctl.journal import JOURNAL_SUFFIX

CLAIM_SUFFIX = ".resume"
_HEADER_MAX_BYTES = 1 << 20  # a header is a few kB; a longer first line is not a header


class ResumeRefused(PumpctlError):
    """The run cannot be resumed: its chain, its journal or the pump say no (exit 7)."""

    exit_code = 7


def read_header(path: Path) -> dict[str, Any] | None:
    """A journal's first record if it is a header (None otherwise), reading only that line."""
    try:
        with path.open("rb") as f:
            line = f.readline(_HEADER_MAX_BYTES)
    except OSError:
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("type") == "header" else None


@dataclass(frozen=True)
class Claim:
    """What a resume claim file says: `run_id` is being (or was) resumed as `resumed_as`."""

    path: Path
    run_id: str
    resumed_as: str
    pid: int | None
    host: str

    def process_alive(self) -> bool:
        """Whether the claiming process may still run (unknowable from another host: yes)."""
        if self.host != socket.gethostname() or self.pid is None:
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def read_claim(path: Path) -> Claim | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    pid = data.get("pid")
    return Claim(path, str(data.get("run_id", path.name.removesuffix(CLAIM_SUFFIX))),
                 str(data.get("resumed_as", "?")), pid if isinstance(pid, int) else None,
                 str(data.get("host", "")))


class ChainIndex:
    """Who resumed whom in one journal directory, from the claims and the journal headers."""

    def __init__(self, runs_dir: Path | str) -> None:
        self.runs_dir = Path(runs_dir)
        self.headers: dict[str, dict[str, Any]] = {}
        self.paths: dict[str, Path] = {}
        self._children: dict[str, list[str]] = {}
        self.claims: dict[str, Claim] = {}
        if not self.runs_dir.is_dir():
            return
        for path in sorted(self.runs_dir.glob(f"*{JOURNAL_SUFFIX}")):
            header = read_header(path)
            run_id = str(header.get("run_id", path.stem)) if header else path.stem
            self.paths[run_id] = path
            if header is None:
                continue
            self.headers[run_id] = header
            parent = header.get("resume_of")
            if parent:
                self._add_child(str(parent), run_id)
        for path in sorted(self.runs_dir.glob(f"*{CLAIM_SUFFIX}")):
            claim = read_claim(path)
            if claim is not None:
                self.claims[claim.run_id] = claim
                self._add_child(claim.run_id, claim.resumed_as)

    def _add_child(self, parent: str, child: str) -> None:
        children = self._children.setdefault(parent, [])
        if child not in children:
            children.append(child)

    def resumed_as(self, run_id: str) -> list[str]:
        """The runs that resumed `run_id` (more than one only in journals written before
        resumes were claimed: a chain that forked)."""
        return list(self._children.get(run_id, ()))

    def resume_of(self, run_id: str) -> str | None:
        parent = (self.headers.get(run_id) or {}).get("resume_of")
        return str(parent) if parent else None

    def links(self, run_id: str) -> list[str]:
        """The chain through `run_id`, root first, up to its latest link (stops at a fork)."""
        back: list[str] = [run_id]
        while (parent := self.resume_of(back[-1])) is not None and parent not in back:
            back.append(parent)
        chain = back[::-1]
        while len(children := self.resumed_as(chain[-1])) == 1 and children[0] not in chain:
            chain.append(children[0])
        return chain

    def in_chain(self, run_id: str) -> bool:
        return bool(self.resume_of(run_id) or self.resumed_as(run_id))

    def refuse_unless_latest(self, run_id: str) -> None:
        """Raise `ResumeRefused` unless `run_id` is the latest link of a chain that never
        forked (a run resumed twice, by journals older than resume claims: no link of it can
        say what the pump delivered in all)."""
        for link in self.links(run_id):
            children = self.resumed_as(link)
            if len(children) > 1:
                raise ResumeRefused(
                    f"run {link} was resumed more than once ({', '.join(children)}): what the "
                    "pump delivered cannot be worked out from the journals; check the pump "
                    "and start a new run")
        children = self.resumed_as(run_id)
        if not children:
            return
        child = children[0]
        claim = self.claims.get(run_id)
        if child not in self.paths and claim is not None:
            if claim.process_alive():
                raise ResumeRefused(f"run {run_id} is being resumed as {child} (pid {claim.pid} "
                                 f"on {claim.host or '?'}): only one resume can win")
            raise ResumeRefused(
                f"run {run_id} was claimed for resuming as {child} by pid {claim.pid}, which "
                f"is gone without starting that run; if no other resume is running, remove "
                f"{claim.path} and try again")
        latest = self.links(run_id)[-1]
        hint = f"--resume {latest}" if latest != run_id else "a new run"
        raise ResumeRefused(f"run {run_id} was already resumed as {child}; only the latest "
                         f"link of its chain ({latest}) can be resumed: use {hint}")


@dataclass(frozen=True)
class ChainTotals:
    """A chain's links and what they delivered together, by their journals."""

    links: tuple[str, ...]
    delivered_ml: float  # everything every link delivered (its own counter's share, summed)
    latest: str


def link_volumes(header: dict[str, Any], delivered_ml: float | None) -> tuple[float, float]:
    """(baseline, own share) of one link: its journal's cumulative delivered volume counts
    what earlier links delivered (`baseline_ml`) plus its own pump counter."""
    baseline = _number(header.get("baseline_ml"))
    cumulative = baseline if delivered_ml is None else max(baseline, delivered_ml)
    return baseline, cumulative - baseline


def chain_totals(index: ChainIndex, run_id: str,
                 delivered: dict[str, float | None]) -> ChainTotals:
    """Totals of the chain through `run_id`; `delivered` maps run ids to each journal's
    cumulative delivered volume (last sample or summary)."""
    links = index.links(run_id)
    own = 0.0
    for link in links:
        _, share = link_volumes(index.headers.get(link) or {}, delivered.get(link))
        own += share
    last_header = index.headers.get(links[-1]) or {}
    base, share = link_volumes(last_header, delivered.get(links[-1]))
    # The latest link's own figure (its reconciled baseline plus its counter) and the sum of
    # every link's share agree in a sound chain; where they do not, the larger one counts.
    return ChainTotals(tuple(links), max(own, base + share), links[-1])


def chain_views(index: ChainIndex,
                delivered: dict[str, float | None]) -> dict[str, ChainTotals]:
    """For `pumpctl runs`: every run that is part of a chain, with its chain's totals."""
    out: dict[str, ChainTotals] = {}
    for run_id in index.paths:
        if run_id in out or not index.in_chain(run_id):
            continue
        totals = chain_totals(index, run_id, delivered)
        for link in totals.links:
            out.setdefault(link, totals)
    return out


class ResumeClaim:
    """The exclusive right to resume one run: a file created with O_CREAT | O_EXCL."""

    def __init__(self, runs_dir: Path | str, run_id: str, resumed_as: str) -> None:
        self.path = Path(runs_dir) / f"{run_id}{CLAIM_SUFFIX}"
        self.run_id = run_id
        self.resumed_as = resumed_as
        self._held = False

    def take(self) -> ResumeClaim:
        body = json.dumps({"run_id": self.run_id, "resumed_as": self.resumed_as,
                           "pid": os.getpid(), "host": socket.gethostname(),
                           "t": round(time.time(), 3)}) + "\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            ChainIndex(self.path.parent).refuse_unless_latest(self.run_id)
            raise ResumeRefused(f"run {self.run_id} is already claimed for resuming "
                             f"({self.path})") from None
        except OSError as exc:
            raise ResumeRefused(f"cannot claim run {self.run_id} for resuming: "
                             f"{self.path}: {exc.strerror}") from None
        self._held = True
        try:
            os.write(fd, body.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(self.path.parent)
        return self

    def release(self) -> None:
        """Give the claim up (the resume was refused or failed before its run existed)."""
        if not self._held:
            return
        self._held = False
        claim = read_claim(self.path)
        if claim is not None and claim.resumed_as == self.resumed_as:
            self.path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)

