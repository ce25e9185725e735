from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.cache.verification import (
    ACCEPTING_CHECKS,
    CHECKS,
    Verdict,
    fingerprint,
    unexplained,
    verify,
)


@pytest.mark.parametrize(
    ("cached", "query", "check"),
    [
        ("How do I reset my password?", "¿Cómo restablezco mi contraseña?", "language"),
        ("Status of order #48213?", "Status of order #48231?", "numbers"),
        ("Round to 2 decimal places", "Round to three decimal places", "numbers"),
        (
            "What does error 0x80070005 mean?",
            "What does error 0x80070002 mean?",
            "alignment",
        ),
        ('Find "timeout" in the log', 'Find "fatal" in the log', "quoted"),
        ("What does os.path.join do?", "What does os.path.split do?", "code"),
        ("What does $@ mean in bash?", "What does $# mean in bash?", "code"),
        ("Which plans include SSO?", "Which plans don't include SSO?", "negation"),
        ("Convert Celsius to Fahrenheit.", "Convert Fahrenheit to Celsius.", "order"),
        (
            "Transfer 5 from savings to checking",
            "Transfer 5 from checking to savings",
            "order",
        ),
        ("Is tea healthier than coffee?", "Is coffee healthier than tea?", "order"),
        ("Does the dog chase the cat?", "Does the cat chase the dog?", "order"),
        ("Did Alice pay Bob?", "Did Bob pay Alice?", "order"),
        ("What's 100 US dollars in euros?", "What's 100 euros in US dollars?", "order"),
        ("Make class A inherit from B", "Make class B inherit from A", "order"),
        # No list names these: an unexplained word is enough.
        ("How do I enable dark mode?", "How do I disable dark mode?", "alignment"),
        ("Is this a valid email?", "Is this an invalid email?", "alignment"),
        ("Capital of France?", "Capital of Germany?", "alignment"),
        ("Weather tomorrow in Paris?", "Weather today in Paris?", "alignment"),
        ("Sales last week?", "Sales last month?", "alignment"),
        ("Get the first 3 rows", "Get the last 3 rows", "alignment"),
        ("Restart one pod", "Restart all pods", "alignment"),
        ("Keep the last 5 images", "Delete the last 5 images", "alignment"),
        ("Set a limit of 512 MB", "Set a limit of 512 MiB", "code"),
        (
            "How do I sort a list in Python?",
            "How do I sort a tuple in Python?",
            "alignment",
        ),
        ("Use WHERE to filter in SQL", "Use HAVING to filter in SQL", "alignment"),
        ("How do I install numpy?", "how do i uninstal numpy", "alignment"),
        ("How do I reset my password?", "how do i rest my password", "alignment"),
        (
            "Do I need a visa for Austria?",
            "do i need a visa for australia",
            "alignment",
        ),
        ("How do I request PTO?", "How do I request an LOA?", "alignment"),
        ("How do I parse JSON in JS?", "How do I parse JSONL in JS?", "alignment"),
        # One spelling per number and unit (one quantity in one unit: "2 kg" is
        # "2000 g"), but another quantity, another half of the day or another
        # unit of the same kind is another value.
        (
            "Do you ship parcels under 2 kg?",
            "Do you ship parcels under 2 lb?",
            "numbers",
        ),
        ("Is there a flight at 6:45 am?", "Is there a flight at 6:45 pm?", "numbers"),
        ("Is 38,5 a fever?", "Is 385 a fever?", "numbers"),
        (
            "Why does upload fail over 2 GB?",
            "Why does upload fail over 2 TB?",
            "alignment",
        ),
        # Code's layout is not its meaning; its tokens and their order are.
        ("What does `f(a, b)` return?", "What does `f(b, a)` return?", "code"),
        ("Why is `a == b` true here?", "Why is `a === b` true here?", "code"),
        ("What does `x.append(y)` do?", "What does `x.extend(y)` do?", "code"),
        # A passive read in the active's order: the roles are compared, not
        # the words' places.
        ("Did Alice pay Bob?", "Was Alice paid by Bob?", "order"),
        ("Who pays the landlord?", "Who is paid by the landlord?", "order"),
        # A person asked for is no place.
        ("Who makes this jacket?", "Where was this jacket made?", "intent"),
        # The request's verb goes; what it asks about stays.
        ("List the causes of inflation", "List the effects of inflation", "alignment"),
        # "comment" is an English word: filler only in French.
        ("How do I edit a comment?", "How do I edit a post?", "alignment"),
        # Swapped digits are another number; swapped letters into a word, another
        # word.
        ("When is the exam for CS101?", "when is the exam for CS110", "alignment"),
        ("Do I need a visa for Mali?", "do i need a visa for mail", "alignment"),
        # A colon before data is no scene before a question.
        (
            "What's the variance of these measurements: 4, 8, 6?",
            "What's the standard deviation of these measurements: 4, 8, 6?",
            "alignment",
        ),
        # Numbers that swap ends of a "to", a comparison that swaps sides of
        # "than", and the past against the future.
        (
            "How do I map port 8080 on the host to port 80 in the container?",
            "How do I map port 80 on the host to port 8080 in the container?",
            "numbers",
        ),
        (
            "Does sound travel faster in water than in air?",
            "Does sound travel faster in air than in water?",
            "order",
        ),
        (
            "Has my pull request been merged?",
            "Will my pull request get merged?",
            "tense",
        ),
        (
            "Was my vacation request approved?",
            "Will my vacation request be approved?",
            "tense",
        ),
        # Numbers that trade the words they count; two unknown words two edits
        # apart.
        (
            "Can I use two discount codes on one order?",
            "Can I use one discount code on two orders?",
            "numbers",
        ),
        (
            "¿Cuáles son las cinco mayores posiciones del fondo?",
            "¿Cuáles son las cinco menores posiciones del fondo?",
            "alignment",
        ),
        (
            "Como converto o horário de Brasília para o de Lisboa?",
            "Como converto o horário de Lisboa para o de Brasília?",
            "order",
        ),
        # A minus sign; a line moved out of a Python block; a compound's first
        # part; two scenes before one question.
        ("In Python, what is 7 // 2?", "In Python, what is -7 // 2?", "numbers"),
        (
            "What does this print?\n```python\nfor i in range(3):\n    pass\n"
            "    print(i)\n```",
            "What does this print?\n```python\nfor i in range(3):\n    pass\n"
            "print(i)\n```",
            "code",
        ),
        (
            "Wat voor weer wordt het morgenochtend in Utrecht?",
            "Wat voor weer wordt het morgen in Utrecht?",
            "alignment",
        ),
        (
            "I got my flu shot yesterday. Is it okay to do a hard workout today?",
            "I'm getting my flu shot tomorrow. Is it okay to do a hard workout today?",
            "alignment",
        ),
        (
            "Darf mein Arbeitgeber mich kündigen, während ich krank bin?",
            "Darf ich meinem Arbeitgeber kündigen, während ich krank bin?",
            "alignment",
        ),
        (
            "Is the 13-inch MacBook Air lighter than the 15-inch?",
            "Is the 15-inch MacBook Air lighter than the 13-inch?",
            "numbers",
        ),
        ("What is 3/4 as a percentage?", "What is 4/3 as a percentage?", "numbers"),
        # Clauses that trade their words are not a clause moved.
        ("If I cancel, do I get a refund?", "If I get a refund, do I cancel?", "order"),
        (
            "Before I pay, can I see the invoice?",
            "Before I see the invoice, can I pay?",
            "order",
        ),
    ],
)
def test_each_check_rejects_its_near_miss(cached: str, query: str, check: str) -> None:
    verdict = verify(query, cached)
    assert not verdict.ok
    assert verdict.failed_check == check
    assert verdict.accepted_by == ""
    assert check in CHECKS


