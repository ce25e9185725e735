"""The verification guard: a semantic candidate must say the same, not sound alike.

Embeddings place "order #48213" next to "order #48231", "Celsius to Fahrenheit"
next to its reverse and "plans with SSO" next to "plans without SSO". So a cached
query is served for a new one only when, besides the similarity threshold, these
agree between the two texts:

- ``language``: the detected language (or script);
- ``numbers``: the numbers (digits and number words), counted;
- ``quoted``: quoted strings;
- ``code``: code spans, identifiers (dotted, snake_case, camelCase, with digits),
  command-line flags and operators;
- ``negation``: whether the text is negated (``not``, ``n't``, ``without``, …);
- ``antonyms``: neither uses the opposite of a word the other uses
  (``increase``/``decrease``, ``valid``/``invalid``);
- ``entities``: every name (capitalised or upper-case word), unit, currency and
  language name of one appears in the other;
- ``time``: the time expressions (``today``, ``next week``, ``Monday``);
- ``order``: no direction is reversed (``X to Y``, ``from X to Y``, ``X than
  Y``), and no two nouns change places across a word that stays between them
  (``the dog chases the cat``).

Pure functions of the two texts; no I/O. The rules are calibrated with
bench/cache_quality.py on the labelled pairs in bench/data/.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from dataclasses import dataclass

CHECKS = (
    "language",
    "numbers",
    "quoted",
    "code",
    "negation",
    "antonyms",
    "entities",
    "time",
    "order",
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _word_list(text: str) -> list[str]:
    return text.split()


@dataclass(frozen=True, slots=True)
class Verdict:
    """The first check a candidate failed, or none (``""``) if it passed."""

    failed_check: str = ""

    @property
    def ok(self) -> bool:
        """Whether the candidate passed every check."""
        return not self.failed_check


PASSED = Verdict()

# Typographic quotes (U+201C, U+201D, U+201E, U+2018, U+2019) read as plain ones.
_QUOTES = str.maketrans(
    {"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'"}
)
_FENCED = re.compile(r"```(.*?)```", re.S)
_INLINE_CODE = re.compile(r"`([^`]+)`")
_DOUBLE_QUOTED = re.compile(r'"([^"]+)"')
_SINGLE_QUOTED = re.compile(r"(?:(?<=\s)|^)'([^']+)'(?=[\s.,;:!?)]|$)")
_WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*|[#$€£]?\d[\d,]*(?:\.\d+)?%?", re.U)
_NUMBER = re.compile(r"(?<![\w.])[#$€£]?(\d[\d,]*(?:\.\d+)?)(?:%|st|nd|rd|th)?")
_IDENTIFIERS = (
    # dotted names, paths and file names: os.path.join, src/app.py, config.yaml
    re.compile(r"\b[A-Za-z_][\w-]*(?:[./:]+[A-Za-z_][\w-]*)+\b"),
    re.compile(r"\b[a-z0-9]+(?:_[a-z0-9]+)+\b", re.I),  # snake_case
    re.compile(r"\b[a-z]+[A-Z]\w*\b"),  # camelCase
    re.compile(r"\b[A-Z][a-z0-9]+[A-Z]\w*\b"),  # PascalCase with an inner capital
    re.compile(r"\b(?=\w*\d)(?=\w*[A-Za-z])\w+\b"),  # letters and digits: utf8
    re.compile(r"\b\w+\(\)"),  # calls: len()
    re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*"),  # flags: --force, -rf
    re.compile(r"==|!=|<=|>=|=>|->|&&|\|\||\+=|-=|::|\*\*|<<|>>"),
)
_NUMBER_WORDS = {
    "zero": "0",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fifteen": "15",
    "twenty": "20",
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "hundred": "100",
    "thousand": "1000",
    "million": "1000000",
    "billion": "1000000000",
    "dozen": "12",
    "half": "0.5",
    "twice": "2",
    "double": "2",
    "triple": "3",
}
_NEGATIONS = _words(
    "not no never none nobody nothing neither nor without cannot lack lacks "
    "lacking missing except excluding exclude excludes nowhere"
)
_ANTONYM_PAIRS = [
    ("increase", "decrease"),
    ("raise", "lower"),
    ("add", "remove"),
    ("add", "delete"),
    ("insert", "delete"),
    ("enable", "disable"),
    ("allow", "deny"),
    ("allow", "block"),
    ("accept", "reject"),
    ("buy", "sell"),
    ("buyer", "seller"),
    ("import", "export"),
    ("upload", "download"),
    ("push", "pull"),
    ("encrypt", "decrypt"),
    ("encode", "decode"),
    ("compress", "decompress"),
    ("lock", "unlock"),
    ("open", "close"),
    ("start", "stop"),
    ("start", "end"),
    ("begin", "end"),
    ("min", "max"),
    ("minimum", "maximum"),
    ("minimize", "maximize"),
    ("highest", "lowest"),
    ("high", "low"),
    ("higher", "lower"),
    ("largest", "smallest"),
    ("biggest", "smallest"),
    ("large", "small"),
    ("big", "small"),
    ("bigger", "smaller"),
    ("larger", "smaller"),
    ("most", "least"),
    ("more", "less"),
    ("more", "fewer"),
    ("better", "worse"),
    ("best", "worst"),
    ("fast", "slow"),
    ("faster", "slower"),
    ("fastest", "slowest"),
    ("cheap", "expensive"),
    ("cheapest", "expensive"),
    ("cheaper", "expensive"),
    ("early", "late"),
    ("earliest", "latest"),
    ("first", "last"),
    ("before", "after"),
    ("above", "below"),
    ("over", "under"),
    ("inside", "outside"),
    ("input", "output"),
    ("inbound", "outbound"),
    ("incoming", "outgoing"),
    ("ascending", "descending"),
    ("left", "right"),
    ("north", "south"),
    ("east", "west"),
    ("hot", "cold"),
    ("warm", "cold"),
    ("positive", "negative"),
    ("true", "false"),
    ("success", "failure"),
    ("succeed", "fail"),
    ("win", "lose"),
    ("gain", "loss"),
    ("gain", "lost"),
    ("won", "lost"),
    ("winner", "loser"),
    ("old", "young"),
    ("oldest", "youngest"),
    ("strength", "weakness"),
    ("next", "last"),
    ("next", "previous"),
    ("profit", "loss"),
    ("login", "logout"),
    ("include", "exclude"),
    ("public", "private"),
    ("internal", "external"),
    ("client", "server"),
    ("parent", "child"),
    ("upper", "lower"),
    ("uppercase", "lowercase"),
    ("long", "short"),
    ("longer", "shorter"),
    ("longest", "shortest"),
    ("old", "new"),
    ("oldest", "newest"),
    ("older", "newer"),
    ("light", "dark"),
    ("day", "night"),
    ("summer", "winter"),
    ("sync", "async"),
    ("synchronous", "asynchronous"),
    ("horizontal", "vertical"),
    ("row", "column"),
    ("read", "write"),
    ("send", "receive"),
    ("sender", "recipient"),
    ("lend", "borrow"),
    ("attach", "detach"),
    ("connect", "disconnect"),
    ("install", "uninstall"),
    ("merge", "split"),
    ("online", "offline"),
    ("visible", "hidden"),
    ("show", "hide"),
    ("expand", "collapse"),
    ("arrive", "depart"),
    ("arrival", "departure"),
    ("deposit", "withdraw"),
    ("credit", "debit"),
    ("employer", "employee"),
    ("landlord", "tenant"),
    ("teacher", "student"),
    ("men", "women"),
    ("male", "female"),
    ("strong", "weak"),
    ("safe", "dangerous"),
    ("easy", "hard"),
    ("easiest", "hardest"),
    ("rise", "fall"),
    ("up", "down"),
    ("upgrade", "downgrade"),
    ("upstream", "downstream"),
    ("overestimate", "underestimate"),
    ("advantage", "disadvantage"),
    ("pro", "con"),
    ("benefit", "drawback"),
    ("benefit", "risk"),
    ("like", "dislike"),
    ("love", "hate"),
    ("agree", "disagree"),
    ("approve", "reject"),
    ("approve", "deny"),
    ("hire", "fire"),
    ("join", "leave"),
    ("enter", "exit"),
    ("arrive", "leave"),
    ("absorb", "release"),
    ("heat", "cool"),
    ("freeze", "thaw"),
    ("expand", "contract"),
    ("inhale", "exhale"),
    ("acid", "base"),
    ("acidic", "alkaline"),
    ("wet", "dry"),
    ("full", "empty"),
    ("heavy", "light"),
    ("thick", "thin"),
    ("wide", "narrow"),
    ("deep", "shallow"),
    ("rich", "poor"),
    ("sunrise", "sunset"),
    ("import", "export"),
    ("serialize", "deserialize"),
    ("mount", "unmount"),
    ("subscribe", "unsubscribe"),
    ("follow", "unfollow"),
    ("pause", "resume"),
    ("undo", "redo"),
]
_NEGATING_PREFIXES = ("un", "non", "dis", "in", "im", "il", "ir", "de")
_TIME_WORDS = {
    "today": "today",
    "tonight": "tonight",
    "tomorrow": "tomorrow",
    "yesterday": "yesterday",
    "now": "now",
    "currently": "now",
    "current": "now",
    "morning": "morning",
    "afternoon": "afternoon",
    "evening": "evening",
    "night": "night",
    "weekend": "weekend",
    "daily": "daily",
    "weekly": "weekly",
    "monthly": "monthly",
    "yearly": "yearly",
    "annually": "yearly",
    "annual": "yearly",
    "quarterly": "quarterly",
    "hourly": "hourly",
    "ago": "ago",
    "last": "last",
    "previous": "last",
    "past": "last",
    "next": "next",
    "upcoming": "next",
    "coming": "next",
    "since": "since",
    "until": "until",
    "am": "am",
    "pm": "pm",
    "q1": "q1",
    "q2": "q2",
    "q3": "q3",
    "q4": "q4",
}
_WEEKDAYS = _word_list("monday tuesday wednesday thursday friday saturday sunday")
_MONTHS = _word_list(
    "january february march april may june july august september october "
    "november december"
)
_PERIODIC = {
    "hour": "hourly",
    "day": "daily",
    "week": "weekly",
    "month": "monthly",
    "quarter": "quarterly",
    "year": "yearly",
}
_TIME_UNITS = _words(
    "second seconds minute minutes hour hours day days week weeks month "
    "months quarter quarters year years decade decades century"
)
# Words that name a unit, currency or language: key terms even in lower case.
_KEY_NOUNS = _words(
    "celsius fahrenheit kelvin km kilometers kilometres miles mile meters metres "
    "meter feet foot inches inch cm centimeters mm kg kilograms pounds pound lbs "
    "grams gram ounces ounce oz liters litres liter gallons gallon mph kph "
    "usd eur gbp jpy cny inr chf cad aud dollars dollar euros euro yen yuan rupees "
    "bitcoin btc eth pesos peso francs franc "
    "english spanish french german italian portuguese dutch russian chinese "
    "japanese korean arabic hindi polish swedish turkish greek hebrew "
    "python java javascript typescript rust golang ruby php kotlin swift scala "
    "sql bash c++ c# haskell perl excel json yaml xml csv html css markdown "
    "binary decimal hexadecimal octal utc gmt pst est cet "
    "bytes kilobytes megabytes gigabytes terabytes kb mb gb tb "
    "watts kilowatts volts amps hertz calories joules "
    # Data types and structures: "reverse a list" is not "reverse a string".
    "list lists string strings dict dictionary array arrays tuple tuples integer "
    "int float boolean bool file directory folder byte char dataframe matrix "
    "vector queue stack"
)
_ROLE_SYNONYMS = {"into": "to", "onto": "to", "toward": "to", "towards": "to"}
_DETERMINERS = _words("the a an my your his her its our their this that these those")
_STOPWORDS = _words(
    "a an the and or but if then so of in on at to for from by with about "
    "as is are was were be been being am do does did doing have has had "
    "having i me my mine we us our you your yours he him his she her it its "
    "they them their this that these those there here what which who whom "
    "whose when where why how can could would should will shall may might "
    "must please tell explain give show list describe write find help me "
    "any some all each every other another such own same very just also too "
    "into than vs versus onto toward towards get got let lets need want way "
    "ways thing things one ones much many make use using used hey hi hello "
    "ok okay thanks thank know like i'm what's how's it's there's isn't "
    "don't doesn't"
)
_LANGUAGE_STOPWORDS = {
    "en": _words(
        "the is are what how why when where which who do does can i you my your "
        "of and to in for with it this that a an be should"
    ),
    "es": _words(
        "el la los las es son qué que cómo como por para con una un mi tu de "
        "del en y se lo le puedo cuál cuándo dónde está hay"
    ),
    "fr": _words(
        "le la les est sont que quoi comment pourquoi quand où qui je tu mon ma "
        "mes de des du et en un une pour avec ce cette il elle peux puis"
    ),
    "de": _words(
        "der die das ist sind was wie warum wann wo wer ich du mein meine dein "
        "und zu in für mit ein eine einen kann ich nicht den dem des"
    ),
    "it": _words(
        "il lo la gli le è sono che cosa come perché quando dove chi io tu mio "
        "mia di e in per con un una posso del della"
    ),
    "pt": _words(
        "o a os as é são que como por para com um uma meu minha de do da em e "
        "posso qual quando onde está não"
    ),
    "nl": _words(
        "de het een is zijn wat hoe waarom wanneer waar wie ik jij mijn van en "
        "in voor met kan niet"
    ),
}
_SCRIPTS = (
    "CYRILLIC",
    "CJK",
    "HIRAGANA",
    "KATAKANA",
    "HANGUL",
    "ARABIC",
    "HEBREW",
    "GREEK",
    "DEVANAGARI",
    "THAI",
)


def _stem(word: str) -> str:
    # Enough to match "closes", "closed" and "closing" to "clos", and
    # "weakness" and "weaknesses" to "weakness".
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif not word.endswith("ss"):
        for suffix in ("ing", "ed", "es", "s"):
            if len(word) > len(suffix) + 2 and word.endswith(suffix):
                word = word[: -len(suffix)]
                break
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


def _antonym_table() -> dict[str, frozenset[str]]:
    table: dict[str, set[str]] = {}
    for left, right in _ANTONYM_PAIRS:
        for a, b in ((left, right), (right, left)):
            table.setdefault(_stem(a), set()).add(_stem(b))
    return {word: frozenset(opposites) for word, opposites in table.items()}


_ANTONYMS = _antonym_table()


@dataclass(frozen=True, slots=True)
class _Features:
    language: str
    numbers: tuple[str, ...]
    quoted: frozenset[str]
    code: frozenset[str]
    negated: bool
    stems: frozenset[str]
    words: frozenset[str]
    key_terms: tuple[str, ...]
    time_terms: frozenset[str]
    directions: frozenset[tuple[str, str]]
    content: tuple[str, ...]
    nouns: frozenset[str]


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    text = re.sub(r"\b(won)'t\b", "will not", text, flags=re.I)
    text = re.sub(r"\b(can)'t\b", "can not", text, flags=re.I)
    return re.sub(r"n't\b", " not", text, flags=re.I)


def _language(text: str, words: list[str]) -> str:
    for char in text:
        if char.isalpha() and ord(char) > 0x24F:
            name = unicodedata.name(char, "")
            for script in _SCRIPTS:
                if name.startswith(script):
                    return script.lower()
    scores = {
        language: sum(word in stopwords for word in words)
        for language, stopwords in _LANGUAGE_STOPWORDS.items()
    }
    best = max(scores, key=lambda language: scores[language])
    ranked = sorted(scores.values(), reverse=True)
    if ranked[0] == 0 or ranked[0] == ranked[1]:
        return "und"
    return best


def _numbers(text: str, words: list[str]) -> tuple[str, ...]:
    found = []
    for match in _NUMBER.finditer(text):
        whole, _, fraction = match.group(1).replace(",", "").partition(".")
        found.append((whole.lstrip("0") or "0") + (f".{fraction}" if fraction else ""))
    found += [_NUMBER_WORDS[word] for word in words if word in _NUMBER_WORDS]
    # A multiset: the order of numbers is the order check's business.
    return tuple(sorted(found))


def _code(text: str) -> frozenset[str]:
    spans = {" ".join(span.split()) for span in _FENCED.findall(text)}
    remainder = _FENCED.sub(" ", text)
    spans |= {" ".join(span.split()) for span in _INLINE_CODE.findall(remainder)}
    for pattern in _IDENTIFIERS:
        spans |= {match.rstrip(".") for match in pattern.findall(remainder)}
    return frozenset(span for span in spans if span)


def _time_terms(words: list[str]) -> frozenset[str]:
    terms: set[str] = set()
    for index, word in enumerate(words):
        if word in _WEEKDAYS or word in _MONTHS:
            terms.add(word)
            continue
        mapped = _TIME_WORDS.get(word)
        following = words[index + 1] if index + 1 < len(words) else ""
        if word in ("every", "each", "per") and following in _PERIODIC:
            terms.add(_PERIODIC[following])  # "every day" is "daily"
            continue
        if mapped is None:
            continue
        if mapped in ("am", "pm") and not (index and words[index - 1][:1].isdigit()):
            continue  # "Am I allowed" is no time of day
        if mapped in ("last", "next"):
            # "last week" is a time; "the last element" is not.
            if following in _TIME_UNITS or following in _WEEKDAYS:
                terms.add(f"{mapped} {_stem(following)}")
            continue
        terms.add(mapped)
    return frozenset(terms)


def _key_terms(
    tokens: list[str], first_of_sentence: set[int], language: str
) -> tuple[str, ...]:
    terms: list[str] = []
    # "no-store" is a term in English; "puis-je" is grammar in French.
    hyphenated_terms = language in ("en", "und")
    for index, token in enumerate(tokens):
        lower = token.lower().removesuffix("'s")
        if not any(char.isalpha() for char in token) or lower == "i":
            continue
        if lower in _STOPWORDS and not (len(token) == 1 and token.isupper()):
            continue
        upper = token.isupper() and (len(token) > 1 or index not in first_of_sentence)
        mixed = any(char.isupper() for char in token[1:])
        capital = token[0].isupper() and index not in first_of_sentence
        hyphenated = hyphenated_terms and "-" in lower
        if upper or mixed or capital or lower in _KEY_NOUNS or hyphenated:
            terms.append(lower)
    return tuple(dict.fromkeys(terms))


def _content(words: list[str], key_terms: frozenset[str]) -> list[tuple[int, str]]:
    # Positions and stems of the words that carry meaning: not stop words, and
    # numbers kept, so that "12 divided by 4" and "4 divided by 12" differ.
    return [
        (index, word if word[0].isdigit() else _stem(word))
        for index, word in enumerate(words)
        if word in key_terms
        or (word not in _STOPWORDS and (len(word) > 2 or word[0].isdigit()))
    ]


def _directions(
    words: list[str], content: list[tuple[int, str]], nouns: frozenset[str]
) -> frozenset[tuple[str, str]]:
    # "Celsius to Fahrenheit", "from savings to checking", "Python faster than
    # Java": (source, target) pairs of the nearest nouns around the relation,
    # with "Y from X" read as "X to Y".
    pairs: set[tuple[str, str]] = set()
    for index, word in enumerate(words):
        relation = _ROLE_SYNONYMS.get(word, word)
        if relation not in ("to", "from", "than"):
            continue
        before = [stem for position, stem in content if position < index]
        after = [stem for position, stem in content if position > index]
        if relation == "to" and "from" in words[max(0, index - 4) : index]:
            start = index - 4 + words[max(0, index - 4) : index].index("from")
            before = [stem for position, stem in content if start < position < index]
        if relation == "than" and len(before) > 1:
            before = before[:-1]  # skip the comparative: "tea healthier than"
        before_nouns = [stem for stem in before if stem in nouns] or before[-1:]
        after_nouns = [stem for stem in after if stem in nouns] or after[:1]
        if not before_nouns or not after_nouns:
            continue
        if relation == "to" and "from" in words[max(0, index - 4) : index]:
            left = before_nouns[0]
        else:
            left = before_nouns[-1]
        right = after_nouns[0]
        pairs.add((right, left) if relation == "from" else (left, right))
    return frozenset(pairs)


def _nouns(words: list[str], numbers: bool = True) -> frozenset[str]:
    found = {
        _stem(word)
        for previous, word in itertools.pairwise(words)
        if previous in _DETERMINERS and word not in _STOPWORDS
    }
    if numbers:
        found |= {word for word in words if word[:1].isdigit()}
    return frozenset(found)


@functools.lru_cache(maxsize=4096)
def _features(text: str) -> _Features:
    normal = _normalise(text)
    quoted = frozenset(
        match.strip()
        for pattern in (_DOUBLE_QUOTED, _SINGLE_QUOTED)
        for match in pattern.findall(_FENCED.sub(" ", normal))
        if match.strip()
    )
    tokens = _WORD.findall(normal)
    words = [token.lower().removesuffix("'s") for token in tokens]
    first_of_sentence = _sentence_starts(normal)
    language = _language(normal, words)
    key_terms = _key_terms(tokens, first_of_sentence, language)
    stems = frozenset(_stem(word) for word in words)
    content = _content(words, frozenset(key_terms))
    nouns = _nouns(words) | {_stem(term) for term in key_terms}
    return _Features(
        language=language,
        numbers=_numbers(normal, words),
        quoted=quoted,
        code=_code(normal),
        negated=any(word in _NEGATIONS for word in words),
        stems=stems,
        words=frozenset(words),
        key_terms=key_terms,
        time_terms=_time_terms(words),
        directions=_directions(words, content, nouns),
        content=tuple(stem for _, stem in content),
        nouns=nouns,
    )


def _sentence_starts(text: str) -> set[int]:
    starts = set()
    boundary = True
    for index, match in enumerate(_WORD.finditer(text)):
        if boundary:
            starts.add(index)
        tail = text[match.end() : match.end() + 3]
        boundary = bool(re.match(r"\s*[.!?:;\n\"(]", tail))
    return starts


def _languages_differ(a: _Features, b: _Features) -> bool:
    if a.language == b.language:
        return False
    scripts = {script.lower() for script in _SCRIPTS}
    if a.language in scripts or b.language in scripts:
        return True
    # Short texts often name no language clearly; only two clear ones conflict.
    return "und" not in (a.language, b.language)


def _antonyms_clash(a: _Features, b: _Features) -> bool:
    for mine, theirs in ((a, b), (b, a)):
        for stem in mine.stems - theirs.stems:
            if _ANTONYMS.get(stem, frozenset()) & (theirs.stems - mine.stems):
                return True
            for prefix in _NEGATING_PREFIXES:
                # "valid" against "invalid", "encrypted" against "unencrypted".
                if len(stem) >= 4 and prefix + stem in theirs.stems - mine.stems:
                    return True
    return False


def _term_missing(term: str, other: _Features) -> bool:
    if term in other.words:
        return False
    # "no-store" needs "store"; "10-seat" is there in "10 seats".
    parts = [_stem(part) for part in term.split("-") if part not in _STOPWORDS]
    return "-" not in term or any(part not in other.stems for part in parts)


def _entities_missing(a: _Features, b: _Features) -> bool:
    return any(_term_missing(term, b) for term in a.key_terms) or any(
        _term_missing(term, a) for term in b.key_terms
    )


def _swapped_around_a_word(a: _Features, b: _Features) -> bool:
    # "the dog chases the cat" against "the cat chases the dog": two nouns change
    # places across a word that stays between them. Moving a phrase ("Python:
    # reverse a list" against "reverse a list in Python") leaves none between.
    pos_a, pos_b = _first_positions(a.content), _first_positions(b.content)
    nouns = a.nouns | b.nouns
    if sorted(a.content) == sorted(b.content):
        # The same words reordered: any two of them may have swapped roles.
        nouns = nouns | set(a.content)
    shared = [word for word in pos_a if word in pos_b and word in nouns]
    for i, x in enumerate(shared):
        for y in shared[i + 1 :]:
            if (pos_a[x] < pos_a[y]) == (pos_b[x] < pos_b[y]):
                continue
            low_a, high_a = sorted((pos_a[x], pos_a[y]))
            low_b, high_b = sorted((pos_b[x], pos_b[y]))
            # The word both keep between them is the verb: a noun there (a list
            # of names, a number) says nothing about roles.
            between = set(a.content[low_a + 1 : high_a]) - a.nouns - b.nouns
            if between & set(b.content[low_b + 1 : high_b]):
                return True
    return False


def _first_positions(sequence: tuple[str, ...]) -> dict[str, int]:
    positions: dict[str, int] = {}
    for index, item in enumerate(sequence):
        positions.setdefault(item, index)
    return positions


def _order_differs(a: _Features, b: _Features) -> bool:
    reversed_b = {(target, source) for source, target in b.directions}
    if a.directions & reversed_b:
        return True
    return _swapped_around_a_word(a, b)


def verify(query: str, cached: str) -> Verdict:
    """Check that ``query`` asks what ``cached`` asked, beyond sounding alike.

    Returns the first failed check (in :data:`CHECKS` order) or a pass.
    """
    if query == cached:
        return PASSED
    a, b = _features(query), _features(cached)
    failures = (
        ("language", _languages_differ(a, b)),
        ("numbers", a.numbers != b.numbers),
        ("quoted", a.quoted != b.quoted),
        ("code", a.code != b.code),
        ("negation", a.negated != b.negated),
        ("antonyms", _antonyms_clash(a, b)),
        ("entities", _entities_missing(a, b)),
        ("time", a.time_terms != b.time_terms),
        ("order", _order_differs(a, b)),
    )
    for check, failed in failures:
        if failed:
            return Verdict(failed_check=check)
    return PASSED
