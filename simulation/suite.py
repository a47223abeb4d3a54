"""The fixed scenario suite every change to correlation is judged by (docs/QUALITY.md).

Heating and power, a quiet day and a storm, with and without SCADA, three seeds each, on
networks of realistic size (`simulation.networks`). Noise scales with the network: a quiet day
has unrelated calls from 0.5 % of the premises over 8 hours, a storm from 1 % over 3 hours.
Totals per scenario, so two rule sets compare at a glance.
"""

from dataclasses import dataclass, replace

from pydantic import BaseModel

from correlators.correlator import Correlator
from correlators.rules import CorrelationRules
from simulation.evaluate import evaluate
from simulation.networks import network
from simulation.storm import Storm, simulate

SEEDS = (1, 2, 3)
NETWORKS = ("heat-district", "lv_schutterwald", "mv_oberrhein")


@dataclass(frozen=True)
class Scenario:
    name: str
    network: str  # a name `simulation.networks.network` knows
    storm: Storm
    noise_share: float  # unrelated calls, as a share of the network's premises


def scenarios(networks: tuple[str, ...] = NETWORKS) -> tuple[Scenario, ...]:
    return tuple(
        Scenario(
            f"{name} {day}{' scada' if scada else ''}",
            name,
            Storm(
                faults=faults,
                scada=scada,
                # With SCADA, one fault is on a telemetered device (feeder, heat substation).
                telemetered_faults=1 if scada else 0,
                # An area fault: one flat without supply is an individual fault, not a test
                # of correlation.
                min_premises=4,
                spread_minutes=spread,
            ),
            noise,
        )
        for name in networks
        for day, faults, noise, spread in (("quiet", 1, 0.005, 480), ("storm", 5, 0.01, 180))
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


def run_suite(rules: CorrelationRules, networks: tuple[str, ...] = NETWORKS) -> list[SuiteRow]:
    rows = []
    for scenario in scenarios(networks):
        topology = network(scenario.network)
        premises = sum(1 for n in topology.nodes.values() if n.kind == "premise")
        faults = detected = exact = on_path = noise = noise_attached = false = 0
        shares: list[float] = []
        minutes: list[float] = []
        for seed in SEEDS:
            storm = replace(
                scenario.storm, seed=seed, noise_calls=round(premises * scenario.noise_share)
            )
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
