"""What the engine would do for one subscriber, step by step with dates: the path from the
trigger, each wait taken at once up to its due date. Pure, like the engine it calls.

The subscriber's facts stay as given, except for what the path's own actions change (lists,
fields), which later steps see, as they would in the runner. An unsubscribe action, or
leaving the campaign's list, ends the path there: the runner would take them out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, TypeAlias

from dripstone.drips import engine
from dripstone.drips.graph import Graph, Handle, NodeKind

MAX_SIMULATED_STEPS = 1000

Outcome: TypeAlias = Literal["completed", "exited", "unfinished"]


@dataclass(frozen=True)
class SimulatedStep:
    """One node on the path, taken at `at`: what it did, in words, and its particulars."""

    node_id: str
    kind: NodeKind
    at: datetime
    what: str
    branch: Handle | None = None  # condition, split: the handle taken
    until: datetime | None = None  # delay, wait_until: when the wait ended
    mailing_id: str | None = None  # email


@dataclass(frozen=True)
class Simulation:
    steps: tuple[SimulatedStep, ...]
    outcome: Outcome  # unfinished: cut off after MAX_SIMULATED_STEPS steps
    reason: str | None = None  # why it exited early


def simulate(
    graph: Graph,
    facts: engine.Facts,
    start: datetime,
    account_timezone: str = "UTC",
    campaign_list: str | None = None,
    max_steps: int = MAX_SIMULATED_STEPS,
) -> Simulation:
    """The path `engine.advance` takes from the trigger, entered at `start`, for `facts`.
    `campaign_list` is the campaign's list (None for All contacts): leaving it ends the path."""
    steps: list[SimulatedStep] = []
    position = engine.Position(graph.trigger_id, start)
    now = start
    while len(steps) < max_steps:
        step = engine.advance(graph, position, facts, now, account_timezone)
        path = [position.node_id, *step.visited]
        effects = {effect.node_id: effect for effect in step.effects}
        for index, node_id in enumerate(path):
            if index == 0 and steps:
                continue  # the wait it started from, already told
            following = path[index + 1] if index + 1 < len(path) else None
            steps.append(_told(graph, node_id, now, following, effects.get(node_id), step))
        facts = _after(facts, step.effects)
        left = _reason_to_leave(step.effects, facts, campaign_list)
        if left is not None:
            return Simulation(tuple(steps[:max_steps]), "exited", left)
        if step.position is None or step.wake_at is None:
            return Simulation(tuple(steps[:max_steps]), "completed")
        position, now = step.position, step.wake_at
    return Simulation(tuple(steps[:max_steps]), "unfinished")


def _told(
    graph: Graph,
    node_id: str,
    at: datetime,
    following: str | None,
    effect: engine.Effect | None,
    step: engine.Step,
) -> SimulatedStep:
    node = graph.nodes[node_id]
    kind = node.kind
    if kind in ("delay", "wait_until"):
        until = step.wake_at if following is None else at
        return SimulatedStep(
            node_id, kind, at, f"waited until {until:%Y-%m-%d %H:%M} UTC", until=until
        )
    if isinstance(effect, engine.SendEmail):
        return SimulatedStep(
            node_id, kind, at, f"sent email {effect.mailing_id}", mailing_id=effect.mailing_id
        )
    if isinstance(effect, engine.RunAction):
        target = effect.list_id or (f"{effect.name} = {effect.value}" if effect.name else "")
        return SimulatedStep(node_id, kind, at, f"action {effect.do} {target}".strip())
    if kind in ("condition", "split"):
        handle = next((e.handle for e in graph.out_edges(node_id) if e.target == following), None)
        what = f"branch {handle}" if kind == "condition" else f"split {handle}"
        return SimulatedStep(node_id, kind, at, what, branch=handle)
    if kind == "trigger":
        return SimulatedStep(node_id, kind, at, "entered the campaign")
    return SimulatedStep(node_id, kind, at, "exit")


def _after(facts: engine.Facts, effects: tuple[engine.Effect, ...]) -> engine.Facts:
    """The facts once the step's actions are done, as the runner would read them next."""
    fields = dict(facts.fields)
    lists = set(facts.lists)
    for effect in effects:
        if not isinstance(effect, engine.RunAction):
            continue
        if effect.do == "add_to_list" and effect.list_id:
            lists.add(effect.list_id)
        elif effect.do == "remove_from_list" and effect.list_id:
            lists.discard(effect.list_id)
        elif effect.do == "set_field" and effect.name:
            fields[effect.name] = effect.value
    return replace(facts, fields=fields, lists=frozenset(lists))


def _reason_to_leave(
    effects: tuple[engine.Effect, ...], facts: engine.Facts, campaign_list: str | None
) -> str | None:
    if any(isinstance(e, engine.RunAction) and e.do == "unsubscribe" for e in effects):
        return "unsubscribed by the campaign's action"
    if campaign_list is not None and campaign_list not in facts.lists:
        return "the subscriber left the campaign's list"
    return None
