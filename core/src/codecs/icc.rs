//! Just enough ICC profile parsing to decide what to do with a source's
//! profile: carry it into the output, drop it, or refuse the image.

use super::bytes::{self, Endian};
use crate::KeepReason;

/// Size of the fixed ICC header; the tag count follows it.
const HEADER_LEN: usize = 128;

/// Decides what the output gets for the source profile `profile`:
///
/// - `Ok(None)` for an sRGB profile: browsers assume sRGB for untagged
///   images, so the ~3 KB would buy nothing. Also for a profile too broken
///   to parse: browsers ignore those and show the image as sRGB too.
/// - `Ok(Some(profile))` for any other RGB profile (Display P3, Adobe RGB,
///   ...): without it the colours would shift.
/// - `Err(Unsupported)` for a non-RGB profile (e.g. a gray "Dot Gain 20%"
///   profile on a gray JPEG): the pixels we encode are RGB, and an RGB
///   image cannot carry a gray profile, so we could not keep the look.
pub(super) fn classify(profile: Vec<u8>) -> Result<Option<Vec<u8>>, KeepReason> {
    let Some(desc) = parse(&profile) else {
        return Ok(None);
    };
    if &profile[16..20] != b"RGB " {
        return Err(KeepReason::Unsupported(
            "ICC profile for a non-RGB colour space".into(),
        ));
    }
    if is_srgb_description(desc) {
        return Ok(None);
    }
    Ok(Some(profile))
}

/// Validates the header and tag table; returns the raw bytes of the 'desc'
/// tag (empty if there is none), or `None` if the profile is malformed.
fn parse(profile: &[u8]) -> Option<&[u8]> {
    let be32 = |at: usize| bytes::u32_at(profile, at, Endian::Big).map(|v| v as usize);
    let declared_len = be32(0)?;
    if declared_len < HEADER_LEN + 4 || declared_len > profile.len() || &profile[36..40] != b"acsp"
    {
        return None;
    }
    let tag_count = be32(HEADER_LEN)?;
    if tag_count > (declared_len - HEADER_LEN - 4) / 12 {
        return None;
    }
    for i in 0..tag_count {
        let entry = HEADER_LEN + 4 + i * 12;
        if &profile[entry..entry + 4] == b"desc" {
            let (offset, size) = (be32(entry + 4)?, be32(entry + 8)?);
            return profile.get(offset..offset.checked_add(size)?);
        }
    }
    Some(&[])
}

/// Whether a 'desc' tag names sRGB. The tag is either the v2 'desc' type
/// (ASCII) or the v4 'mluc' type (UTF-16BE); dropping the NUL bytes turns
/// ASCII-range UTF-16BE into ASCII, so one substring search covers both.
/// A *linear* sRGB profile has a very different tone curve: keep that one.
fn is_srgb_description(desc: &[u8]) -> bool {
    let text: Vec<u8> = desc.iter().copied().filter(|&b| b != 0).collect();
    let contains = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
    let lower = text.to_ascii_lowercase();
    contains(b"sRGB") && !lower.windows(6).any(|w| w == b"linear")
}

/// Builds a minimal, structurally valid profile with the given colour
/// space and v2 'desc' text. For tests only.
#[cfg(test)]
pub(crate) fn test_profile(colour_space: &[u8; 4], description: &str, padding: usize) -> Vec<u8> {
    let mut desc = Vec::new();
    desc.extend_from_slice(b"desc\0\0\0\0");
    desc.extend_from_slice(&(description.len() as u32 + 1).to_be_bytes());
    desc.extend_from_slice(description.as_bytes());
    desc.push(0);
    let desc_offset = HEADER_LEN + 4 + 12;
    let total = desc_offset + desc.len() + padding;

    let mut p = vec![0u8; HEADER_LEN];
    p[0..4].copy_from_slice(&(total as u32).to_be_bytes());
    p[12..16].copy_from_slice(b"mntr");
    p[16..20].copy_from_slice(colour_space);
    p[20..24].copy_from_slice(b"XYZ ");
    p[36..40].copy_from_slice(b"acsp");
    p.extend_from_slice(&1u32.to_be_bytes());
    p.extend_from_slice(b"desc");
    p.extend_from_slice(&(desc_offset as u32).to_be_bytes());
    p.extend_from_slice(&(desc.len() as u32).to_be_bytes());
    p.extend_from_slice(&desc);
    // Deterministic filler so large test profiles are not all zeros.
    p.extend((0..padding).map(|i| (i * 7 % 251) as u8));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srgb_is_dropped_others_kept() {
        let srgb = test_profile(b"RGB ", "sRGB IEC61966-2.1", 0);
        assert_eq!(classify(srgb), Ok(None));

        let p3 = test_profile(b"RGB ", "Display P3", 100);
        assert_eq!(classify(p3.clone()), Ok(Some(p3)));

        let linear = test_profile(b"RGB ", "Linear sRGB", 0);
        assert!(classify(linear).unwrap().is_some());

        let gray = test_profile(b"GRAY", "Dot Gain 20%", 0);
        assert!(matches!(classify(gray), Err(KeepReason::Unsupported(_))));
    }

    #[test]
    fn mluc_description() {
        let utf16: Vec<u8> = "sRGB built-in"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        assert!(is_srgb_description(&utf16));
        assert!(!is_srgb_description(b"Adobe RGB (1998)"));
    }

    #[test]
    fn malformed_profiles_are_ignored() {
        assert_eq!(classify(vec![]), Ok(None));
        assert_eq!(classify(vec![0xFF; 200]), Ok(None));
        let mut p = test_profile(b"RGB ", "Display P3", 0);
        p.truncate(p.len() - 1); // declared size now exceeds the data
        assert_eq!(classify(p), Ok(None));
        let mut p = test_profile(b"RGB ", "Display P3", 0);
        p[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_be_bytes()); // tag count
        assert_eq!(classify(p), Ok(None));
        let mut p = test_profile(b"RGB ", "Display P3", 0);
        let entry = HEADER_LEN + 4;
        p[entry + 4..entry + 8].copy_from_slice(&u32::MAX.to_be_bytes()); // desc offset
        assert_eq!(classify(p), Ok(None));
    }
}
