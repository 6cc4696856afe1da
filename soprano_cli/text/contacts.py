"""Web addresses, e-mail addresses and phone numbers: one pattern for each form.

words.py and numeric.py read what these match aloud; TextOptions leaves it as written when a
class is turned off, so a form is kept exactly when it would otherwise be read. Every part is
bounded or anchored on a fixed start, so finding them stays linear in the text.
"""

from __future__ import annotations

# "https://x.io/a", "www.x.io", in any case; the punctuation after one is cut off by its reader.
URL = r"(?i:\b(?:https?://|www\.))[^\s<>\"']+"
# Bounded parts (RFC 5321: a local part of 64, labels of 63 characters): unbounded, every start
# inside a long run of address characters scanned to its end, quadratic in the run.
EMAIL = r"(?<![\w.+&-])[\w.+&-]{1,64}@[A-Za-z\d-]{1,63}(?:\.[A-Za-z\d-]{1,63}){1,8}\b(?:/[\w./-]{0,200}\w)?"

# Phone numbers, their digit groups captured (numeric.py reads each group digit by digit).
INTERNATIONAL_PHONE = r"(?<![\w+])\+(\d{1,3})((?:[ .-]\(?\d{1,4}\)?){2,5})(?![\w-])"  # "+44 20 7946 0958"
NORTH_AMERICAN_PHONE = r"(?<![\w-])(?:(1)[-. ])?\(?(\d{3})\)?[-. ]{1,2}(\d{3})[-.](\d{4})(?![\w-])"  # "1-800-555-0199"
PARENTHESIZED_PHONE = r"(?<![\w-])\((\d{3})\)\s?(\d{3})[ -](\d{4})(?![\w-])"  # "(555) 123 4567"
PHONE = "|".join(f"(?:{form})" for form in (INTERNATIONAL_PHONE, NORTH_AMERICAN_PHONE, PARENTHESIZED_PHONE))
