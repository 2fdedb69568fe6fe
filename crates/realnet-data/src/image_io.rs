//! Image and mask decoding, Pillow-compatible resizing and normalisation.
//!
//! Decoding follows what the official RealNet code gets from OpenCV's `imread` + RGB conversion:
//! any PNG/JPEG/BMP/TIFF (8 or 16 bit; gray, gray+alpha, RGB, RGBA, palette) becomes 8-bit RGB,
//! 16-bit samples keep their high byte (`v >> 8`), alpha is dropped, gray is repeated on the three
//! channels and the EXIF orientation is applied. Resizing reproduces Pillow's
//! `Image.resize(size, BILINEAR)` (triangle filter, antialiased when shrinking) and
//! `Image.resize(size, NEAREST)`; `tests/resize_pillow.rs` checks both against Pillow's own output.

use crate::DataError;
use image::{
    DynamicImage, GrayImage, ImageBuffer, ImageDecoder, ImageError, ImageFormat, ImageReader,
    Pixel, RgbImage,
};
use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

/// Decoded images larger than this are refused (a corrupt header can claim 100,000 × 100,000).
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

/// File name extensions we treat as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// True when the file name ends in one of [`IMAGE_EXTENSIONS`] (any case).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Decoder settings.
#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions {
    /// Largest accepted width × height; bigger images are refused before any pixel is decoded.
    pub max_pixels: u64,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

/// What a file's header says, without decoding its pixels.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageInfo {
    /// Width after the EXIF orientation is applied (what decoding gives).
    pub width: u32,
    pub height: u32,
    /// "png", "jpeg", "bmp" or "tiff".
    pub format: &'static str,
    /// Stored pixel kind, e.g. "gray8", "rgb8", "rgba16", "palette8", "gray+alpha8".
    pub color: String,
}

/// Reads the header of an image file: size, format and pixel kind. Fast (no pixel data is decoded),
/// so it does not notice a truncated pixel stream; [`decode`] does.
pub fn probe(path: &Path) -> Result<ImageInfo, DataError> {
    probe_with(path, &DecodeOptions::default())
}

/// [`probe`] with explicit limits.
pub fn probe_with(path: &Path, opts: &DecodeOptions) -> Result<ImageInfo, DataError> {
    let (file, len) = open_file(path)?;
    let (_, info, _) = open_decoder(BufReader::new(file), len, path, opts)?;
    Ok(info)
}

/// Decodes a file to an [`image::DynamicImage`] in its stored pixel format, EXIF orientation
/// applied, plus its header facts.
pub fn decode(path: &Path, opts: &DecodeOptions) -> Result<(DynamicImage, ImageInfo), DataError> {
    let (file, len) = open_file(path)?;
    decode_from(BufReader::new(file), len, path, opts)
}

/// [`decode`] for an image held in memory (an upload to `realnet serve`): the same format sniffing,
/// limits, decoder and orientation handling. `name` stands for the file in error messages.
pub fn decode_bytes(
    bytes: &[u8],
    name: &Path,
    opts: &DecodeOptions,
) -> Result<(DynamicImage, ImageInfo), DataError> {
    decode_from(Cursor::new(bytes), bytes.len() as u64, name, opts).map_err(without_dataset_advice)
}

fn decode_from<R: BufRead + Seek>(
    mut reader: R,
    len: u64,
    name: &Path,
    opts: &DecodeOptions,
) -> Result<(DynamicImage, ImageInfo), DataError> {
    let (decoder, info, orientation) = open_decoder(&mut reader, len, name, opts)?;
    let mut img =
        DynamicImage::from_decoder(decoder).map_err(|e| decode_error(name, info.format, e))?;
    if info.format == "jpeg" {
        // The JPEG decoder fills a cut-off file with grey instead of failing (as PNG's does).
        let mut bytes = Vec::with_capacity(len as usize);
        reader
            .seek(SeekFrom::Start(0))
            .and_then(|_| reader.read_to_end(&mut bytes))
            .map_err(|e| DataError::file(name, format!("cannot read: {e}")))?;
        if jpeg_is_cut_off(&bytes) {
            return Err(DataError::file(
                name,
                format!(
                    "truncated jpeg file (it ends before the end-of-image marker; the rest of \
                     the picture would be made up){REEXPORT}"
                ),
            ));
        }
    }
    img.apply_orientation(orientation);
    Ok((img, info))
}