@pytest.mark.parametrize(
    ("cached", "query", "accepted_by"),
    [
        (
            "Which plans don't include SSO?",
            "Which plans do not include SSO?",
            "normalized",
        ),
        (
            "How do I reset my password?",
            "hey, how can I reset my password please?",
            "normalized",
        ),
        ("Status of order #48213?", "status of order #48213", "normalized"),
        ("How do I close my account?", "Closing my account: how?", "inflection"),
        ("How do I configure the proxy?", "configuring the proxy", "inflection"),
        ("How do I install numpy with pip?", "how to instal numpy with pip", "typo"),
        ("How do I transfer money?", "how do i tranfer money", "typo"),
        (
            "How do I configure a k8s ingress?",
            "How do I configure a Kubernetes ingress?",
            "abbreviation",
        ),
        ("How do I request PTO?", "How do I request paid time off?", "abbreviation"),
        (
            "Where is the config of the repo?",
            "Where is the configuration of the repository?",
            "abbreviation",
        ),
        ("What is fifteen percent of 240?", "What is 15 percent of 240?", "normalized"),
        (
            "Is a fever of 38,5 °C bad?",
            "Is a fever of 38.5 degrees Celsius bad?",
            "normalized",
        ),
        (
            "Monthly payment on a $250k loan at 5% for 30 years?",
            "Monthly payment on a $250,000 loan at 5 percent for thirty years?",
            "normalized",
        ),
        (
            "Why do uploads over 2 GB fail?",
            "Why do uploads over two gigabytes fail?",
            "normalized",
        ),
        ("Is there a flight at 23:00?", "Is there a flight at 11 p.m.?", "normalized"),
        (
            "What does `x=[i*2 for i in range(5)]` evaluate to?",
            "What does `x = [ i * 2 for i in range( 5 ) ]` evaluate to?",
            "normalized",
        ),
        (
            "What does `SELECT name FROM users WHERE age > 30` return?",
            "what does `select name from users where age>30` return?",
            "normalized",
        ),
        (
            "Why does `[1,2,3].map(parseInt)` return NaN?",
            "Why does\n```js\n[1, 2, 3].map(parseInt)\n```\nreturn NaN?",
            "normalized",
        ),
        (
            "What does `x = [] if y is None else y` do?",
            "What does x=[] if y is None else y do?",
            "normalized",
        ),
        (
            'Why does `print("a" * 3)` repeat?',
            "Why does `print('a'*3)` repeat?",
            "normalized",
        ),
        (
            "When does the bank process wire transfers?",
            "When are wire transfers processed by the bank?",
            "inflection",
        ),
        (
            "When will you ship my order?",
            "When will my order be shipped?",
            "inflection",
        ),
        (
            "Who approves expense reports?",
            "By whom are expense reports approved?",
            "inflection",
        ),
        ("Did Alice pay Bob?", "Was Bob paid by Alice?", "inflection"),
        # A request that opens the sentence is the question it asks.
        (
            "Describe the symptoms of a concussion",
            "What are the symptoms of a concussion?",
            "normalized",
        ),
        (
            "Walk me through setting up SSH key authentication",
            "How do I set up SSH key authentication?",
            "normalized",
        ),
        (
            "Erklär mir, was ein Docker-Image ist",
            "Was ist ein Docker-Image?",
            "normalized",
        ),
        ("Explícame qué es la recursividad", "¿Qué es la recursividad?", "normalized"),
        # Another language's "how", misspelt; a capitalised filler word after a
        # greeting is no name.
        ("Comment ouvrir un livret A ?", "coment ouvrir un livret A", "normalized"),
        ("Hi, What is a token bucket?", "What is a token bucket?", "normalized"),
        # Two letters swapped, in a name too; an accent left out.
        (
            "How do I reverse a string in Python?",
            "how to reverse a string in pyhton",
            "typo",
        ),
        (
            "¿Cuánto cuesta el envío a México?",
            "cuanto cuesta el envio a mexico",
            "typo",
        ),
        # A scene before a colon or a dash, then the question.
        (
            "What is the difference between weather and climate?",
            "My nephew asked me at dinner and I blanked: what is the difference "
            "between weather and climate?",
            "context",
        ),
        # Asides that ask nothing, a negation in one of them too.
        (
            "how do I undo a git add?",
            "Hey, quick question if you don't mind — how do I undo a git add?",
            "rephrased",
        ),
        (
            "How do I delete a Kubernetes namespace?",
            "OK so I was just wondering, how do I delete a Kubernetes namespace?",
            "normalized",
        ),
        (
            "What are the symptoms of strep throat?",
            "What are the signs of strep throat?",
            "synonym",
        ),
        # The present asks what the future asks; the past does not (above).
        ("When will my order ship?", "When does my order ship?", "normalized"),
        (
            "Why does `for i in range(10): print(i)` stop at 9?",
            "Why does\n```python\nfor i in range(10):\n    print(i)\n```\nstop at 9?",
            "normalized",
        ),
        (
            "Wie beantrage ich eine Kreditkarte?",
            "Wie beantragt man eine Kreditkarte?",
            "typo",
        ),
        # A greeting in another language.
        (
            "Bonjour, comment modifier mon adresse de livraison ?",
            "Comment modifier mon adresse de livraison ?",
            "rephrased",
        ),
        # A clause moved from one end of the question to the other.
        (
            "For medical school, what GPA do I need?",
            "What GPA do I need for medical school?",
            "reorder",
        ),
        (
            "Python: how do I reverse a list?",
            "How can I reverse a list in Python?",
            "reorder",
        ),
        (
            "Both locally and remotely, how do I delete a Git branch?",
            "How do I delete a Git branch both locally and remotely?",
            "reorder",
        ),
        # An acronym of hyphenated words, or with a filler word's initial.
        (
            "Does a non-disclosure agreement need a notary?",
            "Does an NDA need a notary?",
            "abbreviation",
        ),
        ("What is my year-to-date return?", "What is my YTD return?", "abbreviation"),
        (
            "How do I file a Freedom of Information Act request?",
            "how to file a FOIA request",
            "abbreviation",
        ),
    ],
)
def test_explained_differences_pass(cached: str, query: str, accepted_by: str) -> None:
    verdict = verify(query, cached)
    assert verdict.ok, verdict
    assert verdict.accepted_by == accepted_by
    assert accepted_by in ACCEPTING_CHECKS


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # Paraphrases the guard cannot explain: rejected, a lost hit but no
        # wrong answer. Kept here so that a change that serves them is noticed.
        ("How do I reset my password?", "I forgot my password, how do I change it?"),
        ("Does the warranty cover it?", "Is it covered by the warranty?"),
    ],
)
def test_unexplained_paraphrases_are_rejected(cached: str, query: str) -> None:
    assert not verify(query, cached).ok


