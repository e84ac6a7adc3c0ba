//! What a rewrite changed: how many fields of each kind ([`Changes`]), for the counters
//! and reports.

use super::edits::RewrittenField;

/// How many fields of each kind were rewritten.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub request_uri: u16,
    pub via: u16,
    pub contact: u16,
    pub route: u16,
    pub record_route: u16,
    pub from_to: u16,
    pub sdp_connection: u16,
    pub sdp_origin: u16,
    pub sdp_rtcp: u16,
    pub sdp_media_port: u16,
    pub content_length: u16,
}

impl Changes {
    pub fn total(&self) -> u32 {
        [
            self.request_uri,
            self.via,
            self.contact,
            self.route,
            self.record_route,
            self.from_to,
            self.sdp_connection,
            self.sdp_origin,
            self.sdp_rtcp,
            self.sdp_media_port,
            self.content_length,
        ]
        .iter()
        .map(|&v| u32::from(v))
        .sum()
    }

    /// (name, count) pairs, for counters and reports.
    pub fn fields(&self) -> [(&'static str, u16); 11] {
        [
            ("request_uri", self.request_uri),
            ("via", self.via),
            ("contact", self.contact),
            ("route", self.route),
            ("record_route", self.record_route),
            ("from_to", self.from_to),
            ("sdp_connection", self.sdp_connection),
            ("sdp_origin", self.sdp_origin),
            ("sdp_rtcp", self.sdp_rtcp),
            ("sdp_media_port", self.sdp_media_port),
            ("content_length", self.content_length),
        ]
    }

    /// The count of each kind among `fields`: tallied in an array indexed by the kind
    /// (an add per field at its index, no branch to the struct's field), then spread
    /// over the fields (the array's order is the enum's).
    pub(super) fn of(fields: impl Iterator<Item = RewrittenField>) -> Changes {
        let mut n = [0u16; 11];
        for f in fields {
            // (A count never wraps: `fields` are those of one edit list, which holds at
            // most `MAX_EDITS` < 65,536 edits; a saturating add was a compare and a
            // select per edit.)
            if let Some(c) = n.get_mut(f as usize) {
                *c = c.wrapping_add(1);
            }
        }
        let [request_uri, via, contact, route, record_route, from_to, sdp_connection, sdp_origin, sdp_rtcp, sdp_media_port, content_length] =
            n;
        Changes {
            request_uri,
            via,
            contact,
            route,
            record_route,
            from_to,
            sdp_connection,
            sdp_origin,
            sdp_rtcp,
            sdp_media_port,
            content_length,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Changes, RewrittenField as F};

    /// Each kind is counted in its own field (the array's order is the enum's).
    #[test]
    fn each_kind_counts_in_its_field() {
        let all = [
            F::RequestUri,
            F::Via,
            F::Contact,
            F::Route,
            F::RecordRoute,
            F::FromTo,
            F::SdpConnection,
            F::SdpOrigin,
            F::SdpRtcp,
            F::SdpMediaPort,
            F::ContentLength,
        ];
        for (k, &f) in all.iter().enumerate() {
            let c = Changes::of(core::iter::repeat_n(f, k + 1));
            let field = |c: &Changes| match f {
                F::RequestUri => c.request_uri,
                F::Via => c.via,
                F::Contact => c.contact,
                F::Route => c.route,
                F::RecordRoute => c.record_route,
                F::FromTo => c.from_to,
                F::SdpConnection => c.sdp_connection,
                F::SdpOrigin => c.sdp_origin,
                F::SdpRtcp => c.sdp_rtcp,
                F::SdpMediaPort => c.sdp_media_port,
                F::ContentLength => c.content_length,
            };
            assert_eq!(field(&c), (k + 1) as u16, "{f:?}");
            assert_eq!(c.total(), (k + 1) as u32, "{f:?}");
        }
        assert_eq!(Changes::of(core::iter::empty()), Changes::default());
    }
}
