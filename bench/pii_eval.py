"""Personal data masking: precision and recall per entity type, and what it costs an ingest.

    python -m bench.pii_eval                      # the defaults below
    python -m bench.pii_eval --synth PATH --examples DIR --corpus DIR [--corpus-files N] [--json FILE]

1. presidio-synth-v2 (English, generated with Faker): EMAIL_ADDRESS, PHONE_NUMBER,
   CREDIT_CARD, IBAN_CODE, IP_ADDRESS, US_SSN.
2. A Chinese set generated here (seeded): valid resident IDs, mobiles, landlines, UnionPay
   cards, e-mails, social credit codes, passports and labelled names in Chinese and English
   sentences, among look-alikes that must stay (order numbers with a wrong check digit,
   card-like numbers failing Luhn, amounts, dates, versions, extensions).
3. Throughput: `examples/` and the corpus ingested with the real pipeline into a throwaway
   embedded PostgreSQL, the masking timed inside the run: characters per second and its
   share of the ingest time. Beside it, in the same run, the same texts analysed the way
   Presidio's BatchAnalyzerEngine is usually fed, one call per element, as the peer figure.

A gold value counts as found when masked spans of its type (or a type of its family, e.g.
CN_MOBILE for PHONE_NUMBER) cover every character of it; "masked" counts it covered by any
masked span, whatever the type, which is what matters for privacy. A masked span counts as
a false positive when it overlaps no gold value of its family.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.corpus import evenly_spread
from ingest.options import masker_options
from ingest.parsers import parse
from ingest.pii import Found, Masker, load_masker
from ingest.pii.checksums import cn_id_check_char, luhn_valid, org_code_check_char, uscc_check_char
from ingest.sources import MEDIA_TYPES, discover
from pgkb.settings import Settings
from store.embedded import stop_embedded_server

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SYNTH_TYPES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN")
CHINESE_TYPES = ("CN_ID_CARD", "CN_MOBILE", "CN_LANDLINE", "CN_BANK_CARD", "CN_SOCIAL_CREDIT_CODE",
                 "CN_PASSPORT", "EMAIL_ADDRESS", "CN_NAME")
# The types a masked span may carry and still count for a gold type.
FAMILIES = {
    "PHONE_NUMBER": {"PHONE_NUMBER", "CN_MOBILE", "CN_LANDLINE"},
    "CREDIT_CARD": {"CREDIT_CARD", "CN_BANK_CARD"},
    "CN_MOBILE": {"CN_MOBILE", "PHONE_NUMBER"},
    "CN_LANDLINE": {"CN_LANDLINE", "PHONE_NUMBER"},
    "CN_BANK_CARD": {"CN_BANK_CARD", "CREDIT_CARD"},
}


@dataclass
class Sample:
    text: str
    gold: list[tuple[int, int, str]]  # start, end, entity type


@dataclass
class Scores:
    found: Counter = field(default_factory=Counter)
    masked: Counter = field(default_factory=Counter)
    gold: Counter = field(default_factory=Counter)
    true_spans: Counter = field(default_factory=Counter)
    false_spans: Counter = field(default_factory=Counter)


def score(samples: list[Sample], predictions: list[list[Found]], types: tuple[str, ...]) -> Scores:
    scores = Scores()
    for sample, spans in zip(samples, predictions):
        for start, end, entity in sample.gold:
            if entity not in types:
                continue
            family = FAMILIES.get(entity, {entity})
            scores.gold[entity] += 1
            scores.found[entity] += _covered(start, end, [s for s in spans if s.entity in family])
            scores.masked[entity] += _covered(start, end, spans)
        for span in spans:
            for entity in types:
                if span.entity in FAMILIES.get(entity, {entity}):
                    hit = any(g in types and span.entity in FAMILIES.get(g, {g}) and span.start < e and s < span.end
                              for s, e, g in sample.gold)
                    (scores.true_spans if hit else scores.false_spans)[entity] += 1
                    break
    return scores


def _covered(start: int, end: int, spans: list[Found]) -> bool:
    covered: set[int] = set()
    for span in spans:
        covered.update(range(max(span.start, start), min(span.end, end)))
    return len(covered) == end - start


def score_table(scores: Scores, types: tuple[str, ...]) -> dict[str, dict]:
    """Per entity type: gold values, recall, share masked by any type, precision, false positives
    (None where there is nothing to divide by)."""
    table = {}
    for entity in types:
        gold = scores.gold[entity]
        predicted = scores.true_spans[entity] + scores.false_spans[entity]
        table[entity] = {"gold": gold, "recall": scores.found[entity] / gold if gold else None,
                         "masked": scores.masked[entity] / gold if gold else None,
                         "precision": scores.true_spans[entity] / predicted if predicted else None,
                         "false_positives": scores.false_spans[entity]}
    return table


def print_scores(title: str, table: dict[str, dict]) -> None:
    def share(value: float | None) -> str:
        return "nan" if value is None else f"{value:.3f}"

    print(f"\n{title}")
    print(f"  {'entity type':24s} {'gold':>5s} {'recall':>7s} {'masked':>7s} {'precision':>9s} {'false +':>7s}")
    for entity, row in table.items():
        print(f"  {entity:24s} {row['gold']:5d} {share(row['recall']):>7s} {share(row['masked']):>7s} "
              f"{share(row['precision']):>9s} {row['false_positives']:7d}")


# -- 1. presidio-synth-v2 ------------------------------------------------------------------

def load_synth(path: Path) -> list[Sample]:
    return [Sample(item["full_text"], [(s["start_position"], s["end_position"], s["entity_type"])
                                        for s in item["spans"]])
            for item in json.loads(path.read_text())]


# -- 2. the generated Chinese set ----------------------------------------------------------

AREAS = ["110101", "110105", "310101", "310115", "440305", "440106", "330106", "510104", "420102",
         "320102", "370202", "500103", "610113", "210102", "350203", "430104"]
MOBILE_PREFIXES = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155",
                   "156", "157", "158", "159", "166", "173", "175", "176", "177", "178", "180", "181", "182",
                   "183", "185", "186", "187", "188", "189", "191", "198", "199"]
LANDLINE_AREAS = ["010", "021", "020", "022", "023", "025", "027", "028", "0755", "0571", "0512", "0532"]
CARD_BINS = ["622202", "621700", "622848", "622588", "621483", "622609", "623058", "621226", "622700"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙朱胡郭林罗郑梁谢宋唐许韩冯邓曹彭曾"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红玉兰"
PINYIN = ["zhangwei", "wang.fang", "li_na", "liu.min", "chenjing", "yangli", "huang.qiang", "zhaolei",
          "wujun", "zhou.yang", "xu_yong", "sunyan", "zhujie", "hu.juan", "guotao"]
DOMAINS = ["qq.com", "163.com", "126.com", "sina.com", "foxmail.com", "example.com.cn", "corp-mail.cn", "gmail.com"]

TEMPLATES = [
    "申请人身份证号：{CN_ID_CARD}，联系电话：{CN_MOBILE}。",
    "如有疑问，请拨打客服热线{CN_LANDLINE}或发送邮件至{EMAIL_ADDRESS}。",
    "工资将于每月10日发放至员工本人的银行卡（卡号{CN_BANK_CARD}），请勿挂失。",
    "供应商：华东精密机械有限公司，统一社会信用代码：{CN_SOCIAL_CREDIT_CODE}，开户行：招商银行上海分行。",
    "出差人员需向行政部提供护照号码（{CN_PASSPORT}）及有效签证，截止日期为2024年4月30日。",
    "姓名：{CN_NAME}，手机：{CN_MOBILE}，邮箱：{EMAIL_ADDRESS}",
    "请于2024年3月15日前将报销单交至财务部，金额合计3,860.50元，联系人：{CN_NAME}，电话{CN_LANDLINE}。",
    "王经理的手机号是{CN_MOBILE}，有急事可以直接打给他。",
    "客户{CN_NAME}（身份证号码{CN_ID_CARD}）于2023年11月8日办理了开户手续。",
    "收款账户：{CN_BANK_CARD}，户名：{CN_NAME}，开户行：中国工商银行北京分行。",
    "Please send the signed contract to {EMAIL_ADDRESS} or call {CN_MOBILE}.",
    "The applicant's resident ID card number is {CN_ID_CARD}; the copy is kept by HR.",
    "Salary is paid to the UnionPay card {CN_BANK_CARD} on the 10th of each month.",
    "Our Shanghai office can be reached by phone at {CN_LANDLINE} during working hours.",
    "Supplier: Huadong Precision Co., Ltd., unified social credit code {CN_SOCIAL_CREDIT_CODE}.",
    "Passport No. {CN_PASSPORT}, valid until 2031-05-20, issued in Beijing.",
    # Values without a label or context word, as they also occur.
    "附件中列出了{CN_ID_CARD}等三人的信息，请尽快核实。",
    "他把{CN_MOBILE}写在了会议纪要的最后一页。",
    "已于昨日转账至{CN_BANK_CARD}，请查收。",
    "{CN_NAME}的档案已移交档案室。",
    "Reference {CN_PASSPORT} was attached to the visa application.",
    # Look-alikes only: nothing here is personal data.
    "订单编号{ORDER_ID}已于2024-05-06发货，快递单号{TRACKING}，金额13800138000元为年度合同总额。",
    "本制度自2024年1月1日起施行，版本号V2.3.1，文件编号HR-2024-017，会议室预订请拨分机8021。",
    "对账发现卡号{BAD_CARD}校验失败，请核对后重新提交，本月共处理1,234,567.89元。",
    "Invoice 2024-00123 totals CNY 15,800.00 and is due on 2024-06-30; release 10.2.0.1 fixes the export.",
]


def generate_chinese(count: int, seed: int) -> list[Sample]:
    rng = random.Random(seed)
    makers = {
        "CN_ID_CARD": lambda: _resident_id(rng), "CN_MOBILE": lambda: _mobile(rng),
        "CN_LANDLINE": lambda: _landline(rng), "CN_BANK_CARD": lambda: _bank_card(rng),
        "CN_SOCIAL_CREDIT_CODE": lambda: _social_credit_code(rng), "CN_PASSPORT": lambda: _passport(rng),
        "EMAIL_ADDRESS": lambda: f"{rng.choice(PINYIN)}{rng.randint(1, 999)}@{rng.choice(DOMAINS)}",
        "CN_NAME": lambda: rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2))),
    }
    decoys = {
        "ORDER_ID": lambda: _resident_id(rng, valid=False), "TRACKING": lambda: _digits(rng, 12),
        "BAD_CARD": lambda: _bank_card(rng, valid=False),
    }
    samples = []
    for _ in range(count):
        template = rng.choice(TEMPLATES)
        text, gold = "", []
        for literal, slot, _, _ in string.Formatter().parse(template):
            text += literal
            if slot is None:
                continue
            value = makers[slot]() if slot in makers else decoys[slot]()
            if slot in makers:
                gold.append((len(text), len(text) + len(value), slot))
            text += value
        samples.append(Sample(text, gold))
    return samples


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _resident_id(rng: random.Random, valid: bool = True) -> str:
    born = f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    if valid and rng.random() < 0.1:  # the first-generation form: 15 digits, no check digit
        return rng.choice(AREAS) + born[2:] + _digits(rng, 3)
    body = rng.choice(AREAS) + born + _digits(rng, 3)
    check = cn_id_check_char(body)
    if not valid:
        check = rng.choice([c for c in "0123456789X" if c != check])
    return body + check


def _mobile(rng: random.Random) -> str:
    digits = rng.choice(MOBILE_PREFIXES) + _digits(rng, 8)
    return rng.choice([digits, f"{digits[:3]} {digits[3:7]} {digits[7:]}", f"{digits[:3]}-{digits[3:7]}-{digits[7:]}",
                       f"+86 {digits}", f"+86-{digits[:3]}-{digits[3:7]}-{digits[7:]}"])


def _landline(rng: random.Random) -> str:
    area = rng.choice(LANDLINE_AREAS)
    local = str(rng.randint(2, 8)) + _digits(rng, 7 if len(area) == 3 else rng.choice([6, 7]))
    head, tail = local[:-4], local[-4:]
    return rng.choice([f"{area}-{local}", f"({area}){head} {tail}", f"{area}-{head} {tail}",
                       f"+86 {area[1:]} {head} {tail}"])


def _bank_card(rng: random.Random, valid: bool = True) -> str:
    body = rng.choice(CARD_BINS) + _digits(rng, rng.choice([9, 12]))
    check = next(d for d in string.digits if luhn_valid(body + d) == valid)
    number = body + check
    return number if rng.random() < 0.5 else " ".join(number[i:i + 4] for i in range(0, len(number), 4))


def _social_credit_code(rng: random.Random) -> str:
    organisation = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(8))
    body = "91" + rng.choice(AREAS) + organisation + org_code_check_char(organisation)
    return body + uscc_check_char(body)


def _passport(rng: random.Random) -> str:
    return rng.choice([f"E{_digits(rng, 8)}", f"E{rng.choice('ABCDEFGHJK')}{_digits(rng, 7)}"])


# -- 3. throughput within an ingest ----------------------------------------------------------

class TimedMasker:
    """The masker, timed: what the ingest spends in masking and how many characters it saw."""

    def __init__(self, masker: Masker):
        self.masker, self.policy = masker, masker.policy
        self.seconds, self.chars = 0.0, 0

    def mask_texts(self, texts):  # file names, tags and error texts: not the documents' masking
        return self.masker.mask_texts(texts)

    def unfound(self):  # the entities no installed model finds, for the run's summary
        return self.masker.unfound()

    def mask_document(self, document) -> dict[str, int]:
        self.chars += sum(len(e.text) for e in document.elements)
        started = time.perf_counter()
        try:
            return self.masker.mask_document(document)
        finally:
            self.seconds += time.perf_counter() - started


def measure_ingest(label: str, folder: Path, files: int | None, masker: Masker, embedder, data_dir: Path) -> dict:
    from ingest import ingest

    source = folder
    if files:  # a sample of the folder's files spread over their sizes, linked into a folder of its own
        chosen = evenly_spread([p for p in discover(folder) if p.suffix.lower() in MEDIA_TYPES], files)
        source = Path(tempfile.mkdtemp(prefix="pgkb-pii-sample-"))
        for path in chosen:
            (source / path.relative_to(folder.resolve()).as_posix().replace("/", "_")).symlink_to(path)
    timed = TimedMasker(masker)
    report = ingest(source, Settings(data_dir=data_dir, collection=f"pii-bench-{label}", follow_links=True),
                    embedder=embedder, masker=timed)  # the sample's links lead out of its folder
    # The peer: the same element texts analysed one Presidio call per element.
    texts: list[str] = []
    for path in discover(source):
        if path.suffix.lower() in MEDIA_TYPES:
            try:
                texts.extend(e.text for e in parse(path, MEDIA_TYPES[path.suffix.lower()]).elements)
            except Exception:  # files the ingest reported as failed
                continue
    started = time.perf_counter()
    for text in texts:
        masker.find([text])
    per_element = time.perf_counter() - started
    ours, peer = timed.chars / timed.seconds, sum(map(len, texts)) / per_element
    print(f"  {label:10s} {report.count('ingested'):5d} {timed.chars:12,d} {report.seconds:9.1f} "
          f"{timed.seconds:8.2f} {timed.seconds / report.seconds:7.1%} {ours:12,.0f} {peer:14,.0f} {ours / peer:6.1f}x")
    return {"folder": str(folder), "files": report.count("ingested"), "characters": timed.chars,
            "ingest_seconds": report.seconds, "mask_seconds": timed.seconds,
            "share_of_ingest": timed.seconds / report.seconds, "mask_chars_per_second": ours,
            "per_element_chars_per_second": peer, "speedup_vs_per_element": ours / peer}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synth", type=Path, default=SHARED / "eval" / "pii" / "presidio-synth-v2.json")
    parser.add_argument("--examples", type=Path, default=ROOT / "examples")
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus")
    parser.add_argument("--corpus-files", type=int, help="ingest a sample of this many corpus files, spread over "
                                                         "their sizes")
    parser.add_argument("--chinese-samples", type=int, default=600)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--skip-ingest", action="store_true", help="precision and recall only")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    masker = load_masker(masker_options(Settings(collection="pii-bench")))
    print(f"policy: threshold {masker.policy.threshold}, NER models loaded for: "
          f"{', '.join(masker.ner_languages) or 'none (pattern and checksum recognizers only)'}")

    synth = load_synth(args.synth)
    # One analyzer call per sample: each is a document of its own.
    results: dict = {"synth": {"path": str(args.synth), "samples": len(synth), "types": score_table(
        score(synth, [masker.find([s.text])[0] for s in synth], SYNTH_TYPES), SYNTH_TYPES)}}
    print_scores(f"presidio-synth-v2 ({len(synth)} samples, {args.synth})", results["synth"]["types"])
    chinese = generate_chinese(args.chinese_samples, args.seed)
    results["chinese"] = {"samples": len(chinese), "seed": args.seed, "types": score_table(
        score(chinese, [masker.find([s.text])[0] for s in chinese], CHINESE_TYPES), CHINESE_TYPES)}
    print_scores(f"generated Chinese set ({len(chinese)} samples, seed {args.seed})", results["chinese"]["types"])

    if not args.skip_ingest:
        from embedding import load_embedder

        embedder = load_embedder()
        print("\nmasking within ingest (real pipeline, embedded PostgreSQL, CPU)")
        print(f"  {'folder':10s} {'files':>5s} {'characters':>12s} {'ingest s':>9s} {'mask s':>8s} {'share':>7s} "
              f"{'mask chars/s':>12s} {'per-element c/s':>14s} {'speedup':>7s}")
        with tempfile.TemporaryDirectory(prefix="pgkb-pii-bench-") as data_dir:
            Path(data_dir).chmod(0o755)  # as root, the embedded PostgreSQL runs as a user that must reach it
            results["ingest"] = {
                "examples": measure_ingest("examples", args.examples, None, masker, embedder, Path(data_dir)),
                "corpus": measure_ingest("corpus", args.corpus, args.corpus_files, masker, embedder, Path(data_dir)),
            }
            stop_embedded_server(Path(data_dir))  # before its folder goes
    if args.json:
        args.json.write_text(json.dumps({**results, "date": time.strftime("%Y-%m-%d")}, indent=2))


if __name__ == "__main__":
    main()
