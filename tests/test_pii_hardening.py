"""Masking holes found by issue 28: values written in a row (apart by a space, a comma, a slash,
a CJK character or a label) in text, headings, titles and sheet names (item 3); error texts
that quote a document (item 8); file and folder names, tags and folder metadata (item 9)."""

from __future__ import annotations

import re

import pytest

from ingest.pii import Masker, load_masker
from store import Settings


@pytest.fixture(scope="module")
def masker() -> Masker:
    return load_masker(Settings(collection="pii-hardening"))


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
