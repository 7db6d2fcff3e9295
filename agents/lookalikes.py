"""What a name looks like: the form A-labels are matched on (agents/targets.py), in a host
name and in a user's local part.

A name that is really internationalised reaches the console as its A-labels (`xn--…`); it is
matched by what it looks like once decoded, so that `dс01` written with a Cyrillic `с`, or
`dᴄ01` with a small capital `ᴄ`, matches the inventory's `dc01`, while the connector still
gets the A-label.
"""

from __future__ import annotations

import re
import unicodedata

# Letters of other scripts that are drawn like an ASCII letter, by case (applied before case
# folding, so that Greek capital Ν stays N while small ν becomes v). A curated subset of the
# look-alikes in Unicode's confusables data: Cyrillic, Greek, Armenian and Latin extensions,
# the scripts seen in homograph attacks on Latin-script names. A name whose skeleton is still
# not ASCII holds a look-alike this table does not know, and is rated as the most critical
# asset it might imitate (`readable`).
_LOOKALIKES = {
    # Cyrillic capitals
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "Х": "X", "У": "Y", "Ү": "Y", "Ѕ": "S", "І": "I", "Ӏ": "I",
    "Ј": "J", "Ԛ": "Q", "Ԝ": "W", "Һ": "H", "Ԁ": "D", "Ԍ": "G", "Ɩ": "I",
    # Cyrillic small letters
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "ү": "y", "х": "x",
    "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l",
    "ь": "b", "ѵ": "v", "ɡ": "g",
    # Greek capitals
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϳ": "J",
    # NFKC turns the lunate sigmas (Ϲ ϲ, drawn like C c) into Σ and ς: those stand for C too.
    "Σ": "C", "σ": "c", "ς": "c",
    # Greek small letters
    "α": "a", "ο": "o", "ν": "v", "ι": "i", "κ": "k", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "ϳ": "j", "γ": "y", "ω": "w", "ε": "e",
    # Armenian
    "օ": "o", "ս": "u", "հ": "h", "ո": "n", "ց": "g", "զ": "q", "ա": "w", "ե": "t",
    "Օ": "O", "Ս": "U",
    # Latin letters outside ASCII drawn like ASCII ones whose names do not say so (the others
    # are read from their names, below)
    "ɑ": "a", "ɩ": "i", "ĸ": "k", "ʋ": "u", "ℓ": "l",
}  # fmt: skip

# A Latin or modifier letter whose name says which ASCII letter it is drawn as: `ᴄ` LATIN
# LETTER SMALL CAPITAL C, `ᶜ` MODIFIER LETTER SMALL C, `ı` LATIN SMALL LETTER DOTLESS I, `ɡ`
# LATIN SMALL LETTER SCRIPT G, `đ` LATIN SMALL LETTER D WITH STROKE (a stroke, hook or bar is
# an accent NFD cannot take off). Turned, reversed and other shapes of a letter are not it,
# nor is a digraph's first letter (`ǈ` LATIN CAPITAL LETTER L WITH SMALL LETTER J is Lj).
_NAMED_AS_LETTER = re.compile(
    r"(?:LATIN|MODIFIER)(?: SUBSCRIPT| SUPERSCRIPT)?(?: SMALL| CAPITAL)? LETTER"
    r"(?: SMALL CAPITAL| SMALL| CAPITAL| DOTLESS| SCRIPT)? ([A-Z])(?: WITH (?!SMALL LETTER).+)?"
)


_LAST_LATIN = 0x1FFFF


def _latin_lookalikes() -> dict[str, str]:
    """Every letter outside ASCII that _NAMED_AS_LETTER reads as an ASCII one, small or
    capital as the letter is drawn."""
    found = {}
    # Latin letters are all in the first two planes (the higher ones hold CJK and tags).
    for code in range(0x80, _LAST_LATIN + 1):
        char = chr(code)
        category = unicodedata.category(char)
        if not category.startswith("L"):
            continue
        match = _NAMED_AS_LETTER.fullmatch(unicodedata.name(char, ""))
        if match:
            found[char] = match.group(1) if category == "Lu" else match.group(1).lower()
    return found


LATIN_LOOKALIKES = _latin_lookalikes()
_SKELETON = str.maketrans({**LATIN_LOOKALIKES, **_LOOKALIKES})
# Full stops that IDNA reads as dots (NFKC folds the fullwidth one, not the ideographic).
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})

# Drawn as nothing: Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt,
# Unicode 15.1), which IDNA's mapping drops or refuses (zero-width characters, the Hangul
# fillers, variation selectors, tags, unassigned ones kept for more of the same), and the
# braille blank, a symbol drawn as an empty cell. Spaces, marks and format characters are
# dropped by their category.
_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x2800, 0x2800),
    (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)  # fmt: skip
_DRAWN_AS_NOTHING = frozenset(("Mn", "Me", "Cf", "Cc", "Zs", "Zl", "Zp"))


def _invisible(char: str) -> bool:
    if unicodedata.category(char) in _DRAWN_AS_NOTHING:
        return True
    return _ignorable(char)


def _ignorable(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _IGNORABLE)


def blank(char: str) -> bool:
    """Whether a reader sees nothing of `char`: a space of any kind, a format or control
    character, a default-ignorable code point (a Hangul filler, a variation selector) or the
    braille blank. A combining mark is seen, on the letter it marks."""
    return unicodedata.category(char)[0] in "CZ" or _ignorable(char)


def _drawn(char: str) -> str:
    """One character of a decomposed name as it is drawn: nothing for an invisible one, the
    ASCII digit for any script's decimal digit (`০` BENGALI DIGIT ZERO is 0)."""
    if _invisible(char):
        return ""
    digit = unicodedata.decimal(char, None)
    return str(digit) if digit is not None else char


def skeleton(text: str) -> str:
    """What a name looks like: the form compared when matching the inventory.

    Compatibility forms folded (NFKC: fullwidth, mathematical, circled letters), look-alike
    letters of other scripts and Latin letters named as an ASCII one (small capitals,
    modifier letters, dotless and script forms, letters with a stroke or hook) read as the
    ASCII ones they imitate (judged before case folding, so that a capital's look-alike
    counts as a capital, and before NFKC too, which would leave `ŀ` as `l·`), every script's
    decimal digits as ASCII ones, accents, spaces and invisible characters dropped (the
    default-ignorable ones, the Hangul fillers, the braille blank), case folded.
    """
    if text.isascii():
        return text.casefold()
    # NFKC may leave ASCII that is not part of a name (a no-break space becomes a space): the
    # result goes through every step below even when it is ASCII.
    folded = unicodedata.normalize("NFKC", text.translate(_SKELETON)).translate(_DOTS)
    drawn = unicodedata.normalize("NFD", folded.translate(_SKELETON)).translate(_SKELETON)
    bare = "".join(_drawn(c) for c in drawn)
    return unicodedata.normalize("NFC", bare).casefold().translate(_SKELETON)


_NAME_CHARACTERS = re.compile(r"[a-z0-9._+@\\-]*")


def readable(key: str) -> bool:
    """Whether a skeleton holds only what names are written with (letters, digits, dots,
    hyphens; `_`, `+`, `@` and `\\` in principals). One that does not holds a letter this module
    cannot read as an ASCII one (a look-alike from a script the table leaves out, Coptic `ⲥ`,
    Cherokee `Ꭰ`) or a sign a name never has (a fullwidth `％` folded to `%`): it may imitate
    any inventoried name, so the inventory match rates it as the most critical step unless an
    asset has exactly that name."""
    return _NAME_CHARACTERS.fullmatch(key) is not None
