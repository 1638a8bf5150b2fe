//! URLs that parsers read differently: toolgate judges a URL by the host the WHATWG parser (the `url` crate)
//! finds, but the upstream may fetch it with an RFC 3986 client (curl, Python's `urllib`, Go's `net/url`).
//! `http://allowed.example\@evil.example/` is `allowed.example` to the first and `evil.example` to the second:
//! judged as one host, fetched from another. Rather than guess which parser the upstream uses, toolgate marks
//! every URL on which they may disagree ([`parsers_disagree`]) and the policy denies it.

/// True when RFC 3986 and WHATWG parsing may find different hosts in `url` (`scheme://…`; text without `://`
/// names no host to either):
/// - a backslash anywhere (WHATWG reads it as `/` in http(s) URLs, RFC 3986 as an ordinary character), a
///   control character or whitespace (WHATWG drops tabs and newlines anywhere; other parsers stop or keep them);
/// - an authority with more than one `@` (parsers split userinfo at the first or at the last one);
/// - a `%` in the host (WHATWG decodes it, RFC 3986 clients send it to DNS as written);
/// - an authority, delimited as RFC 3986 does (up to the first `/`, `?` or `#`), whose host is not the host
///   the WHATWG parser finds (`http:///evil.example` has an empty host to RFC 3986).
///
/// Hosts are compared after WHATWG host parsing of the RFC 3986 host, so only where the authority is cut
/// matters: IDN (`bücher.example`) and IPv4 spellings (`2852039166`) are the same host to both and are
/// judged as the host they name. `file:` URLs are judged as the path they name, not here.
pub(super) fn parsers_disagree(url: &str) -> bool {
    let s = url.trim();
    // Without an authority there is no host to disagree on (and none the policy could allow).
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    if s.chars()
        .any(|c| c == '\\' || c.is_control() || c.is_whitespace())
    {
        return true;
    }
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "file" {
        return false;
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_and_port = match authority.split_once('@') {
        Some((_, after)) if after.contains('@') => return true,
        Some((_, after)) => after,
        None => authority,
    };
    if host_and_port.contains('%') {
        return true;
    }
    let rfc_host = if host_and_port.starts_with('[') {
        match host_and_port.find(']') {
            Some(end) => &host_and_port[..=end],
            None => return true,
        }
    } else {
        host_and_port.split(':').next().unwrap_or_default()
    };
    // Not a URL to WHATWG: no host is judged, and the policy denies the URL as one it cannot judge.
    let Ok(parsed) = url::Url::parse(s) else {
        return false;
    };
    let whatwg_host = parsed.host_str().unwrap_or_default();
    if rfc_host.is_empty() || whatwg_host.is_empty() {
        return rfc_host.is_empty() != whatwg_host.is_empty();
    }
    if matches!(scheme.as_str(), "http" | "https" | "ws" | "wss" | "ftp") {
        match url::Host::parse(rfc_host) {
            Ok(host) => host.to_string() != whatwg_host,
            Err(_) => true,
        }
    } else {
        !rfc_host.eq_ignore_ascii_case(whatwg_host)
    }
}

#[cfg(test)]
mod tests {
    use super::parsers_disagree;

    #[test]
    fn urls_parsers_split_differently_are_marked() {
        for url in [
            // WHATWG: host allowed.example, path /@evil.example/; curl: userinfo `allowed.example\`, host evil.example
            r"http://allowed.example\@evil.example/",
            r"http://evil.example\.allowed.example/",
            r"https://allowed.example\\evil.example",
            "http://allowed.example/\\..\\x",
            // WHATWG drops tabs and newlines anywhere
            "http://allo\twed.example/",
            "http://allowed.example\n.evil.example/",
            "http://allowed.example /",
            "http://allowed.example\u{0}@evil.example/",
            // userinfo holding `@`: split at the first `@` by some, at the last by others
            "http://a@allowed.example@evil.example/",
            "http://user:p@ss@evil.example/",
            // percent-encoded host bytes: decoded by WHATWG, sent as written by others
            "http://evil%2eexample/",
            "http://%65vil.example/",
            // an empty RFC 3986 authority: WHATWG skips the extra slash and finds a host
            "http:///evil.example/",
            "https:////evil.example/x",
            "http://[::1/",
        ] {
            assert!(parsers_disagree(url), "{url:?}");
        }
    }

    #[test]
    fn urls_every_parser_reads_alike_are_not_marked() {
        for url in [
            "https://docs.rs/regorus/latest",
            "HTTPS://API.Example.COM:443/a/../b?q=1#f",
            "http://user:secret@example.com/",
            "http://evil.example#@allowed.example",
            "http://evil.example?@allowed.example",
            "http://evil.example:80@allowed.example/",
            "http://[::1]:8080/",
            "http://[::ffff:169.254.169.254]/",
            // IPv4 spellings and IDN: one host to every parser, judged as that host
            "http://2852039166/",
            "http://0251.0376.0251.0376/",
            "http://0xa9fea9fe/",
            "http://bücher.example/",
            "custom://Host.Example/p",
            "file:///etc/passwd",
            "file://localhost/etc/hosts",
            "mailto:a@example.com",
            "not a url",
        ] {
            assert!(!parsers_disagree(url), "{url:?}");
        }
    }
}
