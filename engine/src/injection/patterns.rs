//! The phrase patterns behind each marker, written for the folded text (ASCII case-insensitive, bytes).
//!
//! Every pattern is a plain regular expression (the regex crate runs them as one DFA, in time linear in the
//! text); none uses a bounded repetition over arbitrary text, which would multiply the automaton's size.
//! Precision comes from grammar rather than from keywords alone: an imperative verb with its object
//! (`read ~/.ssh/id_rsa`, `send the data ... to https://`), not a noun that merely appears
//! (`the password field is hashed`, `Sends an e-mail to a recipient`).

use super::Marker;

/// Fewer bytes than this cannot match any pattern; such strings are not searched.
pub(super) const SHORTEST: usize = 5;

/// One byte still inside the same sentence: a full stop, `!` or `?` ends a sentence only when a space or
/// the end follows (so `~/.ssh/id_rsa` and `https://evil.example/` stay inside it); `;` and a line break end
/// it too.
const SAME_SENTENCE: &str = r"(?:[^.!?;\n]|[.!?][^\s])";

/// Imperative verbs that move or disclose data, in their base form: descriptions speak of a tool in the
/// third person ("Reads a file"), injected instructions speak to the model ("read the file").
const DISCLOSE: &str = r"(?:read|cat|open|include|send|pass|provide|copy|paste|share|upload|attach|print|output|reveal|dump|leak|forward|exfiltrate|extract|retrieve|put|insert|embed)";

/// Words allowed between such a verb and its object: determiners, possessives, "the contents of".
/// An opening quote, backtick or bracket may wrap the object.
const OBJECT_FILLER: &str = concat!(
    r"(?:(?:the|your|my|our|their|its|his|her|all|any|every|entire|whole|full|raw|user's|users'|contents?",
    r"|text|data|values?|files?|of|in|inside|within|stored|saved|current|local|following|this|that|these",
    r"|those|each)\s+)*[\x22'`(<]?",
);

/// Files whose mere mention next to such a verb is a credential request.
const CREDENTIAL_FILE: &str = concat!(
    r"(?:[^\s\x22'<>()\[\]{}`]*(?:\.ssh\b|\bid_(?:rsa|dsa|ecdsa|ed25519)\b|\.aws/(?:credentials|config)\b",
    r"|\.netrc\b|\.npmrc\b|\.pypirc\b|\.git-credentials\b|\.docker/config\.json|/etc/shadow\b|\bmcp\.json\b",
    r"|\.kube/config\b)",
    // `.env` as a file (`./.env`, `the .env file`), not `process.env` nor `.env.example`.
    r"|(?:[\w~.-]*/)?\.env(?:[^\w.]|$))",
);

/// Credentials named in words; they count only as the object the sentence is about, so `send the password
/// reset link` and `the password field is hashed` are not requests.
const CREDENTIAL_WORD: &str = concat!(
    r"(?:api[\s_-]?keys?|private[\s_-]?keys?|secret[\s_-]?keys?|passwords?|passwd|passphrases?",
    r"|access[\s_-]?tokens?|auth(?:entication)?[\s_-]?tokens?|bearer\s+tokens?|session[\s_-]?(?:tokens?|cookies?)",
    r"|ssh[\s_-]?keys?|credentials|seed\s+phrases?|recovery\s+phrases?)",
    r"(?:\s*(?:[.,;:!?)\x22'`\]]|$)|\s+(?:to|as|in|into|and|with|here|verbatim|along|too|also|then|inside|via)\b)",
);

/// Data an exfiltration instruction tells the model to send.
const OUTBOUND_OBJECT: &str = concat!(
    r"(?:it|them|this|that|these|those|all|everything|(?:the|your|my|any|all|its|their)\s+(?:[a-z'-]+\s+){0,3}",
    r"(?:contents?|data|output|results?|files?|keys?|tokens?|secrets?|credentials|passwords?|conversation|chat",
    r"|history|messages?|info|information|details|values?|text|logs?|env(?:ironment)?(?:\s+variables)?))",
);

/// Query parameters an exfiltration link asks the model to fill.
const LEAK_PARAM: &str = concat!(
    r"(?:data|d|q|k|secret|secrets|payload|content|contents|leak|exfil|creds?|credentials|password|pw|env|ssh",
    r"|info|msg|conversation|chat|history|memory|context|sidenote|notes?)",
);

/// A parameter value left for the model to fill: empty, or a placeholder.
const TO_FILL: &str = r"(?:[{<\[$]|%7b|%3c|[\s\x22'`)&]|$)";

