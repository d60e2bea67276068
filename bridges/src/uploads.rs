//! Upload checks and thumbnails for image, video and file messages.
//!
//! Pure functions over bytes, no I/O: the gateway's HTTP upload endpoint
//! calls [`check`] before it stores anything and [`thumbnail`] for images.
//! The content type a client declares is never trusted alone: the bytes
//! must carry the magic number of that type ([`sniff`]). Decoding images
//! runs with dimension and allocation limits, so a small file that claims
//! to be a huge picture (a "decompression bomb") is refused, not decoded.

use std::io::Cursor;

/// Largest accepted upload, in bytes.
pub const MAX_UPLOAD_BYTES: usize = 16 * 1024 * 1024;
/// Thumbnails fit in a square of this many pixels.
pub const THUMBNAIL_PX: u32 = 320;
/// Largest image side that is decoded for a thumbnail.
pub const MAX_IMAGE_SIDE: u32 = 8192;

/// Content types that may be uploaded, as (type, message kind).
pub const ALLOWED: &[(&str, &str)] = &[
    ("image/png", "image"),
    ("image/jpeg", "image"),
    ("image/gif", "image"),
    ("image/webp", "image"),
    ("video/mp4", "video"),
    ("video/webm", "video"),
    ("application/pdf", "file"),
];

/// Why an upload was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum UploadError {
    /// Over [`MAX_UPLOAD_BYTES`].
    #[error("upload of {0} bytes is over the {MAX_UPLOAD_BYTES} byte limit")]
    TooLarge(usize),
    /// No bytes.
    #[error("empty upload")]
    Empty,
    /// A content type that is not in [`ALLOWED`].
    #[error("content type {0:?} is not accepted")]
    Unsupported(String),
    /// The bytes are not what the declared content type says.
    #[error("content is not {declared}")]
    Mismatch {
        /// The declared type.
        declared: String,
    },
    /// An image that cannot be decoded within the limits.
    #[error("image cannot be decoded: {0}")]
    BadImage(String),
}

/// What an accepted upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// The normalized content type, from [`ALLOWED`].
    pub mime: &'static str,
    /// The message body kind it belongs in: `image`, `video` or `file`.
    pub kind: &'static str,
}

/// The content type the bytes' magic number says, if it is one we accept.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| bytes.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if at(0, b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        Some("image/gif")
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        Some("image/webp")
    } else if at(4, b"ftyp") {
        Some("video/mp4")
    } else if at(0, b"\x1a\x45\xdf\xa3") {
        Some("video/webm")
    } else if at(0, b"%PDF-") {
        Some("application/pdf")
    } else {
        None
    }
}

/// Checks an upload: size, an accepted declared type (parameters such as
/// `; charset=` are ignored) and bytes that match it.
///
/// # Errors
/// The reason to refuse it; nothing should be stored then.
pub fn check(declared: &str, bytes: &[u8]) -> Result<Checked, UploadError> {
    if bytes.is_empty() {
        return Err(UploadError::Empty);
    }
    if bytes.len() > MAX_UPLOAD_BYTES {
        return Err(UploadError::TooLarge(bytes.len()));
    }
    let base = declared
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some(&(mime, kind)) = ALLOWED.iter().find(|(m, _)| *m == base) else {
        return Err(UploadError::Unsupported(base));
    };
    if sniff(bytes) != Some(mime) {
        return Err(UploadError::Mismatch {
            declared: mime.to_owned(),
        });
    }
    Ok(Checked { mime, kind })
}

/// A JPEG thumbnail (at most [`THUMBNAIL_PX`] on each side, aspect kept)
/// of a PNG or JPEG image; `None` for other types.
///
/// # Errors
/// `BadImage` when the image is corrupt or over the decode limits.
pub fn thumbnail(checked: Checked, bytes: &[u8]) -> Result<Option<Vec<u8>>, UploadError> {
    let format = match checked.mime {
        "image/png" => image::ImageFormat::Png,
        "image/jpeg" => image::ImageFormat::Jpeg,
        _ => return Ok(None),
    };
    let bad = |e: image::ImageError| UploadError::BadImage(e.to_string());
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_SIDE as u64 * MAX_IMAGE_SIDE as u64 * 4);
    reader.limits(limits);
    let img = reader.decode().map_err(bad)?;
    let small = img.thumbnail(THUMBNAIL_PX, THUMBNAIL_PX);
    let rgb = image::DynamicImage::ImageRgb8(small.to_rgb8());
    let mut out = Vec::new();
    rgb.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg)
        .map_err(bad)?;
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 90]));
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn declared_type_must_match_the_bytes() {
        let p = png(4, 4);
        assert_eq!(
            check("image/png", &p),
            Ok(Checked {
                mime: "image/png",
                kind: "image"
            })
        );
        assert_eq!(check("IMAGE/PNG; x=1", &p).map(|c| c.mime), Ok("image/png"));
        assert!(matches!(
            check("image/jpeg", &p),
            Err(UploadError::Mismatch { .. })
        ));
        assert!(matches!(
            check("text/html", b"<script>"),
            Err(UploadError::Unsupported(_))
        ));
        assert!(matches!(
            check("application/pdf", b"<html>%PDF-"),
            Err(UploadError::Mismatch { .. })
        ));
        assert_eq!(
            check("application/pdf", b"%PDF-1.7 ...").map(|c| c.kind),
            Ok("file")
        );
        assert_eq!(check("image/png", b""), Err(UploadError::Empty));
        let big = vec![0u8; MAX_UPLOAD_BYTES + 1];
        assert_eq!(
            check("image/png", &big),
            Err(UploadError::TooLarge(MAX_UPLOAD_BYTES + 1))
        );
    }

    #[test]
    fn thumbnails_fit_and_keep_aspect() {
        let p = png(640, 400);
        let c = check("image/png", &p).unwrap();
        let t = thumbnail(c, &p).unwrap().expect("png gets a thumbnail");
        assert_eq!(sniff(&t), Some("image/jpeg"));
        let img = image::load_from_memory(&t).unwrap();
        assert_eq!((img.width(), img.height()), (320, 200));
        let pdf = check("application/pdf", b"%PDF-1.7").unwrap();
        assert_eq!(thumbnail(pdf, b"%PDF-1.7"), Ok(None));
    }

    #[test]
    fn corrupt_and_oversized_images_are_refused() {
        let mut p = png(8, 8);
        p.truncate(40);
        let c = check("image/png", &p).unwrap();
        assert!(matches!(thumbnail(c, &p), Err(UploadError::BadImage(_))));
        // small file, side over the decode limit
        let wide = png(MAX_IMAGE_SIDE + 1, 1);
        let e = thumbnail(c, &wide).unwrap_err();
        assert!(matches!(e, UploadError::BadImage(_)), "{e:?}");
        assert!(thumbnail(c, &png(MAX_IMAGE_SIDE, 1)).is_ok());
    }
}
