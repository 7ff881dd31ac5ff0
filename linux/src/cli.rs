//! The `smtpd` command line: Python smtpd's interface, unchanged, plus modern options.
//!
//! `smtpd [-n] [-V] [-c CLASS] [-s SIZE] [-u] [-d] [localhost:port [remotehost:port]]`.
//! Without arguments: `DebuggingServer` on 127.0.0.1:8025.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use smtpd_core::config::BareNewline;
use smtpd_core::network::{BadNetwork, Network};
use smtpd_core::relay_policy::is_domain_pattern;
use smtpd_core::Config;

use crate::handlers::RelayAccess;
use crate::server::Options;

/// A fast, safe SMTP server (a drop-in for Python's `python -m smtpd`).
#[derive(Parser, Debug)]
#[command(name = "smtpd", version, args_override_self = true)]
pub struct Args {
    /// Keep the user id. Without it, a server started as root switches to `nobody` once it
    /// has bound its port, before it serves, as Python's smtpd did (or to --user; a Maildir server to the maildir's owner,
    /// and a maildir of root's keeps root, with a warning).
    #[arg(short = 'n', long, conflicts_with = "user")]
    pub nosetuid: bool,
    /// The user a server started as root becomes once it listens [default: nobody; with
    /// --maildir, the maildir's owner].
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Handler class: DebuggingServer, PureProxy (relays to remotehost:port), MailmanProxy
    /// (Mailman 3's lists over LMTP, see --lmtp; the rest relayed), Sink or Maildir (with
    /// --maildir) [default: DebuggingServer, or Maildir with --maildir].
    #[arg(short = 'c', long = "class", value_name = "CLASS")]
    pub class: Option<String>,
    /// Largest message in octets, advertised with SIZE (RFC 1870). Without it (or with 0),
    /// as in Python, SIZE is not advertised; messages over 32 MiB still get 552.
    #[arg(short = 's', long, value_name = "SIZE")]
    pub size: Option<u64>,
    /// Accepted for Python compatibility: SMTPUTF8 is always offered.
    #[arg(short = 'u', long)]
    pub smtputf8: bool,
    /// Debug output: verbose logs, and DebuggingServer prints the envelope.
    #[arg(short = 'd', long)]
    pub debug: bool,
    /// Address to listen on.
    #[arg(value_name = "localhost:port", default_value = "127.0.0.1:8025")]
    pub local: String,
    /// Upstream server for PureProxy and MailmanProxy.
    #[arg(value_name = "remotehost:port", default_value = "localhost:25")]
    pub remote: String,
    /// Clients that may relay to any domain through PureProxy and MailmanProxy: networks or
    /// addresses, comma-separated (`192.168.0.0/16,2001:db8::/32`), or `none`. Others may
    /// send only to --relay-domains. `0.0.0.0/0,::/0` makes an open relay.
    #[arg(
        long,
        value_name = "NETWORKS",
        value_delimiter = ',',
        value_parser = network_or_none,
        default_value = "127.0.0.0/8,::1/128"
    )]
    pub relay_networks: Vec<Option<Network>>,
    /// Domains anyone may send to through PureProxy and MailmanProxy, comma-separated:
    /// `example.com` is that domain, `.example.com` any domain below it.
    #[arg(long, value_name = "DOMAINS", value_delimiter = ',', value_parser = relay_domain)]
    pub relay_domains: Vec<String>,
    /// Connections from these proxies (networks or addresses, comma-separated) begin with a
    /// PROXY protocol header (HAProxy's, version 1 or 2) naming the client, who is then the
    /// session's peer; others are served as they come [default: none].
    #[arg(long, value_name = "NETWORKS", value_delimiter = ',')]
    pub proxy_protocol: Vec<Network>,
    /// Mailman 3's LMTP runner, for MailmanProxy (its `lmtp_host`:`lmtp_port`).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8024")]
    pub lmtp: String,
    /// Deliver into this maildir (selects the Maildir class).
    #[arg(long, value_name = "DIR")]
    pub maildir: Option<PathBuf>,
    /// Host name for the greeting and HELO replies [default: this host's name].
    #[arg(long)]
    pub hostname: Option<String>,
    /// io_uring runtimes, one listener each [default: available cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Connections beyond this get `421 4.3.2 Too many connections` (lowered at start to
    /// what the descriptor limit, `ulimit -n`, holds).
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one::<usize>())]
    pub max_connections: usize,
    /// Connections one client may have open at once (an IPv4 address, an IPv6 /64; behind
    /// --proxy-protocol, the client the proxy names); more get `421 4.7.0`. This host's own
    /// clients (loopback, or the connection's own local address) are not counted; 0 counts
    /// no one.
    #[arg(long, default_value_t = 50)]
    pub max_connections_per_client: usize,
    /// Recipients per message. 100 always fit, however long their addresses; beyond that,
    /// as many as the 28 KiB envelope holds (the rest get `452`, to be retried).
    #[arg(long, default_value_t = 100, value_parser = at_least_one::<usize>())]
    pub max_recipients: usize,
    /// Seconds to wait for a command (RFC 5321 4.5.3.2.7).
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = seconds(1))]
    pub command_timeout: u64,
    /// Seconds to wait for the next block of message data (RFC 5321 4.5.3.2.5).
    #[arg(long, value_name = "SECS", default_value_t = 180, value_parser = seconds(1))]
    pub data_timeout: u64,
    /// Longest text line of DATA content, CRLF included (RFC 5321 4.5.3.1.6 says 1000); a
    /// longer one gets `500` after the end of data [default, or 0: no limit, as in Python].
    #[arg(long, value_name = "OCTETS")]
    pub max_line_length: Option<usize>,
    /// A CR or LF that is not part of a CRLF in DATA content: refuse the message (`550`),
    /// store it as CRLF, or store it as received. Only CRLF.CRLF ends the data, whatever
    /// the choice: no SMTP smuggling. (BDAT chunks are counted octets, taken as sent.)
    #[arg(long, value_enum, default_value_t = BareNewlines::Normalize)]
    pub bare_newline: BareNewlines,
    /// Seconds sessions may continue after SIGINT/SIGTERM/SIGHUP before `421`.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = seconds(0))]
    pub shutdown_grace: u64,
    /// Log lines (one per session and per message, on stderr): text, or one JSON object
    /// per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A count or a number of seconds that must not be 0 (which would refuse every connection,
