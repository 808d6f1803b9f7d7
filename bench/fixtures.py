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
- a Chinese BEIR set made the same way from Chinese entities, with a train split beside the
  test one (queries-train.jsonl, qrels/train.tsv), laid out like ../shared's CMRC 2018 set;
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
from tests.documents import Section, write_docx, write_pdf, write_table_pdf

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
CHINESE_REGIONS = ["青岚", "白沙湾", "北原", "盐湖", "松岭", "东野"]
CHINESE_SYLLABLES = ["安", "宁", "清", "远", "明", "泉", "华", "林", "云", "石", "岳", "平", "川", "霖", "嘉"]
CHINESE_KINDS = {
    "城镇": (["毛纺厂", "盐沼", "钟楼", "苹果园", "玻璃作坊"], ["灯笼", "鲱鱼", "鸣钟", "风筝"],
             ["{name}是{region}的一座集镇，建于{year}年。",
              "这座城镇以{trait}闻名，每年都有一场{detail}节。",
              "{later}年的洪水过后，旧港口得到重建，不久铁路也通到了这里。",
              "{name}的居民大多从事农业、贸易或与{trait}有关的工作。"]),
    "作曲家": (["合唱交响曲", "弦乐四重奏", "民歌改编", "管风琴前奏曲", "喜歌剧"],
               ["灯塔看守人", "盐业贸易", "冬日旅程", "消失的河流"],
               ["{name}是一位作曲家，{year}年生于{region}。",
                "人们记得{name}的{trait}，以及一部关于{detail}的歌剧。",
                "在首都求学之后，{name}于{later}年回到家乡的音乐学校任教。",
                "这些{trait}的录音直到作曲家去世多年后才首次发行。"]),
    "河流": (["鳟鱼垂钓", "水磨", "石桥", "春汛", "芦苇荡"], ["水獭", "驳船", "冰上集市", "柳条篮"],
             ["{name}河是{region}的一条河流，长约{length}公里。",
              "这条河以{trait}著称，两岸以{detail}闻名。",
              "{year}年，一条运河把{name}河与大海连接起来。",
              "自{later}年起，{name}河上游河谷成为自然保护区。"]),
    "足球俱乐部": (["青训学院", "木制看台", "杯赛奇迹", "德比大战", "绿色球衣"],
                   ["一座旧煤矿", "一家啤酒厂", "一座铁路工厂", "一支渔船队"],
                   ["{name}足球俱乐部来自{region}，成立于{year}年。",
                    "俱乐部以{trait}闻名，最初由{detail}的工人创办。",
                    "它在{later}年赢得地区联赛冠军，主场是{name}路球场。",
                    "{name}的球迷至今还在唱关于{trait}的歌。"]),
    "软件公司": (["数据库工具", "会计软件", "地图服务", "编译器", "游戏"],
                 ["气象数据", "航运物流", "学校课表", "图书馆目录"],
                 ["{name}系统是一家位于{region}的软件公司，成立于{year}年。",
                  "公司以{trait}和一款用于{detail}的产品闻名。",
                  "公司于{later}年迁入新办公室，员工约{length}人。",
                  "{name}系统公开了部分{trait}的源代码。"]),
}
EMAIL_DOMAINS = ["example.org", "mail.example.com", "corp.example.net"]


@dataclass(frozen=True)
class Wording:
    """One language's words for the generated entities and the queries about them."""

    regions: list[str]
    syllables: list[str]  # a name is two or three of them
    kinds: dict[str, tuple[list[str], list[str], list[str]]]  # kind: (traits, details, sentence templates)
    kind_query: str       # asks for a kind of entity in a region known for a trait
    name_query: str       # asks about one entity by its name
    separator: str        # between sentences


ENGLISH = Wording(REGIONS, SYLLABLES, KINDS, "{kind} in {region} known for {trait}", "{name} {kind}", " ")
CHINESE = Wording(CHINESE_REGIONS, CHINESE_SYLLABLES, CHINESE_KINDS, "{region}有哪些以{trait}闻名的{kind}？",
                  "{name}是哪里的{kind}？", "")


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
    """Where a run's inputs are: a documents folder, a BEIR set folder, a PII sample file, a
    folder of table PDFs with their ground truth."""

    documents: Path
    beir: Path
    chinese_beir: Path
    pii_synth: Path
    tables: Path


def write_inputs(folder: Path, documents: int = 6, entities: int = 400, queries: int = 40, pii_samples: int = 150,
                 chinese_entities: int = 150, chinese_queries: int = 30, chinese_train_queries: int = 60,
                 seed: int = 9) -> Inputs:
    """All four inputs under `folder` (replaced if there)."""
    shutil.rmtree(folder, ignore_errors=True)
    rng = random.Random(seed)
    made = make_entities(entities, rng, ENGLISH)
    inputs = Inputs(folder / "documents", folder / "beir", folder / "beir-chinese", folder / "pii-synth.json",
                    folder / "tables")
    write_documents(inputs.documents, made, documents, rng)
    write_beir(inputs.beir, made, ENGLISH, queries, rng)
    write_pii_sample(inputs.pii_synth, pii_samples, rng)
    write_table_set(inputs.tables)
    write_beir(inputs.chinese_beir, make_entities(chinese_entities, rng, CHINESE), CHINESE, chinese_queries, rng,
               train=chinese_train_queries)
    return inputs


