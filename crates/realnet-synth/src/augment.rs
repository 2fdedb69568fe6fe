//! The ten DRAEM/imgaug texture augmentations of spec §3.3; three distinct ones are applied to
//! every texture, in the order drawn. Ranges are the official ones; each op follows the imgaug /
//! PIL definition on 8-bit RGB (documented simplifications noted per op).
use image::RgbImage;
use rand::seq::index::sample;
use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    GammaContrast,
    MultiplyAndAddToBrightness,
    EnhanceSharpness,
    AddToHueAndSaturation,
    Solarize,
    Posterize,
    Invert,
    Autocontrast,
    Equalize,
    Rotate,
}

pub const OPS: [Op; 10] = [
    Op::GammaContrast,
    Op::MultiplyAndAddToBrightness,
    Op::EnhanceSharpness,
    Op::AddToHueAndSaturation,
    Op::Solarize,
    Op::Posterize,
    Op::Invert,
    Op::Autocontrast,
    Op::Equalize,
    Op::Rotate,
];

/// Draws three distinct ops (without replacement, in draw order) and applies them.
pub fn rand_augment<R: Rng + ?Sized>(rng: &mut R, img: &mut RgbImage) -> [Op; 3] {
    let idx = sample(rng, OPS.len(), 3);
    let ops = [OPS[idx.index(0)], OPS[idx.index(1)], OPS[idx.index(2)]];
    for op in ops {
        apply(rng, op, img);
    }
    ops
}

fn lut3(img: &mut RgbImage, luts: &[[u8; 256]; 3]) {
    for p in img.pixels_mut() {
        for c in 0..3 {
            p.0[c] = luts[c][p.0[c] as usize];
        }
    }
}

fn clip8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Applies one op with its official random parameters.
pub fn apply<R: Rng + ?Sized>(rng: &mut R, op: Op, img: &mut RgbImage) {
    match op {
        // iaa.GammaContrast((0.5, 2.0), per_channel=True): 255·(x/255)^γ, one γ per channel.
        Op::GammaContrast => {
            let mut luts = [[0u8; 256]; 3];
            for lut in &mut luts {
                let g: f64 = rng.gen_range(0.5..2.0);
                for (i, v) in lut.iter_mut().enumerate() {
                    *v = clip8((255.0 * (i as f64 / 255.0).powf(g)) as f32);
                }
            }
            lut3(img, &luts);
        }
        // iaa.MultiplyAndAddToBrightness(mul=(0.8,1.2), add=(-30,30)): multiply then add on the
        // brightness channel. imgaug picks one of YCrCb/HSV/HLS/Lab; we always use YCrCb's Y.
        Op::MultiplyAndAddToBrightness => {
            let mul: f32 = rng.gen_range(0.8..1.2);
            let add: f32 = rng.gen_range(-30.0..30.0);
            for p in img.pixels_mut() {
                let [r, g, b] = p.0.map(|v| v as f32);
                let y = 0.299 * r + 0.587 * g + 0.114 * b;
                let cr = (r - y) * 0.713;
                let cb = (b - y) * 0.564;
                let y2 = (y * mul).round().clamp(0.0, 255.0) + add;
                let y2 = y2.round().clamp(0.0, 255.0);
                let r2 = y2 + 1.403 * cr;
                let g2 = y2 - 0.714 * cr - 0.344 * cb;
                let b2 = y2 + 1.773 * cb;
                p.0 = [clip8(r2), clip8(g2), clip8(b2)];
            }
        }
        // iaa.pillike.EnhanceSharpness(factor=(0.0, 2.0)): PIL ImageEnhance.Sharpness.
        Op::EnhanceSharpness => {
            let f: f32 = rng.gen_range(0.0..2.0);
            enhance_sharpness(img, f);
        }
        // iaa.AddToHueAndSaturation((-50, 50), per_channel=True): separate hue and saturation
        // shifts in OpenCV's 8-bit HSV (hue 0..179, shift scaled by 180/255, wrapping).
        Op::AddToHueAndSaturation => {
            let dh: i32 = rng.gen_range(-50..=50);
            let ds: i32 = rng.gen_range(-50..=50);
            let dh = (dh as f32 * 180.0 / 255.0).round() as i32;
            for p in img.pixels_mut() {
                let (h, s, v) = rgb_to_hsv(p.0);
                let h = (h + dh).rem_euclid(180);
                let s = (s + ds).clamp(0, 255);
                p.0 = hsv_to_rgb(h, s, v);
            }
        }
        // iaa.Solarize(0.5, threshold=(32, 128)): with probability 0.5, invert values >= t.
        Op::Solarize => {
            let apply: bool = rng.gen_bool(0.5);
            let t: f32 = rng.gen_range(32.0..128.0);
            if apply {
                for v in img.iter_mut() {
                    if *v as f32 >= t {
                        *v = 255 - *v;
                    }
                }
            }
        }
        // iaa.Posterize() = UniformColorQuantizationToNBits(nb_bits=(1, 8)): keep the top bits.
        Op::Posterize => {
            let bits: u32 = rng.gen_range(1..=8);
            let mask = (0xFFu32 << (8 - bits)) as u8;
            img.iter_mut().for_each(|v| *v &= mask);
        }
        // iaa.Invert() (p = 1).
        Op::Invert => img.iter_mut().for_each(|v| *v = 255 - *v),
        // iaa.pillike.Autocontrast(cutoff=(0, 20)): PIL ImageOps.autocontrast per band.
        Op::Autocontrast => {
            let cutoff: u32 = rng.gen_range(0..=20);
            autocontrast(img, cutoff);
        }
        // iaa.pillike.Equalize(): PIL ImageOps.equalize per band.
        Op::Equalize => equalize(img),
        // iaa.Affine(rotate=(-45, 45)): about the centre, bilinear, constant 0 fill.
        Op::Rotate => {
            let deg: f64 = rng.gen_range(-45.0..45.0);
            rotate_rgb(img, deg);
        }
    }
}

