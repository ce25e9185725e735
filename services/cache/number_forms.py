"""One spelling for each number, time, percentage, currency and unit in a question.

"$25k", "25,000 dollars" and "twenty-five thousand dollars" are one amount;
"6:45 pm" and "18:45" one time; "38,5 °C" and "38.5 °C" one temperature; "2 GB" and
"2 gigabytes" one size. The verification guard compares numbers by value and the
words around them one by one, so each form is rewritten to one before it reads a
text. Only spellings are unified: a value in other units ("2 kg" against "2000
g", "1h30" against "90 minutes") stays a different value, since converting one
way or the other is the near-miss a unit swap makes. Code is left as written.
"""

from __future__ import annotations

import re

__all__ = ["canonical_numbers"]

_UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
# The scale words of the other languages, alone or after digits (see
# _SCALE_WORDS): "mille kilomètres", "mil euros", "4 mil". (Not French "cent":
# English has it too.)
_FOREIGN_SCALES = {"cien": 100, "cento": 100, "mille": 1_000, "mil": 1_000}
_GERMAN_DIGITS = {
    "ein": 1,
    "zwei": 2,
    "drei": 3,
    "vier": 4,
    "fünf": 5,
    "sechs": 6,
    "sieben": 7,
    "acht": 8,
    "neun": 9,
    "zehn": 10,
}
_NUMBER_WORD = "|".join(sorted([*_UNITS, *_TENS, "hundred", *_SCALES], key=len)[::-1])
# A run of English number words: "five hundred twelve", "twenty-one", "sixty
# thousand", "three point seven five", "thirty-eight and a half".
_ENGLISH_RUN = re.compile(
    rf"\b(?:{_NUMBER_WORD})(?:(?:[\s-]+|\s+and\s+)(?:{_NUMBER_WORD}))*"
    rf"(?:\s+point(?:\s+(?:{'|'.join(list(_UNITS)[:10])}))+)?"
    rf"(?:\s+and\s+a\s+half)?\b",
    re.I,
)
_GERMAN_SCALED = re.compile(
    rf"\b({'|'.join(_GERMAN_DIGITS)})?(hundert|tausend)\b",
    re.I,
)
_FOREIGN_SCALE_ALONE = re.compile(
    rf"\b({'|'.join(_FOREIGN_SCALES)})\b(?=\s+[^\W\d_])", re.I
)
# A scale word after digits, in any language of the sets: "150 million",
# "1.5 Millionen", "150 miljoen".
_SCALE_WORDS = {
    **_SCALES,
    "millions": 1_000_000,
    "millionen": 1_000_000,
    "millones": 1_000_000,
    "milioni": 1_000_000,
    "milhões": 1_000_000,
    "miljoen": 1_000_000,
    "milliarden": 1_000_000_000,
    "milliards": 1_000_000_000,
    "miljard": 1_000_000_000,
    **_FOREIGN_SCALES,
}
_SCALE_AFTER_DIGITS = re.compile(
    r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+|,\d{1,2}(?!\d))?)\s+"
    rf"({'|'.join(_SCALE_WORDS)})\b",
    re.I,
)
# A time of day with the part of the day named in another language, or in
# French hours ("14h05"): "6:45 de la mañana" is 6:45, "2h05 de l'après-midi"
# 14:05.
_DAY_PARTS = {
    "de la mañana": "a",
    "du matin": "a",
    "di mattina": "a",
    "del mattino": "a",
    "da manhã": "a",
    "morgens": "a",
    "'s ochtends": "a",
    "de la tarde": "p",
    "de la noche": "p",
    "de l'après-midi": "p",
    "du soir": "p",
    "del pomeriggio": "p",
    "di sera": "p",
    "della sera": "p",
    "da tarde": "p",
    "da noite": "p",
    "nachmittags": "p",
    "abends": "p",
    "'s middags": "p",
    "'s avonds": "p",
}
_FOREIGN_CLOCK = re.compile(
    r"\b(\d{1,2})(?:[:h](\d{2})|h\b)?\s*(?:uhr\s+)?"
    rf"({'|'.join(re.escape(part) for part in _DAY_PARTS)})(?![\w])",
    re.I,
)
# "à 14h05" is a time of day; "1h30" alone is as often a duration.
_FRENCH_HOURS = re.compile(
    r"\b(à|vers|avant|après|dès|entre|et)\s+([01]?\d|2[0-3])h([0-5]\d)\b", re.I
)
_LEADING_ZERO_HOUR = re.compile(r"(?<![\d:.])0(\d):([0-5]\d)\b")
_VULGAR_FRACTIONS = {"½": ".5", "¼": ".25", "¾": ".75"}
_VULGAR = re.compile(r"(\d?)([½¼¾])")
_LEADING_POINT = re.compile(r"(?<![\w.])\.(\d)")
_DECIMAL_COMMA = re.compile(r"(?<![\d,.])(\d+),(\d{1,2})(?![\d,])")
_THOUSANDS_DOT = re.compile(r"(?<![\w.,])([1-9]\d{0,2})((?:\.\d{3})+)(?![\d,]|\.\d)")
_THOUSANDS_SPACE = re.compile(
    r"(?<![\w.,])([1-9]\d{0,2})((?:[ \u00a0\u202f]\d{3})+)(?![\w.,])"
)
_THOUSANDS_SUFFIX = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s?[kK]\b")
# "1M rows", "$2.5M", "7B parameters": a capital M or B counts millions or
# billions before a word in lower case or at a number's end; never a unit ("5 MB",
# "2 Mbps" run on in capitals).
_SCALE_SUFFIX = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?)(M|B|bn)\b(?=\s+[a-z]|\s*[?.!,]|\s*$)"
)
_SUFFIX_SCALES = {"M": 1_000_000, "B": 1_000_000_000, "bn": 1_000_000_000}
_CLOCK = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s?([ap])\.?\s?m\b\.?", re.I)
_PERCENT_SIGN = re.compile(r"(\d)\s?%")
_PERCENT_WORDS = re.compile(
    r"\b(?:per cent|pour cent|por ciento|por cento|per cento|prozent|procent)\b",
    re.I,
)
_CURRENCY_BEFORE = re.compile(r"([$€£])\s?(\d[\d.,]*)")
_CURRENCY_AFTER = re.compile(r"(\d)\s?([$€£])")
_CURRENCY_SYMBOLS = {"$": "dollars", "€": "euros", "£": "pounds"}
# Each unit after a number, by every spelling of the languages of the sets, to
# its English name: "2 GB", "2gb" and "two gigabytes" are "2 gigabytes". Meters
# are left out: "5m" is as often five minutes or five million.
_UNIT_SPELLINGS = {
    "kilobytes": "kb kilobyte kilobytes",
    "megabytes": "mb megabyte megabytes",
    "gigabytes": "gb gigabyte gigabytes",
    "terabytes": "tb terabyte terabytes",
    "milliseconds": "ms msec millisecond milliseconds",
    "seconds": "s sec secs second seconds sekunde sekunden seconde secondes "
    "segundo segundos secondo secondi",
    "minutes": "min mins minute minutes minuten minuto minutos minuti",
    "hours": "h hr hrs hour hours stunde stunden heure heures hora horas ora ore",
    "kilograms": "kg kgs kilo kilos kilogram kilograms kilogramme kilogrammes "
    "kilogramm kilogramo kilogramos",
    "grams": "g gram grams gramme grammes gramm gramo gramos grammi",
    "milligrams": "mg milligram milligrams",
    "kilometers": "km kilometer kilometers kilometre kilometres kilomètre kilomètres "
    "kilómetro kilómetros chilometro chilometri quilômetro quilômetros",
    "centimeters": "cm centimeter centimeters centimetre centimetres",
    "millimeters": "mm millimeter millimeters millimetre millimetres",
    "liters": "l liter liters litre litres litro litros litri",
    "milliliters": "ml milliliter milliliters millilitre millilitres",
    "kilowatt-hours": "kwh kilowatt-hour kilowatt-hours",
    "celsius": "°c celsius",
    "fahrenheit": "°f fahrenheit",
    "percent": "percent",
    "dollars": "dollar dollars",
    "euros": "euro euros",
    "pounds": "pound pounds",
}
_UNIT_SYMBOL = {
    spelling: symbol
    for symbol, spellings in _UNIT_SPELLINGS.items()
    for spelling in spellings.split()
}
_UNIT_AFTER_NUMBER = re.compile(
    r"(?<![^\W\d])(\d|\b[Oo]ne)\s?-?\s?(?:(?:degrees?|degrés|grad|grados|gradi)\s+)?("
    + "|".join(re.escape(u) for u in sorted(_UNIT_SYMBOL, key=len)[::-1])
    + r")(?![\w°])",
    re.I,
)
# A unit's name in another language or spelling is the unit with or without a
# number: "un kilomètre" is "un kilometers". Not the names of time ("the second
# try", "deux heures").
_UNIT_NAME = re.compile(
    r"\b("
    + "|".join(
        re.escape(spelling)
        for spelling, symbol in sorted(_UNIT_SYMBOL.items(), key=lambda i: -len(i[0]))
        if len(spelling) >= 5
        and spelling != symbol
        and symbol not in ("seconds", "minutes", "hours")
    )
    + r")\b",
    re.I,
)
# One quantity in one unit: "2 kilograms" is "2000 grams", "1 hours" is "3600
# seconds", "0.5 liters" is "500 milliliters". Data sizes stay as written (1000
# or 1024?), and so do meters ("m" is as often minutes or millions).
_BASE_UNITS = {
    "milligrams": (0.001, "grams"),
    "grams": (1, "grams"),
    "kilograms": (1000, "grams"),
    "milliliters": (1, "milliliters"),
    "liters": (1000, "milliliters"),
    "millimeters": (0.001, "meters"),
    "centimeters": (0.01, "meters"),
    "kilometers": (1000, "meters"),
    "milliseconds": (0.001, "seconds"),
    "seconds": (1, "seconds"),
    "minutes": (60, "seconds"),
    "hours": (3600, "seconds"),
}
_QUANTITY = re.compile(
    rf"(?<![\w.,])(\d{{1,3}}(?:,\d{{3}})+|\d+(?:\.\d+)?) ({'|'.join(_BASE_UNITS)})\b"
)
_PER_UNIT = re.compile(
    r"(?<=[^\W\d_])/(week|day|month|year|hour|h|hr|min|minute|second|sec|s)\b",
    re.I,
)
# "km/h" is "kilometres per hour": a rate's unit written out.
_PER_UNIT_NAMES = {
    "h": "hour",
    "hr": "hour",
    "min": "minute",
    "sec": "second",
    "s": "second",
}
_DIGIT_HYPHEN_WORD = re.compile(r"(\d)-(?=[^\W\d_])")
_DIGIT = re.compile(r"\d")
_CODE = re.compile(r"```.*?```|`[^`]+`", re.S)