/// True when a JPEG stream reaches its first scan but no end-of-image marker (FF D9) follows: the
/// file was cut off. Header segments are skipped by their lengths, so markers inside them (an EXIF
/// thumbnail) do not count; inside entropy-coded data an FF byte is always stuffed, so FF D9 can
/// only be the marker. Anything this walk does not understand counts as whole.
fn jpeg_is_cut_off(b: &[u8]) -> bool {
    let mut i = 2; // after SOI
    while i + 4 <= b.len() {
        if b[i] != 0xFF {
            return false;
        }
        let marker = b[i + 1];
        match marker {
            0xFF => i += 1, // fill byte
            0xD9 => return false,
            0x01 | 0xD0..=0xD7 => i += 2,
            _ => {
                let seg = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
                if marker == 0xDA {
                    let scan = b.get(i + 2 + seg..).unwrap_or(&[]);
                    return !scan.windows(2).any(|w| w == [0xFF, 0xD9]);
                }
                i += 2 + seg;
            }
        }
    }
    false
}

/// Decode any PNG/JPEG/BMP/TIFF (8/16 bit, gray/RGB/RGBA/palette) to 8-bit RGB; optional resize
/// to (w, h) with PIL-compatible bilinear (antialiased when shrinking).
pub fn load_rgb(path: &Path, size: Option<(u32, u32)>) -> Result<RgbImage, DataError> {
    load_rgb_with(path, size, &DecodeOptions::default())
}

/// [`load_rgb`] with explicit limits.
pub fn load_rgb_with(
    path: &Path,
    size: Option<(u32, u32)>,
    opts: &DecodeOptions,
) -> Result<RgbImage, DataError> {
    let (img, _) = decode(path, opts)?;
    Ok(rgb_at(&img, size))
}

/// [`load_rgb_with`] for an image held in memory; `name` stands for the file in error messages.
/// Gives the same pixels as [`load_rgb_with`] on a file with these bytes.
pub fn load_rgb_from_bytes(
    bytes: &[u8],
    name: &Path,
    size: Option<(u32, u32)>,
    opts: &DecodeOptions,
) -> Result<RgbImage, DataError> {
    let (img, _) = decode_bytes(bytes, name, opts)?;
    Ok(rgb_at(&img, size))
}

/// 8-bit RGB, resized to `size` when given.
pub(crate) fn rgb_at(img: &DynamicImage, size: Option<(u32, u32)>) -> RgbImage {
    let rgb = to_rgb8(img);
    match size {
        Some((w, h)) => resize_rgb(&rgb, w, h),
        None => rgb,
    }
}

/// A mask: any value > 0 is anomalous → 255, else 0; resized with nearest to (w, h).
pub fn load_mask(path: &Path, size: (u32, u32)) -> Result<GrayImage, DataError> {
    let m = load_mask_native(path, &DecodeOptions::default())?;
    Ok(resize_mask(&m, size.0, size.1))
}

/// A mask at its stored size, binarised (any colour channel > 0 → 255, else 0; alpha ignored).
pub fn load_mask_native(path: &Path, opts: &DecodeOptions) -> Result<GrayImage, DataError> {
    let (img, _) = decode(path, opts)?;
    Ok(binarize(&img))
}

