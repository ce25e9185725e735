"""The verification guard: a semantic candidate must say the same, not sound alike.

Embeddings place "order #48213" next to "order #48231", "Celsius to Fahrenheit"
next to its reverse, "the first 3 rows" next to "the last 3 rows". A similarity
threshold cannot tell them apart, and neither can a list of the ways two questions
may differ: there are always more ways than a list names. So the guard turns the
question around. It accepts a candidate only when **every difference between the
two texts is explained**, and rejects whatever it cannot explain.

Both texts are normalised (Unicode NFKC, case, contractions, possessives; each
number, time, percentage, currency and unit written one way, see
:mod:`services.cache.number_forms`),
politeness wrappers ("I was wondering, could you tell me") and question scaffolds
("how can I", "what's the best way to") are rewritten away, and modal verbs become
the token of their class (``must``/``have to``/``need to``; ``can``/``may``/
``allowed to``; ``should``; in German, French, Spanish and Italian too): a modal
is content, so "can I" against "must I" is an unexplained change. Then the texts
are cut into words. Filler (articles, pronouns, auxiliaries, "please") is
dropped from both sides. What is left is the content of each text. Content
words are paired up when they are the same word up to:

- ``inflection``: the same stem ("rows"/"row", "closing"/"closed") or the same
  derivational root ("configure"/"configuration"; in English also a WordNet
  derivation, "summary"/"summarize");
- ``typo``: a small edit (one for words up to six letters, two from seven) where one
  side is not a word of the embedding model's English vocabulary, both start with
  the same letter, and neither is a number, a name, an identifier or a unit;
- ``spelling``: British against American spelling ("colour", "organise");
- ``synonym``: a small curated lexicon of near-certain pairs ("delete"/"remove",
  "fix"/"resolve"), each checked to explain no near-miss of the development sets,
  and, between English texts, two words of one WordNet synset that is among the
  two most frequent senses of each ("frequently"/"often"; not "average"/"median",
  a statistic only in a rare sense of "average");
- ``abbreviation``: a chat shorthand ("u", "pls", "w/o"), a numeronym ("k8s" for
  "kubernetes"), a clipped word ("config", "repo", "max") or the initials of
  consecutive words of the other text ("PTO" for "paid time off", "NDA" for
  "non-disclosure agreement").

A content word left without a partner is an unexplained change, whatever its kind
(a quantifier, a scope, an object, a unit, an action that no antonym list names)
and the candidate is rejected as ``alignment``. Before the alignment, vetoes that
need no vocabulary reject what alignment alone would miss: the texts' language, the
numbers (digits and number words, and which end of a "to" each stands at),
quoted strings, code and identifiers, negation, ``tense`` (English past against
future), ``intent`` (what the question words ask for: a reason, a manner, a
quantity, a time, a place, a person; and a how-question against a command), and
order (roles swapped around a verb that stays, ``X to Y`` against ``Y to X``, a
phrase moved across "than", "to", "before" or "after").

Paired words may change places only when the word that moved keeps its
preposition ("in Python, how do I sort a list" against "how do I sort a list in
Python"), or a whole clause moved from one end of the text to the other ("For
medical school, what GPA do I need?"): a subject or object that moves ("A pays
B" against "B pays A") has its role in its place, and is rejected as ``order``.
An English passive against an active question is compared in the active's order
("are transfers processed by the bank" against "does the bank process
transfers"). Code is compared by its tokens, not its layout or markup. A text
that sets a scene before its closing question is verified again on that question
alone, when the scene holds no number, negation, quote, code or name
(``context``).

The verdict names the first failed check, or, for an accepted candidate, the
strongest explanation it needed (:data:`ACCEPTING_CHECKS`: ``identical``,
``normalized``, ``rephrased``, ``inflection``, ``spelling``, ``typo``,
``synonym``, ``abbreviation``, ``reorder``, ``context``): the check that accepted
the hit.

Pure functions of the two texts plus vendored tables read once (the embedding
model's vocabulary; WordNet's synonyms, person nouns and derivations, see
services/cache/data/README.md); no other I/O. Designed on bench/data/cache_pairs.jsonl,
bench/data/cache_dev_2026-12.jsonl and bench/data/cache_blind_2026-12.jsonl (a
used blind set); judged on bench/data/cache_blind_2026-12b.jsonl, then again,
unchanged, on bench/data/cache_blind_2026-12c.jsonl (bench/cache_quality.py).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import re
import unicodedata
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import snowballstemmer

from services.cache import number_forms
from services.cache.number_forms import canonical_numbers

# Rejections, in the order they are tried.
CHECKS = (
    "language",
    "numbers",
    "quoted",
    "code",
    "negation",
    "tense",
    "intent",
    "order",
    "alignment",
)
# Acceptances, from the plainest to the one that needed the most explaining.
ACCEPTING_CHECKS = (
    "identical",
    "normalized",
    "rephrased",
    "inflection",
    "spelling",
    "typo",
    "synonym",
    "abbreviation",
    "reorder",
    "context",
)

_VOCABULARY_PATH = (
    Path(__file__).resolve().parent / "data" / "all-MiniLM-L6-v2-tokenizer.json"
)
# English synsets of WordNet, each word kept only where the synset is one of its
# two most frequent senses (bench/wordnet_synonyms.py).
_WORDNET_PATH = Path(__file__).resolve().parent / "data" / "wordnet-synonyms-en.txt"
# English nouns whose most frequent WordNet sense names a person ("golfer").
_PERSONS_PATH = _WORDNET_PATH.with_name("wordnet-persons-en.txt")
# English words WordNet derives one from the other ("register"/"registration").
_DERIVATIONS_PATH = _WORDNET_PATH.with_name("wordnet-derivations-en.txt")


def load_tables() -> None:
    """Read the vendored vocabulary and synonym tables now, not on a first lookup.

    The first English candidate that reaches the alignment would otherwise wait
    about 0.1 s for them.
    """
    _vocabulary()
    _wordnet_synsets()
    _person_nouns()
    _derivations()
    _synonyms()


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


@dataclass(frozen=True, slots=True)
class Verdict:
    """The first check a candidate failed, or the check that accepted it.

    Attributes:
        failed_check: the first failed check of :data:`CHECKS`; empty on a pass.
        accepted_by: on a pass, the strongest explanation the candidate needed
            (one of :data:`ACCEPTING_CHECKS`); empty on a rejection.
    """

    failed_check: str = ""
    accepted_by: str = ""

    @property
    def ok(self) -> bool:
        """Whether the candidate passed every check."""
        return not self.failed_check


IDENTICAL = Verdict(accepted_by="identical")

# Typographic quotes (U+201C, U+201D, U+201E, U+2018, U+2019) read as plain ones.
_QUOTES = str.maketrans(
    {"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'"}
)
_FENCED = re.compile(r"```(.*?)```", re.S)
_INLINE_CODE = re.compile(r"`([^`]+)`")
_LINE_CONTINUATION = re.compile(r"\\\n")
_FENCE_TAG = re.compile(r"\A[\w+#-]*\n")
_SHELL_COMMANDS = _words(
    "rm cp mv ls cd chmod chown mkdir rmdir find tar cat grep sed awk ln touch "
    "scp rsync curl wget sudo git docker kubectl ssh kill echo export"
)
# Where one shell command ends and the next begins, the separator kept.
_SHELL_SEPARATOR = re.compile(r"(;|&&|\|\||\||\bthen\b|\bdo\b|\belse\b)")
_PYTHON_BLOCK_KEYWORDS = _words(
    "if elif else for while def class with try except finally async match case lambda"
)
_SPAN_OR_WORD = re.compile(r"`([^`]+)`|([^\W\d_]+(?:['-][^\W\d_]+)*|[/:])")
# A string literal, a word, or one other character: code's tokens, whatever its
# layout.
_CODE_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|\w+|\S')
_DOUBLE_QUOTED = re.compile(r'"([^"]+)"')
_SINGLE_QUOTED = re.compile(r"(?:(?<=\s)|^)'([^']+)'(?=[\s.,;:!?)]|$)")
_WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*|[#$€£]?\d[\d,]*(?:\.\d+)?%?", re.U)
# A comma groups thousands ("1,250"), or separates numbers ("[1,2,3]"); a minus
# sign is the number's ("-7"), a dash between numbers is not ("3-5").
_NUMBER = re.compile(
    r"(?<![\w.])[#$€£]?((?:-(?=\d))?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)"
    r"(?:\.\d+)?)(?:%|st|nd|rd|th)?"
)
_IDENTIFIERS = (
    # dotted names, paths and file names: os.path.join, src/app.py, config.yaml
    re.compile(r"\b[A-Za-z_][\w-]*(?:[./:]+[A-Za-z_][\w-]*)+\b"),
    re.compile(r"\b[a-z0-9]+(?:_[a-z0-9]+)+\b", re.I),  # snake_case
    re.compile(r"\b[a-z]+[A-Z]\w*\b"),  # camelCase
    re.compile(r"\b[A-Z][a-z0-9]+[A-Z]\w*\b"),  # PascalCase with an inner capital
    re.compile(r"\b\w+\(\)"),  # calls: len()
    re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*"),  # flags: --force, -rf
    re.compile(r"==|!=|<=|>=|=>|->|&&|\|\||\+=|-=|::|\*\*|<<|>>"),
    # a null operator named on its own: "der Operator ?? in JavaScript"
    re.compile(r"(?:(?<=\s)|^)(?:\?\?=?|\?\.|\?:)(?=\s|$)"),
)
# Characters that change what code or a formula means: "$@" is not "$#".
_SYMBOLS = "$@#%&*+=<>/\\|^~{}[]"
_NUMBER_WORDS = {
    "zero": "0",
    "one": "1",
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
    "sixty": "60",
    "ninety": "90",
    "hundred": "100",
    "thousand": "1000",
    "million": "1000000",
    "billion": "1000000000",
    "dozen": "12",
    "half": "0.5",
    "twice": "2",
    "double": "2",
    "triple": "3",
    # Other languages of the sets: a changed number is a changed number anywhere.
    "zwei": "2",
    "drei": "3",
    "vier": "4",
    "fünf": "5",
    "zehn": "10",
    "deux": "2",
    "trois": "3",
    "quatre": "4",
    "cinq": "5",
    "dix": "10",
    "dos": "2",
    "tres": "3",
    "cuatro": "4",
    "cinco": "5",
    "diez": "10",
    "due": "2",
    "tre": "3",
    "quattro": "4",
    "dieci": "10",
}
_MAGNITUDE_SUFFIX = re.compile(r"^(\d+(?:\.\d+)?)([km])$")
_NEGATIONS = _words(
    "not no never none nobody nothing neither nor without cannot lack lacks "
    "lacking missing except excluding exclude excludes nowhere "
    "nicht kein keine keinen keinem keiner nie niemals ohne "
    "pas jamais aucun aucune sans "
    "nunca ningún ninguna sin "
    "non mai nessun nessuna senza"
)
_LANGUAGE_STOPWORDS = {
    "en": _words(
        "the is are what how why when where which who do does can i you my your "
        "of and to in for with it this that a an be should by was were whom has "
        "have had will would could from on at about there their they we our if "
        "not or but"
    ),
    "es": _words(
        "el la los las es son qué que cómo como por para con una un mi tu de "
        "del en y se lo le puedo cuál cuándo dónde está hay necesito al su sus "
        "más muy pero o sin sobre ya también cuánto cuántos hacer tengo tiene puede"
    ),
    "fr": _words(
        "le la les est sont que quoi comment pourquoi quand où qui je tu mon ma "
        "mes de des du et en un une pour avec ce cette il elle peux puis au aux "
        "sur dans par ne pas plus mais ou sans faut être avoir vous nous est-ce "
        "qu'est-ce combien"
    ),
    "de": _words(
        "der die das ist sind was wie warum wann wo wer ich du mein meine dein "
        "und zu in für mit ein eine einen kann nicht den dem des im am auf von "
        "vom zum zur bei nach aus auch noch man sich wird werden hat haben muss "
        "welche welcher"
    ),
    "it": _words(
        "il lo gli è sono che cosa come perché quando dove chi io mio mia di e "
        "per con una posso del della i in a al alla nel nella su sul si ci non ma "
        "anche le la quali quale quanto quanti ho ha hanno dei delle degli serve"
    ),
    "pt": _words(
        "o os as é são que como por para com um uma meu minha de do da em e "
        "posso qual quando onde está não no na nos nas ao aos pelo pela se mais "
        "mas sem também quanto quantos tenho tem pode preciso você"
    ),
    "nl": _words(
        "de het een is zijn wat hoe waarom wanneer waar wie ik jij mijn van en "
        "in voor met kan niet op aan bij uit om te ook maar dan er welke moet "
        "heb heeft je"
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
# English filler: words that carry no content of their own in a question. Words
# that look like filler but change a question (quantifiers such as "all", "only",
# "first"; particles such as "out", "off", "up", "back"; "more", "less") are not
# here, so they must be matched like any content word.
_FILLER = _words(
    """
    a an the and or but so of in on at to for from by with about as into onto
    is are was were be been being am do does did doing done have has had having
    i me my mine myself we us our ours you your yours yourself he him his she her
    it its they them their theirs this that these those there here
    what which who whom whose where why how will would shall
    please kindly hi hey hello yo thanks thank cheers dear team sir madam
    tell explain show let know like want wanted love
    help assist advise wondering wonder curious question quick
    way ways best simplest easiest proper properly correct correctly right
    anyway actually really just basically exactly
    i'm i've i'd i'll you're it's what's how's that's there's here's
    get getting got go going
    some any thing things something anything
    also too very quite bit little
    is it ok okay fine
    step steps command commands
    """
)
# Discourse markers, interjections, greetings and sign-offs, and the articles,
# pronouns and particles of the other languages of the sets: the same closed
# classes as the English filler above, which change no question they are added
# to. Markers that can also be content ("well" in "works well", "still", "even")
# are removed only in the phrases of _PHRASES, where they cannot be.
_SPOKEN_AND_FOREIGN_FILLER = _words(
    """
    um umm uh uhm erm hmm hm ah oh okay alright lol haha btw anyways honestly
    literally seriously simply guys folks everyone
    ähm äh hmm naja halt mal eigentlich denn ja bitte danke hallo servus moin
    der die das den dem des ein eine einen einem einer eines
    ich du er sie es wir ihr mein meine meinen meinem meiner dein deine
    euh bon ben alors bref bah salut coucou merci svp stp vraiment exactement
    le la les l un une des je tu il elle on nous vous ils elles
    bueno pues oye mira vale hola gracias básicamente exactamente realmente
    simplemente el los las unos unas lo yo tú él ella usted ustedes
    allora tipo cioè insomma beh ehm ciao grazie il gli uno io lui lei noi voi
    então oi olá obrigado obrigada os um eu você vocês ele ela nós
    ist sind war waren bin bist seid wird werden wurde hat haben habe hast
    est sont suis es ai ont está están estoy hay ha he han è sono ho é são estão
    """
)
_ALL_FILLER = _FILLER | _SPOKEN_AND_FOREIGN_FILLER
# With the filler of one language only: in Spanish "se" is a pronoun ("¿cómo se
# abre una cuenta?" is "¿cómo abro una cuenta?"); in Italian and Portuguese "if".
# The words that ask "what", "which" and "how", as English's are filler: in the
# filler of their language only, since "comment" and "come" are English words.
_QUESTION_FILLER = {
    "es": _words("qué cuál cuáles cómo que cual cuales como"),
    "de": _words("was welche welcher welches welchen wie"),
    "fr": _words("quel quels quelle quelles comment qu'est-ce"),
    "it": _words("qual quale quali cosa come che"),
    "pt": _words("qual quais como que"),
}
_FILLER_BY_LANGUAGE = {
    language: _ALL_FILLER | words for language, words in _QUESTION_FILLER.items()
}
# Pronouns English has as words of its own: German "man" (one) and "sich";
# the impersonal Italian "si" (Italian's "if" is "se"). Not "mich" or "uns":
# an object ("darf mein Arbeitgeber mich kündigen").
# The prepositions and possessives English has as filler ("of in on at to for
# from by with", "my your"), in each language: a phrase keeps its preposition
# as its marker (see _marker), so a role that changes is still seen.
_FUNCTION_WORDS = {
    "fr": "à au aux de du des en dans sur pour avec par chez mon ma mes ton ta "
    "tes son sa ses notre nos votre vos leur leurs et être été était étaient",
    # not "a"/"al": Spanish marks a person as the object with it
    "es": "son de del en con por para sobre mi mis tu tus su sus nuestro nuestra "
    "nuestros nuestras y o un una ser estar fue fueron era sido siendo",
    "it": "a al allo alla ai agli alle di del dello della dei degli delle da dal "
    "dalla in nel nello nella nei con per su sul sulla mio mia miei mie tuo tua "
    "suo sua nostro nostra e o un una essere stato stata stati viene vengono",
    "pt": "a ao aos à às de do da dos das em no na nos nas com por pelo pela "
    "para meu minha meus minhas teu tua seu sua nosso nossa e ou uma ser estar "
    "foi foram era sido sendo",
    # not the particles of separable verbs ("schalte … an/aus", "zet … aan/uit")
    "de": "in im ins am von vom zum zur für bei beim unser unsere unseren unserem "
    "und oder dann sein worden wurden",
    "nl": "in van voor met naar de het een mijn je jouw zijn haar ons onze hun en of "
    "dan worden wordt word werd werden geweest",
}
_FILLER_BY_LANGUAGE |= {
    language: _FILLER_BY_LANGUAGE.get(language, _ALL_FILLER) | _words(words)
    for language, words in _FUNCTION_WORDS.items()
}
_FILLER_BY_LANGUAGE["es"] |= _words("se me te nos")
_FILLER_BY_LANGUAGE["de"] |= _words("man sich")
_FILLER_BY_LANGUAGE["it"] |= _words("si")
# The words that name a unit, currency, data type or language: no typo or clipping
# explains a change of one of them.
_KEY_NOUNS = _words(
    """
    celsius fahrenheit kelvin km kilometers kilometres miles mile meters metres
    meter feet foot inches inch cm mm kg kilograms pounds pound lbs lb grams gram
    mg ounces ounce oz liters litres liter ml gallons gallon mph kph
    usd eur gbp jpy chf cad aud dollars dollar euros euro yen rupees pesos
    english spanish french german italian portuguese dutch russian chinese
    japanese korean arabic hindi polish
    python java javascript typescript rust golang ruby php kotlin swift scala
    sql bash haskell perl excel json jsonl yaml xml csv html css markdown
    bytes kb mb gb tb kib mib gib tib kilobytes megabytes gigabytes terabytes
    list lists string strings dict dictionary array arrays tuple tuples set sets
    integer int float boolean bool file files directory folder byte char
    seconds second minutes minute hours hour days day weeks week months month
    years year ms
    """
)
# Chat shorthand and clipped words that no rule derives.
_SHORTHAND = {
    "u": "you",
    "ur": "your",
    "r": "are",
    "pls": "please",
    "plz": "please",
    "thx": "thanks",
    "ty": "thanks",
    "w/o": "without",
    "wo": "without",
    "b4": "before",
    "asap": "soon",
    "info": "information",
    "app": "application",
    "apps": "applications",
    "repo": "repository",
    "repos": "repositories",
    "config": "configuration",
    "max": "maximum",
    "min": "minimum",
    "k8s": "kubernetes",
    "js": "javascript",
    "ts": "typescript",
    "py": "python",
    "postgres": "postgresql",
    "pg": "postgresql",
    "db": "database",
    "dict": "dictionary",
    "dbs": "databases",
    "pwd": "password",
    "pw": "password",
    "msg": "message",
    "env": "environment",
    "dir": "directory",
    "auth": "authentication",
    "admin": "administrator",
    "acct": "account",
    "dept": "department",
    "mgr": "manager",
    "approx": "approximately",
    "uni": "university",
    "unis": "universities",
    "tbsp": "tablespoon",
    "tsp": "teaspoon",
    "hbf": "hauptbahnhof",
    "philo": "philosophie",
    "maths": "mathematics",
    "math": "mathematics",
    "msgs": "messages",
    "tél": "téléphone",
    "qtas": "quantas",
    "qto": "quanto",
    "sq": "square",
    "ft": "foot",
    "qty": "quantity",
    "wifi": "wi-fi",
    "yr": "year",
    "yrs": "years",
    "mo": "month",
    "mos": "months",
    "wk": "week",
    "wks": "weeks",
    "hr": "hour",
    "hrs": "hours",
    "thru": "through",
    "abt": "about",
    "cuz": "because",
    "tho": "though",
    "ppl": "people",
    "bday": "birthday",
    "bf": "boyfriend",
    "gf": "girlfriend",
    "addr": "address",
    "obj": "object",
    "func": "function",
    "fn": "function",
    "lib": "library",
    "libs": "libraries",
    "pkg": "package",
    "pkgs": "packages",
    "img": "image",
    "imgs": "images",
    "pic": "picture",
    "pics": "pictures",
    "intl": "international",
    "govt": "government",
    "diff": "difference",
    "veggie": "vegetarian",
    "avg": "average",
    "tmrw": "tomorrow",
    "vc": "você",
    "vcs": "vocês",
    "pgto": "pagamento",
    "pra": "para",
    "tb": "também",
    "tbm": "também",
    "tmb": "también",
}
_DERIVATIONAL = (
    "isations",
    "izations",
    "isation",
    "ization",
    "ations",
    "ation",
    "itions",
    "ition",
    "ments",
    "ment",
    "ions",
    "ion",
    "ities",
    "ity",
    "ness",
    "ably",
    "ibly",
    "able",
    "ible",
    "ally",
    "ual",
    "ive",
    "ers",
    "er",
    "ors",
    "or",
    "al",
    "ly",
    "ing",
    "ed",
    "es",
    "s",
    "e",
)
# The generic person a question may ask about instead of "I" ("How does a user
# reset their password?" / "How do I reset my password?"), and the words that say
# "I" and "they" in each language (see _perspective). Not a role that may
# change the answer ("Can a student get a discount?" is no "Can I get one?"):
# other English persons only in how-questions (_person_nouns).
_GENERIC_PERSONS = _words(
    """
    user users customer customers client clients person people someone somebody
    anyone anybody one employee employees worker workers passenger passengers
    traveler travelers traveller travellers patient patients tenant tenants
    developer developers
    nutzer benutzer kunde kunden mitarbeiter arbeitnehmer person personen jemand
    fahrgast passagier reisende mieter patient
    utilisateur utilisatrice cliente salarié salariée employé employée personne
    quelqu'un voyageur passager locataire
    usuario usuaria empleado empleada trabajador trabajadora persona alguien
    pasajero viajero inquilino paciente
    utente utenti dipendente lavoratore qualcuno passeggero viaggiatore
    usuário usuária utilizador funcionário funcionária empregado pessoa alguém
    passageiro viajante
    gebruiker klant werknemer medewerker persoon iemand passagier reiziger huurder
    applicant applicants arbeitnehmern mitarbeitern nutzern benutzern
    passeggeri clienti lavoratori dipendenti empleados trabajadores usuarios
    pasajeros funcionários empregados usuários passageiros werknemers
    gebruikers klanten passagiers utilisateurs salariés employés passagers
    voyageurs
    """
)
_FIRST_PERSON = _words(
    """
    i me my mine myself i'm i've i'd ich mich mir mein meine meinen meinem meiner
    je moi me mon ma mes j'ai ai-je dois-je puis-je suis-je yo mi mis conmigo io
    mio mia miei mie eu mim meu minha meus minhas ik mij mijn
    """
)
_THIRD_PERSON = _words(
    """
    they them their they're they've they'd he she his her sich zichzelf
    sein seine seinen seinem seiner ihr ihre ihren ihrem son sa ses il elle
    a-t-il peut-il doit-il su sus suo sua suoi seu seus
    zich zijn haar proprio propria propri proprie
    """
)
# The generic subject of each language ("Wie kann man …", "Peut-on …", "Ci si
# può …", "¿Se puede …?", "Hoe kun je …"), asked instead of "I".
_GENERIC_PRONOUNS = {
    "de": _words("man"),
    "fr": _words("on qu'on l'on peut-on"),
    "nl": _words("je men jij"),
    "it": _words("si ci"),
    "es": _words("se uno"),
    "pt": _words("se"),
}
# Languages whose verbs say "I" without a pronoun ("¿Puedo devolver…?").
_PRO_DROP = frozenset({"es", "it", "pt"})
# Past participles not made with "-ed", to their verb; not those that are
# words of their own ("left", "found", "felt", "shot", "born").
_IRREGULAR_PARTICIPLES = dict(
    pair.split(":")
    for pair in _words(
        """
    kept:keep paid:pay sent:send made:make held:hold built:build done:do
    taken:take given:give seen:see known:know shown:show written:write
    sold:sell told:tell bought:buy brought:bring caught:catch taught:teach
    lost:lose spent:spend won:win chosen:choose frozen:freeze stolen:steal
    broken:break spoken:speak hidden:hide forgotten:forget eaten:eat
    drawn:draw grown:grow thrown:throw withdrawn:withdraw met:meet led:lead
    fed:feed lent:lend understood:understand begun:begin driven:drive
    ridden:ride worn:wear torn:tear sought:seek struck:strike
    run:run set:set put:put cut:cut
    """
    )
)
# Forms of a three-letter verb too short for the suffix rules of _stem ("feed"
# is no "fee" fed).
_SHORT_VERB_FORMS = {"used": "use", "using": "use"}
# Past tenses not made with "-ed", to their verb: paired only with the verb's
# participle ("Who wrote it?" / "By whom was it written?"), both past.
_IRREGULAR_PRETERITES = dict(
    pair.split(":")
    for pair in _words(
        """
    wrote:write took:take gave:give saw:see knew:know chose:choose froze:freeze
    stole:steal broke:break spoke:speak hid:hide forgot:forget ate:eat drew:draw
    grew:grow threw:throw withdrew:withdraw began:begin drove:drive rode:ride
    wore:wear tore:tear
    """
    )
)
_PIVOTS = _words(
    "than to into para nach alla al vs versus naar vers hacia verso "
    "before after antes después avant après prima dopo depois vor"
)
_NOT_ADVERBS = _words("only early daily weekly monthly yearly hourly family supply")
_COORDINATORS = {
    "en": _words("and or"),
    "de": _words("und oder"),
    "fr": _words("et ou"),
    "es": _words("y o"),
    "it": _words("e o"),
    "pt": _words("e ou"),
    "nl": _words("en of"),
}
_COMPARATIVES = _words(
    "más menos mejor peor mayor menor plus moins meilleur meilleure mieux pire "
    "più meno migliore peggiore meglio mais melhor pior maior menor besser "
    "schlechter mehr weniger lieber beter slechter meer minder liever"
)
_FOREIGN_THAN = _words("que als dan di che do")
_PAST_AUXILIARIES = _words("did was were had")
_NUMBER_TO = _words("to into onto on alla al a à auf nach zu para than vs versus / :")
_NUMBER_FROM = _words("from")
_NUMBER_OR_WORD = re.compile(rf"{_NUMBER.pattern}|[^\W\d_]+(?:['-][^\W\d_]+)*|[/:]")
_PASSIVE_AUXILIARIES = _words("is are was were be been being get gets got")
_QUESTION_WORDS = _words(
    "when where why how who whom which what whose long often much many"
)
# A consonant doubled before "-ed" or "-ing" ("shipp", "plann"), not one that
# doubles in the verb itself ("call", "pass", "buzz", "stuff", "add").
_DOUBLED = re.compile(r"([^\Waeiouylsfzd])\1$")
_OPPOSED_PREFIXES = (
    ("on", "off"),
    ("in", "out"),
    ("up", "down"),
    ("over", "under"),
    ("pre", "post"),
    ("im", "ex"),
)
_NEGATING_PREFIXES = ("un", "non", "dis", "in", "im", "il", "ir", "de", "anti")
_ROLE_SYNONYMS = {"into": "to", "onto": "to", "toward": "to", "towards": "to"}
_DETERMINERS = _words(
    "the a an my your his her its our their this that these those "
    "le la les l un une el los las uno una il lo gli o os um uma "
    "der die das den dem des ein eine einen einem einer de het een"
)
_PREPOSITIONS = _words(
    "in on at for from by with about to into onto of over under before after "
    "during within through via per than between across near inside outside "
    "en dans sur pour avec de im in auf für mit von bei nach por para con dentro "
    "su per da van naar uit voor met no na nos nas em do dos das ao aos pelo pela "
    "del al nel nella sul sulla dal dalla alla au aux du des chez am zum zur vom "
    "beim op aan bij"
)


# Questions whose person may be any role: "How does a baker know …".
_OPEN_QUESTIONS = _words("how where what which when")
# Question words that open a phrase ("which port", "how many servers").
_WH_DETERMINERS = _words("which what whose")
_HOW_MANY = (("how", "many"), ("how", "much"))


def _is_verb_before_subject(word: str) -> bool:
    return (
        word in _PASSIVE_AUXILIARIES
        or word in ("will", "would", "shall", "do", "does", "did")
        or word.startswith("modal")
    )


_GET_FORMS = _words("get gets got getting gotten")


def _is_participle(words: Sequence[str]) -> bool:
    return bool(words) and (
        (words[0].endswith("ed") and len(words[0]) > 4)
        or words[0] in _IRREGULAR_PARTICIPLES
    )


def _stem(word: str) -> str:
    # Enough to match "closes", "closed" and "closing" to "clos", and
    # "weakness" and "weaknesses" to "weakness"; "shipped" to "ship", "paid" to
    # "pay".
    word = _IRREGULAR_PARTICIPLES.get(word, _SHORT_VERB_FORMS.get(word, word))
    if len(word) > 4 and word.endswith(("ies", "ied")):
        word = word[:-3] + "y"  # "carries", "carried": "carry"
    elif word.endswith("sses"):
        word = word[:-2]
    elif not word.endswith("ss"):
        for suffix in ("ing", "ed", "es", "s"):
            if len(word) > len(suffix) + 2 and word.endswith(suffix):
                word = word[: -len(suffix)]
                if suffix in ("ed", "ing") and _DOUBLED.search(word):
                    word = word[:-1]
                break
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


def _root(word: str) -> str:
    # "configure", "configuration" and "configured" share "configur"; a root keeps
    # at least five letters, so "import" and "important" stay apart.
    for suffix in _DERIVATIONAL:
        if word.endswith(suffix) and len(word) - len(suffix) >= 5:
            return word[: -len(suffix)]
    return word


@functools.cache
def _vocabulary() -> frozenset[str]:
    # The embedding model's WordPiece vocabulary: whole English words, used only to
    # tell a misspelling ("pasword") from another word ("rest" against "reset").
    document = json.loads(_VOCABULARY_PATH.read_text(encoding="utf-8"))
    return frozenset(
        token
        for token in document["model"]["vocab"]
        if token.isalpha() and not token.startswith("##")
    )


@dataclass(frozen=True, slots=True)
class _Token:
    word: str  # lower case
    stem: str
    name: bool  # capitalised or upper-case where a sentence does not start
    position: int
    expanded: bool = False  # written as a shorthand ("k8s", "repo")
    marker: str = ""  # the preposition that introduces it ("in" Python)


@dataclass(frozen=True)
class _Features:
    """What the checks read of one text.

    The vetoes' fields are computed at once; the content words, their nouns and
    directions only when first read (by the order check and the alignment), since
    most candidates fall to a veto before (a lookup verifies up to ``top_k``).
    """

    language: str
    numbers: tuple[str, ...]
    quoted: frozenset[str]
    code: frozenset[str]
    code_spans: frozenset[str]
    plain: str  # the text, its code's markup taken away
    negated: bool
    tense: str  # "past", "future", both ("past future") or neither ("")
    number_flows: frozenset[tuple[str, str]]  # (from, to): "port 80 to 8080"
    counted: frozenset[tuple[str, str]]  # (number, the stem it counts): "2 codes"
    words: tuple[str, ...]
    tokens: tuple[str, ...]
    text: str  # what the words were cut from
    wrapped: bool = False
    opened: bool = False  # opened with a request: "Erkläre, wie …"

    # Cached on the instance at first read: later reads are plain attributes.
    @functools.cached_property
    def veto_fields(self) -> tuple[str, ...]:
        """What :func:`fingerprint` keeps of this text, field by field."""
        return (
            _FINGERPRINT_VERSION,
            self.language,
            _digest(self.numbers),
            _digest(self.quoted),
            # Marks of one word may be typed as a plain word (_marks_differ).
            _digest(mark for mark in self.code if not mark.isalnum()),
            "1" if self.negated else "0",
        )

    @functools.cached_property
    def indent_shape(self) -> tuple[tuple[int, str], ...]:
        """Each line after the first: its depth's rank and its code tokens."""
        lines = [line for line in self.plain.split("\n")[1:] if line.strip()]
        depths = sorted({len(line) - len(line.lstrip()) for line in lines})
        return tuple(
            (
                depths.index(len(line) - len(line.lstrip())),
                " ".join(_CODE_TOKEN.findall(line)),
            )
            for line in lines
        )

    @functools.cached_property
    def code_flows(self) -> frozenset[tuple[str, str]]:
        """Inline code spans joined by "than", "to" or "from", as (first, second).

        "is `===` stricter than `==`" gives ("===", "==").
        """
        items = [
            (_code_tokens(span), "") if span else ("", word.lower())
            for span, word in _SPAN_OR_WORD.findall(self.text)
        ]
        return _number_flows(items)

    @functools.cached_property
    def asked_for(self) -> frozenset[str]:
        """What its question words ask for (see _asked_for); read per candidate."""
        return _asked_for(self)

    @functools.cached_property
    def code_text(self) -> str:
        """Every token of the text as code tokens, read when code spans differ."""
        return _code_tokens(self.plain)

    @functools.cached_property
    def active_order(self) -> list[int] | None:
        """The content words of an English passive in the active's order, or None.

        "[when] is X Ved by Y, Z" reads as "[when] Y Ved X, Z"; with no agent, "[when]
        Ved X, Z". A question word stays first.
        """
        indices = list(range(len(self.content)))
        words = self.words
        for index, token in enumerate(self.content):
            participle = (
                token.word.endswith("ed") or token.word in _IRREGULAR_PARTICIPLES
            )
            if not participle or not any(
                word in _PASSIVE_AUXILIARIES for word in words[: token.position]
            ):
                continue
            if token.position and words[token.position - 1] in _DETERMINERS:
                continue  # an adjective: "is it binding without a written contract"
            asked = 0
            while asked < index and self.content[asked].word in _QUESTION_WORDS:
                asked += 1
            # "Which port is used by Redis": the question's phrase is the subject,
            # and stays first, as in "Which port does Redis use".
            verb = next(
                (
                    p
                    for p, word in enumerate(words)
                    if p and _is_verb_before_subject(word)
                ),
                token.position,
            )
            fronted = asked
            while fronted < index and self.content[fronted].position < verb:
                fronted += 1
            if (words[0] in _WH_DETERMINERS or words[:2] in _HOW_MANY) and (
                asked < fronted == index
            ):
                asked = fronted
            elif asked == index and not (index == 0 and words[0] in _QUESTION_WORDS):
                # no subject before it: an adjective ("are unused"); unless the
                # question word is the subject ("what is freed by the collector")
                continue
            after = indices[index + 1 :]
            markers = [self.content[k].marker for k in after]
            agent_at = next((i for i, m in enumerate(markers) if m == "by"), None)
            agent: list[int] = []
            if agent_at is not None:
                end = next(
                    (i for i, m in enumerate(markers) if i > agent_at and m),
                    len(after),
                )
                agent = after[agent_at:end]
                after = after[:agent_at] + after[end:]
            return [*indices[:asked], *agent, index, *indices[asked:index], *after]
        return None

    @functools.cached_property
    def clause_starts(self) -> list[int]:
        """Content indices where a clause or sentence after the first begins."""
        starts = _sentence_starts(self.text, _CLAUSE_END)
        return [
            index
            for index, (before, token) in enumerate(itertools.pairwise(self.content), 1)
            if any(p in starts for p in range(before.position + 1, token.position + 1))
        ]

    @functools.cached_property
    def _content_and_dropped(self) -> tuple[tuple[_Token, ...], tuple[_Token, ...]]:
        return _content(
            self.tokens, list(self.words), _sentence_starts(self.text), self.language
        )

    @property
    def content(self) -> tuple[_Token, ...]:
        return self._content_and_dropped[0]

    @property
    def dropped(self) -> tuple[_Token, ...]:
        """Words dropped as misspelt filler (see _content)."""
        return self._content_and_dropped[1]

    @functools.cached_property
    def nouns(self) -> frozenset[str]:
        return frozenset(
            _stem(word)
            for previous, word in itertools.pairwise(self.words)
            if previous in _DETERMINERS and word not in _FILLER
        ) | frozenset(token.stem for token in self.content if token.name)

    @functools.cached_property
    def directions(self) -> frozenset[tuple[str, str]]:
        stems = [(token.position, token.stem) for token in self.content]
        return _directions(list(self.words), stems, self.nouns)


