//! Private keys, whatever their armour: PEM blocks labelled as private keys, blocks relabelled as something
//! else (`-----BEGIN FOO-----` around a key body), and bodies without any armour. A body is recognised by
//! what its base64 decodes to, not by its label: the DER of a PKCS#1, PKCS#8 (plain or encrypted), SEC1 or
//! PKCS#12 structure, an OpenSSH or SSH.com private key, or (inside a PGP block) an OpenPGP secret-key packet.

use super::secrets::base64url_decode;
use super::text::{contains, Claims, BASE64, CLASS};

/// Base64 characters a key body must have: a header alone (in documentation, say) is no key, and the
/// smallest real one (an Ed25519 PKCS#8 body) has 64.
const MIN_BODY: usize = 40;

/// Base64 characters decoded to recognise a body: 24 bytes, enough for the longest signature below
/// (PKCS#12's outer header, version and content-type OID).
const HEAD_CHARS: usize = 32;

/// Handles a `-----BEGIN X-----` header at `start..header_end`. A block holding a private key, by its label
/// or by its body, is reported (the returned end covers the block). Any other block whose body is what such
/// blocks hold (DER, an OpenPGP packet, or a long run of base64) is claimed as public, since its body
/// would otherwise look like random tokens; one that holds anything else is left to the other detectors.
pub(super) fn pem_block(
    b: &[u8],
    start: usize,
    header_end: usize,
    claims: &mut Claims,
) -> Option<usize> {
    let label = &b[start + 11..header_end - 5];
    let labelled_private = label.ends_with(b"PRIVATE KEY") || label.ends_with(b"PRIVATE KEY BLOCK");
    let footer = b[header_end..]
        .windows(8)
        .position(|w| w == b"-----END")
        .map(|p| header_end + p);
    let body_end = footer.unwrap_or_else(|| {
        // A truncated key still leaks: its body runs as long as it looks like base64 or line breaks.
        header_end
            + b[header_end..]
                .iter()
                .position(|&c| !(c.is_ascii_alphanumeric() || b"+/=:,- \t\r\n\\".contains(&c)))
                .unwrap_or(b.len() - header_end)
    });
    let block_end = match footer {
        Some(f) => {
            let after = f + 8;
            b[after..]
                .windows(5)
                .position(|w| w == b"-----")
                .map_or(b.len(), |p| after + p + 5)
        }
        None => body_end,
    };
    let body = &b[header_end..body_end];
    let chars = body
        .iter()
        .filter(|c| c.is_ascii_alphanumeric() || **c == b'+' || **c == b'/')
        .count();
    if labelled_private {
        return (chars >= MIN_BODY).then_some(block_end);
    }
    let encoded = body_base64(body);
    let head = decode(&encoded[..encoded.len().min(HEAD_CHARS)]);
    let pgp = contains(label, b"PGP");
    // A relabelled key: the label lies, the body does not. `DEK-Info` only ever heads an encrypted key.
    let private = is_key_material(&head)
        || (pgp && pgp_tag(&head).is_some_and(|t| t == 5 || t == 7))
        || contains(body, b"DEK-Info:");
    if private {
        return (chars >= MIN_BODY).then_some(block_end);
    }
    let data = encoded.len() >= 256
        || (pgp && pgp_tag(&head).is_some())
        || is_der_sequence(&decode(&encoded));
    if data {
        claims.public(start, block_end);
    }
    None
}

/// A private key body with no armour starting at `start` (at most one line break, written or escaped, may
/// precede it in the run): the end of the body when its first bytes decode to key material.
pub(super) fn bare_key_at(b: &[u8], start: usize) -> Option<usize> {
    if !matches!(b.get(start), Some(b'M' | b'b' | b'P')) {
        return None;
    }
    let head_end = start
        + b[start..]
            .iter()
            .take(HEAD_CHARS)
            .take_while(|&&c| CLASS[usize::from(c)] & BASE64 != 0)
            .count();
    if head_end - start < HEAD_CHARS || !is_key_material(&decode(&b[start..head_end])) {
        return None;
    }
    // The body runs on over its first line, then over each following line (after a real or a written
    // `\n`) made only of base64 and padding: prose after the key is left alone.
    let line_end = |from: usize| {
        from + b[from..]
            .iter()
            .take_while(|&&c| CLASS[usize::from(c)] & BASE64 != 0 || c == b'=')
            .count()
    };
    let mut end = line_end(head_end);
    let mut chars = end - start;
    loop {
        let next = match (b.get(end), b.get(end + 1)) {
            (Some(b'\r'), Some(b'\n')) => end + 2,
            (Some(b'\n'), _) => end + 1,
            (Some(b'\\'), Some(b'n')) => end + 2,
            _ => break,
        };
        let stop = line_end(next);
        let whole_line = matches!(
            (b.get(stop), b.get(stop + 1)),
            (None, _) | (Some(b'\n' | b'\r'), _) | (Some(b'\\'), Some(b'n'))
        );
        if stop == next || !whole_line {
            break;
        }
        chars += stop - next;
        end = stop;
    }
    (chars >= MIN_BODY).then_some(end)
}

