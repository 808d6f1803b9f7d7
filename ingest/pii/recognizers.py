"""The recognizers: Presidio's predefined ones for English-speaking data, and Chinese ones
with the checksums of their identifiers.

Every recognizer runs on Chinese and English text alike: a Chinese ID number turns up in
English correspondence and an e-mail address in a Chinese contract. Two things make
Presidio's patterns work in Chinese text, where words are not separated by spaces:

- regexes are compiled ASCII-only, so `\\b` falls between a CJK character and a digit
  ("手机13800138000") and `\\w` does not swallow the Chinese word before an e-mail address;
- our own patterns bound numbers with look-arounds on ASCII letters and digits.

A pattern's score says how sure its shape alone is. Shapes that ordinary numbers also take
score below the default threshold (0.5) and need a context word nearby ("身份证", "phone")
to count (engine.WindowContextEnhancer). A checksum that fails rejects the match outright.
"""

from __future__ import annotations

import re

import regex
import tldextract
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    SpacyRecognizer,
    UrlRecognizer,
    UsSsnRecognizer,
)

from .checksums import cn_id_valid, luhn_valid, uscc_valid
from .masker import NER_ENTITIES

FLAGS = regex.DOTALL | regex.MULTILINE | regex.IGNORECASE | regex.ASCII

# A score under the default threshold: the match counts only with a context word nearby.
NEEDS_CONTEXT = 0.3

# Where a number starts and ends. Glued to a digit, it is a stretch of a longer number; glued
# to letters that follow a digit themselves ("a3f9…", "0x…"), it is part of a code or a hash.
# Anything else is a neighbour, letters included: values written in a row, apart by a space,
# a comma, a slash, a CJK character or a label ("张三 1101… 139…", "a,b", "a/b", "ID1101…"),
# are each found. (A number starts with a digit, "(" or "+": tested first, the look-behinds
# run only where one can start.)
_START = r"(?=[0-9(+])(?<![0-9])(?<![0-9][A-Za-z]+)"
_END = r"(?![0-9])(?![A-Za-z]+[0-9])"
# Codes of letters and digits end where letters or digits do.
_ALNUM_START, _ALNUM_END = r"(?<![0-9A-Za-z])", r"(?![0-9A-Za-z])"
# A number after a currency sign or before a currency unit is an amount, and one next to a
# decimal point a part of one.
_NOT_AMOUNT_BEFORE = r"(?<![¥￥$€£])(?<![0-9]\.)"
_NOT_AMOUNT_AFTER = r"(?!\.[0-9]|\s?(?:元|万|亿|块|%|％|美元|RMB|CNY|USD))"
# A number written in groups ("6214 0945 5874 7366", "139 1234 5678") next to a short group
# of digits is one stretch of a longer grouped number, such as the first 16 digits of a
# mistyped card number "6214 0945 5874 7366 920". Written in one piece, or next to a long
# number (the ID before a mobile in "1101…0062 139 1234 5678"), it stands alone.
_NOT_AFTER_A_GROUP = r"(?:(?=[0-9]{5})|(?<!(?<![0-9A-Za-z])[0-9]{1,4}[ -]))"
_NOT_BEFORE_A_GROUP = r"(?:(?<=[0-9]{4}[0-9X])|(?![ -][0-9]{1,4}(?![0-9A-Za-z])))"
# A shape that counts only next to a context word is, after a hyphen that follows letters or
# digits or before a hyphen and digits, one part of a code ("文件编号HR-2024-017，请拨分机"),
# whatever the words around it; a label after a hyphen ("490 1693-Office") is a neighbour.
_NOT_IN_A_CODE = (r"(?<![0-9A-Za-z]-)", r"(?!-[0-9])")