# Contractions typed without their apostrophe: "whats" is "what's", "dont" is
# "don't" (and so a negation).
_BARE_CONTRACTIONS = re.compile(
    r"\b(what|how|where|who|when|that|there|it|i|you|we|they)(s|ve|re|ll|d)\b|"
    r"\b(do|does|did|is|are|was|were|can|won|should|would|could|have|has)(nt)\b",
    re.I,
)


_ELIDED = {
    "l": "la",
    "j": "je",
    "all": "alla",
    "dall": "dalla",
    "dell": "della",
    "nell": "nella",
    "sull": "sulla",
    "un": "una",
}
_ELISION = re.compile(rf"\b({'|'.join(_ELIDED)})'(?=[^\W\d_])", re.I)
_FRENCH_INVERSION = re.compile(
    r"(?<!')\b(est|puis|dois|peux|peut|faut|suis|ai|avez|êtes|pouvez|devez|"
    r"doit|sont|sait|sais|savez|va|vais|fait|peuvent|doivent) "
    r"(ce|je|tu|il|elle|on|nous|vous|ils|elles)\b(?= \w)",
    re.I,
)
_MODAL_VERBS = ("should", "could", "would")


_MAYBE_MODAL = re.compile(r"\b[scw][a-z]{3,6}\b", re.I)


