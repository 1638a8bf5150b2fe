//! Personal identifiers: US social security numbers and e-mail addresses, and the `@` scan that also finds
//! passwords in URL userinfo.

use super::financial::{number_ends_at, number_starts_at};
use super::generic::{is_nontrivial, NameClass};
use super::kinds::{Kind, Tally};
use super::text::{contains, overlaps, Claims};

pub(super) fn ssn_at(b: &[u8], i: usize) -> Option<usize> {
    let s = b.get(i..i + 11)?;
    let shape = s.iter().enumerate().all(|(k, &c)| {
        if k == 3 || k == 6 {
            c == b'-'
        } else {
            c.is_ascii_digit()
        }
    });
    if !shape || !number_starts_at(b, i) || !number_ends_at(b, i + 11) {
        return None;
    }
    let area = &s[0..3];
    // SSA never issues area 000, 666 or 900-999, group 00 or serial 0000.
    if area == b"000"
        || area == b"666"
        || area[0] == b'9'
        || &s[4..6] == b"00"
        || &s[7..11] == b"0000"
    {
        return None;
    }
    Some(i + 11)
}

// ---------------------------------------------------------------------------------------------------------
// '@': e-mail addresses and credentials in URLs

pub(super) fn is_local_part_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// Top-level "domains" that are really file extensions (`icon@2x.png`, `pkg@1.0.tgz`-like asset names).
pub(super) const FILE_EXTENSIONS: [&[u8]; 16] = [
    b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"ico", b"bmp", b"js", b"mjs", b"ts", b"css",
    b"json", b"html", b"txt", b"pdf",
];

pub(super) fn scan_at_signs(b: &[u8], tally: &mut Tally, claims: &mut Claims, generic: &mut u32) {
    let mut from = 0;
    while let Some(off) = b[from..].iter().position(|&c| c == b'@') {
        let at = from + off;
        from = at + 1;
        if let Some((start, end)) = url_password(b, at) {
            if !overlaps(claims, start, end) {
                *generic += 1;
                claims.found(start, end, Kind::GenericSecret);
            }
            continue;
        }
        if let Some((start, end)) = email_at(b, at) {
            if !overlaps(claims, start, end) {
                tally.hit(Kind::Email);
                claims.found(start, end, Kind::Email);
            }
        }
    }
}

/// `scheme://user:password@host`: the range of the password, when there is a real one.
pub(super) fn url_password(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut i = at;
    while i > 0
        && !matches!(
            b[i - 1],
            b'/' | b'@' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>' | b'`'
        )
        && !b[i - 1].is_ascii_whitespace()
    {
        i -= 1;
    }
    if i < 3 || &b[i - 3..i] != b"://" {
        return None;
    }
    let colon = i + b[i..at].iter().position(|&c| c == b':')?;
    let password = &b[colon + 1..at];
    is_nontrivial(password, NameClass::UrlPassword).then_some((colon + 1, at))
}

pub(super) fn email_at(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut start = at;
    while start > 0 && is_local_part_byte(b[start - 1]) {
        start -= 1;
    }
    let local = &b[start..at];
    if local.is_empty()
        || local.len() > 64
        || local[0] == b'.'
        || local[local.len() - 1] == b'.'
        || contains(local, b"..")
    {
        return None;
    }
    // `user@host` after `://` or `:` is URL userinfo or an scp-style remote (`git@github.com:org/repo`).
    if (start > 0 && matches!(b[start - 1], b'/' | b':')) || local == b"git" {
        return None;
    }
    // Domain: labels of [A-Za-z0-9-] joined by single dots, ending in an alphabetic TLD of 2+ letters.
    let mut end = at + 1;
    let mut last_label;
    let mut labels = 0;
    loop {
        let label_start = end;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'-') {
            end += 1;
        }
        if end == label_start || b[label_start] == b'-' || b[end - 1] == b'-' {
            return None;
        }
        labels += 1;
        last_label = (label_start, end);
        if end + 1 < b.len() && b[end] == b'.' && b[end + 1].is_ascii_alphanumeric() {
            end += 1;
        } else {
            break;
        }
    }
    let tld = &b[last_label.0..last_label.1];
    if labels < 2 || tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    if FILE_EXTENSIONS
        .iter()
        .any(|ext| tld.eq_ignore_ascii_case(ext))
        || b.get(end) == Some(&b'_')
    {
        return None;
    }
    Some((start, end))
}
