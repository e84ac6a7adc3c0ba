//! The rewrite context the message-level tests share.

use sipnat::{
    nat::{Direction, RewriteConfig},
    rewrite::Context,
};

use super::sipcheck::ext;

/// Outbound under `config` to [`ext`]: no internal host, local port, NAPT binding or media.
pub fn outbound(config: &RewriteConfig) -> Context<'_> {
    Context {
        config,
        external: ext(),
        direction: Direction::Outbound,
        internal: None,
        local_port: None,
        napt: None,
        media: None,
    }
}
