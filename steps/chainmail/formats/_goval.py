"""Go value semantics that show up in Chains' payloads: times, durations, quantities, JSON bytes.

Tekton Chains decodes a run into Go structs and encodes parts of it again, so a few
values come out in Go's canonical spelling rather than as written: ``metav1.Time``
(RFC 3339, UTC, whole seconds), ``metav1.Duration`` (``1h0m0s``), Kubernetes resource
quantities (``1000m`` → ``1``) and ``encoding/json`` strings. This module reproduces
those spellings; it is written from the documented behaviour of those types.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import TYPE_CHECKING, Any

from chainmail._internal.encoding import compact_json

if TYPE_CHECKING:
    from fractions import Fraction

__all__ = [
    "GoTime",
    "format_duration",
    "go_json",
    "parse_duration",
    "parse_time",
    "quantity",
]

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


class GoTime(str):
    """A time as ``metav1.Time`` encodes it (``2021-03-29T09:50:15Z``), keeping the nanoseconds.

    It *is* that string, so it drops into JSON unchanged; ``rfc3339nano`` and ``protojson``
    give the spellings of Go's ``time.Time`` and protobuf's ``Timestamp``.
    """

    seconds: int
    nanos: int

    @classmethod
    def zero(cls) -> GoTime:
        """Go's zero ``time.Time`` (``0001-01-01T00:00:00Z``)."""
        return cls((_dt.datetime(1, 1, 1, tzinfo=_dt.UTC) - _EPOCH) // _dt.timedelta(seconds=1), 0)

    def __new__(cls, seconds: int, nanos: int) -> GoTime:
        t = _EPOCH + _dt.timedelta(seconds=seconds)
        stamp = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}Z"
        self = super().__new__(cls, stamp)
        self.seconds = seconds
        self.nanos = nanos
        return self

    def _stem(self) -> str:
        return str.__str__(self)[:-1]

    def rfc3339nano(self) -> str:
        """Go ``time.Time`` JSON: fractional seconds without trailing zeros."""
        if not self.nanos:
            return str.__str__(self)
        return f"{self._stem()}.{self.nanos:09d}".rstrip("0") + "Z"

    def protojson(self) -> str:
        """protobuf ``Timestamp`` JSON: 0, 3, 6 or 9 fractional digits."""
        if not self.nanos:
            return str.__str__(self)
        digits = f"{self.nanos:09d}"
        for width in (3, 6):
            if digits[width:] == "0" * (9 - width):
                digits = digits[:width]
                break
        return f"{self._stem()}.{digits}Z"


def parse_time(text: str) -> GoTime:
    """Parse an RFC 3339 time as Go's ``time.Parse(time.RFC3339, …)``; ValueError when invalid."""
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"'{text}' is not an RFC 3339 time")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = (m.group(7) or "")[:9].ljust(9, "0")
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"'{text}': time out of range")
    try:
        when = _dt.datetime(year, month, day, hour, minute, second, tzinfo=_dt.UTC)
    except ValueError:
        raise ValueError(f"'{text}': day out of range") from None
    if m.group(9):
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            raise ValueError(f"'{text}': time zone offset out of range")
        offset = _dt.timedelta(hours=oh, minutes=om)
        when = when - offset if m.group(9) == "+" else when + offset
    epoch = (when - _EPOCH) // _dt.timedelta(seconds=1)
    return GoTime(epoch, int(frac))


# --- durations (Go time.ParseDuration / Duration.String) ---------------------------------------

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]+)")
_MAX_INT64 = (1 << 63) - 1


def parse_duration(text: str) -> int:
    """Nanoseconds of a Go duration string (``1h30m``, ``1.5s``, ``-2m``); ValueError when invalid."""
    s = text
    neg = False
    if s[:1] in ("-", "+"):
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration '{text}'")
    total = 0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m or (not m.group(1) and not m.group(2)):
            raise ValueError(f"invalid duration '{text}'")
        unit = _UNITS.get(m.group(3))
        if unit is None:
            raise ValueError(f"unknown unit '{m.group(3)}' in duration '{text}'")
        whole = int(m.group(1) or "0") * unit
        frac = m.group(2) or ""
        if frac:
            whole += int(float(int(frac)) * (unit / 10 ** len(frac)))
        total += whole
        if total > _MAX_INT64 + (1 if neg else 0):
            raise ValueError(f"invalid duration '{text}'")
        pos = m.end()
    return -total if neg else total


def _frac(value: int, prec: int) -> tuple[str, int]:
    digits = ""
    printed = False
    for _ in range(prec):
        digit = value % 10
        printed = printed or digit != 0
        if printed:
            digits = str(digit) + digits
        value //= 10
    return ("." + digits if printed else ""), value


def format_duration(nanos: int) -> str:
    """Go's ``Duration.String()``: ``1h0m0s``, ``1m30s``, ``1.5s``, ``500ms``, ``0s``."""
    if nanos == 0:
        return "0s"
    u = abs(nanos)
    if u < 1_000_000_000:
        if u < 1_000:
            out = f"{u}ns"
        elif u < 1_000_000:
            frac, whole = _frac(u, 3)
            out = f"{whole}{frac}\u00b5s"
        else:
            frac, whole = _frac(u, 6)
            out = f"{whole}{frac}ms"
    else:
        frac, secs = _frac(u, 9)
        out = f"{secs % 60}{frac}s"
        minutes = secs // 60
        if minutes:
            out = f"{minutes % 60}m" + out
            hours = minutes // 60
            if hours:
                out = f"{hours}h" + out
    return "-" + out if nanos < 0 else out


