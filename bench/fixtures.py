"""Generated inputs for the benchmarks, for machines without ../shared (CI, a user's laptop):
documents, a BEIR-format retrieval set and a PII sample, all seeded, so every run is the same.

    inputs = write_inputs(Path("/tmp/bench-inputs"), documents=6)

The text describes invented entities (towns, composers, rivers...) of a few invented regions,
each with a trait and a detail, in a handful of sentences. The same entities make:
- documents: reports grouping entities, as PDFs (with a running footer, a table, an outline)
  and Word files written by tests/documents.py, with a contact line of personal data in
  every section for the masker; plus the PDF and DOCX of examples/;
- a BEIR set: one corpus entry per entity; queries asking for a kind of entity in a region
  known for a trait (grade 2: those entities; grade 1: the same kind in the same region), or
  naming an entity (grade 2: it);
- a PII sample in presidio-synth's format: English sentences holding e-mail addresses, US
  phone numbers, Luhn-valid card numbers, checksummed IBANs, IPv4 addresses and SSNs.
These are smoke-run inputs: figures measured on them say the harness works, not how good or
fast pgkb is on real documents.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from ingest.pii.checksums import luhn_valid
from tests.documents import write_docx, write_pdf

ROOT = Path(__file__).resolve().parents[1]
REGIONS = ["Valmora", "Kestrel Bay", "Northmarch", "Saltmere", "Corvan Highlands", "Eastwold"]
SYLLABLES = ["ka", "ri", "mo", "len", "tha", "vos", "el", "dra", "wen", "sol", "bru", "nia", "tor", "gal", "fen"]
# kind: (traits, details, sentence templates)
KINDS = {
    "town": (["woollen mills", "salt marshes", "clock towers", "apple orchards", "glass workshops"],
             ["lanterns", "herring", "bell ringing", "kites"],
             ["{name} is a market town in {region}, founded in {year}.",
              "The town is known for its {trait} and a yearly festival of {detail}.",
              "Its old harbour was rebuilt after the flood of {later}, and the railway reached it soon after.",
              "Most of the people of {name} work in farming, trade or the {trait}."]),
    "composer": (["choral symphonies", "string quartets", "folk song settings", "organ preludes", "comic operas"],
                 ["a lighthouse keeper", "the salt trade", "a winter journey", "a lost river"],
                 ["{name} was a composer born in {region} in {year}.",
                  "{name} is remembered for {trait} and an opera about {detail}.",
                  "After studying in the capital, {name} returned home to teach at the music school in {later}.",
                  "Recordings of the {trait} were first issued long after the composer's death."]),
    "river": (["trout fishing", "water mills", "stone bridges", "spring floods", "reed beds"],
              ["otters", "barges", "ice fairs", "willow baskets"],
              ["The {name} is a river of {region}, about {length} kilometres long.",
               "It is known for its {trait}, and its banks are famous for {detail}.",
               "A canal joined the {name} to the sea in {year}.",
               "The upper valley of the {name} has been a nature reserve since {later}."]),
    "football club": (["youth academy", "wooden stand", "cup runs", "derby matches", "green shirts"],
                      ["a former coal mine", "a brewery", "a railway works", "a fishing fleet"],
                      ["{name} FC is a football club from {region}, founded in {year}.",
                       "The club is known for its {trait} and was started by workers of {detail}.",
                       "It won the regional league in {later} and plays at the {name} Road ground.",
                       "Supporters of {name} FC still sing songs about the {trait}."]),
    "software company": (["database tools", "accounting software", "mapping services", "compilers", "games"],
                         ["weather data", "shipping logistics", "school timetables", "library catalogues"],
                         ["{name} Systems is a software company based in {region}, founded in {year}.",
                          "It is known for its {trait} and a product for {detail}.",
                          "The company moved to a new office in {later} and employs about {length} people.",
                          "{name} Systems publishes the source of some of its {trait}."]),
}
EMAIL_DOMAINS = ["example.org", "mail.example.com", "corp.example.net"]


@dataclass(frozen=True)
class Entity:
    key: str
    name: str
    kind: str
    region: str
    trait: str
    text: str


@dataclass(frozen=True)
class Inputs:
    """Where a run's inputs are: a documents folder, a BEIR set folder, a PII sample file."""

    documents: Path
    beir: Path
    pii_synth: Path


def write_inputs(folder: Path, documents: int = 6, entities: int = 400, queries: int = 40, pii_samples: int = 150,
                 seed: int = 9) -> Inputs:
    """All three inputs under `folder` (replaced if there)."""
    shutil.rmtree(folder, ignore_errors=True)
    rng = random.Random(seed)
    made = make_entities(entities, rng)
    inputs = Inputs(folder / "documents", folder / "beir", folder / "pii-synth.json")
    write_documents(inputs.documents, made, documents, rng)
    write_beir(inputs.beir, made, queries, rng)
    write_pii_sample(inputs.pii_synth, pii_samples, rng)
    return inputs


def make_entities(count: int, rng: random.Random) -> list[Entity]:
    entities, names = [], set()
    while len(entities) < count:
        name = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
        if name in names:
            continue
        names.add(name)
        kind = rng.choice(list(KINDS))
        traits, details, templates = KINDS[kind]
        fields = {"name": name, "region": rng.choice(REGIONS), "trait": rng.choice(traits),
                  "detail": rng.choice(details), "year": rng.randint(1650, 1950), "later": rng.randint(1951, 2020),
                  "length": rng.randint(20, 400)}
        sentences = [template.format(**fields) for template in templates[:2]]
        sentences += rng.sample([template.format(**fields) for template in templates[2:]], rng.randint(1, 2))
        entities.append(Entity(f"entity-{len(entities):04d}", name, kind, fields["region"], fields["trait"],
                               " ".join(sentences)))
    return entities


