//! Keyset cursors: opaque base64url JSON of the last record's `seq` (records are listed newest
//! first, i.e. by `seq` descending).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Where the previous page ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// Format version, so the format can change without misreading old cursors.
    v: u8,
    /// The `seq` of the last record of the previous page; the next page starts below it.
    seq: i64,
}

const VERSION: u8 = 1;

impl Cursor {
    pub fn after(seq: i64) -> Self {
        Self { v: VERSION, seq }
    }

    pub fn seq(&self) -> i64 {
        self.seq
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(s: &str) -> Result<Self, &'static str> {
        const GARBLED: &str = "is not a cursor returned by this API";
        let bytes = URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).map_err(|_| GARBLED)?;
        let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| GARBLED)?;
        if c.v != VERSION || c.seq < 1 {
            return Err(GARBLED);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_url_safe() {
        for seq in [1, 42, i64::MAX] {
            let s = Cursor::after(seq).encode();
            assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{s}");
            assert_eq!(Cursor::decode(&s).unwrap().seq(), seq);
        }
    }

    #[test]
    fn garbage_is_refused() {
        let forged = |json: &str| URL_SAFE_NO_PAD.encode(json);
        for bad in [
            String::new(),
            "not a cursor".into(),
            forged("{\"v\":1}"),
            forged("{\"v\":2,\"seq\":5}"),
            forged("{\"v\":1,\"seq\":0}"),
            forged("{\"v\":1,\"seq\":\"5 OR 1=1\"}"),
            forged("{\"v\":1,\"seq\":5,\"x\":1}"),
        ] {
            assert!(Cursor::decode(&bad).is_err(), "{bad}");
        }
    }
}