def test_identical_text_passes() -> None:
    verdict = verify("anything at all: 42", "anything at all: 42")
    assert verdict.ok
    assert verdict.accepted_by == "identical"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # Modal verbs are content: a change of modality is a different question.
        (
            "Can I pay my taxes in installments?",
            "Do I have to pay my taxes in installments?",
        ),
        (
            "Must I declare a major before my second year?",
            "Can I declare a major before my second year?",
        ),
        ("Do I need a prescription for this?", "Can I get a prescription for this?"),
        ("Should I use a VPN at work?", "May I use a VPN at work?"),
        ("Is the field optional?", "Is the field mandatory?"),
        (
            "Kann ich die Rechnung online bezahlen?",
            "Muss ich die Rechnung online bezahlen?",
        ),
        ("Puis-je annuler ma commande ?", "Dois-je annuler ma commande ?"),
        ("¿Puedo pagar con tarjeta?", "¿Debo pagar con tarjeta?"),
        ("Posso pagare con la carta?", "Devo pagare con la carta?"),
        # Conditions and comparisons are content too.
        ("Can I get a refund?", "Can I get a refund if the box is opened?"),
        ("Is Python good for data analysis?", "Is Python better for data analysis?"),
        # A reorder whose moved words lose or gain their preposition swaps roles.
        ("Did Alice send money to Bob?", "Did Bob send money to Alice?"),
    ],
)
def test_modality_conditions_and_roles_reject(cached: str, query: str) -> None:
    assert not verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query", "accepted_by"),
    [
        ("Do I have to sign the contract?", "Must I sign the contract?", "normalized"),
        (
            "Can the manager see messages?",
            "Is the manager able to see messages?",
            "normalized",
        ),
        (
            "How do I reset my password?",
            "I was wondering, could you tell me how to reset my password?",
            "rephrased",
        ),
        (
            "How do I change the colour of a button?",
            "How do I change the color of a button?",
            "spelling",
        ),
        ("How do I delete a Git branch?", "How do I remove a Git branch?", "synonym"),
        ("How do I enable dark mode?", "How can I turn on dark mode?", "normalized"),
        (
            "In Python, how do I sort a list of dictionaries by a key?",
            "How do I sort, by a key, a list of dictionaries in Python?",
            "reorder",
        ),
        (
            "¿Cómo puedo consultar mi vida laboral?",
            "Hola, estoy preparando la documentación para pedir una hipoteca y el "
            "banco me pide varias cosas. ¿Cómo puedo consultar mi vida laboral?",
            "context",
        ),
    ],
)
def test_new_explanations_pass(cached: str, query: str, accepted_by: str) -> None:
    verdict = verify(query, cached)
    assert verdict.ok, verdict
    assert verdict.accepted_by == accepted_by


def test_a_scene_with_a_number_or_a_name_is_not_context() -> None:
    cached = "How do I report an injury at work?"
    assert not verify(
        "I'm 34 and hurt my wrist. How do I report an injury at work?", cached
    ).ok
    assert not verify("I started Monday. How do I report an injury at work?", cached).ok


def test_unexplained_names_the_words_a_near_miss_changes() -> None:
    # What the learned-accept probe (bench/cache_quality.py --probe) measures on:
    # the words the alignment leaves without a partner, on each side.
    assert unexplained(
        "How do I get the first 3 rows of a pandas DataFrame?",
        "How do I get the last 3 rows of a pandas DataFrame?",
    ) == (("first",), ("last",))


def test_unexplained_is_empty_when_every_word_pairs_up() -> None:
    assert unexplained(
        "How do I delete my account?", "How can I remove my account?"
    ) == ((), ())
    assert verify("How do I delete my account?", "How can I remove my account?").ok


# The development sets: read while the guard was designed (never a blind set).
_DEVELOPMENT_SETS = ("cache_pairs.jsonl", "cache_dev_2026-12.jsonl")


def _development_pairs() -> list[tuple[str, str]]:
    data = Path(__file__).resolve().parents[3] / "bench" / "data"
    pairs = []
    for name in _DEVELOPMENT_SETS:
        for line in (data / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                pair = json.loads(line)
                pairs.append((pair["query"], pair["cached"]))
    return pairs


def test_a_fingerprint_gives_the_verdict_of_the_text_it_was_made_of() -> None:
    pairs = _development_pairs()
    assert len(pairs) > 500
    vetoed = 0
    for first, second in pairs:
        for query, cached in ((first, second), (second, first)):
            verdict = verify(query, cached, fingerprint(cached))
            assert verdict == verify(query, cached), (query, cached)
            vetoed += verdict.failed_check in CHECKS[: CHECKS.index("order")]
    assert vetoed > 100  # the vetoes were read from fingerprints, many times


def test_a_veto_is_read_from_the_fingerprint_without_the_text() -> None:
    # The text alone passes; the fingerprint (of a text with another number)
    # is what the veto reads.
    assert verify("Close order 4812", "close order 4812 please").ok
    assert verify(
        "Close order 4812", "close order 4812 please", fingerprint("Close order 99")
    ) == Verdict(failed_check="numbers")


@pytest.mark.parametrize(
    "stale",
    [
        "0" * 12 + fingerprint("Close order 99")[12:],  # another guard's version
        "not a fingerprint",
    ],
)
def test_a_fingerprint_of_another_version_is_not_read(stale: str) -> None:
    assert verify("Close order 4812", "close order 4812 please", stale).ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # discourse markers, greetings and sign-offs, in several languages
        (
            "How do I export my data?",
            "So, um, basically, how do I, like, export my data?",
        ),
        (
            "How do I close my brokerage account?",
            "Hi there! Hope you're doing well. How do I close my brokerage account? "
            "Thanks so much!",
        ),
        (
            "Wie lange dauert ein Bachelorstudium?",
            "Sag mal, wie lange dauert eigentlich so ein Bachelorstudium?",
        ),
        (
            "¿Qué es un fondo de inversión?",
            "A ver, o sea, ¿qué es básicamente un fondo de inversión?",
        ),
        (
            "Do I need to print my boarding pass?",
            "Hey, do I really need to print my boarding pass or not?",
        ),
        # formal request formulas
        (
            "How do I identify which processes use the most CPU on Linux?",
            "I would be grateful if you could tell me how to identify which processes "
            "use the most CPU on Linux.",
        ),
        (
            "Wann ist meine Lohnabrechnung verfügbar?",
            "Könnten Sie mir mitteilen, wann meine Lohnabrechnung verfügbar ist?",
        ),
        # "how can I" and requests phrased as questions
        ("Comment annuler ma commande ?", "Comment puis-je annuler ma commande ?"),
        (
            "Suggest some stretches for lower back pain.",
            "Can you suggest stretches for lower back pain?",
        ),
        # contractions typed without the apostrophe, misspelt filler
        ("What's your return policy?", "whats your return policy"),
        ("What is photosynthesis?", "waht is photosynthesis"),
        # the Spanish impersonal "se"
        ("¿Cómo abro una cuenta de ahorro?", "¿Cómo se abre una cuenta de ahorro?"),
    ],
)
def test_filler_of_every_kind_is_explained(cached: str, query: str) -> None:
    verdict = verify(query, cached)

    assert verdict.ok, (verdict, unexplained(query, cached))