/// The base64 characters of a block's body, without line breaks, the RFC 1421 / OpenPGP header lines
/// (`Proc-Type: …`, `Version: …`) that may precede it, padding, or an OpenPGP checksum line after it.
fn body_base64(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut started = false;
    for line in lines(body) {
        let line = line.trim_ascii();
        if !started {
            if line.is_empty() || line.contains(&b':') {
                continue;
            }
            started = true;
        }
        if line.first() == Some(&b'=') {
            break;
        }
        let data = line
            .strip_suffix(b"==")
            .or(line.strip_suffix(b"="))
            .unwrap_or(line);
        if !data.iter().all(|&c| CLASS[usize::from(c)] & BASE64 != 0) {
            break;
        }
        out.extend_from_slice(data);
    }
    out
}

/// Lines split at real line breaks and at written ones (`\n` as two characters, in JSON held in a string).
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = body;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut i = 0;
        while i < rest.len() {
            if rest[i] == b'\n' {
                let line = &rest[..i];
                rest = &rest[i + 1..];
                return Some(line);
            }
            if rest[i] == b'\\' && matches!(rest.get(i + 1), Some(b'n')) {
                let line = &rest[..i];
                rest = &rest[i + 2..];
                return Some(line);
            }
            i += 1;
        }
        let line = rest;
        rest = &[];
        Some(line)
    })
}

/// Base64 (standard or URL alphabet, no padding) to bytes; an odd tail is dropped, invalid input decodes to
/// nothing.
fn decode(encoded: &[u8]) -> Vec<u8> {
    base64url_decode(encoded).unwrap_or_default()
}

/// Whether decoded bytes start like a private key: OpenSSH's `openssh-key-v1` magic, SSH.com's key magic,
/// or the DER of a private key structure.
pub(super) fn is_key_material(d: &[u8]) -> bool {
    d.starts_with(b"openssh-key-v1\0") || d.starts_with(&[0x3f, 0x6f, 0xf9, 0xeb]) || der_private(d)
}

/// OIDs under which encrypted private keys are wrapped: PKCS#5 (PBES1, PBES2) and PKCS#12 PBE.
const PBE_OIDS: [&[u8]; 2] = [
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05],
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01],
];

/// PKCS#7 `data` content type, which a PKCS#12 file's `authSafe` holds.
const PKCS7_DATA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01,
];

/// The DER of a private key, by its first bytes: `SEQUENCE { INTEGER version, … }` where what follows the
/// one-byte version is what only private key structures put there.
fn der_private(d: &[u8]) -> bool {
    let Some(i) = der_header(d, 0, 0x30) else {
        return false;
    };
    if d.get(i..i + 2) != Some(&[0x02u8, 0x01][..]) {
        // EncryptedPrivateKeyInfo: SEQUENCE { AlgorithmIdentifier { OID of a PBE scheme, … }, OCTET STRING }.
        return der_header(d, i, 0x30)
            .and_then(|j| der_header(d, j, 0x06).map(|k| &d[k..]))
            .is_some_and(|oid| PBE_OIDS.iter().any(|p| oid.starts_with(p)));
    }
    let (version, next) = (d.get(i + 2).copied(), i + 3);
    match (version, d.get(next)) {
        // PKCS#1 RSA and DSA: the modulus (or p) follows, a long INTEGER.
        (Some(0), Some(0x02)) => matches!(d.get(next + 1), Some(0x81..=0x83)),
        // PKCS#8 PrivateKeyInfo / OneAsymmetricKey: the algorithm identifier, a SEQUENCE starting with an OID.
        (Some(0 | 1), Some(0x30)) => {
            der_header(d, next, 0x30).is_some_and(|k| d.get(k) == Some(&0x06))
        }
        // SEC1 ECPrivateKey: an OCTET STRING the size of a curve's scalar.
        (Some(1), Some(0x04)) => matches!(
            d.get(next + 1),
            Some(0x18 | 0x1c | 0x20 | 0x30 | 0x41 | 0x42)
        ),
        // PKCS#12 PFX (version 3): a ContentInfo of type data.
        (Some(3), Some(0x30)) => {
            der_header(d, next, 0x30).is_some_and(|k| d[k..].starts_with(PKCS7_DATA))
        }
        _ => false,
    }
}

/// The index after the tag and length of a DER element with `tag` at `at`, when the bytes hold the whole
/// tag and length: a long-form length cut short (`30 82 01`, the head of a short or truncated body) is no
/// header, so callers may slice up to the index (the fuzzer found `is_der_sequence` indexing past the end).
fn der_header(d: &[u8], at: usize, tag: u8) -> Option<usize> {
    if d.get(at) != Some(&tag) {
        return None;
    }
    let end = match *d.get(at + 1)? {
        l if l < 0x80 => at + 2,
        0x81 => at + 3,
        0x82 => at + 4,
        0x83 => at + 5,
        _ => return None,
    };
    (end <= d.len()).then_some(end)
}

