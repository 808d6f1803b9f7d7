"""Masking holes found by issue 28: values written in a row (apart by a space, a comma, a slash,
a CJK character or a label) in text, headings, titles and sheet names (item 3); error texts
that quote a document (item 8); file and folder names, tags and folder metadata (item 9)."""

from __future__ import annotations

import json
import logging
import re
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ingest.options import masker_options
from ingest.pii import Masker, OutputMasker, load_masker
from ingest.pii.checksums import cn_id_check_char, luhn_valid
from pgkb.settings import Settings
from store import resolve_url
from tests.documents import write_docx, write_xlsx


@pytest.fixture(scope="module")
def masker() -> Masker:
    return load_masker(masker_options(Settings(collection="pii-hardening", pii_urls="mask")))


def _resident_id(body17: str) -> str:
    return body17 + cn_id_check_char(body17)


def _card(body: str) -> str:
    return body + next(d for d in "0123456789" if luhn_valid(body + d))


# -- item 3: every recognizer, next to neighbours of every kind -----------------------------

VALUES = {
    "CN_ID_CARD": ["110101199003070062", "11010519491231002X"],
    "CN_MOBILE": ["13912340006", "139 1234 0006", "+86 139-1234-0006"],
    "CN_BANK_CARD": ["6222021234560000014", "6222 0212 3456 0000 014"],
    "CN_LANDLINE": ["010-65529988", "(0755) 8888 1234"],
    "CN_SOCIAL_CREDIT_CODE": ["91350100M000100Y43"],
    "EMAIL_ADDRESS": ["zhang.wei@corp-mail.cn"],
    "CREDIT_CARD": ["4539148803436467", "4539 1488 0343 6467"],
    "IBAN_CODE": ["GB82WEST12345698765432"],
    "IP_ADDRESS": ["203.0.113.77"],
    "US_SSN": ["536-90-4399"],
    "PHONE_NUMBER": ["+44 20 7946 0958"],
    "URL": ["https://wiki.example.org/u/7f3k9q2"],
}
# Another value in the row: an ID before, a mobile after (the issue's "张三 <ID> <mobile> <card>").
BEFORE, AFTER = "110101199003070302", "13912340030"
SEPARATORS = [" ", ",", "，", "/", "、", ";", "；", "|", "\t", "\u3000", ", ", " / ", "_", "-", ":", "：", "\n"]
FULL_WIDTH = {c: c + 0xFEE0 for c in range(0x21, 0x7F)}


def _rows(value: str) -> list[str]:
    """The value among neighbours of every kind; letters glued to it only where the value has
    none itself (an e-mail address or an IBAN would just grow)."""
    rows = [f"张三{sep}{value}{sep}{AFTER}" for sep in SEPARATORS]
    rows += [f"{BEFORE}{sep}{value}{sep}张三" for sep in SEPARATORS]
    rows += [f"客户档案{value}备注", f"（{value}）", f"「{value}」", f"【{value}】", f"<td>{value}</td>",
             f"客户，{value.translate(FULL_WIDTH)}，张三"]
    if not re.search(r"[A-Za-z]", value):
        rows += [f"ID{value}", f"{value}abc", f"Sheet{value}", f"A{value}B", f"tel{value}x"]
    return rows


@pytest.mark.parametrize("entity, value", [(e, v) for e, values in VALUES.items() for v in values],
                         ids=[f"{e}-{v}" for e, values in VALUES.items() for v in values])
def test_a_value_in_a_row_is_masked_whatever_its_neighbours(masker, entity, value):
    rows = _rows(value)
    masked, _ = masker.mask_texts(rows)
    for row, out in zip(rows, masked):
        shown = value.translate(FULL_WIDTH) if value.translate(FULL_WIDTH) in row else value
        assert shown not in out and f"<{entity}>" in out, (row, out)
    # The neighbouring values are masked as well, each alone.
    for row, out in zip(rows, masked):
        assert BEFORE not in out and AFTER not in out, (row, out)


def test_the_issue_rows(masker):
    rows = ["张三 110101199003070062 13912340006 6222021234560000014",
            "110101199003070062,13912340006,6222021234560000014",
            "110101199003070062，13912340006，6222021234560000014",
            "110101199003070062/13912340006/6222021234560000014",
            "客户档案 110101199003070062 13912340006"]
    for out in masker.mask_texts(rows)[0]:
        assert not re.search(r"\d{5}", out), out
    assert masker.mask_texts([rows[0]])[0] == ["张三 <CN_ID_CARD> <CN_MOBILE> <CN_BANK_CARD>"]