TABLE_ROWS = (("Region", "Sales 2023", "Sales 2024", "Growth"), ("North", "120", "131", "9%"),
              ("South", "95", "97", "2%"), ("East", "80", "92", "15%"), ("West", "60", "58", "-3%"))
_STRUCTURE = """<?xml version="1.0" encoding="UTF-8"?>
<document filename="{name}.pdf">
  <table id="1"><region id="1" page="1">
    {cells}
  </region></table>
</document>
"""


def write_table_set(folder: Path) -> Path:
    """A table set in the ICDAR 2013 layout (NAME.pdf, NAME-str.xml): pages with TABLE_ROWS
    framed cell by cell (which the peer reads too), under booktabs rules and unruled, each cell
    in the ground truth."""
    folder.mkdir(parents=True, exist_ok=True)
    cells = "\n    ".join(f'<cell id="{r * 10 + c}" start-row="{r}" start-col="{c}"><content>{text}</content></cell>'
                          for r, row in enumerate(TABLE_ROWS) for c, text in enumerate(row))
    for rules in ("grid", "booktabs", "none"):
        name = f"sales-{rules}"
        write_table_pdf(folder / f"{name}.pdf", TABLE_ROWS, rules=rules)
        (folder / f"{name}-str.xml").write_text(_STRUCTURE.format(name=name, cells=cells))
    return folder


def make_entities(count: int, rng: random.Random, wording: Wording) -> list[Entity]:
    entities: list[Entity] = []
    names: set[str] = set()
    while len(entities) < count:
        name = "".join(rng.choice(wording.syllables) for _ in range(rng.randint(2, 3))).capitalize()
        if name in names:
            continue
        names.add(name)
        kind = rng.choice(list(wording.kinds))
        traits, details, templates = wording.kinds[kind]
        region, trait = rng.choice(wording.regions), rng.choice(traits)
        fields = {"name": name, "region": region, "trait": trait,
                  "detail": rng.choice(details), "year": rng.randint(1650, 1950), "later": rng.randint(1951, 2020),
                  "length": rng.randint(20, 400)}
        sentences = [template.format(**fields) for template in templates[:2]]
        sentences += rng.sample([template.format(**fields) for template in templates[2:]], rng.randint(1, 2))
        entities.append(Entity(f"entity-{len(entities):04d}", name, kind, region, trait,
                               wording.separator.join(sentences)))
    return entities


def write_documents(folder: Path, entities: list[Entity], count: int, rng: random.Random) -> None:
    """`count` reports (two PDFs to each Word file), eight entities each, and examples/'s PDF and DOCX."""
    folder.mkdir(parents=True)
    for number in range(count):
        members = entities[number * 8:(number + 1) * 8]
        region = members[0].region
        sections: list[Section] = []
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


def write_beir(folder: Path, entities: list[Entity], wording: Wording, count: int, rng: random.Random,
               train: int = 0) -> None:
    """The corpus, `count` test queries (queries.jsonl, qrels/test.tsv) and, where `train`,
    that many other queries as a train split (queries-train.jsonl, qrels/train.tsv)."""
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as corpus:
        for entity in entities:
            corpus.write(json.dumps({"_id": entity.key, "title": entity.name, "text": entity.text},
                                    ensure_ascii=False) + "\n")
    asked = rng.sample(entities, count + train)
    write_queries(folder, "test", "queries.jsonl", entities, asked[:count], wording)
    if train:
        write_queries(folder, "train", "queries-train.jsonl", entities, asked[count:], wording)


def write_queries(folder: Path, split: str, file: str, entities: list[Entity], asked: list[Entity],
                  wording: Wording) -> None:
    """One query per entity in `asked`: every other one names it, the rest ask for its kind in
    its region known for its trait."""
    queries, qrels = [], []
    for number, entity in enumerate(asked):
        query_id = f"{split}-q{number:03d}"
        fields = {"name": entity.name, "kind": entity.kind, "region": entity.region, "trait": entity.trait}
        if number % 2:
            queries.append({"_id": query_id, "text": wording.name_query.format(**fields)})
            qrels.append((query_id, entity.key, 2))
            continue
        queries.append({"_id": query_id, "text": wording.kind_query.format(**fields)})
        for other in entities:
            if other.kind == entity.kind and other.region == entity.region:
                qrels.append((query_id, other.key, 2 if other.trait == entity.trait else 1))
    (folder / file).write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries))
    (folder / "qrels" / f"{split}.tsv").write_text(
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
