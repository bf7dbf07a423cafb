//! The codestream check that runs before OpenJPEG sees a codestream:
//! [`check_codestream`] walks its markers (sizes, components, tile-parts;
//! no HTJ2K) so that none of OpenJPEG's data-dependent asserts can be
//! reached (see [`decode`](super::decode) for why).

use super::MAX_DECODE_PIXELS;
use crate::codecs::bytes::{be_u16, be_u32, range};

/// Largest tile [`decode`] accepts, in pixels. OpenJPEG holds a tile's
/// samples as 32-bit integers (plus code-block state) while decoding it;
/// [`encode`] writes tiles of at most [`MAX_TILE`] squared (1 MP).
///
/// [`decode`]: super::decode
/// [`encode`]: super::encode
/// [`MAX_TILE`]: super::encoder::MAX_TILE
const MAX_DECODE_TILE_PIXELS: u64 = 16 << 20;

/// A big-endian cursor over a codestream; every read is checked.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let out = range(self.data, self.pos, n).ok_or("truncated codestream")?;
        self.pos += n;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, String> {
        self.take(2).map(be_u16)
    }

    /// A marker segment's payload (after its length field).
    fn segment(&mut self) -> Result<&'a [u8], String> {
        let len = usize::from(self.u16()?);
        if len < 2 {
            return Err("marker segment shorter than its length field".into());
        }
        self.take(len - 2)
    }
}

/// What [`check_codestream`] found in the SIZ marker.
pub(super) struct Siz {
    /// Image area on the reference grid: [x0, x0 + width) x [y0, y0 + height).
    pub(super) x0: u32,
    pub(super) y0: u32,
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) tiles: usize,
}

const SOC: u16 = 0xFF4F;
const CAP: u16 = 0xFF50;
const SIZ: u16 = 0xFF51;
const COD: u16 = 0xFF52;
const COC: u16 = 0xFF53;
const SOT: u16 = 0xFF90;
const SOD: u16 = 0xFF93;
const EOC: u16 = 0xFFD9;