LOOK_ALIKES = [
    "commit a3f13912345678b9e0 and uuid 5f0e13912340006c-1d2b",   # hex: letters after digits
    "pointer 0x13912345678 freed",
    "卡号6214 0945 5874 7366 920已作废",                             # a 19-digit card failing Luhn
    "文件编号HR-2024-017，会议室预订请拨分机8021。",
    "合同金额13800138000元，总价¥13912345678，另付1,380,013,800.00元，单价13912345678.50",
    "订单 113912340006 与 1391234000612 的差额",                      # digits glued to digits
    "sheet1 2024-03-15, ref 20240315-0001, v2.13.0",
]


@pytest.mark.parametrize("sentence", LOOK_ALIKES)
def test_codes_amounts_and_longer_numbers_are_left_alone(masker, sentence):
    assert masker.find([sentence])[0] == []


# -- item 8: error texts ---------------------------------------------------------------------

def test_an_error_text_is_masked_like_content(masker):
    import threading

    outputs = OutputMasker(lambda: masker, mask_keys=True, lock=threading.Lock())
    quoted = "parser error: ValueError: invalid literal for int() with base 10: '{}'"
    message = quoted.format("张三 110101199003070302 13912340030")
    assert outputs.text(message) == quoted.format("张三 <CN_ID_CARD> <CN_MOBILE>")
    assert OutputMasker(None, mask_keys=True, lock=threading.Lock()).text(message) == message


# -- end to end: a folder seeded in names, headings, titles, sheets, tags and errors -------------

ID_A, ID_B, ID_C = (_resident_id(body) for body in ("11010119900307041", "31010119851224052", "44030519770601063"))
MOBILE_A, MOBILE_B, MOBILE_C, MOBILE_D = "13712340071", "15812340082", "18612340093", "17712340014"
CARD_A, CARD_B = _card("622202123456000007"), _card("622848765432100008")
SEEDED = [ID_A, ID_B, ID_C, MOBILE_A, MOBILE_B, MOBILE_C, MOBILE_D, CARD_A, CARD_B]


def _malformed_xlsx(path: Path, cell: str) -> None:
    """A workbook whose numeric cell holds text: openpyxl's error quotes the cell."""
    write_xlsx(path.with_name("tmp.xlsx"), {"S": [["a", "b"], [1, 2]]})
    with zipfile.ZipFile(path.with_name("tmp.xlsx")) as source, zipfile.ZipFile(path, "w") as out:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"<v>1</v>", f"<v>{cell}</v>".encode())
            out.writestr(item, data)
    path.with_name("tmp.xlsx").unlink()


def _seeded_folder(root: Path) -> Path:
    folder = root / f"客户{MOBILE_D}"
    folder.mkdir(parents=True)
    (folder / "pgkb.toml").write_text(f'[metadata]\nowner = "张三 {ID_C}"\nphones = ["{MOBILE_C}"]\n')
    (folder / "rows.txt").write_text(f"张三 {ID_A} {MOBILE_A} {CARD_A}\n李四,{ID_B},{MOBILE_B},{CARD_B}\n"
                                     f"王五，{ID_B}，{MOBILE_B}\n赵六/{ID_A}/{MOBILE_A}\n")
    (folder / "heading.md").write_text(f"# 客户档案 {ID_A} {MOBILE_A}\n\n## 联系 {MOBILE_B},{CARD_B}\n\n"
                                       "正文。\n")
    write_docx(folder / "heading.docx", f"客户档案 {ID_B} {MOBILE_B}",
               [(1, f"档案 {ID_A}/{MOBILE_A}", ["正文。"])])
    write_xlsx(folder / "sheets.xlsx", {f"A{MOBILE_A}": [["姓名", "备注"], ["张三", "无"]],
                                        f"ID{ID_B}": [["a", "b"], ["c", "d"]]}, title=f"名单 {MOBILE_B} {ID_A}")
    (folder / f"张三_{ID_B}.txt").write_text("正文没有个人信息。\n")
    (folder / f"张三_{ID_B}.txt.meta.json").write_text(json.dumps({"card": CARD_A}))
    _malformed_xlsx(folder / "broken.xlsx", f"张三 {ID_C} {MOBILE_C}")
    return root