def _number(body: str, alone: bool = True, weak: bool = False) -> str:
    """`body` bounded as a whole number: not glued to digits or to a code, not an amount,
    (`alone`) not one stretch of a longer run of digit groups, and (`weak`: a shape that
    needs a context word) not joined to a code by a hyphen."""
    before, after = (_NOT_AFTER_A_GROUP, _NOT_BEFORE_A_GROUP) if alone else ("", "")
    if weak:
        before, after = before + _NOT_IN_A_CODE[0], after + _NOT_IN_A_CODE[1]
    return f"{_START}{before}{_NOT_AMOUNT_BEFORE}(?:{body}){_END}{after}{_NOT_AMOUNT_AFTER}"


# The public-suffix list bundled with tldextract: its default fetches the list from the internet.
_PUBLIC_SUFFIXES = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)


def _digits(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", text)


class _ValidatedPatternRecognizer(PatternRecognizer):
    """A pattern recognizer whose matches must pass `is_valid` (a checksum, a date...; by
    default any match does). A valid match keeps the score of the pattern that found it,
    where Presidio's own validation would raise it to certainty."""

    ENTITY: str
    PATTERNS: list[Pattern]
    CONTEXT: list[str]

    def __init__(self, language: str):
        super().__init__(supported_entity=self.ENTITY, patterns=self.PATTERNS, context=self.CONTEXT,
                         supported_language=language, global_regex_flags=FLAGS)

    def validate_result(self, pattern_text: str) -> bool | None:
        return None if self.is_valid(pattern_text) else False

    def is_valid(self, text: str) -> bool:
        return True


# -- Chinese identifiers -------------------------------------------------------------------

class CnIdCardRecognizer(_ValidatedPatternRecognizer):
    """Resident identity card numbers: 18 digits with the GB 11643 check character (also
    written 6-8-4 with spaces), or the old 15-digit form, which has no check digit."""

    ENTITY = "CN_ID_CARD"
    PATTERNS = [
        Pattern("18 digits", _number(r"[1-9]\d{5} ?(?:18|19|20)\d{6} ?\d{3}[0-9X]"), 0.95),
        Pattern("15 digits", _number(r"[1-9]\d{14}", weak=True), 0.4),
    ]
    CONTEXT = ["身份证", "身份号码", "证件号", "公民身份", "id card", "identity card", "resident id",
               "id number", "id no"]

    def is_valid(self, text: str) -> bool:
        return cn_id_valid(_digits(text))


class CnMobileRecognizer(_ValidatedPatternRecognizer):
    """Mainland mobile numbers: 1[3-9]x xxxx xxxx, with or without +86/0086 and separators."""

    ENTITY = "CN_MOBILE"
    PATTERNS = [
        Pattern("+86 mobile", _number(r"\(?(?:\+|00)86\)?[ -]?1[3-9]\d[ -]?\d{4}[ -]?\d{4}"), 0.85),
        Pattern("mobile", _number(r"1[3-9]\d[ -]?\d{4}[ -]?\d{4}"), 0.6),
    ]
    CONTEXT = ["手机", "电话", "联系", "致电", "短信", "微信", "mobile", "phone", "cell", "tel", "call",
               "contact", "sms", "wechat"]
    # Three-digit prefixes no operator has issued.
    _UNASSIGNED = {"140", "141", "142", "143", "144", "154", "160", "161", "163", "164", "168",
                   "169", "179"}

    def is_valid(self, text: str) -> bool:
        digits = _digits(text)
        digits = digits[-11:] if len(digits) > 11 else digits
        return len(digits) == 11 and digits[:3] not in self._UNASSIGNED


class CnLandlineRecognizer(_ValidatedPatternRecognizer):
    """Fixed-line numbers with an area code: (010) 6552 9988, 0755-8888 1234, +86 21 5888 8888.
    Without a separator after the area code the digits could be anything, so context decides."""

    ENTITY = "CN_LANDLINE"
    _AREA = r"(?:10|2\d|[3-9]\d{2})"
    _LOCAL = r"[2-9]\d{2,3}[ -]?\d{4}(?:[ -]?(?:转|分机|ext\.?|x)\s?\d{1,5})?"
    PATTERNS = [
        Pattern("area code and number",
                _number(rf"(?:\(?(?:\+|00)86\)?[ -]?\(?0?{_AREA}\)?[ -]?|\(0{_AREA}\)\s?|0{_AREA}[ -]){_LOCAL}"),
                0.6),
        Pattern("digits only", _number(rf"0{_AREA}{_LOCAL}", weak=True), NEEDS_CONTEXT),
    ]
    CONTEXT = ["电话", "座机", "固话", "传真", "总机", "联系", "热线", "分机", "致电", "tel", "phone",
               "fax", "call", "contact", "office", "hotline"]


class CnBankCardRecognizer(_ValidatedPatternRecognizer):
    """Bank card numbers: 16 to 19 digits passing the Luhn check, grouped by four or not.
    UnionPay's 62 prefix is enough on its own; other prefixes need a context word."""

    ENTITY = "CN_BANK_CARD"
    PATTERNS = [
        Pattern("UnionPay", _number(r"62\d{2}(?:[ -]?\d{4}){3}(?:[ -]?\d{1,3})?"), 0.9),
        Pattern("card number", _number(r"[1-9]\d{3}(?:[ -]?\d{4}){3}(?:[ -]?\d{1,3})?", weak=True),
                NEEDS_CONTEXT),
    ]
    CONTEXT = ["银行卡", "卡号", "账号", "帐号", "账户", "帐户", "开户", "借记卡", "储蓄卡", "信用卡", "银联",
               "bank card", "card number", "card no", "account", "debit card", "unionpay"]

    def is_valid(self, text: str) -> bool:
        digits = _digits(text)
        return 16 <= len(digits) <= 19 and luhn_valid(digits)


class CnSocialCreditCodeRecognizer(_ValidatedPatternRecognizer):
    """Unified social credit codes of companies and organisations (GB 32100, check character)."""

    ENTITY = "CN_SOCIAL_CREDIT_CODE"
    PATTERNS = [Pattern("USCC", _ALNUM_START + r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}" + _ALNUM_END,
                        0.85)]
    CONTEXT = ["统一社会信用代码", "信用代码", "营业执照", "纳税人识别号", "税号", "social credit", "uscc",
               "business license", "tax id"]

    def is_valid(self, text: str) -> bool:
        return uscc_valid(text)