@functools.cache
def _modal_misspellings() -> dict[str, str]:
    # "shoud", "shuold": a modal verb misspelt into no word is the modal, so the
    # modal phrases read it. Every non-word one edit from one, with its first
    # letter kept, to the modal.
    letters = "abcdefghijklmnopqrstuvwxyz"
    variants: set[str] = set()
    for modal in _MODAL_VERBS:
        for i in range(1, len(modal) + 1):
            variants.add(modal[:i] + modal[i + 1 :])  # a letter left out
            variants.update(modal[:i] + c + modal[i:] for c in letters)
            variants.update(modal[:i] + c + modal[i + 1 :] for c in letters)
            if i + 1 < len(modal):
                variants.add(modal[:i] + modal[i + 1] + modal[i] + modal[i + 2 :])
    variants -= _vocabulary()
    variants -= set(_MODAL_VERBS)
    return {
        variant: next(m for m in _MODAL_VERBS if _edit_distance(variant, m) == 1)
        for variant in variants
    }


def _modal_spelling(match: re.Match[str]) -> str:
    word = match.group(0)
    return _modal_misspellings().get(word.lower(), word)


_BY_WHOM_WORDS = {
    "by whom": "who",
    "von wem": "wer",
    "par qui": "qui",
    "por quién": "quién",
    "da chi": "chi",
    "por quem": "quem",
    "door wie": "wie",
}
_BY_WHOM = re.compile(rf"\b(?:{'|'.join(_BY_WHOM_WORDS)})\b", re.I)


def _apostrophe(match: re.Match[str]) -> str:
    if match.group(4):
        return f"{match.group(3)}n't"
    stem, ending = match.group(1), match.group(2).lower()
    # Not "im" (German "in dem"), nor "its", "id", "ill", "wed", "well" or
    # "were", which are words of their own.
    if stem.lower() in ("i", "it", "we") and ending != "ve":
        return match.group(0)
    return f"{stem}'{ending}"


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", canonical_numbers(text)).translate(_QUOTES)
    text = re.sub(r"\bOK\b", "ok", text)  # no name
    text = text.replace("\u2212", "-")  # the minus sign, typed as a hyphen
    text = _BARE_CONTRACTIONS.sub(_apostrophe, text)
    text = re.sub(r"\b(won)'t\b", "will not", text, flags=re.I)
    text = re.sub(r"\b(can)'?t\b", "can not", text, flags=re.I)
    text = _MAYBE_MODAL.sub(_modal_spelling, text)
    # "conjugue-t-on" is "conjugue" and its pronoun
    text = re.sub(r"\b(\w+)-t-(il|elle|on)\b", r"\1 \2", text, flags=re.I)
    # A French question's verb and pronoun typed without their hyphen.
    text = _FRENCH_INVERSION.sub(r"\1-\2", text)
    # "how dose it work": the misspelling that is a word of its own.
    text = re.sub(
        r"\b(how|why|what|where|when|who)\s+dose\b(?!\s+of\b)",
        r"\1 does",
        text,
        flags=re.I,
    )
    # "by whom" asks who: "Von wem wurde …" is "Wer hat …"
    text = _BY_WHOM.sub(lambda m: _BY_WHOM_WORDS[m.group(0).lower()], text)
    text = re.sub(r"\bw/o\b", "without", text, flags=re.I)
    text = re.sub(r"\bw/", "with ", text, flags=re.I)
    return re.sub(r"n't\b", " not", text, flags=re.I)