/// Pillow's `Image.resize((w, h), Image.BILINEAR)` for 8-bit RGB, bit for bit: a separable
/// triangle filter whose support grows with the shrink factor (antialiasing), horizontal pass
/// first (only over the rows the vertical pass reads), 22-bit fixed-point weights, rounding and
/// clipping to 8 bit between the passes. A port of Pillow's `Resample.c`; `fast_image_resize`
/// was tried first, but its 16-bit weights differ from Pillow by 1 in ~20% of values.
pub fn resize_rgb(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let (sw, sh) = img.dimensions();
    if (sw, sh) == (w, h) {
        return img.clone(); // Pillow returns a copy too
    }
    if sw == 0 || sh == 0 || w == 0 || h == 0 {
        return RgbImage::new(w, h);
    }
    let (sw, sh, w, h) = (sw as usize, sh as usize, w as usize, h as usize);
    let horiz = Coeffs::bilinear(sw, w);
    let vert = Coeffs::bilinear(sh, h);
    let src = img.as_raw();
    // Rows of the source that the vertical pass uses.
    let first = vert.bounds[0].0;
    let last = vert.bounds[h - 1].0 + vert.bounds[h - 1].1;
    let tmp: std::borrow::Cow<[u8]> = if sw != w {
        let mut t = vec![0u8; (last - first) * w * 3];
        for (ty, y) in (first..last).enumerate() {
            let row = &src[y * sw * 3..(y + 1) * sw * 3];
            let out = &mut t[ty * w * 3..(ty + 1) * w * 3];
            for (x, &(xmin, n)) in horiz.bounds.iter().enumerate() {
                let k = &horiz.k[x * horiz.ksize..x * horiz.ksize + n];
                for c in 0..3 {
                    let mut acc = ROUND;
                    for (i, &kv) in k.iter().enumerate() {
                        acc += row[(xmin + i) * 3 + c] as i64 * kv;
                    }
                    out[x * 3 + c] = clip8(acc);
                }
            }
        }
        std::borrow::Cow::Owned(t)
    } else {
        std::borrow::Cow::Borrowed(&src[first * sw * 3..last * sw * 3])
    };
    if sh == h {
        return RgbImage::from_raw(w as u32, h as u32, tmp.into_owned())
            .unwrap_or_else(|| RgbImage::new(w as u32, h as u32));
    }
    let mut out = vec![0u8; w * h * 3];
    for (y, &(ymin, n)) in vert.bounds.iter().enumerate() {
        let k = &vert.k[y * vert.ksize..y * vert.ksize + n];
        let ymin = ymin - first;
        for xc in 0..w * 3 {
            let mut acc = ROUND;
            for (i, &kv) in k.iter().enumerate() {
                acc += tmp[(ymin + i) * w * 3 + xc] as i64 * kv;
            }
            out[y * w * 3 + xc] = clip8(acc);
        }
    }
    RgbImage::from_raw(w as u32, h as u32, out).unwrap_or_else(|| RgbImage::new(w as u32, h as u32))
}

/// Pillow's fixed-point precision for 8-bit images (`PRECISION_BITS = 32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;
const ROUND: i64 = 1 << (PRECISION_BITS - 1);

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Per output pixel: the first source index and tap count, and `ksize` fixed-point weights.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    k: Vec<i64>,
}

impl Coeffs {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear (triangle) filter.
    fn bilinear(in_size: usize, out_size: usize) -> Coeffs {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale; // triangle support 1.0 × filterscale
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut k = vec![0i64; out_size * ksize];
        let mut w = vec![0f64; ksize];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C casts truncate toward zero; negative starts clamp to 0 either way.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin).min(ksize);
            let mut total = 0.0;
            for (x, wx) in w.iter_mut().enumerate().take(n) {
                let t = ((x + xmin) as f64 - center + 0.5) * ss;
                *wx = (1.0 - t.abs()).max(0.0);
                total += *wx;
            }
            for x in 0..n {
                let v = if total != 0.0 { w[x] / total } else { w[x] };
                let f = v * (1u64 << PRECISION_BITS) as f64;
                k[xx * ksize + x] = if v < 0.0 {
                    (f - 0.5) as i64
                } else {
                    (f + 0.5) as i64
                };
            }
            bounds.push((xmin, n));
        }
        Coeffs { ksize, bounds, k }
    }
}