class CnPassportRecognizer(_ValidatedPatternRecognizer):
    """Passport numbers: E + 8 digits, E + letter + 7 digits (since 2019), G + 8 digits, and
    the diplomatic, service and public-affairs series. No checksum, so context decides."""

    ENTITY = "CN_PASSPORT"
    PATTERNS = [Pattern("passport", _ALNUM_START + r"(?:[EG]\d{8}|E[A-HJ-NP-Z]\d{7}|[DSP]E?\d{7})" + _ALNUM_END,
                        0.4)]
    CONTEXT = ["护照", "passport", "travel document", "证件号"]

    def is_valid(self, text: str) -> bool:
        return len(set(text[-7:])) > 1  # E00000000 is a placeholder, not a passport


class CnNameRecognizer(PatternRecognizer):
    """Chinese personal names after a label ("姓名：", "联系人", "客户", "Name:"): a common
    surname and one or two given-name characters, ending at punctuation, a space or the end
    of the line. Names in running prose need a Chinese NER model (PGKB_PII_SPACY_MODELS)."""

    ENTITY = "CN_NAME"
    # Common surnames, less those that are also everyday words ("安全", "时间", "和").
    _SURNAMES = (
        "欧阳|司马|诸葛|上官|东方|慕容|令狐|皇甫|尉迟|公孙|夏侯|长孙|司徒|端木|"
        "[王李张刘陈杨黄赵吴周徐孙朱胡郭何林罗郑梁谢宋唐许韩冯邓曹彭曾肖董袁潘蒋蔡杜叶苏魏吕丁沈姚卢"
        "姜崔钟谭陆汪范贾夏韦付傅邹孟熊秦邱尹薛闫段侯陶黎贺顾毛郝龚邵钱严覃武戴莫孔汤施牛樊葛邢乔伍庞颜"
        "倪庄聂鲁岳翟殷詹申欧耿焦俞左柳祝阮柯纪梅童凌毕季裴霍涂苗翁冉骆蓝靳柴蒙鲍喻祁蒲滕屈饶牟艾尤穆"
        "卓缪芦麦褚娄窦戚岑晏卫米柏瞿桂佟臧闵苟邬卞姬仇栾隋刁巫寇桑郎甄丛仲虞敖巩佘邝]"
    )
    _LABEL = (r"(?:姓名|名字|联系人|负责人|经办人|申请人|收件人|收货人|寄件人|持卡人|开户名|户名|法定代表人|法人代表|"
              r"签字人|签名|本人|患者|客户|员工|学生|name|contact|signed by)\s*[:：]?\s*")
    PATTERNS = [Pattern(
        "labelled name", rf"(?<={_LABEL})(?:{_SURNAMES})[\u4e00-\u9fff]{{1,2}}(?=[\s,，.。;；、:：(（)）|]|$)", 0.7,
    )]

    def __init__(self, language: str):
        super().__init__(supported_entity=self.ENTITY, patterns=self.PATTERNS,
                         supported_language=language, global_regex_flags=FLAGS)


