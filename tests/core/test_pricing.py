from __future__ import annotations

from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price

from agentwatch._pricing import DEFAULT_RATES, Pricer


@pytest.mark.parametrize(
    ("model", "provider"),
    [("gpt-4o", "openai"), ("gpt-4o-mini", None), ("claude-3-5-sonnet-latest", "anthropic"),
     ("llama3-70b-8192", "groq"), ("mistral-large-latest", None)],
)
def test_matches_genai_prices(model: str, provider: str | None) -> None:
    usage = Usage(input_tokens=12_000, cache_read_tokens=2_000, output_tokens=3_000)
    expected = calc_price(usage, model, provider_id=provider).total_price
    price = Pricer().price(model, provider, 12_000, 3_000, 2_000)
    assert price.estimated is False
    assert Decimal(str(price.cost_usd)).quantize(Decimal("1e-9")) == expected.quantize(Decimal("1e-9"))


def test_dated_model_names_match_their_family() -> None:
    pricer = Pricer()
    assert pricer.price("gpt-4o-2024-11-20", "openai", 1_000_000, 0).cost_usd == \
        pricer.price("gpt-4o", "openai", 1_000_000, 0).cost_usd
    assert pricer.price("openai/gpt-4o-mini", None, 1_000_000, 0).cost_usd == \
        pricer.price("gpt-4o-mini", "openai", 1_000_000, 0).cost_usd


def test_cached_tokens_are_cheaper_than_uncached() -> None:
    pricer = Pricer()
    full = pricer.price("gpt-4o", "openai", 1_000_000, 0, 0).cost_usd
    half_cached = pricer.price("gpt-4o", "openai", 1_000_000, 0, 500_000).cost_usd
    assert half_cached < full


def test_tiered_prices_apply_above_the_threshold() -> None:
    usage_small = Usage(input_tokens=100_000, output_tokens=1_000)
    usage_large = Usage(input_tokens=300_000, output_tokens=1_000)
    pricer = Pricer()
    for usage in (usage_small, usage_large):
        expected = calc_price(usage, "gemini-1.5-pro", provider_id="google").total_price
        got = pricer.price("gemini-1.5-pro", "google", usage.input_tokens or 0, usage.output_tokens or 0)
        assert abs(Decimal(str(got.cost_usd)) - expected) < Decimal("1e-9")


def test_override_wins_with_prefix_matching() -> None:
    pricer = Pricer({"my-model": {"input": 3.0, "output": 6.0, "cached_input": 1.0}})
    price = pricer.price("my-model-v2", None, 2_000_000, 1_000_000, 1_000_000)
    assert price.cost_usd == pytest.approx(1 * 3.0 + 1 * 1.0 + 1 * 6.0)
    assert price.source == "cost_table_override"
    assert pricer.price("gpt-4o", "openai", 1_000_000, 0).cost_usd == pytest.approx(2.5)
    overridden = Pricer({"gpt-4o": {"input": 100.0, "output": 200.0}})
    assert overridden.price("gpt-4o", "openai", 1_000_000, 0).cost_usd == pytest.approx(100.0)


def test_unknown_model_uses_flagged_default() -> None:
    price = Pricer().price("totally-unknown-model-xyz", None, 1_000_000, 1_000_000)
    assert price.estimated is True
    assert price.cost_usd == pytest.approx(DEFAULT_RATES[0] + DEFAULT_RATES[1])


def test_local_providers_cost_nothing() -> None:
    price = Pricer().price("llama3.2", "ollama", 1_000_000, 1_000_000)
    assert price.cost_usd == 0.0 and price.estimated is False