# Phrases rewritten before the text is cut into words. First the scaffolding
# that asks a question politely or verbosely without adding to it ("I was
# wondering, could you tell me", "what is the best way to"); then modal verbs,
# which are content, not filler: each becomes the token of its class, so "have
# to" explains "must" but nothing explains "can" against "must". A modal left
# out of every phrase here is an ordinary content word that must be matched.
_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.I), replacement)
    for pattern, replacement in (
        # greetings, sign-offs and discourse markers around the question
        (
            r"\b(?:hope you(?:'re| are) (?:doing )?well|"
            r"(?:thanks|thank you) (?:so much|a lot|in advance)|many thanks|"
            r"sorry to bother you|sorry if this is (?:a )?(?:dumb|stupid|silly)"
            r"(?: question)?(?: but)?|good (?:morning|afternoon|evening)|"
            r"guten (?:tag|morgen|abend)|bonjour|bonsoir|madame,? monsieur|"
            r"buen(?:os|as) (?:días|tardes|noches)|estimad[oa]s? señor(?:es|a)?|"
            r"buongiorno|buonasera|gentile (?:signora|signore|cliente)|"
            r"bom dia|boa (?:tarde|noite)|prezad[oa]s?(?: senhor(?:es|a)?)?|"
            r"random question(?: but)?|quick one|you know|i mean|or whatever|"
            r"vielen dank|danke schön|liebe grüße|sag mal|kurze frage|"
            r"ehrlich gesagt|merci d'avance|merci beaucoup|en fait|du coup|"
            r"s'il (?:vous|te) pla[iî]t|petite question|muchas gracias|a ver|"
            r"o sea|pues eso|una (?:duda|pregunta|cosa)(?: rápida)?|pregunta rápida|"
            r"por favor|per favore|una domanda|domanda veloce|tipo assim|"
            r"tudo bem|uma (?:dúvida|pergunta)(?: rápida)?|valeu|hoi|buenas|"
            r"una preguntita|una domandina|(?:alors )?voilà|"
            r"j'espère que (?:vous allez|tu vas) bien|espero que est[ée]s? bien|"
            r"spero che (?:tu stia|stiate) bene|ik hoop dat het (?:goed gaat|"
            r"met je goed gaat)|"
            # apologies and asides that ask nothing
            r"if you (?:don'?t|do not) mind|if it'?s not too much trouble|"
            r"much appreciated|appreciate it|danke (?:im voraus|vorab)|"
            r"grazie mille|mil gracias|gracias de antemano|(?:mal )?ganz ehrlich|"
            r"hiya|hope that'?s ok(?:ay)?|una pregunta rapidita|"
            r"una domanda al volo|even een snelle vraag|só uma dúvida(?: rápida)?|"
            r"toute bête|"
            r"i have a question|(?:i guess )?my question is|i just need to know|"
            r"i just wanted to ask|"
            r"désolé si (?:c'est|la question est) (?:basique|bête|idiote)|"
            r"(?:igual|quizás?) es una pregunta tonta|"
            r"perdón si es una pregunta tonta|scusa(?:te)? se è una domanda stupida|"
            r"sorry als dit een domme vraag is|desculpa se for uma pergunta boba|"
            # an apology for the question, up to its "but"
            r"(?:i'?m )?(?:sorry|apologies|désolée?|excusez-moi|entschuldig(?:e|t|"
            r"en sie|ung)|disculp[ae]|perd[oó]n[ae]?|scus[ai](?:te|mi)?|"
            r"desculp[ae])\b[^.?!]{0,40}?"
            r"\b(?:question|frage|vraag|pregunta|domanda|pergunta|basic|weird|"
            r"dumb|stupid|silly|basique|bête|banale?|tonta|boba|domme|störung|"
            r"déranger|molestia|disturbo|incomodar|bother|trouble|bug|obvious|"
            r"paranoid|dumm|blöde?|dom)\b"
            r"(?:\s+(?:basic|weird|dumb|stupid|silly|basique|bête|banale?|tonta|"
            r"boba|domme|stupida|question|frage|vraag|pregunta|domanda|pergunta))?"
            r"[^.?!,]{0,20}?"
            r"(?:,?\s*(?:but|mais|aber|pero|ma|mas|maar)\b)?|salve|quick q|"
            r"i hope you can help|thanks for your time|pretty please|real quick|"
            r"sorry (?:for|about) the (?:noob|dumb|stupid|basic) question|"
            r"sorry if this is (?:basic|obvious)|i'?m probably being dumb(?: here)?|"
            r"i (?:think i )?might be confused|kind of|sort of|i guess|ugh|"
            r"perdona la molestia|perdón por la molestia|más o menos|"
            r"entschuldigen sie die frage|hallo zusammen|scusa(?:te)? il disturbo|"
            r"volevo chiedere|desculpa incomodar|queria saber|"
            r"even een vraagje|alvast bedankt)\b[.!,:]?"
            # the "but" that leads from an aside to the question
            r"(?:\s*(?:but|ma|mas|pero|mais|aber|maar)\b)?",
            " ",
        ),
        (r"(?:^|(?<=[.!?,]))\s*well,", " "),
        (r",? or not(?=\s*[?.!]|\s*$)", " "),
        (r"\bcomment (?:je fais|on fait|faire|fait-on) pour\b", " comment "),
        # formal request formulas around the question, in each language
        (
            r"\b(?:i(?: would|'d) be (?:very |most )?grateful if you (?:could|would)"
            r"(?: please| kindly)?(?: (?:tell me|let me know|explain|advise(?: on)?|"
            r"clarify))?|(?:could|would|can|might) you(?: please| kindly)?"
            r"(?: be (?:able|so kind as) to)?(?: please| kindly)? (?:advise|"
            r"clarify|inform me|let me know|confirm)(?: on| about| of)?|"
            r"i am writing to (?:inquire|enquire|ask)(?: about)?|"
            r"i(?: would|'d) like to (?:inquire|enquire)(?: about)?|"
            r"(?:please )?let me know|(?:would|do) you mind explaining)"
            r"(?: whether| if)?\b[,:]?",
            " ",
        ),
        (
            # "could you (please) tell me" in each language, built from its
            # parts: a polite modal, "you", "me", "please", a verb of telling
            r"\b(?:sehr geehrte(?:r)? damen und herren|"
            r"je (?:souhaiterais|voudrais|aimerais) savoir|"
            r"(?:quisiera|me gustaría) saber|vorrei sapere|gostaria de saber|"
            r"ik zou (?:graag )?willen weten|ich würde gerne wissen|"
            r"(?:könnten|können|würden|könntest|kannst|würdest) (?:sie|du)"
            r"(?: mir| uns)?(?: bitte)?(?: freundlicherweise| kurz| mal)? "
            r"(?:sagen|mitteilen|erklären|erläutern|verraten|beschreiben)|"
            r"(?:zou|zouden|kunt|kun|kan|wilt|wil) (?:u|je|jij)(?: mij| me)?"
            r"(?: alstublieft| misschien| even)?(?: kunnen| willen)? "
            r"(?:vertellen|uitleggen|zeggen|laten weten)|"
            r"(?:pourriez|pouvez|auriez|pourrais|peux)-(?:vous|tu)"
            r"(?: l'amabilité de| la gentillesse de)?(?: s'il vous plaît)?"
            r"\s+m'(?:indiquer|expliquer|dire|préciser|confirmer)|"
            r"(?:me )?(?:podría|podrías|puede|puedes|podrían)(?: usted)?,?"
            r"(?: por favor,?)? (?:indicarme|decirme|explicarme|informarme|"
            r"aclararme|indicar|decir|explicar|informar|aclarar)(?:,? por favor)?|"
            r"(?:mi )?(?:potreste|potrebbe|potresti|può|puoi)"
            r"(?: gentilmente| cortesemente| per favore)? (?:dirmi|indicarmi|"
            r"spiegarmi|chiarirmi|indicare|dire|spiegare|chiarire)|"
            r"(?:me )?(?:poderia|poderias|pode|podes|podia),?"
            r"(?: por (?:favor|gentileza),?)? (?:me )?(?:dizer|informar|explicar|"
            r"indicar|esclarecer)(?:-me)?)"
            r"\b,?(?: (?:ob|si|se|of)\b)?",
            " ",
        ),
        # politeness and wrappers that add no content to the question
        (
            r"\b(?:i was wondering|i am wondering|i'm wondering|i wonder|"
            r"i would like to (?:know|ask)|i'd like to (?:know|ask)|"
            r"i want to know|i need to know|do you know|any idea|"
            r"quick question|just curious)\b(?: if| whether)?[,:]?",
            " ",
        ),
        (
            r"\b(?:can|could|would|will|might) you(?: please| kindly| maybe| possibly)?"
            r"(?: be (?:able|so kind as) to)?"
            r" (?:tell|show|explain(?: to)?|let)(?: me| us)?(?: know)?\b",
            " ",
        ),
        (
            r"\b(?:can|could|would|will) you(?: please| kindly)?"
            r" help(?: me| us)?(?: with)?\b",
            " ",
        ),
        (r"\b(?:i need|i'd like|i would like|i want) help with\b", " "),
        # "how can I", "how do I", "what's the best way to": the same question
        (r"\bhow (?:do|does|can|could|would|should|might)\b", " how "),
        (r"\bhow (?:i|we|you|one) (?:can|could|should|might)\b", " how "),
        (r"\bwie (?:kann|könnte|können|könnten) (?:ich|man|wir)\b", " wie "),
        (
            r"\bcomment (?:puis-je|peut-on|pourrais-je|pouvons-nous)\b",
            " comment ",
        ),
        (r"\bc[óo]mo (?:puedo|podría|podemos|se puede)\b", " cómo "),
        (r"\bcome (?:posso|potrei|possiamo|si può)\b", " come "),
        (r"\bcomo (?:posso|poderia|podemos|se pode)\b", " como "),
        # a request to the assistant in the form of a question is the request
        (
            r"\b(?:can|could|would|will) you(?: please| kindly)? (?=(?:suggest|"
            r"recommend|compare|calculate|give|list|describe|summari[sz]e|"
            r"write|translate|name|draft|outline)\b)",
            " ",
        ),
        (
            r"\b(?:what is|what's|whats) the (?:best |easiest |simplest |"
            r"quickest |fastest |right |correct |proper )?(?:way|process|"
            r"procedure) (?:to|for)\b",
            " how ",
        ),
        (r"\b(?:is there a way|is there any way) to\b", " how "),
        (r"\bhow to\b", " how "),
        # "what to pack" asks what one should or can pack (see _align)
        (r"\b(what|where|which|when|who|whom) to\b(?= \w)", r"\1 modalto"),
        # a sentence that opens by asking the assistant to tell is the question
        (
            r"(?:^|(?<=[.!?]))\s*(?:please )?(?:describe|list|give me|tell me|"
            r"walk me through|define|suggest|recommend|name|show me|outline|"
            r"help me understand|break down|"
            r"explain(?: to me)?|erklär(?:e|en sie)?(?: mir)?|nenne(?: mir)?|"
            r"zeig(?:e)?(?: mir)?|sag(?:e)?(?: mir)?|beschreib(?:e)?|"
            r"explícame|explica(?:me)?|dime|enumera|indícame|muéstrame|"
            r"explique(?:-moi)?|donne-moi|montre-moi|dis-moi|décris|"
            r"spiegami|dimmi|elenca|mostrami|descrivi|"
            r"me explica|mostre|me diga|diga-me|teach me|indique-moi|"
            r"indiquez-moi|expliquez(?:-moi)?|me explique|me mostre|me mostra|"
            r"mostre-me|explique-me|noem|leg (?:me )?uit|vertel(?: me)?|"
            r"beschrijf|geef(?: me)?|laat (?:me )?zien|indicami|liste)\b[,:]?",
            " ",
        ),
        # modal verbs by class
        (r"\b(?:must not|mustn't|must never)\b", " modalforbid "),
        (r"\b(?:should not|shouldn't|ought not to)\b", " modaladvisenot "),
        (
            r"\b(?:must|have to|has to|had to|having to|need to|needs to|"
            r"needed to|required to|obliged to|obligated to|mandatory|"
            r"compulsory|obligatory)\b",
            " modalmust ",
        ),
        (r"\b(?:should|ought to)\b", " modalshould "),
        (
            r"\b(?:can|could|may|(?:be |is |am |are )?able to|is it possible to|"
            r"possible|allowed to|permitted to)\b",
            " modalcan ",
        ),
        (r"\boptional\b", " modaloptional "),
        # German, French, Spanish, Italian, Portuguese and Dutch modals; the
        # conditional "could" of each is "can", as in English
        (r"\b(?:muss|musst|müssen|müsst|brauche? ich|braucht man)\b", " modalmust "),
        (r"\b(?:soll|sollte|solltest|sollten|sollen)\b", " modalshould "),
        (
            r"\b(?:kann|kannst|können|könnt|darf|darfst|dürfen|könnte|könntest|"
            r"könnten)\b",
            " modalcan ",
        ),
        (r"\b(?:dois|doit|doivent|devons|devez|faut-il|il faut)\b", " modalmust "),
        (r"\b(?:devrais|devrait|devrions|devriez|devraient)\b", " modalshould "),
        (
            r"\b(?:peux|peut|peuvent|pouvons|pouvez|puis-je|pourrais|pourrait|"
            r"pourrions|pourriez|pourraient)\b",
            " modalcan ",
        ),
        (
            r"\b(?:debo|debe|deben|debemos|tengo que|tiene que|tienen que|"
            r"hay que)\b",
            " modalmust ",
        ),
        (r"\b(?:debería|deberías|deberían|deberíamos)\b", " modalshould "),
        (
            r"\b(?:puedo|puede|pueden|podemos|puedes|podría|podrías|podríamos|"
            r"podrían)\b",
            " modalcan ",
        ),
        (r"\b(?:devo|deve|devono|dobbiamo|bisogna)\b", " modalmust "),
        (r"\b(?:dovrei|dovrebbe|dovrebbero|dovremmo)\b", " modalshould "),
        (
            r"\b(?:posso|può|possono|possiamo|puoi|potrei|potrebbe|potremmo|"
            r"potrebbero)\b",
            " modalcan ",
        ),
        (
            r"\b(?:devem|devemos|tenho que|tem que|temos que|têm que)\b",
            " modalmust ",
        ),
        (r"\b(?:deveria|deveriam|deveríamos)\b", " modalshould "),
        (
            r"\b(?:pode|podem|podes|poderia|poderiam|poderíamos)\b",
            " modalcan ",
        ),
        (r"\b(?:zou moeten|zouden moeten)\b", " modalshould "),
        (r"\b(?:moet|moeten|moest|moesten)\b", " modalmust "),
        (r"\b(?:kan|kun|kunt|kunnen)\b", " modalcan "),
    )
)
# The first patterns of _PHRASES are politeness wrappers: a text they
# rewrote was accepted as "rephrased", not "normalized".
_WRAPPERS = 10
# The pattern of a request that opens a sentence ("Describe …", "Erkläre …").
_OPENERS = next(
    index
    for index, (pattern, _) in enumerate(_PHRASES)
    if "walk me through" in pattern.pattern
)
# Verb phrases of one meaning, rewritten to one word before the synonyms below.
_PHRASAL: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.I), replacement)
    for pattern, replacement in (
        (r"\b(?:turn|switch)(?:ed|s|ing)? on\b", " enable "),
        (r"\b(?:turn|switch)(?:ed|s|ing)? off\b", " disable "),
        (r"\b(?:set|sets|setting) up\b", " configure "),
        (
            r"\b(?:log|logs|logged|logging|sign|signs|signed|signing) (?:in|into|on)\b",
            " login ",
        ),
        (r"\b(?:log|logs|logged|logging|sign|signs|signed|signing) out\b", " logout "),
        (r"\b(?:sign|signs|signed|signing) up\b", " register "),
        (r"\b(?:get|getting|got) rid of\b", " remove "),
        (r"\bfind out\b", " find "),
        (r"\blook(?:ing)? up\b", " find "),
        (r"\bget in touch with\b", " contact "),
        # before a number, a bound: "over $5,000" is "more than $5,000" (one
        # word: no "than" for a phrase to move across)
        (r"\b(?:more than|over|above)\s+(?=[$€£]?\d)", " morethan "),
        (r"\b(?:less than|fewer than|under|below)\s+(?=[$€£]?\d)", " lessthan "),
    )
)
# Near-certain synonyms of the support, code, devops and finance domains, by
# stem. Each group was measured on the development sets: a group that explained
# any near-miss there was left out (see docs/cache.md).
_SYNONYM_GROUPS = (
    "delete remove erase eliminate",
    "retrieve fetch obtain",
    "fix resolve repair solve",
    "start launch begin",
    "raise increase",
    "lower reduce decrease shrink",
    "modify edit update change alter",
    "contact reach",
    "suggest recommend",
    "purchase buy",
    "large big",
    "largest biggest",
    "tallest highest",
    "fast quick",
    "fastest quickest",
    "view see display",
    "find locate",
    "create make",
    "enable activate",
    "disable deactivate",
    "login",
    "register enroll",
    "migrate move",
    "connect integrate link",
    "skillet pan",
    "physician doctor",
    "price cost",
    "fee charge",
    "slow sluggish",
    "stop halt",
    "terminate cancel",
    "directory folder",
    "ask request",
    "modifier changer",
    "symptom sign",
    "deadline cutoff",
    "fire dismiss",
    "ill sick",
    "appeal contest",
    "complaint grievance",
    "smart wise sensible",
    "swap exchange",
    "bigger larger",
    "downtown central",
    "tip trick hint",
    "boss manager supervisor",
    "smell odor odour",
    "fridge refrigerator",
    "typical common usual",
    "keep preserve retain",
    "exit quit",
    "quickly rapidly",
    "damaged broken",
    "car vehicle automobile",
    "kid child",
    "choose pick select",
    "check verify",
    "luggage baggage",
    "flat apartment",
    "holiday vacation",
    "movie film",
    "medicine medication",
    "salary wage",
    "shipping delivery",
    "attorney lawyer",
    "quitar eliminar borrar remover quito elimino borro",
    "tardar demorar",
    "coche carro",
    "apagar excluir deletar",
    "sintoma sinal sintomas sinais",
    "abîmé endommagé",
    "améliorer perfectionner",
    "supprimer effacer",
    "knusprige krosse knusprig kross",
    "bekomme kriege bekommen kriegen",
    "löschen entfernen",
    "passwort kennwort",
    "prüfen überprüfen",
    "eliminare togliere rimuovere",
    "goedkoopste voordeligste",
    "verwijderen wissen",
    "above over",
)
_MODAL_TOKENS = _words(
    "modalforbid modaladvisenot modalmust modalshould modalcan modaloptional modalto"
)


