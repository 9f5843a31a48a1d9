//! Image decoding (PNG via the `png` crate, binary PPM by hand) and PP-OCR's preprocessing.

use std::io::Cursor;

/// The classifier's input shape.
pub const SHAPE: [u32; 4] = [1, 3, 48, 192];
/// Largest width or height accepted.
const MAX_SIDE: usize = 4096;

/// An RGB image, 8 bits per channel.
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

/// PNG or binary PPM, by the first bytes.
pub fn decode(bytes: &[u8]) -> Result<Image, String> {
    let image = if bytes.starts_with(b"\x89PNG") {
        png(bytes)?
    } else if bytes.starts_with(b"P6") {
        ppm(bytes)?
    } else {
        return Err("expected a PNG or a binary PPM (P6) image".into());
    };
    if image.width == 0 || image.height == 0 {
        return Err("empty image".into());
    }
    Ok(image)
}

fn png(bytes: &[u8]) -> Result<Image, String> {
    let limits = png::Limits {
        bytes: MAX_SIDE * MAX_SIDE * 4,
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| format!("PNG: {e}"))?;
    let (width, height) = (reader.info().width as usize, reader.info().height as usize);
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(format!(
            "image {width}x{height} is over {MAX_SIDE}x{MAX_SIDE}"
        ));
    }
    let size = reader.output_buffer_size().ok_or("PNG: image too large")?;
    let mut buf = vec![0; size];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("PNG: {e}"))?;
    let channels = match frame.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err("PNG: palette not expanded".into()),
    };
    let mut rgb = Vec::with_capacity(width * height * 3);
    for px in buf[..frame.buffer_size()].chunks_exact(channels) {
        match channels {
            1 | 2 => rgb.extend_from_slice(&[px[0], px[0], px[0]]),
            _ => rgb.extend_from_slice(&px[..3]),
        }
    }
    Ok(Image { width, height, rgb })
}

fn ppm(bytes: &[u8]) -> Result<Image, String> {
    let mut fields = Vec::new();
    let mut i = 2;
    while fields.len() < 3 {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'#' {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let text = std::str::from_utf8(&bytes[start..i]).map_err(|_| "PPM: bad header")?;
        fields.push(text.parse::<usize>().map_err(|_| "PPM: bad header")?);
    }
    let (width, height, max) = (fields[0], fields[1], fields[2]);
    if max != 255 {
        return Err("PPM: only 8-bit (maxval 255)".into());
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(format!(
            "image {width}x{height} is over {MAX_SIDE}x{MAX_SIDE}"
        ));
    }
    let data = bytes.get(i + 1..).ok_or("PPM: no data")?;
    let len = width * height * 3;
    if data.len() < len {
        return Err(format!("PPM: {} bytes of pixels, need {len}", data.len()));
    }
    Ok(Image {
        width,
        height,
        rgb: data[..len].to_vec(),
    })
}

/// Resize to height 48 (width by aspect, at most 192), BGR channels first, [-1, 1], padded.
pub fn preprocess(image: &Image) -> Vec<f32> {
    let (h, w_max) = (48usize, 192usize);
    let ratio = image.width as f32 / image.height as f32;
    let rw = ((h as f32 * ratio).ceil() as usize).clamp(1, w_max);
    let mut out = vec![0f32; 3 * h * w_max];
    for y in 0..h {
        let sy = ((y as f32 + 0.5) * image.height as f32 / h as f32 - 0.5).max(0.0);
        let (y0, fy) = (sy.floor() as usize, sy.fract());
        let y1 = (y0 + 1).min(image.height - 1);
        for x in 0..rw {
            let sx = ((x as f32 + 0.5) * image.width as f32 / rw as f32 - 0.5).max(0.0);
            let (x0, fx) = (sx.floor() as usize, sx.fract());
            let x1 = (x0 + 1).min(image.width - 1);
            for c in 0..3 {
                let at =
                    |xx: usize, yy: usize| image.rgb[(yy * image.width + xx) * 3 + 2 - c] as f32;
                let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
                let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
                let v = top * (1.0 - fy) + bottom * fy;
                out[c * h * w_max + y * w_max + x] = (v / 255.0 - 0.5) / 0.5;
            }
        }
    }
    out
}