/// Walks the codestream's headers: SIZ (`components` 8-bit unsigned,
/// unsubsampled components; bounded image and tile sizes), the main
/// header and every tile-part header up to SOD, skipping the tile data by
/// the tile-part lengths. Refuses HTJ2K (Part 15): a CAP marker, the HT
/// capability bit of Rsiz or an HT code-block style in COD/COC, since
/// OpenJPEG's HT decoder has asserts that depend on the data.
pub(super) fn check_codestream(cs: &[u8], components: usize) -> Result<Siz, String> {
    let mut r = Reader { data: cs, pos: 0 };
    if r.u16()? != SOC || r.u16()? != SIZ {
        return Err("codestream does not start with SOC, SIZ".into());
    }
    let siz = r.segment()?;
    if siz.len() < 36 {
        return Err("short SIZ marker".into());
    }
    let rsiz = be_u16(siz);
    let field = |i: usize| be_u32(&siz[2 + 4 * i..]);
    let (xsiz, ysiz, xosiz, yosiz) = (field(0), field(1), field(2), field(3));
    let (xtsiz, ytsiz, xtosiz, ytosiz) = (field(4), field(5), field(6), field(7));
    let csiz = usize::from(be_u16(&siz[34..]));
    if rsiz & 0x4000 != 0 {
        return Err("HTJ2K codestreams are not decoded".into());
    }
    if csiz != components || siz.len() != 36 + 3 * csiz {
        return Err(format!(
            "codestream has {csiz} components, the header {components}"
        ));
    }
    for comp in siz[36..].chunks_exact(3) {
        if comp != [7, 1, 1] {
            return Err("components are not 8-bit unsigned at full resolution".into());
        }
    }
    if xosiz >= xsiz || yosiz >= ysiz {
        return Err("empty image area".into());
    }
    let (width, height) = (xsiz - xosiz, ysiz - yosiz);
    if u64::from(width) * u64::from(height) > MAX_DECODE_PIXELS {
        return Err(format!(
            "{width}x{height} is more than {MAX_DECODE_PIXELS} pixels"
        ));
    }
    // The tile grid must start at or before the image and its first tile
    // reach into it (as the standard requires; OpenJPEG checks it too).
    if xtsiz == 0 || ytsiz == 0 || xtosiz > xosiz || ytosiz > yosiz {
        return Err("invalid tile grid".into());
    }
    if u64::from(xtosiz) + u64::from(xtsiz) <= u64::from(xosiz)
        || u64::from(ytosiz) + u64::from(ytsiz) <= u64::from(yosiz)
    {
        return Err("invalid tile grid".into());
    }
    if u64::from(xtsiz.min(width)) * u64::from(ytsiz.min(height)) > MAX_DECODE_TILE_PIXELS {
        return Err(format!("{xtsiz}x{ytsiz} tiles are too large"));
    }
    let tiles =
        u64::from((xsiz - xtosiz).div_ceil(xtsiz)) * u64::from((ysiz - ytosiz).div_ceil(ytsiz));
    // Tile indices (Isot) are 16-bit.
    if tiles > 65_535 {
        return Err(format!("{tiles} tiles"));
    }
    let tiles = tiles as usize;

    let check_segment = |marker: u16, segment: &[u8]| -> Result<(), String> {
        // Offset of the code-block style byte: COD has Scod, SGcod (4
        // bytes), then levels, width, height; COC has the component index
        // (2 bytes with more than 256 components), Scoc, then the same.
        let style_at = match marker {
            COD => 8,
            COC if csiz > 256 => 6,
            COC => 5,
            CAP => return Err("HTJ2K or Part 2 capabilities (CAP marker)".into()),
            _ => return Ok(()),
        };
        let style = *segment.get(style_at).ok_or("short COD/COC marker")?;
        // 0x40: HT code-blocks; 0x80: mixed HT.
        if style & 0xC0 != 0 {
            return Err("HTJ2K code-blocks are not decoded".into());
        }
        Ok(())
    };
    // Main header: marker segments up to the first SOT.
    loop {
        match r.u16()? {
            SOT => break,
            marker if marker >= 0xFF40 && marker != SOD && marker != EOC && marker != SOC => {
                check_segment(marker, r.segment()?)?
            }
            marker => {
                return Err(format!(
                    "unexpected marker {marker:#06x} in the main header"
                ))
            }
        }
    }
    // Tile-parts: SOT, marker segments, SOD, data.
    loop {
        let start = r.pos - 2;
        let sot = r.segment()?;
        if sot.len() != 8 {
            return Err("malformed SOT marker".into());
        }
        let (index, length) = (usize::from(be_u16(sot)), be_u32(&sot[2..]) as usize);
        if index >= tiles {
            return Err(format!("tile {index} of {tiles}"));
        }
        loop {
            match r.u16()? {
                SOD => break,
                marker if marker >= 0xFF40 && marker != SOT && marker != EOC && marker != SOC => {
                    check_segment(marker, r.segment()?)?
                }
                marker => {
                    return Err(format!(
                        "unexpected marker {marker:#06x} in a tile-part header"
                    ))
                }
            }
        }
        if length == 0 {
            // The last tile-part runs to the EOC that ends the codestream.
            return if cs.ends_with(&EOC.to_be_bytes()) && r.pos <= cs.len() - 2 {
                Ok(Siz {
                    x0: xosiz,
                    y0: yosiz,
                    width,
                    height,
                    tiles,
                })
            } else {
                Err("codestream does not end with EOC".into())
            };
        }
        let next = start
            .checked_add(length)
            .filter(|&next| next >= r.pos && next <= cs.len());
        r.pos = next.ok_or("tile-part length out of range")?;
        match r.u16()? {
            SOT => continue,
            // Bytes after EOC are ignored (so does OpenJPEG).
            EOC => {
                return Ok(Siz {
                    x0: xosiz,
                    y0: yosiz,
                    width,
                    height,
                    tiles,
                })
            }
            marker => return Err(format!("unexpected marker {marker:#06x} after a tile-part")),
        }
    }
}