/// Pillow's `Image.resize((w, h), Image.NEAREST)`: source index = trunc of a running sum that
/// starts at scale / 2 and grows by scale = src / dst per output pixel (Pillow's `ImagingScaleAffine`;
/// accumulating in f64 like Pillow keeps us bit-exact at the rounding boundaries).
pub fn resize_mask(m: &GrayImage, w: u32, h: u32) -> GrayImage {
    let (sw, sh) = m.dimensions();
    if (sw, sh) == (w, h) {
        return m.clone();
    }
    if sw == 0 || sh == 0 || w == 0 || h == 0 {
        return GrayImage::new(w, h);
    }
    let xs = nearest_indices(sw, w);
    let ys = nearest_indices(sh, h);
    let src = m.as_raw();
    let mut out = Vec::with_capacity(w as usize * h as usize);
    for &y in &ys {
        let row = &src[y * sw as usize..(y + 1) * sw as usize];
        out.extend(xs.iter().map(|&x| row[x]));
    }
    GrayImage::from_raw(w, h, out).unwrap_or_else(|| GrayImage::new(w, h))
}

fn nearest_indices(src: u32, dst: u32) -> Vec<usize> {
    let scale = src as f64 / dst as f64;
    let mut pos = scale * 0.5;
    let last = src as usize - 1;
    (0..dst)
        .map(|_| {
            let i = (pos as usize).min(last);
            pos += scale;
            i
        })
        .collect()
}

/// Model input: x / 255, then per channel (x − mean) / std, in CHW order (channel planes).
/// ImageNet: mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225); [−1, 1]: mean 0.5, std 0.5.
pub fn normalize_chw(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let n = img.width() as usize * img.height() as usize;
    let mut out = vec![0f32; 3 * n];
    let (r, rest) = out.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    let planes = [r, g, b];
    // Multiply by the reciprocal: matches torchvision's (x - mean) / std to within 1 ulp.
    let scale = [0, 1, 2].map(|c| 1.0 / std[c]);
    for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            planes[c][i] = (px[c] as f32 / 255.0 - mean[c]) * scale[c];
        }
    }
    out
}

/// 8-bit RGB the way OpenCV's imread + BGR→RGB gives it: 16-bit samples keep the high byte,
/// alpha is dropped (not composited), gray is repeated.
pub fn to_rgb8(img: &DynamicImage) -> RgbImage {
    fn from_u16(raw: &[u16], channels: usize, w: u32, h: u32) -> RgbImage {
        let mut out = Vec::with_capacity(w as usize * h as usize * 3);
        for px in raw.chunks_exact(channels) {
            if channels < 3 {
                let v = (px[0] >> 8) as u8;
                out.extend_from_slice(&[v, v, v]);
            } else {
                out.extend(px[..3].iter().map(|&v| (v >> 8) as u8));
            }
        }
        RgbImage::from_raw(w, h, out).unwrap_or_else(|| RgbImage::new(w, h))
    }
    let (w, h) = (img.width(), img.height());
    match img {
        DynamicImage::ImageRgb8(b) => b.clone(),
        DynamicImage::ImageLuma16(b) => from_u16(b.as_raw(), 1, w, h),
        DynamicImage::ImageLumaA16(b) => from_u16(b.as_raw(), 2, w, h),
        DynamicImage::ImageRgb16(b) => from_u16(b.as_raw(), 3, w, h),
        DynamicImage::ImageRgba16(b) => from_u16(b.as_raw(), 4, w, h),
        // 8-bit gray/alpha variants and float TIFFs: image's conversion replicates gray, drops
        // alpha, and clamps+rounds floats.
        other => other.to_rgb8(),
    }
}

