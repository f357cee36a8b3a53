"""Everyday words for the things people tell each other about themselves, by topic.

Search and recall use it to reach past the exact words of a question: "where does she work?"
is answered by "first shift at the new place, my boss is lovely", which shares no word with it.
`RELATED[word]` is the other words of every topic the word belongs to (searched at a discount);
`KEY_WORDS[key]` is the words of a fact key's topic (indexed with the fact). English only; other
languages are searched by their own words and by meaning.
"""

from __future__ import annotations

TOPICS: dict[str, str] = {
    "work": "work works working worked job jobs shift shifts boss office colleague colleagues"
    " manager hired interview notice quit career workplace company",
    "home": "live lives living lived moved move moving flat apartment house place rent"
    " landlord neighbourhood neighborhood area street city town address",
    "partner": "partner boyfriend girlfriend date dating dated seeing husband wife"
    " relationship together broke breakup ex",
    "family": "sister brother sibling siblings mum mom dad parents family niece nephew"
    " cousin aunt uncle",
    "pet": "pet pets dog dogs cat cats puppy kitten vet",
    "birthday": "birthday born bday age old turning turned",
    "car": "car drive drives driving licence license lessons",
    "study": "study studies studying course degree uni university college exam exams"
    " class lecture school",
    "food": "food eat eats eating meat vegetarian veggie vegan dairy allergic allergy"
    " intolerant intolerance cook cooking",
    "sport": "sport sports gym run running climbing bouldering football soccer tennis"
    " swimming cycling yoga boxing basketball rugby cricket hockey training",
    "music": "music play plays playing guitar piano drums instrument band lessons",
    "trip": "trip holiday travel travelling flight visit vacation",
    "health": "sick ill doctor hospital injury injured hurt",
}
# Fact keys (gate.KEYS) -> their topic.
_KEY_TOPIC = {
    "job": "work", "workplace": "work", "lives in": "home", "hometown": "home",
    "partner": "partner", "sibling": "family", "parent": "family", "child": "family",
    "pet": "pet", "birthday": "birthday", "age": "birthday", "school": "study",
    "studies": "study", "diet": "food", "allergy": "food", "car": "car", "hobby": "sport",
    "trip": "trip", "plan": "trip", "health": "health",
}  # fmt: skip

_GROUPS = {name: words.split() for name, words in TOPICS.items()}
RELATED: dict[str, tuple[str, ...]] = {}
for _words in _GROUPS.values():
    for _word in _words:
        RELATED[_word] = tuple(dict.fromkeys([*RELATED.get(_word, ()), *_words]))
RELATED = {w: tuple(r for r in related if r != w) for w, related in RELATED.items()}
KEY_WORDS: dict[str, str] = {key: TOPICS[topic] for key, topic in _KEY_TOPIC.items()}
