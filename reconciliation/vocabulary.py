"""The vocabulary both sides share: which roles Bookmarked syncs, and how emails and grades
are normalized before they are compared.

Plain Python on purpose (no polars): the settings, the data-quality check list and the
Dagster definitions import it, and the definitions must load fast.
"""

from __future__ import annotations

import re

#: Who must act on a finding: the district fixes its SIS data, or Bookmarked support fixes
#: Bookmarked. Plain strings here, so the Dagster definitions can name them without polars.
ISSUE_IN_SOURCE = "ISSUE_IN_SOURCE"
ISSUE_IN_BOOKMARKED = "ISSUE_IN_BOOKMARKED"
STATUSES = (ISSUE_IN_SOURCE, ISSUE_IN_BOOKMARKED)

#: Roles Bookmarked syncs. Anything else in the SIS (aide, proctor, principal, ...) becomes
#: `other`.
SYNCED_ROLES = ("student", "teacher", "parent", "admin")

_SOURCE_ROLE_MAP = {
    "student": "student",
    "teacher": "teacher",
    "parent": "parent",
    "guardian": "parent",
    "relative": "parent",
    "relativeofstudent": "parent",  # a common misspelling of the 1.1 token
    # only `administrator` becomes `admin`: the sync contract (docs/bookmarked/sync-contract.md)
    # does not sync 1.2's districtAdministrator, principal, siteAdministrator or
    # systemAdministrator, nor counselor, aide, proctor or `ext:` roles
    "administrator": "admin",
}


def sync_role(raw: str | None) -> str:
    """Map a OneRoster role token to the role Bookmarked's sync gives it (`other`: not synced)."""
    if raw is None:
        return "other"
    return _SOURCE_ROLE_MAP.get(raw.strip().lower(), "other")


def normalize_email(email: str | None) -> str | None:
    """Bookmarked compares emails without case or surrounding whitespace."""
    if email is None:
        return None
    cleaned = email.strip().lower()
    return cleaned or None


_GRADE_WORDS = {
    "k": "KG",
    "kg": "KG",
    "kindergarten": "KG",
    "kinder": "KG",
    "pk": "PK",
    "prek": "PK",
    "pre-k": "PK",
    "prekindergarten": "PK",
    "pre-kindergarten": "PK",
    "tk": "TK",
    "transitionalkindergarten": "TK",
    "it": "IT",
    "infant/toddler": "IT",
    "pr": "PR",
    "preschool": "PR",
    "ps": "PS",
    "postsecondary": "PS",
    "ug": "UG",
    "ungraded": "UG",
    "other": "Other",
    "first": "01",
    "second": "02",
    "third": "03",
    "fourth": "04",
    "fifth": "05",
    "sixth": "06",
    "seventh": "07",
    "eighth": "08",
    "ninth": "09",
    "tenth": "10",
    "eleventh": "11",
    "twelfth": "12",
}
_GRADE_NUMBER = re.compile(r"^(?:grade\s*)?0*(\d{1,2})(?:st|nd|rd|th)?(?:\s*grade)?$")
_GRADE_WORD = re.compile(r"^([a-z/\- ]+?)(?:\s*grade)?$")


def normalize_grade(raw: str | None) -> str | None:
    """Normalize a grade to its CEDS code ('K' -> 'KG', '5' -> '05', 'First grade' -> '01').

    Values outside the CEDS table (another profile's code such as the Japan Profile's
    'P1') are kept as written, so nothing is lost; the data-quality checks report them.
    """
    if raw is None:
        return None
    text = raw.strip()
    if not text:
        return None
    lowered = text.lower()
    number = _GRADE_NUMBER.match(lowered)
    if number and 1 <= int(number.group(1)) <= 13:
        return f"{int(number.group(1)):02d}"
    if number and int(number.group(1)) == 0:
        return "KG"
    word = _GRADE_WORD.match(lowered)
    if word:
        key = word.group(1).strip().replace(" ", "")
        if key in _GRADE_WORDS:
            return _GRADE_WORDS[key]
    return text


CEDS_GRADES = frozenset(
    ["IT", "PR", "PK", "TK", "KG", "PS", "UG", "Other"] + [f"{n:02d}" for n in range(1, 14)]
)