def canonical_numbers(text: str) -> str:
    """``text`` with every number, time, percentage, currency and unit in one form.

    Fenced and inline code is kept as written.
    """
    parts = []
    last = 0
    for match in _CODE.finditer(text):
        parts.append(_canonical_prose(text[last : match.start()]))
        parts.append(match.group(0))
        last = match.end()
    parts.append(_canonical_prose(text[last:]))
    return "".join(parts)


def _canonical_prose(text: str) -> str:
    if not text.strip():
        return text
    text = _VULGAR.sub(_vulgar, text)
    text = _SCALE_AFTER_DIGITS.sub(_scaled, text)
    text = _PERCENT_WORDS.sub("percent", text)
    text = _ENGLISH_RUN.sub(_english_run, text)
    text = _GERMAN_SCALED.sub(_german_scaled, text)
    text = _FOREIGN_SCALE_ALONE.sub(
        lambda m: str(_FOREIGN_SCALES[m.group(1).lower()]), text
    )
    if not _DIGIT.search(text):
        # no number in digits but "one": nothing else below applies
        return _QUANTITY.sub(_in_base_unit, _units(text))
    text = _LEADING_POINT.sub(r"0.\1", text)
    text = _DECIMAL_COMMA.sub(r"\1.\2", text)
    text = _THOUSANDS_DOT.sub(lambda m: m.group(1) + m.group(2).replace(".", ""), text)
    text = _THOUSANDS_SPACE.sub(
        lambda m: m.group(1) + re.sub(r"\D", "", m.group(2)), text
    )
    text = _THOUSANDS_SUFFIX.sub(lambda m: _plain(float(m.group(1)) * 1000), text)
    text = _SCALE_SUFFIX.sub(
        lambda m: _plain(float(m.group(1)) * _SUFFIX_SCALES[m.group(2)]), text
    )
    text = _FOREIGN_CLOCK.sub(_foreign_clock, text)
    text = _FRENCH_HOURS.sub(r"\1 \2:\3", text)
    text = _CLOCK.sub(_clock, text)
    text = _LEADING_ZERO_HOUR.sub(r"\1:\2", text)
    text = _PERCENT_SIGN.sub(r"\1 percent", text)
    text = _CURRENCY_BEFORE.sub(
        lambda m: f"{m.group(2)} {_CURRENCY_SYMBOLS[m.group(1)]}", text
    )
    text = _CURRENCY_AFTER.sub(
        lambda m: f"{m.group(1)} {_CURRENCY_SYMBOLS[m.group(2)]}", text
    )
    text = _units(text)
    text = _QUANTITY.sub(_in_base_unit, text)
    text = _PER_UNIT.sub(
        lambda m: f" per {_PER_UNIT_NAMES.get(m.group(1).lower(), m.group(1))}", text
    )
    return _DIGIT_HYPHEN_WORD.sub(r"\1 ", text)


