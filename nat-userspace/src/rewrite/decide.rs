//! What each address of a message becomes: decided once per distinct address of a
//! message (the rule that claims it, the address it becomes, its port under the rule's
//! port map) and remembered as a small record; the rendered text of the new address is
//! kept once, in the rewriter's per-message table, and copied once, into the edit.

use core::net::IpAddr;

use super::message::Rewriter;
use crate::{
    nat::{addr::canonical, rules::OneRuleV4, Direction, RewriteConfig, Rule},
    sip::addr::Text,
};

/// What happens to one address (its port is decided separately, by the rule): a small
/// record, copied on every cache hit; the rendered text of the new address is kept once
/// per message in the rewriter's table ([`Rewriter::texts`]).
#[derive(Clone, Copy)]
pub(super) enum Map<'a> {
    /// Becomes `addr`, rendered as [`text_of`]`(.., text)` (no brackets, no port).
    To {
        addr: IpAddr,
        text: u8,
        rule: Option<&'a Rule>,
    },
    Keep,
    /// A rule applies, but no external address of the family is configured.
    FamilyMismatch,
}

/// Distinct addresses remembered per message: a message names the same one or two
/// addresses many times (Via, Contact, o=, c=, a=rtcp), and deciding and rendering an
/// address costs more than the lookup.
pub(super) const MAP_CACHE: usize = 4;

/// `Map::To::text` of a decision from the compiled single rule ([`Rewriter::one_v4`]):
/// its text is the one rendered with the rule ([`text_of`]), not rendered again.
const PRE_RENDERED: u8 = u8::MAX;

/// `new` written in the form of `orig`: an IPv4 address replacing an IPv4-mapped IPv6
/// address is written mapped too. `None` when the families cannot match.
#[inline]
fn express_like(orig: IpAddr, new: IpAddr) -> Option<IpAddr> {
    match (orig, new) {
        (IpAddr::V4(_), IpAddr::V4(_)) => Some(new),
        (IpAddr::V6(o), IpAddr::V4(n)) if o.to_ipv4_mapped().is_some() => {
            Some(IpAddr::V6(n.to_ipv6_mapped()))
        }
        (IpAddr::V6(o), IpAddr::V6(n)) => {
            (o.to_ipv4_mapped().is_some() == n.to_ipv4_mapped().is_some()).then_some(new)
        }
        _ => None,
    }
}

/// The rendered new address of a [`Map::To`] (`text`): its cache slot's text in `texts`,
/// or the compiled rule's ([`PRE_RENDERED`]). (Of the two fields, not of the `Rewriter`:
/// its caller pushes the text into the rewriter's edit list.)
#[inline(always)]
pub(super) fn text_of<'t>(
    one_v4: &'t Option<(OneRuleV4, Text)>,
    texts: &'t [Text],
    text: u8,
) -> &'t Text {
    match one_v4 {
        Some((_, pre)) if text == PRE_RENDERED => pre,
        // (Every slot a `Map::To` names has its text.)
        _ => texts.get(usize::from(text)).unwrap_or(&Text::EMPTY),
    }
}

impl<'a> Rewriter<'_, 'a, '_> {
    /// What `addr` becomes in this direction, from the per-message cache when it was
    /// seen before. Outbound, an IPv4 address under the compiled single rule ([`Rewriter::one_v4`])
    /// is decided directly (two word compares, cheaper than the cache's lookup), its text
    /// the one rendered with the rule ([`text_of`]).
    #[inline]
    pub(super) fn map(&mut self, addr: IpAddr) -> Map<'a> {
        if let (Some((one, _)), IpAddr::V4(v4), Direction::Outbound) =
            (&self.one_v4, addr, self.ctx.direction)
        {
            return match one.decide(v4) {
                None => Map::Keep,
                Some(None) => Map::FamilyMismatch,
                Some(Some(e)) => Map::To {
                    addr: IpAddr::V4(e),
                    text: PRE_RENDERED,
                    rule: self.ctx.config.rules.first(),
                },
            };
        }
        if let Some((_, m)) = self.cache.iter().find(|(a, _)| *a == addr) {
            return *m;
        }
        self.map_new(addr)
    }

    /// [`Self::map`] of an address not in the cache: decided, its new address rendered
    /// into the slot's text, and remembered (in place of the oldest entry when full).
    #[inline(never)]
    fn map_new(&mut self, addr: IpAddr) -> Map<'a> {
        let slot = if self.cache.is_full() {
            let s = usize::from(self.evict) % MAP_CACHE;
            self.evict = ((s + 1) % MAP_CACHE) as u8;
            s
        } else {
            self.cache.len()
        };
        // (A text per slot, pushed with its cache entry, whatever the decision.)
        if slot == self.texts.len() {
            let _ = self.texts.try_push(Text::EMPTY);
        }
        let mut m = self.decide(addr);
        if let Map::To {
            addr: new, text, ..
        } = &mut m
        {
            // (Rendered in place: `Text::from_ip` built it in the frame and copied it; and
            // not zeroed first, `set_ip` writes only the address's bytes.)
            if let Some(t) = self.texts.get_mut(slot) {
                t.set_ip(*new);
            }
            *text = slot as u8;
        }
        match self.cache.get_mut(slot) {
            Some(e) => *e = (addr, m),
            None => self.cache.push((addr, m)),
        }
        m
    }

    /// The rule governing `addr` and the address it becomes, in this direction (from the
    /// config: [`Self::map`] answers the compiled single rule's addresses itself).
    pub(super) fn decide(&self, addr: IpAddr) -> Map<'a> {
        let cfg: &'a RewriteConfig = self.ctx.config;
        let ext = &self.ctx.external;
        let (new, rule) = match self.ctx.direction {
            Direction::Outbound => {
                let Some(rule) = cfg.rule_for(addr) else {
                    return Map::Keep;
                };
                let Some(new) = cfg
                    .external_of(rule, addr, ext)
                    .and_then(|e| express_like(addr, e))
                else {
                    return Map::FamilyMismatch;
                };
                (new, Some(rule))
            }
            Direction::Inbound => {
                if !cfg.is_external(addr, ext) {
                    return Map::Keep;
                }
                let target = match self.ctx.internal {
                    Some(t) => Some((cfg.rule_of_internal(t), t)),
                    None => cfg
                        .inbound_static_target(addr, ext)
                        .map(|(r, t)| (Some(r), t)),
                };
                let Some((rule, target)) = target else {
                    return Map::Keep;
                };
                let Some(new) = express_like(addr, canonical(target)) else {
                    return Map::FamilyMismatch;
                };
                (new, rule)
            }
        };
        Map::To {
            addr: new,
            text: 0,
            rule,
        }
    }

    /// The port `port` (or the default, when none is written) becomes under `rule`, when
    /// it changes.
    #[inline]
    pub(super) fn map_port(
        &self,
        rule: Option<&Rule>,
        port: Option<u16>,
        default_port: u16,
    ) -> Option<u16> {
        let rule = rule?;
        if rule.ports.is_empty() {
            return None;
        }
        let eff = port.unwrap_or(default_port);
        match self.ctx.direction {
            Direction::Outbound => rule.ports.outbound(eff),
            Direction::Inbound => rule.ports.inbound(eff),
        }
        .filter(|&np| np != eff)
    }
}
