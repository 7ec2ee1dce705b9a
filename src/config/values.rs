//! Parsers for single values, shared by the file, the environment and the flags.
//!
//! Each returns the problem as a sentence fragment ("`localhost` is not a socket address");
//! the caller adds the place and the expected form.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::domain::{Network, Ppm, Sat};

use super::LogFormat;

/// `server.tls` before its certificate is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTlsMode {
    /// System roots.
    System,
    /// A pinned certificate (`server.tls_cert`).
    Pinned,
    /// Plain text, loopback only.
    Insecure,
}

/// A network name.
pub fn network(text: &str) -> Result<Network, String> {
    text.parse::<Network>()
        .map_err(|_| format!("`{text}` is not a network"))
}

/// `host:port` with a non-empty host and a port from 1 to 65535; IPv6 hosts in brackets.
pub fn host_port(text: &str) -> Result<String, String> {
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("`{text}` has no port"));
    };
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.is_empty() {
        return Err(format!("`{text}` has no host"));
    }
    if bare.contains(':') && bare == host {
        return Err(format!("`{text}` has an IPv6 host without brackets"));
    }
    if bare.contains(char::is_whitespace) || bare.contains('/') {
        return Err(format!("`{text}` is not a host name or address"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(text.to_owned()),
        _ => Err(format!("`{port}` in `{text}` is not a port (1-65535)")),
    }
}

/// Whether a `host:port` (already checked by [`host_port`]) names this machine.
pub fn is_loopback(host_port: &str) -> bool {
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// An IP address and port (port 0 asks the OS for a free port, which tests use).
pub fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .map_err(|_| format!("`{text}` is not a socket address"))
}

/// Whether two listen addresses would collide (same non-zero port on the same or a wildcard IP).
pub fn listeners_collide(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// A positive duration written as number-unit pairs: `500ms`, `30s`, `2m`, `1h`, `1m30s`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("the duration is empty".to_owned());
    }
    if trimmed.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("`{text}` has no unit"));
    }
    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("`{text}` is not a duration"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}` is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(86_400)),
            "" => return Err(format!("`{text}` ends without a unit")),
            unit => {
                return Err(format!(
                    "`{unit}` in `{text}` is not a unit (ms, s, m, h, d)"
                ));
            }
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    if total.is_zero() {
        return Err(format!("`{text}` is zero"));
    }
    Ok(total)
}

/// Whole days, comma-separated (`1,7,30`), each from 1 to 3650, sorted and deduplicated.
pub fn day_list(text: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let p = part.trim();
        let d: u32 = p
            .parse()
            .map_err(|_| format!("`{p}` in `{text}` is not a whole number of days"))?;
        if !(1..=3650).contains(&d) {
            return Err(format!("{d} days in `{text}` is outside 1 to 3650"));
        }
        out.push(d);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A number of confirmations, from 1 to 1000.
pub fn confirmations(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        Ok(n) => Err(format!("{n} confirmations is outside 1 to 1000")),
        Err(_) => Err(format!("`{text}` is not a whole number of blocks")),
    }
}

/// A whole number of satoshis.
pub fn sat(text: &str) -> Result<Sat, String> {
    text.trim()
        .parse::<u64>()
        .map(Sat)
        .map_err(|_| format!("`{text}` is not a whole number of satoshis"))
}

/// A whole number of parts per million.
pub fn ppm(text: &str) -> Result<Ppm, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if n <= 1_000_000 => Ok(Ppm(n)),
        Ok(_) => Err(format!("`{text}` is more than 1000000 ppm (100 %)")),
        Err(_) => Err(format!(
            "`{text}` is not a whole number of parts per million"
        )),
    }
}

/// `true` or `false` (any case).
pub fn boolean(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("`{text}` is not a boolean")),
    }
}

/// `system`, `pinned` or `insecure`.
pub fn server_tls(text: &str) -> Result<ServerTlsMode, String> {
    match text.trim() {
        "system" => Ok(ServerTlsMode::System),
        "pinned" => Ok(ServerTlsMode::Pinned),
        "insecure" => Ok(ServerTlsMode::Insecure),
        _ => Err(format!("`{text}` is not a TLS mode")),
    }
}

/// `human` or `json`.
pub fn log_format(text: &str) -> Result<LogFormat, String> {
    match text.trim() {
        "human" => Ok(LogFormat::Human),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("`{text}` is not a log format")),
    }
}

/// `tracing` `EnvFilter` directives, checked by the same parser the logger will use.
pub fn log_level(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("the filter is empty".to_owned());
    }
    tracing_subscriber::EnvFilter::try_new(text)
        .map(|_| text.to_owned())
        .map_err(|e| format!("`{text}` is not a log filter ({e})"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(duration("30").unwrap_err().contains("no unit"));
        assert!(duration("0s").unwrap_err().contains("zero"));
        assert_eq!(duration("3d"), Ok(Duration::from_secs(3 * 86_400)));
        assert!(duration("3w").unwrap_err().contains("not a unit"));
        assert!(duration("s").is_err());
        assert!(duration("").is_err());
    }

    #[test]
    fn host_ports() {
        assert!(host_port("localhost:10009").is_ok());
        assert!(host_port("[::1]:10009").is_ok());
        assert!(host_port("swap.lightning.today:11010").is_ok());
        assert!(host_port("localhost").unwrap_err().contains("no port"));
        assert!(host_port(":10009").unwrap_err().contains("no host"));
        assert!(host_port("localhost:0").is_err());
        assert!(host_port("localhost:99999").is_err());
        assert!(host_port("::1:10009").is_err());
        assert!(is_loopback("localhost:1") && is_loopback("127.0.0.5:1") && is_loopback("[::1]:1"));
        assert!(!is_loopback("swap.lightning.today:11010") && !is_loopback("10.0.0.1:1"));
    }

    #[test]
    fn listeners() {
        let a: SocketAddr = "127.0.0.1:9311".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9311".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:11011".parse().unwrap();
        let zero: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert!(listeners_collide(a, a) && listeners_collide(a, any));
        assert!(!listeners_collide(a, other) && !listeners_collide(zero, zero));
    }

    #[test]
    fn log_filters() {
        assert!(log_level("info,sluice::swap=debug").is_ok());
        assert!(log_level("sluice=loud").is_err());
        assert!(log_level("").is_err());
    }
}