def _units(text: str) -> str:
    text = _UNIT_AFTER_NUMBER.sub(
        lambda m: f"{_digit(m.group(1))} {_UNIT_SYMBOL[m.group(2).lower()]}", text
    )
    return _UNIT_NAME.sub(lambda m: _UNIT_SYMBOL[m.group(1).lower()], text)


def _in_base_unit(match: re.Match[str]) -> str:
    factor, unit = _BASE_UNITS[match.group(2)]
    value = float(match.group(1).replace(",", ""))
    return f"{_plain(round(value * factor, 9))} {unit}"


def _plain(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:f}".rstrip("0")


def _digit(number: str) -> str:
    return "1" if number.lower() == "one" else number


def _vulgar(match: re.Match[str]) -> str:
    fraction = _VULGAR_FRACTIONS[match.group(2)]
    return f"{match.group(1)}{fraction}" if match.group(1) else f"0{fraction}"


def _clock(match: re.Match[str]) -> str:
    hour = int(match.group(1))
    minute = int(match.group(2) or 0)
    if hour > 12 or minute > 59:
        return match.group(0)
    hour = hour % 12 + (12 if match.group(3).lower() == "p" else 0)
    return f"{hour}:{minute:02d}"


def _scaled(match: re.Match[str]) -> str:
    number = match.group(1)
    # "1,500 million" groups thousands; "1,5 Millionen" is a decimal comma
    value = float(number.replace(",", "" if len(number.split(",")[-1]) == 3 else "."))
    return _plain(value * _SCALE_WORDS[match.group(2).lower()])