@pytest.mark.parametrize(
    ("cached", "query", "check"),
    [
        # a greeting is filler; the time of day is not
        (
            "Is the Louvre crowded in the morning?",
            "Is the Louvre crowded in the evening?",
            "alignment",
        ),
        ("Why do I need a visa?", "why dont i need a visa", "negation"),
        # "its", "id" and "ill" are words, not contractions
        ("What is my user ID?", "What is my user I'd?", "alignment"),
        # only English non-words are read as misspelt filler
        (
            "Combien coûte un crédit de 10 000 € à 4 % par an ?",
            "Combien coûte un crédit de 10 000 € à 4 % par mois ?",
            "alignment",
        ),
    ],
)
def test_what_only_looks_like_filler_still_counts(
    cached: str, query: str, check: str
) -> None:
    assert verify(query, cached).failed_check == check


def test_an_agent_and_its_patient_are_not_a_typo() -> None:
    # "payee" is not a word of the vocabulary, and one edit from "payer".
    cached = "How long does the payer have to reverse a SEPA direct debit?"
    query = "How long does the payee have to reverse a SEPA direct debit?"

    assert verify(query, cached).failed_check == "alignment"
    assert verify("How do I add a lessee?", "How do I add a lesse?").ok  # a typo


@pytest.mark.parametrize(
    ("inflected", "verb"),
    [("shipped", "ship"), ("planned", "plan"), ("kept", "keep"), ("paid", "pays")],
)
def test_a_participle_is_an_inflection_of_its_verb(inflected: str, verb: str) -> None:
    assert verify(f"Was it {inflected} today?", f"Did they {verb} it today?").ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # "cant" typed without its apostrophe is still a negation
        ("Why can't I log in to my account?", "why cant i log in to my account"),
        # a name in mixed case typed in lower case is the same name
        (
            "Why does my Kubernetes pod keep restarting with CrashLoopBackOff?",
            "why does my kubernetes pod keep restarting with crashloopbackoff",
        ),
        # a compound written as one word or as two
        (
            "Can I bring a power bank in my checked luggage?",
            "can i bring a powerbank in my checked luggage",
        ),
        # the misspelling that is a word of its own, after a question word
        ("Why does ice float on water?", "why dose ice float on water"),
        # a word one letter from filler, and from a word of the other text
        (
            "Can my employer reject my request for parental leave?",
            "can my employer reject my request for parental leve",
        ),
        # a long name one letter from the known name
        ("Do you ship to Australia?", "do you ship to austrailia"),
        # German nouns are capitalised, not names: a typo in one is a typo
        (
            "Was ist der Unterschied zwischen einer Liste und einem Tupel?",
            "was ist der unterschied zwischen einer liste und einem tuppel",
        ),
        # a German scene of common nouns only
        (
            "Was ist eine Grundschuld?",
            "Ich habe gerade meine erste Wohnung gekauft. Was ist eine Grundschuld?",
        ),
    ],
)
def test_typed_variants_of_the_same_question_pass(cached: str, query: str) -> None:
    assert verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query", "check"),
    [
        ("Why can I log in?", "why cant i log in", "negation"),
        ("How do I call getUserName?", "How do I call getUserId?", "code"),
        ("How do I call getUserName?", "How do I call get user name?", "code"),
        ("Do you ship to Austria?", "Do you ship to Australia?", "alignment"),
        ("Do you ship to Canada?", "Do you ship to Granada?", "alignment"),
        # a German scene that names a place may change the answer
        (
            "Wann beginnen die Sommerferien?",
            "Ich wohne in Bayern. Wann beginnen die Sommerferien?",
            "alignment",
        ),
    ],
)
def test_what_those_variants_do_not_excuse(cached: str, query: str, check: str) -> None:
    assert verify(query, cached).failed_check == check


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # chat shorthand for a word
        (
            "How much paid time off do I accrue per month?",
            "how much PTO do I accrue per mo?",
        ),
        (
            "How many vacation days do I get per year?",
            "how many vacation days do i get per yr",
        ),
        # an irregular past against its participle: both past
        ("Who wrote Pride and Prejudice?", "By whom was Pride and Prejudice written?"),
        # "what to pack" asks what one should, or can, pack
        (
            "What should I pack for a week of hiking?",
            "Tell me what to pack for a week of hiking.",
        ),
        ("Where can I download my invoices?", "Show me where to download my invoices."),
        # a request opener in French
        ("Quel est le plafond du livret A ?", "Indique-moi le plafond du livret A."),
        # a scene whose only name the question names too
        (
            "How do I set a secret key in Flask?",
            "I'm building a small Flask app for my team. "
            "How do I set a secret key in Flask?",
        ),
    ],
)
def test_shorthand_tenses_openers_and_scenes_pass(cached: str, query: str) -> None:
    assert verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # a past is no present
        ("Who writes the release notes?", "Who wrote the release notes?"),
        # "what to" is no "must"
        ("What must I pack for the flight?", "Tell me what to pack for the flight."),
        # a name the question does not name
        ("How do I install Python?", "I'm on Windows. How do I install Python?"),
    ],
)
def test_what_those_do_not_excuse(cached: str, query: str) -> None:
    assert verify(query, cached).failed_check == "alignment"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("How do I reset my password?", "How does a user reset their password?"),
        (
            "¿Puedo devolver un producto sin el ticket?",
            "¿Puede un cliente devolver un producto sin el ticket?",
        ),
        (
            "Quanti giorni di ferie mi spettano al primo anno?",
            "Quanti giorni di ferie spettano a un dipendente al primo anno?",
        ),
    ],
)
def test_a_generic_person_for_i_is_the_same_question(cached: str, query: str) -> None:
    assert verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        (
            "How do I know when my sourdough starter is ready to use?",
            "How does a baker know when their sourdough starter is ready to use?",
        ),
        (
            "How do I transfer my number to a new carrier?",
            "How can a subscriber transfer their number to a new carrier?",
        ),
        (
            "Am I entitled to severance pay if I'm laid off in Ontario?",
            "Is an employee entitled to severance pay if they're laid off in Ontario?",
        ),
    ],
)
def test_any_english_person_noun_in_a_how_question_for_i(
    cached: str, query: str
) -> None:
    assert verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # an age, a status: the answer may change with them
        ("How do I open a bank account?", "How does a minor open a bank account?"),
        ("How do I apply for a visa?", "How does a refugee apply for a visa?"),
        # a yes/no question may ask whether the role qualifies
        ("Can I use the staff parking?", "Can a nurse use the staff parking?"),
    ],
)
def test_no_person_noun_of_a_class_or_in_a_yes_no_question(
    cached: str, query: str
) -> None:
    assert not verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # the asker acts on another person
        ("How do I reset a user's password?", "How does a user reset their password?"),
        # a role that may change the answer
        ("Can I get a discount?", "Can a student get a discount?"),
        # a person added beside "I"
        ("How do I explain inflation?", "How do I explain inflation to a customer?"),
    ],
)
def test_a_person_beside_or_instead_of_a_role_still_differs(
    cached: str, query: str
) -> None:
    assert not verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # a word said twice, with the clause that holds one moved
        (
            "If I pay off my card in full each month, do I pay any interest?",
            "Do I pay any interest if I pay off my card in full each month?",
        ),
        # "a written contract" is an adjective, not a passive to turn round
        (
            "Without a written contract, is a verbal agreement binding?",
            "Is a verbal agreement binding without a written contract?",
        ),
        # greetings, asides and their "but" in other languages
        (
            "Quanto tempo dura l'effetto della tachipirina?",
            "Ciao, scusate il disturbo, ma quanto tempo dura l'effetto della "
            "tachipirina?",
        ),
        (
            "Hoe kan ik mijn wachtwoord wijzigen?",
            "Hoi, even een vraagje: hoe kan ik mijn wachtwoord wijzigen?",
        ),
        (
            "Est-ce que vous livrez en Belgique ?",
            "Bonjour, j'espère que vous allez bien. Est-ce que vous livrez en "
            "Belgique ? Merci d'avance !",
        ),
        (
            "Can I break my lease early if I lose my job?",
            "Hmm, well, I guess my question is, can I break my lease early if I "
            "lose my job?",
        ),
        (
            "¿Cómo cambio el idioma de la app?",
            "Hola, ¿me podrías decir cómo cambio el idioma de la app? Gracias",
        ),
    ],
)
def test_moved_clauses_and_asides_pass(cached: str, query: str) -> None:
    assert verify(query, cached).ok


