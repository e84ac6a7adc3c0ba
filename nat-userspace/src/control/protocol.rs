//! The control protocol: one JSON object per line over the Unix socket, versioned.
//!
//! Request:  `{"v":1,"cmd":"stats"}`, `{"v":1,"cmd":"set-external-ip","addr":"203.0.113.7"}`
//! Response: `{"v":1,"ok":true,"data":{...}}` or `{"v":1,"ok":false,"error":"..."}`
//!
//! Field names in `data` are stable for scripts (`sipnat stats --json`).

use serde::{Deserialize, Serialize};

/// Protocol version spoken by this build.
pub const VERSION: u32 = 1;
/// Largest request line accepted (bytes, newline included).
pub const MAX_REQUEST: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Command {
    Status,
    Stats,
    Enable,
    Disable,
    Reload,
    SetExternalIp {
        addr: String,
    },
    /// NAPT and media bindings; `addr`: only those with this internal or external address.
    Flows {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        addr: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    #[serde(flatten)]
    pub command: Command,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(data: serde_json::Value) -> Response {
        Response {
            v: VERSION,
            ok: true,
            data: Some(data),
            error: None,
        }
    }

    pub fn err(msg: impl Into<String>) -> Response {
        Response {
            v: VERSION,
            ok: false,
            data: None,
            error: Some(msg.into()),
        }
    }

    pub fn line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"v":1,"ok":false,"error":"internal: cannot encode the response"}"#.to_string()
        });
        s.push('\n');
        s
    }
}

/// Parses one request line; the error is the message to send back.
pub fn parse_request(line: &[u8]) -> Result<Command, String> {
    let text = std::str::from_utf8(line).map_err(|_| "request is not UTF-8".to_string())?;
    let req: Request =
        serde_json::from_str(text.trim()).map_err(|e| format!("bad request: {e}"))?;
    if req.v != VERSION {
        return Err(format!(
            "unsupported protocol version {} (this daemon speaks {VERSION})",
            req.v
        ));
    }
    Ok(req.command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        assert_eq!(
            parse_request(br#"{"v":1,"cmd":"stats"}"#),
            Ok(Command::Stats)
        );
        assert_eq!(
            parse_request(br#"{"v":1,"cmd":"set-external-ip","addr":"1.2.3.4"}"#),
            Ok(Command::SetExternalIp {
                addr: "1.2.3.4".into()
            })
        );
        assert_eq!(
            parse_request(br#"{"v":1,"cmd":"flows","addr":"10.0.0.2"}"#),
            Ok(Command::Flows {
                addr: Some("10.0.0.2".into())
            })
        );
        assert_eq!(
            parse_request(br#"{"v":1,"cmd":"flows"}"#),
            Ok(Command::Flows { addr: None })
        );
        assert!(parse_request(br#"{"v":2,"cmd":"stats"}"#)
            .unwrap_err()
            .contains("version 2"));
        assert!(parse_request(b"garbage")
            .unwrap_err()
            .starts_with("bad request"));
        assert!(parse_request(br#"{"v":1,"cmd":"format-disk"}"#).is_err());
        assert!(parse_request(&[0xff, 0xfe]).is_err());
        let line = Response::err("x").line();
        assert_eq!(line, "{\"v\":1,\"ok\":false,\"error\":\"x\"}\n");
    }
}