/// Every pattern with the marker it stands for. Compiled together, case-insensitively, ASCII only (the
/// text is folded first).
pub(super) fn rules() -> Vec<(Marker, String)> {
    let s = SAME_SENTENCE;
    let hidden = [
        r"<\s*/?\s*(?:important|system|instructions?|secret|hidden)\s*>".to_owned(),
        r"\[/?inst\]|<\|(?:im_start|im_end|system|endoftext)\|>".to_owned(),
        r"\b(?:do\s+not|don't|dont|never)\s+(?:tell|inform|notify|alert|warn)\s+the\s+user\b"
            .to_owned(),
        r"\b(?:do\s+not|don't)\s+mention\b".to_owned(),
        r"\bwithout\s+(?:telling|informing|notifying|alerting)\b".to_owned(),
        r"\buser\s+(?:must|should|will|may)\s+not\s+(?:know|see|notice|find\s+out|be\s+told)\b"
            .to_owned(),
        r"\bbefore\s+using\s+this\s+tool\s*,?\s*you\s+(?:must|need\s+to|have\s+to)\b".to_owned(),
        r"\bthis\s+is\s+(?:very|extremely|really)\s+important\b".to_owned(),
    ];
    let ignore = [
        concat!(
            r"\bignore\s+(?:(?:all|any|the|of|your|my)\s+)*(?:previous|prior|above|earlier|preceding|former)",
            r"\s+(?:instructions?|prompts?|rules|directions|directives|guidelines)\b"
        )
        .to_owned(),
        concat!(
            r"\bdisregard\s+(?:(?:all|any|the|of|your|previous|prior|above|earlier)\s+)+",
            r"(?:instructions?|prompts?|rules|directions|guidelines)\b"
        )
        .to_owned(),
        concat!(
            r"\bforget\s+(?:(?:all|your|everything|the|about|previous|prior|earlier|above)\s+)+",
            r"(?:instructions?|prompts?|rules|guidelines)\b"
        )
        .to_owned(),
        // "you are now" alone is also how results say "you are now logged in": only a new identity counts.
        concat!(
            r"\byou\s+are\s+now\s+(?:an?\s+|the\s+|my\s+|in\s+)?(?:[a-z-]+\s+){0,2}",
            r"(?:assistant|ai|model|agent|bot|chatbot|dan|jailbroken|unrestricted|unfiltered|uncensored",
            r"|(?:developer|god|admin|debug|dan)\s+mode)\b"
        )
        .to_owned(),
        r"\bnew\s+(?:system\s+)?instructions\s*:".to_owned(),
        r"\bsystem\s+prompt\s+override\b|\boverride\s+(?:the\s+|your\s+)?system\s+prompt\b".to_owned(),
    ];
    let credential = [
        format!(r"\b{DISCLOSE}\s+{OBJECT_FILLER}{CREDENTIAL_FILE}"),
        format!(r"\b{DISCLOSE}\s+{OBJECT_FILLER}{CREDENTIAL_WORD}"),
        format!(
            r"{CREDENTIAL_FILE}{s}*\b(?:must|should|needs?\s+to|has\s+to|have\s+to)\s+be\s+(?:read|included|sent|passed|provided|copied|pasted|shared|uploaded|attached|forwarded)\b"
        ),
    ];
    let exfiltration = [
        format!(
            r"\b(?:send|post|upload|forward|transmit|exfiltrate|leak|submit)\s+{OUTBOUND_OBJECT}\b{s}*\bto\s+<?(?:https?|ftp)://"
        ),
        format!(r#"(?:https?:)?//[^\s"'<>]*[?&]{LEAK_PARAM}={TO_FILL}"#),
        format!(
            r"\bappend\b{s}*\bto\s+(?:(?:the|this|that|a|your|its)\s+)?(?:url|link|query(?:\s+string)?|request\s+url|image\s+url|endpoint)\b"
        ),
        // curl or wget sending a file (`-d @file`, `-F f=@file`, `-T file`) or a command's output
        // (`--data "$(env)"`); a literal body, as API documentation shows, is not exfiltration. Flags are
        // case-sensitive: `-f` is curl's --fail, `-D` dumps headers.
        concat!(
            r"\b(?:curl|wget)\b[^\n|;&]*\s(?:(?:(?-i:-d|-F)|--data[\w-]*|--post-data|--form[\w-]*)(?:\s+|=)?",
            r"[\x22']?(?:[^\s\x22'=]*=)?(?:@[^\s-]|\$\(|`)|(?:(?-i:-T)|--upload-file|--post-file)[\s=])"
        )
        .to_owned(),
        // The classic exfiltration link: a markdown image the client fetches, with the data in its query.
        format!(
            r"!\[[^\]\n]*\]\(\s*<?(?:https?:)?//[^\s)]*[?&](?:{LEAK_PARAM}=|(?:key|token|message|text)=|\w+={TO_FILL})"
        ),
    ];
    let mut out = Vec::new();
    for (marker, patterns) in [
        (Marker::HiddenInstruction, &hidden[..]),
        (Marker::IgnoreInstructions, &ignore[..]),
        (Marker::CredentialRequest, &credential[..]),
        (Marker::Exfiltration, &exfiltration[..]),
    ] {
        for p in patterns {
            out.push((marker, format!("(?i-u){p}")));
        }
    }
    out
}

/// What makes an HTML comment an instruction to the model rather than a note between authors.
pub(super) const COMMENT_IMPERATIVE: &str = concat!(
    r"(?i-u)\byou\s+(?:must|should|will|need\s+to|are\s+(?:an?|the|now))\b|\bassistant\b",
    r"|\bthe\s+(?:model|ai|llm|agent)\b|\bai\s+(?:model|agent)\b|\bllm\b|\bignore\b|\binstead\s+of\b",
    r"|\bbefore\s+using\b|\b(?:call|use|invoke)\s+(?:the|this)\s+tool\b",
);