def test_a_word_said_twice_still_keeps_its_roles() -> None:
    cached = "If the bank pays me, do I pay the bank a fee?"
    query = "If I pay the bank, does the bank pay me a fee?"
    assert not verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query", "check"),
    [
        # Dutch "van … naar …" turned round
        (
            "Hoe kopieer ik met docker cp een bestand van de container naar de host?",
            "Hoe kopieer ik met docker cp een bestand van de host naar de container?",
            "order",
        ),
        # two foreign words, each a letter from English filler, still differ
        (
            "In Python, `a or b` restituisce `a` se `a` è vero?",
            "In Python, `a or b` restituisce `a` se `a` è falso?",
            "alignment",
        ),
        # code spans that swap ends of "than"
        (
            "Is `===` stricter than `==` in JavaScript?",
            "Is `==` stricter than `===` in JavaScript?",
            "code",
        ),
        # a shell argument split in two
        (
            "What exactly does `rm -rf ./build/*` delete?",
            "What exactly does `rm -rf ./build /*` delete?",
            "code",
        ),
        # a YAML key's one nested line moved out of it
        (
            "Is this valid?\n```yaml\nenvironment:\n  PASSWORD: secret\n```",
            "Is this valid?\n```yaml\nenvironment:\nPASSWORD: secret\n```",
            "code",
        ),
        # with its function words as filler, a phrase that crosses "que" after a
        # comparative still changes the comparison
        (
            "¿Por qué es mejor estudiar por la mañana que por la noche?",
            "¿Por qué es mejor estudiar por la noche que por la mañana?",
            "order",
        ),
        # a separable verb's particle is no filler
        (
            "Hoe schakel ik tweestapsverificatie in?",
            "Hoe schakel ik tweestapsverificatie uit?",
            "alignment",
        ),
    ],
)
def test_changes_in_other_languages_and_in_code_reject(
    cached: str, query: str, check: str
) -> None:
    assert verify(query, cached).failed_check == check


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # a preposition's phrase moved, in German
        (
            "Kann ich im ICE mit dem Deutschlandticket fahren?",
            "Kann ich mit dem Deutschlandticket im ICE fahren?",
        ),
        # a text of no clear language read in the other's
        ("Comment installer Python sur Windows ?", "coment instaler python sur windos"),
        # one Python statement's line after its colon or below it
        (
            "Why does this fail?\n```python\nfor x in y: f(x)\n```",
            "Why does this fail?\n```python\nfor x in y:\n    f(x)\n```",
        ),
    ],
)
def test_the_same_question_in_other_languages_and_layouts_passes(
    cached: str, query: str
) -> None:
    assert verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query", "check"),
    [
        # asking how, against asking the assistant to act on one's own things
        ("How do I cancel my subscription?", "Cancel my subscription.", "intent"),
        ("How can I delete my account?", "delete my account", "intent"),
        # prefixes that turn an action round
        (
            "How do I onboard a contractor in Deel?",
            "How do I offboard a contractor in Deel?",
            "alignment",
        ),
        # a null operator named on its own
        (
            "Was macht der Operator ?? in JavaScript?",
            "Was macht der Operator ?. in JavaScript?",
            "code",
        ),
    ],
)
def test_intent_prefixes_and_operators_reject(
    cached: str, query: str, check: str
) -> None:
    assert verify(query, cached).failed_check == check


def test_a_command_to_write_is_still_how_to_write() -> None:
    cached = "How would I write a SQL query to find duplicate emails in a table?"
    query = "Write a SQL query that finds duplicate emails in a table."
    assert verify(query, cached).failed_check != "intent"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("How should wool sweaters be washed?", "How should I wash wool sweaters?"),
        ("¿Cómo puedo cambiar mi contraseña?", "¿Como puedo cambiar mi contrasena?"),
        (
            "Wie kann ich meine Website barrierefrei gestalten?",
            "Wie können wir unsere Website barrierefrei gestalten?",
        ),
    ],
)
def test_how_with_any_modal_and_subject_asks_how(cached: str, query: str) -> None:
    assert verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        (
            "Welche Impfung brauche ich für Thailand?",
            "Welche Impfungen brauche ich für Thailand?",
        ),
        (
            "¿Cómo se calculan los intereses de un préstamo?",
            "¿Cómo se calcula el interés de un préstamo?",
        ),
        (
            "¿Cómo vinculo mi cuenta con Google?",
            "Explícame cómo vincular mi cuenta con Google.",
        ),
    ],
)
def test_inflections_in_other_languages_pass(cached: str, query: str) -> None:
    assert verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # an adjective in -ed before the participle is no participle
        (
            "Does the airline refund unused tickets?",
            "Are unused tickets refunded by the airline?",
        ),
        # participles spelt as their verb
        (
            "When does the system run the nightly backup job?",
            "When is the nightly backup job run by the system?",
        ),
        ("Who sets the exam schedule?", "By whom is the exam schedule set?"),
        # an adverb may stand anywhere
        (
            "Does insurance usually cover physical therapy?",
            "Is physical therapy usually covered by insurance?",
        ),
    ],
)
def test_more_passives_read_as_their_active(cached: str, query: str) -> None:
    assert verify(query, cached).ok


