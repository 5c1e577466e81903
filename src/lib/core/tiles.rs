//! Tile geometry: where each tile of a grid lies in the image, and the larger rectangle a
//! worker renders for it (the tile plus overscan, clipped to the image).
//!
//! Column `c` of `n` spans `[c*W/n, (c+1)*W/n)` in integer arithmetic, so tiles of an image
//! that does not divide evenly differ by at most one pixel and always cover it exactly.

use serde::{Deserialize, Serialize};

use crate::core::job::Tiles;

/// A pixel rectangle in image coordinates (origin top left).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Rect {
    /// The whole image.
    pub fn full(width: u32, height: u32) -> Rect {
        Rect {
            x: 0,
            y: 0,
            width,
            height,
        }
    }

    /// One past the right edge.
    pub fn right(self) -> u32 {
        self.x + self.width
    }

    /// One past the bottom edge.
    pub fn bottom(self) -> u32 {
        self.y + self.height
    }

    /// Whether `inner` lies wholly inside `self`.
    pub fn contains(self, inner: Rect) -> bool {
        inner.x >= self.x
            && inner.y >= self.y
            && inner.right() <= self.right()
            && inner.bottom() <= self.bottom()
    }

    /// Number of pixels.
    pub fn area(self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// One tile: its grid position, the part of the image it owns, and what is rendered for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tile {
    /// Grid column, from 0 at the left.
    pub column: u32,
    /// Grid row, from 0 at the top.
    pub row: u32,
    /// The pixels this tile owns in the final image.
    pub inner: Rect,
    /// The pixels rendered: `inner` grown by the overscan, clipped to the image.
    pub render: Rect,
}

fn split(length: u32, parts: u32, index: u32) -> (u32, u32) {
    let start = (u64::from(length) * u64::from(index) / u64::from(parts)) as u32;
    let end = (u64::from(length) * u64::from(index + 1) / u64::from(parts)) as u32;
    (start, end)
}

/// The tile at (`column`, `row`) of `tiles` over a `width`×`height` image.
pub fn tile(tiles: &Tiles, width: u32, height: u32, column: u32, row: u32) -> Tile {
    let (x0, x1) = split(width, tiles.columns, column);
    let (y0, y1) = split(height, tiles.rows, row);
    let o = tiles.overscan;
    let rx0 = x0.saturating_sub(o);
    let ry0 = y0.saturating_sub(o);
    let rx1 = (x1 + o).min(width);
    let ry1 = (y1 + o).min(height);
    Tile {
        column,
        row,
        inner: Rect {
            x: x0,
            y: y0,
            width: x1 - x0,
            height: y1 - y0,
        },
        render: Rect {
            x: rx0,
            y: ry0,
            width: rx1 - rx0,
            height: ry1 - ry0,
        },
    }
}

/// Every tile, row by row from the top left.
pub fn all(tiles: &Tiles, width: u32, height: u32) -> impl Iterator<Item = Tile> + '_ {
    (0..tiles.rows).flat_map(move |row| {
        (0..tiles.columns).map(move |column| tile(tiles, width, height, column, row))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::job::Blend;

    fn grid(columns: u32, rows: u32, overscan: u32) -> Tiles {
        Tiles {
            columns,
            rows,
            overscan,
            blend: Blend::Crop,
        }
    }

    #[test]
    fn tiles_cover_the_image_exactly_once() {
        for (w, h, c, r) in [
            (3840, 2160, 10, 10),
            (1001, 777, 7, 5),
            (5, 3, 5, 3),
            (1, 1, 1, 1),
            (17, 9, 4, 2),
        ] {
            let tiles = grid(c, r, 3);
            let mut covered = vec![0u8; (w * h) as usize];
            for t in all(&tiles, w, h) {
                assert!(Rect::full(w, h).contains(t.render), "{t:?}");
                assert!(t.render.contains(t.inner), "{t:?}");
                for y in t.inner.y..t.inner.bottom() {
                    for x in t.inner.x..t.inner.right() {
                        covered[(y * w + x) as usize] += 1;
                    }
                }
            }
            assert!(covered.iter().all(|&n| n == 1), "{w}x{h} in {c}x{r}");
        }
    }

    #[test]
    fn overscan_is_clipped_at_the_image_border() {
        let tiles = grid(2, 2, 8);
        let t = tile(&tiles, 100, 50, 0, 0);
        assert_eq!(
            t.inner,
            Rect {
                x: 0,
                y: 0,
                width: 50,
                height: 25
            }
        );
        assert_eq!(
            t.render,
            Rect {
                x: 0,
                y: 0,
                width: 58,
                height: 33
            }
        );
        let t = tile(&tiles, 100, 50, 1, 1);
        assert_eq!(
            t.inner,
            Rect {
                x: 50,
                y: 25,
                width: 50,
                height: 25
            }
        );
        assert_eq!(
            t.render,
            Rect {
                x: 42,
                y: 17,
                width: 58,
                height: 33
            }
        );
    }

    #[test]
    fn uneven_sizes_differ_by_at_most_one_pixel() {
        let tiles = grid(7, 5, 0);
        let widths: Vec<u32> = (0..7)
            .map(|c| tile(&tiles, 1001, 777, c, 0).inner.width)
            .collect();
        let (min, max) = (widths.iter().min().unwrap(), widths.iter().max().unwrap());
        assert!(max - min <= 1, "{widths:?}");
        assert_eq!(widths.iter().sum::<u32>(), 1001);
    }
}
