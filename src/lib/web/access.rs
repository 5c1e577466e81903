//! Who may use the dashboard: on loopback anyone on the machine; beyond it only a holder of
//! one of its tokens. Pure checks, so that every rule is a table test.
//!
//! A token is given as `NAME:SECRET` (the name is who the log says acted) or as a bare
//! secret (logged as `token`). A browser presents it once as `?token=SECRET`, which sets an
//! `HttpOnly`, `SameSite=Strict` cookie; other clients send `Authorization: Bearer SECRET`.
//! Two more rules stop other web sites from using a browser that can reach the dashboard:
//! an action (a POST) must come from the dashboard's own origin, and a dashboard without
//! tokens answers only to a loopback host name (no DNS rebinding).

use std::net::SocketAddr;

/// The cookie that carries a browser's token.
pub const COOKIE: &str = "tessera_token";

/// One accepted token.
#[derive(Clone)]
pub struct Token {
    /// Who holds it (logged with each action).
    pub name: String,
    secret: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        write!(f, "Token({})", self.name)
    }
}

/// Parses `--token`: comma-separated `NAME:SECRET` or bare secrets, each secret at least
/// 16 characters.
pub fn parse_tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    for (i, item) in text.split(',').map(str::trim).enumerate() {
        if item.is_empty() {
            continue;
        }
        let (name, secret) = match item.split_once(':') {
            Some((name, secret)) => (name.to_string(), secret.to_string()),
            None => ("token".to_string(), item.to_string()),
        };
        let ok_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
        if !ok_name {
            return Err(format!(
                "token {}: the name before ':' may hold letters, digits and - _ . @ only",
                i + 1
            ));
        }
        if secret.chars().count() < 16 || secret.chars().any(|c| c.is_whitespace() || c == ';') {
            return Err(format!(
                "token {} ({name}): a secret needs 16 characters or more, without spaces or ';'",
                i + 1
            ));
        }
        tokens.push(Token { name, secret });
    }
    Ok(tokens)
}

/// Whether `addr` reaches only this machine.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Refuses to listen beyond loopback without a token.
pub fn check_listen(addr: &SocketAddr, tokens: &[Token]) -> Result<(), String> {
    if is_loopback(addr) || !tokens.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "--listen {addr} reaches beyond this machine: give --token (or TESSERA_WEB_TOKEN) so that no one on the network can cancel jobs anonymously"
        ))
    }
}

/// What a request presents.
#[derive(Debug, Default, Clone, Copy)]
pub struct Presented<'a> {
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The `Cookie` header.
    pub cookie: Option<&'a str>,
    /// The `token` query parameter.
    pub query: Option<&'a str>,
    /// The `Host` header.
    pub host: Option<&'a str>,
    /// The `Origin` header.
    pub origin: Option<&'a str>,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or a wrong one (401).
    Token,
    /// A host name that is not this dashboard's (403).
    Host,
    /// An action from another origin (403).
    Origin,
}

impl Refusal {
    /// Why, for the person refused.
    pub fn message(&self) -> &'static str {
        match self {
            Refusal::Token => {
                "this dashboard needs a token: open it as /?token=SECRET, or send `Authorization: Bearer SECRET`"
            }
            Refusal::Host => {
                "this dashboard listens on loopback and answers only to a loopback host name (127.0.0.1, localhost, [::1])"
            }
            Refusal::Origin => "an action must come from the dashboard's own page",
        }
    }
}

/// Who may make the request (`local` on a dashboard without tokens), or why not.
/// `action`: whether it changes something (a POST).
pub fn admit(tokens: &[Token], presented: Presented<'_>, action: bool) -> Result<String, Refusal> {
    let host = presented.host.unwrap_or("");
    if action
        && let Some(origin) = presented.origin
        && origin_host(origin) != Some(host)
    {
        return Err(Refusal::Origin);
    }
    if tokens.is_empty() {
        return if is_loopback_host(host) {
            Ok("local".into())
        } else {
            Err(Refusal::Host)
        };
    }
    let offered = [
        presented
            .authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim),
        presented.cookie.and_then(cookie_token),
        presented.query,
    ];
    offered
        .into_iter()
        .flatten()
        .find_map(|secret| {
            tokens
                .iter()
                .find(|t| same(t.secret.as_bytes(), secret.as_bytes()))
        })
        .map(|t| t.name.clone())
        .ok_or(Refusal::Token)
}

