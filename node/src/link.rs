//! The shape every Samizdat link shares (`samizdat://KIND/` then lower-case base32 of a
//! protobuf message): channel invites, contact cards and device links.

use data_encoding::BASE32_NOPAD;

/// Why a string is not a link of the expected kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Longer than the kind allows (checked before anything is decoded).
    TooLong,
    /// Another prefix, or not base32.
    NotALink,
}

/// The link for `bytes` under `prefix`.
pub fn encode(prefix: &str, bytes: &[u8]) -> String {
    format!(
        "{prefix}{}",
        BASE32_NOPAD.encode(bytes).to_ascii_lowercase()
    )
}

/// The bytes a link of `prefix` carries: surrounding whitespace ignored, the prefix and the
/// base32 in any case, at most `max_len` bytes in all.
pub fn decode(prefix: &str, s: &str, max_len: usize) -> Result<Vec<u8>, Shape> {
    let s = s.trim();
    if s.len() > max_len {
        return Err(Shape::TooLong);
    }
    let payload = s
        .get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .and_then(|_| s.get(prefix.len()..))
        .ok_or(Shape::NotALink)?;
    BASE32_NOPAD
        .decode(payload.to_ascii_uppercase().as_bytes())
        .map_err(|_| Shape::NotALink)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "samizdat://thing/";

    #[test]
    fn links_round_trip_in_any_case_and_garbage_is_named() {
        let bytes = b"\x00\x01hello\xff".to_vec();
        let link = encode(P, &bytes);
        assert!(link.starts_with(P) && link == link.to_ascii_lowercase());
        assert_eq!(decode(P, &link, 100), Ok(bytes.clone()));
        assert_eq!(
            decode(P, &format!("  {}\n", link.to_ascii_uppercase()), 100),
            Ok(bytes)
        );
        assert_eq!(decode(P, &link, link.len() - 1), Err(Shape::TooLong));
        for bad in [
            "",
            "samizdat://",
            "samizdat://other/aaaa",
            "samizdat://thing/!!",
            "ß",
            "samizdat://thinß/",
        ] {
            assert_eq!(decode(P, bad, 100), Err(Shape::NotALink), "{bad:?}");
        }
        assert_eq!(decode(P, P, 100), Ok(Vec::new()));
    }
}