# -- Presidio's recognizers, offline and with Chinese context words ------------------------

class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer, checking the domain against the bundled public-suffix
    list where Presidio's would fetch it. Its domain ends at the last label of letters, so an
    address followed by "_" or "-" and more ("简历_li@corp.cn_2024") is still found."""

    _CHAR = r"[!#$%&'*+\-/=?^_`{|}~\w]"
    PATTERNS = [Pattern("e-mail", rf"\b(?:{_CHAR}|{_CHAR}[!#$%&'*+\-/=?^_`{{|}}~.\w]*{_CHAR})@"
                                  r"(?:[a-z0-9]+(?:-+[a-z0-9]+)*\.)+[a-z]{2,24}(?![a-z0-9])", 0.5)]

    def __init__(self, language: str):
        super().__init__(patterns=self.PATTERNS, supported_language=language,
                         context=["email", "e-mail", "mail", "邮箱", "邮件", "电邮"])
        self.global_regex_flags = FLAGS

    def validate_result(self, pattern_text: str) -> bool:
        return _PUBLIC_SUFFIXES(pattern_text.rsplit("@", 1)[-1]).fqdn != ""


class CardNumberRecognizer(CreditCardRecognizer):
    """Payment card numbers of every major network, 12 to 19 digits, Luhn-checked.

    Presidio's pattern stops at 17 digits and misses Mastercard's 2-series and Maestro;
    its validation also lifts every Luhn-valid match to certainty, where one number in ten
    passes Luhn: here 16-digit and Amex numbers count on their own, other lengths (12-digit
    Maestro, 19-digit Visa, 14-digit Diners) with a context word like "card".
    """

    _NETWORK = r"(?:4\d{3}|5[0-8]\d{2}|6\d{3}|3[0-9]\d{2}|2[2-7]\d{2}|2131|1800)"
    PATTERNS = [
        Pattern("card, 16 digits", _number(_NETWORK + r"(?:[ -]?\d{4}){3}"), 0.6),
        Pattern("Amex 4-6-5", _number(r"3[47]\d{2}[ -]?\d{6}[ -]?\d{5}"), 0.6),
        # Other lengths are as often order and reference numbers.
        Pattern("card, 12-19 digits",
                _number(_NETWORK + r"(?:\d{8,15}|(?:[ -]?\d{4}){3}[ -]?\d{1,3}|[ -]?\d{6}[ -]?\d{4})", weak=True),
                NEEDS_CONTEXT),
    ]

    def __init__(self, language: str):
        super().__init__(patterns=self.PATTERNS, supported_language=language,
                         context=self.CONTEXT + ["card", "信用卡", "卡号", "银行卡"])
        self.global_regex_flags = FLAGS

    # PatternRecognizer allows None (keep the pattern's score); CreditCardRecognizer's annotation narrows it.
    def validate_result(self, pattern_text: str) -> bool | None:  # type: ignore[override]
        digits = _digits(pattern_text)
        return None if 12 <= len(digits) <= 19 and luhn_valid(digits) else False


class PhoneNumberRecognizer(_ValidatedPatternRecognizer):
    """Telephone numbers in the world's common written forms.

    International numbers (+41 (0)96 471 07 95) and North American ones ((579) 888-3058)
    are recognisable by shape; other national forms (0490 75 40 81, 467 3395, 930.167.3943)
    look like any group of numbers and count only next to a word like "phone", "fax" or "电话".
    One number keeps one separator, so two numbers in a row ("+1-819-564-4857 1-800-661-2638")
    stay two.
    """

    ENTITY = "PHONE_NUMBER"
    _EXTENSION = r"(?:\s?(?:x|ext\.?|#)\s?\d{1,5})?"
    PATTERNS = [
        Pattern("international",
                _number(r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,12}(?:([ .-])\d{1,5}(?:\1\d{1,5}){0,4})?"
                        + _EXTENSION, alone=False), 0.6),
        Pattern("North American", _number(r"(?:\(\d{3}\) ?|\d{3}-)\d{3}-\d{4}" + _EXTENSION, alone=False), 0.5),
        Pattern("national",
                _number(r"(?:\(\d{1,4}\) ?)?\d{1,5}([ .-])\d{1,8}(?:\1\d{1,8}){0,4}" + _EXTENSION + r"|\d{7,12}",
                        alone=False, weak=True),
                NEEDS_CONTEXT),
    ]
    CONTEXT = ["phone", "telephone", "tel", "mobile", "cell", "cellphone", "call", "fax", "contact", "reach",
               "sms", "whatsapp", "hotline", "text me", "messages to", "message on", "answering at",
               "电话", "手机", "联系", "致电", "传真", "座机", "热线", "分机", "拨打", "来电"]
    # Labels that say what a number is when they follow it ("416 60 039 office"); before a
    # number they are as likely to start an address ("our office is at 17031 ...").
    FOLLOWING_CONTEXT = ["office", "desk", "home", "work", "办公室", "家"]
    # Shapes that are dates, not numbers to call: 2024-01-15, 15.01.2024, 2024/01/15.
    _DATE = re.compile(r"(?:19|20)\d\d[-./](?:0?[1-9]|1[0-2])[-./](?:0?[1-9]|[12]\d|3[01])"
                       r"|(?:0?[1-9]|[12]\d|3[01])[-./](?:0?[1-9]|1[0-2])[-./](?:19|20)\d\d")

    def is_valid(self, text: str) -> bool:
        digits = _digits(text.lower().split("x")[0].split("ext")[0].split("#")[0])
        return 7 <= len(digits) <= 15 and len(set(digits)) > 2 and not self._DATE.search(text)


class CaseInsensitiveIbanRecognizer(IbanRecognizer):
    """Presidio's IBAN recognizer (mod-97 checksum and per-country format), also for IBANs
    written in lower case."""

    def __init__(self, language: str):
        super().__init__(supported_language=language, regex_flags=FLAGS,
                         context=IbanRecognizer.CONTEXT + ["账号", "银行", "汇款"])

    def validate_result(self, pattern_text: str) -> bool | None:
        return super().validate_result(pattern_text.upper())


class IpAddressRecognizer(IpRecognizer):
    """Presidio's IP address recognizer (IPv6 forms, validation by `ipaddress`), with IPv4
    that tells addresses from section numbers: "10.1.2.2 Content Types" and "2.3.59.6" are
    headings, and a dotted quad inside a longer dotted number (10.1.2.2.1) is no address at
    all. Quads that start with a single digit or whose four parts are all below 32 need a
    context word ("IP", "server", "DNS", "地址")."""

    _OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    _SMALL_OCTET = r"(?:3[01]|[12]?\d)"
    _IPV4 = rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?:/(?:3[0-2]|[12]?\d))?(?![\d]|\.\d)"
    PATTERNS = [p for p in IpRecognizer.PATTERNS if p.name != "IPv4"] + [
        Pattern("IPv4", rf"(?!\d\.|{_SMALL_OCTET}(?:\.{_SMALL_OCTET}){{3}}(?!\d))" + _IPV4, 0.6),
        Pattern("IPv4, small numbers", _IPV4, NEEDS_CONTEXT),
    ]

    def __init__(self, language: str):
        super().__init__(patterns=self.PATTERNS, supported_language=language,
                         context=IpRecognizer.CONTEXT + ["address", "server", "host", "gateway", "dns",
                                                         "地址", "服务器", "网关"])
        self.global_regex_flags = FLAGS


class DomainAwareUrlRecognizer(UrlRecognizer):
    """URLs: Presidio's patterns for http(s):// addresses, and www. and bare domains checked
    against tldextract's bundled public-suffix list. Without a scheme, "setup.py" and
    "readme.md" are domains of Paraguay and Moldova, so bare domains need a context word.
    (Presidio's own bare-domain pattern backtracks for seconds on long technical texts.)"""

    PATTERNS = [p for p in UrlRecognizer.PATTERNS if "https?" in p.regex] + [
        Pattern("www", r"(?<![\w.@-])www\d{0,3}\.(?:[a-z0-9-]+\.)+[a-z]{2,24}(?![\w-])(?:/[^\s()<>\"']*)?", 0.6),
        Pattern("bare domain", r"(?<![\w.@/-])(?:[a-z0-9-]+\.)+[a-z]{2,24}(?![\w-])(?:/[^\s()<>\"']*)?", NEEDS_CONTEXT),
    ]

    def __init__(self, language: str):
        super().__init__(patterns=self.PATTERNS, supported_language=language,
                         context=UrlRecognizer.CONTEXT + ["网址", "链接", "网站", "site", "web"])
        self.global_regex_flags = FLAGS

    def validate_result(self, pattern_text: str) -> bool | None:
        return None if _PUBLIC_SUFFIXES(pattern_text).suffix else False


class SsnRecognizer(UsSsnRecognizer):
    """Presidio's US social security number recognizer (with its invalid-number rules), its
    numbers bounded like ours: "SSN536-90-4399" and "a_536-90-4399" hold one."""

    PATTERNS = [Pattern(p.name, _START + p.regex.removeprefix(r"\b").removesuffix(r"\b") + _END, p.score)
                for p in UsSsnRecognizer.PATTERNS]

    def __init__(self, language: str):
        super().__init__(patterns=self.PATTERNS, supported_language=language,
                         context=UsSsnRecognizer.CONTEXT + ["social security number"])
        self.global_regex_flags = FLAGS




def pattern_recognizers(language: str) -> list[EntityRecognizer]:
    """Every pattern recognizer, for text analysed as `language`."""
    return [
        CnIdCardRecognizer(language), CnMobileRecognizer(language), CnLandlineRecognizer(language),
        CnBankCardRecognizer(language), CnSocialCreditCodeRecognizer(language), CnPassportRecognizer(language),
        CnNameRecognizer(language), OfflineEmailRecognizer(language), CardNumberRecognizer(language),
        PhoneNumberRecognizer(language), CaseInsensitiveIbanRecognizer(language),
        IpAddressRecognizer(language), DomainAwareUrlRecognizer(language),
        SsnRecognizer(language),
    ]


def ner_recognizer(language: str) -> EntityRecognizer:
    """Names, places and organisations from the language's spaCy model, when it has one."""
    return SpacyRecognizer(supported_language=language, supported_entities=list(NER_ENTITIES))