def _rephrase(text: str) -> tuple[str, bool, bool]:
    """The text without wrappers; whether it had any; whether a request opened it."""
    wrapped = opened = False
    for index, (pattern, replacement) in enumerate(_PHRASES):
        text, count = pattern.subn(replacement, text)
        wrapped = wrapped or (count > 0 and index < _WRAPPERS)
        opened = opened or (count > 0 and index == _OPENERS)
    for pattern, replacement in _PHRASAL:
        text = pattern.sub(replacement, text)
    return text, wrapped, opened


@functools.cache
def _synonyms() -> dict[str, int]:
    return {
        _stem(word): group
        for group, words in enumerate(_SYNONYM_GROUPS)
        for word in words.split()
    }


_SPELLING = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"our(s|ed|ing|ite|ites)?$", r"or\1"),
        (r"is(e|es|ed|ing|ation|ations)$", r"iz\1"),
        (r"ys(e|es|ed|ing)$", r"yz\1"),
        (r"([^aeiou])re(s)?$", r"\1er\2"),
        (r"ll(ed|ing|er)$", r"l\1"),
        (r"ogue(s)?$", r"og\1"),
        (r"ence(s)?$", r"ense\1"),
        (r"mme(s)?$", r"m\1"),
    )
)


def _american(word: str) -> str:
    for pattern, replacement in _SPELLING:
        word = pattern.sub(replacement, word)
    return word


def _is_spelling(a: _Token, b: _Token) -> bool:
    # "colour"/"color", "organise"/"organize", "centre"/"center",
    # "cancelled"/"canceled": one word in two spellings.
    if a.name or b.name or a.word == b.word:
        return False
    return _american(a.word) == _american(b.word)


def _is_synonym(a: _Token, b: _Token) -> bool:
    if a.name or b.name:
        return False
    groups = _synonyms()
    group = groups.get(a.stem)
    return group is not None and group == groups.get(b.stem)


@functools.cache
def _wordnet_synsets() -> dict[str, tuple[int, ...]]:
    # A stem's synsets as a tuple: most stems have one or two, and a tuple holds
    # them in a fifth of a frozenset's memory (the table is 30,000 stems).
    synsets: dict[str, tuple[int, ...]] = {}
    lines = _WORDNET_PATH.read_text(encoding="utf-8").splitlines()
    for synset, line in enumerate(lines):
        for stem in {_stem(word) for word in line.split()}:
            synsets[stem] = (*synsets.get(stem, ()), synset)
    return synsets


@functools.cache
def _person_nouns() -> frozenset[str]:
    lines = _PERSONS_PATH.read_text(encoding="utf-8").splitlines()
    return frozenset(_stem(word) for word in lines)


@functools.cache
def _derivations() -> frozenset[tuple[str, str]]:
    pairs = set()
    for line in _DERIVATIONS_PATH.read_text(encoding="utf-8").splitlines():
        word, other = (_stem(w) for w in line.split())
        pairs |= {(word, other), (other, word)}
    return frozenset(pairs)


def _is_derivation(a: _Token, b: _Token) -> bool:
    # Where the suffixes of _root do not reach: "summary"/"summarize",
    # "registration"/"register".
    return not (a.name or b.name) and (a.stem, b.stem) in _derivations()


def _is_wordnet_synonym(a: _Token, b: _Token) -> bool:
    # English words of one frequent WordNet sense: "sluggish"/"slow",
    # "parcel"/"package", "irrigate"/"water".
    if a.name or b.name:
        return False
    synsets = _wordnet_synsets()
    right = synsets.get(b.stem, ())
    return any(synset in right for synset in synsets.get(a.stem, ()))


def _language(text: str, words: list[str], hint: str = "") -> str:
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
        return hint or "und"
    return best


def _numbers(text: str, words: list[str]) -> tuple[str, ...]:
    found = []
    for match in _NUMBER.finditer(text):
        whole, _, fraction = match.group(1).replace(",", "").partition(".")
        found.append((whole.lstrip("0") or "0") + (f".{fraction}" if fraction else ""))
    for word in words:
        if word in _NUMBER_WORDS:
            found.append(_NUMBER_WORDS[word])
        elif magnitude := _MAGNITUDE_SUFFIX.match(word):
            # "300k" is 300000, as "300,000" is.
            value = float(magnitude.group(1)) * (
                1000 if magnitude.group(2) == "k" else 1000000
            )
            found.append(f"{value:g}" if value < 1e15 else str(value))
    normalised = []
    for number in found:
        try:
            normalised.append(f"{float(number):g}")
        except ValueError:
            normalised.append(number)
    # "one" is often an article ("one pod" is "a pod"); a bare 1 says as little.
    return tuple(sorted(n for n in normalised if n != "1"))


def _code(text: str) -> tuple[frozenset[str], frozenset[str], str]:
    """Identifiers and symbols; code spans as token sequences; the text unmarked.

    Whitespace inside code is layout ("x=[i*2]" is "x = [ i * 2 ]"), and so is
    its markup: a fence and its language tag, or backticks, around the same code.
    """
    text = _LINE_CONTINUATION.sub(" ", text)  # a line continued is one line
    fenced = [_FENCE_TAG.sub("", span) for span in _FENCED.findall(text)]
    remainder = _FENCED.sub(" ", text)
    inline = _INLINE_CODE.findall(remainder)
    plain = " ".join([_INLINE_CODE.sub(r" \1 ", remainder), *fenced])
    marks: set[str] = set()
    for pattern in _IDENTIFIERS:
        marks |= {match.rstrip(".") for match in pattern.findall(plain)}
    marks |= {
        f"symbol:{symbol}{count}"
        for symbol in _SYMBOLS
        if (count := plain.count(symbol))
    }
    spans = frozenset(
        tokens for span in fenced + inline if (tokens := _code_tokens(span))
    )
    return frozenset(mark.lower() for mark in marks if mark), spans, plain


def _code_tokens(code: str) -> str:
    # Statements end at a ";" or a line's end, continued or not: "a; b" is
    # "a\nb". A string literal in either quotes is one string. A block opened by
    # a line's closing ":" (Python, YAML) is marked where it opens and closes,
    # since there the indentation says which lines it holds; a block of one line
    # is the line after the colon ("for x in y: f(x)").
    tokens: list[str] = []
    # per open block: its depth, marker index, lines, whether a Python statement
    # opened it
    blocks: list[list[int]] = []
    opened = statement = False

    def close() -> None:
        _, marker, lines, by_statement = blocks.pop()
        if lines == 1 and by_statement:
            del tokens[marker]
        else:
            tokens.append("</block>")

    for line in _LINE_CONTINUATION.sub(" ", code.lower()).split("\n"):
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        while blocks and depth < blocks[-1][0]:
            close()
        if opened and depth > (blocks[-1][0] if blocks else 0):
            blocks.append([depth, len(tokens), 0, statement])
            tokens.append("<block>")
        if blocks:
            blocks[-1][2] += 1
        for segment in _SHELL_SEPARATOR.split(line):
            tokens.extend(_segment_tokens(segment))
        words = line.split()
        opened = line.rstrip().endswith(":")
        # a YAML key's one nested line is still nested; a Python statement's
        # one line may stand after its colon instead
        statement = words[0].rstrip(":") in _PYTHON_BLOCK_KEYWORDS
    while blocks:
        close()
    return " ".join(
        f'"{token[1:-1]}"' if token[0] == "'" and len(token) > 1 else token
        for token in tokens
        if token != ";"
    )


def _segment_tokens(segment: str) -> list[str]:
    # A shell command's arguments are split by spaces: "./build/*" is one
    # argument, "./build /*" two. The command may follow prose ("Was macht
    # dieser Befehl: kubectl get pods -n prod?"), whose "?" ends no argument.
    words = segment.split()
    start = next((i for i, w in enumerate(words) if w in _SHELL_COMMANDS), None)
    if start is None:
        return _CODE_TOKEN.findall(segment)
    tokens = _CODE_TOKEN.findall(" ".join(words[:start]))
    arguments = words[start:]
    arguments[-1] = arguments[-1].rstrip("?!") or arguments[-1]
    for argument in arguments:
        tokens.extend([*_CODE_TOKEN.findall(argument), "<arg>"])
    return tokens


def _indents_differ(a: _Features, b: _Features) -> bool:
    # The same lines of code at other depths: "print('Ende')" inside the loop or
    # after it. Depths are compared as ranks, so two spaces or four is layout.
    if "\n" not in a.plain or "\n" not in b.plain:
        return False
    shape_a, shape_b = a.indent_shape, b.indent_shape
    return [line for _, line in shape_a] == [
        line for _, line in shape_b
    ] and shape_a != shape_b


def _quotes_differ(a: _Features, b: _Features) -> bool:
    # A quoted string on one side is the same string literal in the other's
    # code ("console.log('5'+3)", whose quote no space opens).
    for mine, other in ((a, b), (b, a)):
        for quoted in mine.quoted - other.quoted:
            if f' "{quoted}" ' not in f" {other.code_text} ":
                return True
    return False


def _marks_differ(a: _Features, b: _Features) -> bool:
    # A name in mixed case typed in lower case ("JavaScript" / "javascript",
    # "CrashLoopBackOff" / "crashloopbackoff") is the same name; any other mark
    # of code found on one side only is a change.
    for mine, other in ((a, b), (b, a)):
        spelled = {_SHORTHAND.get(word, word) for word in other.words}
        for mark in mine.code - other.code:
            if not (mark.isalnum() and (mark in other.words or mark in spelled)):
                return True
    return False


def _spans_differ(a: _Features, b: _Features) -> bool:
    """Whether a code span of one text is not, token for token, in the other."""
    return any(
        f" {span} " not in f" {other.code_text} "
        for one, other in ((a, b), (b, a))
        for span in one.code_spans - other.code_spans
    )


def _marker(words: list[str], index: int) -> str:
    # "in Python", "by a key", "for the new hire": the preposition a phrase
    # carries with it when it moves; none for a subject or an object, whose role
    # is their place.
    for previous in reversed(words[max(0, index - 3) : index]):
        if previous in _PREPOSITIONS:
            return previous
        if previous not in _DETERMINERS:
            return ""
    return ""


_SENTENCE_END = re.compile('\\s*[.!?:;\\n"(\u2014\u2013-]')
_CLAUSE_END = re.compile('\\s*[,.!?:;\\n"(\u2014\u2013-]')


def _sentence_starts(text: str, end: re.Pattern[str] = _SENTENCE_END) -> set[int]:
    starts = set()
    boundary = True
    for index, match in enumerate(_WORD.finditer(text)):
        if boundary:
            starts.add(index)
        tail = text[match.end() : match.end() + 3]
        boundary = bool(end.match(tail))
    return starts


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
        window = words[max(0, index - 4) : index]
        before = [stem for position, stem in content if position < index]
        after = [stem for position, stem in content if position > index]
        if relation == "to" and "from" in window:
            start = index - 4 + window.index("from")
            before = [stem for position, stem in content if start < position < index]
        if relation == "than" and len(before) > 1:
            before = before[:-1]  # skip the comparative: "tea healthier than"
        before_nouns = [stem for stem in before if stem in nouns] or before[-1:]
        after_nouns = [stem for stem in after if stem in nouns] or after[:1]
        if not before_nouns or not after_nouns:
            continue
        if relation == "to" and "from" in window:
            left = before_nouns[0]
        else:
            left = before_nouns[-1]
        right = after_nouns[0]
        pairs.add((right, left) if relation == "from" else (left, right))
    return frozenset(pairs)


@functools.cache
def _filler_deletions(language: str) -> dict[str, frozenset[str]]:
    # Every filler word of three letters or more (English's, or the question
    # words of another language), and each of its one-letter deletions, to the
    # filler words they come from: a misspelt filler word ("waht", "teh",
    # "coment") shares one of them.
    index: dict[str, set[str]] = {}
    # A text of no clear language may misspell any language's.
    words = {
        "en": _FILLER,
        "und": _FILLER.union(*_QUESTION_FILLER.values()),
    }.get(language) or _QUESTION_FILLER.get(language, frozenset())
    for word in words:
        if len(word) >= 3 and word.isalpha():
            for variant in _with_deletions(word):
                index.setdefault(variant, set()).add(word)
    return {variant: frozenset(words) for variant, words in index.items()}


def _with_deletions(word: str) -> set[str]:
    return {word} | {word[:i] + word[i + 1 :] for i in range(len(word))}


def _is_known_word(word: str) -> bool:
    """A word of the model's vocabulary, or of a frequent WordNet sense ("thaw").

    WordNet's every lemma would make words of typos ("wether", "takin"); the
    words of its frequent senses are common words.
    """
    return word in _vocabulary() or _stem(word) in _wordnet_synsets()


def _is_misspelt_filler(word: str, language: str) -> bool:
    """A non-word one edit from a filler word: "waht", "teh", "yuor", "coment"."""
    if len(word) < 3 or not word.isalpha() or _is_known_word(word):
        return False
    index = _filler_deletions(language)
    return any(
        _edit_distance(word, filler) == 1
        for variant in _with_deletions(word)
        for filler in index.get(variant, ())
    )


def _content(
    tokens: Sequence[str], words: list[str], starts: Container[int], language: str
) -> tuple[tuple[_Token, ...], tuple[_Token, ...]]:
    """The content words, and the words dropped as misspelt filler.

    A dropped word may still be a typo of a content word of the other text
    ("parental leve": "leve" is one letter from filler and from "leave").
    """
    content: list[_Token] = []
    dropped: list[_Token] = []
    filler = _FILLER_BY_LANGUAGE.get(language, _ALL_FILLER)
    for index, (token, word) in enumerate(zip(tokens, words, strict=True)):
        if not any(char.isalnum() for char in word) or word in _NUMBER_WORDS:
            continue
        if _NUMBER.fullmatch(word):
            continue  # numbers are the numbers check's business
        if word in _GET_FORMS and _is_participle(words[index + 1 : index + 2]):
            continue  # a passive's auxiliary, as "is": "gets acquired", "got paid"
        # "US" is no "us", "WHERE" no "where", and "class A" no article: a word
        # in capitals, or capitalised inside a sentence, is a name; but not a
        # capitalised filler word, which starts a sentence after a greeting
        # ("Hi, What is", "kurze Frage, Wie").
        # German capitalises every noun: there, only capitals mark a name.
        name = token != "I" and (
            (token.isupper() and (len(token) > 1 or index not in starts))
            or (
                index not in starts
                and token[0].isupper()
                and word not in filler
                and language != "de"
            )
            or any(char.isupper() for char in token[1:])
        )
        expanded = False
        if not name:
            expanded = word in _SHORTHAND
            word = _SHORTHAND.get(word, word)
            if word in filler:
                continue
            if _is_misspelt_filler(word, language):
                dropped.append(_Token(word, _stem(word), name, index))
                continue
        content.append(
            _Token(word, _stem(word), name, index, expanded, _marker(words, index))
        )
    return tuple(content), tuple(dropped)