def test_a_passive_still_keeps_who_acts() -> None:
    cached = "Does the tenant pay the landlord for unused days?"
    query = "Is the tenant paid by the landlord for unused days?"
    assert not verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query", "ok"),
    [
        # The question's phrase is the passive's subject and stays first.
        (
            "Which port does Redis use by default?",
            "Which port is used by Redis by default?",
            True,
        ),
        (
            "How many servers does Netflix use?",
            "How many servers are used by Netflix?",
            True,
        ),
        (
            "Which company did Microsoft acquire?",
            "Which company was acquired by Microsoft?",
            True,
        ),
        # ... and still the one acted on: not who acts.
        (
            "Which company acquired GitHub?",
            "Which company was acquired by GitHub?",
            False,
        ),
        (
            "Which service calls the billing API?",
            "Which service is called by the billing API?",
            False,
        ),
    ],
)
def test_a_question_phrase_as_a_passives_subject(
    cached: str, query: str, ok: bool
) -> None:
    assert verify(query, cached).ok is ok


@pytest.mark.parametrize(
    ("cached", "query", "ok"),
    [
        # "get" before a participle is the passive's auxiliary, as "is"
        (
            "What rights do tenants have when the building is sold?",
            "What rights does a tenant have when their building gets sold?",
            True,
        ),
        ("Can I be paid weekly?", "Can I get paid weekly?", True),
        ("How do I get a refund?", "How is a refund issued?", False),
    ],
)
def test_get_before_a_participle_is_a_passive(
    cached: str, query: str, ok: bool
) -> None:
    assert verify(query, cached).ok is ok


@pytest.mark.parametrize(
    ("cached", "query", "ok"),
    [
        (
            "Does my policy cover jewelry worth more than $5,000?",
            "does my policy cover jewelry worth over five thousand dollars?",
            True,
        ),
        (
            "Is notice required if I've worked there less than 90 days?",
            "Is notice required if I've worked there under ninety days?",
            True,
        ),
        # the bound still says which side
        ("Do orders over $50 ship free?", "Do orders under $50 ship free?", False),
        (
            "Do orders over $50 ship free?",
            "Do orders of at least $50 ship free?",
            False,
        ),
        # a phrase moved across the bound is no phrase moved across "than"
        (
            "Is free shipping available on orders over $50 to Canada?",
            "To Canada, is free shipping available on orders over $50?",
            True,
        ),
    ],
)
def test_over_and_under_a_number_are_more_and_less_than(
    cached: str, query: str, ok: bool
) -> None:
    assert verify(query, cached).ok is ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        (
            "Would you be so kind as to explain why the ocean is salty?",
            "why is the ocean salty",
        ),
        (
            "Auriez-vous l'amabilité de m'indiquer si vous livrez en Belgique ?",
            "vous livrez en belgique ?",
        ),
        (
            "Poderia, por gentileza, informar-me como funciona o aviso prévio?",
            "como funciona o aviso prévio?",
        ),
        (
            "Zou u mij kunnen vertellen hoe lang de garantie geldt?",
            "Hoe lang geldt de garantie?",
        ),
        (
            "Puoi spiegarmi quando si usa il congiuntivo?",
            "Quando si usa il congiuntivo?",
        ),
    ],
)
def test_a_polite_request_built_from_its_parts_asks_the_question(
    cached: str, query: str
) -> None:
    assert verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        (
            "How should I structure a 30-60-90 day plan?",
            "Outline how to structure a 30-60-90 day plan.",
        ),
        (
            "How does DNS resolution work?",
            "Help me understand how DNS resolution works.",
        ),
    ],
)
def test_more_requests_that_open_a_question(cached: str, query: str) -> None:
    assert verify(query, cached).ok


def test_question_words_of_one_kind_pair() -> None:
    verdict = verify("Weshalb ist der Himmel blau?", "Warum ist der Himmel blau?")
    assert verdict.accepted_by == "synonym"


@pytest.mark.parametrize(
    ("cached", "query", "ok"),
    [
        # a manner is no reason, in any language
        ("How do I prune an apple tree?", "Why do you prune apple trees?", False),
        (
            "¿Cómo se hace la electrólisis del agua?",
            "¿Por qué se hace la electrólisis del agua?",
            False,
        ),
        ("Wann öffnet der Laden?", "Wo öffnet der Laden?", False),
        # "how" before a word asks its degree, still "how": a typo, a synonym
        (
            "How often should I water a lemon tree?",
            "How frequently should I water a lemon tree?",
            True,
        ),
        (
            "How early should I arrive at the airport?",
            "how erly should i arrive at the airport",
            True,
        ),
    ],
)
def test_what_a_question_asks_for(cached: str, query: str, ok: bool) -> None:
    verdict = verify(query, cached)
    assert verdict.ok is ok
    if not ok:
        assert verdict.failed_check == "intent"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        (
            "¿En Barajas se pasa el control de pasaportes antes del control de "
            "seguridad?",
            "¿En Barajas se pasa el control de seguridad antes del control de "
            "pasaportes?",
        ),
        (
            "Faut-il passer par la douane avant le contrôle de sécurité ?",
            "Faut-il passer par le contrôle de sécurité avant la douane ?",
        ),
    ],
)
def test_phrases_swapped_across_before_are_another_sequence(
    cached: str, query: str
) -> None:
    assert verify(query, cached).failed_check == "order"


@pytest.mark.parametrize(
    ("cached", "query", "ok"),
    [
        (
            "Hoe kan ik het beste een teek verwijderen?",
            "Leg uit hoe ik het beste een teek kan verwijderen.",
            True,
        ),
        (
            "Posso levar comida na mala para os Estados Unidos?",
            "Um viajante pode levar comida na mala para os Estados Unidos?",
            True,
        ),
        # a modal of one class is no modal of another
        ("Moet ik een visum aanvragen?", "Kan ik een visum aanvragen?", False),
        ("Posso pagar com cartão?", "Tenho que pagar com cartão?", False),
    ],
)
def test_dutch_and_portuguese_modals_by_class(
    cached: str, query: str, ok: bool
) -> None:
    assert verify(query, cached).ok is ok


@pytest.mark.parametrize(
    ("cached", "query", "ok"),
    [
        (
            "Kan ik mijn zorgverzekering tussentijds opzeggen?",
            "Kun je je zorgverzekering tussentijds opzeggen?",
            True,
        ),
        (
            "Muss ich mich beim Einwohnermeldeamt anmelden?",
            "Muss man sich beim Einwohnermeldeamt anmelden?",
            True,
        ),
        (
            "Posso iscrivermi all'università senza il test d'ingresso?",
            "Ci si può iscrivere all'università senza il test d'ingresso?",
            True,
        ),
        # asking the assistant to act on the asker's own things
        (
            "Kan ik mijn wachtwoord resetten?",
            "Kun je mijn wachtwoord resetten?",
            False,
        ),
    ],
)
def test_each_languages_generic_subject_for_i(
    cached: str, query: str, ok: bool
) -> None:
    assert verify(query, cached).ok is ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        (
            "What should I do if I missed a dose of my pill?",
            "What should I do if I'm going to miss a dose of my pill?",
        ),
        (
            "What happens if we paid the invoice late?",
            "What happens if we will pay the invoice late?",
        ),
    ],
)
def test_a_past_verb_after_its_subject_is_no_future(cached: str, query: str) -> None:
    assert verify(query, cached).failed_check == "tense"