/// PIL: degenerate = SMOOTH filter (3×3 kernel 1 1 1 / 1 5 1 / 1 1 1, /13, border copied);
/// out = degenerate + f·(img − degenerate), truncated and clipped as ImagingBlend.
pub fn enhance_sharpness(img: &mut RgbImage, f: f32) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 3 || h < 3 {
        return;
    }
    let src = img.as_raw().clone();
    let dst = &mut **img;
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            for c in 0..3 {
                let at = |yy: usize, xx: usize| src[(yy * w + xx) * 3 + c] as f32;
                let mut s = 0.0;
                for dy in 0..3 {
                    for dx in 0..3 {
                        s += at(y + dy - 1, x + dx - 1);
                    }
                }
                s += 4.0 * at(y, x);
                let deg = ((s / 13.0) + 0.5).floor().clamp(0.0, 255.0);
                let o = at(y, x);
                let v = deg + f * (o - deg);
                dst[(y * w + x) * 3 + c] = v.clamp(0.0, 255.0) as u8;
            }
        }
    }
}

fn histograms(img: &RgbImage) -> [[u64; 256]; 3] {
    let mut h = [[0u64; 256]; 3];
    for p in img.pixels() {
        for c in 0..3 {
            h[c][p.0[c] as usize] += 1;
        }
    }
    h
}

/// PIL ImageOps.autocontrast(cutoff=%) per band.
pub fn autocontrast(img: &mut RgbImage, cutoff: u32) {
    let hs = histograms(img);
    let mut luts = [[0u8; 256]; 3];
    for (c, h) in hs.iter().enumerate() {
        let mut h = *h;
        let n: u64 = h.iter().sum();
        if cutoff > 0 {
            // Remove `cut` pixels from the low end, then from the high end.
            let mut cut = n * cutoff as u64 / 100;
            for v in h.iter_mut() {
                if cut == 0 {
                    break;
                }
                let d = cut.min(*v);
                *v -= d;
                cut -= d;
            }
            let mut cut = n * cutoff as u64 / 100;
            for v in h.iter_mut().rev() {
                if cut == 0 {
                    break;
                }
                let d = cut.min(*v);
                *v -= d;
                cut -= d;
            }
        }
        let lo = h.iter().position(|&v| v > 0);
        let hi = h.iter().rposition(|&v| v > 0);
        let lut = &mut luts[c];
        match (lo, hi) {
            (Some(lo), Some(hi)) if hi > lo => {
                let scale = 255.0 / (hi - lo) as f64;
                let offset = -(lo as f64) * scale;
                for (i, v) in lut.iter_mut().enumerate() {
                    let x = (i as f64 * scale + offset) as i64; // PIL: int() truncation
                    *v = x.clamp(0, 255) as u8;
                }
            }
            _ => lut.iter_mut().enumerate().for_each(|(i, v)| *v = i as u8),
        }
    }
    lut3(img, &luts);
}

/// PIL ImageOps.equalize per band.
pub fn equalize(img: &mut RgbImage) {
    let hs = histograms(img);
    let mut luts = [[0u8; 256]; 3];
    for (c, h) in hs.iter().enumerate() {
        let nz: Vec<u64> = h.iter().copied().filter(|&v| v > 0).collect();
        let lut = &mut luts[c];
        lut.iter_mut().enumerate().for_each(|(i, v)| *v = i as u8);
        if nz.len() <= 1 {
            continue;
        }
        let step = (nz.iter().sum::<u64>() - nz[nz.len() - 1]) / 255;
        if step == 0 {
            continue;
        }
        let mut n = step / 2;
        for i in 0..256 {
            lut[i] = (n / step).min(255) as u8;
            n += h[i];
        }
    }
    lut3(img, &luts);
}