def write_documents(folder: Path, entities: list[Entity], count: int, rng: random.Random) -> None:
    """`count` reports (two PDFs to each Word file), eight entities each, and examples/'s PDF and DOCX."""
    folder.mkdir(parents=True)
    for number in range(count):
        members = entities[number * 8:(number + 1) * 8]
        region = members[0].region
        sections = []
        for entity in members:
            contact = (f"Contact: {entity.name.lower()}.{rng.randint(10, 99)}@{rng.choice(EMAIL_DOMAINS)}, "
                       f"phone {_phone(rng)}.")
            sections.append((1, entity.name, [entity.text, contact]))
        sections.append((1, "Summary", [(("Name", "Kind", "Region"),
                                         *((e.name, e.kind, e.region) for e in members))]))
        title = f"Survey {number + 1}: places, people and firms of {region}"
        if number % 3 == 2:
            write_docx(folder / f"survey-{number + 1:02d}.docx", title, sections)
        else:
            write_pdf(folder / f"survey-{number + 1:02d}.pdf", title, sections, footer=f"Survey {number + 1}")
    for example in sorted((ROOT / "examples").glob("*")):
        if example.suffix in (".pdf", ".docx"):
            shutil.copyfile(example, folder / example.name)


def write_beir(folder: Path, entities: list[Entity], count: int, rng: random.Random) -> None:
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as corpus:
        for entity in entities:
            corpus.write(json.dumps({"_id": entity.key, "title": entity.name, "text": entity.text}) + "\n")
    queries, qrels = [], []
    for number, entity in enumerate(rng.sample(entities, count)):
        query_id = f"q{number:03d}"
        if number % 2:
            queries.append({"_id": query_id, "text": f"{entity.name} {entity.kind}"})
            qrels.append((query_id, entity.key, 2))
            continue
        queries.append({"_id": query_id, "text": f"{entity.kind} in {entity.region} known for {entity.trait}"})
        for other in entities:
            if other.kind == entity.kind and other.region == entity.region:
                qrels.append((query_id, other.key, 2 if other.trait == entity.trait else 1))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q, d, g in qrels))


PII_TEMPLATES = [
    "Please write to {EMAIL_ADDRESS} before Friday about the invoice.",
    "You can reach the front desk at {PHONE_NUMBER} from 9 to 5.",
    "My card number is {CREDIT_CARD} and it expires next spring.",
    "Wire the deposit to account {IBAN_CODE} by the end of the month.",
    "The build server at {IP_ADDRESS} stopped answering after the update.",
    "His social security number is {US_SSN}, as written on the form.",
    "Send the signed copy to {EMAIL_ADDRESS} or call me on {PHONE_NUMBER}.",
    "Charge {CREDIT_CARD} for the order and mail the receipt to {EMAIL_ADDRESS}.",
    "Requests from {IP_ADDRESS} were blocked; the owner's SSN on file is {US_SSN}.",
    "The refund goes to IBAN {IBAN_CODE}; questions to {PHONE_NUMBER}.",
]


def write_pii_sample(path: Path, count: int, rng: random.Random) -> None:
    """Samples in presidio-synth's JSON layout (full_text, spans with type and positions)."""
    makers = {"EMAIL_ADDRESS": lambda: f"{rng.choice(['anna', 'j.smith', 'lee.k', 'm_ortiz'])}{rng.randint(1, 99)}"
                                       f"@{rng.choice(EMAIL_DOMAINS)}",
              "PHONE_NUMBER": lambda: _phone(rng), "CREDIT_CARD": lambda: _card(rng), "IBAN_CODE": lambda: _iban(rng),
              "IP_ADDRESS": lambda: ".".join(str(rng.randint(1, 254)) for _ in range(4)), "US_SSN": lambda: _ssn(rng)}
    samples = []
    for _ in range(count):
        text, spans = "", []
        template = rng.choice(PII_TEMPLATES)
        while "{" in template:
            before, _, rest = template.partition("{")
            entity, _, template = rest.partition("}")
            text += before
            value = makers[entity]()
            spans.append({"entity_type": entity, "entity_value": value, "start_position": len(text),
                          "end_position": len(text) + len(value)})
            text += value
        samples.append({"full_text": text + template, "spans": spans})
    path.write_text(json.dumps(samples, ensure_ascii=False, indent=1))


def _phone(rng: random.Random) -> str:
    area, exchange, line = rng.randint(201, 989), rng.randint(201, 989), rng.randint(1000, 9999)
    return rng.choice([f"({area}) {exchange}-{line}", f"{area}-{exchange}-{line}", f"+1 {area} {exchange} {line}"])


def _card(rng: random.Random) -> str:
    body = "4" + "".join(rng.choice("0123456789") for _ in range(14))
    number = body + next(d for d in "0123456789" if luhn_valid(body + d))
    return rng.choice([number, " ".join(number[i:i + 4] for i in range(0, 16, 4)),
                       "-".join(number[i:i + 4] for i in range(0, 16, 4))])


def _iban(rng: random.Random) -> str:
    """A German IBAN: bank code and account, check digits by ISO 7064 mod 97-10."""
    bban = "".join(rng.choice("0123456789") for _ in range(18))
    check = 98 - int(bban + "131400") % 97  # D=13, E=14, then "00"
    iban = f"DE{check:02d}{bban}"
    return rng.choice([iban, " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))])


def _ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