def test_a_common_word_the_model_does_not_know_is_no_misspelt_filler() -> None:
    # "thaw" is no word piece of the model's vocabulary; one edit from "that",
    # it was dropped as a misspelling, and the opposite action went unseen.
    verdict = verify(
        "What's the safest way to thaw frozen cooked rice?",
        "What's the safest way to freeze cooked rice?",
    )
    assert verdict.failed_check == "alignment"


@pytest.mark.parametrize(
    ("cached", "query", "check"),
    [
        # the asker acted on, or acting, in a who-question
        (
            "How can I see who blocked me on WhatsApp?",
            "How can I see who I blocked on WhatsApp?",
            "order",
        ),
        ("Who owes me money?", "Who do I owe money?", "order"),
        # two numbers turned round across "on"
        (
            "How do I expose a container's port 80 on host port 8080?",
            "How do I expose a container's port 8080 on host port 80?",
            "numbers",
        ),
    ],
)
def test_the_last_development_near_misses(cached: str, query: str, check: str) -> None:
    assert verify(query, cached).failed_check == check


def test_who_questions_that_keep_the_asker_in_place_still_pair() -> None:
    assert verify("who blocked me on whatsapp", "Who blocked me on WhatsApp?").ok


def test_use_in_its_short_forms() -> None:
    # "used" and "using" are too short for the suffix rules ("feed" is no "fee").
    verdict = verify(
        "Walk me through using an inhaler with a spacer.",
        "How do I use an inhaler with a spacer?",
    )
    assert verdict.accepted_by == "inflection"


@pytest.mark.parametrize(
    ("cached", "query", "ok"),
    [
        ("Wie funktioniert Merge Sort?", "Erkläre, wie Merge Sort funktioniert.", True),
        (
            "Hoe bereken ik de oppervlakte van een cirkel?",
            "Leg uit hoe ik de oppervlakte van een cirkel bereken.",
            True,
        ),
        # two direct questions: no verb moved, a conversion turned round
        (
            "Wie viel sind 500 Schweizer Franken in Euro?",
            "Wie viel sind 500 Euro in Schweizer Franken?",
            False,
        ),
    ],
)
def test_a_german_or_dutch_verb_goes_last_in_a_requested_clause(
    cached: str, query: str, ok: bool
) -> None:
    assert verify(query, cached).ok is ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # a line continued with a backslash is one line, in prose too
        (
            "Why is my image so big?\nRUN apt-get update && apt-get install -y gcc",
            "Why is my image so big?\n"
            "RUN apt-get update \\\n && apt-get install -y gcc",
        ),
        # a command in prose against the same command fenced
        (
            "Was macht dieser Befehl: kubectl get pods -n prod -o wide",
            "Was macht dieser Befehl:\n"
            "```\nkubectl get pods \\\n  -n prod \\\n  -o wide\n```",
        ),
    ],
)
def test_commands_continued_or_fenced_pass(cached: str, query: str) -> None:
    assert verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # "was" is German too, but "by" and "whom" are English
        ("Who discovered penicillin?", "By whom was penicillin discovered?"),
        # "i" and "in" are Italian too
        (
            "Serve il visto per andare in Giappone?",
            "Servono i visti per andare in Giappone?",
        ),
    ],
)
def test_more_function_words_tell_a_language(cached: str, query: str) -> None:
    assert verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        (
            "What happens if I die without a will?",
            "I'm sorry if this is a weird question, but honestly, what happens if "
            "I die without a will?",
        ),
        (
            "Faut-il un passeport pour aller au Royaume-Uni depuis la France ?",
            "Bonjour, désolé de vous déranger, mais faut-il un passeport pour aller "
            "au Royaume-Uni depuis la France ? Merci beaucoup",
        ),
        (
            "Wer hat die Relativitätstheorie entwickelt?",
            "Von wem wurde die Relativitätstheorie entwickelt?",
        ),
        (
            "Quelles sont les étapes d'une rupture conventionnelle ?",
            "Liste les étapes d'une rupture conventionnelle.",
        ),
    ],
)
def test_apologies_by_whom_and_list_openers_pass(cached: str, query: str) -> None:
    assert verify(query, cached).ok


def test_an_apology_that_tells_a_story_is_not_dropped() -> None:
    cached = "Can I return it?"
    query = "Sorry, my order arrived broken, but can I return it?"
    assert not verify(query, cached).ok


def test_a_generic_person_in_the_plural_or_dative_is_one_too() -> None:
    cached = "Wie viele Tage Bildungsurlaub stehen mir in NRW zu?"
    query = "Wie viele Tage Bildungsurlaub stehen Arbeitnehmern in NRW zu?"
    assert verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # a French question's verb and pronoun typed without their hyphen
        (
            "Est-ce que le café augmente la tension artérielle ?",
            "est ce que le cafe augmente la tension arterielle",
        ),
        # "and" is filler in every language, as in English: "è" typed "e"
        (
            "Qual è la differenza tra ISEE ordinario e ISEE corrente?",
            "qual e la differenza tra isee ordinario e isee corrente",
        ),
    ],
)
def test_hyphens_and_conjunctions_of_other_languages_pass(
    cached: str, query: str
) -> None:
    assert verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query", "ok"),
    [
        # two words joined by "and" trade places
        (
            "Can I take ibuprofen and paracetamol together?",
            "Can I take paracetamol and ibuprofen together?",
            True,
        ),
        # French and Spanish "en" is no Dutch "and": a conversion turned round
        (
            "¿Cuánto son 500 euros en dólares?",
            "¿Cuánto son 500 dólares en euros?",
            False,
        ),
        # the question word is the passive's subject
        (
            "What does the garbage collector free in Java?",
            "What is freed by the garbage collector in Java?",
            True,
        ),
        # Dutch "dan" after a condition moved to the front
        (
            "Mag ik sporten als ik koorts heb?",
            "Als ik koorts heb, mag ik dan sporten?",
            True,
        ),
    ],
)
def test_coordinates_question_word_passives_and_then(
    cached: str, query: str, ok: bool
) -> None:
    assert verify(query, cached).ok is ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        (
            "How can I shrink the size of my Docker image?",
            "How can I reduce the size of my Docker image?",
        ),
        (
            "Is it smart to pay off my mortgage early?",
            "Is it wise to pay off my mortgage early?",
        ),
        (
            "Mon colis est abîmé, que dois-je faire ?",
            "Mon colis est endommagé, que dois-je faire ?",
        ),
        (
            "¿Cómo elimino los duplicados de una lista?",
            "¿Cómo quito los duplicados de una lista?",
        ),
    ],
)
def test_synonyms_in_several_languages_pass(cached: str, query: str) -> None:
    assert verify(query, cached).ok