@functools.lru_cache(maxsize=4096)
def _features(text: str, language_hint: str = "") -> _Features:
    """What the checks read of ``text``.

    In ``language_hint``'s language when the text's own words do not tell:
    "coment instaler python sur windows" read against a French question.
    """
    normal, wrapped, opened = _rephrase(_normalise(text))
    # An elided article is the word it stands for, once the phrases that hold
    # one are read ("merci d'avance"): "all'università" is "alla università".
    normal = _ELISION.sub(lambda m: _ELIDED[m.group(1).lower()] + " ", normal)
    # Quotes and layout inside code are the code check's; its words are read
    # as words, never as names ("SELECT" is "select").
    prose = _INLINE_CODE.sub(" ", _FENCED.sub(" ", normal))
    lowered = _INLINE_CODE.sub(_lower, _FENCED.sub(_untagged_lower, normal))
    # SQL or an HTTP request written in prose is code too: "SELECT … FROM" reads
    # as it does between backticks.
    lowered = _PROSE_CODE.sub(_lower, lowered)
    quoted = frozenset(
        match.strip().lower()
        for pattern in (_DOUBLE_QUOTED, _SINGLE_QUOTED)
        for match in pattern.findall(prose)
        if match.strip()
    )
    tokens = _WORD.findall(lowered)
    words = [token.lower().removesuffix("'s") for token in tokens]
    code, code_spans, plain = _code(normal)
    items = _number_items(prose)
    return _Features(
        language=_language(normal, words, language_hint),
        numbers=_numbers(normal, words),
        quoted=quoted,
        code=code,
        code_spans=code_spans,
        plain=plain,
        negated=any(word in _NEGATIONS for word in words),
        tense=_tense(words),
        number_flows=_number_flows(items),
        counted=_counted(items),
        words=tuple(words),
        tokens=tuple(tokens),
        text=lowered,
        wrapped=wrapped,
        opened=opened,
    )


_SUBJECT_PRONOUNS = _words("i you we they he she it")


def _tense(words: Sequence[str]) -> str:
    """The English past and future a text's auxiliaries mark.

    Past: "did", "was", "has been", "has merged"; future: "will", "going to",
    "about to".
    """
    past = (
        any(word in _PAST_AUXILIARIES for word in words)
        or any(
            word in ("has", "have")
            and any(
                later == "been"
                or later.endswith("ed")
                or later in _IRREGULAR_PARTICIPLES
                for later in words[index + 1 : index + 6]
            )
            for index, word in enumerate(words)
        )
        # a verb in the past right after its subject: "if I missed a dose"
        or any(
            subject in _SUBJECT_PRONOUNS
            and (
                (verb.endswith("ed") and len(verb) > 4)
                or verb in _IRREGULAR_PRETERITES
                or _IRREGULAR_PARTICIPLES.get(verb, verb) != verb  # "paid"
            )
            for subject, verb in itertools.pairwise(words)
        )
    )
    future = any(word in ("will", "shall", "gonna") for word in words) or any(
        pair in (("going", "to"), ("about", "to")) for pair in itertools.pairwise(words)
    )
    return " ".join(
        name for name, marked in (("past", past), ("future", future)) if marked
    )


