"""The storm simulator (seeded, truthful) and the scoring of correlation against its truth."""

from correlators.correlator import Correlator
from correlators.rules import CorrelationRules
from simulation.evaluate import evaluate
from simulation.storm import Storm, simulate
from topology.load import load_topology
from topology.samples import HEAT_CSV, POWER_CSV

HEAT = load_topology(HEAT_CSV)
POWER = load_topology(POWER_CSV)
RULES = CorrelationRules.load()


def test_the_same_seed_gives_the_same_storm() -> None:
    """Seeded and reproducible: equal seeds, equal events and truth; another seed differs."""
    first = simulate(POWER, Storm(seed=5))
    again = simulate(POWER, Storm(seed=5))
    other = simulate(POWER, Storm(seed=6))
    assert [e.model_dump() for e in first[0]] == [e.model_dump() for e in again[0]]
    assert first[1] == again[1]
    assert [e.event_id for e in first[0]] != [e.event_id for e in other[0]]


def test_the_truth_matches_the_events() -> None:
    """Each truth call is an event at a premise under its fault; SCADA only where telemetered."""
    events, truth = simulate(POWER, Storm(seed=9, faults=4, devices=("FDR-2", "B-FDR1-T1-F1-1")))
    by_id = {e.event_id: e for e in events}
    for fault in truth.faults:
        for call_id in fault.call_ids:
            assert POWER.covers(fault.device_id, by_id[call_id].premise_id)
        signals = [e for e in events if e.type == "scada_signal" and e.device_id == fault.device_id]
        assert bool(signals) == fault.telemetered == (fault.device_kind == "feeder")
    assert set(truth.noise_call_ids) <= set(by_id)
    assert [e.occurred_at for e in events] == sorted(e.occurred_at for e in events)


def test_no_scada_means_no_signals() -> None:
    """With telemetry off, faults are known from calls only."""
    events, _ = simulate(POWER, Storm(seed=9, devices=("FDR-2",), scada=False))
    assert not [e for e in events if e.type == "scada_signal"]


def test_a_building_whose_flats_all_call_is_found_exactly_at_the_third_call() -> None:
    """Known answer: the building, every call attached, detected with the third distinct flat."""
    storm = Storm(
        seed=1,
        devices=("B-HSUB1-2",),
        call_share=1.0,
        whole_building_share=0.0,
        repeat_share=0.0,
        noise_calls=0,
    )
    events, truth = simulate(HEAT, storm)
    score = evaluate(Correlator(HEAT, RULES), events, truth)
    fault = score.faults[0]
    assert (fault.placement, fault.incident_device) == ("exact", "B-HSUB1-2")
    assert fault.calls == 12 and fault.calls_attached_share == 1.0
    assert fault.calls_before_detection == 3
    assert (score.detected, score.exact, score.false_incidents) == (1, 1, 0)


def test_a_fault_nobody_reports_is_missed() -> None:
    """No caller and no telemetry: the score says missed, not found."""
    storm = Storm(seed=1, devices=("B-HSUB2-1",), call_share=0.0, noise_calls=0, scada=False)
    events, truth = simulate(HEAT, storm)
    score = evaluate(Correlator(HEAT, RULES), events, truth)
    assert score.faults[0].placement == "missed" and score.detected == 0


def test_noise_alone_makes_no_incident() -> None:
    """Scattered single calls stay individual: no false incident, no noise attached."""
    events, truth = simulate(POWER, Storm(seed=2, faults=0, noise_calls=15))
    score = evaluate(Correlator(POWER, RULES), events, truth)
    assert (score.false_incidents, score.noise_calls_attached, score.noise_calls) == (0, 0, 15)


def test_a_telemetered_fault_without_calls_is_found_by_scada() -> None:
    """A feeder trip with no caller yet: detected at the exact device by the signal alone."""
    storm = Storm(seed=4, devices=("FDR-3",), call_share=0.0, noise_calls=0)
    events, truth = simulate(POWER, storm)
    score = evaluate(Correlator(POWER, RULES), events, truth)
    assert (score.faults[0].placement, score.faults[0].minutes_to_detect) == ("exact", 0.0)


def test_the_quality_suite_covers_both_networks_and_is_reproducible() -> None:
    """Four scenarios per network (quiet/storm x SCADA), each scored the same way twice."""
    from simulation.suite import run_suite

    networks = ("heat-sample", "power-sample")
    rows = run_suite(RULES, networks)
    assert len(rows) == 8 and {r.scenario.split()[0] for r in rows} == set(networks)
    assert all(r.detected <= r.faults and r.exact <= r.on_path <= r.detected for r in rows)
    assert run_suite(RULES, networks) == rows
