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

    pub(super) fn count(&mut self, f: RewrittenField) {
        let c = match f {
            RewrittenField::RequestUri => &mut self.request_uri,
            RewrittenField::Via => &mut self.via,
            RewrittenField::Contact => &mut self.contact,
            RewrittenField::Route => &mut self.route,
            RewrittenField::RecordRoute => &mut self.record_route,
            RewrittenField::FromTo => &mut self.from_to,
            RewrittenField::SdpConnection => &mut self.sdp_connection,
            RewrittenField::SdpOrigin => &mut self.sdp_origin,
            RewrittenField::SdpRtcp => &mut self.sdp_rtcp,
            RewrittenField::SdpMediaPort => &mut self.sdp_media_port,
            RewrittenField::ContentLength => &mut self.content_length,
        };
        *c = c.saturating_add(1);
    }
}