def _number_flows(items: Sequence[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    """Pairs of numbers joined by "to", "than", "/" or "from", as (first, second).

    "port 80 to 8080" and "dalla 80 alla 8080" give ("80", "8080"); "13-inch
    lighter than the 15-inch" ("13", "15"); "3/4" ("3", "4").
    """
    flows: set[tuple[str, str]] = set()
    last: tuple[int, str] | None = None
    for index, (value, _) in enumerate(items):
        if not value:
            continue
        if last is not None and index - last[0] <= 8:
            between = {w for _, w in items[last[0] + 1 : index]}
            if between & _NUMBER_TO:
                flows.add((last[1], value))
            elif between & _NUMBER_FROM:
                flows.add((value, last[1]))
        last = (index, value)
    return frozenset(flows)


def _number_items(text: str) -> list[tuple[str, str]]:
    """The text's numbers and words in order: (value, "") or ("", word)."""
    items = []
    for match in _NUMBER_OR_WORD.finditer(text):
        if match.group(1):
            number = match.group(1).replace(",", "")
            items.append((f"{float(number):g}", ""))
        else:
            items.append(("", match.group(0).lower()))
    return items


def _counted(items: Sequence[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    """Each number with the word right after it, stemmed: ("2", "code")."""
    found = set()
    for (value, word), (_, after) in itertools.pairwise(items):
        value = value or _NUMBER_WORDS.get(word, "")
        if value and after and after not in _FILLER:
            found.add((value, _stem(after)))
    return frozenset(found)


def _counts_moved(a: _Features, b: _Features) -> bool:
    """Whether a word counted in both texts is counted by other numbers.

    "two discount codes on one order" against "one discount code on two orders".
    """
    counts_a: dict[str, set[str]] = {}
    for value, stem in a.counted:
        counts_a.setdefault(stem, set()).add(value)
    counts_b: dict[str, set[str]] = {}
    for value, stem in b.counted:
        counts_b.setdefault(stem, set()).add(value)
    return any(
        stem in counts_b and values != counts_b[stem]
        for stem, values in counts_a.items()
    )


_PROSE_CODE = re.compile(
    r"\b(?:SELECT|INSERT INTO|UPDATE|DELETE FROM)\b(?:[^\n;?]|\n(?!\n))*"
    r"|\b(?:GET|POST|PUT|PATCH|DELETE|HEAD) /\S*"
)


def _lower(match: re.Match[str]) -> str:
    return match.group(0).lower()


def _untagged_lower(match: re.Match[str]) -> str:
    return _FENCE_TAG.sub("", match.group(1)).lower()


def _languages_differ(a: _Features, b: _Features) -> bool:
    return _languages_differ_by_name(a.language, b.language)


def _languages_differ_by_name(a: str, b: str) -> bool:
    if a == b:
        return False
    scripts = {script.lower() for script in _SCRIPTS}
    if a in scripts or b in scripts:
        return True
    # Short texts often name no language clearly; only two clear ones conflict.
    return "und" not in (a, b)


def _movers(a: _Features, b: _Features) -> frozenset[str]:
    # Stems free to change places: modal tokens (an operator of the whole
    # question: "can the admin" is "is the admin able to"), and a word that keeps
    # the same preposition in both texts ("in Python, how do I sort a list"
    # against "how do I sort a list in Python"): a phrase moved, its role intact.
    # "Alice pays Bob" against "Bob pays Alice", or "money to Bob" against "money
    # to Alice", moves words that gain or lose their preposition: not movers.
    first_a: dict[str, _Token] = {}
    for token in a.content:
        first_a.setdefault(token.stem, token)
    first_b: dict[str, _Token] = {}
    for token in b.content:
        first_b.setdefault(token.stem, token)
    movers = {
        stem
        for stem, token in first_a.items()
        if stem in _MODAL_TOKENS or _is_adverb(token.word)
    }
    for stem, token in first_a.items():
        other = first_b.get(stem)
        if other is None or not token.marker or token.marker != other.marker:
            continue
        # "faster in water than in air" against "faster in air than in water",
        # "de Brasília para o de Lisboa" against "de Lisboa para o de Brasília":
        # a phrase that crosses "than" or "to" changes what it says.
        # A phrase moved from one end of the question to the other stays what it
        # was ("on etsy can I …" / "can I … on etsy").
        if _before_pivot(a, token) == _before_pivot(b, other) or _edge_moved(
            a, token, b, other
        ):
            movers.add(stem)
    return frozenset(movers)


def _edge_moved(a: _Features, token: _Token, b: _Features, other: _Token) -> bool:
    ends = []
    for features, mine in ((a, token), (b, other)):
        content = features.content
        ends.append(
            "first" if mine is content[0] else "last" if mine is content[-1] else ""
        )
    return set(ends) == {"first", "last"}


def _is_adverb(word: str) -> bool:
    # "usually", "legally": an adjective's adverb, free to stand anywhere; not
    # "only", "daily" or "apply".
    return (
        len(word) >= 6
        and word.endswith("ly")
        and word not in _NOT_ADVERBS
        and word[:-2] in _vocabulary()
    )


def _before_pivot(features: _Features, token: _Token) -> bool | None:
    """Whether ``token`` stands before the text's first pivot; None without one.

    A pivot is a word of comparison or direction: "than", "to", "para", "nach";
    or the "than" of another language after a comparative ("mejor por la mañana
    que por la noche").
    """
    compared = False
    for index, word in enumerate(features.words):
        compared = compared or word in _COMPARATIVES
        if word in _PIVOTS or (compared and word in _FOREIGN_THAN):
            return token.position < index
    return None


def _flows_reversed(a: _Features, b: _Features) -> bool:
    return any((target, source) in b.number_flows for source, target in a.number_flows)


def _order_differs(a: _Features, b: _Features) -> bool:
    reversed_b = {(target, source) for source, target in b.directions}
    if a.directions & reversed_b:
        return True
    movers = _movers(a, b)
    return all(
        _crossed(
            [a.content[i].stem for i in order_a],
            [b.content[i].stem for i in order_b],
            movers,
        )
        for order_a, order_b in _word_orders(a, b)
    )


def _crossed(seq_a: list[str], seq_b: list[str], movers: frozenset[str]) -> bool:
    # "the dog chases the cat" against "the cat chases the dog": two content words
    # change places across a word that stays between them.
    pos_a = {stem: i for i, stem in reversed(list(enumerate(seq_a)))}
    pos_b = {stem: i for i, stem in reversed(list(enumerate(seq_b)))}
    shared = [stem for stem in pos_a if stem in pos_b]
    for i, x in enumerate(shared):
        for y in shared[i + 1 :]:
            if (pos_a[x] < pos_a[y]) == (pos_b[x] < pos_b[y]):
                continue
            if x in movers or y in movers:
                continue
            low_a, high_a = sorted((pos_a[x], pos_a[y]))
            low_b, high_b = sorted((pos_b[x], pos_b[y]))
            if set(seq_a[low_a + 1 : high_a]) & set(seq_b[low_b + 1 : high_b]):
                return True
    return False


def _question_word(features: _Features) -> str:
    # "by whom" was read as "who" (_BY_WHOM).
    words = features.words
    return words[0] if words and words[0] in _QUESTION_WORDS else ""


def _word_orders(a: _Features, b: _Features) -> list[tuple[list[int], list[int]]]:
    """The orders the two texts' content words may be compared in; none: no order.

    Their own; each with one clause moved to the front or back ("In Paris, what
    is the best way to get around?" is "What is the best way to get around in
    Paris?"). A passive question against an active one takes the active's order
    ("are transfers processed by the bank" is "the bank processes transfers"), so
    a role that changes in the turning is still caught; when the two ask with
    another question word ("who makes it", "where was it made"), a passive and an
    active are not compared at all.
    """
    active_a, active_b = a.active_order, b.active_order
    order_a = list(range(len(a.content)))
    order_b = list(range(len(b.content)))
    if (active_a is None) != (active_b is None):
        if _question_word(a) != _question_word(b):
            return []
        order_a, order_b = active_a or order_a, active_b or order_b
    return [
        (order_a, order_b),
        *((moved, order_b) for moved in _clauses_moved(a, order_a)),
        *((order_a, moved) for moved in _clauses_moved(b, order_b)),
        *((moved, order_b) for moved in _verb_last(a, b, order_a)),
        *((order_a, moved) for moved in _verb_last(b, a, order_b)),
        *((swapped, order_b) for swapped in _coordinates_swapped(a, order_a)),
    ]


def _coordinates_swapped(features: _Features, order: list[int]) -> list[list[int]]:
    # "ibuprofen and paracetamol" is "paracetamol and ibuprofen": two words joined
    # by "and" or "or" may trade places (one word each side, nothing between).
    swaps = []
    content = features.content
    coordinators = _COORDINATORS.get(features.language, frozenset())
    for i in range(len(content) - 1):
        first, second = content[i].position, content[i + 1].position
        if second - first == 2 and features.words[first + 1] in coordinators:
            at = order.index(i), order.index(i + 1)
            swapped = list(order)
            swapped[at[0]], swapped[at[1]] = swapped[at[1]], swapped[at[0]]
            swaps.append(swapped)
    return swaps


def _verb_last(
    question: _Features, request: _Features, order: list[int]
) -> list[list[int]]:
    # German and Dutch put the verb second in a question and last in a clause:
    # "Wie funktioniert Merge Sort?" is "Erkläre, wie Merge Sort funktioniert."
    # The verb is the first or second content word of the question; only
    # against a request whose opener was rewritten away, the clause it left.
    if (
        question.language not in ("de", "nl", "und")
        or question.opened
        or not request.opened
        or len(order) < 3
    ):
        return []
    return [[*order[:i], *order[i + 1 :], order[i]] for i in (0, 1)]


def _clauses_moved(features: _Features, order: list[int]) -> list[list[int]]:
    starts = set(features.clause_starts)
    return [order[i:] + order[:i] for i in range(1, len(order)) if order[i] in starts]


def _edit_distance(a: str, b: str) -> int:
    # Damerau-Levenshtein (optimal string alignment): a swap of neighbours is one.
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, char_b in enumerate(b, 1):
            cost = char_a != char_b
            current[j] = min(
                previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost
            )
            if (
                i > 1
                and j > 1
                and char_a == b[j - 2]
                and a[i - 2] == char_b
                and previous2
            ):
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def _opposed(a: str, b: str) -> bool:
    # "valid" against "invalid", "install" against "uninstall"; "onboard"
    # against "offboard", "upgrade" against "downgrade".
    for first, second in _OPPOSED_PREFIXES:
        for x, y in ((a, b), (b, a)):
            rest = x.removeprefix(first)
            if rest != x and len(rest) >= 3 and y == second + rest:
                return True
    for prefix in _NEGATING_PREFIXES:
        if a.startswith(prefix) and a[len(prefix) :].startswith(b[:4]):
            return True
        if b.startswith(prefix) and b[len(prefix) :].startswith(a[:4]):
            return True
    return False


# Who acts and who is acted on: "payer" against "payee", "lessor" against "lessee".
_AGENT_SUFFIXES = ("er", "or")
_PATIENT_SUFFIX = "ee"


_TO_INFINITIVE_MODALS = (
    {"modalto", "modalshould"},
    {"modalto", "modalcan"},
)


def _dropped_differ(left: Sequence[_Token], right: Sequence[_Token]) -> bool:
    # Words dropped as misspelt filler on both sides must be the same words,
    # or typos of each other: "vero" and "falso", each a letter from English
    # filler, still differ.
    for mine, other in ((left, right), (right, left)):
        for token in mine:
            if other and not any(
                token.word == o.word or _is_typo(token, o) for o in other
            ):
                return True
    return False


def _perspective(
    generic: _Features, mine: _Features, free_generic: list[bool], free_mine: list[bool]
) -> bool:
    """Whether ``generic`` asks about a person where ``mine`` asks about "I".

    Explains (marks paired) the generic person and its third-person words, and
    the other text's first-person words, when only those are left: "How does a
    user reset their password?" against "How do I reset my password?". Not when
    the generic text says "I" too ("How do I reset a user's password?").
    """
    left_generic = [i for i, free in enumerate(free_generic) if free]

    def person(token: _Token) -> bool:
        # Any English noun naming a person, in a question of how, where or what:
        # "How does a baker know …", "Where can students find …". A yes/no
        # question may ask whether the role qualifies: "Can a student get a
        # discount?" is no "Can I get a discount?".
        return token.word in _GENERIC_PERSONS or (
            generic.language in ("en", "und")
            and generic.words[0] in _OPEN_QUESTIONS
            and not token.name
            and token.stem in _person_nouns()
        )

    # "man", "on", "si", "se", Dutch "je": a generic subject, often filler
    pronouns = _GENERIC_PRONOUNS.get(generic.language, frozenset())
    persons = [i for i in left_generic if person(generic.content[i])]
    if not (persons or any(word in pronouns for word in generic.words)):
        return False
    first_person = _FIRST_PERSON - pronouns  # Dutch "je" is no French "I" there
    if any(word in first_person for word in generic.words):
        return False
    if not (
        any(word in _FIRST_PERSON for word in mine.words) or mine.language in _PRO_DROP
    ):
        return False
    left_mine = [i for i, free in enumerate(free_mine) if free]
    if any(mine.content[i].word not in _FIRST_PERSON for i in left_mine):
        return False
    if any(
        not person(generic.content[i])
        and generic.content[i].word not in _THIRD_PERSON | pronouns
        for i in left_generic
    ):
        return False
    for i in left_generic:
        free_generic[i] = False
    for i in left_mine:
        free_mine[i] = False
    return True


_SNOWBALL_LANGUAGES = {
    "de": "german",
    "fr": "french",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
}


@functools.cache
def _snowball(language: str) -> Callable[[str], str]:
    # Snowball's stemmers for the other languages: "configura" and
    # "configurano", "Erkältung" and "Erkältungen" share a stem.
    stemmer = snowballstemmer.stemmer(_SNOWBALL_LANGUAGES[language])
    return functools.lru_cache(maxsize=65536)(stemmer.stemWord)


_IRREGULAR_PLURALS = {
    "leaves": "leaf",
    "knives": "knife",
    "wives": "wife",
    "shelves": "shelf",
    "halves": "half",
    "loaves": "loaf",
    "wolves": "wolf",
    "thieves": "thief",
    "children": "child",
    "men": "man",
    "women": "woman",
    "feet": "foot",
    "teeth": "tooth",
    "mice": "mouse",
    "people": "person",
}
# French plural endings Snowball's French stems leave apart: a verb's third
# person ("fonctionne"/"fonctionnent") and a noun's ("-s", "-x"). The other
# languages' plurals share a Snowball stem.
_FRENCH_PLURAL_ENDINGS = ("s", "x", "nt")


def _is_french_plural(a: str, b: str) -> bool:
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return len(short) >= 4 and any(
        long == short + ending for ending in _FRENCH_PLURAL_ENDINGS
    )


def _same_stem(stem: Callable[[str], str]) -> Callable[[_Token, _Token], bool]:
    """Two words, no name, that ``stem`` makes one and no prefix turns round."""
    return lambda x, y: (
        not (x.name or y.name)
        and stem(x.word) == stem(y.word)
        and not _opposed(x.word, y.word)
    )


def _preterite_of_participle(a: _Token, b: _Token) -> bool:
    for past, participle in ((a.word, b.word), (b.word, a.word)):
        verb = _IRREGULAR_PRETERITES.get(past)
        if verb is not None and _IRREGULAR_PARTICIPLES.get(participle) == verb:
            return True
    return False


def _roles_differ(a: str, b: str) -> bool:
    for agent, patient in ((a, b), (b, a)):
        if patient.endswith(_PATIENT_SUFFIX) and agent.endswith(_AGENT_SUFFIXES):
            return agent[:-2] == patient[:-2]
    return False


def _is_typo(a: _Token, b: _Token) -> bool:
    if _unaccented(a.word) == _unaccented(b.word):
        return True  # "mexico", "nao", "esta": an accent left out
    vocabulary = _vocabulary()
    if (
        a.word.isalpha()
        and _is_transposition(a.word, b.word)
        and not (a.word in vocabulary and b.word in vocabulary)
    ):
        # Two letters swapped into no word, even in a name or a unit ("pyhton",
        # "gmial"); any other edit of those is another name or unit ("Austria"
        # and "Australia"), and swapped digits another number ("CS101").
        return True
    if a.word in _KEY_NOUNS or b.word in _KEY_NOUNS:
        return False
    if a.name or b.name:
        # A long name one letter from a known word, itself no word ("Austrailia",
        # "Pyton"); a name a letter from another name is another name.
        return (
            a.word.isalpha()
            and b.word.isalpha()
            and min(len(a.word), len(b.word)) >= 6
            and (a.word in vocabulary) != (b.word in vocabulary)
            and _edit_distance(_unaccented(a.word), _unaccented(b.word)) == 1
        )
    if not (a.word.isalpha() and b.word.isalpha()):
        return False
    if min(len(a.word), len(b.word)) < 4 or a.word[0] != b.word[0]:
        return False
    if a.word in vocabulary and b.word in vocabulary:
        return False  # two real words: "rest" is not a typo of "reset"
    if _opposed(a.word, b.word) or _roles_differ(a.word, b.word):
        return False
    # Two edits only against a word the vocabulary knows: between two unknown
    # words ("mayores", "menores") one edit is all a typo is granted.
    known = a.word in vocabulary or b.word in vocabulary
    allowed = 1 if max(len(a.word), len(b.word)) <= 6 or not known else 2
    return _edit_distance(_unaccented(a.word), _unaccented(b.word)) <= allowed


def _unaccented(word: str) -> str:
    return "".join(
        char
        for char in unicodedata.normalize("NFD", word)
        if not unicodedata.combining(char)
    )


def _is_transposition(a: str, b: str) -> bool:
    if len(a) != len(b) or len(a) < 3:
        return False
    differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    return (
        len(differ) == 2
        and differ[1] == differ[0] + 1
        and a[differ[0]] == b[differ[1]]
        and a[differ[1]] == b[differ[0]]
    )


def _is_clipping(short: _Token, long: _Token, longest: int | None = None) -> bool:
    # "config" for "configuration": a prefix of four letters or more, with at least
    # three letters clipped (at most ``longest`` letters, when given), of a word
    # that is no unit or name.
    if long.name or long.word in _KEY_NOUNS or short.word in _KEY_NOUNS:
        return False
    clipped = sum(char.isalpha() for char in long.word[len(short.word) :])
    return (
        len(short.word) >= 4
        and len(long.word) >= len(short.word) + 3
        and long.word.startswith(short.word)
        and (longest is None or clipped <= longest)
    )


def _compound_split(
    compound: _Token, others: Sequence[_Token], free: list[bool]
) -> int | None:
    """Where two adjacent words of the other text join into ``compound``, or None.

    "powerbank" for "power bank", "setup" for "set up", "e-mail" for "e mail".
    """
    joined = compound.word.replace("-", "")
    if compound.name or len(joined) < 5:
        return None
    for j in range(len(others) - 1):
        first, second = others[j], others[j + 1]
        if (
            free[j]
            and free[j + 1]
            and second.position == first.position + 1
            and first.word + second.word == joined
        ):
            return j
    return None


def _acronym_span(
    acronym: _Token, others: Sequence[_Token], free: list[bool], words: Sequence[str]
) -> list[int] | None:
    """The other text's content words an acronym abbreviates, or None.

    "PTO" for "paid time off", "NDA" for "non-disclosure agreement", "FOIA" for
    "Freedom of Information Act": the initials of consecutive unmatched content
    words, each part of a hyphenated word giving its own, and a filler word
    between them giving one or none.
    """
    letters = acronym.word
    if not (2 <= len(letters) <= 6 and letters.isalpha()):
        return None
    for start in range(len(others)):
        end = _initials_end(letters, 0, others, free, words, start)
        if end is not None:
            return list(range(start, end))
    return None


def _initials_end(
    letters: str,
    at: int,
    others: Sequence[_Token],
    free: list[bool],
    words: Sequence[str],
    index: int,
) -> int | None:
    """Where a run of content words from ``index`` spells ``letters[at:]``."""
    if index >= len(others) or not free[index]:
        return None
    initials = "".join(part[0] for part in others[index].word.split("-") if part)
    if not letters.startswith(initials, at):
        return None
    at += len(initials)
    if at == len(letters):
        return index + 1
    if index + 1 >= len(others):
        return None
    between = words[others[index].position + 1 : others[index + 1].position]
    for mask in range(1 << len(between)):
        given = "".join(word[0] for bit, word in enumerate(between) if mask >> bit & 1)
        if letters.startswith(given, at):
            end = _initials_end(
                letters, at + len(given), others, free, words, index + 1
            )
            if end is not None:
                return end
    return None


def _monotone(
    matches: list[tuple[int, int]],
    a: _Features,
    b: _Features,
    movers: frozenset[str],
    orders: list[tuple[list[int], list[int]]],
) -> bool:
    # The paired words keep their order, in one of ``orders``: "convert A to B"
    # against "convert B to A", or "100 US dollars in euros" against "100 euros in
    # US dollars", pair every word and still differ. Words that moved with their
    # preposition, and modal tokens, may change places (see _movers).
    for order_a, order_b in orders:
        rank_a = {index: rank for rank, index in enumerate(order_a)}
        rank_b = {index: rank for rank, index in enumerate(order_b)}
        # A word said twice pairs in order: its first place here with its first
        # place there, in this order ("do I pay … if I pay off …").
        by_word: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
        for i, j in matches:
            if a.content[i].stem not in movers:
                key = (a.content[i].word, b.content[j].word)
                ranks = by_word.setdefault(key, ([], []))
                ranks[0].append(rank_a[i])
                ranks[1].append(rank_b[j])
        fixed = sorted(
            pair
            for left, right in by_word.values()
            for pair in zip(sorted(left), sorted(right), strict=True)
        )
        ordered = [right for _, right in fixed]
        if all(x < y for x, y in itertools.pairwise(ordered)):
            return True
    return False


@dataclass(frozen=True, slots=True)
class _Alignment:
    accepted_by: str = ""
    failed_check: str = ""
    # The content words left without a partner, on each side.
    unexplained: tuple[tuple[_Token, ...], tuple[_Token, ...]] = ((), ())
    paired: int = 0


def _align(a: _Features, b: _Features) -> _Alignment:
    # Pairs every content word of one text with one of the other, by the plainest
    # explanation first; fails on a word left unexplained or on paired words that
    # changed their order.
    left, right = a.content, b.content
    free_left, free_right = [True] * len(left), [True] * len(right)
    matches: list[tuple[int, int]] = []
    level = ACCEPTING_CHECKS.index
    strongest = level("rephrased" if a.wrapped or b.wrapped else "normalized")

    def pair(test: Callable[[_Token, _Token], bool], level: int) -> None:
        nonlocal strongest
        for i, x in enumerate(left):
            if not free_left[i]:
                continue
            for j, y in enumerate(right):
                if free_right[j] and test(x, y):
                    free_left[i] = free_right[j] = False
                    matches.append((i, j))
                    strongest = max(strongest, level)
                    break

    pair(
        lambda x, y: x.word == y.word and not (x.expanded or y.expanded),
        level("normalized"),
    )
    pair(lambda x, y: x.word == y.word, level("abbreviation"))
    pair(lambda x, y: x.stem == y.stem, level("inflection"))
    pair(_preterite_of_participle, level("inflection"))
    pair(
        lambda x, y: (
            _IRREGULAR_PLURALS.get(x.word) == y.word
            or _IRREGULAR_PLURALS.get(y.word) == x.word
        ),
        level("inflection"),
    )
    if a.language == b.language == "fr":
        pair(
            lambda x, y: not (x.name or y.name) and _is_french_plural(x.word, y.word),
            level("inflection"),
        )
    if a.language == b.language and a.language in _SNOWBALL_LANGUAGES:
        pair(_same_stem(_snowball(a.language)), level("inflection"))
    pair(_same_stem(_root), level("inflection"))
    pair(lambda x, y: {x.word, y.word} in _TO_INFINITIVE_MODALS, level("rephrased"))
    pair(_is_spelling, level("spelling"))
    pair(_is_typo, level("typo"))
    pair(_is_synonym, level("synonym"))
    if a.language == b.language and a.language in _ASKED_FOR:
        # "warum" and "weshalb", "por qué" and "porqué": one question word
        asked = _ASKED_FOR[a.language]
        pair(
            lambda x, y: x.word in asked and asked[x.word] == asked.get(y.word),
            level("synonym"),
        )
    if {a.language, b.language} <= {"en", "und"}:
        pair(_is_wordnet_synonym, level("synonym"))
        pair(_is_derivation, level("inflection"))
    # Before clippings: "power" is no clipping of "powerbank".
    for flipped, (side, other, free_side, free_other) in enumerate(
        ((left, right, free_left, free_right), (right, left, free_right, free_left))
    ):
        for i, token in enumerate(side):
            j = _compound_split(token, other, free_other) if free_side[i] else None
            if j is not None:
                free_side[i] = free_other[j] = free_other[j + 1] = False
                matches.append((j, i) if flipped else (i, j))
                strongest = max(strongest, level("spelling"))
    # Outside English a clipping is an ending ("calcule-t-on", "solicitamos"):
    # a compound's first part is a word of its own ("morgen" in "morgenochtend").
    longest = None if {a.language, b.language} <= {"en", "und"} else 5
    pair(
        lambda x, y: _is_clipping(x, y, longest) or _is_clipping(y, x, longest),
        level("abbreviation"),
    )
    for flipped, (side, other, free_side, free_other, other_words) in enumerate(
        (
            (left, right, free_left, free_right, b.words),
            (right, left, free_right, free_left, a.words),
        )
    ):
        for i, token in enumerate(side):
            if not free_side[i]:
                continue
            span = _acronym_span(token, other, free_other, other_words)
            if span is None:
                continue
            free_side[i] = False
            for j in span:
                free_other[j] = False
            # The acronym stands where the words it abbreviates stood.
            matches.append((span[0], i) if flipped else (i, span[0]))
            strongest = max(strongest, level("abbreviation"))
    if _perspective(a, b, free_left, free_right) or _perspective(
        b, a, free_right, free_left
    ):
        strongest = max(strongest, level("rephrased"))
    if _dropped_differ(a.dropped, b.dropped):
        return _Alignment(failed_check="alignment", paired=len(matches))
    # "what to do" without a modal on the other side: "what do I do"
    for side, free_side in ((left, free_left), (right, free_right)):
        for i, token in enumerate(side):
            if token.word == "modalto":
                free_side[i] = False
    for side, free_side, other in (
        (left, free_left, b.dropped),
        (right, free_right, a.dropped),
    ):
        unused = list(other)
        for i, token in enumerate(side):
            if not free_side[i]:
                continue
            typo = next((d for d in unused if _is_typo(token, d)), None)
            if typo is not None:
                free_side[i] = False
                unused.remove(typo)
                strongest = max(strongest, level("typo"))
    if any(free_left) or any(free_right):
        return _Alignment(
            failed_check="alignment",
            unexplained=(
                tuple(t for t, free in zip(left, free_left, strict=True) if free),
                tuple(t for t, free in zip(right, free_right, strict=True) if free),
            ),
            paired=len(matches),
        )
    orders = _word_orders(a, b)
    if not _monotone(matches, a, b, _movers(a, b), orders):
        return _Alignment(failed_check="order")
    # A clause moved to the other end is a reordering too.
    if not _monotone(matches, a, b, frozenset(_MODAL_TOKENS), orders[:1]):
        strongest = level("reorder")
    return _Alignment(accepted_by=ACCEPTING_CHECKS[strongest])


# A sentence ends at . ! or ? after a letter: "vor dem 30. Juni" goes on.
# A sentence's end, or a colon or dash before an English question ("I blanked:
# what is …", "my calendar looks off — how do I …"); not before a list ("these
# measurements: 4, 8, 6").
_SENTENCE = re.compile(
    r"(?<=[^\d\s][.!?])\s+|(?:(?<=[^\d\s]):|\s+[\u2014\u2013])\s+(?=(?:how|what|"
    r"why|when|where|which|who|can|could|do|does|did|is|are|should|will)\b)",
    re.I,
)


def _context_free(text: str) -> str:
    # The closing question of a text that first sets a scene ("Long-time user
    # here, love the app, but my eyes hurt at night. How do I turn on dark
    # mode?"), when the scene names nothing that could change the answer: no
    # number, negation, quoted string, code or name.
    sentences = [s for s in _SENTENCE.split(text.strip()) if s]
    if len(sentences) < 2 or not sentences[-1].rstrip().endswith("?"):
        return ""
    scene = _features(" ".join(sentences[:-1]))
    if scene.numbers or scene.negated or scene.quoted or scene.code or scene.code_spans:
        return ""
    # A name the question names too adds nothing ("I'm building a Flask app. How
    # do I set a secret key in Flask?").
    asked = frozenset(_features(sentences[-1]).words)
    if any(token.name and token.word not in asked for token in scene.content):
        return ""
    if _german_names(scene, asked):
        return ""
    return sentences[-1]


# What stands before a German common noun: an article, a possessive, a
# demonstrative, or an inflected adjective ("meine erste Wohnung").
_GERMAN_DETERMINERS = _words(
    """
    der die das den dem des ein eine einen einem einer eines kein keine keinen
    keinem keiner mein meine meinen meinem meiner dein deine deinen deinem
    sein seine seinen seinem ihr ihre ihren ihrem unser unsere unseren euer
    eure dies diese diesen diesem dieser jede jeden jedem jeder zum zur im am
    vom beim ins
    """
)
_GERMAN_ADJECTIVE = re.compile(r"[a-zäöüß]{2,}(?:e|en|er|es|em)")


def _german_names(scene: _Features, asked: frozenset[str]) -> bool:
    # German capitalises every noun, so a capital alone marks no name; in a scene,
    # one not after an article or an inflected adjective may be a place or a
    # name ("Ich wohne in Bayern"), which could change the answer.
    if scene.language != "de":
        return False
    starts = _sentence_starts(scene.text)
    for index in range(1, len(scene.tokens)):
        token, before = scene.tokens[index], scene.tokens[index - 1]
        if index in starts or not token[0].isupper() or token.lower() in asked:
            continue
        if before.lower() in _GERMAN_DETERMINERS or _GERMAN_ADJECTIVE.fullmatch(before):
            continue
        return True
    return False


def _closing_questions(query: str, cached: str) -> tuple[str, str]:
    # A scene on one side only: two scenes are two stories ("I got my shot
    # yesterday" / "I'm getting it tomorrow"), compared as they are.
    query_question, cached_question = _context_free(query), _context_free(cached)
    if query_question and cached_question:
        return query, cached
    return (query_question or query, cached_question or cached)


def unexplained(query: str, cached: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The content words of each text that the alignment leaves without a partner.

    Empty on both sides when every content word pairs up. Used to measure what a
    learned judge of the differing words could add (bench/cache_quality.py
    ``--probe``); :func:`verify` decides from the same alignment.
    """
    a, b = _read_together(_features(query), query, _features(cached), cached)
    left, right = _align(a, b).unexplained
    return (
        tuple(token.word for token in left),
        tuple(token.word for token in right),
    )


# What makes a fingerprint comparable: this module's source and the number
# forms', since any edit may change what a veto reads. A fingerprint of another
# version is not read.
_FINGERPRINT_VERSION = hashlib.sha256(
    Path(__file__).read_bytes() + Path(number_forms.__file__).read_bytes()
).hexdigest()[:12]


def _digest(values: Iterable[str]) -> str:
    joined = "\x1f".join(sorted(values))
    return hashlib.blake2b(joined.encode(), digest_size=8).hexdigest()


def fingerprint(text: str) -> str:
    """What the vetoes read of ``text``, compact, to store beside an indexed query.

    :func:`verify` given a cached text's fingerprint applies the vetoes of
    language, numbers, code and negation without analysing that text again.
    Numbers and code (the marks no plain word can stand for) are kept as
    digests: two texts whose digests differ differ in those values, so a veto
    read from a fingerprint is the veto the text itself gives; when the digests
    agree, the text is analysed in full as without one. (Quoted strings are kept
    too but not vetoed on: one may be the other's string literal in code.)
    """
    return ":".join(_features(text).veto_fields)


def _fingerprint_veto(query: _Features, cached_fingerprint: str) -> str:
    """The veto a cached text's fingerprint fails against ``query``, or ""."""
    cached = cached_fingerprint.split(":")
    mine = query.veto_fields  # worked out once per query, not per candidate
    if len(cached) != len(mine) or cached[0] != mine[0]:
        return ""  # another version's, or not a fingerprint: read the text
    if _languages_differ_by_name(mine[1], cached[1]):
        return "language"
    # Not quoted strings: one may be the other's string literal in code.
    for check, position in (("numbers", 2), ("code", 4)):
        if cached[position] != mine[position]:
            return check
    return "negation" if cached[5] != mine[5] else ""


# "How do I cancel my subscription?" asks how; "Cancel my subscription." asks
# the assistant to do it, on the asker's own things.
_HOW_I = re.compile(r"^\W*how (?:do|can|could|should) i ([a-z]+)\b", re.I)
_COMMAND_ON_MINE = re.compile(r"^\W*([a-z]+) (?:my|our)\b[^?]*[.!]?\s*$", re.I)


# What a question asks for, by its question words, in each language: a reason,
# a manner, a quantity, a time, a place or a person ("How do I prune an apple
# tree?" is no "Why do you prune apple trees?"). "What" and "which" ask for any.
# A "how" before another word asks that word's degree, and still "how": "how
# erly" (a typo) and "how frequently" meet "how early" and "how often".
_HOW = "how"
_ASKED_FOR: dict[str, dict[str, frozenset[str]]] = {
    language: {phrase: frozenset(kinds.split()) for phrase, kinds in table.items()}
    for language, table in {
        "en": {
            "why": "reason",
            "how come": "reason",
            "how": _HOW,
            "how much": f"{_HOW} quantity",
            "how many": f"{_HOW} quantity",
            "how long": f"{_HOW} quantity",
            "how often": f"{_HOW} quantity",
            "how soon": f"{_HOW} time",
            "how early": f"{_HOW} time",
            "how late": f"{_HOW} time",
            "when": "time",
            "what time": "time",
            "where": "place",
            "who": "person",
            "whom": "person",
        },
        "fr": {
            "pourquoi": "reason",
            "comment": _HOW,
            "combien": "quantity",
            "quand": "time",
            "où": "place",
            "qui": "person",
        },
        "es": {
            "por qué": "reason",
            "porqué": "reason",
            "cómo": _HOW,
            "cuánto": "quantity",
            "cuánta": "quantity",
            "cuántos": "quantity",
            "cuántas": "quantity",
            "cuándo": "time",
            "dónde": "place",
            "adónde": "place",
            "quién": "person",
            "quiénes": "person",
        },
        "it": {
            "perché": "reason",
            "come mai": "reason",
            "come": _HOW,
            "quanto": "quantity",
            "quanta": "quantity",
            "quanti": "quantity",
            "quante": "quantity",
            "quando": "time",
            "dove": "place",
            "chi": "person",
        },
        "pt": {
            "por que": "reason",
            "por quê": "reason",
            "porquê": "reason",
            "como": _HOW,
            "quanto": "quantity",
            "quanta": "quantity",
            "quantos": "quantity",
            "quantas": "quantity",
            "quando": "time",
            "onde": "place",
            "aonde": "place",
            "quem": "person",
        },
        "de": {
            "warum": "reason",
            "wieso": "reason",
            "weshalb": "reason",
            "wie": _HOW,
            "wie viel": f"{_HOW} quantity",
            "wie viele": f"{_HOW} quantity",
            "wieviel": "quantity",
            "wie lange": f"{_HOW} quantity",
            "wie oft": f"{_HOW} quantity",
            "wann": "time",
            "wo": "place",
            "wohin": "place",
            "woher": "place",
            "wer": "person",
            "wem": "person",
            "wen": "person",
        },
        "nl": {
            "waarom": "reason",
            "hoe": _HOW,
            "hoeveel": "quantity",
            "hoe lang": f"{_HOW} quantity",
            "hoe vaak": f"{_HOW} quantity",
            "wanneer": "time",
            "waar": "place",
            "wie": "person",
        },
    }.items()
}
_ASKED_FOR["und"] = _ASKED_FOR["en"]


def _asked_for(features: _Features) -> frozenset[str]:
    """What the question words of a text ask for ("reason", "how", "time")."""
    table = _ASKED_FOR.get(features.language)
    if table is None:
        return frozenset()
    words = features.words
    kinds: set[str] = set()
    for index, word in enumerate(words):
        pair = " ".join(words[index : index + 2])
        kinds |= table.get(pair) or table.get(word) or frozenset()
    return frozenset(kinds)


def _asker_turned_round(a: _Features, b: _Features) -> bool:
    """Whether two who-questions put the asker on opposite sides of the verb.

    "Who blocked me?" asks for whoever acted on the asker, "Who did I block?" for
    whom the asker acted on; the pronouns are filler, so nothing else tells. Read
    after the last "who" (English).
    """
    roles = []
    for features in (a, b):
        words = features.words
        asked = [i for i, word in enumerate(words) if word in ("who", "whom")]
        if features.language not in ("en", "und") or not asked:
            return False
        after = set(words[asked[-1] + 1 :])
        roles.append((bool(after & _I_SUBJECT), bool(after & _I_OBJECT)))
    return {roles[0], roles[1]} == {(True, False), (False, True)}


_I_SUBJECT = _words("i we")
_I_OBJECT = _words("me us")


def _ask_for_different_things(a: _Features, b: _Features) -> bool:
    asked, other = a.asked_for, b.asked_for
    return bool(asked and other) and asked.isdisjoint(other)


def _asks_to_act(how: str, command: str) -> bool:
    asked = _HOW_I.match(how)
    ordered = _COMMAND_ON_MINE.match(command)
    return bool(asked and ordered and asked[1].lower() == ordered[1].lower())


def _read_together(
    a: _Features, query: str, b: _Features, cached: str
) -> tuple[_Features, _Features]:
    # A text whose own words name no language is read in the other's, when that
    # is not English (English filler is every text's): "coment instaler python
    # sur windows" against "Comment installer Python sur Windows ?".
    if a.language == "und" and b.language not in ("und", "en"):
        return _features(query, b.language), b
    if b.language == "und" and a.language not in ("und", "en"):
        return a, _features(cached, a.language)
    return a, b


def verify(query: str, cached: str, cached_fingerprint: str = "") -> Verdict:
    """Check that ``query`` asks what ``cached`` asked, beyond sounding alike.

    Returns the first failed check (in :data:`CHECKS` order), or a pass naming
    the check that accepted the candidate. ``cached_fingerprint``, when given, is
    :func:`fingerprint` of ``cached``: a candidate a veto rejects then costs no
    analysis of its text; the verdict is the same.
    """
    if query == cached:
        return IDENTICAL
    a = _features(query)
    if cached_fingerprint and (veto := _fingerprint_veto(a, cached_fingerprint)):
        return Verdict(failed_check=veto)
    a, b = _read_together(a, query, _features(cached), cached)
    failures: tuple[tuple[str, Callable[[], bool]], ...] = (
        ("language", lambda: _languages_differ(a, b)),
        (
            "numbers",
            lambda: (
                a.numbers != b.numbers or _flows_reversed(a, b) or _counts_moved(a, b)
            ),
        ),
        ("quoted", lambda: _quotes_differ(a, b)),
        (
            "code",
            lambda: (
                _marks_differ(a, b)
                or _spans_differ(a, b)
                or (bool(a.code_spans or b.code_spans) and a.code_flows != b.code_flows)
                or _indents_differ(a, b)
            ),
        ),
        ("negation", lambda: a.negated != b.negated),
        ("tense", lambda: {a.tense, b.tense} == {"past", "future"}),
        (
            "intent",
            lambda: (
                _ask_for_different_things(a, b)
                or _asks_to_act(query, cached)
                or _asks_to_act(cached, query)
            ),
        ),
        ("order", lambda: _order_differs(a, b) or _asker_turned_round(a, b)),
    )
    for check, failed in failures:
        if failed():
            return Verdict(failed_check=check)
    alignment = _align(a, b)
    if alignment.failed_check:
        # Verified again on the closing questions alone: every check, vetoes
        # included, applies to them.
        questions = _closing_questions(query, cached)
        if questions != (query, cached) and verify(*questions).ok:
            return Verdict(accepted_by="context")
    return Verdict(
        failed_check=alignment.failed_check, accepted_by=alignment.accepted_by
    )
