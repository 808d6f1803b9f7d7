"""Personal data masking: the recognizers and their checksums, the policy, the optional NER
model, and a document seeded with every entity type ingested end to end."""

from __future__ import annotations

import logging
import re
from dataclasses import replace

import pytest
from sqlalchemy import create_engine, text

from ingest import ingest
from ingest.options import masker_options
from ingest.pii import Masker, MaskPolicy, load_masker
from ingest.pii.checksums import cn_id_check_char, cn_id_valid, luhn_valid, uscc_valid
from pgkb.settings import Settings
from store import resolve_url
from tests.documents import write_docx, write_pdf


@pytest.fixture(scope="module")
def masker() -> Masker:
    """The default masker (no spaCy model is installed here) that masks URLs too: built once, it
    takes a second."""
    return load_masker(masker_options(Settings(collection="pii-tests", pii_urls="mask")))


def found(masker: Masker, text_: str) -> list[tuple[str, str]]:
    return [(span.entity, text_[span.start:span.end]) for span in masker.find([text_])[0]]


# -- checksums -----------------------------------------------------------------------------

def test_checksums_of_known_identifiers():
    assert cn_id_check_char("11010519491231002") == "X"  # GB 11643's own example
    assert cn_id_valid("11010519491231002X") and cn_id_valid("11010519491231002x")
    assert not cn_id_valid("110105194912310021")          # wrong check character
    assert cn_id_valid("110105491231002")                 # 15 digits: born 1949-12-31
    assert not cn_id_valid("110105491332002")             # month 13
    assert luhn_valid("4539148803436467") and not luhn_valid("4539148803436468")
    assert uscc_valid("91350100M000100Y43") and not uscc_valid("91350100M000100Y44")
    assert not uscc_valid("91350100M000101Y43")           # organisation code check fails


# -- Chinese recognizers, in Chinese and in English text -----------------------------------

CHINESE = [
    ("CN_ID_CARD", "11010519491231002X", "员工身份证号码：{}，请妥善保管。",
     "Her resident ID card number is {} as printed."),
    ("CN_ID_CARD", "110105491231002", "老身份证号{}已停用。", "The old ID card number {} is no longer valid."),
    ("CN_MOBILE", "13912345678", "有事请打我手机{}。", "Call my mobile {} after six."),
    ("CN_MOBILE", "+86 139-1234-5678", "联系方式：{}（微信同号）", "Reach him on {} in Shanghai."),
    ("CN_LANDLINE", "010-65529988", "办公室电话：{}，传真同号。", "Our Beijing office line is {}."),
    ("CN_LANDLINE", "(0755) 8888 1234", "深圳总部座机{}", "Shenzhen headquarters, tel. {}"),
    ("CN_BANK_CARD", "6222021234567890128", "工资卡卡号{}，开户行工商银行。", "Salary goes to card {} monthly."),
    ("CN_BANK_CARD", "6228 4887 6543 2109", "请转账至{}。", "Transfer to UnionPay {} please."),
    ("CN_SOCIAL_CREDIT_CODE", "91350100M000100Y43", "统一社会信用代码：{}", "The supplier's social credit code is {}."),
    ("CN_PASSPORT", "E47382916", "护照号码{}，有效期至2031年。", "Passport number {} expires in 2031."),
    ("CN_PASSPORT", "EA1234567", "新版护照号：{}", "New passport: {}"),
    ("EMAIL_ADDRESS", "zhang.wei@corp-mail.cn", "请发邮件至{}确认。", "Write to {} to confirm."),
    ("CN_NAME", "欧阳娜娜", "联系人：{}，电话见附件。", "Name: {}, department: finance."),
]


@pytest.mark.parametrize("entity, value, chinese, english", CHINESE, ids=[f"{c[0]}-{c[1]}" for c in CHINESE])
def test_chinese_recognizers_find_valid_values_in_chinese_and_english_text(masker, entity, value, chinese, english):
    for sentence in (chinese.format(value), english.format(value)):
        assert (entity, value) in found(masker, sentence), sentence