/// Rotation of an RGB image about its centre, bilinear, 0 outside, rounded.
pub fn rotate_rgb(img: &mut RgbImage, degrees: f64) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    for c in 0..3 {
        let plane: Vec<f32> = img
            .as_raw()
            .iter()
            .skip(c)
            .step_by(3)
            .map(|&v| v as f32)
            .collect();
        let mut out = vec![0u8; w * h];
        crate::perlin::rotate_into(
            &plane,
            h,
            w,
            degrees,
            |v, o: &mut u8| *o = clip8(v),
            &mut out,
        );
        for (p, v) in img.as_mut().chunks_exact_mut(3).zip(out) {
            p[c] = v;
        }
    }
}

/// OpenCV 8-bit RGB→HSV: H in 0..180 (degrees / 2), S and V in 0..255.
fn rgb_to_hsv([r, g, b]: [u8; 3]) -> (i32, i32, i32) {
    let (r, g, b) = (r as f32, g as f32, b as f32);
    let v = r.max(g).max(b);
    let mn = r.min(g).min(b);
    let d = v - mn;
    let s = if v > 0.0 { d / v * 255.0 } else { 0.0 };
    let mut h = if d == 0.0 {
        0.0
    } else if v == r {
        60.0 * (g - b) / d
    } else if v == g {
        120.0 + 60.0 * (b - r) / d
    } else {
        240.0 + 60.0 * (r - g) / d
    };
    if h < 0.0 {
        h += 360.0;
    }
    (((h / 2.0).round() as i32) % 180, s.round() as i32, v as i32)
}

