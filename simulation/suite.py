"""The fixed scenario suite every change to correlation is judged by (docs/QUALITY.md).

Heating and power, a quiet day and a storm, with and without SCADA, three seeds each, on the
sample networks. Totals per scenario, so two rule sets compare at a glance.
"""

from dataclasses import dataclass

from pydantic import BaseModel

from correlators.correlator import Correlator
from correlators.rules import CorrelationRules
from simulation.evaluate import evaluate
from simulation.storm import Storm, simulate
from topology.load import load_topology
from topology.samples import HEAT_CSV, POWER_CSV

SEEDS = (1, 2, 3)


@dataclass(frozen=True)
class Scenario:
    name: str
    network: str  # "heat" | "power"
    storm: Storm


SCENARIOS = tuple(
    Scenario(
        f"{network} {day}{' scada' if scada else ''}",
        network,
        Storm(
            faults=faults,
            noise_calls=noise,
            scada=scada,
            # With SCADA, one fault is on a telemetered device (feeder, heat substation).
            telemetered_faults=1 if scada else 0,
            spread_minutes=spread,
        ),
    )
    for network in ("heat", "power")
    for day, faults, noise, spread in (("quiet", 1, 8, 480), ("storm", 5, 25, 180))
    for scada in (False, True)
)


class SuiteRow(BaseModel):
    scenario: str
    faults: int
    detected: int
    exact: int
    on_path: int
    calls_attached: float
    noise_calls: int
    noise_attached: int
    false_incidents: int
    median_minutes_to_detect: float | None


def run_suite(rules: CorrelationRules) -> list[SuiteRow]:
    networks = {"heat": load_topology(HEAT_CSV), "power": load_topology(POWER_CSV)}
    rows = []
    for scenario in SCENARIOS:
        topology = networks[scenario.network]
        faults = detected = exact = on_path = noise = noise_attached = false = 0
        shares: list[float] = []
        minutes: list[float] = []
        for seed in SEEDS:
            storm = Storm(**{**scenario.storm.__dict__, "seed": seed})
            events, truth = simulate(topology, storm)
            score = evaluate(Correlator(topology, rules), events, truth)
            faults += len(score.faults)
            detected += score.detected
            exact += score.exact
            on_path += score.on_path
            noise += score.noise_calls
            noise_attached += score.noise_calls_attached
            false += score.false_incidents
            shares += [f.calls_attached_share for f in score.faults]
            minutes += [
                f.minutes_to_detect for f in score.faults if f.minutes_to_detect is not None
            ]
        minutes.sort()
        rows.append(
            SuiteRow(
                scenario=scenario.name,
                faults=faults,
                detected=detected,
                exact=exact,
                on_path=on_path,
                calls_attached=round(sum(shares) / len(shares), 3) if shares else 0,
                noise_calls=noise,
                noise_attached=noise_attached,
                false_incidents=false,
                median_minutes_to_detect=minutes[len(minutes) // 2] if minutes else None,
            )
        )
    return rows


def table(rows: list[SuiteRow]) -> str:
    head = (
        "| scenario | faults | detected | exact | on path | calls attached | noise attached "
        "| false incidents | median min to detect |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r.scenario} | {r.faults} | {r.detected} | {r.exact} | {r.on_path} | "
        f"{r.calls_attached:.0%} | {r.noise_attached} / {r.noise_calls} | {r.false_incidents} | "
        f"{'-' if r.median_minutes_to_detect is None else f'{r.median_minutes_to_detect:.1f}'} |\n"
        for r in rows
    )
    return head + body