def test_full_width_digits_are_read_as_digits(masker):
    sentence = "手机：１３９１２３４５６７８，邮箱ｌｉ＠ｅｘａｍｐｌｅ．ｃｏｍ"
    assert found(masker, sentence) == [("CN_MOBILE", "１３９１２３４５６７８"),
                                       ("EMAIL_ADDRESS", "ｌｉ＠ｅｘａｍｐｌｅ．ｃｏｍ")]


ENGLISH = [
    ("EMAIL_ADDRESS", "jane.doe@example.com", "Send it to {} today.", "请发送至{}。"),
    ("PHONE_NUMBER", "+1-212-555-0187", "Desk: {}", "纽约办公室{}"),
    ("PHONE_NUMBER", "(415) 555-2671", "Call {} for help.", "旧金山：{}"),
    ("PHONE_NUMBER", "0490 75 40 81", "Phone: {}", "电话：{}"),  # a national form: needs its context word
    ("CREDIT_CARD", "4539 1488 0343 6467", "Paid with card {}.", "信用卡{}已扣款。"),
    ("IBAN_CODE", "GB82WEST12345698765432", "IBAN {} for the refund.", "退款账户{}"),
    ("IP_ADDRESS", "203.0.113.77", "The request came from {}.", "请求来自{}。"),
    ("US_SSN", "536-90-4399", "SSN {} on file.", "社会安全号{}"),
    ("URL", "https://wiki.example.org/people/jane", "Her page is {} now.", "个人主页{}"),
]


@pytest.mark.parametrize("entity, value, english, chinese", ENGLISH, ids=[e[0] for e in ENGLISH])
def test_presidio_recognizers_run_offline_in_english_and_chinese_text(masker, entity, value, english, chinese):
    for sentence in (english.format(value), chinese.format(value)):
        assert (entity, value) in found(masker, sentence), sentence


NOT_PERSONAL = [
    "订单号110105194912310021已发货。",                     # an ID's shape, wrong check digit
    "Order 110105194912310021 was shipped on Monday.",
    "卡号6222021234567891校验失败，请重新输入。",             # 16 digits failing Luhn
    "Card 4539 1488 0343 6468 was declined.",
    "会议定于2024-03-15 14:30举行，生效日期20240315。",        # dates
    "Signed on 15.03.2024, filed 2024/03/15, due 2024-06-30.",
    "合同金额13800138000元，总价¥13912345678，另付1,380,013,800.00元。",  # amounts
    "Revenue was $1,234,567.89, up 13.8% on 2023.",
    "版本 10.2.0.1 已发布，请升级到 v2.13.0。",                # versions
    "Upgrade to version 10.15.7.2; see section 10.1.2.3 and release 4.1.12.",
    "文件编号HR-2024-017，会议室预订请拨分机8021。",
]


@pytest.mark.parametrize("sentence", NOT_PERSONAL)
def test_look_alikes_are_left_alone(masker, sentence):
    assert found(masker, sentence) == []


# -- the policy ----------------------------------------------------------------------------