def _foreign_clock(match: re.Match[str]) -> str:
    hour = int(match.group(1))
    minute = int(match.group(2) or 0)
    if hour > 12 or minute > 59:
        return match.group(0)
    afternoon = _DAY_PARTS[match.group(3).lower()] == "p"
    return f"{hour % 12 + (12 if afternoon else 0)}:{minute:02d}"


def _german_scaled(match: re.Match[str]) -> str:
    digit = _GERMAN_DIGITS[match.group(1).lower()] if match.group(1) else 1
    return str(digit * (100 if match.group(2).lower() == "hundert" else 1_000))


def _english_run(match: re.Match[str]) -> str:
    run = match.group(0)
    words = re.findall(r"[a-z]+", run.lower())
    half = words[-3:] == ["and", "a", "half"]
    if half:
        words = words[:-3]
    decimals = ""
    if "point" in words:
        at = words.index("point")
        words, decimals = words[:at], "".join(str(_UNITS[w]) for w in words[at + 1 :])
    value = _english_value([w for w in words if w != "and"])
    if value is None or (words == ["one"] and not decimals and not half):
        # "one" alone is as often an article ("one pod") as a number; the
        # numbers check reads it either way.
        return run
    if half:
        return _plain(value + 0.5)
    return f"{value}.{decimals}" if decimals else str(value)


def _english_value(words: list[str]) -> int | None:
    """The value of a run of number words, None when it does not read as one."""
    total, current = 0, 0
    previous = ""
    for word in words:
        if word in _UNITS:
            if previous in _UNITS or (previous in _TENS and _UNITS[word] >= 10):
                return None  # "five twenty", "twenty twelve": a list or a year
            current += _UNITS[word]
        elif word in _TENS:
            if previous in _UNITS or previous in _TENS:
                return None
            current += _TENS[word]
        elif word == "hundred":
            if current % 100 == 0 and current:
                return None
            current = (current or 1) * 100
        else:
            total += (current or 1) * _SCALES[word]
            current = 0
        previous = word
    return total + current