fn hsv_to_rgb(h: i32, s: i32, v: i32) -> [u8; 3] {
    let h = h as f32 * 2.0;
    let s = s as f32 / 255.0;
    let v = v as f32;
    let c = v * s;
    let hp = h / 60.0;
    let x = c * (1.0 - ((hp % 2.0) - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [clip8(r + m), clip8(g + m), clip8(b + m)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::sample_rng;

    #[rustfmt::skip]
    const PIL_SHARP_03: [u8; 192] = [0, 0, 0, 7, 31, 29, 28, 62, 58, 63, 93, 87, 112, 124, 116, 175, 155, 145, 252, 186, 174, 87, 217, 203, 13, 5, 29, 22, 37, 18, 43, 68, 68, 78, 99, 70, 127, 130, 132, 162, 161, 134, 66, 192, 184, 100, 222, 174, 26, 20, 58, 35, 52, 68, 56, 83, 18, 91, 114, 54, 140, 145, 148, 161, 176, 184, 65, 194, 134, 113, 237, 145, 39, 45, 87, 48, 77, 70, 69, 108, 54, 104, 139, 43, 153, 170, 159, 174, 188, 148, 78, 191, 132, 126, 6, 116, 52, 80, 116, 61, 112, 132, 82, 143, 148, 117, 174, 159, 166, 192, 43, 187, 195, 54, 91, 52, 70, 139, 41, 87, 65, 125, 145, 74, 157, 134, 95, 175, 184, 130, 192, 148, 179, 195, 54, 200, 66, 18, 104, 70, 68, 152, 86, 58, 78, 180, 174, 87, 185, 184, 108, 188, 134, 143, 73, 132, 178, 77, 70, 199, 94, 68, 104, 111, 18, 165, 141, 29, 91, 245, 203, 98, 20, 174, 119, 51, 145, 154, 82, 116, 203, 113, 87, 10, 144, 58, 87, 175, 29, 178, 206, 0];
    #[rustfmt::skip]
    const PIL_SHARP_17: [u8; 192] = [0, 0, 0, 7, 31, 29, 28, 62, 58, 63, 93, 87, 112, 124, 116, 175, 155, 145, 252, 186, 174, 87, 217, 203, 13, 5, 29, 17, 34, 0, 38, 65, 105, 73, 96, 45, 122, 127, 157, 213, 158, 97, 0, 189, 221, 100, 222, 174, 26, 20, 58, 30, 49, 105, 51, 80, 0, 86, 111, 3, 135, 142, 199, 240, 173, 221, 0, 217, 97, 113, 237, 145, 39, 45, 87, 43, 74, 45, 64, 105, 3, 99, 136, 0, 148, 167, 246, 253, 211, 199, 0, 255, 157, 126, 6, 116, 52, 80, 116, 56, 109, 157, 77, 140, 199, 112, 171, 246, 161, 215, 0, 255, 255, 3, 4, 0, 45, 139, 41, 87, 65, 125, 145, 69, 154, 97, 90, 198, 221, 125, 243, 199, 174, 255, 3, 255, 0, 0, 17, 39, 105, 152, 86, 58, 78, 180, 174, 82, 236, 221, 103, 255, 97, 138, 0, 157, 201, 18, 45, 255, 63, 105, 43, 108, 0, 165, 141, 29, 91, 245, 203, 98, 20, 174, 119, 51, 145, 154, 82, 116, 203, 113, 87, 10, 144, 58, 87, 175, 29, 178, 206, 0];

    fn ramp() -> RgbImage {
        RgbImage::from_fn(16, 16, |x, y| {
            image::Rgb([(x * 16) as u8, (y * 16) as u8, ((x + y) * 8) as u8])
        })
    }

    #[test]
    fn every_op_keeps_size_and_is_deterministic() {
        for op in OPS {
            let mut a = ramp();
            let mut b = ramp();
            apply(&mut sample_rng(3, 4), op, &mut a);
            apply(&mut sample_rng(3, 4), op, &mut b);
            assert_eq!(a, b, "{op:?}");
            assert_eq!(a.dimensions(), (16, 16));
        }
    }

    #[test]
    fn three_distinct_ops() {
        for i in 0..50 {
            let mut img = ramp();
            let ops = rand_augment(&mut sample_rng(0, i), &mut img);
            assert!(ops[0] != ops[1] && ops[1] != ops[2] && ops[0] != ops[2]);
        }
    }

    #[test]
    fn pil_definitions() {
        let mut img = ramp();
        apply(&mut sample_rng(0, 0), Op::Invert, &mut img);
        assert_eq!(img.get_pixel(1, 2).0, [255 - 16, 255 - 32, 255 - 24]);
        // Equalize of a 2-level band maps to 0 and (n/2 // step ...): PIL gives [0, 128] for a 50/50 split.
        let mut two = RgbImage::from_fn(2, 1, |x, _| image::Rgb([if x == 0 { 10 } else { 20 }; 3]));
        equalize(&mut two);
        // histo=[1,1], step=(2-1)//255=0 -> identity (PIL returns the image unchanged).
        assert_eq!(two.get_pixel(0, 0).0, [10; 3]);
        let mut big =
            RgbImage::from_fn(32, 32, |x, _| image::Rgb([if x < 16 { 10 } else { 20 }; 3]));
        equalize(&mut big);
        // step = (1024-512)//255 = 2; lut[10] = (1)//2 = 0; lut[20] = (1+512)//2 = 256 -> 255 clamp.
        assert_eq!(big.get_pixel(0, 0).0, [0; 3]);
        assert_eq!(big.get_pixel(31, 0).0, [255; 3]);
        // Autocontrast stretches [lo, hi] to [0, 255].
        let mut ac = RgbImage::from_fn(2, 1, |x, _| image::Rgb([if x == 0 { 50 } else { 100 }; 3]));
        autocontrast(&mut ac, 0);
        assert_eq!(ac.get_pixel(0, 0).0, [0; 3]);
        // PIL: int(100·5.1 − 255) = int(254.99999999999997) = 254.
        assert_eq!(ac.get_pixel(1, 0).0, [254; 3]);
        // Sharpness factor 1 is the identity; factor 0 is the smoothed image.
        let mut s = ramp();
        enhance_sharpness(&mut s, 1.0);
        assert_eq!(s, ramp());
        // Pillow 12 ImageEnhance.Sharpness on an 8x8 pattern, factors 0.3 and 1.7.
        let pat = RgbImage::from_fn(8, 8, |x, y| {
            image::Rgb([
                ((x * x * 7 + y * 13) % 256) as u8,
                ((x * 31 + y * y * 5) % 256) as u8,
                (((x ^ y) * 29) % 256) as u8,
            ])
        });
        for (f, want) in [(0.3, PIL_SHARP_03), (1.7, PIL_SHARP_17)] {
            let mut s = pat.clone();
            enhance_sharpness(&mut s, f);
            assert_eq!(s.as_raw().as_slice(), want.as_slice(), "factor {f}");
        }
        // HSV round trip is close for saturated colours.
        for rgb in [[200u8, 30, 40], [10, 220, 90], [5, 6, 250], [128, 128, 128]] {
            let (h, s, v) = rgb_to_hsv(rgb);
            let back = hsv_to_rgb(h, s, v);
            for c in 0..3 {
                assert!(
                    (back[c] as i32 - rgb[c] as i32).abs() <= 3,
                    "{rgb:?} -> {back:?}"
                );
            }
        }
    }
}