def test_operators_replace_redact_and_keyed_hash(masker):
    sentence = "手机 138 0013 8000，another copy 13800138000, e-mail li.lei@example.com."
    replaced, counts = masker.mask_texts([sentence])
    assert replaced == ["手机 <CN_MOBILE>，another copy <CN_MOBILE>, e-mail <EMAIL_ADDRESS>."]
    assert counts == {"CN_MOBILE": 2, "EMAIL_ADDRESS": 1}

    redacted, _ = Masker(masker.analyzer, MaskPolicy.parse(operators="replace,EMAIL_ADDRESS=redact"),
                         scope="a").mask_texts([sentence])
    assert redacted == ["手机 <CN_MOBILE>，another copy <CN_MOBILE>, e-mail ."]

    policy = MaskPolicy.parse(operators="hash", hash_key="k3y")
    hashed = Masker(masker.analyzer, policy, scope="a").mask_texts([sentence])[0][0]
    tokens = re.findall(r"<CN_MOBILE:([0-9a-f]{12})>", hashed)
    assert len(tokens) == 2 and tokens[0] == tokens[1]  # the same number, however it is written
    assert "8000" not in hashed and "li.lei" not in hashed
    other_collection = Masker(masker.analyzer, policy, scope="b").mask_texts([sentence])[0][0]
    assert tokens[0] not in other_collection
    other_key = Masker(masker.analyzer, MaskPolicy.parse(operators="hash", hash_key="other"), scope="a")
    assert tokens[0] not in other_key.mask_texts([sentence])[0][0]


def test_entity_selection_threshold_and_bad_settings(masker):
    sentence = "See https://wiki.example.org/u/li or mail li.lei@example.com; passport E47382916."
    no_urls = Masker(masker.analyzer, MaskPolicy.parse(entities="all,-URL"), scope="a")
    assert no_urls.mask_texts([sentence])[0] == [
        "See https://wiki.example.org/u/li or mail <EMAIL_ADDRESS>; passport <CN_PASSPORT>."]
    # The passport scores 0.75 with its context word: a stricter threshold keeps it.
    strict = Masker(masker.analyzer, MaskPolicy.parse(threshold=0.8), scope="a")
    assert "E47382916" in strict.mask_texts([sentence])[0][0]
    with pytest.raises(ValueError, match="PGKB_PII_HASH_KEY"):
        MaskPolicy.parse(operators="replace,EMAIL_ADDRESS=hash")
    with pytest.raises(ValueError, match="'NAME'"):
        MaskPolicy.parse(entities="EMAIL_ADDRESS,NAME")
    with pytest.raises(ValueError, match="unknown PII operator"):
        MaskPolicy.parse(operators="scramble")
    with pytest.raises(ValueError, match="pii must be on or off"):
        Settings.from_env({"PGKB_PII": "maybe"})


# -- offline: optional spaCy models --------------------------------------------------------

def test_an_absent_spacy_model_is_one_log_line_and_no_download(caplog):
    caplog.set_level(logging.INFO)
    masker = load_masker(masker_options(Settings(collection="pii-tests",
                                                 pii_spacy_models="en:en_core_web_absent,zh:none_here_zh")))
    lines = [r.getMessage() for r in caplog.records if "spaCy" in r.getMessage()]
    assert len(lines) == 1 and "models en_core_web_absent (en) and none_here_zh (zh) are not installed" in lines[0]
    assert masker.ner_languages == ()
    assert masker.mask_texts(["mail li.lei@example.com"])[0] == ["mail <EMAIL_ADDRESS>"]


def test_an_installed_spacy_model_switches_on_names_places_and_organisations(tmp_path):
    import spacy

    # A real spaCy pipeline on disk, its entities from rules: what an installed NER model gives.
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([
        {"label": "PERSON", "pattern": "Wang Fang"}, {"label": "GPE", "pattern": "Hangzhou"},
        {"label": "ORG", "pattern": "Acme Trading"}])
    nlp.to_disk(tmp_path / "ner-model")
    masker = load_masker(masker_options(Settings(collection="pii-tests",
                                                 pii_spacy_models=f"en:{tmp_path / 'ner-model'}")))
    assert masker.ner_languages == ("en",)
    masked, counts = masker.mask_texts(["Wang Fang moved to Hangzhou to join Acme Trading, tel. 13912345678."])
    assert masked == ["<PERSON> moved to <LOCATION> to join <ORGANIZATION>, tel. <CN_MOBILE>."]
    assert counts == {"PERSON": 1, "LOCATION": 1, "ORGANIZATION": 1, "CN_MOBILE": 1}