/// Any colour channel > 0 → 255, else 0 (alpha ignored). Works on the stored bit depth, so a
/// 16-bit mask value of 1 still counts.
pub fn binarize(img: &DynamicImage) -> GrayImage {
    fn any_positive<P: Pixel>(
        buf: &ImageBuffer<P, Vec<P::Subpixel>>,
        color_channels: usize,
    ) -> GrayImage
    where
        P::Subpixel: PartialOrd + Default,
    {
        let zero = P::Subpixel::default();
        let (w, h) = buf.dimensions();
        let data = buf
            .as_raw()
            .chunks_exact(P::CHANNEL_COUNT as usize)
            .map(|px| {
                if px[..color_channels].iter().any(|v| *v > zero) {
                    255
                } else {
                    0
                }
            })
            .collect();
        GrayImage::from_raw(w, h, data).unwrap_or_else(|| GrayImage::new(w, h))
    }
    match img {
        DynamicImage::ImageLuma8(b) => any_positive(b, 1),
        DynamicImage::ImageLumaA8(b) => any_positive(b, 1),
        DynamicImage::ImageRgb8(b) => any_positive(b, 3),
        DynamicImage::ImageRgba8(b) => any_positive(b, 3),
        DynamicImage::ImageLuma16(b) => any_positive(b, 1),
        DynamicImage::ImageLumaA16(b) => any_positive(b, 1),
        DynamicImage::ImageRgb16(b) => any_positive(b, 3),
        DynamicImage::ImageRgba16(b) => any_positive(b, 3),
        DynamicImage::ImageRgb32F(b) => any_positive(b, 3),
        DynamicImage::ImageRgba32F(b) => any_positive(b, 3),
        other => any_positive(&other.to_rgb32f(), 3),
    }
}

/// Opens a file and tells its length.
fn open_file(path: &Path) -> Result<(File, u64), DataError> {
    let file = File::open(path).map_err(|e| DataError::file(path, format!("cannot open: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| DataError::file(path, format!("cannot read: {e}")))?
        .len();
    Ok((file, len))
}

/// Checks that `reader` (`len` bytes, called `path` in errors) is a non-empty image of a supported
/// format within the pixel limit, and returns a decoder positioned after the header.
fn open_decoder<'a, R: BufRead + Seek + 'a>(
    mut reader: R,
    len: u64,
    path: &Path,
    opts: &DecodeOptions,
) -> Result<
    (
        impl ImageDecoder + 'a,
        ImageInfo,
        image::metadata::Orientation,
    ),
    DataError,
> {
    if len == 0 {
        return Err(DataError::file(
            path,
            format!("empty file (0 bytes){RECOPY}"),
        ));
    }
    let mut head = Vec::with_capacity(64);
    (&mut reader)
        .take(64)
        .read_to_end(&mut head)
        .map_err(|e| DataError::file(path, format!("cannot read: {e}")))?;
    let format = sniff_format(path, &head)?;
    let format_name = format_name(format);
    let png_kind = if format == ImageFormat::Png {
        Some(png_header(path, &head, opts)?)
    } else {
        None
    };
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| DataError::file(path, format!("cannot read: {e}")))?;
    let mut reader = ImageReader::with_format(reader, format);
    let mut limits = image::Limits::default();
    // 8 bytes per pixel covers 16-bit RGBA; slack for decoder scratch buffers.
    limits.max_alloc = Some(opts.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| decode_error(path, format_name, e))?;
    let (mut w, mut h) = decoder.dimensions();
    check_size(path, w, h, opts)?;
    let orientation = decoder
        .orientation()
        .map_err(|e| decode_error(path, format_name, e))?;
    use image::metadata::Orientation as O;
    if matches!(
        orientation,
        O::Rotate90 | O::Rotate270 | O::Rotate90FlipH | O::Rotate270FlipH
    ) {
        std::mem::swap(&mut w, &mut h);
    }
    let color = png_kind.unwrap_or_else(|| color_name(decoder.original_color_type()));
    let info = ImageInfo {
        width: w,
        height: h,
        format: format_name,
        color,
    };
    Ok((decoder, info, orientation))
}

fn check_size(path: &Path, w: u32, h: u32, opts: &DecodeOptions) -> Result<(), DataError> {
    if w == 0 || h == 0 {
        return Err(DataError::file(
            path,
            format!("header says {w}×{h} pixels: corrupt file"),
        ));
    }
    let pixels = w as u64 * h as u64;
    if pixels > opts.max_pixels {
        return Err(DataError::file(
            path,
            format!(
                "header says {w}×{h} = {pixels} pixels, over the limit of {} pixels: a corrupt \
                 header or an image far larger than any dataset needs; downscale it first",
                opts.max_pixels
            ),
        ));
    }
    Ok(())
}

/// Decides the format from the content (not the name), so a text file named `.png` or a JPEG
/// named `.png` is handled right.
fn sniff_format(path: &Path, head: &[u8]) -> Result<ImageFormat, DataError> {
    let named = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| format!(" although it is named .{e}"))
        .unwrap_or_default();
    match image::guess_format(head) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Bmp | ImageFormat::Tiff)) => {
            Ok(f)
        }
        Ok(other) => Err(DataError::file(
            path,
            format!(
                "{other:?} images are not supported{named}; convert it to PNG (or JPEG, BMP, TIFF)"
            ),
        )),
        Err(_) => {
            let text = head
                .iter()
                .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace());
            let what = if text { "text" } else { "unknown binary data" };
            Err(DataError::file(
                path,
                format!(
                    "not an image: the content is {what}, not PNG, JPEG, BMP or TIFF{named}{REMOVE}"
                ),
            ))
        }
    }
}

