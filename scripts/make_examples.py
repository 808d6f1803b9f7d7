"""Regenerates the example documents in examples/ (run from the repository root):

    python scripts/make_examples.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.documents import Section, write_docx, write_pdf  # noqa: E402

TRAVEL_POLICY: list[Section] = [
    (1, "1. Purpose and scope", [
        "This policy explains how employees of Northwind Analytics plan business travel, which costs "
        "the company pays, and how to claim them back. It applies to all staff, contractors engaged for "
        "more than three months, and interns travelling on company business.",
        "Travel must serve a clear business purpose that cannot reasonably be achieved by video call. "
        "Managers approve trips in advance; travel booked without approval is not reimbursed.",
    ]),
    (1, "2. Booking travel", [
        "Book flights, trains and hotels through the company travel portal whenever possible. The portal "
        "applies negotiated rates and keeps a record that the finance team uses for duty-of-care checks.",
        "Economy class is the standard for flights under six hours. Premium economy may be booked for "
        "longer flights with the approval of a department head. Rail is preferred over air for journeys "
        "under four hours.",
        ["Book at least 14 days before departure where the schedule allows.",
         "Choose refundable fares only when plans are genuinely uncertain.",
         "Personal loyalty points may be kept, but must not influence the choice of supplier."],
    ]),
    (1, "3. Daily allowances", [
        "Meals and incidental costs are covered by a daily allowance (per diem) that depends on the "
        "destination city. The allowance replaces receipts for meals: employees do not need to keep "
        "restaurant receipts, but they may not claim meals in addition to the allowance.",
        (("City", "Hotel cap per night (EUR)", "Per diem (EUR)"),
         ("Amsterdam", "210", "70"), ("Berlin", "170", "60"), ("London", "240", "80"),
         ("Paris", "220", "75"), ("Shanghai", "160", "55"), ("New York", "310", "95")),
        "For cities not listed, use the rate of the nearest listed city or ask the travel desk. On the "
        "first and last day of a trip the per diem is paid at 75 percent.",
    ]),
    (1, "4. Claiming expenses", [
        "Submit your expense claim in the finance system within 30 days of returning from the trip. "
        "Attach an itemised receipt for every cost above 25 euros, except meals covered by the per diem. "
        "Photographs of receipts are accepted if the amount, date and supplier are legible.",
        "Your manager reviews the claim within five working days. Approved claims are reimbursed with "
        "the next monthly payroll run; claims approved after the 20th of the month are paid the month after.",
        "Claims submitted more than 90 days after the trip are rejected unless the chief financial "
        "officer grants an exception in writing.",
    ]),
    (2, "4.1 Foreign currency", [
        "Costs paid in a foreign currency are converted at the exchange rate shown on your card statement. "
        "Attach the statement line to the claim. Cash withdrawals abroad are converted at the rate of the "
        "withdrawal receipt.",
    ]),
    (2, "4.2 Lost receipts", [
        "If a receipt is lost, complete the missing receipt declaration in the finance system, describing "
        "the cost, the date and why the receipt is missing. More than two declarations in a year are "
        "reported to your department head.",
    ]),
    (1, "5. Non-reimbursable costs", [
        "The company does not pay for: fines and penalties, including parking and speeding tickets; "
        "personal entertainment such as films or minibar items; upgrades booked for personal comfort; "
        "costs of a travelling companion; and lost or stolen personal belongings.",
    ]),
]

HANDBOOK: list[Section] = [
    (1, "Welcome", [
        "Welcome to Northwind Analytics. This handbook describes how we work together: working hours, "
        "leave, equipment and where to get help. It does not replace your employment contract; where the "
        "two differ, the contract prevails.",
    ]),
    (1, "Working hours", [
        "Our core hours are 10:00 to 15:00, Monday to Friday. Outside core hours you organise your time "
        "with your team. Full-time employees work 38 hours a week on average over a month.",
        "Overtime must be agreed with your manager in advance and is compensated with time off in lieu, "
        "taken within three months.",
    ]),
    (1, "Leave", [
        "Annual leave is requested in the HR portal at least two weeks ahead for periods longer than three "
        "days. Unused leave of up to five days may be carried over to the next year.",
        (("Type of leave", "Days per year", "Notice"),
         ("Annual leave", "25", "2 weeks for more than 3 days"),
         ("Sick leave", "as needed", "tell your manager on the first day"),
         ("Parental leave", "by law", "8 weeks"),
         ("Study leave", "5", "1 month")),
    ]),
    (2, "Sick leave", [
        "If you are ill, tell your manager before 10:00 on the first day. From the fourth day of absence "
        "a medical certificate is required.",
    ]),
    (1, "Equipment and security", [
        "Every employee receives a laptop and a phone. Keep the operating system updated, lock the screen "
        "when you leave your desk, and never share your password, even with IT staff.",
        ["Report a lost or stolen device to the IT service desk within one hour.",
         "Use the company password manager for every work account.",
         "Store documents in the shared drive, not on the laptop's local disk."],
    ]),
    (1, "Getting help", [
        "The HR team answers questions about pay, leave and benefits. The IT service desk handles "
        "accounts, devices and software. For travel and expenses see the Travel and Expense Policy.",
    ]),
]

SECURITY_GUIDE = """# Information security quick guide

## Passwords and accounts

Use a different password for every service and keep them in the company password manager.
Turn on two-factor authentication wherever it is offered.

## Phishing

Be suspicious of messages that create urgency, ask you to log in through a link, or request
payment details. Report suspected phishing with the Report button in your mail client; do not
forward the message to colleagues.

## Classifying documents

- Public: may be shared with anyone.
- Internal: for employees and contractors only.
- Confidential: named recipients only; encrypt before sending outside the company.
"""


def build_examples(folder: Path) -> None:
    write_pdf(folder / "travel-expense-policy.pdf", "Travel and Expense Policy", TRAVEL_POLICY,
              footer="Northwind Analytics - Travel and Expense Policy v3.2",
              page_break_before=["3. Daily allowances"])
    write_docx(folder / "employee-handbook.docx", "Employee Handbook", HANDBOOK,
               page_break_before=["Leave", "Equipment and security"])
    (folder / "security-quick-guide.md").write_text(SECURITY_GUIDE)


if __name__ == "__main__":
    build_examples(Path(__file__).resolve().parent.parent / "examples")