# -- end to end: nothing seeded reaches the database or the logs ---------------------------

SEEDED = {
    "CN_ID_CARD": "11010519491231002X", "CN_MOBILE": "13912345678", "CN_LANDLINE": "021-5888 9999",
    "CN_BANK_CARD": "6222021234567890128", "CN_SOCIAL_CREDIT_CODE": "91350100M000100Y43",
    "CN_PASSPORT": "E47382916", "CN_NAME": "欧阳娜娜", "EMAIL_ADDRESS": "wang.fang@corp-mail.cn",
    "PHONE_NUMBER": "+44 20 7946 0958", "CREDIT_CARD": "4539 1488 0343 6467",
    "IBAN_CODE": "GB82WEST12345698765432", "IP_ADDRESS": "203.0.113.77", "US_SSN": "536-90-4399",
    "URL": "https://wiki.example.org/u/7f3k9q2", "PERSON": "Lin Xiaoyu",
}


def _seeded_documents(folder):
    v = SEEDED
    write_docx(folder / "onboarding.docx", f"入职登记 {v['CN_MOBILE']}", [
        (1, f"联系人：{v['CN_NAME']}", [f"请发送材料至{v['EMAIL_ADDRESS']}，或致电{v['CN_LANDLINE']}。"]),
        (1, "证件与账户", [
            (("项目", "号码"), ("身份证", v["CN_ID_CARD"]), ("工资卡卡号", v["CN_BANK_CARD"]),
             ("护照号码", v["CN_PASSPORT"])),
            f"公司统一社会信用代码：{v['CN_SOCIAL_CREDIT_CODE']}。",
        ]),
        (2, f"Profile {v['URL']}", ["Mobile in China: " + v["CN_MOBILE"] + "; from abroad call " + v["PHONE_NUMBER"]]),
    ])
    import docx

    document = docx.Document(str(folder / "onboarding.docx"))
    document.core_properties.author = v["PERSON"]
    document.save(str(folder / "onboarding.docx"))
    write_pdf(folder / "payroll.pdf", f"Payroll for {v['EMAIL_ADDRESS']}", [
        (1, "Bank details", [f"Refunds go to IBAN {v['IBAN_CODE']}; the card on file is {v['CREDIT_CARD']}."]),
        (1, "Records", [f"SSN {v['US_SSN']}, last login from {v['IP_ADDRESS']}.",
                        (("Field", "Value"), ("身份证号码", v["CN_ID_CARD"]))]),
    ])


def _needles(value: str) -> set[str]:
    """The value as written, without its separators, and each long run of it that holds a
    digit: a leak in any form, a tsvector's separate lexemes included."""
    compact = re.sub(r"[\W_]", "", value)
    runs = [run for run in re.split(r"[\W_]+", value) if len(run) >= 5 and re.search(r"\d", run)]
    return {value.lower(), compact.lower(), *(run.lower() for run in runs)}