/// Whether `token` is one of `tokens` (a `?token=` that sets the cookie).
pub fn is_token(tokens: &[Token], token: &str) -> bool {
    tokens
        .iter()
        .any(|t| same(t.secret.as_bytes(), token.as_bytes()))
}

/// Compares in time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie_token(cookie: &str) -> Option<&str> {
    cookie
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// `host:port` of an `Origin` (`http://host:port`).
fn origin_host(origin: &str) -> Option<&str> {
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
}

fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef";

    #[test]
    fn tokens_parse_with_names_and_refuse_short_secrets() {
        let tokens = parse_tokens(&format!("ana:{SECRET}, {SECRET}x")).unwrap();
        let names: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["ana", "token"]);
        assert!(!format!("{:?}", tokens[0]).contains(SECRET));
        for bad in ["ana:short", "a b:0123456789abcdef", "0123456789abcde f"] {
            assert!(parse_tokens(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listening_beyond_loopback_needs_a_token() {
        let tokens = parse_tokens(SECRET).unwrap();
        let lan: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(check_listen(&local, &[]).is_ok());
        assert!(check_listen(&lan, &[]).unwrap_err().contains("--token"));
        assert!(check_listen(&lan, &tokens).is_ok());
    }

    #[test]
    fn requests_are_admitted_by_token_host_and_origin() {
        let tokens = parse_tokens(&format!("ana:{SECRET}")).unwrap();
        let bearer = format!("Bearer {SECRET}");
        let cookie = format!("theme=dark; {COOKIE}={SECRET}");
        let at = |host| Presented {
            host: Some(host),
            ..Presented::default()
        };
        type Case<'a> = (&'a [Token], Presented<'a>, bool, Result<&'a str, Refusal>);
        let cases: Vec<Case> = vec![
            (&[], at("127.0.0.1:8080"), false, Ok("local")),
            (&[], at("localhost:8080"), true, Ok("local")),
            (&[], at("[::1]:8080"), false, Ok("local")),
            (&[], at("evil.example:8080"), false, Err(Refusal::Host)),
            (&tokens, at("farm:8080"), false, Err(Refusal::Token)),
            (
                &tokens,
                Presented {
                    authorization: Some(&bearer),
                    ..at("farm:8080")
                },
                true,
                Ok("ana"),
            ),
            (
                &tokens,
                Presented {
                    cookie: Some(&cookie),
                    ..at("farm:8080")
                },
                false,
                Ok("ana"),
            ),
            (
                &tokens,
                Presented {
                    query: Some("0123456789abcdeX"),
                    ..at("farm:8080")
                },
                false,
                Err(Refusal::Token),
            ),
            (
                &tokens,
                Presented {
                    cookie: Some(&cookie),
                    origin: Some("http://farm:8080"),
                    ..at("farm:8080")
                },
                true,
                Ok("ana"),
            ),
            (
                &tokens,
                Presented {
                    cookie: Some(&cookie),
                    origin: Some("http://evil.example"),
                    ..at("farm:8080")
                },
                true,
                Err(Refusal::Origin),
            ),
            (
                &[],
                Presented {
                    origin: Some("http://evil.example"),
                    ..at("127.0.0.1:8080")
                },
                true,
                Err(Refusal::Origin),
            ),
        ];
        for (i, (tokens, presented, action, want)) in cases.into_iter().enumerate() {
            let got = admit(tokens, presented, action);
            assert_eq!(got.as_deref().map_err(Clone::clone), want, "case {i}");
        }
    }
}
