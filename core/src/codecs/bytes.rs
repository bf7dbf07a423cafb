//! Fixed-width integers read out of byte slices, for the codecs that parse
//! containers and headers themselves (JP2 boxes and codestream markers,
//! the JPEG XR container and image headers, EXIF's TIFF directory, ICC
//! headers): one copy instead of one per parser.
//!
//! Two kinds of reads. [`be_u16`] and its siblings take the first bytes of
//! a slice whose length the caller has already checked (they panic if it
//! is shorter, as indexing would). [`range`], [`u16_at`], [`u32_at`] and
//! [`u64_at`] are for offsets that come from the data: they return `None`
//! for anything past the end, overflowing offsets included.

/// Byte order of a multi-byte field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Endian {
    Big,
    Little,
}

/// The `len` bytes of `bytes` at `at`, or `None` if they run past its end.
pub(super) fn range(bytes: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    bytes.get(at..at.checked_add(len)?)
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    range(bytes, at, N)?.try_into().ok()
}

/// The 16-bit integer at `at`, or `None` if it runs past the end.
pub(super) fn u16_at(bytes: &[u8], at: usize, endian: Endian) -> Option<u16> {
    let b = array(bytes, at)?;
    Some(match endian {
        Endian::Big => u16::from_be_bytes(b),
        Endian::Little => u16::from_le_bytes(b),
    })
}

/// The 32-bit integer at `at`, or `None` if it runs past the end.
pub(super) fn u32_at(bytes: &[u8], at: usize, endian: Endian) -> Option<u32> {
    let b = array(bytes, at)?;
    Some(match endian {
        Endian::Big => u32::from_be_bytes(b),
        Endian::Little => u32::from_le_bytes(b),
    })
}

/// The 64-bit integer at `at`, or `None` if it runs past the end.
pub(super) fn u64_at(bytes: &[u8], at: usize, endian: Endian) -> Option<u64> {
    let b = array(bytes, at)?;
    Some(match endian {
        Endian::Big => u64::from_be_bytes(b),
        Endian::Little => u64::from_le_bytes(b),
    })
}

/// The first 2 bytes of `b`, big-endian. Panics if `b` is shorter.
pub(super) fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// The first 4 bytes of `b`, big-endian. Panics if `b` is shorter.
pub(super) fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The first 2 bytes of `b`, little-endian. Panics if `b` is shorter.
pub(super) fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

/// The first 4 bytes of `b`, little-endian. Panics if `b` is shorter.
pub(super) fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: [u8; 9] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09];

    #[test]
    fn leading_bytes() {
        assert_eq!(be_u16(&DATA), 0x0102);
        assert_eq!(be_u32(&DATA), 0x0102_0304);
        assert_eq!(le_u16(&DATA), 0x0201);
        assert_eq!(le_u32(&DATA), 0x0403_0201);
        // Exactly long enough.
        assert_eq!(be_u16(&DATA[7..]), 0x0809);
        assert_eq!(le_u32(&DATA[5..]), 0x0908_0706);
    }

    #[test]
    #[should_panic]
    fn leading_bytes_too_short() {
        be_u32(&DATA[6..]);
    }

    #[test]
    fn at_offsets() {
        use Endian::{Big, Little};
        assert_eq!(u16_at(&DATA, 1, Big), Some(0x0203));
        assert_eq!(u16_at(&DATA, 1, Little), Some(0x0302));
        assert_eq!(u32_at(&DATA, 5, Big), Some(0x0607_0809));
        assert_eq!(u32_at(&DATA, 5, Little), Some(0x0908_0706));
        assert_eq!(u64_at(&DATA, 1, Big), Some(0x0203_0405_0607_0809));
        assert_eq!(u64_at(&DATA, 0, Little), Some(0x0807_0605_0403_0201));
        // Agrees with the leading-bytes reads.
        for at in 0..DATA.len() - 3 {
            assert_eq!(u16_at(&DATA, at, Big), Some(be_u16(&DATA[at..])));
            assert_eq!(u16_at(&DATA, at, Little), Some(le_u16(&DATA[at..])));
            assert_eq!(u32_at(&DATA, at, Big), Some(be_u32(&DATA[at..])));
            assert_eq!(u32_at(&DATA, at, Little), Some(le_u32(&DATA[at..])));
        }
    }

    #[test]
    fn past_the_end_is_none() {
        for endian in [Endian::Big, Endian::Little] {
            assert_eq!(u16_at(&DATA, 8, endian), None);
            assert_eq!(u32_at(&DATA, 6, endian), None);
            assert_eq!(u64_at(&DATA, 2, endian), None);
            assert_eq!(u32_at(&DATA, DATA.len(), endian), None);
            assert_eq!(u16_at(&[], 0, endian), None);
            // Offsets whose end overflows.
            assert_eq!(u16_at(&DATA, usize::MAX, endian), None);
            assert_eq!(u32_at(&DATA, usize::MAX - 2, endian), None);
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(range(&DATA, 2, 3), Some(&DATA[2..5]));
        assert_eq!(range(&DATA, 9, 0), Some(&[][..]));
        assert_eq!(range(&DATA, 0, 9), Some(&DATA[..]));
        assert_eq!(range(&DATA, 0, 10), None);
        assert_eq!(range(&DATA, 10, 0), None);
        assert_eq!(range(&DATA, 1, usize::MAX), None);
    }
}
