//! Payment cards (issuer ranges, Luhn) and IBANs (country lengths, mod 97), and the digit scan that also
//! hands candidates to the US SSN detector.

use super::identity::ssn_at;
use super::kinds::{Kind, Tally};
use super::text::{is_alnum, overlaps, Claims};

// ---------------------------------------------------------------------------------------------------------
// Digits: payment cards, US social security numbers, IBANs

/// Cards, SSNs and IBANs whose first digit lies in `from..to` (one token run). Returns how far the text is
/// accounted for: a grouped card or IBAN reaches past the run into the next ones.
pub(super) fn scan_digits(
    b: &[u8],
    from: usize,
    to: usize,
    tally: &mut Tally,
    claims: &mut Claims,
) -> usize {
    let mut i = from;
    let mut reach = to;
    while i < to {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let found = if i >= 2 && b[i - 2].is_ascii_uppercase() && b[i - 1].is_ascii_uppercase() {
            iban_at(b, i - 2).map(|end| (Kind::Iban, i - 2, end))
        } else {
            None
        };
        let found = found
            .or_else(|| ssn_at(b, i).map(|end| (Kind::UsSsn, i, end)))
            .or_else(|| card_at(b, i).map(|end| (Kind::CreditCard, i, end)));
        if let Some((kind, start, end)) = found {
            if !overlaps(claims, start, end) {
                tally.hit(kind);
                claims.found(start, end, kind);
            }
            i = end;
            reach = reach.max(end);
            continue;
        }
        while i < to && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    reach
}

/// Whether `start..end` holds a card, SSN or IBAN: a `name: value` assignment is seen before its value's
/// digits are, and must leave them to their own, more precise detectors.
pub(super) fn has_personal_number(b: &[u8], start: usize, end: usize) -> bool {
    (start..end).any(|i| {
        b[i].is_ascii_digit()
            && (i == start || !b[i - 1].is_ascii_digit())
            && (ssn_at(b, i).is_some()
                || card_at(b, i).is_some()
                || (i >= 2 && iban_at(b, i - 2).is_some()))
    })
}

/// Whether a number may start at `i`: not glued to a word, a decimal point or a longer dashed number.
pub(super) fn number_starts_at(b: &[u8], i: usize) -> bool {
    if i == 0 {
        return true;
    }
    let prev = b[i - 1];
    if prev.is_ascii_alphanumeric() || prev == b'_' {
        return false;
    }
    !(matches!(prev, b'.' | b'-' | b',') && i >= 2 && b[i - 2].is_ascii_digit())
}

/// Whether a number may end just before `i`.
pub(super) fn number_ends_at(b: &[u8], i: usize) -> bool {
    match b.get(i) {
        None => true,
        Some(&c) if c.is_ascii_alphanumeric() || c == b'_' => false,
        Some(b'.' | b'-' | b',') => !b.get(i + 1).is_some_and(u8::is_ascii_digit),
        Some(_) => true,
    }
}

pub(super) fn digit_run(b: &[u8], i: usize) -> usize {
    b[i..].iter().take_while(|c| c.is_ascii_digit()).count()
}

/// A payment card number starting at `i`: 13-19 digits, contiguous or in groups separated by single spaces,
/// dashes, dots or slashes, one kind per number (first group of 4, the others 3-6 digits), Luhn-valid, with a known issuer prefix and length.
pub(super) fn card_at(b: &[u8], i: usize) -> Option<usize> {
    if !number_starts_at(b, i) {
        return None;
    }
    let first = digit_run(b, i);
    let mut digits = [0u8; 19];
    let grouped = first == 4
        && matches!(b.get(i + 4), Some(b' ' | b'-' | b'.' | b'/'))
        && b.get(i + 5).is_some_and(u8::is_ascii_digit);
    if !grouped {
        if !(13..=19).contains(&first) || !number_ends_at(b, i + first) {
            return None;
        }
        digits[..first].copy_from_slice(&b[i..i + first]);
        return is_card(&digits[..first]).then_some(i + first);
    }
    let sep = b[i + 4];
    digits[..4].copy_from_slice(&b[i..i + 4]);
    let (mut n, mut pos, mut best) = (4, i + 4, None);
    while b.get(pos) == Some(&sep) && b.get(pos + 1).is_some_and(u8::is_ascii_digit) {
        let len = digit_run(b, pos + 1);
        if !(3..=6).contains(&len) || n + len > 19 {
            break;
        }
        digits[n..n + len].copy_from_slice(&b[pos + 1..pos + 1 + len]);
        n += len;
        pos += 1 + len;
        if n >= 13 && number_ends_at(b, pos) && is_card(&digits[..n]) {
            best = Some(pos);
        }
    }
    best
}

pub(super) fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &c)| {
            let d = u32::from(c - b'0');
            if k % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// Known issuer identification number ranges and the lengths their cards have.
pub(super) fn known_issuer(d: &[u8]) -> bool {
    let n = d.len();
    let prefix = |k: usize| {
        d[..k]
            .iter()
            .fold(0u32, |a, &c| a * 10 + u32::from(c - b'0'))
    };
    let (p1, p2, p3, p4, p6) = (prefix(1), prefix(2), prefix(3), prefix(4), prefix(6));
    match p1 {
        4 => matches!(n, 13 | 16 | 19),          // Visa
        5 if (51..=55).contains(&p2) => n == 16, // Mastercard
        5 if matches!(p4, 5018 | 5020 | 5038 | 5893) => (13..=19).contains(&n), // Maestro
        2 if (2221..=2720).contains(&p4) => n == 16, // Mastercard 2-series
        2 if (2200..=2204).contains(&p4) => (16..=19).contains(&n), // Mir
        3 if matches!(p2, 34 | 37) => n == 15,   // American Express
        3 if (3528..=3589).contains(&p4) => (16..=19).contains(&n), // JCB
        3 if (300..=305).contains(&p3) || p4 == 3095 || matches!(p2, 36 | 38 | 39) => {
            (14..=19).contains(&n)
        } // Diners
        6 if p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 => (16..=19).contains(&n), // Discover
        6 if p2 == 62 || (622_126..=622_925).contains(&p6) => (16..=19).contains(&n), // UnionPay
        6 if matches!(p4, 6304 | 6759 | 6761 | 6762 | 6763) => (13..=19).contains(&n), // Maestro
        _ => false,
    }
}

pub(super) fn is_card(digits: &[u8]) -> bool {
    known_issuer(digits) && luhn_valid(digits)
}

/// The digits a JSON number would show as a card: an integer, negative or not, or a float with no
/// fractional part (`4111111111111111.0`, `4.111111111111111e15`), which a reader turns back into the same
/// digits.
pub(super) fn card_candidate(n: &serde_json::Number) -> Option<u64> {
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    if let Some(i) = n.as_i64() {
        return Some(i.unsigned_abs());
    }
    let f = n.as_f64()?.abs();
    // 1e12..1e20 holds every 13- to 19-digit number; beyond 2^53 a float no longer holds each integer,
    // but the digits it prints are the ones a reader sees.
    (f.fract() == 0.0 && (1e12..1e20).contains(&f)).then_some(f as u64)
}

pub(super) fn scan_number(u: u64, tally: &mut Tally) {
    let mut buf = [0u8; 20];
    let mut n = 0;
    let mut v = u;
    loop {
        buf[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf[..n].reverse();
    if (13..=19).contains(&n) && is_card(&buf[..n]) {
        tally.hit(Kind::CreditCard);
    }
}

/// ISO 13616 IBAN lengths by country code (SWIFT IBAN registry).
pub(super) fn iban_length(cc: &[u8]) -> Option<usize> {
    let len = match cc {
        b"NO" => 15,
        b"BE" => 16,
        b"DK" | b"FI" | b"FK" | b"FO" | b"GL" | b"NL" | b"SD" => 18,
        b"MK" | b"SI" => 19,
        b"AT" | b"BA" | b"EE" | b"KZ" | b"LT" | b"LU" | b"MN" | b"XK" => 20,
        b"CH" | b"HR" | b"LI" | b"LV" => 21,
        b"BG" | b"BH" | b"CR" | b"DE" | b"GB" | b"GE" | b"IE" | b"ME" | b"RS" | b"VA" => 22,
        b"AE" | b"GI" | b"IL" | b"IQ" | b"OM" | b"SO" | b"TL" => 23,
        b"AD" | b"CZ" | b"ES" | b"MD" | b"PK" | b"RO" | b"SA" | b"SE" | b"SK" | b"TN" | b"VG" => 24,
        b"LY" | b"PT" | b"ST" => 25,
        b"IS" | b"TR" => 26,
        b"BI" | b"DJ" | b"FR" | b"GR" | b"IT" | b"MC" | b"MR" | b"SM" => 27,
        b"AL" | b"AZ" | b"BY" | b"CY" | b"DO" | b"GT" | b"HN" | b"HU" | b"LB" | b"NI" | b"PL"
        | b"SV" => 28,
        b"BR" | b"EG" | b"PS" | b"QA" | b"UA" => 29,
        b"JO" | b"KW" | b"MU" | b"YE" => 30,
        b"MT" | b"SC" => 31,
        b"LC" => 32,
        b"RU" => 33,
        _ => return None,
    };
    Some(len)
}

/// An IBAN at `s`, electronic (`DE89370400440532013000`) or printed in groups of four
/// (`DE89 3704 0044 0532 0130 00`), with its country's length and a valid mod-97 checksum.
pub(super) fn iban_at(b: &[u8], s: usize) -> Option<usize> {
    if s > 0 && (b[s - 1].is_ascii_alphanumeric() || b[s - 1] == b'_') {
        return None;
    }
    let want = iban_length(b.get(s..s + 2)?)?;
    if !b.get(s + 2..s + 4)?.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut chars = [0u8; 34];
    let (mut n, mut pos) = (0, s);
    while n < want {
        match b.get(pos) {
            Some(&c) if c.is_ascii_digit() || c.is_ascii_uppercase() => {
                chars[n] = c;
                n += 1;
                pos += 1;
            }
            Some(b' ')
                if n % 4 == 0
                    && n > 0
                    && b.get(pos + 1).is_some_and(|c| c.is_ascii_alphanumeric()) =>
            {
                pos += 1
            }
            _ => return None,
        }
    }
    if is_alnum(b.get(pos).copied()) {
        return None;
    }
    // Move the country code and check digits to the end, read letters as 10..35, and the result mod 97 is 1.
    let mut rem = 0u32;
    for &c in chars[4..n].iter().chain(&chars[..4]) {
        rem = if c.is_ascii_digit() {
            (rem * 10 + u32::from(c - b'0')) % 97
        } else {
            (rem * 100 + u32::from(c - b'A') + 10) % 97
        };
    }
    (rem == 1).then_some(pos)
}
