"""The /metrics page (streams.web.exposition): the whole registry, or the samples asked for."""

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from streams.metrics import Metrics
from streams.web import exposition


def samples(page: bytes) -> dict[str, float]:
    return {
        s.name: s.value for f in text_string_to_metric_families(page.decode()) for s in f.samples
    }


def test_the_page_has_every_metric_and_no_creation_timestamps():
    m = Metrics(CollectorRegistry())
    m.events_applied.inc(3)
    page = samples(exposition(m.registry, ""))
    assert page["churnwatch_events_applied_total"] == 3
    assert "churnwatch_processing_latency_seconds_count" in page and len(page) > 50
    assert not [name for name in page if name.endswith("_created")]


def test_name_parameters_restrict_the_page_to_those_samples():
    m = Metrics(CollectorRegistry())
    m.events_applied.inc(3)
    m.duplicates_dropped.inc()
    query = "name[]=churnwatch_events_applied_total&name%5B%5D=churnwatch_duplicates_dropped_total"
    assert samples(exposition(m.registry, query)) == {
        "churnwatch_events_applied_total": 3.0,
        "churnwatch_duplicates_dropped_total": 1.0,
    }
    assert samples(exposition(m.registry, "name[]=churnwatch_no_such_metric")) == {}
    assert (
        samples(exposition(m.registry, "other=1")).keys()
        == samples(exposition(m.registry, "")).keys()
    )
