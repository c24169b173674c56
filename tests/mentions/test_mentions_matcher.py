"""The text matcher: makes named by hashtags, handles, brand and model names, and the false friends it ignores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carspot.mentions.aliases import AliasError, build_table, load_aliases
from carspot.mentions.matcher import Via, find_mentions, mentioned_makes
from carspot.mentions.rerank import rerank

ROOT = Path(__file__).resolve().parents[2]
TABLE = load_aliases()


def makes(text: str) -> set[str]:
    return set(mentioned_makes(text, table=TABLE))


def test_the_table_covers_exactly_the_released_models_vocabulary() -> None:
    manifests = sorted((ROOT / "models" / "versions").glob("*/manifest.json"))
    assert manifests
    for manifest in manifests:
        assert set(json.loads(manifest.read_text())["labels"]) == TABLE.makes, manifest


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Loving my new #mazda3", {"Mazda"}),
        ("Thanks @Toyota for the service", {"Toyota"}),
        ("Qashqai for sale, one owner", {"Nissan"}),
        ("Mercedes-Benz, a Merc, a mercedes benz and MercedesBenz", {"Mercedes-Benz"}),
        ("VW and vw", {"Volkswagen"}),
        ("#bmwlife #vwgolf #ToyotaCorolla", {"BMW", "Volkswagen", "Toyota"}),
        ("Spotted: LAMBORGHÍNI Huracán and a Citroën", {"Lamborghini"}),
        ("Audis and BMWs everywhere", {"Audi", "BMW"}),
        ("CX-5 or cx5?", {"Mazda"}),
        ("Land Rover Defender", {"Land Rover"}),
        ("Alfa Romeo Giulia next to a Rolls-Royce", {"Alfa Romeo", "Rolls-Royce"}),
    ],
)
def test_names_models_hashtags_and_handles_name_their_make(text: str, expected: set[str]) -> None:
    assert makes(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Harrison Ford at the premiere",
        "#HarrisonFord signing autographs",
        "a cute mini skirt",
        "a jaguar sleeping at the zoo",
        "smart people read the manual... of life",
        "Genesis reunion concert tonight",
        "Nikola Tesla invented the Tesla coil",
        "Abraham Lincoln memorial",
        "#audience #fordham",
        "Fordson, Audible, Kiama: parts of other words",
        "tl;dr the ram broke the fence",
    ],
)
def test_false_friends_name_no_make(text: str) -> None:
    assert makes(text) == set()


def test_a_weak_name_counts_in_a_post_about_cars() -> None:
    assert makes("my new jaguar") == set()
    assert makes("my new jaguar, what a car") == {"Jaguar"}
    assert makes("smart car parked on the kerb") == {"smart"}
    assert makes("Dodge Challenger") == {"Dodge"}  # two weak names of one make vouch for each other
    assert makes("@Jaguar thanks") == {"Jaguar"}  # a handle is the brand's own account
    assert makes("Harrison Ford drives a Porsche") == {"Porsche"}


def test_each_make_is_reported_once_with_its_strongest_way() -> None:
    found = find_mentions("Ford Focus RS, thanks @Ford #ford", table=TABLE)
    assert [(m.make, m.via) for m in found] == [("Ford", Via.HANDLE)]


def test_no_text_names_nothing() -> None:
    assert find_mentions(None, table=TABLE) == ()
    assert find_mentions("", table=TABLE) == ()
    assert find_mentions("🚗🚗 !!! ###", table=TABLE) == ()


def test_an_alias_given_to_two_makes_is_refused() -> None:
    with pytest.raises(AliasError, match="already"):
        build_table({"A": {"names": ["Zed"]}, "B": {"names": ["zed"]}})
    with pytest.raises(AliasError, match="expected a table"):
        build_table({"A": {"names": ["Zed"], "colour": ["red"]}})


def test_rerank_moves_named_makes_first_and_keeps_the_rest_in_order() -> None:
    top5 = ["Audi", "BMW", "Volkswagen", "Skoda", "Seat"]
    assert rerank(top5, {"Volkswagen"}) == ["Volkswagen", "Audi", "BMW", "Skoda", "Seat"]
    assert rerank(top5, {"Ferrari"}) == top5
    assert rerank(top5, set()) == top5
