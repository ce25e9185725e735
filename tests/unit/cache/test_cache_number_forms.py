from __future__ import annotations

import pytest

from services.cache.number_forms import canonical_numbers


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("a $25k loan", "a 25000 dollars loan"),
        ("storing 1M rows", "storing 1000000 rows"),
        ("a $1.5M estate", "a 1500000 dollars estate"),
        ("7B parameters", "7000000000 parameters"),
        ("a 25,000 dollar loan", "a 25,000 dollars loan"),
        ("sixty thousand dollars", "60000 dollars"),
        ("five hundred twelve megabytes", "512 megabytes"),
        ("512 MB", "512 megabytes"),
        ("one hundred and five", "105"),
        ("thirty-eight and a half degrees Celsius", "38.5 celsius"),
        ("38,5 °C", "38.5 celsius"),
        ("three point seven five", "3.75"),
        ("7½ percent", "7.5 percent"),
        ("15%", "15 percent"),
        ("veintiuno por ciento", "veintiuno percent"),
        ("at 6:45 pm", "at 18:45"),
        ("at 11 p.m.", "at 23:00"),
        ("12 am", "0:00"),
        ("1.000 € brutto", "1000 euros brutto"),
        ("viertausend Euro", "4000 euros"),
        ("mille kilomètres", "1000000 meters"),
        ("1 000 km", "1000000 meters"),
        ("a 30s timeout", "a 30 seconds timeout"),
        ("a thirty-second timeout", "a 30 seconds timeout"),
        ("a 90-minute layover", "a 5400 seconds layover"),
        ("40 hrs/week", "144000 seconds per week"),
        ("20 km/h", "20000 meters per hour"),
        ("twenty kilometres per hour", "20000 meters per hour"),
        ("100 km/s", "100000 meters per second"),
        ("one kilowatt-hour", "1 kilowatt-hours"),
        (".1 + .2", "0.1 + 0.2"),
        ("a 2-year-old", "a 2 year-old"),
        ("150 million km", "150000000000 meters"),
        ("1,500 million", "1500000000"),
        ("2 kg", "2000 grams"),
        ("half a liter and 0.5 l", "half a liters and 500 milliliters"),
        ("1,5 Millionen Euro", "1500000 euros"),
        ("150 miljoen km", "150000000000 meters"),
        ("a las 6:45 de la mañana", "a las 6:45"),
        ("à 2h05 de l'après-midi", "à 14:05"),
        ("part à 14h05", "part à 14:05"),
        ("um 10 Uhr abends", "um 22:00"),
        ("at 06:45", "at 6:45"),
    ],
)
def test_each_spelling_becomes_one_form(text: str, canonical: str) -> None:
    assert canonical_numbers(text) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "one of them",  # an article as often as a number
        "five twenty",  # a list or a time, not 25
        "twenty twelve",  # a year
        "k8s and i18n",  # digits inside a word are no quantity
        "[1,2,3]",  # a list, not a decimal
        "the second try and opening hours",  # time's names without a number
        "a 5 cent coin",  # English "cent" is no hundred
        "version 1.2.300",
        "a 1h30 layover",  # another unit's value stays as written
        "5m",  # minutes, meters or millions
        "2 Mbps",  # a capital scale only on its own before a word
        "the B2B market",
    ],
)
def test_what_is_not_a_spelling_of_a_number_stays(text: str) -> None:
    assert canonical_numbers(text) == text


def test_code_is_left_as_written() -> None:
    text = "Why does `sleep 30s` differ from 30s in ```\nx = 1,5\n```?"
    assert canonical_numbers(text) == (
        "Why does `sleep 30s` differ from 30 seconds in ```\nx = 1,5\n```?"
    )