/// recipient or command).
fn at_least_one<T: TryFrom<u64> + Clone + Send + Sync + 'static>(
) -> clap::builder::RangedU64ValueParser<T> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// A number of seconds from `min` up to a year (deadlines stay far from overflowing).
fn seconds(min: u64) -> clap::builder::RangedU64ValueParser<u64> {
    clap::builder::RangedU64ValueParser::new().range(min..=365 * 24 * 3600)
}

/// A `--relay-networks` entry: a network, or `none` (which adds none).
fn network_or_none(text: &str) -> Result<Option<Network>, BadNetwork> {
    match text {
        "none" => Ok(None),
        network => network.parse().map(Some),
    }
}

/// A `--relay-domains` entry (see [`is_domain_pattern`]).
fn relay_domain(text: &str) -> Result<String, String> {
    match (is_domain_pattern(text), text.strip_prefix("*.")) {
        (true, _) => Ok(text.to_owned()),
        (false, Some(parent)) => Err(format!(
            "no wildcards: .{parent} stands for the domains below {parent}"
        )),
        (false, None) => {
            Err("expected a domain (example.com) or a dot and a domain (.example.com)".into())
        }
    }
}

/// `--bare-newline` (Postfix's `smtpd_forbid_bare_newline`, whose default since 3.9 is
/// `normalize` too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BareNewlines {
    Reject,
    Normalize,
    Allow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The handler classes the binary ships.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Class {
    DebuggingServer,
    Sink,
    Maildir(PathBuf),
    /// Relays to the remote address.
    PureProxy,
    /// Mailman's lists over LMTP, the rest relayed to the remote address.
    MailmanProxy,
}

impl Args {
    /// The handler class, or a one-line error.
    pub fn class(&self) -> Result<Class, String> {
        let Some(class) = &self.class else {
            return Ok(match &self.maildir {
                Some(dir) => Class::Maildir(dir.clone()),
                None => Class::DebuggingServer,
            });
        };
        let name = class.strip_prefix("smtpd.").unwrap_or(class);
        match (name, &self.maildir) {
            ("Maildir", Some(dir)) => Ok(Class::Maildir(dir.clone())),
            (_, Some(_)) => Err(format!("--maildir cannot be used with class {name}")),
            ("Maildir", None) => Err("class Maildir needs --maildir DIR".into()),
            ("DebuggingServer", None) => Ok(Class::DebuggingServer),
            ("Sink", None) => Ok(Class::Sink),
            ("PureProxy", None) => Ok(Class::PureProxy),
            ("MailmanProxy", None) => Ok(Class::MailmanProxy),
            _ => Err(format!(
                "unknown class {class:?} (try DebuggingServer, PureProxy, MailmanProxy, Sink or Maildir)"
            )),
        }
    }

