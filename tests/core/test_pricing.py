"""Prices against the providers' published per-1M-token rates, written here by hand: a wrong rate, a cached
token priced as uncached, or a cache write priced as a read fails these tests whatever the code computes.

Rates (USD per 1M tokens) as published and as genai-prices 0.2.3 holds them:
- OpenAI gpt-4o: $2.50 input, $1.25 cached input, $10.00 output (https://openai.com/api/pricing/).
- Anthropic Claude Sonnet 4 / 3.5 Sonnet: $3.00 input, $0.30 cache read, $3.75 cache write (5 min),
  $15.00 output (https://www.anthropic.com/pricing#api).
- Google Gemini 1.5 Pro: $1.25 input / $5.00 output up to 128k prompt tokens, $2.50 / $10.00 above
  (https://ai.google.dev/gemini-api/docs/pricing, 2024).
- Groq llama3-70b-8192: $0.59 input, $0.79 output; Mistral Large: $2.00 input, $6.00 output.
- Unknown models: AgentWatch's documented default, $1.00 input and $2.00 output (README, "Pricing").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import agentwatch
from agentwatch._pricing import Pricer
from agentwatch.instrumentation import normalize_anthropic_usage

_M = 1_000_000


def _cost_via_price(pricer: Pricer, *args: Any) -> tuple[float, bool]:
    price = pricer.price(*args)
    return price.cost_usd, price.estimated


def _cost_via_cost(pricer: Pricer, *args: Any) -> tuple[float, bool]:
    return pricer.cost(*args)


#: ``price()`` (the API) and ``cost()`` (the per-call path, which inlines the formula) must agree with the rates.
PATHS = pytest.mark.parametrize("priced", [_cost_via_price, _cost_via_cost], ids=["price", "cost"])
Priced = Callable[..., tuple[float, bool]]


@PATHS
def test_openai_gpt_4o_with_cached_input(priced: Priced) -> None:
    # 1M input tokens of which 400k were cached (OpenAI counts cached tokens inside input), 100k output.
    cost, estimated = priced(Pricer(), "gpt-4o", "openai", 1_000_000, 100_000, 400_000)

    expected = 600_000 * 2.50 / _M + 400_000 * 1.25 / _M + 100_000 * 10.00 / _M  # = 3.00
    assert cost == pytest.approx(expected, rel=1e-9) and estimated is False
    assert cost == pytest.approx(3.00, rel=1e-9)


@PATHS
def test_openai_cached_tokens_cost_half(priced: Priced) -> None:
    uncached, _ = priced(Pricer(), "gpt-4o", "openai", 1_000_000, 0, 0)
    all_cached, _ = priced(Pricer(), "gpt-4o", "openai", 1_000_000, 0, 1_000_000)

    assert uncached == pytest.approx(2.50, rel=1e-9)
    assert all_cached == pytest.approx(1.25, rel=1e-9)


@PATHS
@pytest.mark.parametrize("model", ["claude-3-5-sonnet-latest", "claude-sonnet-4-20250514"])
def test_anthropic_sonnet_with_cache_reads_and_writes(priced: Priced, model: str) -> None:
    # Normalised usage (span convention): input includes 200k cache reads and 100k cache writes; 1k uncached.
    cost, estimated = priced(Pricer(), model, "anthropic", 301_000, 10_000, 200_000, 100_000)

    expected = 1_000 * 3.00 / _M + 200_000 * 0.30 / _M + 100_000 * 3.75 / _M + 10_000 * 15.00 / _M
    assert cost == pytest.approx(expected, rel=1e-9) and estimated is False
    assert cost == pytest.approx(0.588, rel=1e-9)


@PATHS
def test_anthropic_cache_write_is_dearer_than_a_read(priced: Priced) -> None:
    read, _ = priced(Pricer(), "claude-sonnet-4-0", "anthropic", _M, 0, _M, 0)
    write, _ = priced(Pricer(), "claude-sonnet-4-0", "anthropic", _M, 0, 0, _M)

    assert read == pytest.approx(0.30, rel=1e-9)
    assert write == pytest.approx(3.75, rel=1e-9)


@PATHS
@pytest.mark.parametrize(("model", "provider", "expected"), [
    ("gpt-4o-mini", None, 12_000 * 0.15 / _M + 3_000 * 0.60 / _M),
    ("llama3-70b-8192", "groq", 12_000 * 0.59 / _M + 3_000 * 0.79 / _M),
    ("mistral-large-latest", None, 12_000 * 2.00 / _M + 3_000 * 6.00 / _M),
])
def test_other_published_rates(priced: Priced, model: str, provider: str | None, expected: float) -> None:
    cost, estimated = priced(Pricer(), model, provider, 12_000, 3_000)

    assert cost == pytest.approx(expected, rel=1e-9) and estimated is False


@PATHS
def test_tiered_prices_apply_above_the_threshold(priced: Priced) -> None:
    small, _ = priced(Pricer(), "gemini-1.5-pro", "google", 100_000, 1_000)
    large, _ = priced(Pricer(), "gemini-1.5-pro", "google", 300_000, 1_000)

    assert small == pytest.approx(100_000 * 1.25 / _M + 1_000 * 5.00 / _M, rel=1e-9)
    assert large == pytest.approx(300_000 * 2.50 / _M + 1_000 * 10.00 / _M, rel=1e-9)


@PATHS
@pytest.mark.parametrize(("model", "provider"), [("totally-unknown-model-xyz", None),
                                                 ("totally-unknown-model-xyz", "acme"), (None, None)])
def test_unknown_model_uses_the_flagged_default(priced: Priced, model: str | None, provider: str | None) -> None:
    cost, estimated = priced(Pricer(), model, provider, 2_000_000, 500_000)

    assert cost == pytest.approx(2 * 1.00 + 0.5 * 2.00, rel=1e-9)
    assert estimated is True


def test_dated_model_names_match_their_family() -> None:
    pricer = Pricer()
    assert pricer.price("gpt-4o-2024-11-20", "openai", _M, 0).cost_usd == pytest.approx(2.50)
    assert pricer.price("openai/gpt-4o-mini", None, _M, 0).cost_usd == pytest.approx(0.15)


def test_override_wins_with_prefix_matching() -> None:
    pricer = Pricer({"my-model": {"input": 3.0, "output": 6.0, "cached_input": 1.0}})
    price = pricer.price("my-model-v2", None, 2_000_000, 1_000_000, 1_000_000)
    assert price.cost_usd == pytest.approx(1 * 3.0 + 1 * 1.0 + 1 * 6.0)
    assert price.source == "cost_table_override"
    assert pricer.price("gpt-4o", "openai", _M, 0).cost_usd == pytest.approx(2.5)
    overridden = Pricer({"gpt-4o": {"input": 100.0, "output": 200.0}})
    assert overridden.price("gpt-4o", "openai", _M, 0).cost_usd == pytest.approx(100.0)


def test_span_cost_of_a_cached_call(memory: agentwatch.InMemoryExporter) -> None:
    """The recorded span (what budgets count) carries the same published price."""
    agentwatch.init(exporters=[memory])
    with agentwatch.llm_call("chat", model="gpt-4o", provider="openai") as call:
        call.set_usage(input_tokens=1_000_000, output_tokens=100_000, cached_input_tokens=400_000)
    agentwatch.flush()

    [span] = memory.by_kind("llm")
    assert span["cost_usd"] == pytest.approx(3.00, rel=1e-9)
    assert "cost_estimated" not in span["attributes"]


# ---- local models and test doubles cost nothing ---------------------------------------------------------------

@PATHS
@pytest.mark.parametrize(("model", "provider"), [
    ("llama3.2", "ollama"), ("qwen2.5", "llamacpp"), ("phi-3", "lmstudio"), ("gpt2", "huggingfacepipeline"),
    ("BAAI/bge-small-en-v1.5", "huggingface_local"),
    # LlamaIndex MockLLM / MockEmbedding (no model name), as the plugin reports them.
    (None, "mock"),
    # LangChain's fakes, by the ls_provider LangChain derives from the class name.
    (None, "fakelistchatmodel"), (None, "genericfakechatmodel"), (None, "fakemessageslistchatmodel"),
    (None, "parrotfakechatmodel"), (None, "fakelist"), (None, "fakestreaminglist"),
    ("fake-model", None), ("mock-gpt", "openai"),
])
def test_local_models_and_test_doubles_cost_nothing(priced: Priced, model: str | None,
                                                    provider: str | None) -> None:
    cost, estimated = priced(Pricer(), model, provider, _M, _M, 100_000)

    assert cost == 0.0 and estimated is False


def test_an_override_still_prices_a_local_model() -> None:
    pricer = Pricer({"llama3.2": {"input": 0.5, "output": 1.0}})
    assert pricer.price("llama3.2", "ollama", _M, _M).cost_usd == pytest.approx(1.5)


# ---- the shipped index: genai-prices' own answers, read without importing genai-prices -----------------------

def test_the_shipped_index_gives_genai_prices_answers() -> None:
    """Every line of ``_price_index`` equals what the table answers now; fails when genai-prices was upgraded
    without regenerating it (``python -m agentwatch._pricing``)."""
    from datetime import UTC, datetime

    from agentwatch import _price_index, _pricing

    assert _pricing._index_matches_installed()
    lines = _price_index.INDEX.strip("\n").split("\n")
    assert len(lines) > 1000
    for line in lines:
        provider, model, field = line.split("\t")
        found = _pricing._find_in_own_provider(model, provider or None) or _pricing._find_in_table(
            model, provider or None)
        expected = _pricing._rates_of(found[1].get_prices(datetime.now(tz=UTC))) if found else None
        assert _pricing._parse_indexed(field) == expected, line


def test_first_priced_call_reads_the_index_not_genai_prices() -> None:
    import json
    import subprocess
    import sys

    program = ("import json, sys\nfrom agentwatch._pricing import Pricer\n"
               "cost = Pricer().cost('gpt-4o', 'openai', 1_000_000, 100_000, 400_000)\n"
               "print(json.dumps([cost, 'genai_prices' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60)
    (cost, estimated), imported = json.loads(done.stdout)
    assert cost == pytest.approx(3.00, rel=1e-9) and estimated is False
    assert imported is False


def test_dated_prices_in_the_index_follow_todays_date() -> None:
    from agentwatch import _pricing

    rates = _pricing._parse_indexed("|1.0,2.0,3.0,4.0,4.0|| 2000-01-01|5.0,6.0,7.0,8.0,8.5||web_search_requests=0.01"
                                    " 2999-01-01|9.0,9.0,9.0,9.0,9.0||")
    assert rates is not None and (rates.input, rates.output, rates.cache_read, rates.cache_write) == (5, 6, 7, 8)
    assert rates.cache_write_1h == 8.5 and rates.per_unit == (("web_search_requests", 0.01),)
    before_all = _pricing._parse_indexed("2999-01-01|9.0,9.0,9.0,9.0,9.0|1000,1.0,2.0,3.0,4.0,5.0|")
    assert before_all is not None and before_all.input == 9.0
    assert before_all.tiers == ((1000, 1.0, 2.0, 3.0, 4.0, 5.0),) and before_all.per_unit == ()
    assert _pricing._parse_indexed("-") is None


def test_a_custom_snapshot_is_asked_instead_of_the_index() -> None:
    from decimal import Decimal

    from genai_prices import data_snapshot, types

    model = types.ModelInfo(id="gpt-4o", match=types.ClauseEquals(equals="gpt-4o"),
                            prices=types.ModelPrice(input_mtok=Decimal(100), output_mtok=Decimal(200)))
    provider = types.Provider(id="openai", name="OpenAI", api_pattern="", models=[model])
    data_snapshot.set_custom_snapshot(data_snapshot.DataSnapshot(providers=[provider], from_auto_update=False))
    try:
        assert Pricer().price("gpt-4o", "openai", _M, _M).cost_usd == pytest.approx(300.0)
    finally:
        data_snapshot.set_custom_snapshot(None)
    assert Pricer().price("gpt-4o", "openai", _M, _M).cost_usd == pytest.approx(12.5)


def test_names_the_index_lacks_are_remembered_for_the_next_process(tmp_path: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from agentwatch import _pricing

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(_pricing, "_remembered_text", None)
    assert _pricing._indexed_rates("gpt-4o-2024-11-20", "openai") is _pricing._NOT_INDEXED

    first = Pricer().price("gpt-4o-2024-11-20", "openai", _M, _M)  # answered by the table, then remembered
    monkeypatch.setattr(_pricing, "_remembered_text", None)  # as a new process: read back from the file
    remembered = _pricing._indexed_rates("gpt-4o-2024-11-20", "openai")

    assert (tmp_path / "agentwatch").is_dir() and any((tmp_path / "agentwatch").glob("prices-*.tsv"))
    assert remembered is not _pricing._NOT_INDEXED
    assert Pricer().price("gpt-4o-2024-11-20", "openai", _M, _M) == first
    assert first.cost_usd == pytest.approx(2.50 + 10.00)  # a dated alias of gpt-4o, matched by its clause


def test_an_index_built_for_another_genai_prices_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentwatch import _pricing

    monkeypatch.setattr(_pricing, "_index_usable", None)
    monkeypatch.setattr("agentwatch._price_index.DATA_SIZE", -1)
    assert _pricing._indexed_rates("gpt-4o", "openai") is _pricing._NOT_INDEXED
    assert Pricer().price("gpt-4o", "openai", _M, 0).cost_usd == pytest.approx(2.5)  # from the table


# ---- per-request prices (web searches) -------------------------------------------------------------------------

def test_billable_units_are_priced_from_the_table(memory: agentwatch.InMemoryExporter) -> None:
    # $10 per 1,000 web searches for Claude and for gpt-4o (their price pages; genai-prices' web_searches_kcount);
    # Mistral Large has no web search price: its searches are recorded, not charged.
    client = agentwatch.init(exporters=[memory], budget_per_hour=100.0)
    for model, provider in (("claude-sonnet-4-5", "anthropic"), ("gpt-4o", "openai"),
                            ("mistral-large-latest", "mistral")):
        with agentwatch.llm_call(model=model, provider=provider) as call:
            call.set_usage(1000, 100)
            call.set_billable("web_search_requests", 3)
    agentwatch.flush()
    claude, gpt, mistral = (span for span in memory.spans if span["kind"] == "llm")
    assert claude["cost_usd"] == pytest.approx(1000 * 3.00 / _M + 100 * 15.00 / _M + 0.03, rel=1e-9)
    assert gpt["cost_usd"] == pytest.approx(1000 * 2.50 / _M + 100 * 10.00 / _M + 0.03, rel=1e-9)
    assert mistral["cost_usd"] == pytest.approx(1000 * 2.00 / _M + 100 * 6.00 / _M, rel=1e-9)
    assert [span["attributes"]["web_search_requests"] for span in (claude, gpt, mistral)] == [3, 3, 3]
    spent = sum(span["cost_usd"] for span in (claude, gpt, mistral))
    assert client.monitor.snapshot()["spend_last_hour"] == pytest.approx(spent, rel=1e-9)


def test_billable_units_in_an_override() -> None:
    # An override's per-unit rate is per 1,000, as providers quote it; without one, the unit costs nothing.
    pricer = Pricer({"my-model": {"input": 1.0, "output": 2.0, "web_search_requests": 25.0}})
    assert pricer.price("my-model", None, _M, 0, units={"web_search_requests": 4}).cost_usd == pytest.approx(1.1)
    assert Pricer({"x": {"input": 1.0, "output": 2.0}}).price("x", None, _M, 0,
                                                               units={"web_search_requests": 4}).cost_usd == 1.0


# ---- Anthropic's 1-hour cache writes: $6.00 per 1M on Sonnet 4.5 ($12.00 above 200k input tokens), 2x input --------

@pytest.mark.parametrize(("input_tokens", "rates"), [(10_000, (3.00, 3.75, 6.00, 15.00)),
                                                      (300_000, (6.00, 7.50, 12.00, 22.50))], ids=["base", "tier"])
def test_one_hour_cache_writes_cost_their_own_rate(input_tokens: int, rates: tuple[float, ...]) -> None:
    rate_in, rate_5m, rate_1h, rate_out = rates
    # Of 9,000 cache writes (inside input, span convention), 4,000 for one hour.
    price = Pricer().price("claude-sonnet-4-5", "anthropic", input_tokens, 1_000, 0, 9_000,
                           cache_write_1h_tokens=4_000)
    expected = ((input_tokens - 9_000) * rate_in + 5_000 * rate_5m + 4_000 * rate_1h + 1_000 * rate_out) / _M
    assert price.cost_usd == pytest.approx(expected, rel=1e-9) and price.estimated is False


def test_a_call_with_one_hour_cache_writes(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    with agentwatch.llm_call(model="claude-sonnet-4-5", provider="anthropic") as call:
        call.set_usage(**normalize_anthropic_usage(50, 20, 0, 3000, 3000))
    agentwatch.flush()
    [span] = memory.by_kind("llm")
    assert span["cost_usd"] == pytest.approx((50 * 3.00 + 3000 * 6.00 + 20 * 15.00) / _M, rel=1e-9)
    assert span["attributes"]["cache_write_1h_tokens"] == 3000
    # A model without a 1-hour price (gpt-4o) charges those writes as any cache write (as genai-prices does).
    assert Pricer().price("gpt-4o", "openai", 3050, 20, 0, 3000, cache_write_1h_tokens=3000).cost_usd == \
        pytest.approx(Pricer().price("gpt-4o", "openai", 3050, 20, 0, 3000).cost_usd)


@pytest.mark.parametrize("index", ["shipped index", "genai-prices table"])
def test_model_names_made_up_per_call_do_not_grow_the_rate_caches_forever(monkeypatch: pytest.MonkeyPatch,
                                                                          index: str) -> None:
    """Found 2026-12-06 by review: the per-(provider, model) caches of resolved rates had no bound, so a proxy naming
    each request's model anew (a per-request alias) grew them by one entry a call for the life of the process. And
    where the table answers (another genai-prices version than the shipped index's, a custom snapshot), genai-prices'
    shared snapshot kept every name it was asked for: ~380 bytes a name (found by CI, 2026-12-06)."""
    import tracemalloc

    import agentwatch._pricing as pricing

    monkeypatch.setattr(pricing, "_CACHED_MODELS_MAX", 50)  # the bound, small: each unknown name costs a lookup
    if index == "genai-prices table":
        monkeypatch.setattr(pricing, "_index_usable", False)
    pricer = Pricer()
    for number in range(100):  # the caches reach their bound
        pricer.cost(f"alias-{number}", "openai", 100, 10)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for number in range(100, 1_100):
        pricer.cost(f"alias-{number}", "openai", 100, 10)
    grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    assert grown < 100_000, f"{grown} bytes kept for 1,000 made-up model names"
    assert pricer.cost("gpt-4o", "openai", 1_000_000, 0) == (2.5, False)  # known models are still priced