def test_seeded_document_leaves_no_personal_data_in_the_database_or_the_logs(
        settings, embedder, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    _seeded_documents(tmp_path)
    settings = replace(settings, pii_urls="mask")  # every seeded value, the profile's address too
    report = ingest(tmp_path, settings, embedder=embedder)
    assert report.count("ingested") == 2 and not report.failed

    engine = create_engine(resolve_url(settings))
    with engine.connect() as conn:
        columns = conn.execute(text(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND (data_type IN ('text', 'character varying', 'jsonb', 'json', "
            "'tsvector') OR udt_name IN ('_text', '_varchar'))"
        )).all()
        assert {("chunks", "text"), ("chunks", "tsv"), ("chunks", "section_path"), ("chunks", "metadata"),
                ("documents", "title"), ("documents", "metadata"), ("ingest_runs", "counts")} <= set(columns)
        stored = [(table, column, value) for table, column in columns
                  for (value,) in conn.execute(text(f'SELECT lower("{column}"::text) FROM "{table}"'))
                  if value is not None]
        texts = [v for _, _, v in stored]
        assert any("<cn_id_card>" in v for v in texts)  # the documents are there, masked
        for entity, value in SEEDED.items():
            for needle in _needles(value):
                leaks = [(t, c) for t, c, v in stored if needle in v]
                assert not leaks, f"{entity} found in {leaks}"

        counts = dict(conn.execute(text(
            "SELECT d.key, d.pii_counts FROM documents d JOIN collections c ON c.id = d.collection_id "
            "WHERE c.name = :name"), {"name": settings.collection}).all())
        run_counts = conn.execute(text(
            "SELECT r.counts FROM ingest_runs r JOIN collections c ON c.id = r.collection_id "
            "WHERE c.name = :name"), {"name": settings.collection}).scalar_one()
    engine.dispose()
    # (the title is both a metadata value and the first heading; a table is text and HTML.)
    assert counts["onboarding.docx"] == {
        "CN_MOBILE": 3, "CN_NAME": 1, "EMAIL_ADDRESS": 1, "CN_LANDLINE": 1, "CN_ID_CARD": 2, "CN_BANK_CARD": 2,
        "CN_PASSPORT": 2, "CN_SOCIAL_CREDIT_CODE": 1, "URL": 1, "PHONE_NUMBER": 1, "PERSON": 1,
    }
    assert {"EMAIL_ADDRESS", "IBAN_CODE", "CREDIT_CARD", "US_SSN", "IP_ADDRESS", "CN_ID_CARD"} <= set(
        counts["payroll.pdf"])
    assert run_counts["pii"] == dict(report.pii_counts())
    assert set(report.pii_counts()) == set(SEEDED)

    logged = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records).lower()
    assert logged  # DEBUG records were captured
    for entity, value in SEEDED.items():
        assert not any(needle in logged for needle in _needles(value)), f"{entity} in the logs"


def test_masking_off_stores_the_text_as_is(settings, embedder, tmp_path):
    (tmp_path / "note.md").write_text("# Contact\n\nMail wang.fang@corp-mail.cn or call 13912345678.\n")
    report = ingest(tmp_path, Settings(data_dir=settings.data_dir, collection=settings.collection, pii=False),
                    embedder=embedder)
    assert report.pii_counts() == {}
    engine = create_engine(resolve_url(settings))
    with engine.connect() as conn:
        stored = conn.execute(text(
            "SELECT ch.text FROM chunks ch JOIN collections c ON c.id = ch.collection_id WHERE c.name = :name"),
            {"name": settings.collection}).scalars().all()
    engine.dispose()
    assert any("13912345678" in t for t in stored)


def test_cli_flags_and_summary(settings, tmp_path, monkeypatch, capsys):
    from ingest import cli

    monkeypatch.setattr(cli, "configure_logging", lambda verbose: None)  # the test process keeps its logging
    (tmp_path / "note.md").write_text("# Contact\n\nMail wang.fang@corp-mail.cn, call 13912345678 or 13912345678.\n")
    where = [str(tmp_path), "-c", settings.collection, "--data-dir", str(settings.data_dir), "-q"]
    monkeypatch.setenv("PGKB_PII_HASH_KEY", "test-key")
    assert cli.main([*where, "--pii-operator", "replace,EMAIL_ADDRESS=hash", "--pii-threshold", "0.6"]) == 0
    assert "masked     3 personal data values (CN_MOBILE 2, EMAIL_ADDRESS 1)" in capsys.readouterr().out
    monkeypatch.delenv("PGKB_PII_HASH_KEY")
    assert cli.main([*where, "--pii-operator", "hash"]) == 2
    assert "PGKB_PII_HASH_KEY" in capsys.readouterr().err
    assert cli.main([*where, "--no-pii"]) == 0
    assert "personal data values" not in capsys.readouterr().out