    /// The listening address, resolved.
    pub fn bind_addr(&self) -> Result<SocketAddr, String> {
        resolve(&self.local)
    }

    /// Checks what parsing alone cannot: the remote address's form (as Python does, without
    /// resolving it) and the host name.
    pub fn validate(&self) -> Result<(), String> {
        for (what, spec) in [("remote", &self.remote), ("--lmtp", &self.lmtp)] {
            let (_, port) = spec
                .rsplit_once(':')
                .ok_or_else(|| format!("bad {what} spec {spec:?}: expected host:port"))?;
            port.parse::<u16>()
                .map_err(|_| format!("bad {what} port in {spec:?}"))?;
        }
        if self
            .hostname
            .as_deref()
            .is_some_and(|name| name.trim().is_empty())
        {
            return Err("--hostname must not be empty".into());
        }
        Ok(())
    }

    /// The protocol configuration these arguments ask for.
    pub fn config(&self) -> Config<'static> {
        let hostname = self.hostname.clone().unwrap_or_else(host_name);
        let mut config = Config::new(Box::leak(hostname.into_boxed_str()));
        config.limits.text_line = self.max_line_length.filter(|&octets| octets > 0);
        config.bare_newline = match self.bare_newline {
            BareNewlines::Reject => BareNewline::Reject,
            BareNewlines::Normalize => BareNewline::Normalize,
            BareNewlines::Allow => BareNewline::Allow,
        };
        match self.size {
            Some(size) if size > 0 => config.limits.message_size = Some(size),
            // Python advertises no SIZE then, and has no limit; memory stays bounded here
            // by the core's default limit.
            _ => config.extensions.size = false,
        }
        config.limits.recipients = self.max_recipients;
        config.timeouts.command = Duration::from_secs(self.command_timeout);
        config.timeouts.data_block = Duration::from_secs(self.data_timeout);
        config
    }

    /// Who may relay through the proxies.
    pub fn relay_access(&self) -> RelayAccess {
        RelayAccess {
            networks: self.relay_networks.iter().flatten().copied().collect(),
            domains: self.relay_domains.clone(),
        }
    }

    pub fn options(&self) -> Result<Options, String> {
        let mut options = Options {
            bind: self.bind_addr()?,
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
            proxy_protocol: self.proxy_protocol.clone(),
            ..Options::default()
        };
        if let Some(threads) = self.threads {
            options.threads = threads.max(1);
        }
        Ok(options)
    }
}

/// Resolves `host:port` (also `[v6]:port`); Python's `localhost:8025` form.
pub fn resolve(spec: &str) -> Result<SocketAddr, String> {
    let unusable = |why: String| format!("cannot use address {spec:?}: {why}");
    let (host, port) = spec
        .rsplit_once(':')
        .ok_or_else(|| unusable("expected host:port".into()))?;
    let port: u16 = port.parse().map_err(|_| unusable("bad port".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // An empty host is every IPv4 interface, as Python's `bind(('', port))`.
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let mut addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| unusable(e.to_string()))?;
    addrs.next().ok_or_else(|| unusable("no address".into()))
}

/// This machine's host name (Python uses `socket.getfqdn()`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_access_defaults_to_the_library_s_and_none_trusts_no_network() {
        let args = Args::try_parse_from(["smtpd"]).unwrap();
        assert_eq!(args.relay_access(), RelayAccess::default());
        let args = Args::try_parse_from(["smtpd", "--relay-networks", "none"]).unwrap();
        assert!(args.relay_access().networks.is_empty());
        let args = Args::try_parse_from(["smtpd", "--relay-networks", "none,10.0.0.0/8"]).unwrap();
        assert_eq!(
            args.relay_access().networks,
            ["10.0.0.0/8".parse().unwrap()]
        );
    }
}