def _stored_texts(settings: Settings) -> list[tuple[str, str, str]]:
    engine = create_engine(resolve_url(settings))
    with engine.connect() as conn:
        columns = conn.execute(text(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND (data_type IN ('text', 'character varying', 'jsonb', 'json', "
            "'tsvector') OR udt_name IN ('_text', '_varchar'))")).all()
        stored = [(table, column, value) for table, column in columns
                  for (value,) in conn.execute(text(f'SELECT "{column}"::text FROM "{table}"')) if value is not None]
    engine.dispose()
    return stored


def test_nothing_seeded_in_rows_names_tags_or_errors_is_stored_printed_or_logged(
        settings, tmp_path, monkeypatch, capsys, caplog):
    from ingest import cli

    monkeypatch.setattr(cli, "configure_logging", lambda verbose: None)
    caplog.set_level(logging.DEBUG)
    root = _seeded_folder(tmp_path / "docs")
    report = tmp_path / "report.json"
    assert cli.main([str(root), "-c", settings.collection, "--data-dir", str(settings.data_dir), "-q",
                     "--pii-urls", "mask", "--tag", f"contact={MOBILE_D}",
                     "--report", str(report)]) == 1  # broken.xlsx fails
    output = capsys.readouterr()
    report_text = report.read_text(encoding="utf-8")
    stored = _stored_texts(settings)
    logged = "\n".join(r.getMessage() for r in caplog.records)

    assert any("<CN_ID_CARD>" in value for _, _, value in stored)  # the documents are there, masked
    assert "客户<CN_MOBILE>/张三_<CN_ID_CARD>.txt" in report_text
    assert "parser error" in report_text and "<CN_ID_CARD> <CN_MOBILE>" in report_text
    for value in SEEDED:
        leaks = [(table, column) for table, column, stored_value in stored if value in stored_value]
        assert not leaks, f"{value} stored in {leaks}"
        for where, shown in (("output", output.out + output.err), ("report", report_text), ("logs", logged)):
            assert value not in shown, f"{value} in the {where}"


def test_keys_are_stable_and_names_that_mask_alike_are_told_apart(settings, embedder, tmp_path):
    from ingest import ingest

    for mobile in ("13712340071", "15812340082"):
        (tmp_path / f"合同_{mobile}.txt").write_text(f"合同正文 {mobile[-4:]}。\n")
    (tmp_path / "other.txt").write_text("没有个人信息。\n")

    first = ingest(tmp_path, settings, embedder=embedder)
    assert sorted((f.key, f.outcome) for f in first.files) == [
        ("other.txt", "ingested"), ("合同_<CN_MOBILE>.txt", "failed"), ("合同_<CN_MOBILE>.txt", "ingested")]
    (failure,) = first.failed
    assert "masks to the key of another file (合同_<CN_MOBILE>.txt)" in failure.reason
    again = ingest(tmp_path, settings, embedder=embedder)
    assert sorted(f.outcome for f in again.files) == ["failed", "unchanged", "unchanged"]

    hashed = Settings(data_dir=settings.data_dir, collection=settings.collection + "-hash",
                      pii_operators="hash", pii_hash_key="k3y")
    keys = [f.key for f in ingest(tmp_path, hashed, embedder=embedder).files if f.outcome == "ingested"]
    assert len(keys) == 3 and all(re.fullmatch(r"合同_<CN_MOBILE:[0-9a-f]{12}>\.txt|other\.txt", k) for k in keys)

    kept = Settings(data_dir=settings.data_dir, collection=settings.collection + "-kept", pii_keys="keep")
    assert sorted(f.key for f in ingest(tmp_path, kept, embedder=embedder).files) == [
        "other.txt", "合同_13712340071.txt", "合同_15812340082.txt"]
    with pytest.raises(ValueError, match="PGKB_PII_KEYS must be mask or keep"):
        ingest(tmp_path, Settings(data_dir=settings.data_dir, collection=settings.collection, pii_keys="hide"),
               embedder=embedder)


def test_the_masker_loads_only_when_a_name_a_tag_or_a_text_needs_it(settings, embedder, masker, tmp_path,
                                                                    monkeypatch):
    import ingest.run as run
    from ingest import ingest

    (tmp_path / "notes.txt").write_text("没有个人信息。\n")
    loads = []
    monkeypatch.setattr(run, "load_masker", lambda s: loads.append(s) or masker)
    kept = Settings(data_dir=settings.data_dir, collection=settings.collection, pii_keys="keep")
    assert [f.outcome for f in ingest(tmp_path, kept, embedder=embedder).files] == ["ingested"]
    assert len(loads) == 1  # the document's text
    assert [f.outcome for f in ingest(tmp_path, kept, embedder=embedder).files] == ["unchanged"]
    assert len(loads) == 1  # real names, no tags: nothing to mask, nothing loaded (seconds saved)
    masked = Settings(data_dir=settings.data_dir, collection=settings.collection + "-masked")
    ingest(tmp_path, masked, embedder=embedder)
    assert [f.outcome for f in ingest(tmp_path, masked, embedder=embedder).files] == ["unchanged"]
    assert len(loads) == 3  # masked keys: the names are masked on every run
