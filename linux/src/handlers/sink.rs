//! `Sink`: accepts every message and discards it (for benchmarks).

use smtpd_core::Handler;

/// Accepts and discards: every hook keeps its accepting default.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sink;

impl Handler for Sink {}