/// Reads width, height, bit depth and colour type from the PNG IHDR (bytes 16..26), which the
/// `image` crate does not report for palette images, and applies the pixel limit before the PNG
/// decoder allocates anything.
fn png_header(path: &Path, head: &[u8], opts: &DecodeOptions) -> Result<String, DataError> {
    if head.len() < 26 || &head[12..16] != b"IHDR" {
        return Err(DataError::file(
            path,
            "truncated PNG: the IHDR header is missing",
        ));
    }
    let be = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    check_size(path, be(16), be(20), opts)?;
    let bits = head[24];
    let kind = match head[25] {
        0 => "gray",
        2 => "rgb",
        3 => "palette",
        4 => "gray+alpha",
        6 => "rgba",
        other => {
            return Err(DataError::file(
                path,
                format!("corrupt PNG: colour type {other}"),
            ))
        }
    };
    Ok(format!("{kind}{bits}"))
}

fn format_name(f: ImageFormat) -> &'static str {
    match f {
        ImageFormat::Png => "png",
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Bmp => "bmp",
        ImageFormat::Tiff => "tiff",
        _ => "other",
    }
}

fn color_name(c: image::ExtendedColorType) -> String {
    use image::ExtendedColorType as E;
    match c {
        E::L8 => "gray8".into(),
        E::La8 => "gray+alpha8".into(),
        E::Rgb8 => "rgb8".into(),
        E::Rgba8 => "rgba8".into(),
        E::L16 => "gray16".into(),
        E::La16 => "gray+alpha16".into(),
        E::Rgb16 => "rgb16".into(),
        E::Rgba16 => "rgba16".into(),
        E::Rgb32F => "rgb32f".into(),
        E::Rgba32F => "rgba32f".into(),
        E::L1 | E::L2 | E::L4 => "gray<8".into(),
        E::Cmyk8 => "cmyk8".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The advice that ends messages about dataset files; an upload has no dataset to fix, so
/// [`decode_bytes`] leaves it out.
const REMOVE: &str = "; remove it from the dataset";
const RECOPY: &str = "; re-copy it or remove it from the dataset";
const REEXPORT: &str = "; re-export the file or remove it from the dataset";

fn without_dataset_advice(e: DataError) -> DataError {
    match e {
        DataError::File { path, message } => {
            let message = [REEXPORT, RECOPY, REMOVE]
                .iter()
                .fold(message, |m, advice| m.replace(advice, ""));
            DataError::File { path, message }
        }
        other => other,
    }
}

/// Turns a decoder error into a message that says what is wrong with the file and what to do.
fn decode_error(path: &Path, format: &str, e: ImageError) -> DataError {
    let fix = REEXPORT;
    let msg = match e {
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            format!("truncated {format} file (it ends before the image data does){fix}")
        }
        ImageError::IoError(io) => format!("cannot read: {io}"),
        ImageError::Decoding(d) => format!("corrupt or truncated {format} data: {d}{fix}"),
        ImageError::Limits(l) => {
            format!("too large to decode within the memory limit ({l}); downscale it first")
        }
        ImageError::Unsupported(u) => {
            format!("unsupported {format} variant: {u}; convert it to 8-bit PNG")
        }
        other => format!("cannot decode {format}: {other}{fix}"),
    };
    DataError::file(path, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_indices_identity_and_halving() {
        assert_eq!(nearest_indices(4, 4), vec![0, 1, 2, 3]);
        assert_eq!(nearest_indices(4, 2), vec![1, 3]); // centres of 2-pixel blocks: 1.0, 3.0
        assert_eq!(nearest_indices(2, 4), vec![0, 0, 1, 1]);
    }

    #[test]
    fn normalize_chw_is_planar_and_centered() {
        let img = RgbImage::from_raw(2, 1, vec![0, 128, 255, 255, 0, 51]).unwrap();
        let v = normalize_chw(&img, [0.5; 3], [0.5; 3]);
        // planes: R = [0, 255], G = [128, 0], B = [255, 51]
        let want = [
            -1.0,
            1.0,
            128.0 / 127.5 - 1.0,
            -1.0,
            1.0,
            51.0 / 127.5 - 1.0,
        ];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
        let imnet = normalize_chw(&img, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
        assert!((imnet[0] - (0.0 - 0.485) / 0.229).abs() < 1e-6);
        assert!((imnet[5] - (0.2 - 0.406) / 0.225).abs() < 1e-6);
    }

    #[test]
    fn sixteen_bit_keeps_high_byte_and_alpha_is_dropped() {
        let g16 = ImageBuffer::<image::Luma<u16>, _>::from_raw(2, 1, vec![0x12ff, 0xff00]).unwrap();
        let rgb = to_rgb8(&DynamicImage::ImageLuma16(g16));
        assert_eq!(rgb.as_raw(), &[0x12, 0x12, 0x12, 0xff, 0xff, 0xff]);
        let rgba = image::RgbaImage::from_raw(1, 1, vec![10, 20, 30, 0]).unwrap();
        assert_eq!(
            to_rgb8(&DynamicImage::ImageRgba8(rgba)).as_raw(),
            &[10, 20, 30]
        );
    }

    #[test]
    fn bytes_and_file_give_the_same_pixels_and_errors() {
        let img = RgbImage::from_fn(37, 23, |x, y| image::Rgb([x as u8 * 7, y as u8 * 11, 99]));
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.png");
        std::fs::write(&f, &png).unwrap();
        let opts = DecodeOptions::default();
        let name = Path::new("upload");
        let from_file = load_rgb_with(&f, Some((16, 16)), &opts).unwrap();
        let from_bytes = load_rgb_from_bytes(&png, name, Some((16, 16)), &opts).unwrap();
        assert_eq!(from_file, from_bytes);
        let err = load_rgb_from_bytes(b"hello", name, None, &opts).unwrap_err();
        assert_eq!(
            err.to_string(),
            "upload: not an image: the content is text, not PNG, JPEG, BMP or TIFF"
        );
        assert!(load_rgb_from_bytes(&[], name, None, &opts).is_err());
        assert!(load_rgb_from_bytes(&png[..60], name, None, &opts).is_err());
        let small = DecodeOptions { max_pixels: 100 };
        let err = load_rgb_from_bytes(&png, name, None, &small).unwrap_err();
        assert!(err.to_string().contains("over the limit"), "{err}");
    }

    #[test]
    fn binarize_counts_any_positive_channel_not_alpha() {
        let rgba =
            image::RgbaImage::from_raw(3, 1, vec![0, 0, 0, 255, 0, 0, 1, 0, 7, 0, 0, 0]).unwrap();
        assert_eq!(
            binarize(&DynamicImage::ImageRgba8(rgba)).as_raw(),
            &[0, 255, 255]
        );
        let l16 = ImageBuffer::<image::Luma<u16>, _>::from_raw(2, 1, vec![1, 0]).unwrap();
        assert_eq!(
            binarize(&DynamicImage::ImageLuma16(l16)).as_raw(),
            &[255, 0]
        );
    }
}