def test_a_synonym_group_does_not_join_opposites() -> None:
    assert not verify(
        "How can I enlarge my Docker image?", "How can I shrink my Docker image?"
    ).ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        (
            "How often should I water a newly planted lemon tree?",
            "How frequently should I irrigate a freshly planted lemon tree?",
        ),
        (
            "My Fitbit stopped syncing with my phone, how do I fix it?",
            "My Fitbit quit syncing with my phone, how do I repair that?",
        ),
        ("Why was my payment declined?", "Why was my payment rejected?"),
        ("My package arrived damaged.", "My parcel arrived damaged."),
    ],
)
def test_english_words_of_one_frequent_wordnet_sense_pass(
    cached: str, query: str
) -> None:
    verdict = verify(query, cached)
    assert verdict.ok
    assert verdict.accepted_by == "synonym"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("Summarize ticket 5521 for me.", "Give me a summary of ticket 5521."),
        ("How do I register for fall classes?", "Registration for fall classes"),
    ],
)
def test_english_words_wordnet_derives_one_from_the_other(
    cached: str, query: str
) -> None:
    assert verify(query, cached).accepted_by == "inflection"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # Units of one WordNet synset are other units.
        (
            "How many bytes are in a megabyte?",
            "How many bytes are in a mebibyte?",
        ),
        # Words of one synset in a rare sense only: "average"/"median" (a
        # statistic), "burn"/"cut" (an injury), "raise"/"advance" (a payment).
        (
            "What's the average salary for a nurse in Texas?",
            "What's the median salary for a nurse in Texas?",
        ),
        ("How do I treat a burn on my hand?", "How do I treat a cut on my hand?"),
        ("How do I request a salary raise?", "How do I request a salary advance?"),
        # Antonyms share no synset.
        ("How do I increase the font size?", "How do I decrease the font size?"),
    ],
)
def test_wordnet_joins_no_units_rare_senses_or_antonyms(
    cached: str, query: str
) -> None:
    assert not verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        (
            "How much water should I drink per day?",
            "How much watter shoud I drink per day?",
        ),
        (
            "Brauche ich einen Reisepass für Norwegen?",
            "brauch ich einen reisepass für norwegen",
        ),
        (
            "Come si configura un cron job su Linux?",
            "come si configura un cron jbo su linux",
        ),
        ("How many tablespoons are in a cup?", "How many tbsp are in a cup?"),
        (
            "Do you offer free shipping on orders over $50?",
            "Do you offer free shipping on orders above fifty dollars?",
        ),
        ("Cos'è lo spread?", "Ciao, scusa la domanda banale: cos'è lo spread?"),
        (
            "Comment conjuguer un verbe au passé simple ?",
            "Comment conjugue-t-on un verbe au passé simple ?",
        ),
    ],
)
def test_misspelt_modals_short_swaps_and_shorthand_pass(
    cached: str, query: str
) -> None:
    assert verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        (
            "Why do leaves change color in autumn?",
            "Why does a leaf change color in autumn?",
        ),
        (
            "Comment fonctionnent les promesses en JavaScript ?",
            "Comment fonctionne une promesse en JavaScript ?",
        ),
        (
            "¿Cómo se redacta una carta de recomendación?",
            "¿Cómo se redactan las cartas de recomendación?",
        ),
    ],
)
def test_irregular_and_foreign_plurals_pass(cached: str, query: str) -> None:
    assert verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("Do you ship parcels under 2 kg?", "Do you ship parcels under 2000 g?"),
        ("Is 1 hour enough for a layover?", "Is 60 minutes enough for a layover?"),
        ("How many cups is 0.5 liters?", "How many cups is 500 ml?"),
    ],
)
def test_one_quantity_in_two_units_is_one_quantity(cached: str, query: str) -> None:
    assert verify(query, cached).ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # SQL written in prose reads as it does in a fence
        (
            "Is this right? SELECT country, COUNT(*) FROM orders GROUP BY country;",
            "Is this right?\n```sql\nselect country, count(*)\n  from orders\n"
            " group by country\n```",
        ),
        # a quoted string that is the other's string literal in code
        (
            'What does console.log("5" + 3) print in JavaScript?',
            "What does console.log('5'+3) print in JavaScript?",
        ),
    ],
)
def test_sql_in_prose_and_string_literals_pass(cached: str, query: str) -> None:
    assert verify(query, cached).ok
    assert verify(query, cached, fingerprint(cached)).ok


def test_a_quoted_string_still_differs_when_no_code_holds_it() -> None:
    cached = "What does 'force majeure' mean?"
    query = "What does 'act of god' mean?"
    assert verify(query, cached).failed_check == "quoted"


def test_the_same_code_lines_at_other_depths_differ() -> None:
    cached = "What does this print?\nfor x in [1, 2]:\n    print(x)\nprint('end')"
    query = "What does this print?\nfor x in [1, 2]:\n    print(x)\n    print('end')"
    reindented = "What does this print?\nfor x in [1, 2]:\n  print(x)\nprint('end')"
    assert verify(query, cached).failed_check == "code"
    assert verify(reindented, cached).ok


@pytest.mark.parametrize(
    ("cached", "query", "ok"),
    [
        # a phrase moved from one end to the other, across "to"
        (
            "on etsy can i offer free shipping only to buyers in my own country",
            "can i offer free shipping only to buyers in my own country on etsy",
            True,
        ),
        # the other languages' "be" is filler as English's is
        (
            "Chi deve pagare la revisione dell'auto?",
            "Da chi deve essere pagata la revisione dell'auto?",
            True,
        ),
        # an elided article is its word
        (
            "Come si calcola la media ponderata dei voti all'università?",
            "Come si calcola la media ponderata dei voti all'univeristà?",
            True,
        ),
        # "-ied" is "-y"
        (
            "Should I salt the eggplant before I fry it?",
            "Should the eggplant be salted before it is fried?",
            True,
        ),
        # a phrase that crosses "than" inside the question still changes it
        (
            "Is cycling faster in the city than in the country?",
            "Is cycling faster in the country than in the city?",
            False,
        ),
    ],
)
def test_edge_moves_auxiliaries_and_elisions(cached: str, query: str, ok: bool) -> None:
    assert verify(query, cached).ok is ok


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        (
            "Brauche ich für Autobahnen in Norwegen eine Vignette?",
            "Hallo! Entschuldigung für die vielleicht blöde Frage, aber brauche ich "
            "für Autobahnen in Norwegen eine Vignette? Vielen Dank!",
        ),
        (
            "Can my manager see my Slack direct messages?",
            "Hey, sorry, this might be a paranoid question, but can my manager see "
            "my Slack direct messages? Thanks in advance.",
        ),
        (
            "¿Los contratos verbales son válidos en Argentina?",
            "¿Los contratos verbales es válido en Argentina?",
        ),
    ],
)
def test_more_apologies_and_spanish_son_pass(cached: str, query: str) -> None:
    assert verify(query, cached).ok


def test_square_feet_and_messages_in_shorthand() -> None:
    cached = "What size air conditioner do I need for a 400 square foot room?"
    assert verify("what size AC do i need for a 400 sq ft room", cached).ok


def test_about_to_is_a_future_against_a_perfect() -> None:
    cached = "What should I do if my green card has expired?"
    query = "What should I do if my green card is about to expire?"
    assert verify(query, cached).failed_check == "tense"