/// Whether the bytes are exactly one DER SEQUENCE (what a certificate, a CSR, a CRL or a public key block holds).
fn is_der_sequence(d: &[u8]) -> bool {
    let Some(content) = der_header(d, 0, 0x30) else {
        return false;
    };
    let len = if d[1] < 0x80 {
        usize::from(d[1])
    } else {
        d[2..content]
            .iter()
            .fold(0usize, |a, &x| (a << 8) | usize::from(x))
    };
    content + len == d.len()
}

/// The tag of the OpenPGP packet the bytes start with, if they start with a packet header.
fn pgp_tag(d: &[u8]) -> Option<u8> {
    let p = *d.first()?;
    if p & 0x80 == 0 {
        return None;
    }
    Some(if p & 0x40 != 0 {
        p & 0x3f
    } else {
        (p >> 2) & 0x0f
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(d: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(d)
    }

    #[test]
    fn key_structures_are_recognised_by_their_first_bytes() {
        // PKCS#1 RSA, PKCS#8 Ed25519, SEC1 P-256, encrypted PKCS#8 (PBES2), PKCS#12, OpenSSH.
        let keys: [&[u8]; 6] = [
            &[
                0x30, 0x82, 0x04, 0xa4, 0x02, 0x01, 0x00, 0x02, 0x82, 0x01, 0x01, 0x00,
            ],
            &[
                0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70,
            ],
            &[0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20, 0x11],
            &[
                0x30, 0x82, 0x01, 0x00, 0x30, 0x5b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
                0x01, 0x05, 0x0d,
            ],
            &[
                0x30, 0x82, 0x0a, 0x00, 0x02, 0x01, 0x03, 0x30, 0x82, 0x09, 0xc6, 0x06, 0x09, 0x2a,
                0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01,
            ],
            b"openssh-key-v1\0\0\0\0\x04none",
        ];
        for k in keys {
            assert!(is_key_material(k), "{k:02x?}");
        }
        // A certificate, a public key (SPKI), an RSA public key (PKCS#1), an ECDSA signature, an SNMP message.
        let public: [&[u8]; 5] = [
            &[
                0x30, 0x82, 0x03, 0x5d, 0x30, 0x82, 0x02, 0x45, 0xa0, 0x03, 0x02, 0x01, 0x02,
            ],
            &[
                0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
            ],
            &[0x30, 0x82, 0x01, 0x0a, 0x02, 0x82, 0x01, 0x01, 0x00, 0xc4],
            &[0x30, 0x44, 0x02, 0x20, 0x7f, 0x11],
            &[
                0x30, 0x29, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c',
            ],
        ];
        for p in public {
            assert!(!is_key_material(p), "{p:02x?}");
        }
    }

    #[test]
    fn der_sequence_must_be_exact() {
        assert!(is_der_sequence(&[0x30, 0x03, 0x02, 0x01, 0x00]));
        assert!(!is_der_sequence(&[0x30, 0x04, 0x02, 0x01, 0x00]));
        let mut long = vec![0x30, 0x82, 0x01, 0x00];
        long.resize(260, 0);
        assert!(is_der_sequence(&long));
        assert!(!is_der_sequence(b"AKIAIOSFODNN7EXAMPLE"));
    }

    #[test]
    fn a_length_cut_short_is_no_header() {
        // What a short armoured body decodes to (`MIIB` is 30 82 01): the long-form length is missing a byte.
        // The fuzzer's case: `is_der_sequence` sliced past the end and panicked.
        for d in [
            &[0x30, 0x82, 0x01][..],
            &[0x30, 0x81],
            &[0x30, 0x83, 0x01, 0x00],
        ] {
            assert_eq!(der_header(d, 0, 0x30), None, "{d:02x?}");
            assert!(!is_der_sequence(d), "{d:02x?}");
            assert!(!is_key_material(d), "{d:02x?}");
        }
        // The same cut inside a private key's structure (the PBE and PKCS#12 branches sliced there too).
        assert!(!is_key_material(&[0x30, 0x03, 0x30, 0x00, 0x06, 0x82]));
        assert!(!is_key_material(&[
            0x30, 0x03, 0x02, 0x01, 0x03, 0x30, 0x82
        ]));
        // A header that ends exactly at the end of the bytes is still one.
        assert_eq!(der_header(&[0x30, 0x82, 0x00, 0x00], 0, 0x30), Some(4));
        assert!(is_der_sequence(&[0x30, 0x00]));
    }

    #[test]
    fn bare_bodies() {
        let mut der = vec![
            0x30, 0x82, 0x04, 0xa4, 0x02, 0x01, 0x00, 0x02, 0x82, 0x01, 0x01, 0x00,
        ];
        der.extend((0..120u8).map(|i| i.wrapping_mul(37)));
        let body = b64(&der);
        let text = format!("key: {}\nnext line.", body);
        let start = text.find('M').unwrap();
        let end = bare_key_at(text.as_bytes(), start).unwrap();
        assert_eq!(&text[start..end], body);
        // The same bytes shifted by one are no key.
        assert_eq!(bare_key_at(b64(&der[1..]).as_bytes(), 0), None);
    }
}