# --- Kubernetes resource quantities ------------------------------------------------------------

_DEC_SUFFIX = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BIN_SUFFIX = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DEC_BY_EXP = {v: k for k, v in _DEC_SUFFIX.items()}
_BIN_BY_EXP = {v // 10: k for k, v in _BIN_SUFFIX.items()}
_NUMBER = re.compile(r"^([+-]?)(0*)(\d*)(?:\.(\d*))?(.*)$")
_SUFFIX = re.compile(r"^[eEinumkKMGTP]*[+-]?\d*$")


def _split_quantity(text: str) -> tuple[bool, str, str, str, str]:
    """(positive, value text, numerator digits, fraction digits, suffix) of a quantity string."""
    m = _NUMBER.match(text)
    if not m:  # pragma: no cover - the pattern accepts any string
        raise ValueError(f"invalid quantity '{text}'")
    sign, _zeros, num, denom, suffix = m.groups()
    if not _SUFFIX.match(suffix):
        raise ValueError(f"invalid quantity '{text}'")
    value = text[: len(text) - len(suffix)]
    return sign != "-", value, num or "0", denom or "", suffix


def _interpret(suffix: str) -> tuple[int, int, str]:
    if suffix in _DEC_SUFFIX:
        return 10, _DEC_SUFFIX[suffix], "DecimalSI"
    if suffix in _BIN_SUFFIX:
        return 2, _BIN_SUFFIX[suffix], "BinarySI"
    if len(suffix) > 1 and suffix[0] in "eE" and re.fullmatch(r"[+-]?\d+", suffix[1:]):
        return 10, int(suffix[1:]), "DecimalExponent"
    raise ValueError(f"unable to parse quantity's suffix '{suffix}'")


def _canonical(amount: Fraction, fmt: str) -> str:
    if amount == 0:
        return "0"
    if fmt == "BinarySI":
        if -1024 < amount < 1024 or amount.denominator != 1:
            fmt = "DecimalSI"
    if fmt == "BinarySI":
        mantissa, exp = amount.numerator, 0
        while mantissa % 1024 == 0:
            mantissa //= 1024
            exp += 1
        return f"{mantissa}{_BIN_BY_EXP.get(exp, '')}"
    # decimal: mantissa * 10**exp, exp a multiple of 3, as large as possible
    exp = 0
    while amount.denominator != 1:
        amount *= 10
        exp -= 1
    mantissa = amount.numerator
    while mantissa % 10 == 0:
        mantissa //= 10
        exp += 1
    while exp % 3:
        mantissa *= 10
        exp -= 1
    if fmt == "DecimalSI":
        return f"{mantissa}{_DEC_BY_EXP.get(exp, '')}"
    return f"{mantissa}e{exp}" if exp else str(mantissa)


def quantity(text: str) -> str:
    """The JSON spelling of a Kubernetes ``resource.Quantity`` parsed from ``text``.

    Canonical inputs come back unchanged; others are canonicalised the way
    ``Quantity.MarshalJSON`` does (``1000m`` → ``1``, ``1024Mi`` → ``1Gi``, ``0.5`` → ``500m``).
    """
    from fractions import Fraction  # imported here: it pulls in decimal, and few runs have quantities

    text = text.strip()
    if not text:
        raise ValueError("quantities must match the regular expression (empty)")
    if text == "0":
        return "0"
    positive, value, num, denom, suffix = _split_quantity(text)
    base, exponent, fmt = _interpret(suffix)
    if fmt == "BinarySI":
        scale = 0
        if exponent >= 0 and not denom:
            mantissa = 1 << exponent
            precision = 15 - len(num) - exponent * 3 // 10 - 1
        else:
            mantissa, precision = 1, -1
    else:
        scale, mantissa, precision = exponent, 1, 18 - len(num) - len(denom)
    if precision >= 0:
        scale -= len(denom)
        if scale >= -9:
            shifted = num + denom
            digits = int(shifted)
            if digits > _MAX_INT64:
                raise ValueError(f"quantity '{text}' is out of range")
            result = digits * mantissa
            if result <= _MAX_INT64:
                if fmt == "BinarySI":
                    if exponent % 10 == 0 and digits & 0x07:
                        return text
                elif scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0":
                    return text
                amount = Fraction(result) * Fraction(10) ** scale
                return _canonical(amount if positive else -amount, fmt)
    number = value.lstrip("+-")
    if number.endswith("."):
        number += "0"
    amount = Fraction(number or "0")
    amount *= Fraction(10) ** exponent if base == 10 else Fraction(2) ** exponent
    if amount:
        nanos = amount * 1_000_000_000
        amount = Fraction(-((-nanos.numerator) // nanos.denominator), 1_000_000_000)
    if fmt == "BinarySI" and amount > _MAX_INT64:
        amount = Fraction(_MAX_INT64)
    if fmt == "BinarySI" and 0 < amount < 1:
        fmt = "DecimalSI"
    return _canonical(amount if positive else -amount, fmt)


# --- encoding/json ---------------------------------------------------------------------------------


def go_json(value: Any) -> bytes:
    """Compact JSON as Go's ``json.Marshal`` writes it (HTML and U+2028/U+2029 escaped)."""
    data = compact_json(value)
    if b"\xe2\x80\xa8" in data or b"\xe2\x80\xa9" in data:
        data = data.replace("\u2028".encode(), b"\\u2028").replace("\u2029".encode(), b"\\u2029")
    return data
